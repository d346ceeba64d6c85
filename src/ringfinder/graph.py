"""Graph: contributor–identifier edges, hub suppression, and the weighted contributor projection.

All set work runs in DuckDB. Tables created on the connection:

- ``edges``: contributor_id, kind, identifier, n_events, first_seen, last_seen (the bipartite graph)
- ``identifiers``: kind, identifier, degree, crowded, hub, infrastructure, strong, solid, weight
  (only identifiers used by two or more contributors: one used by one links nobody)
- ``strong_links``: contributor_id, strong_key (contributors behind each shared strong identifier)
- ``lockstep_pairs``: a, b, co_targets (pairs acting on the same targets within seconds)
- ``pairs``: a, b (a < b), weight, n_shared, co_targets, strong, kinds, solid (the projection)

Weighting follows FRAUDAR (Hooi et al., KDD 2016): an identifier shared by many contributors says
less about each pair than a rare one, so its weight falls with the log of its degree.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import duckdb

from ringfinder.config import Config
from ringfinder.normalise import create_identifier_map, mapped_sql, sql_identifier, sql_literal
from ringfinder.privacy import NO_PRIVACY, Privacy
from ringfinder.schema import CONTRIBUTOR, TARGET, TIME, raw_identifier_column

# Uses are grouped in slices of contributors, one per this many events: at 30M events one
# GROUP BY over all of them held 0.9 GiB of groups on top of the events, the run's peak.
EVENTS_PER_USES_SLICE = 16_000_000
# Pairs weigh 1 × the kind's weight when they share an identifier used by exactly two people.
DEGREE_TWO_LOG = math.log(3.0)


@dataclass
class GraphStats:
    """What the graph stage built and suppressed, for the manifest."""

    edges: int
    identifiers: dict[str, int]
    hubs: dict[str, int]
    infrastructure: dict[str, int]
    pairs: int
    lockstep_pairs: int


def build_edges(
    con: duckdb.DuckDBPyConnection, *, config: Config, privacy: Privacy = NO_PRIVACY
) -> None:
    """Create ``edges``: contributor–identifier pairs with event counts and first/last seen.

    One GROUP BY scan per kind over the identifiers as read (per slice of contributors, past
    ``EVENTS_PER_USES_SLICE`` events); the distinct values of those far fewer rows are then
    normalised (and pseudonymised), and uses of one identifier spelled several ways are added up.
    """
    con.execute(
        f"CREATE OR REPLACE TABLE edges ({CONTRIBUTOR} VARCHAR, kind VARCHAR, identifier VARCHAR, "
        f"n_events BIGINT, first_seen TIMESTAMP, last_seen TIMESTAMP)"
    )
    ((rows,),) = con.execute("SELECT count(*) FROM events").fetchall()
    slices = max(1, math.ceil(rows / EVENTS_PER_USES_SLICE))
    for name, kind in config.input.kinds.items():
        raw = sql_identifier(raw_identifier_column(name))
        con.execute(
            "CREATE OR REPLACE TEMP TABLE rf_uses "
            f"({CONTRIBUTOR} VARCHAR, raw VARCHAR, n_events BIGINT, first_seen TIMESTAMP, "
            "last_seen TIMESTAMP)"
        )
        for part in range(slices):
            in_slice = f"AND hash({CONTRIBUTOR}) % {slices} = {part}" if slices > 1 else ""
            con.execute(f"""
                INSERT INTO rf_uses
                SELECT {CONTRIBUTOR}, {raw}, count(*), min({TIME}), max({TIME})
                FROM events WHERE {raw} IS NOT NULL {in_slice} GROUP BY ALL
            """)
        # Nothing reads the identifiers as read again: free their memory for the rest of the run.
        con.execute(f"ALTER TABLE events DROP COLUMN {raw}")
        create_identifier_map(
            con, "rf_uses_map", name, kind.normaliser, "rf_uses", "raw", config.input, privacy
        )
        con.execute(f"""
            INSERT INTO edges
            SELECT {CONTRIBUTOR}, {sql_literal(name)}, identifier, sum(n_events), min(first_seen),
                max(last_seen)
            FROM (
                SELECT u.*, {mapped_sql("m", "u.raw")} AS identifier
                FROM rf_uses u LEFT JOIN rf_uses_map m ON m.raw = u.raw
            ) WHERE identifier IS NOT NULL GROUP BY ALL
        """)
    con.execute("DROP TABLE rf_uses")
    con.execute("DROP TABLE rf_uses_map")


def identifiers_sql(config: Config) -> str:
    """Degree, hub and infrastructure flags, and the pair weight of every shared identifier.

    Only identifiers used by two or more contributors are kept: at 10M events 99% are used by
    one, and leaving them out made the table 100 times smaller and this query 0.75 s faster.

    An IP shared by more than ``solid_ip_max_contributors`` is a weak link (a proxy pool, a
    NAT): it joins rings but cannot hold two parts of one together.
    A strong identifier (a payout account) is never a hub: above its cap it is ``crowded``,
    left out of the pairs but linked through ``strong_links``.
    A hub is used by more contributors than its kind's ``hub_cap``: it is dropped from the
    projection. Infrastructure is a device or IP used by many contributors most of whom also
    have one of their own (an internet café PC, a campus NAT): its weight is multiplied by
    ``infrastructure_weight`` (0 by default: it links nobody, but stays in the evidence).
    Whether users have an identifier of their own (one not in ``degree``) is looked up only for
    the users of widely shared ones.

    Degrees are counted kind by kind, grouping by the identifier alone: at 30M events that took
    3.2 s instead of 4.0 s for the query (14M edges, almost all of them one identifier each).
    """
    g = config.graph
    degree = " UNION ALL ".join(
        f"SELECT {sql_literal(kind)} AS kind, identifier, count(*) AS degree FROM edges "
        f"WHERE kind = {sql_literal(kind)} GROUP BY identifier HAVING count(*) >= 2"
        for kind in config.input.kinds
    )
    caps = " ".join(
        f"WHEN {sql_literal(kind)} THEN {spec.hub_cap}" for kind, spec in config.input.kinds.items()
    )
    weights = " ".join(
        f"WHEN {sql_literal(kind)} THEN {spec.weight!r}"
        for kind, spec in config.input.kinds.items()
    )
    sharable = [
        sql_literal(kind)
        for kind, spec in config.input.kinds.items()
        if spec.resolved_role(kind) in ("device", "ip")
    ]
    sharable_list = ", ".join(sharable) or "NULL"
    ips = (
        ", ".join(
            sql_literal(kind)
            for kind, spec in config.input.kinds.items()
            if spec.resolved_role(kind) == "ip"
        )
        or "NULL"
    )
    strong = (
        ", ".join(sql_literal(k) for k, spec in config.input.kinds.items() if spec.strong) or "NULL"
    )
    return f"""
    WITH degree AS MATERIALIZED ({degree}), shared AS MATERIALIZED (
        SELECT e.{CONTRIBUTOR}, e.kind, e.identifier FROM edges e JOIN degree d USING (kind, identifier)
        WHERE d.degree >= {g.infrastructure_min_contributors} AND e.kind IN ({sharable_list})
    ), has_own AS (
        SELECT e.{CONTRIBUTOR}, e.kind, bool_or(d.degree IS NULL) AS has_own
        FROM edges e LEFT JOIN degree d USING (kind, identifier)
        WHERE e.kind IN ({sharable_list}) AND e.{CONTRIBUTOR} IN (SELECT {CONTRIBUTOR} FROM shared)
        GROUP BY ALL
    ), own_share AS (
        SELECT s.kind, s.identifier, avg(CAST(o.has_own AS DOUBLE)) AS own_share
        FROM shared s JOIN has_own o USING ({CONTRIBUTOR}, kind) GROUP BY ALL
    )
    SELECT d.kind, d.identifier, d.degree,
        d.degree > (CASE d.kind {caps} END) AS crowded,
        d.degree > (CASE d.kind {caps} END) AND d.kind NOT IN ({strong}) AS hub,
        coalesce(s.own_share >= {g.infrastructure_own_share!r}, false) AS infrastructure,
        d.kind IN ({strong}) AS strong,
        NOT (d.kind IN ({ips}) AND d.degree > {g.solid_ip_max_contributors}) AS solid,
        (CASE d.kind {weights} END)
            * (CASE WHEN coalesce(s.own_share >= {g.infrastructure_own_share!r}, false)
                    THEN {g.infrastructure_weight!r} ELSE 1.0 END)
            * {DEGREE_TWO_LOG!r} / ln(d.degree + 1) AS weight
    FROM degree d LEFT JOIN own_share s USING (kind, identifier)
    """


def strong_links_sql() -> str:
    """Contributor → strong identifier (a payout account) shared by two or more, however many.

    ``detect`` puts everyone behind one strong identifier in one ring from these star links,
    so a payout account shared by 10,000 accounts neither projects 50 million pairs nor is
    dropped as a hub.
    """
    return f"""
    SELECT e.{CONTRIBUTOR}, e.kind || chr(31) || e.identifier AS strong_key
    FROM edges e JOIN identifiers i USING (kind, identifier)
    WHERE i.strong
    """


DUCKDB_KIND_LIST = "list(DISTINCT x.kind ORDER BY x.kind)"


def identifier_pairs_sql(kind_list: str = DUCKDB_KIND_LIST) -> str:
    """Contributor pairs that share identifiers used by more than one and at most the kind's
    ``hub_cap`` contributors, with their weight.

    The query is plain SQL that Spark runs too; only the sorted list of kinds is spelled per
    engine (``kind_list``)."""
    return f"""
    WITH linkable AS (
        SELECT e.{CONTRIBUTOR}, e.kind, e.identifier, i.weight, i.strong, i.solid
        FROM edges e JOIN identifiers i USING (kind, identifier)
        WHERE NOT i.crowded AND i.weight > 0
    )
    SELECT x.{CONTRIBUTOR} AS a, y.{CONTRIBUTOR} AS b, sum(x.weight) AS weight,
        count(*) AS n_shared, bool_or(x.strong) AS strong, bool_or(x.solid) AS solid,
        {kind_list} AS kinds
    FROM linkable x JOIN linkable y
        ON x.kind = y.kind AND x.identifier = y.identifier AND x.{CONTRIBUTOR} < y.{CONTRIBUTOR}
    GROUP BY x.{CONTRIBUTOR}, y.{CONTRIBUTOR}
    """


def duckdb_epoch(column: str) -> str:
    """SQL: seconds since 1970 of a timestamp, in DuckDB."""
    return f"epoch({column})"


def lockstep_pairs_sql(
    config: Config,
    *,
    epoch: Callable[[str], str] = duckdb_epoch,
    materialized: str = "MATERIALIZED",
) -> str:
    """Pairs that acted on the same targets within seconds, again and again.

    After SynchroTrap (Cao et al., CCS 2014): actions are bucketed by time, and only actions in
    the same or the next bucket are compared, so the cost follows the busy buckets, never all
    pairs of all events. Buckets crowded by a popular target are skipped.

    Most actions have no other action on their target within a bucket's reach. Sorted by
    bucket within its target, an action has one exactly when the action before or after it is
    at most one bucket away, so one window pass keeps the few worth comparing: grouping every
    (target, bucket) cell instead took 50% longer at 10M events. The actions are not kept in
    a table of their own: at 30M events that table alone held 0.9 GB at the run's peak.

    The query is plain SQL that Spark runs too; only the epoch function and whether CTEs are
    ``MATERIALIZED`` are spelled per engine.
    """
    g = config.graph
    window = g.lockstep_window_seconds

    return f"""
    WITH candidates AS {materialized} (
        SELECT {CONTRIBUTOR}, target, t, bucket FROM (
            SELECT *, lag(bucket) OVER w AS previous, lead(bucket) OVER w AS next FROM (
                SELECT {CONTRIBUTOR}, {TARGET} AS target, {TIME} AS t,
                    CAST(floor({epoch(TIME)} / {window!r}) AS BIGINT) AS bucket
                FROM events WHERE {TARGET} IS NOT NULL
            ) WINDOW w AS (PARTITION BY target ORDER BY bucket)
        ) WHERE bucket - previous <= 1 OR next - bucket <= 1
    ), crowded AS (
        SELECT target, bucket FROM candidates GROUP BY ALL
        HAVING count(DISTINCT {CONTRIBUTOR}) > {g.lockstep_max_bucket}
    ), usable AS (
        SELECT * FROM candidates ANTI JOIN crowded USING (target, bucket)
    ), close AS (
        SELECT x.{CONTRIBUTOR} AS p, y.{CONTRIBUTOR} AS q, x.target, x.t AS tx, y.t AS ty
        FROM usable x JOIN usable y ON x.target = y.target AND x.bucket = y.bucket
        UNION ALL
        SELECT x.{CONTRIBUTOR}, y.{CONTRIBUTOR}, x.target, x.t, y.t
        FROM usable x JOIN usable y ON x.target = y.target AND y.bucket = x.bucket + 1
    ), co AS {materialized} (
        SELECT least(p, q) AS a, greatest(p, q) AS b, count(DISTINCT target) AS co_targets
        FROM close WHERE p <> q AND abs({epoch("tx")} - {epoch("ty")}) <= {window!r}
        GROUP BY ALL HAVING count(DISTINCT target) >= {g.lockstep_min_targets}
    ), activity AS (
        SELECT {CONTRIBUTOR}, count(DISTINCT {TARGET}) AS targets FROM events
        WHERE {TARGET} IS NOT NULL AND {CONTRIBUTOR} IN (SELECT a FROM co UNION ALL SELECT b FROM co)
        GROUP BY ALL
    )
    SELECT co.a, co.b, co.co_targets FROM co
    JOIN activity pa ON pa.{CONTRIBUTOR} = co.a JOIN activity pb ON pb.{CONTRIBUTOR} = co.b
    WHERE co.co_targets >= {g.lockstep_min_share!r} * least(pa.targets, pb.targets)
    """


def pairs_sql(config: Config) -> str:
    """The weighted contributor projection: identifier pairs plus lockstep pairs.

    A pair is ``solid`` unless only widely shared IPs link it (see ``identifiers_sql``);
    ``detect`` splits rings that only such links hold together.
    """
    lockstep = config.graph.lockstep_weight
    return f"""
    SELECT a, b,
        coalesce(i.weight, 0) + (CASE WHEN l.co_targets IS NULL THEN 0 ELSE {lockstep!r} END) AS weight,
        coalesce(i.n_shared, 0) AS n_shared, coalesce(l.co_targets, 0) AS co_targets,
        coalesce(i.strong, false) AS strong,
        list_concat(coalesce(i.kinds, []), CASE WHEN l.co_targets IS NULL THEN [] ELSE ['lockstep'] END)
            AS kinds,
        l.co_targets IS NOT NULL OR coalesce(i.solid, false) AS solid
    FROM ({identifier_pairs_sql()}) i FULL OUTER JOIN lockstep_pairs l USING (a, b)
    WHERE coalesce(i.weight, 0) + (CASE WHEN l.co_targets IS NULL THEN 0 ELSE {lockstep!r} END)
        >= {config.graph.min_pair_weight!r}
    """


# Per kind: edges, identifiers (those used by one are not in ``identifiers``: each is one edge
# that no shared identifier accounts for), hubs, and infrastructure that is not a hub.
IDENTIFIER_COUNTS_SQL = """
    SELECT kind, e.edges, e.edges - coalesce(s.uses, 0) + coalesce(s.shared, 0) AS identifiers,
        coalesce(s.hubs, 0) AS hubs, coalesce(s.infrastructure, 0) AS infrastructure
    FROM (SELECT kind, count(*) AS edges FROM edges GROUP BY kind) e
    LEFT JOIN (
        SELECT kind, sum(degree) AS uses, count(*) AS shared, count_if(hub) AS hubs,
            count_if(infrastructure AND NOT hub) AS infrastructure
        FROM identifiers GROUP BY kind
    ) s USING (kind)
    ORDER BY kind
"""


def graph_stats(counts: list[dict[str, Any]], *, pairs: int, lockstep_pairs: int) -> GraphStats:
    """``GraphStats`` from the rows of ``IDENTIFIER_COUNTS_SQL``; kinds with no hub or
    infrastructure are left out of those counts."""
    return GraphStats(
        edges=sum(int(r["edges"]) for r in counts),
        identifiers={r["kind"]: int(r["identifiers"]) for r in counts},
        hubs={r["kind"]: int(r["hubs"]) for r in counts if r["hubs"]},
        infrastructure={r["kind"]: int(r["infrastructure"]) for r in counts if r["infrastructure"]},
        pairs=pairs,
        lockstep_pairs=lockstep_pairs,
    )


def build_graph(
    con: duckdb.DuckDBPyConnection, *, config: Config, privacy: Privacy = NO_PRIVACY
) -> GraphStats:
    """Build ``edges``, ``identifiers`` and ``pairs`` from the ``events`` table.

    With a ``privacy`` key, identifiers become keyed tokens as they are normalised. The columns
    of ``events`` that nothing reads afterwards (identifiers as read, targets) are dropped.

    Examples
    --------
    >>> stats = build_graph(con, config=Config())  # doctest: +SKIP
    >>> stats.pairs  # doctest: +SKIP
    1234
    """
    build_edges(con, config=config, privacy=privacy)
    con.execute(f"CREATE OR REPLACE TABLE identifiers AS {identifiers_sql(config)}")
    if config.input.target:
        con.execute(f"CREATE OR REPLACE TABLE lockstep_pairs AS {lockstep_pairs_sql(config)}")
    else:
        con.execute(
            "CREATE OR REPLACE TABLE lockstep_pairs (a VARCHAR, b VARCHAR, co_targets BIGINT)"
        )
    # Only lockstep reads the targets: free them (0.5 GB at 30M events) for scoring.
    con.execute(f"ALTER TABLE events DROP COLUMN {TARGET}")
    con.execute(f"CREATE OR REPLACE TABLE pairs AS {pairs_sql(config)}")
    con.execute(f"CREATE OR REPLACE TABLE strong_links AS {strong_links_sql()}")

    (n_pairs,) = con.execute("SELECT count(*) FROM pairs").fetchone()  # type: ignore[misc]
    (n_lockstep,) = con.execute("SELECT count(*) FROM lockstep_pairs").fetchone()  # type: ignore[misc]
    counts = con.execute(IDENTIFIER_COUNTS_SQL).df().to_dict("records")
    return graph_stats(counts, pairs=n_pairs, lockstep_pairs=n_lockstep)
