"""Spark engine for the graph stage: the projection of ``graph.py``, run by PySpark over Parquet.

With ``engine = "spark"`` the events DuckDB has cleaned are written to Parquet and Spark computes
the same tables as ``graph.build_graph`` (``edges``, ``identifiers``, ``lockstep_pairs``,
``pairs``, ``strong_links``) by the same formulas, one Spark SQL query per table, each function
named like its DuckDB counterpart so the two read side by side. Only the projection and the rows
scoring needs come back; Leiden (igraph) and scoring then run unchanged on DuckDB.

Spark and DuckDB read the same SQL the same way where it matters: ``0.3`` is an exact decimal in
both (so ``co_targets >= 0.3 * 10`` holds in both), strings compare by bytes in both, and epoch
seconds are microseconds / 1e6 as a double in both. Weights may differ in the last bit, as the
order of a sum is not fixed.

PySpark is imported only here, and only when called, so nothing else in ringfinder needs it.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pandas as pd

from ringfinder.config import Config
from ringfinder.errors import ConfigError, InputError
from ringfinder.graph import (
    DEGREE_TWO_LOG,
    IDENTIFIER_COUNTS_SQL,
    GraphStats,
    graph_stats,
    identifier_pairs_sql,
    lockstep_pairs_sql,
    strong_links_sql,
)
from ringfinder.ingest import normalised_events_sql
from ringfinder.normalise import sql_literal
from ringfinder.privacy import NO_PRIVACY, Privacy
from ringfinder.schema import CONTRIBUTOR, TARGET, TIME, identifier_column

# The strong-link, identifier-pair and lockstep queries are graph.py's own; Spark spells the kind
# list and the epoch so.
SPARK_KIND_LIST = "array_sort(collect_set(x.kind))"

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

NO_PYSPARK = "engine = \"spark\" needs pyspark: pip install 'ringfinder[spark]'"

# The DuckDB types of the graph tables, as graph.py creates them: frames coming back from Spark
# are cast to these, so detect and score see the very same tables whichever engine ran.
TABLE_TYPES: dict[str, dict[str, str]] = {
    "edges": {
        CONTRIBUTOR: "VARCHAR",
        "kind": "VARCHAR",
        "identifier": "VARCHAR",
        "n_events": "BIGINT",
        "first_seen": "TIMESTAMP",
        "last_seen": "TIMESTAMP",
    },
    "identifiers": {
        "kind": "VARCHAR",
        "identifier": "VARCHAR",
        "degree": "BIGINT",
        "crowded": "BOOLEAN",
        "hub": "BOOLEAN",
        "infrastructure": "BOOLEAN",
        "strong": "BOOLEAN",
        "solid": "BOOLEAN",
        "weight": "DOUBLE",
    },
    "lockstep_pairs": {"a": "VARCHAR", "b": "VARCHAR", "co_targets": "BIGINT"},
    "pairs": {
        "a": "VARCHAR",
        "b": "VARCHAR",
        "weight": "DOUBLE",
        "n_shared": "BIGINT",
        "co_targets": "BIGINT",
        "strong": "BOOLEAN",
        "kinds": "VARCHAR[]",
        "solid": "BOOLEAN",
    },
    "strong_links": {CONTRIBUTOR: "VARCHAR", "strong_key": "VARCHAR"},
}


@dataclass
class SparkProjection:
    """What ``project_with_spark`` brings back: the graph tables as pandas, and their counts.

    ``stats`` always counts the whole graph; ``edges`` and ``identifiers`` hold every row, or with
    ``linked_only`` just the rows of contributors in a pair or a strong link (all that detection
    and scoring read).
    """

    edges: pd.DataFrame
    identifiers: pd.DataFrame
    lockstep_pairs: pd.DataFrame
    pairs: pd.DataFrame
    strong_links: pd.DataFrame
    stats: GraphStats


def spark_literal(text: str) -> str:
    """A Spark SQL string constant; text beyond letters, digits and ``_ .:-`` goes as UTF-8 hex,
    which reads the same whatever the session's string-escape settings."""
    if re.fullmatch(r"[\w .:-]*", text, flags=re.ASCII):
        return f"'{text}'"
    return f"decode(X'{text.encode().hex()}', 'UTF-8')"


def spark_identifier(name: str) -> str:
    """A quoted Spark SQL column name."""
    return "`" + name.replace("`", "``") + "`"


def epoch_sql(column: str) -> str:
    """Seconds since 1970 as a double, like DuckDB's ``epoch()`` (the session time zone is UTC)."""
    return f"(unix_micros(CAST({column} AS TIMESTAMP)) / 1000000D)"


def edges_sql(config: Config) -> str:
    """One GROUP BY scan per kind: contributor–identifier edges, counts, first and last seen."""
    scans = []
    for kind in config.input.kinds:
        column = spark_identifier(identifier_column(kind))
        scans.append(
            f"SELECT {CONTRIBUTOR}, {spark_literal(kind)} AS kind, {column} AS identifier, "
            f"count(*) AS n_events, CAST(min({TIME}) AS TIMESTAMP_NTZ) AS first_seen, "
            f"CAST(max({TIME}) AS TIMESTAMP_NTZ) AS last_seen "
            f"FROM events WHERE {column} IS NOT NULL GROUP BY {CONTRIBUTOR}, {column}"
        )
    return " UNION ALL ".join(scans)


def identifiers_sql(config: Config) -> str:
    """Degree, hub and infrastructure flags, and the pair weight of every shared identifier.

    The rules are those of ``graph.identifiers_sql``: only identifiers used by two or more are
    kept; an identifier used by more than its kind's ``hub_cap`` is ``crowded`` and left out of
    the pairs, and a hub too unless its kind is strong (a payout account, linked through
    ``strong_links`` instead); infrastructure (a device or IP most of whose users have one of
    their own) is weighed by ``infrastructure_weight``;
    IPs shared by more than ``solid_ip_max_contributors`` are not solid.
    """
    g = config.graph
    kinds = config.input.kinds
    caps = " ".join(
        f"WHEN {spark_literal(kind)} THEN {spec.hub_cap}" for kind, spec in kinds.items()
    )
    weights = " ".join(
        f"WHEN {spark_literal(kind)} THEN {spec.weight!r}" for kind, spec in kinds.items()
    )
    sharable = (
        ", ".join(
            spark_literal(kind)
            for kind, spec in kinds.items()
            if spec.resolved_role(kind) in ("device", "ip")
        )
        or "NULL"
    )
    ips = (
        ", ".join(
            spark_literal(kind) for kind, spec in kinds.items() if spec.resolved_role(kind) == "ip"
        )
        or "NULL"
    )
    strong = ", ".join(spark_literal(kind) for kind, spec in kinds.items() if spec.strong) or "NULL"
    infrastructure = f"coalesce(s.own_share >= {g.infrastructure_own_share!r}, false)"
    return f"""
    WITH degree AS (
        SELECT kind, identifier, count(*) AS degree FROM edges GROUP BY kind, identifier
    ), has_own AS (
        SELECT e.{CONTRIBUTOR}, e.kind, bool_or(d.degree = 1) AS has_own
        FROM edges e JOIN degree d USING (kind, identifier) GROUP BY e.{CONTRIBUTOR}, e.kind
    ), own_share AS (
        SELECT e.kind, e.identifier, avg(CAST(o.has_own AS DOUBLE)) AS own_share
        FROM edges e JOIN degree d USING (kind, identifier)
        JOIN has_own o USING ({CONTRIBUTOR}, kind)
        WHERE d.degree >= {g.infrastructure_min_contributors} AND e.kind IN ({sharable})
        GROUP BY e.kind, e.identifier
    )
    SELECT d.kind, d.identifier, d.degree,
        d.degree > (CASE d.kind {caps} END) AS crowded,
        d.degree > (CASE d.kind {caps} END) AND d.kind NOT IN ({strong}) AS hub,
        {infrastructure} AS infrastructure,
        d.kind IN ({strong}) AS strong,
        NOT (d.kind IN ({ips}) AND d.degree > {g.solid_ip_max_contributors}) AS solid,
        (CASE d.kind {weights} END)
            * (CASE WHEN {infrastructure} THEN {g.infrastructure_weight!r} ELSE 1.0 END)
            * {DEGREE_TWO_LOG!r} / ln(d.degree + 1) AS weight
    FROM degree d LEFT JOIN own_share s USING (kind, identifier) WHERE d.degree >= 2
    """


NO_LOCKSTEP_SQL = (
    "SELECT CAST(NULL AS STRING) AS a, CAST(NULL AS STRING) AS b, "
    "CAST(NULL AS BIGINT) AS co_targets WHERE false"
)


def pairs_sql(config: Config) -> str:
    """The weighted contributor projection: identifier pairs plus lockstep pairs."""
    lockstep = config.graph.lockstep_weight
    weight = (
        f"coalesce(i.weight, 0) + (CASE WHEN l.co_targets IS NULL THEN 0 ELSE {lockstep!r} END)"
    )
    no_kinds = "CAST(array() AS ARRAY<STRING>)"
    return f"""
    SELECT a, b, {weight} AS weight,
        coalesce(i.n_shared, 0) AS n_shared, coalesce(l.co_targets, 0) AS co_targets,
        coalesce(i.strong, false) AS strong,
        concat(coalesce(i.kinds, {no_kinds}),
            CASE WHEN l.co_targets IS NULL THEN {no_kinds} ELSE array('lockstep') END) AS kinds,
        l.co_targets IS NOT NULL OR coalesce(i.solid, false) AS solid
    FROM ({identifier_pairs_sql(SPARK_KIND_LIST)}) i FULL OUTER JOIN lockstep_pairs l USING (a, b)
    WHERE {weight} >= {config.graph.min_pair_weight!r}
    """


LINKED_EDGES_SQL = f"""
    SELECT * FROM edges e LEFT SEMI JOIN (
        SELECT a AS {CONTRIBUTOR} FROM pairs UNION SELECT b FROM pairs
        UNION SELECT {CONTRIBUTOR} FROM strong_links
    ) p USING ({CONTRIBUTOR})
"""

LINKED_IDENTIFIERS_SQL = (
    "SELECT * FROM identifiers i LEFT SEMI JOIN linked_edges e USING (kind, identifier)"
)

VIEWS = (
    "events",
    "edges",
    "identifiers",
    "lockstep_pairs",
    "pairs",
    "strong_links",
    "linked_edges",
)


def _materialize(session: SparkSession, name: str, query: str) -> DataFrame:
    """Compute ``query`` once, keep its rows on the executors and name it for the next queries.

    A local checkpoint, not ``cache()``: Spark does not find cached views inside queries with
    CTEs, so each later query would compute them again from the events.
    """
    frame = session.sql(query).localCheckpoint(eager=True)
    frame.createOrReplaceTempView(name)
    return frame


def _to_pandas(frame: DataFrame) -> pd.DataFrame:
    """Collect through Arrow (PySpark's own ``toPandas`` warns under pandas 3)."""
    return frame.toArrow().to_pandas()


def _check_columns(events: DataFrame, path: str, config: Config) -> None:
    needed = [CONTRIBUTOR, TIME, *(identifier_column(kind) for kind in config.input.kinds)]
    if config.input.target:
        needed.append(TARGET)
    missing = [c for c in needed if c not in events.columns]
    if missing:
        raise InputError(
            f"{path}: events Parquet lacks the columns {', '.join(missing)}; expected the columns "
            "of ringfinder's events table (contributor_id, event_time, target, id_<kind> per kind)"
        )


@contextmanager
def _spark_session(master: str, spark: SparkSession | None) -> Iterator[SparkSession]:
    """A fresh session (own settings and views) on ``spark``, or on a new local/cluster Spark.

    The session reads times in UTC, as DuckDB does. A Spark started here is stopped at the end;
    one passed in is left running.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ConfigError(NO_PYSPARK) from None
    started = None
    if spark is None:
        if master.startswith("local") and not (shutil.which("java") or os.environ.get("JAVA_HOME")):
            raise ConfigError(
                f'engine = "spark" with spark_master = {master!r} runs Spark here, which needs '
                "Java 17 or later on PATH or in JAVA_HOME"
            )
        if SparkSession.getActiveSession() is None:
            started = (
                SparkSession.builder.master(master)
                .appName("ringfinder")
                .config("spark.ui.showConsoleProgress", "false")
                .getOrCreate()
            )
        spark = started or SparkSession.builder.getOrCreate()
    session = spark.newSession()
    session.conf.set("spark.sql.session.timeZone", "UTC")
    try:
        yield session
    finally:
        for view in VIEWS:
            session.catalog.dropTempView(view)
        if started is not None:
            started.stop()


def project_with_spark(
    events_parquet: str,
    *,
    config: Config,
    master: str = "local[2]",
    spark: SparkSession | None = None,
    linked_only: bool = False,
) -> SparkProjection:
    """Build the graph tables of ``graph.build_graph`` on Spark, from a Parquet file of events.

    Parameters
    ----------
    events_parquet : Parquet file(s) or folder with the columns of the ``events`` table
        (``contributor_id``, ``event_time``, ``target``, ``id_<kind>`` per kind), at a path every
        Spark executor can read.
    config : the resolved configuration (``[input]`` kinds and ``[graph]`` rules are used).
    master : where Spark runs when ``spark`` is not given: ``local[2]``, ``spark://host:7077``,
        ``yarn``, ``k8s://...``.
    spark : a running SparkSession to use instead (left running; its settings are untouched).
    linked_only : return only the edges and identifiers of contributors in a pair or a strong
        link, which is all that detection and scoring read; ``stats`` still counts everything.

    Returns
    -------
    SparkProjection with ``edges``, ``identifiers``, ``lockstep_pairs``, ``pairs`` and
    ``strong_links`` as pandas DataFrames (the columns of the DuckDB tables), and ``stats`` as
    ``build_graph`` reports them.

    Raises
    ------
    ConfigError : pyspark is not installed, or a local Spark has no Java.
    InputError : the Parquet lacks a column of the events table.

    Examples
    --------
    >>> projection = project_with_spark("events.parquet", config=Config())  # doctest: +SKIP
    >>> projection.pairs[["a", "b", "weight"]].head()  # doctest: +SKIP
    """
    with _spark_session(master, spark) as session:
        events = session.read.parquet(events_parquet)
        _check_columns(events, events_parquet, config)
        events.createOrReplaceTempView("events")
        lockstep_query = (
            lockstep_pairs_sql(config, epoch=epoch_sql, materialized="")
            if config.input.target
            else NO_LOCKSTEP_SQL
        )
        _materialize(session, "edges", edges_sql(config))
        _materialize(session, "identifiers", identifiers_sql(config))
        lockstep_pairs = _to_pandas(_materialize(session, "lockstep_pairs", lockstep_query))
        pairs = _to_pandas(_materialize(session, "pairs", pairs_sql(config)))
        strong_links = _to_pandas(_materialize(session, "strong_links", strong_links_sql()))
        if linked_only:
            edges = _to_pandas(_materialize(session, "linked_edges", LINKED_EDGES_SQL))
            identifiers = _to_pandas(session.sql(LINKED_IDENTIFIERS_SQL))
        else:
            edges = _to_pandas(session.table("edges"))
            identifiers = _to_pandas(session.table("identifiers"))
        counts = [row.asDict() for row in session.sql(IDENTIFIER_COUNTS_SQL).collect()]
        stats = graph_stats(counts, pairs=len(pairs), lockstep_pairs=len(lockstep_pairs))
    log.info("spark projected %d pairs from %d edges (%s)", stats.pairs, stats.edges, master)
    return SparkProjection(edges, identifiers, lockstep_pairs, pairs, strong_links, stats)


def register_projection(con: duckdb.DuckDBPyConnection, projection: SparkProjection) -> None:
    """Create the DuckDB tables of ``graph.build_graph`` from a Spark projection, with its types."""
    frames = {
        "edges": projection.edges,
        "identifiers": projection.identifiers,
        "lockstep_pairs": projection.lockstep_pairs,
        "pairs": projection.pairs,
        "strong_links": projection.strong_links,
    }
    for table, frame in frames.items():
        columns = ", ".join(
            f"CAST({name} AS {kind}) AS {name}" for name, kind in TABLE_TYPES[table].items()
        )
        con.register("rf_spark_frame", frame)
        try:
            con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT {columns} FROM rf_spark_frame")
        finally:
            con.unregister("rf_spark_frame")


@contextmanager
def _staging_folder(staging_dir: str) -> Iterator[Path]:
    """A new folder under ``staging_dir`` (or the system temp) for the events, removed after."""
    if staging_dir:
        Path(staging_dir).mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="ringfinder-spark-", dir=staging_dir or None))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def build_graph_on_spark(
    con: duckdb.DuckDBPyConnection,
    *,
    config: Config,
    privacy: Privacy = NO_PRIVACY,
    master: str = "local[*]",
    staging_dir: str = "",
    spark: SparkSession | None = None,
) -> GraphStats:
    """``graph.build_graph`` with the projection on Spark: events out as Parquet, tables back in.

    Writes the ``events`` table of ``con``, identifiers normalised (and pseudonymised with a
    ``privacy`` key), to Parquet in a new folder under ``staging_dir`` (which
    a cluster's executors must see at the same path), projects it with ``project_with_spark``
    and creates ``edges``, ``identifiers``, ``lockstep_pairs``, ``pairs`` and ``strong_links``
    on ``con`` (edges and identifiers only of linked contributors), so that detection and
    scoring run unchanged.

    Examples
    --------
    >>> stats = build_graph_on_spark(con, config=config, master="spark://head:7077",
    ...                              staging_dir="/mnt/shared/tmp")  # doctest: +SKIP
    """
    with _staging_folder(staging_dir) as folder:
        path = folder / "events.parquet"
        events = normalised_events_sql(con, config.input, privacy)
        con.execute(f"COPY ({events}) TO {sql_literal(str(path))} (FORMAT parquet)")
        projection = project_with_spark(
            str(path), config=config, master=master, spark=spark, linked_only=True
        )
    register_projection(con, projection)
    return projection.stats
