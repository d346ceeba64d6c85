"""Ingest: read event exports into DuckDB, map columns, parse, quarantine, de-duplicate.

Creates two tables on the connection: ``events`` (one clean row per accepted, de-duplicated
input row, identifiers as read) and ``quarantine`` (every rejected row as it came, with a
reason). Nothing is lost: rows read = accepted + quarantined + exact duplicates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from ringfinder.config import InputConfig
from ringfinder.errors import InputError
from ringfinder.ingest.checks import check_encoding
from ringfinder.ingest.inputs import fingerprint, read_known_bad, resolve_inputs
from ringfinder.ingest.stage import rejected_lines, stage_file, stage_query
from ringfinder.normalise import (
    create_identifier_map,
    mapped_sql,
    register_functions,
    sql_identifier,
)
from ringfinder.privacy import NO_PRIVACY, PSEUDONYM_FUNCTION, Privacy, register_pseudonym_function
from ringfinder.schema import (
    CONTRIBUTOR,
    EVENT_TYPE,
    TARGET,
    TIME,
    identifier_column,
    raw_identifier_column,
)

__all__ = [
    "IngestResult",
    "normalised_events_sql",
    "read_events",
    "read_known_bad",
    "resolve_inputs",
]


@dataclass
class IngestResult:
    """Row accounting and input fingerprints of one ingest."""

    rows_read: int
    rows_accepted: int
    rows_quarantined: int
    rows_duplicate: int
    contributors: int
    quarantine_reasons: dict[str, int]
    inputs: list[dict[str, Any]] = field(default_factory=list)
    quarantine_sources: dict[str, int] = field(default_factory=dict)  # most rejected first


def _respelled_contributors_sql(config: InputConfig, *, pseudonymised: bool) -> str:
    """Contributor ids (``raw``) whose canonical ``spelling`` differs from how they came.

    With ``input.contributor_ignore_case`` ids that differ only in case are one contributor,
    spelled as the previous run spelled it (``rf_known``: its ids), else as its most frequent
    spelling (ties: the smallest), so case noise in an export neither splits a contributor nor
    changes, from one run to the next, the id that rule engines see. Only the ids that change
    are listed: most have one spelling, and a small map is cheap to join. Reads ``rf_spelled``
    (every id as it came, with its rows). Tokens cannot be spelled back: with pseudonymised
    ids the previous run decides only among this run's spellings.

    Of two spellings of one id at most one is all lower case, so only ids with a spelling that
    lower() changes can have two: looking among those instead of grouping every id by its lower
    case took 0.2 s instead of 1.0 s at 30M events.
    """
    if not config.contributor_ignore_case:
        return "SELECT raw, raw AS spelling FROM rf_spelled WHERE false"
    if pseudonymised:  # rf_known holds tokens
        known = f"{PSEUDONYM_FUNCTION}('contributor', raw) IN (SELECT id FROM rf_known)"
        folded_known, earlier = "", ""
    else:
        known = "raw IN (SELECT id FROM rf_known)"
        folded_known = "UNION SELECT lower(id) FROM rf_known WHERE lower(id) <> id"
        earlier = (
            "UNION ALL SELECT id, 0, false FROM rf_known ANTI JOIN rf_spelled ON id = raw "
            "WHERE lower(id) IN (SELECT folded FROM folded)"
        )
    return f"""
    WITH folded AS (
        SELECT lower(raw) AS folded FROM rf_spelled WHERE lower(raw) <> raw {folded_known}
    ), spellings AS (
        SELECT raw, n, true AS here FROM rf_spelled WHERE lower(raw) IN (SELECT folded FROM folded)
        {earlier}
    ), classes AS (
        SELECT *, count(*) OVER (PARTITION BY lower(raw)) AS spellings,
            bool_or(here) OVER (PARTITION BY lower(raw)) AS seen
        FROM spellings
    )
    SELECT raw, spelling FROM (
        SELECT raw, here,
            first(raw ORDER BY {known} DESC, n DESC, raw) OVER (PARTITION BY lower(raw)) AS spelling
        FROM classes WHERE spellings > 1 AND seen
    ) WHERE here AND raw <> spelling"""


# Rows whose hashes are sorted at once when looking for exact duplicates: at 10M rows, three
# slices of up to 5M kept the run's peak at 1.95 GiB instead of 2.05 (one slice), in the same time.
HASHES_PER_SLICE = 5_000_000


def _drop_exact_duplicates(con: duckdb.DuckDBPyConnection, data: Sequence[str]) -> None:
    """Delete all but the first of each set of identical rows of ``rf_checked``.

    Rows whose hashes differ differ, so only the few rows whose hash repeats are compared
    column by column: no DISTINCT over every row's text. A hash repeats when, sorted, the next
    one is the same: sorting took 2.2 s where grouping the hashes took 2.7-3.2 s at 30M rows,
    almost all of them unique. Each step is a table of its own and the hashes are sorted slice
    by slice of the hash space: grouping 100M at once needed more memory in one piece than
    DuckDB could spill under a 6GB limit.
    """
    columns = ", ".join([*(sql_identifier(c) for c in data), "rf_hash"])
    ((rows,),) = con.execute("SELECT count(*) FROM rf_checked").fetchall()
    slices = max(1, math.ceil(rows / HASHES_PER_SLICE))
    con.execute("CREATE TEMP TABLE rf_repeated (rf_hash UBIGINT)")
    for part in range(slices):
        con.execute(f"""
            INSERT INTO rf_repeated SELECT DISTINCT rf_hash FROM (
                SELECT rf_hash, lead(rf_hash) OVER (ORDER BY rf_hash) AS next FROM rf_checked
                WHERE rf_hash % {slices} = {part}
            ) WHERE rf_hash = next
        """)
    con.execute(f"""
        CREATE TEMP TABLE rf_extra AS SELECT rowid AS extra FROM rf_checked
        SEMI JOIN rf_repeated USING (rf_hash)
        QUALIFY row_number() OVER (PARTITION BY {columns} ORDER BY rf_row) > 1
    """)
    con.execute("DELETE FROM rf_checked WHERE rowid IN (SELECT extra FROM rf_extra)")
    con.execute("DROP TABLE rf_repeated")
    con.execute("DROP TABLE rf_extra")


def _drop_columns(con: duckdb.DuckDBPyConnection, table: str, columns: Sequence[str]) -> None:
    for column in columns:
        con.execute(f"ALTER TABLE {table} DROP COLUMN {sql_identifier(column)}")


def _renumbered_sql(con: duckdb.DuckDBPyConnection, checked: str, rejected: str) -> str:
    """``checked`` with each row numbered as a data row of its file, counting rejected lines.

    The reader numbers only the rows it kept: after the i-th rejected line (data row r) the
    kept rows are i behind. ``rf_skips`` holds, per file, how many kept rows come before
    each run of rejected lines and how many lines are skipped by its end.
    """
    con.execute(f"""
        CREATE TEMP TABLE rf_skips AS SELECT source, kept_before, max(skipped) AS skipped
        FROM (SELECT source, row - row_number() OVER w AS kept_before,
                  row_number() OVER w AS skipped
              FROM ({rejected}) WINDOW w AS (PARTITION BY source ORDER BY row))
        GROUP BY ALL
    """)
    return (
        f"SELECT q.source, q.row + coalesce(s.skipped, 0) AS row, q.reason, q.raw "
        f"FROM ({checked}) q ASOF LEFT JOIN rf_skips s "
        f"ON q.source = s.source AND q.row > s.kept_before"
    )


def _build_tables(
    con: duckdb.DuckDBPyConnection,
    parts: list[str],
    rejects: list[str],
    config: InputConfig,
    privacy: Privacy,
) -> int:
    """Union the staged parts, split them into ``events`` and ``quarantine``; count contributors.

    The staged rows become ``events`` in place: rejected rows and exact duplicates are deleted,
    re-spelled contributor ids updated, and the helper columns dropped. Identifiers stay as
    read (``raw_<kind>``): the graph normalises them once per distinct value.
    """
    if len(parts) == 1:
        con.execute(f"ALTER TABLE {parts[0]} RENAME TO rf_checked")
    else:
        union = " UNION ALL BY NAME ".join(f"SELECT * FROM {p}" for p in parts)
        con.execute(f"CREATE TEMP TABLE rf_checked AS {union}")
        for part in parts:
            con.execute(f"DROP TABLE {part}")
    checked = (
        "SELECT rf_source AS source, CAST(rf_row AS BIGINT) AS row, rf_reason AS reason, "
        "rf_raw_text AS raw FROM rf_checked WHERE rf_reason IS NOT NULL"
    )
    rejected = [f"SELECT * FROM {table}" for table in rejects]
    if rejected:
        checked = _renumbered_sql(con, checked, " UNION ALL ".join(rejected))
    quarantine = " UNION ALL ".join([checked, *rejected])
    if privacy.key:
        quarantine = f"SELECT source, row, reason, {PSEUDONYM_FUNCTION}('row', raw) AS raw FROM ({quarantine})"
    con.execute(f"CREATE TABLE quarantine AS {quarantine}")
    if rejects:
        for table in [*rejects, "rf_skips"]:
            con.execute(f"DROP TABLE {table}")
    con.execute(
        "CREATE TEMP TABLE rf_counts AS SELECT (SELECT count(*) FROM rf_checked) + "
        "(SELECT count(*) FROM quarantine WHERE reason LIKE 'malformed line%') AS n"
    )
    con.execute("DELETE FROM rf_checked WHERE rf_reason IS NOT NULL")
    # Each helper column goes as soon as its step is done: at 10M rows each holds 80-160 MB.
    _drop_columns(con, "rf_checked", ["rf_source", "rf_reason", "rf_raw_text"])
    kinds = [f"rf_kind_{i}" for i in range(len(config.kinds))]
    _drop_exact_duplicates(con, ["rf_who", "rf_time", "rf_event_type", "rf_target", *kinds])
    _drop_columns(con, "rf_checked", ["rf_row", "rf_hash"])
    con.execute(
        "CREATE TEMP TABLE rf_spelled AS SELECT rf_who AS raw, count(*) AS n FROM rf_checked GROUP BY ALL"
    )
    pseudonymised = bool(privacy.key and privacy.contributors)
    respelled = _respelled_contributors_sql(config, pseudonymised=pseudonymised)
    con.execute(f"CREATE TEMP TABLE rf_contributors AS {respelled}")
    # Each re-spelled id is one spelling fewer, unless it takes the previous run's spelling:
    # no second pass over every id's lower case.
    ((contributors,),) = con.execute(
        "SELECT (SELECT count(*) FROM rf_spelled) - (SELECT count(*) FROM rf_contributors) + "
        "(SELECT count(DISTINCT spelling) FROM rf_contributors "
        "ANTI JOIN rf_spelled ON spelling = rf_spelled.raw)"
    ).fetchall()
    if pseudonymised:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE rf_contributors AS SELECT raw, "
            f"{PSEUDONYM_FUNCTION}('contributor', coalesce(s.spelling, raw)) AS spelling "
            "FROM rf_spelled LEFT JOIN rf_contributors s USING (raw)"
        )
    con.execute(
        "UPDATE rf_checked SET rf_who = s.spelling FROM rf_contributors s WHERE rf_who = s.raw"
    )
    names = {
        "rf_who": CONTRIBUTOR,
        "rf_time": TIME,
        "rf_event_type": EVENT_TYPE,
        "rf_target": TARGET,
    }
    names |= {k: raw_identifier_column(name) for k, name in zip(kinds, config.kinds, strict=True)}
    for old, new in names.items():
        con.execute(f"ALTER TABLE rf_checked RENAME COLUMN {old} TO {sql_identifier(new)}")
    con.execute("ALTER TABLE rf_checked RENAME TO events")
    for table in ("rf_contributors", "rf_spelled", "rf_known"):
        con.execute(f"DROP TABLE {table}")
    return int(contributors)


def normalised_events_sql(
    con: duckdb.DuckDBPyConnection, config: InputConfig, privacy: Privacy = NO_PRIVACY
) -> str:
    """Query of ``events`` with each kind's identifiers in normal form (``id_<kind>``).

    Creates the identifier maps it joins (``rf_map_<i>``) on ``con``. For engines that take
    events with normal identifiers (Spark), and for tests; ``graph`` normalises the fewer
    distinct values of the contributor–identifier edges instead.
    """
    selects = [CONTRIBUTOR, TIME, EVENT_TYPE, TARGET]
    joins = []
    for index, (name, kind) in enumerate(config.kinds.items()):
        table, raw = f"rf_map_{index}", sql_identifier(raw_identifier_column(name))
        create_identifier_map(con, table, name, kind.normaliser, "events", raw, config, privacy)
        selects.append(
            f"{mapped_sql(table, f'events.{raw}')} AS {sql_identifier(identifier_column(name))}"
        )
        joins.append(f"LEFT JOIN {table} ON {table}.raw = events.{raw}")
    return f"SELECT {', '.join(selects)} FROM events {' '.join(joins)}"


def read_events(
    con: duckdb.DuckDBPyConnection,
    inputs: Sequence[str | Path] = (),
    *,
    config: InputConfig,
    sql: str | None = None,
    relation: str | None = None,
    privacy: Privacy = NO_PRIVACY,
    previous_ids: Sequence[str] | pd.Series = (),
) -> IngestResult:
    """Read events into the ``events`` and ``quarantine`` tables of ``con``.

    Parameters
    ----------
    con : DuckDB connection (its TimeZone is set to UTC here).
    inputs : files, globs or folders of CSV (optionally gzipped), Parquet or JSON lines.
    config : the ``[input]`` section: column mapping, identifier kinds, placeholders.
    sql : a DuckDB query whose result is the input, instead of files.
    relation : name of a table or view already on ``con`` to use as the input.
    privacy : with a key, contributor ids (if asked) become keyed tokens as they are read, and
        quarantined rows keep a token of their text instead of the text; identifiers become
        tokens where the graph normalises them.
    previous_ids : the previous run's contributor ids: with ``contributor_ignore_case`` an id
        keeps the spelling it had there.

    Examples
    --------
    >>> con = duckdb.connect()
    >>> read_events(con, ["fixtures/sample/events.csv.gz"], config=InputConfig()).rows_read > 0
    True
    """
    con.execute("SET TimeZone = 'UTC'")
    register_functions(con)
    parts: list[str] = []
    rejects: list[str] = []
    if sql is not None or relation is not None:
        label = "sql" if sql is not None else str(relation)
        parts.append(stage_query(con, sql or f"SELECT * FROM {relation}", label, config))
    files = resolve_inputs(inputs, forced_format=config.format) if inputs else []
    if not parts and not files:
        raise InputError("no input: give files, a folder, a glob or --sql")
    # The inputs' SHA-256 (0.8 s at 30M events) is taken while DuckDB stages them: hashlib
    # lets go of the GIL.
    with ThreadPoolExecutor(max_workers=1) as hasher:
        fingerprints = hasher.map(fingerprint, [path for path, _ in files])
        for index, (path, fmt) in enumerate(files):
            parts.append(stage_file(con, path, fmt, index, config))
            rejected = rejected_lines(con, index, path, fmt)
            if rejected:
                check_encoding(con, index, path, config)
                rejects.append(rejected)
        if privacy.key:
            register_pseudonym_function(con, privacy.key)
        con.register("rf_known_ids", pd.DataFrame({"id": pd.Series(previous_ids, dtype=str)}))
        con.execute("CREATE TEMP TABLE rf_known AS SELECT DISTINCT id FROM rf_known_ids")
        con.unregister("rf_known_ids")
        contributors = _build_tables(con, parts, rejects, config, privacy)
        result = _account(con, contributors, list(fingerprints))
    if result.rows_read == 0:
        names = ", ".join(str(p) for p, _ in files) or "sql"
        raise InputError(f"{names}: no rows in the input")
    return result


def _account(
    con: duckdb.DuckDBPyConnection, contributors: int, fingerprints: list[dict[str, Any]]
) -> IngestResult:
    read = con.execute("SELECT n FROM rf_counts").fetchone()[0]  # type: ignore[index]
    quarantined = con.execute("SELECT count(*) FROM quarantine").fetchone()[0]  # type: ignore[index]
    accepted = con.execute("SELECT count(*) FROM events").fetchone()[0]  # type: ignore[index]
    reasons = dict(
        con.execute(
            "SELECT reason, count(*) FROM quarantine GROUP BY reason ORDER BY reason"
        ).fetchall()
    )
    sources = dict(
        con.execute(
            "SELECT source, count(*) AS n FROM quarantine GROUP BY source ORDER BY n DESC, source"
        ).fetchall()
    )
    return IngestResult(
        rows_read=read,
        rows_accepted=accepted,
        rows_quarantined=quarantined,
        rows_duplicate=read - accepted - quarantined,
        contributors=contributors,
        quarantine_reasons=reasons,
        inputs=fingerprints,
        quarantine_sources=sources,
    )
