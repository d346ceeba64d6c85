"""Staging: each input read once into a narrow table of checked rows, rejects with reasons."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from pathlib import Path

import duckdb

from ringfinder.config import InputConfig
from ringfinder.errors import InputError
from ringfinder.frames import insertion_order_kept
from ringfinder.ingest.checks import (
    check_parquet_types,
    check_text,
    column_types,
    mapped_columns,
)
from ringfinder.ingest.dialect import Dialect, lone_carriage_return, read_dialect
from ringfinder.normalise import placeholder_list_sql, sql_identifier, sql_literal, sql_trim

JSON_LINE = "rf_line"
# The JSON type of a line ('OBJECT', 'ARRAY', ...), NULL when it is not JSON, BLANK_TYPE when
# there is nothing on it.
JSON_TYPE = "rf_json_type"
BLANK_TYPE = "blank"
# The reason of a blank JSON line while it is numbered, before it is left out.
BLANK_LINE = "blank line"
EARLIEST, LATEST = "1990-01-01", "2100-01-01"
# Parquet and query columns of these types hold times already: read as they are, not as text.
TIME_TYPES = (
    "TIMESTAMP",
    "TIMESTAMP WITH TIME ZONE",
    "TIMESTAMP_S",
    "TIMESTAMP_MS",
    "TIMESTAMP_NS",
    "DATE",
)
TYPED_TIME = "rf_typed_time"
# Columns the scans add: where a row came from, its time if the input holds it typed, and
# the JSON type of a JSON line.
META = ("rf_source", "rf_row", TYPED_TIME, JSON_TYPE)
RESERVED_PREFIX = "rf_"


def _duck_error(exc: Exception) -> str:
    """The first line of a DuckDB error, plus the line that says a CSV line was too long."""
    lines = str(exc).strip().splitlines()
    if not lines:
        return type(exc).__name__
    too_long = [line for line in lines[1:] if line.startswith("Maximum line size")]
    return "; ".join(lines[:1] + too_long)


def _typed_time_sql(types: dict[str, str], config: InputConfig) -> str:
    """Select item that keeps the timestamp column as it is, if it holds times; else ''.

    Turned into text and parsed back, a typed 10M-row column cost 8 s more of staging.
    """
    if types.get(config.timestamp.lower()) in TIME_TYPES:
        return f", {sql_identifier(config.timestamp)} AS {TYPED_TIME}"
    return ""


def _scan_sql(
    path: Path,
    fmt: str,
    rejects: str | None,
    typed_time: str = "",
    dialect: Dialect | None = None,
) -> str:
    """One pass over a file: its columns as text, where each row came from.

    Parquet and CSV rows carry their number (``rf_row``); JSON lines are numbered by where
    they land in the staged table (``_create_numbered``). The lines DuckDB's text reader cannot
    read go to the table ``rejects``; without one they are skipped (a look, not the staging).
    """
    p = sql_literal(str(path))
    if fmt == "parquet":
        return (
            f"SELECT {p} AS rf_source, file_row_number + 1 AS rf_row, "
            f"COLUMNS(* EXCLUDE (file_row_number))::VARCHAR{typed_time} "
            f"FROM read_parquet({p}, file_row_number = true)"
        )
    errors = (
        f"store_rejects = true, rejects_table = '{rejects}', rejects_scan = '{rejects}_scan'"
        if rejects
        else "ignore_errors = true"
    )
    if fmt == "jsonl":
        return (
            f"SELECT {p} AS rf_source, column0 AS {JSON_LINE} "
            f"FROM read_csv({p}, columns = {{'column0': 'VARCHAR'}}, "
            f"header = false, delim = '\\x1e', quote = '', escape = '', auto_detect = false, "
            f"strict_mode = false, max_line_size = 67108864, {errors})"
        )
    if dialect is None:  # DuckDB's sniffer finds the dialect
        options = "all_varchar = true, sample_size = 20480"
    else:
        columns = ", ".join(f"{sql_literal(c)}: 'VARCHAR'" for c in dialect.columns)
        options = (
            f"auto_detect = false, columns = {{{columns}}}, "
            f"delim = {sql_literal(dialect.delimiter)}, quote = '\"', escape = '\"'"
        )
    return (
        f"SELECT {p} AS rf_source, row_number() OVER () AS rf_row, * "
        f"FROM read_csv({p}, header = true, {options}, "
        f"max_line_size = 67108864, {errors})"
    )


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    """Column names of a table, view or SELECT."""
    return [row[0] for row in con.execute(f"DESCRIBE {table}").fetchall()]


def _json_scan(scan: str, config: InputConfig) -> str:
    """The JSON lines of ``scan`` with the mapped keys pulled out, and each line's JSON type.

    All keys come out of one parse of each line: a parse per key made staging 1M lines take
    3.9 s instead of 2.8. That parse fails exactly on the lines that are not JSON, and a JSON
    line starting with ``{`` is an object, so only the rest are parsed again for their type.
    A blank line has the type ``BLANK_TYPE``: it counts as a line, and is then left out.
    """
    columns = list(dict.fromkeys(mapped_columns(config).values()))
    keys = ", ".join(sql_literal(column) for column in columns)
    picked = ", ".join(
        f"rf_values[{place}] AS {sql_identifier(column)}"
        for place, column in enumerate(columns, start=1)
    )
    line = JSON_LINE
    return (
        f"SELECT * EXCLUDE (rf_values), {picked}, "
        f"CASE WHEN {line} IS NULL OR trim({line}) = '' THEN '{BLANK_TYPE}' "
        f"WHEN rf_values IS NULL THEN NULL WHEN starts_with({line}, '{{') THEN 'OBJECT' "
        f"ELSE TRY(json_type({line})) END AS {JSON_TYPE} "
        f"FROM (SELECT *, TRY(json_extract_string({line}, [{keys}])) AS rf_values FROM ({scan}))"
    )


def stage_file(
    con: duckdb.DuckDBPyConnection, path: Path, fmt: str, index: int, config: InputConfig
) -> str:
    """Read one file in one pass into a narrow staging table of checked rows; return its name."""
    table, rejects = f"rf_part_{index}", f"rf_rejects_{index}"
    head = check_text(path, fmt) if fmt in ("csv", "jsonl") else None
    try:
        typed_time, dialect = "", None
        if fmt == "csv":
            dialect = read_dialect(path, mapped_columns(config).values(), head)
        if fmt == "parquet":
            types = column_types(con, f"read_parquet({sql_literal(str(path))})")
            check_parquet_types(types, path, config)
            typed_time = _typed_time_sql(types, config)
        scan = _scan_sql(path, fmt, rejects, typed_time, dialect)
        if fmt == "jsonl":
            _check_reserved(str(path), mapped_columns(config).values())
            scan = _json_scan(scan, config)
        present = _columns(con, scan)
        if fmt != "jsonl":
            _check_reserved(str(path), _input_columns(present, typed_time))
            if [c for c in present if c not in META] == ["column0"]:
                raise InputError(
                    f"{path}: file is empty; expected a header line naming the columns"
                )
            _check_columns(str(path), present, config)
        checked = _checked_sql(present, config, scan)
        if fmt == "jsonl":
            _create_numbered(con, table, checked)
            _check_json_keys(con, table, path, config)
        else:  # numbered by the reader (Parquet) or by row_number() OVER (), in insertion order
            with nullcontext() if fmt == "parquet" else insertion_order_kept(con):
                con.execute(f"CREATE TEMP TABLE {table} AS {checked}")
    except duckdb.OutOfMemoryException:
        raise  # not the input's fault: the CLI says how to give it memory
    except duckdb.Error as exc:
        if fmt == "csv" and (line := lone_carriage_return(path)):
            raise InputError(
                f"{path}: line {line} holds a carriage return (\\r) outside quotes that ends no "
                f"line, which the CSV reader cannot read past: quote that field or remove the "
                f"\\r (e.g. tr -d '\\r')"
            ) from None
        raise InputError(f"{path}: cannot read as {fmt}: {_duck_error(exc)}") from None
    return table


def _create_numbered(con: duckdb.DuckDBPyConnection, table: str, checked: str) -> None:
    """Create ``table`` from the checked rows of a JSON-lines file, numbered as they came.

    In insertion order a table's rows keep the order of its input, so a row's place is its
    line: ``row_number() OVER ()`` would number them as well, but it reads its input on one
    thread, and JSON parsing is most of staging a JSON file. Blank lines count as lines, then
    are left out. (CSV keeps row_number(): there it held less memory at its peak.)
    """
    with insertion_order_kept(con):
        con.execute(f"CREATE TEMP TABLE {table}_unnumbered AS {checked}")
    con.execute(
        f"CREATE TEMP TABLE {table} AS SELECT rowid + 1 AS rf_row, * FROM {table}_unnumbered "
        f"WHERE rf_reason IS DISTINCT FROM '{BLANK_LINE}'"
    )
    con.execute(f"DROP TABLE {table}_unnumbered")


def rejected_lines(con: duckdb.DuckDBPyConnection, index: int, path: Path, fmt: str) -> str | None:
    """Table of the lines DuckDB's reader rejected for file ``index``, as quarantine rows.

    ``row`` is the data row, as for every other quarantined row: DuckDB numbers a CSV's header
    as line 1.
    """
    tables = {row[0] for row in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    if f"rf_rejects_{index}" not in tables:
        return None
    header = 1 if fmt == "csv" else 0
    # DuckDB's text of a line starts with the line breaks before it: the LF of a CRLF file,
    # and any blank lines.
    raw = "ltrim(csv_line, chr(13) || chr(10))"
    # DuckDB logs one error per missing column: keep one row per rejected line.
    con.execute(
        f"CREATE TEMP TABLE rf_rejected_{index} AS "
        f"SELECT {sql_literal(str(path))} AS source, CAST(line AS BIGINT) - {header} AS row, "
        f"'malformed line: ' || lower(error_type::VARCHAR) AS reason, {raw} AS raw "
        f"FROM rf_rejects_{index} "
        f"QUALIFY row_number() OVER (PARTITION BY scan_id, file_id, line ORDER BY column_idx) = 1"
    )
    return f"rf_rejected_{index}"


def _one_query(con: duckdb.DuckDBPyConnection, query: str, label: str) -> str:
    """The one SELECT in ``query``, without the ``;`` and comments after it.

    DuckDB's parser and tokenizer find the statement and its last token, so a ``;`` or ``)``
    inside a string or a comment is read as the user meant it.
    """
    statements = con.extract_statements(query)
    if not statements:
        raise InputError(f"{label}: the query is empty")
    if len(statements) > 1:
        raise InputError(f"{label}: give one query, not {len(statements)} statements")
    # PIVOT parses as MULTI: a query that reads as a subquery, so it is left to run.
    if statements[0].type not in (duckdb.StatementType.SELECT, duckdb.StatementType.MULTI):
        kind = statements[0].type.name
        article = "an" if kind[0] in "AEIOU" else "a"
        raise InputError(f"{label}: give a query (SELECT ...), not {article} {kind} statement")
    cut = len(query)
    for offset, token in reversed(duckdb.tokenize(query)):
        if token != duckdb.token_type.comment and query[offset] != ";":
            break
        cut = offset
    return query[:cut]


def stage_query(con: duckdb.DuckDBPyConnection, query: str, label: str, config: InputConfig) -> str:
    """Run the input query once into a narrow staging table of checked rows.

    The query is taken as a user writes it, with any ``;`` and comments after it, and read
    as a subquery.
    """
    try:
        query = _one_query(con, query, label)
        types = column_types(con, f"({query})")
        check_parquet_types(types, label, config)
        typed_time = _typed_time_sql(types, config)
        scan = (
            f"SELECT {sql_literal(label)} AS rf_source, row_number() OVER () AS rf_row, "
            f"COLUMNS(*)::VARCHAR{typed_time} FROM ({query})"
        )
        present = _columns(con, scan)
        _check_reserved(label, _input_columns(present, typed_time))
        _check_columns(label, present, config)
        with insertion_order_kept(con):
            con.execute(f"CREATE TEMP TABLE rf_part_sql AS {_checked_sql(present, config, scan)}")
    except duckdb.OutOfMemoryException:
        raise  # not the input's fault: the CLI says how to give it memory
    except duckdb.Error as exc:
        raise InputError(f"{label}: query failed: {_duck_error(exc)}") from None
    return "rf_part_sql"


# Spellings of a time common in exports, with an example of each, read by ``strptime`` with a
# fixed format: 3 to 10 times less CPU than DuckDB's general TIMESTAMPTZ parser. A text takes
# the form of its length (where two share one, of the character between date and time); where
# that format fails, the general parser reads it.
FAST_TIME_FORMATS = (
    ("%Y-%m-%dT%H:%M:%SZ", "2024-01-01T10:00:00Z"),  # ISO 8601 in UTC
    ("%Y-%m-%d %H:%M:%S", "2024-01-01 10:00:00"),  # SQL and spreadsheet exports
    ("%Y-%m-%dT%H:%M:%S", "2024-01-01T10:00:00"),  # ISO 8601 without a zone
    ("%Y-%m-%dT%H:%M:%S.%gZ", "2024-01-01T10:00:00.000Z"),  # JavaScript's toISOString
    ("%Y-%m-%dT%H:%M:%S%z", "2024-01-01T12:00:00+02:00"),  # ISO 8601 with an offset
    ("%Y-%m-%d %H:%M:%S.%f", "2024-01-01 10:00:00.000000"),  # PostgreSQL, Python
    ("%Y-%m-%dT%H:%M:%S.%f", "2024-01-01T10:00:00.000000"),  # Python's isoformat
)


def timestamp_sql(column: str) -> str:
    """Parse ISO 8601 (Z or offset), 'YYYY-MM-DD HH:MM:SS', epoch s or ms into a UTC TIMESTAMP.

    ``column`` holds the trimmed text.
    Text without '-' or ':' is read as a number: seconds below 1e11, milliseconds above.
    Everything else goes through DuckDB's TIMESTAMPTZ parser (the session runs in UTC), but the
    forms of ``FAST_TIME_FORMATS`` first through ``strptime``, which agrees with the parser on
    every text it accepts. Unguarded, a ``strptime`` that fails costs more than the parser.
    """
    t = column
    number = f"try_cast({t} AS DOUBLE)"
    fast = ""
    lengths = Counter(len(example) for _, example in FAST_TIME_FORMATS)
    for fmt, example in FAST_TIME_FORMATS:
        guard = f"strlen({t}) = {len(example)}"
        if lengths[len(example)] > 1:  # told apart by the character between date and time
            guard += f" AND contains({t}, {sql_literal(example[10])})"
        parsed = f"try_strptime({t}, {sql_literal(fmt)})"
        if "%z" in fmt:  # the offset makes it a TIMESTAMPTZ
            parsed = f"CAST({parsed} AS TIMESTAMP)"
        fast += f"WHEN {guard} THEN {parsed} "
    return (
        f"(CASE WHEN NOT contains({t}, '-') AND NOT contains({t}, ':') THEN "
        f"(CASE WHEN abs({number}) < 1e11 THEN make_timestamp(CAST({number} * 1e6 AS BIGINT)) "
        f"WHEN abs({number}) < 1e14 THEN make_timestamp(CAST({number} * 1e3 AS BIGINT)) END) "
        f"ELSE coalesce(CASE {fast}END, CAST(try_cast({t} AS TIMESTAMPTZ) AS TIMESTAMP)) END)"
    )


def _raw_json_sql(columns: Sequence[str]) -> str:
    """The row as it came: the JSON line itself, or an object of the row's text columns."""
    data = [c for c in columns if c not in META and c != JSON_LINE]
    pairs = ", ".join(f"{sql_literal(c)}, {sql_identifier(c)}" for c in data)
    obj = f"CAST(json_object({pairs}) AS VARCHAR)" if data else "NULL"
    return f"coalesce({JSON_LINE}, {obj})" if JSON_LINE in columns else obj


# The staged column that holds a mapped column's value (a kind's is ``rf_kind_<i>``).
STAGED_COLUMN = {
    "input.contributor": "rf_who",
    "input.timestamp": "rf_time",
    "input.event_type": "rf_event_type",
    "input.target": "rf_target",
}


def _checked_sql(columns: Sequence[str], config: InputConfig, source: str) -> str:
    """Every row of ``source``, narrowed to what later stages read, with its reject reason.

    A row keeps its contributor id (``rf_who``), time (``rf_time``), event type and target
    cleaned, its identifiers as read (``rf_kind_<i>``), and a 64-bit hash of all its columns
    in the order of their names (``rf_hash``, the same whatever order a file has them in): the
    other columns only matter for telling exact duplicates apart. A rejected row keeps its
    source and full text for the quarantine; the others leave them NULL, which costs nothing.
    """
    data = [c for c in columns if c not in META]
    null = "CAST(NULL AS VARCHAR)"
    timestamp = sql_identifier(config.timestamp)
    if TYPED_TIME in columns:  # the text is only looked at for being empty
        time, text = f"CAST({TYPED_TIME} AS TIMESTAMP)", timestamp
    else:
        time, text = timestamp_sql("rf_ts"), sql_trim(timestamp)
    event_type = (
        f"lower({sql_trim(sql_identifier(config.event_type))})" if config.event_type else null
    )
    target = f"nullif({sql_trim(sql_identifier(config.target))}, '')" if config.target else null
    identifiers = "".join(
        f"{sql_identifier(kind.column)} AS rf_kind_{index}, "
        for index, kind in enumerate(config.kinds.values())
    )
    placeholders = placeholder_list_sql(config)
    not_json = ""
    if JSON_TYPE in columns:
        not_json = (
            f"WHEN {JSON_TYPE} = '{BLANK_TYPE}' THEN '{BLANK_LINE}' "
            f"WHEN {JSON_TYPE} IS NULL THEN 'malformed JSON line' "
            f"WHEN {JSON_TYPE} <> 'OBJECT' THEN 'JSON line is not an object' "
        )
        # A nested value comes out as its JSON text: only text starting so is worth a look.
        for column in dict.fromkeys(mapped_columns(config).values()):
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
    row = "rf_row," if "rf_row" in columns else ""
    return f"""
    SELECT CASE WHEN rf_reason IS NOT NULL THEN rf_source END AS rf_source, {row}
        rf_who, rf_time, {event_type} AS rf_event_type, {target} AS rf_target, {identifiers}rf_reason, hash({", ".join(sql_identifier(c) for c in sorted(data, key=str.lower))}) AS rf_hash,
        CASE WHEN rf_reason IS NOT NULL THEN {_raw_json_sql(columns)} END AS rf_raw_text
    FROM (SELECT *, {reason} AS rf_reason FROM (
        SELECT *, {time} AS rf_time FROM (
            SELECT *, {sql_trim(sql_identifier(config.contributor))} AS rf_who,
                {text} AS rf_ts
            FROM ({source}))))
    """


def _input_columns(present: Sequence[str], typed_time: str) -> Sequence[str]:
    """The input's own columns of a CSV, Parquet or query scan: after its source and row number,
    before the typed time."""
    return present[2:-1] if typed_time else present[2:]


def _check_reserved(source: str, columns: Iterable[str]) -> None:
    """Column names starting ``rf_`` are the staging's own: an input column of that name would
    be read in place of one of them."""
    for column in columns:
        if column.lower().startswith(RESERVED_PREFIX):
            raise InputError(
                f"{source}: column {column!r}: names starting with {RESERVED_PREFIX} are "
                f"ringfinder's own; rename the column (with --sql: SELECT ... AS another_name)"
            )


def _check_columns(source: str, present: Sequence[str], config: InputConfig) -> None:
    lowered = {c.lower() for c in present}
    for key, column in mapped_columns(config).items():
        if column.lower() not in lowered:
            shown = ", ".join(c for c in present if c not in META and c != JSON_LINE)
            raise InputError(f"{source}: column {column!r} ({key}) not found; columns are: {shown}")


def _check_json_keys(
    con: duckdb.DuckDBPyConnection, table: str, path: Path, config: InputConfig
) -> None:
    """A mapped key that no object line of a JSON file has is a missing column.

    A key whose column in the staged ``table`` holds a value is there. Only for the others is
    the file read again, each look stopping at the first line that answers it (``LIMIT 1``);
    even so, a look reads and parses a block of lines per thread: looking for every key in
    the file took 4 s at 10M lines.
    """
    columns = mapped_columns(config)
    staged = {key: STAGED_COLUMN[key] for key in columns if key in STAGED_COLUMN}
    staged |= {
        f"input.kinds.{name}.column": f"rf_kind_{index}" for index, name in enumerate(config.kinds)
    }
    counts = ", ".join(f"count({column}) > 0" for column in staged.values())
    (present,) = con.execute(f"SELECT {counts} FROM {table}").fetchall()
    unseen = [key for key, seen in zip(staged, present, strict=True) if not seen]
    if not unseen:
        return
    lines = _json_scan(_scan_sql(path, "jsonl", None), config)

    def some_object(condition: str = "true") -> bool:
        return bool(
            con.execute(
                f"SELECT 1 FROM ({lines}) WHERE {JSON_TYPE} = 'OBJECT' AND {condition} LIMIT 1"
            ).fetchall()
        )

    if not some_object():
        return  # no object at all: every line is quarantined with its reason
    for key in unseen:
        path_literal = sql_literal("$." + sql_identifier(columns[key]))
        if not some_object(f"json_exists({JSON_LINE}, {path_literal})"):
            raise InputError(f"{path}: key {columns[key]!r} ({key}) not found in any JSON object")
