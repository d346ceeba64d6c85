"""Ingest: formats, column mapping, timestamps, quarantine, row accounting and input errors."""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import re
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ringfinder.ingest
import ringfinder.ingest.dialect
from ringfinder.config import InputConfig, KindConfig
from ringfinder.errors import InputError
from ringfinder.ingest import (
    IngestResult,
    normalised_events_sql,
    read_events,
    read_known_bad,
    resolve_inputs,
)
from ringfinder.ingest.dialect import Dialect, lone_carriage_return, read_dialect
from ringfinder.ingest.stage import FAST_TIME_FORMATS
from ringfinder.privacy import NO_PRIVACY, Privacy, pseudonym

EventWriter = Callable[..., Path]  # the ``write_events`` fixture
# The default config's columns, in the order ``write_events`` writes them.
EVENT_COLUMNS = ("contributor_id", "event_time", "event_type", "device_id", "ip", "payout_account")
T0 = "2024-01-01T10:00:00Z"
ROWS = [
    ("c1", "2024-01-01T10:00:00Z", "signup", "Dev-A", "1.2.3.4", "PAY-1"),
    ("c2", "2024-01-01T11:00:00Z", "signup", "dev-a ", "::ffff:1.2.3.4", "pay 1"),
    ("c3", "2024-01-02T09:30:00Z", "task", "DEV-B", "", "PAY-2"),
    ("c3", "2024-01-02T09:31:00Z", "task", "DEV-B", "5.6.7.8", "PAY-2"),
    ("c4", "2024-01-03T00:00:00Z", "payout", "unknown", "2001:db8::1", "PAY-3"),
]
# What ingest makes of ROWS: times in UTC, identifiers normalised, placeholders gone.
EXPECTED_EVENTS = [
    ("c1", datetime(2024, 1, 1, 10), "signup", None, "dev-a", "1.2.3.4", "PAY1"),
    ("c2", datetime(2024, 1, 1, 11), "signup", None, "dev-a", "1.2.3.4", "PAY1"),
    ("c3", datetime(2024, 1, 2, 9, 30), "task", None, "dev-b", None, "PAY2"),
    ("c3", datetime(2024, 1, 2, 9, 31), "task", None, "dev-b", "5.6.7.8", "PAY2"),
    ("c4", datetime(2024, 1, 3), "payout", None, None, "2001:db8::1", "PAY3"),
]


def ingest(
    inputs: list[Any], config: InputConfig | None = None, **kwargs: Any
) -> tuple[IngestResult, duckdb.DuckDBPyConnection]:
    con = duckdb.connect()
    result = read_events(con, inputs, config=config or InputConfig(), **kwargs)
    return result, con


def events_of(con: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
    """The events, identifiers normalised (every config here names its kinds so)."""
    events = normalised_events_sql(con, InputConfig())
    return con.execute(
        "SELECT contributor_id, event_time, event_type, target, id_device, id_ip, id_payment "
        f"FROM ({events}) ORDER BY ALL"
    ).fetchall()


def quarantine_of(con: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
    return con.execute(
        "SELECT row, reason, raw FROM quarantine ORDER BY source, row, reason"
    ).fetchall()


def assert_accounting(result: IngestResult) -> None:
    assert (
        result.rows_read == result.rows_accepted + result.rows_quarantined + result.rows_duplicate
    )
    assert result.rows_duplicate >= 0
    assert sum(result.quarantine_reasons.values()) == result.rows_quarantined


def as_frame(rows: list[tuple[str, ...]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(EVENT_COLUMNS), dtype=object)
    return frame.replace({"": None})


# --- formats ------------------------------------------------------------------------------


def write_all_formats(tmp_path: Path, write_events: EventWriter) -> dict[str, list[Any]]:
    """The same five rows as CSV, gzipped CSV, Parquet, JSON lines, a folder and a glob."""
    csv_path = write_events(ROWS, name="one/events.csv")
    gz_path = tmp_path / "events.csv.gz"
    gz_path.write_bytes(gzip.compress(csv_path.read_bytes()))
    parquet_path = tmp_path / "events.parquet"
    as_frame(ROWS).to_parquet(parquet_path, index=False)
    jsonl_path = tmp_path / "events.jsonl"
    with jsonl_path.open("w", encoding="utf-8") as handle:
        for record in as_frame(ROWS).to_dict("records"):
            handle.write(json.dumps(record) + "\n")
    write_events(ROWS[:2], name="folder/a.csv")
    write_events(ROWS[2:], name="folder/sub/b.csv")
    write_events(ROWS[:3], name="globbed/part-1.csv")
    write_events(ROWS[3:], name="globbed/part-2.csv")
    write_events(ROWS[3:], name="globbed/other.csv")  # not matched by the glob
    return {
        "csv": [csv_path],
        "csv.gz": [gz_path],
        "parquet": [parquet_path],
        "jsonl": [jsonl_path],
        "folder": [tmp_path / "folder"],
        "glob": [str(tmp_path / "globbed" / "part-*.csv")],
    }


@pytest.mark.parametrize("form", ["csv", "csv.gz", "parquet", "jsonl", "folder", "glob", "sql"])
def test_every_format_gives_the_same_events(
    form: str, tmp_path: Path, write_events: EventWriter
) -> None:
    inputs = write_all_formats(tmp_path, write_events)
    if form == "sql":
        query = f"SELECT * FROM read_parquet('{tmp_path / 'events.parquet'}')"
        result, con = ingest([], sql=query)
    else:
        result, con = ingest(inputs[form])
    assert events_of(con) == EXPECTED_EVENTS
    assert (
        result.rows_read,
        result.rows_accepted,
        result.rows_quarantined,
        result.rows_duplicate,
    ) == (5, 5, 0, 0)
    assert result.contributors == 4
    assert quarantine_of(con) == []


def test_inputs_are_fingerprinted_in_the_order_they_are_read(write_events: EventWriter) -> None:
    """Each input's SHA-256, taken while the files are staged, in reading (sorted) order."""
    paths = [write_events(ROWS, name="b.csv"), write_events(ROWS[:2], name="a.csv")]
    result, _ = ingest(paths)
    assert result.inputs == [
        {
            "path": str(path),
            "bytes": path.stat().st_size,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        }
        for path in sorted(paths)
    ]


def test_foreign_column_names_are_mapped(write_events: EventWriter) -> None:
    header = ("Worker", "When", "What", "Handset", "Addr", "Bank Account")
    path = write_events(ROWS, header=header)
    config = InputConfig(
        contributor="Worker",
        timestamp="When",
        event_type="What",
        kinds={
            "device": KindConfig(column="Handset", normaliser="device"),
            "ip": KindConfig(column="Addr", normaliser="ip"),
            "payment": KindConfig(column="Bank Account", normaliser="payment"),
        },
    )
    result, con = ingest([path], config)
    assert events_of(con) == EXPECTED_EVENTS
    assert result.rows_accepted == 5


def test_columns_the_config_does_not_map_are_ignored(write_events: EventWriter) -> None:
    header = (*EVENT_COLUMNS, "user_agent")
    path = write_events([(*row, "Mozilla/5.0") for row in ROWS], header=header)
    _, con = ingest([path])
    assert events_of(con) == EXPECTED_EVENTS


# --- timestamps ---------------------------------------------------------------------------


def test_timestamp_formats_give_the_same_utc_instant(write_events: EventWriter) -> None:
    spellings = [
        "2024-01-01T10:00:00Z",
        "2024-01-01T12:00:00+02:00",
        "2024-01-01T05:00:00-05:00",
        "2024-01-01 10:00:00",
        " 2024-01-01T10:00:00.000Z ",
        "1704103200",
        "1704103200000",
    ]
    rows = [(f"c{i}", ts, "task", f"d{i}", "", "") for i, ts in enumerate(spellings)]
    result, con = ingest([write_events(rows)])
    assert result.rows_accepted == len(spellings)
    times = dict(con.execute("SELECT contributor_id, event_time FROM events").fetchall())
    assert times == {f"c{i}": datetime(2024, 1, 1, 10) for i in range(len(spellings))}


# Near misses of the 'YYYY-MM-DDTHH:MM:SSZ' fast path: what each means, or None if no time.
NEAR_MISSES = {
    "2024-02-29T23:59:59Z": datetime(2024, 2, 29, 23, 59, 59),
    "2024-1-9T1:2:3Z": datetime(2024, 1, 9, 1, 2, 3),
    "2024-01-01T24:00:00Z": datetime(2024, 1, 2),
    "2024-01-01T10:00Z": datetime(2024, 1, 1, 10),
    "2024-01-01T10:00:00+00": datetime(2024, 1, 1, 10),
    "2024-01-01 10:00:00Z": datetime(2024, 1, 1, 10),
    "2023-02-29T00:00:00Z": None,
    "2024-13-01T10:00:00Z": None,
    "2024-01-01T10:00:60Z": None,
    "2024-01-01t10:00:00z": None,
    "2024-01-01T10:00:00ZZ": None,
    "2024-01-01T10:00:00 Z": None,
}


def test_near_misses_of_the_common_timestamp_form(write_events: EventWriter) -> None:
    spelling_of = {f"c{i}": text for i, text in enumerate(NEAR_MISSES)}
    rows = [(c, text, "task", f"d-{c}", "", "") for c, text in spelling_of.items()]
    result, con = ingest([write_events(rows)])
    times = dict(con.execute("SELECT contributor_id, event_time FROM events").fetchall())
    assert times == {c: NEAR_MISSES[t] for c, t in spelling_of.items() if NEAR_MISSES[t]}
    unparseable = sum(time is None for time in NEAR_MISSES.values())
    assert result.quarantine_reasons == {"unparseable timestamp": unparseable}


# Characters that turn a fast-path form into a near miss of it.
NEAR_MISS_CHARACTERS = "0123456789-:T Z+.tz/"
# Year, month, day, hour, minute, second: each a little past its valid range at both ends.
FIELD_RANGES = ((1985, 2105), (0, 13), (0, 32), (0, 25), (0, 60), (0, 61))


@st.composite
def time_texts(draw: st.DrawFn) -> str:
    """A form of ``FAST_TIME_FORMATS`` with other values in its fields, some edited into near
    misses. Fields past the second (fractions, offsets) take any digits."""
    example = draw(st.sampled_from([example for _, example in FAST_TIME_FORMATS]))
    fields = re.split(r"(\d+)", example)  # separators at even places, digits at odd ones
    for place in range(1, len(fields), 2):
        width = len(fields[place])
        low, high = (
            FIELD_RANGES[place // 2] if place // 2 < len(FIELD_RANGES) else (0, 10**width - 1)
        )
        fields[place] = str(draw(st.integers(low, high))).zfill(width)
    text = "".join(fields)
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(text) - 1))
        edit = draw(st.sampled_from(["replace", "delete", "insert"]))
        character = draw(st.sampled_from(NEAR_MISS_CHARACTERS))
        head, tail = text[:at], text[at + 1 :] if edit != "insert" else text[at:]
        text = head + ("" if edit == "delete" else character) + tail
    return text.strip()


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(texts=st.lists(time_texts(), min_size=1, max_size=40))
def test_fast_time_forms_agree_with_the_general_parser(
    write_events: EventWriter, texts: list[str]
) -> None:
    """The strptime fast paths take a time where DuckDB's TIMESTAMPTZ parser takes the same."""
    rows = [(f"c{i}", text, "task", f"d{i}", "", "") for i, text in enumerate(texts)]
    result, con = ingest([write_events(rows)])
    con.execute("CREATE TABLE texts (contributor_id VARCHAR, text VARCHAR)")
    con.executemany("INSERT INTO texts VALUES (?, ?)", [(c, t) for c, t, *_ in rows])
    general = con.execute("""
        SELECT contributor_id, CASE WHEN t IS NULL THEN 'unparseable timestamp'
            WHEN t < TIMESTAMP '1990-01-01' OR t >= TIMESTAMP '2100-01-01'
            THEN 'timestamp out of range' END AS reason, t
        FROM (SELECT *, CAST(try_cast(text AS TIMESTAMPTZ) AS TIMESTAMP) AS t FROM texts)
    """).fetchall()
    times = dict(con.execute("SELECT contributor_id, event_time FROM events").fetchall())
    assert times == {c: t for c, reason, t in general if reason is None}
    assert result.quarantine_reasons == Counter(r for _, r, _ in general if r is not None)


TYPED_TIMES = {
    "TIMESTAMP": "TIMESTAMP '2024-01-01 10:00:00.123456'",
    "TIMESTAMPTZ": "TIMESTAMPTZ '2024-01-01 12:00:00.123456+02'",
    "TIMESTAMP_NS": "CAST(TIMESTAMP '2024-01-01 10:00:00.123456' AS TIMESTAMP_NS)",
    "TIMESTAMP_MS": "CAST(TIMESTAMP '2024-01-01 10:00:00.123' AS TIMESTAMP_MS)",
    "TIMESTAMP_S": "CAST(TIMESTAMP '2024-01-01 10:00:00' AS TIMESTAMP_S)",
    "DATE": "DATE '2024-01-01'",
}


@pytest.mark.parametrize("form", ["parquet", "sql"])
@pytest.mark.parametrize("kind", TYPED_TIMES)
def test_typed_times_are_read_as_the_instants_they_hold(
    tmp_path: Path, form: str, kind: str
) -> None:
    """A Parquet or query column of timestamps or dates needs no parsing, and loses nothing."""
    setup = duckdb.connect()
    setup.execute("SET TimeZone = 'Asia/Kolkata'")  # the file's instants, not this zone, count
    times = (TYPED_TIMES[kind], "NULL", f"CAST(DATE '1850-01-01' AS {kind})")
    rows = ", ".join(f"('c{i}', {t}, 'task', 'd{i}', '', '')" for i, t in enumerate(times))
    path = tmp_path / "events.parquet"
    setup.execute(
        f"COPY (SELECT * FROM (VALUES {rows}) AS t({', '.join(EVENT_COLUMNS)})) "
        f"TO '{path}' (FORMAT parquet)"
    )
    if form == "parquet":
        result, con = ingest([path])
    else:
        result, con = ingest([], sql=f"SELECT * FROM read_parquet('{path}')")
    expected = {
        "DATE": datetime(2024, 1, 1),
        "TIMESTAMP_S": datetime(2024, 1, 1, 10),
        "TIMESTAMP_MS": datetime(2024, 1, 1, 10, 0, 0, 123000),
    }.get(kind, datetime(2024, 1, 1, 10, 0, 0, 123456))
    assert con.execute("SELECT contributor_id, event_time FROM events").fetchall() == [
        ("c0", expected)
    ]
    assert result.quarantine_reasons == {"missing timestamp": 1, "timestamp out of range": 1}


# --- quarantine ---------------------------------------------------------------------------


def test_bad_rows_are_quarantined_with_their_reason(write_events: EventWriter) -> None:
    rows: list[Any] = [
        ("c1", T0, "task", "d1", "1.2.3.4", "P1"),
        ("", T0, "task", "d1", "1.2.3.4", "P1"),  # data row 2
        ("Unknown", T0, "task", "d1", "1.2.3.4", "P1"),  # 3
        ("c2", "yesterday", "task", "d1", "1.2.3.4", "P1"),  # 4
        ("c3", "", "task", "d1", "1.2.3.4", "P1"),  # 5
        ("c4", "1850-01-01T00:00:00Z", "task", "d1", "1.2.3.4", "P1"),  # 6
        ("c5", T0, "task", "d1", "1.2.3.4", "P1"),
    ]
    result, con = ingest([write_events(rows)])
    assert result.quarantine_reasons == {
        "missing contributor id": 2,
        "unparseable timestamp": 1,
        "missing timestamp": 1,
        "timestamp out of range": 1,
    }
    quarantined = quarantine_of(con)
    first = quarantined[0][0]  # data row 2; the numbering may count the header line or not
    assert first in (2, 3)
    assert [(row - first, reason) for row, reason, _ in quarantined] == [
        (0, "missing contributor id"),
        (1, "missing contributor id"),
        (2, "unparseable timestamp"),
        (3, "missing timestamp"),
        (4, "timestamp out of range"),
    ]
    raw = json.loads(quarantine_of(con)[2][2])
    assert raw["contributor_id"] == "c2" and raw["event_time"] == "yesterday"
    assert [e[0] for e in events_of(con)] == ["c1", "c5"]
    assert (result.rows_read, result.rows_accepted, result.rows_quarantined) == (7, 2, 5)
    assert_accounting(result)


def test_ragged_csv_lines_are_quarantined_once_each(tmp_path: Path) -> None:
    header = ",".join(EVENT_COLUMNS)
    short = f"c2,{T0},task,d1"
    long = f"c3,{T0},task,d1,1.2.3.4,P1,extra"
    path = tmp_path / "ragged.csv"
    path.write_text(
        f"{header}\nc1,{T0},task,d1,1.2.3.4,P1\n{short}\n{long}\nc4,{T0},task,d1,1.2.3.4,P1\n"
    )
    result, con = ingest([path])
    assert result.quarantine_reasons == {
        "malformed line: missing columns": 1,
        "malformed line: too many columns": 1,
    }
    assert sorted(raw for _, _, raw in quarantine_of(con)) == sorted([short, long])
    assert [e[0] for e in events_of(con)] == ["c1", "c4"]
    assert (
        result.rows_read,
        result.rows_accepted,
        result.rows_quarantined,
        result.rows_duplicate,
    ) == (4, 2, 2, 0)


def test_quarantine_rows_are_data_rows_of_their_file_across_rejected_lines(
    tmp_path: Path,
) -> None:
    header = ",".join(EVENT_COLUMNS)
    good = f"{T0},task,d1,1.2.3.4,P1"
    lines = [
        header,
        f"c1,{good}",  # data row 1
        f"c2,{T0},task",  # 2: ragged
        f",{good}",  # 3
        f"c3,{T0},task,d1",  # 4 and 5: two ragged lines in a run
        f"c4,{T0},task,d1,1.2.3.4,P1,extra",
        f'"c5\nstill c5",{good}',  # 6: a quoted line break does not start a row
        "c6,yesterday,task,d1,1.2.3.4,P1",  # 7
        f"c7,{T0},task",  # 8: ragged
        "c8,,task,d1,1.2.3.4,P1",  # 9
    ]
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("\n".join(lines) + "\n")
    clean = tmp_path / "clean.csv"
    clean.write_text(f"{header}\nc1,{good}\nc9,{good}\n,{good}\n")
    result, con = ingest([ragged, clean])
    rows = sorted((row, reason) for row, reason, _ in quarantine_of(con))
    assert rows == [
        (2, "malformed line: missing columns"),
        (3, "missing contributor id"),
        (3, "missing contributor id"),  # the clean file's third row: nothing to skip there
        (4, "malformed line: missing columns"),
        (5, "malformed line: too many columns"),
        (7, "unparseable timestamp"),
        (8, "malformed line: missing columns"),
        (9, "missing timestamp"),
    ]
    assert_accounting(result)


def test_one_unterminated_quote_costs_only_its_own_line(tmp_path: Path) -> None:
    header = ",".join((*EVENT_COLUMNS, "user_agent"))
    lines = [f'c{i},{T0},task,d{i},1.2.3.{i},P{i},"Mozilla (X11, Linux)"' for i in range(20)]
    lines.insert(10, f'c99,{T0},task,"d99,1.2.3.99,P99,curl')  # the quote never closes
    path = tmp_path / "events.csv"
    path.write_text("\n".join([header, *lines]) + "\n")
    result, con = ingest([path])
    ((row, reason, raw),) = quarantine_of(con)
    # A quote reaches to the next one: the line after it is part of the broken row.
    assert (row, reason) == (11, "malformed line: unquoted value")
    assert raw == "\n".join(lines[10:12])
    devices = {e[0]: e[4] for e in events_of(con)}
    assert sorted(devices) == sorted(f"c{i}" for i in range(20) if i != 10)
    assert all(devices[who] == f"d{who[1:]}" for who in devices)
    assert_accounting(result)


@pytest.mark.parametrize("delimiter", [",", ";", "|"])
def test_the_dialect_comes_from_the_header_line(tmp_path: Path, delimiter: str) -> None:
    path = tmp_path / "events.csv"
    d = delimiter
    quoted = '"a; b, c| d; e, f| g"'  # other candidates, inside quotes: not counted
    path.write_bytes(
        f'\ufeff contributor_id {d} "event time"{d}{d}dup{d}DUP{d}{quoted}\r\na\r\n'.encode()
    )
    dialect = read_dialect(path, ["contributor_id"])
    names = ("contributor_id", "event time", "column2", "dup", "DUP_1", quoted.strip('"'))
    assert dialect == Dialect(delimiter, names)


def test_a_tab_separated_file_is_left_to_the_sniffer(tmp_path: Path) -> None:
    """Tab-separated exports often come unquoted, with a plain " in their text."""
    path = tmp_path / "events.tsv"
    rows = [
        ("c1", T0, "task", "d1", "1.2.3.4", '"quoted" text'),
        ("c2", T0, "task", "d2", "", '"open'),
    ]
    path.write_text("\n".join("\t".join(row) for row in [EVENT_COLUMNS, *rows]) + "\n")
    assert read_dialect(path, []) is None
    result, con = ingest([path])
    assert result.rows_accepted == 2 and [e[0] for e in events_of(con)] == ["c1", "c2"]


@pytest.mark.parametrize(
    "text",
    ["", "\n\nc,t\n", 'c,"t\nx",d\n1,2,3\n', "x" * (70 * 1024)],
    ids=["empty", "blank", "quoted", "long"],
)
def test_headers_it_cannot_read_are_left_to_the_sniffer(tmp_path: Path, text: str) -> None:
    path = tmp_path / "events.csv"
    path.write_text(text)
    assert read_dialect(path, []) is None


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (b"h,h\r\na,b\r\nc\rd,e\r\n", 3),  # CRLF lines, a lone CR on the third
        (b'h,h\na,"b\r\n\rc"\nd,e\rf\n', 4),  # quoted CRs are data; the lone one is line 4
        (b"h,h\na,b\n", None),
        (b"h,h\ra,b\rc,d\r", None),  # the lines of a classic Mac file end in CR
        (b'h,h\na,"b\rc"\n', None),
    ],
    ids=["crlf", "after-quoted", "none", "mac", "quoted"],
)
def test_the_first_lone_carriage_return_outside_quotes_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: bytes, line: int | None
) -> None:
    path = tmp_path / "events.csv"
    path.write_bytes(data)
    assert lone_carriage_return(path) == line
    for size in range(1, len(data) + 1):  # a CR at a chunk's end waits for the next chunk
        monkeypatch.setattr(ringfinder.ingest.dialect, "CHUNK_BYTES", size)
        assert lone_carriage_return(path) == line, size
    zipped = tmp_path / "events.csv.gz"
    zipped.write_bytes(gzip.compress(data))
    assert lone_carriage_return(zipped) == line


def test_a_mapped_column_twice_in_the_header_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    header = ",".join((*EVENT_COLUMNS, "Event_Time", "note", "note"))
    path.write_text(f"{header}\nc1,{T0},task,d1,1.2.3.4,P1,{T0},x,y\n")
    with pytest.raises(InputError, match="column 'event_time' is in the header 2 times"):
        ingest([path])
    path.write_text(
        f"{','.join((*EVENT_COLUMNS, 'note', 'note'))}\nc1,{T0},task,d1,1.2.3.4,P1,x,y\n"
    )
    result, _ = ingest([path])  # an unmapped one is only carried along
    assert result.rows_accepted == 1


@pytest.mark.parametrize("fmt", ["csv", "parquet", "sql", "jsonl"])
def test_an_input_column_named_like_the_staging_own_is_refused(tmp_path: Path, fmt: str) -> None:
    frame = pd.DataFrame([dict(zip(EVENT_COLUMNS, row, strict=True)) for row in ROWS])
    config = InputConfig()
    if fmt == "jsonl":  # a JSON object's keys are only read when mapped
        frame = frame.rename(columns={"contributor_id": "RF_who"})
        config = InputConfig(contributor="RF_who")
    else:
        frame["RF_who"] = "zz"
    path = tmp_path / f"events.{'csv' if fmt == 'sql' else fmt}"
    if fmt == "parquet":
        frame.to_parquet(path)
    elif fmt == "jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_csv(path, index=False)
    source = "sql" if fmt == "sql" else str(path)
    with pytest.raises(InputError, match=rf"^{re.escape(source)}: column 'RF_who': names starting"):
        if fmt == "sql":
            ingest([], config, sql=f"SELECT * FROM read_csv('{path}')")
        else:
            ingest([path], config)


def test_bad_json_lines_are_quarantined(tmp_path: Path) -> None:
    good = {
        "contributor_id": "c1",
        "event_time": T0,
        "event_type": "task",
        "device_id": "D1",
        "ip": "1.2.3.4",
        "payout_account": "P1",
    }
    lines = [
        json.dumps(good),
        "{not json",
        "[1, 2, 3]",
        '"a string"',
        "42",
        json.dumps({**good, "contributor_id": None}),
        "",
        json.dumps({**good, "contributor_id": "c2"}),
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result, con = ingest([path])
    assert result.quarantine_reasons == {
        "malformed JSON line": 1,
        "JSON line is not an object": 3,
        "missing contributor id": 1,
    }
    assert "{not json" in [raw for _, _, raw in quarantine_of(con)]
    assert [(row, reason) for row, reason, _ in quarantine_of(con)] == [
        (2, "malformed JSON line"),
        (3, "JSON line is not an object"),
        (4, "JSON line is not an object"),
        (5, "JSON line is not an object"),
        (6, "missing contributor id"),
    ]
    assert [e[0] for e in events_of(con)] == ["c1", "c2"]
    assert (result.rows_read, result.rows_accepted) == (7, 2)  # the blank line is no row
    assert_accounting(result)


def test_a_json_key_holding_only_nulls_is_there_and_a_key_on_no_line_is_missing(
    tmp_path: Path,
) -> None:
    """A key is looked for in the file only when no staged row has a value for it."""
    base = {"contributor_id": "c1", "event_time": T0, "event_type": "task", "device_id": "d1"}
    path = tmp_path / "events.jsonl"
    lines = [
        {**base, "ip": None, "payout_account": None},
        {**base, "contributor_id": "c2", "ip": None, "payout_account": "P1"},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result, _ = ingest([path])
    assert result.rows_accepted == 2
    path.write_text("".join(json.dumps({**base, "payout_account": "P1"}) + "\n" for _ in range(3)))
    with pytest.raises(InputError, match=r"key 'ip' \(input.kinds.ip.column\) not found in any"):
        ingest([path])


@pytest.mark.parametrize("hashes_per_slice", [5_000_000, 1], ids=["one slice", "many slices"])
def test_exact_duplicates_are_counted_and_dropped(
    write_events: EventWriter, monkeypatch: pytest.MonkeyPatch, hashes_per_slice: int
) -> None:
    """Also when the hashes are grouped slice by slice, as for inputs of many millions."""
    monkeypatch.setattr(ringfinder.ingest, "HASHES_PER_SLICE", hashes_per_slice)
    row = ("c1", T0, "task", "d1", "1.2.3.4", "P1")
    near = ("c1", T0, "review", "d1", "1.2.3.4", "P1")  # differs in one column: kept
    other = ("c2", T0, "task", "d2", "1.2.3.5", "P2")
    first = write_events([row, row, near, row, other, other], name="a.csv")
    second = write_events([row], name="b.csv")  # a duplicate across files counts too
    result, con = ingest([first, second])
    assert (
        result.rows_read,
        result.rows_accepted,
        result.rows_quarantined,
        result.rows_duplicate,
    ) == (7, 3, 0, 4)
    assert sorted(e[:3:2] for e in events_of(con)) == [
        ("c1", "review"),
        ("c1", "task"),
        ("c2", "task"),
    ]


def test_an_event_in_files_with_their_columns_in_another_order_is_one(
    tmp_path: Path, write_events: EventWriter
) -> None:
    rows = [dict(zip(EVENT_COLUMNS, row, strict=True)) for row in ROWS]
    first = write_events(rows, name="a.csv")
    second = write_events(rows, name="b.csv", header=EVENT_COLUMNS[::-1])
    parquet = pd.DataFrame(rows).replace("", None)  # as CSV reads an empty field: NULL
    parquet[list(EVENT_COLUMNS[1:] + EVENT_COLUMNS[:1])].to_parquet(tmp_path / "c.parquet")
    result, _ = ingest([first, second, tmp_path / "c.parquet"])
    assert result.rows_read == 3 * len(ROWS)
    assert result.rows_duplicate == 2 * len(ROWS)
    assert_accounting(result)


#: Ann and CAT spelled in two cases, Bob in one.
CASE_ROWS = [
    ("Ann", T0, "task", "d1", "", ""),
    ("ann", T0, "login", "d1", "", ""),
    ("ann", T0, "signup", "d1", "", ""),
    ("Bob", T0, "task", "d2", "", ""),
    ("CAT", T0, "task", "d3", "", ""),
    ("CAT", T0, "login", "d3", "", ""),
    ("cat", T0, "signup", "d3", "", ""),
]


@pytest.mark.parametrize(
    ("ignore_case", "pseudonymised", "expected"),
    [
        (True, False, ["Bob", "CAT", "CAT", "CAT", "ann", "ann", "ann"]),
        (False, False, ["Ann", "Bob", "CAT", "CAT", "ann", "ann", "cat"]),
        (True, True, None),
    ],
)
def test_contributor_ids_differing_in_case_are_one_contributor(
    write_events: EventWriter, ignore_case: bool, pseudonymised: bool, expected: list[str] | None
) -> None:
    """Spelled as its most frequent spelling, lower case or not, and counted once, also when
    ids become tokens."""
    privacy = Privacy(key=b"k" * 32, contributors=True) if pseudonymised else NO_PRIVACY
    config = InputConfig(contributor_ignore_case=ignore_case)
    result, con = ingest([write_events(CASE_ROWS)], config, privacy=privacy)
    ids = [e[0] for e in events_of(con)]
    assert result.contributors == len(set(ids)) == (3 if ignore_case else 5)
    if expected is not None:
        assert ids == expected


@pytest.mark.parametrize(
    ("previous_ids", "expected", "count"),
    [
        # The previous spelling beats a more frequent one ...
        (["ann", "Cat"], ["Bob", "Cat", "Cat", "Cat", "ann", "ann", "ann"], 3),
        # ... also when no row spells it so this run, and one-spelling ids keep it too.
        (["ANN", "bob", "x"], ["ANN", "ANN", "ANN", "CAT", "CAT", "CAT", "bob"], 3),
        # Ids of the previous run that differ in more than case change nothing.
        (["Annie"], ["Bob", "CAT", "CAT", "CAT", "ann", "ann", "ann"], 3),
    ],
)
def test_contributor_keeps_the_previous_runs_spelling(
    write_events: EventWriter, previous_ids: list[str], expected: list[str], count: int
) -> None:
    """A rule engine keyed on yesterday's id still finds the contributor today."""
    result, con = ingest([write_events(CASE_ROWS)], previous_ids=previous_ids)
    assert [e[0] for e in events_of(con)] == expected
    assert result.contributors == count
    assert_accounting(result)


def test_pseudonymised_contributor_keeps_the_previous_runs_token(
    write_events: EventWriter,
) -> None:
    """Among this run's spellings, the one whose token the previous run used wins."""
    rows = [
        ("Ann", T0, "task", "d1", "", ""),
        ("ann", T0, "login", "d1", "", ""),
        ("ann", T0, "signup", "d1", "", ""),
    ]
    privacy = Privacy(key=b"k" * 32, contributors=True)
    token = pseudonym(privacy.key, "contributor", "Ann")
    result, con = ingest([write_events(rows)], privacy=privacy, previous_ids=[token])
    assert {e[0] for e in events_of(con)} == {token}
    assert result.contributors == 1


def test_garbage_identifiers_are_dropped_not_fatal(write_events: EventWriter) -> None:
    rows = [
        (f"c{i}", T0, "task", "d", ip, "P")
        for i, ip in enumerate(["1:", ":::", "1:2:3:4:5:6:7:8:9", "x"])
    ]
    result, con = ingest([write_events(rows)])
    assert result.rows_accepted == 4
    assert {e[5] for e in events_of(con)} == {None}


# --- row accounting, property-based ---------------------------------------------------------

GOOD = ("c1", T0, "task", "d1", "1.2.3.4", "P1")
ROW_KINDS: dict[str, tuple[str | None, list[str]]] = {
    # kind: (quarantine reason, fields)
    "good": (None, list(GOOD)),
    "good_other": (None, ["c2", "2024-02-01 08:00:00", "task", "d2", "", "P2"]),
    "good_epoch": (None, ["c3", "1704103200", "signup", "d1", "::ffff:1.2.3.4", ""]),
    "no_contributor": ("missing contributor id", ["", T0, "task", "d1", "1.2.3.4", "P1"]),
    "placeholder_contributor": (
        "missing contributor id",
        ["N/A", T0, "task", "d1", "1.2.3.4", "P1"],
    ),
    "bad_time": ("unparseable timestamp", ["c4", "not a time", "task", "d1", "1.2.3.4", "P1"]),
    "no_time": ("missing timestamp", ["c5", "", "task", "d1", "1.2.3.4", "P1"]),
    "short": ("malformed line: missing columns", ["c6", T0, "task"]),
    "long": ("malformed line: too many columns", [*GOOD, "extra"]),
}


@st.composite
def row_mixes(draw: st.DrawFn) -> list[str]:
    """A list of row kinds with at least one good row first, so the header sniffs as text."""
    kinds = draw(st.lists(st.sampled_from(sorted(ROW_KINDS)), min_size=0, max_size=40))
    return ["good", *kinds]


def test_row_accounting_adds_up_for_any_mix_of_rows(write_events: EventWriter) -> None:
    counter = itertools.count()

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(kinds=row_mixes())
    def check(kinds: list[str]) -> None:
        path = write_events([ROW_KINDS[k][1] for k in kinds], name=f"mix-{next(counter)}.csv")
        result, con = ingest([path])
        good = [tuple(ROW_KINDS[k][1]) for k in kinds if ROW_KINDS[k][0] is None]
        reasons: dict[str, int] = {}
        for k in kinds:
            reason = ROW_KINDS[k][0]
            if reason is not None:
                reasons[reason] = reasons.get(reason, 0) + 1
        assert result.rows_read == len(kinds)
        assert result.rows_accepted == len(set(good))
        assert result.rows_duplicate == len(good) - len(set(good))
        assert result.rows_quarantined == sum(reasons.values())
        assert result.quarantine_reasons == reasons
        assert_accounting(result)
        (n_events,) = con.execute("SELECT count(*) FROM events").fetchone()  # type: ignore[misc]
        assert n_events == result.rows_accepted

    check()


# --- errors -------------------------------------------------------------------------------


def error_of(*args: Any, **kwargs: Any) -> str:
    with pytest.raises(InputError) as info:
        ingest(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    assert error_of([path]) == f"{path}: input file not found"


def test_glob_matching_nothing(tmp_path: Path) -> None:
    pattern = str(tmp_path / "*.parquet")
    assert error_of([pattern]) == f"{pattern}: no input files match this pattern"


def test_no_inputs_at_all() -> None:
    assert "no input" in error_of([])


@pytest.mark.parametrize(
    ("config", "column", "key"),
    [
        (InputConfig(contributor="worker"), "worker", "input.contributor"),
        (InputConfig(timestamp="ts"), "ts", "input.timestamp"),
        (
            InputConfig(kinds={"device": KindConfig(column="handset")}),
            "handset",
            "input.kinds.device.column",
        ),
    ],
)
@pytest.mark.parametrize("fmt", ["csv", "jsonl", "sql"])
def test_a_mapped_column_that_is_missing(
    config: InputConfig, column: str, key: str, fmt: str, write_events: EventWriter, tmp_path: Path
) -> None:
    csv_path = write_events(ROWS)
    if fmt == "csv":
        message = error_of([csv_path], config)
        source = str(csv_path)
    elif fmt == "jsonl":
        path = tmp_path / "events.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in as_frame(ROWS).to_dict("records")))
        message = error_of([path], config)
        source = str(path)
    else:
        message = error_of(
            [], config, sql=f"SELECT * FROM read_csv('{csv_path}', all_varchar = true)"
        )
        source = "sql"
    assert message.startswith(f"{source}: ")
    assert f"'{column}' ({key})" in message


def test_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("")
    assert error_of([path]).startswith(f"{path}: file is empty")


def test_an_empty_gzipped_file(tmp_path: Path) -> None:
    path = tmp_path / "events.csv.gz"
    path.write_bytes(gzip.compress(b""))
    assert error_of([path]).startswith(f"{path}: file is empty")


def test_a_header_only_file(write_events: EventWriter) -> None:
    path = write_events([])
    assert error_of([path]) == f"{path}: no rows in the input"


def test_an_unknown_file_type(tmp_path: Path) -> None:
    path = tmp_path / "events.xlsx"
    path.write_bytes(b"PK")
    assert error_of([path]).startswith(f"{path}: unknown file type")


def test_a_corrupt_parquet_file(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    path.write_bytes(b"not parquet at all")
    assert error_of([path]).startswith(f"{path}: cannot read as parquet")


def test_a_failing_query() -> None:
    assert error_of([], sql="SELECT * FROM no_such_table").startswith("sql: query failed: ")


@pytest.mark.parametrize(
    "ending",
    [
        ";",
        " ;\n ; ",
        "  -- yesterday's events",
        "\n-- a last comment;\n",
        "; -- done",
        "; /* up to yesterday */",
        " -- a ')' and a ';' in a comment",
    ],
)
def test_a_query_is_taken_as_written(
    tmp_path: Path, write_events: EventWriter, ending: str
) -> None:
    write_all_formats(tmp_path, write_events)
    query = f"SELECT * FROM read_parquet('{tmp_path / 'events.parquet'}'){ending}"
    _, con = ingest([], sql=query)
    assert events_of(con) == EXPECTED_EVENTS


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("SELECT 1 AS a; SELECT 2 AS b", "sql: give one query, not 2 statements"),
        (
            "SELECT 1 AS a; DROP TABLE events",
            "sql: give one query, not 2 statements",
        ),
        (
            "CREATE TABLE t AS SELECT 1 AS a",
            "sql: give a query (SELECT ...), not a CREATE statement",
        ),
        (
            "INSERT INTO t VALUES (1)",
            "sql: give a query (SELECT ...), not an INSERT statement",
        ),
    ],
)
def test_only_one_query_is_run(query: str, error: str) -> None:
    assert error_of([], sql=query) == error


def test_a_pivot_is_a_query() -> None:
    # DuckDB parses PIVOT as several statements; it still reads as the input.
    assert error_of([], sql="PIVOT (SELECT 1 AS a, 2 AS b) ON a USING sum(b)") == (
        "sql: column 'contributor_id' (input.contributor) not found; columns are: 1"
    )


def test_an_empty_query_or_a_nested_mapped_column_is_refused() -> None:
    assert error_of([], sql=" ;\n") == "sql: the query is empty"
    assert error_of([], sql="-- nothing but a comment") == "sql: the query is empty"
    nested = "SELECT 'c1' AS contributor_id, now() AS event_time, ['d1'] AS device_id"
    config = InputConfig(event_type="", kinds={"device": KindConfig(column="device_id")})
    assert error_of([], config, sql=nested) == (
        "sql: column 'device_id' (input.kinds.device.column) has the nested type VARCHAR[]; "
        "expected text, a number or a timestamp"
    )


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("c2\n c1 \n\nc2\n", ["c1", "c2"]),  # one per line: trimmed, blank lines skipped, unique
        ('\ufeffnote,Contributor_ID\nx,"c,1"\ny,c2\nz\n', ["c,1", "c2"]),  # a CSV with the column
        ('"c1\nc2\n"c3"\n', ["c1", "c2", "c3"]),  # an open quote ends with its line
        ("\u00a0c1\u200b\r\nc2\x1f\u2028c3\n", ["c1", "c2\x1f\u2028c3"]),  # trimmed as ingest trims
    ],
    ids=["lines", "csv", "open-quote", "unicode"],
)
def test_a_known_bad_list(tmp_path: Path, text: str, ids: list[str]) -> None:
    path = tmp_path / "banned.txt"
    path.write_text(text, encoding="utf-8")
    assert read_known_bad(path) == ids


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "known-bad file is empty"),
        ("contributor_id\n\n", "known-bad file lists no contributor id"),
        ("c1\n" + "x" * 200_000 + "\n", "line 2: field larger than field limit (131072)"),
    ],
    ids=["empty", "no-ids", "huge-line"],
)
def test_an_unusable_known_bad_list_is_named(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "banned.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as info:
        read_known_bad(path)
    assert str(info.value) == f"{path}: {error}"


@pytest.mark.parametrize("forced", ["auto", "csv"])
def test_a_folder_gives_its_data_files_only(tmp_path: Path, forced: str) -> None:
    folder = tmp_path / "export"
    (folder / "run").mkdir(parents=True)
    names = ["part-0.csv", "_SUCCESS", ".part-0.csv.crc", "notes.toml", "part-1", "ev.csv.1"]
    names += ["_temporary/0/part-0.csv", ".ipynb_checkpoints/a-checkpoint.csv"]
    names += ["run/manifest.json", "run/members.csv"]  # an earlier ringfinder output in it
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("x\n")
    found = [p.name for p, _ in resolve_inputs([folder], forced_format=forced)]
    assert found == (["part-0.csv"] if forced == "auto" else ["ev.csv.1", "part-0.csv", "part-1"])


def test_parquet_forced_to_be_read_as_csv_is_named_for_what_it_is(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    pd.DataFrame([dict(zip(EVENT_COLUMNS, row, strict=True)) for row in ROWS]).to_parquet(path)
    assert error_of([path], InputConfig(format="csv")) == (
        f"{path}: file is Parquet, not csv: name it .parquet, or set input.format to "
        "'auto' or 'parquet'"
    )


def test_a_contributor_id_pasted_with_unicode_spaces_is_the_same_contributor(
    write_events: EventWriter,
) -> None:
    rows = [("c1", T0, "task", "d1", "1.2.3.4", "P1"), ("\u00a0c1\u3000", T0, "task", "d2", "", "")]
    result, con = ingest([write_events(rows)])
    assert result.contributors == 1
    assert {e[0] for e in events_of(con)} == {"c1"}


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ('{"contributor_id": "c1"}\n'.encode("utf-16-le"), "file is not UTF-8 text: a NUL"),
        (
            b'[\n  {"contributor_id": "c1"},\n  {"contributor_id": "c2"}\n]\n',
            "file is a JSON array",
        ),
    ],
    ids=["utf-16-without-bom", "pretty-printed-array"],
)
def test_json_that_is_not_json_lines_is_named(tmp_path: Path, data: bytes, error: str) -> None:
    path = tmp_path / "events.json"
    path.write_bytes(data)
    assert error_of([path]).startswith(f"{path}: {error}")
