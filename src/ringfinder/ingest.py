"""Ingest: read event exports into DuckDB, map columns, parse, normalise, quarantine.

Creates two tables on the connection: ``events`` (one clean row per accepted, de-duplicated
input row) and ``quarantine`` (every rejected row as it came, with a reason). Nothing is lost:
rows read = accepted + quarantined + exact duplicates.
"""

from __future__ import annotations

import codecs
import csv
import glob
import gzip
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from ringfinder.config import InputConfig
from ringfinder.errors import InputError
from ringfinder.normalise import (
    create_identifier_map,
    mapped_sql,
    register_functions,
    sql_identifier,
    sql_literal,
    sql_trim,
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

log = logging.getLogger(__name__)

FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
META = ("rf_source", "rf_row")
JSON_LINE = "rf_line"
# json_type raises on invalid JSON, and AND does not short-circuit: guard it with CASE.
JSON_IS_OBJECT = (
    f"coalesce(CASE WHEN json_valid({JSON_LINE}) THEN json_type({JSON_LINE}) END = 'OBJECT', false)"
)
EARLIEST, LATEST = "1990-01-01", "2100-01-01"
# DuckDB reads UTF-8 only; these byte-order marks say a text file is in another encoding.
FOREIGN_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)
HEAD_BYTES = 1 << 16
# Parquet column types that are not one value per row: a mapped column of these is unusable.
NESTED_TYPES = ("STRUCT", "MAP", "UNION")


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


def _format_of(path: Path, forced: str) -> str:
    if forced != "auto":
        return forced
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".zst"):
        suffixes = suffixes[:-1]
    fmt = FORMATS.get(suffixes[-1] if suffixes else "")
    if fmt is None:
        raise InputError(
            f"{path}: unknown file type; use .csv, .parquet or .jsonl, or set input.format"
        )
    return fmt


def resolve_inputs(
    inputs: Sequence[str | Path], *, forced_format: str = "auto"
) -> list[tuple[Path, str]]:
    """Expand globs and folders into a sorted list of (file, format)."""
    files: list[Path] = []
    for item in inputs:
        text = str(item)
        path = Path(text)
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and not p.name.startswith(".") and _known(p, forced_format)
            )
            if not found:
                raise InputError(f"{path}: folder holds no .csv, .parquet or .jsonl files")
            files.extend(found)
        elif any(ch in text for ch in "*?["):
            matched = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            if not matched:
                raise InputError(f"{text}: no input files match this pattern")
            files.extend(matched)
        elif path.is_file():
            files.append(path)
        else:
            raise InputError(f"{path}: input file not found")
    unique = sorted(dict.fromkeys(files))
    return [(p, _format_of(p, forced_format)) for p in unique]


def _known(path: Path, forced: str) -> bool:
    try:
        _format_of(path, forced)
    except InputError:
        return False
    return True


def _fingerprint(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def _duck_error(exc: Exception) -> str:
    """The first line of a DuckDB error, plus the line that says a CSV line was too long."""
    lines = str(exc).strip().splitlines()
    if not lines:
        return type(exc).__name__
    too_long = [line for line in lines[1:] if line.startswith("Maximum line size")]
    return "; ".join(lines[:1] + too_long)


def _file_head(path: Path) -> bytes | None:
    """The first bytes of a file, decompressed if gzipped; ``None`` when they cannot be read."""
    try:
        if path.suffix.lower() == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read(HEAD_BYTES)
        if path.suffix.lower() == ".zst":
            return None
        with path.open("rb") as handle:
            return handle.read(HEAD_BYTES)
    except (OSError, EOFError):
        return None  # DuckDB reports the unreadable or corrupt file


def _check_text(path: Path, fmt: str) -> None:
    """Refuse a CSV or JSON-lines file that is not UTF-8 text before DuckDB misreads it.

    A UTF-16 file would come out as column names full of NUL bytes, and a header line that is
    not UTF-8 would be rejected, making the first data line the header. Bad bytes further
    down are left to the reader, which quarantines those lines.
    """
    head = _file_head(path)
    if head is None:
        return
    for bom, encoding in FOREIGN_BOMS:
        if head.startswith(bom):
            raise InputError(
                f"{path}: file is {encoding} text (it starts with a {encoding} byte-order mark); "
                f"ringfinder reads UTF-8: re-encode it, e.g. iconv -f {encoding} -t UTF-8"
            )
    if fmt != "csv":
        return
    header, newline, _ = head.partition(b"\n")
    complete = bool(newline) or len(head) < HEAD_BYTES
    try:
        codecs.getincrementaldecoder("utf-8")().decode(header, final=complete)
        readable = b"\x00" not in header
    except UnicodeDecodeError:
        readable = False
    if not readable:
        raise InputError(
            f"{path}: the header line is not UTF-8 text (binary data, or another encoding such as "
            f"UTF-16 or Latin-1); re-encode the file as UTF-8, e.g. iconv -f ENCODING -t UTF-8"
        )


def _check_parquet_types(con: duckdb.DuckDBPyConnection, path: Path, config: InputConfig) -> None:
    """A mapped Parquet column must hold one value per row, not a struct, list or map."""
    types = {
        name.lower(): kind
        for name, kind, *_ in con.execute(
            f"DESCRIBE SELECT * FROM read_parquet({sql_literal(str(path))})"
        ).fetchall()
    }
    for key, column in _mapped_columns(config).items():
        kind = types.get(column.lower(), "")
        if kind.startswith(NESTED_TYPES) or kind.endswith("]"):
            raise InputError(
                f"{path}: column {column!r} ({key}) has the nested type {kind}; "
                f"expected text, a number or a timestamp"
            )


def _check_encoding(
    con: duckdb.DuckDBPyConnection, index: int, path: Path, config: InputConfig
) -> None:
    """A file with more non-UTF-8 lines than ``input.max_bad_fraction`` is refused whole."""
    # fetchall, not fetchone: an unfinished result blocks create_function on this connection.
    ((bad, lines),) = con.execute(
        f"SELECT count(DISTINCT line) FILTER (error_type = 'INVALID ENCODING'), "
        f"count(DISTINCT line) FROM rf_rejects_{index}"
    ).fetchall()
    if not bad:
        return
    lines += con.execute(f"SELECT count(*) FROM rf_part_{index}").fetchall()[0][0]
    if bad / lines > config.max_bad_fraction:
        raise InputError(
            f"{path}: {bad} of {lines} lines are not valid UTF-8, more than input.max_bad_fraction "
            f"= {config.max_bad_fraction}; the file looks binary or in another encoding such as "
            f"Latin-1: re-encode it as UTF-8, e.g. iconv -f LATIN1 -t UTF-8"
        )


def _mapped_columns(config: InputConfig) -> dict[str, str]:
    """Config key → source column, for every column the config maps."""
    mapped = {"input.contributor": config.contributor, "input.timestamp": config.timestamp}
    if config.event_type:
        mapped["input.event_type"] = config.event_type
    if config.target:
        mapped["input.target"] = config.target
    for name, kind in config.kinds.items():
        mapped[f"input.kinds.{name}.column"] = kind.column
    return mapped


def _scan_sql(path: Path, fmt: str, rejects: str) -> str:
    p = sql_literal(str(path))
    if fmt == "parquet":
        return (
            f"SELECT {sql_literal(str(path))} AS rf_source, file_row_number + 1 AS rf_row, "
            f"COLUMNS(* EXCLUDE (file_row_number))::VARCHAR "
            f"FROM read_parquet({p}, file_row_number = true)"
        )
    if fmt == "jsonl":
        return (
            f"SELECT * FROM (SELECT {p} AS rf_source, row_number() OVER () AS rf_row, "
            f"column0 AS {JSON_LINE} FROM read_csv({p}, columns = {{'column0': 'VARCHAR'}}, "
            f"header = false, delim = '\\x1e', quote = '', escape = '', auto_detect = false, "
            f"strict_mode = false, max_line_size = 67108864, store_rejects = true, "
            f"rejects_table = '{rejects}', rejects_scan = '{rejects}_scan')) "
            f"WHERE {JSON_LINE} IS NOT NULL AND trim({JSON_LINE}) <> ''"
        )
    return (
        f"SELECT {p} AS rf_source, row_number() OVER () AS rf_row, * "
        f"FROM read_csv({p}, all_varchar = true, header = true, sample_size = 20480, "
        f"max_line_size = 67108864, store_rejects = true, "
        f"rejects_table = '{rejects}', rejects_scan = '{rejects}_scan')"
    )


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    """Column names of a table, view or SELECT."""
    return [row[0] for row in con.execute(f"DESCRIBE {table}").fetchall()]


def _check_columns(source: str, present: Sequence[str], config: InputConfig) -> None:
    lowered = {c.lower() for c in present}
    for key, column in _mapped_columns(config).items():
        if column.lower() not in lowered:
            shown = ", ".join(c for c in present if c not in META and c != JSON_LINE)
            raise InputError(f"{source}: column {column!r} ({key}) not found; columns are: {shown}")


def _json_columns(config: InputConfig) -> str:
    """Select list that pulls the mapped keys out of JSON lines (only from object lines)."""
    is_object = JSON_IS_OBJECT
    parts = []
    for column in dict.fromkeys(_mapped_columns(config).values()):
        key = sql_literal(column)
        parts.append(
            f"CASE WHEN {is_object} THEN json_extract_string({JSON_LINE}, {key}) END "
            f"AS {sql_identifier(column)}"
        )
    return ", ".join(parts)


def _stage_file(
    con: duckdb.DuckDBPyConnection, path: Path, fmt: str, index: int, config: InputConfig
) -> str:
    """Read one file in one pass into a narrow staging table of checked rows; return its name."""
    table, rejects = f"rf_part_{index}", f"rf_rejects_{index}"
    scan = _scan_sql(path, fmt, rejects)
    if fmt in ("csv", "jsonl"):
        _check_text(path, fmt)
    try:
        if fmt == "parquet":
            _check_parquet_types(con, path, config)
        if fmt == "jsonl":
            con.execute(f"CREATE TEMP TABLE {table}_lines AS {scan}")
            _check_json_keys(con, f"{table}_lines", path, config)
            scan = f"SELECT *, {_json_columns(config)} FROM {table}_lines"
        present = _columns(con, scan)
        if fmt != "jsonl":
            if [c for c in present if c not in META] == ["column0"]:
                raise InputError(
                    f"{path}: file is empty; expected a header line naming the columns"
                )
            _check_columns(str(path), present, config)
        con.execute(f"CREATE TEMP TABLE {table} AS {_checked_sql(present, config, scan)}")
        if fmt == "jsonl":
            con.execute(f"DROP TABLE {table}_lines")
    except duckdb.Error as exc:
        raise InputError(f"{path}: cannot read as {fmt}: {_duck_error(exc)}") from None
    return table


def _check_json_keys(
    con: duckdb.DuckDBPyConnection, table: str, path: Path, config: InputConfig
) -> None:
    """A mapped key that no object line of a JSON file has is a missing column."""
    objects = JSON_IS_OBJECT
    if not con.execute(f"SELECT count(*) FROM {table} WHERE {objects}").fetchone()[0]:  # type: ignore[index]
        return  # no object at all: every line is quarantined with its reason
    for key, column in _mapped_columns(config).items():
        path_literal = sql_literal("$." + sql_identifier(column))
        found = con.execute(
            f"SELECT count(*) FROM {table} WHERE {objects} AND json_exists({JSON_LINE}, {path_literal})"
        ).fetchone()[0]  # type: ignore[index]
        if not found:
            raise InputError(f"{path}: key {column!r} ({key}) not found in any JSON object")


def _rejected_lines(con: duckdb.DuckDBPyConnection, index: int, path: Path) -> str | None:
    """Query of the lines DuckDB's CSV reader rejected for file ``index``, as quarantine rows."""
    tables = {row[0] for row in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    if f"rf_rejects_{index}" not in tables:
        return None
    # DuckDB logs one error per missing column: keep one row per rejected line.
    return (
        f"SELECT {sql_literal(str(path))} AS source, CAST(line AS BIGINT) AS row, "
        f"'malformed line: ' || lower(error_type::VARCHAR) AS reason, csv_line AS raw "
        f"FROM rf_rejects_{index} "
        f"QUALIFY row_number() OVER (PARTITION BY scan_id, file_id, line ORDER BY column_idx) = 1"
    )


def _stage_query(
    con: duckdb.DuckDBPyConnection, query: str, label: str, config: InputConfig
) -> str:
    """Run the input query once into a narrow staging table of checked rows."""
    scan = (
        f"SELECT {sql_literal(label)} AS rf_source, row_number() OVER () AS rf_row, "
        f"COLUMNS(*)::VARCHAR FROM ({query})"
    )
    try:
        present = _columns(con, scan)
        _check_columns(label, present, config)
        con.execute(f"CREATE TEMP TABLE rf_part_sql AS {_checked_sql(present, config, scan)}")
    except duckdb.Error as exc:
        raise InputError(f"{label}: query failed: {_duck_error(exc)}") from None
    return "rf_part_sql"


def _timestamp_sql(column: str) -> str:
    """Parse ISO 8601 (Z or offset), 'YYYY-MM-DD HH:MM:SS', epoch s or ms into a UTC TIMESTAMP.

    ``column`` holds the trimmed text.
    Text without '-' or ':' is read as a number: seconds below 1e11, milliseconds above.
    Everything else goes through DuckDB's TIMESTAMPTZ parser (the session runs in UTC).
    """
    t = column
    number = f"try_cast({t} AS DOUBLE)"
    return (
        f"(CASE WHEN NOT contains({t}, '-') AND NOT contains({t}, ':') THEN "
        f"(CASE WHEN abs({number}) < 1e11 THEN make_timestamp(CAST({number} * 1e6 AS BIGINT)) "
        f"WHEN abs({number}) < 1e14 THEN make_timestamp(CAST({number} * 1e3 AS BIGINT)) END) "
        f"ELSE CAST(try_cast({t} AS TIMESTAMPTZ) AS TIMESTAMP) END)"
    )


def _raw_json_sql(columns: Sequence[str]) -> str:
    """The row as it came: the JSON line itself, or an object of the row's text columns."""
    data = [c for c in columns if c not in META and c != JSON_LINE]
    pairs = ", ".join(f"{sql_literal(c)}, {sql_identifier(c)}" for c in data)
    obj = f"CAST(json_object({pairs}) AS VARCHAR)" if data else "NULL"
    return f"coalesce({JSON_LINE}, {obj})" if JSON_LINE in columns else obj


def _respelled_contributors_sql(config: InputConfig) -> str:
    """Contributor ids (``raw``) whose canonical ``spelling`` differs from how they came.

    With ``input.contributor_ignore_case`` ids that differ only in case are one contributor,
    spelled as its most frequent spelling (ties: the smallest), so case noise in an export
    neither splits a contributor nor changes the id that rule engines see. Only the ids that
    change are listed: most have one spelling, and a small map is cheap to join.
    """
    if not config.contributor_ignore_case:
        return "SELECT rf_who AS raw, rf_who AS spelling FROM rf_checked WHERE false"
    return """
    WITH spelled AS (SELECT rf_who AS raw, count(*) AS n FROM rf_checked GROUP BY ALL),
    folded AS (SELECT lower(raw) AS folded FROM spelled GROUP BY ALL HAVING count(*) > 1)
    SELECT raw, spelling FROM (
        SELECT raw, first(raw ORDER BY n DESC, raw) OVER (PARTITION BY lower(raw)) AS spelling
        FROM spelled WHERE lower(raw) IN (SELECT folded FROM folded)
    ) WHERE raw <> spelling"""


def _drop_exact_duplicates(con: duckdb.DuckDBPyConnection, data: Sequence[str]) -> None:
    """Delete all but the first of each set of identical rows of ``rf_checked``.

    Rows whose hashes differ differ, so only the few rows whose hash repeats are compared
    column by column: no DISTINCT over every row's text.
    """
    columns = ", ".join([*(sql_identifier(c) for c in data), "rf_hash"])
    con.execute(f"""
        DELETE FROM rf_checked WHERE rowid IN (
            SELECT rowid FROM rf_checked
            WHERE rf_hash IN (SELECT rf_hash FROM rf_checked GROUP BY ALL HAVING count(*) > 1)
            QUALIFY row_number() OVER (PARTITION BY {columns} ORDER BY rf_row) > 1)
    """)


def _checked_sql(columns: Sequence[str], config: InputConfig, source: str) -> str:
    """Every row of ``source``, narrowed to what later stages read, with its reject reason.

    A row keeps its contributor id (``rf_who``), time (``rf_time``), event type and target
    cleaned, its identifiers as read (``rf_kind_<i>``), and a 64-bit hash of all its columns
    (``rf_hash``): the other columns only matter for telling exact duplicates apart. A rejected
    row keeps its source and full text for the quarantine; the others leave them NULL, which
    costs nothing.
    """
    data = [c for c in columns if c not in META]
    null = "CAST(NULL AS VARCHAR)"
    event_type = (
        f"lower({sql_trim(sql_identifier(config.event_type))})" if config.event_type else null
    )
    target = f"nullif({sql_trim(sql_identifier(config.target))}, '')" if config.target else null
    identifiers = "".join(
        f"{sql_identifier(kind.column)} AS rf_kind_{index}, "
        for index, kind in enumerate(config.kinds.values())
    )
    placeholders = ", ".join(sql_literal(p.strip().lower()) for p in config.placeholders) or "NULL"
    not_json = ""
    if JSON_LINE in columns:
        not_json = (
            f"WHEN {JSON_LINE} IS NOT NULL AND NOT json_valid({JSON_LINE}) THEN 'malformed JSON line' "
            f"WHEN {JSON_LINE} IS NOT NULL AND NOT {JSON_IS_OBJECT} "
            f"THEN 'JSON line is not an object' "
        )
        # A nested value comes out as its JSON text: only text starting so is worth a look.
        for column in dict.fromkeys(_mapped_columns(config).values()):
            key = sql_literal("$." + sql_identifier(column))
            not_json += (
                f"WHEN CASE WHEN left({sql_identifier(column)}, 1) IN ('{{', '[') "
                f"THEN json_type({JSON_LINE}, {key}) IN ('OBJECT', 'ARRAY') END "
                f"THEN {sql_literal(f'nested JSON value for {column}')} "
            )
    reason = (
        f"CASE {not_json}WHEN rf_who IS NULL OR rf_who = '' "
        f"OR lower(rf_who) IN ({placeholders}) THEN 'missing contributor id' "
        f"WHEN rf_ts IS NULL OR rf_ts = '' THEN 'missing timestamp' "
        f"WHEN rf_time IS NULL THEN 'unparseable timestamp' "
        f"WHEN rf_time < TIMESTAMP '{EARLIEST}' OR rf_time >= TIMESTAMP '{LATEST}' "
        f"THEN 'timestamp out of range' END"
    )
    return f"""
    SELECT CASE WHEN rf_reason IS NOT NULL THEN rf_source END AS rf_source, rf_row,
        rf_who, rf_time, {event_type} AS rf_event_type, {target} AS rf_target, {identifiers}rf_reason, hash({", ".join(sql_identifier(c) for c in data)}) AS rf_hash,
        CASE WHEN rf_reason IS NOT NULL THEN {_raw_json_sql(columns)} END AS rf_raw_text
    FROM (SELECT *, {reason} AS rf_reason FROM (
        SELECT *, {_timestamp_sql("rf_ts")} AS rf_time FROM (
            SELECT *, {sql_trim(sql_identifier(config.contributor))} AS rf_who,
                {sql_trim(sql_identifier(config.timestamp))} AS rf_ts
            FROM ({source}))))
    """


def _build_tables(
    con: duckdb.DuckDBPyConnection,
    parts: list[str],
    rejects: list[str],
    config: InputConfig,
    privacy: Privacy,
) -> None:
    """Union the staged parts, then split them into ``events`` and ``quarantine``.

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
    quarantine_parts = [
        "SELECT rf_source AS source, CAST(rf_row AS BIGINT) AS row, rf_reason AS reason, "
        "rf_raw_text AS raw FROM rf_checked WHERE rf_reason IS NOT NULL",
        *rejects,
    ]
    quarantine = " UNION ALL ".join(quarantine_parts)
    if privacy.key:
        quarantine = f"SELECT source, row, reason, {PSEUDONYM_FUNCTION}('row', raw) AS raw FROM ({quarantine})"
    con.execute(f"CREATE TABLE quarantine AS {quarantine}")
    con.execute(
        "CREATE TEMP TABLE rf_counts AS SELECT (SELECT count(*) FROM rf_checked) + "
        "(SELECT count(*) FROM quarantine WHERE reason LIKE 'malformed line%') AS n"
    )
    con.execute("DELETE FROM rf_checked WHERE rf_reason IS NOT NULL")
    kinds = [f"rf_kind_{i}" for i in range(len(config.kinds))]
    _drop_exact_duplicates(con, ["rf_who", "rf_time", "rf_event_type", "rf_target", *kinds])
    spelling = _respelled_contributors_sql(config)
    if privacy.key and privacy.contributors:
        spelling = (
            f"SELECT raw, {PSEUDONYM_FUNCTION}('contributor', coalesce(s.spelling, raw)) AS spelling "
            f"FROM (SELECT DISTINCT rf_who AS raw FROM rf_checked) LEFT JOIN ({spelling}) s USING (raw)"
        )
    con.execute(f"CREATE TEMP TABLE rf_contributors AS {spelling}")
    con.execute(
        "UPDATE rf_checked SET rf_who = s.spelling FROM rf_contributors s WHERE rf_who = s.raw"
    )
    for column in ("rf_source", "rf_row", "rf_reason", "rf_hash", "rf_raw_text"):
        con.execute(f"ALTER TABLE rf_checked DROP COLUMN {column}")
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
    con.execute("DROP TABLE rf_contributors")


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
) -> IngestResult:
    """Read events into the ``events`` and ``quarantine`` tables of ``con``.

    Parameters
    ----------
    con : DuckDB connection (its TimeZone is set to UTC here).
    inputs : files, globs or folders of CSV (optionally gzipped), Parquet or JSON lines.
    config : the ``[input]`` section: column mapping, identifier kinds, placeholders.
    sql : a DuckDB query whose result is the input, instead of files.
    relation : name of a table or view already on ``con`` to use as the input.
    privacy : with a key, identifiers (and, if asked, contributor ids) become keyed tokens as
        they are read, and quarantined rows keep a token of their text instead of the text.

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
        parts.append(_stage_query(con, sql or f"SELECT * FROM {relation}", label, config))
    files = resolve_inputs(inputs, forced_format=config.format) if inputs else []
    if not parts and not files:
        raise InputError("no input: give files, a folder, a glob or --sql")
    for index, (path, fmt) in enumerate(files):
        parts.append(_stage_file(con, path, fmt, index, config))
        rejected = _rejected_lines(con, index, path)
        if rejected:
            _check_encoding(con, index, path, config)
            rejects.append(rejected)
    if privacy.key:
        register_pseudonym_function(con, privacy.key)
    _build_tables(con, parts, rejects, config, privacy)
    result = _account(con, [_fingerprint(path) for path, _ in files])
    if result.rows_read == 0:
        names = ", ".join(str(p) for p, _ in files) or "sql"
        raise InputError(f"{names}: no rows in the input")
    return result


def _account(con: duckdb.DuckDBPyConnection, fingerprints: list[dict[str, Any]]) -> IngestResult:
    read = con.execute("SELECT n FROM rf_counts").fetchone()[0]  # type: ignore[index]
    quarantined = con.execute("SELECT count(*) FROM quarantine").fetchone()[0]  # type: ignore[index]
    accepted, contributors = con.execute(
        f"SELECT count(*), count(DISTINCT {CONTRIBUTOR}) FROM events"
    ).fetchone()  # type: ignore[misc]
    reasons = dict(
        con.execute(
            "SELECT reason, count(*) FROM quarantine GROUP BY reason ORDER BY reason"
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
    )


def read_known_bad(path: str | Path) -> list[str]:
    """Contributor ids from a known-bad list: one id per line, or a CSV with a contributor_id column.

    Examples
    --------
    >>> read_known_bad("banned.txt")  # doctest: +SKIP
    ['c_0001', 'c_0042']
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        raise InputError(f"{path}: known-bad file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read known-bad file: {exc}") from None
    rows = list(csv.reader(lines))
    if not rows:
        raise InputError(f"{path}: known-bad file is empty")
    header = [cell.strip().lower() for cell in rows[0]]
    column, body = (header.index(CONTRIBUTOR), rows[1:]) if CONTRIBUTOR in header else (0, rows)
    ids = sorted({row[column].strip() for row in body if len(row) > column and row[column].strip()})
    if not ids:
        raise InputError(f"{path}: known-bad file lists no contributor id")
    return ids
