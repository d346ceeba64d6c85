"""Hostile inputs: one-line errors with the documented exit codes, never a traceback.

Bad files give exit 1 and one line naming the file (or the key); bad configs give exit 2 and
one line naming the key. Bad rows among good ones are quarantined, not fatal, up to
``input.max_bad_fraction``; the row accounting in manifest.json always adds up. Spreadsheet
formulas in ids never reach a CSV export as formulas; resource limits reach DuckDB; one huge
ring is scored quickly.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from ringfinder.cli import main
from ringfinder.config import Config, build_config
from ringfinder.pipeline import connect, find_rings
from ringfinder.schema import FORMULA_START

HEADER = "contributor_id,event_time,event_type,device_id,ip,payout_account\n"
NO_EXTRAS = {"event_type": "", "kinds": {"device": {"column": "device_id", "normaliser": "device"}}}
PROGRESS = re.compile(
    r"^\w+ done in \d+\.\d s$"
)  # the stage lines the CLI prints to stderr as it goes
MB = 1024 * 1024


def good_lines(n: int = 40) -> str:
    """``n`` honest CSV rows (no header): nobody shares anything."""
    return "".join(
        f"c{i:03d},2024-03-01T00:{i % 60:02d}:00Z,task,dev{i},10.0.0.{i},PAY{i}\n" for i in range(n)
    )


def json_line(i: int, **fields: object) -> str:
    record = {
        "contributor_id": f"c{i:03d}",
        "event_time": "2024-03-01T00:00:00Z",
        "device_id": f"d{i}",
    }
    record.update(fields)
    return json.dumps(record)


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def error_line(result: Result) -> str:
    """The one error line of a failed run; fails on a traceback or on any other output."""
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if not PROGRESS.match(line)]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ringfinder: error: "), lines[0]
    assert result.stdout == ""
    return lines[0]


def manifest_rows(out: Path) -> dict[str, int]:
    """manifest.json row accounting, checked to add up and to match quarantine.csv."""
    rows = json.loads((out / "manifest.json").read_text(encoding="utf-8"))["rows"]
    assert rows["read"] == rows["accepted"] + rows["quarantined"] + rows["duplicates"]
    with (out / "quarantine.csv").open(newline="", encoding="utf-8") as handle:
        assert len(list(csv.DictReader(handle))) == rows["quarantined"]
    return rows


def quarantine_reasons(out: Path) -> list[str]:
    with (out / "quarantine.csv").open(newline="", encoding="utf-8") as handle:
        return sorted(row["reason"] for row in csv.DictReader(handle))


def write_parquet(path: Path, **columns: pa.Array | list[object]) -> Path:
    base: dict[str, object] = {
        "contributor_id": ["a", "b"],
        "event_time": ["2024-03-01T00:00:00Z", "2024-03-01T01:00:00Z"],
        "event_type": ["task", "task"],
        "device_id": ["d1", "d1"],
        "ip": ["198.51.100.1", "198.51.100.2"],
        "payout_account": ["P1", "P2"],
    }
    base.update(columns)
    pq.write_table(pa.table(base), path)
    return path


def write_config(folder: Path, text: str, name: str = "config.toml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


# --- fatal inputs: one line, the file or key named, exit 1 (data) or 2 (usage / config) -----


@dataclass(frozen=True)
class Hostile:
    """A hostile input: ``build(tmp_path)`` writes it and returns the CLI arguments before --out."""

    build: Callable[[Path], list[str | Path]]
    code: int
    expected: tuple[str, ...]  # substrings of the error line; "{path}" is the first argument


def _file(name: str, data: bytes | str) -> Callable[[Path], list[str | Path]]:
    def build(folder: Path) -> list[str | Path]:
        path = folder / name
        if isinstance(data, str):
            path.write_text(data, encoding="utf-8")
        else:
            path.write_bytes(data)
        return [path]

    return build


def _with_config(toml: str) -> Callable[[Path], list[str | Path]]:
    def build(folder: Path) -> list[str | Path]:
        events = folder / "events.csv"
        events.write_text(HEADER + good_lines(), encoding="utf-8")
        return [events, "--config", write_config(folder, toml)]

    return build


def _parquet(**columns: pa.Array | list[object]) -> Callable[[Path], list[str | Path]]:
    return lambda folder: [write_parquet(folder / "events.parquet", **columns)]


GARBAGE = bytes(range(256)) * 16  # every byte value, NUL and invalid UTF-8 included
LATIN1_ROWS = "".join(
    f"Jos\xe9 {i},2024-03-01T00:00:00Z,task,d\xe9v,10.0.0.1,PAY1\n" for i in range(20)
)

HOSTILE = {
    "empty file": Hostile(_file("events.csv", b""), 1, ("{path}: file is empty",)),
    "header only": Hostile(_file("events.csv", HEADER), 1, ("{path}: no rows in the input",)),
    "binary garbage as CSV": Hostile(
        _file("events.csv", GARBAGE), 1, ("{path}: the header line is not UTF-8 text", "re-encode")
    ),
    "binary garbage as gzipped CSV": Hostile(
        _file("events.csv.gz", GARBAGE), 1, ("{path}: cannot read as csv", "GZIP")
    ),
    "lone CR in an unquoted field": Hostile(
        _file(
            "events.csv", HEADER + good_lines(5) + "c9,2024-03-01T00:00:00Z,task,de\rv,1.2.3.4,P\n"
        ),
        1,
        ("{path}: line 7 holds a carriage return (\\r) outside quotes", "quote that field"),
    ),
    "lone CR in a gzipped CRLF file": Hostile(
        _file(
            "events.csv.gz",
            gzip.compress(
                (HEADER + good_lines(3) + "c9\r,2024-03-01T00:00:00Z,t,d,1.2.3.4,P\n")
                .replace("\n", "\r\n")
                .encode()
            ),
        ),
        1,
        ("{path}: line 5 holds a carriage return",),
    ),
    "binary garbage as Parquet": Hostile(
        _file("events.parquet", GARBAGE), 1, ("{path}: cannot read as parquet",)
    ),
    "binary garbage as JSON lines": Hostile(
        _file("events.jsonl", GARBAGE), 1, ("{path}: ", "lines are not valid UTF-8", "re-encode")
    ),
    "UTF-16 CSV with BOM": Hostile(
        _file("events.csv", (HEADER + good_lines()).encode("utf-16")),
        1,
        ("{path}: file is UTF-16 text", "byte-order mark", "re-encode"),
    ),
    "UTF-16 JSON lines with BOM": Hostile(
        _file("events.jsonl", (json_line(1) + "\n").encode("utf-16")),
        1,
        ("{path}: file is UTF-16 text",),
    ),
    "UTF-32 CSV with BOM": Hostile(
        _file("events.csv", (HEADER + good_lines()).encode("utf-32")),
        1,
        ("{path}: file is UTF-32 text",),
    ),
    "UTF-16 CSV without BOM": Hostile(
        _file("events.csv", (HEADER + good_lines()).encode("utf-16-le")),
        1,
        ("{path}: the header line is not UTF-8 text",),
    ),
    "Latin-1 file": Hostile(
        _file("events.csv", (HEADER + LATIN1_ROWS).encode("latin-1")),
        1,
        ("{path}: 20 of 20 lines are not valid UTF-8", "input.max_bad_fraction", "re-encode"),
    ),
    "Latin-1 header": Hostile(
        _file(
            "events.csv",
            (HEADER.replace("\n", ",r\xe9f\n") + good_lines().replace("\n", ",x\n")).encode(
                "latin-1"
            ),
        ),
        1,
        ("{path}: the header line is not UTF-8 text",),
    ),
    "mapped column missing": Hostile(
        _file(
            "events.csv",
            "contributor_id,event_time,event_type,device_id,ip\nc1,2024-03-01,task,d,1.2.3.4\n",
        ),
        1,
        ("{path}: column 'payout_account' (input.kinds.payment.column) not found",),
    ),
    "mapped JSON key missing": Hostile(
        _file("events.jsonl", json_line(1) + "\n"),
        1,
        ("{path}: key 'event_type' (input.event_type) not found",),
    ),
    "glob matching nothing": Hostile(
        lambda folder: [str(folder / "nothing-*.csv")],
        1,
        ("{path}: no input files match this pattern",),
    ),
    "folder without event files": Hostile(
        lambda folder: [folder], 1, ("{path}: folder holds no .csv, .parquet or .jsonl files",)
    ),
    "missing file": Hostile(
        lambda folder: [folder / "nope.csv"], 1, ("{path}: input file not found",)
    ),
    "Parquet event_time as struct": Hostile(
        _parquet(event_time=pa.array([{"s": 1}, {"s": 2}])),
        1,
        ("{path}: column 'event_time' (input.timestamp) has the nested type STRUCT(s BIGINT)",),
    ),
    "Parquet event_time as list": Hostile(
        _parquet(event_time=pa.array([[1], [2]])),
        1,
        ("{path}: column 'event_time' (input.timestamp) has the nested type BIGINT[]",),
    ),
    "Parquet device_id as map": Hostile(
        _parquet(
            device_id=pa.array([[("k", "v")], [("k", "w")]], pa.map_(pa.string(), pa.string()))
        ),
        1,
        ("{path}: column 'device_id' (input.kinds.device.column) has the nested type MAP",),
    ),
    "JSON lines that are not objects": Hostile(
        _file("events.jsonl", '[1, 2]\n42\n"text"\nnull\n'),
        1,
        (
            "4 of 4 rows (100.0%) were rejected",
            "input.max_bad_fraction = 0.05",
            "JSON line is not an object: 4",
        ),
    ),
    "mostly ragged CSV": Hostile(
        _file("events.csv", HEADER + good_lines() + "x,2024\n" * 20),
        1,
        ("20 of 60 rows (33.3%) were rejected", "malformed line: missing columns: 20"),
    ),
    "config with an unknown key": Hostile(
        _with_config("[input]\nfoo = 1\n"), 2, ("input.foo: unknown key",)
    ),
    "config with an unknown section": Hostile(
        _with_config("[inputs]\nfoo = 1\n"), 2, ("inputs: unknown key",)
    ),
    "config with a wrong type": Hostile(
        _with_config("[detect]\nresolution = 'high'\n"), 2, ("detect.resolution = 'high': ",)
    ),
    "config with a value out of range": Hostile(
        _with_config("[input]\nmax_bad_fraction = 2\n"),
        2,
        ("input.max_bad_fraction = 2: ", "less than or equal to 1"),
    ),
    "config with too many threads": Hostile(
        _with_config("[resources]\nthreads = 100000\n"), 2, ("resources.threads = 100000",)
    ),
    "config that is not TOML": Hostile(
        _with_config("[detect\nresolution = \n"), 2, ("not valid TOML",)
    ),
    "config that is binary": Hostile(_with_config("\x00\x01\x02"), 2, ("config.toml: ",)),
}


@pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))
def test_a_hostile_input_gives_one_line_and_its_exit_code(case: str, tmp_path: Path) -> None:
    hostile = HOSTILE[case]
    args = hostile.build(tmp_path)
    out = tmp_path / "out"
    result = invoke("detect", *args, "--out", out)
    assert result.exit_code == hostile.code, result.output
    line = error_line(result)
    for expected in hostile.expected:
        assert expected.replace("{path}", str(args[0])) in line, line
    assert not out.exists()
    assert not list(tmp_path.glob(".out.tmp-*"))


def test_a_bad_memory_limit_exits_2_naming_the_key(tmp_path: Path) -> None:
    args = _with_config("[resources]\nmemory_limit = 'lots'\n")(tmp_path)
    result = invoke("detect", *args, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert "resources.memory_limit" in error_line(result)


def test_control_characters_in_a_column_name_cannot_break_the_error_line(tmp_path: Path) -> None:
    events = tmp_path / "events.csv"
    events.write_text(
        '"contri\nbutor","x\x1b[31mred",event_time\na,b,2024-03-01T00:00:00Z\n', encoding="utf-8"
    )
    result = invoke("detect", events, "--out", tmp_path / "out")
    assert result.exit_code == 1
    line = error_line(result)
    assert "contri\\nbutor" in line
    assert "x\\x1b[31mred" in line
    assert "\x1b" not in result.stderr


def test_a_10mb_column_name_gives_a_short_error_line(tmp_path: Path) -> None:
    events = tmp_path / "events.csv"
    events.write_text("x" * (10 * MB) + "\n1\n", encoding="utf-8")
    result = invoke("detect", events, "--out", tmp_path / "out")
    assert result.exit_code == 1
    line = error_line(result)
    assert line.startswith(
        f"ringfinder: error: {events}: column 'contributor_id' (input.contributor)"
    )
    assert len(line) < 2100


def test_an_out_folder_that_is_not_an_output_is_not_replaced(tmp_path: Path) -> None:
    events = tmp_path / "events.csv"
    events.write_text(HEADER + good_lines(), encoding="utf-8")
    result = invoke("detect", events, "--out", tmp_path)
    assert result.exit_code == 2
    assert "is not a ringfinder output" in error_line(result)
    assert events.read_text(encoding="utf-8") == HEADER + good_lines()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.csv"]


@pytest.mark.parametrize("inside", ["input", "config", "known-bad", "history"])
def test_nothing_a_run_reads_or_keeps_may_lie_in_the_out_folder(
    tmp_path: Path, inside: str
) -> None:
    out = tmp_path / "out"
    events = tmp_path / "events.csv"
    events.write_text(HEADER + good_lines(), encoding="utf-8")
    assert invoke("detect", events, "--out", out).exit_code == 0  # an earlier output
    kept = out / {"input": "events.csv", "config": "c.toml", "known-bad": "bad.txt"}.get(
        inside, "runs.duckdb"
    )
    if inside == "input":
        shutil.copy(events, kept)
        events = kept
    else:
        kept.write_text("c1\n" if inside == "known-bad" else "", encoding="utf-8")
    history = f'[output]\nhistory = "{kept}"\n' if inside == "history" else ""
    config = kept if inside == "config" else write_config(tmp_path, history)
    args = ["--known-bad", kept] if inside == "known-bad" else []
    result = invoke("detect", events, "--config", config, *args, "--out", out)
    assert result.exit_code == 2
    assert error_line(result) == (
        f"ringfinder: error: {kept}: lies inside --out {out}, which the run replaces whole; "
        "move it out or write the outputs to another folder"
    )
    assert kept.exists() and "ingest done" not in result.stderr


@pytest.mark.parametrize("query", ["", " ; "])
def test_an_empty_sql_query_is_a_usage_error(tmp_path: Path, query: str) -> None:
    result = invoke("detect", "--sql", query, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert error_line(result) == "ringfinder: error: --sql: the query is empty"


def test_a_refused_out_folder_is_refused_before_any_work_or_history(tmp_path: Path) -> None:
    events = tmp_path / "data" / "events.csv"
    events.parent.mkdir()
    events.write_text(HEADER + good_lines(), encoding="utf-8")
    history = tmp_path / "runs.duckdb"
    config = write_config(tmp_path, f'[output]\nhistory = "{history}"\n')
    result = invoke("detect", events, "--config", config, "--out", tmp_path / "data")
    assert result.exit_code == 2
    assert "is not a ringfinder output" in error_line(result)
    assert "ingest done" not in result.stderr and not history.exists()


# --- partial damage: quarantined, not fatal; the accounting adds up -------------------------


def _run_ok(*args: str | Path, out: Path) -> dict[str, int]:
    result = invoke("detect", *args, "--out", out)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.stderr
    return manifest_rows(out)


def test_a_few_latin1_lines_are_quarantined(tmp_path: Path) -> None:
    events = tmp_path / "events.csv"
    events.write_bytes(
        (HEADER + good_lines() + LATIN1_ROWS.splitlines()[0] + "\n").encode("latin-1")
    )
    rows = _run_ok(events, out=tmp_path / "out")
    assert rows == {"read": 41, "accepted": 40, "quarantined": 1, "duplicates": 0}
    assert quarantine_reasons(tmp_path / "out") == ["malformed line: invalid encoding"]


def test_a_few_ragged_lines_are_quarantined(tmp_path: Path) -> None:
    events = tmp_path / "events.csv"
    events.write_text(
        HEADER + good_lines() + "x,2024\n" + "y,2024-03-01,task,d,1.2.3.4,P,extra,more\n"
    )
    rows = _run_ok(events, out=tmp_path / "out")
    assert rows == {"read": 42, "accepted": 40, "quarantined": 2, "duplicates": 0}
    assert all(r.startswith("malformed line") for r in quarantine_reasons(tmp_path / "out"))


def test_a_few_bad_json_lines_are_quarantined(tmp_path: Path) -> None:
    lines = [json_line(i) for i in range(96)]
    lines += [
        "[1, 2, 3]",
        "{not json",
        json_line(97, contributor_id={"id": 1}),
        json_line(98, event_time=[1]),
    ]
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = write_config(
        tmp_path, "[input]\nevent_type = ''\n[input.kinds.device]\ncolumn = 'device_id'\n"
    )
    rows = _run_ok(events, "--config", config, out=tmp_path / "out")
    assert rows == {"read": 100, "accepted": 96, "quarantined": 4, "duplicates": 0}
    assert quarantine_reasons(tmp_path / "out") == [
        "JSON line is not an object",
        "malformed JSON line",
        "nested JSON value for contributor_id",
        "nested JSON value for event_time",
    ]


def test_bad_rows_up_to_the_limit_pass_and_above_it_fail(tmp_path: Path) -> None:
    events = tmp_path / "events.csv"
    events.write_text(HEADER + good_lines(90) + "x,2024\n" * 10, encoding="utf-8")  # 10 %
    config = write_config(tmp_path, "[input]\nmax_bad_fraction = 0.1\n")
    rows = _run_ok(events, "--config", config, out=tmp_path / "out")
    assert rows["quarantined"] == 10
    strict = write_config(tmp_path, "[input]\nmax_bad_fraction = 0.09\n", name="strict.toml")
    result = invoke("detect", events, "--config", strict, "--out", tmp_path / "out2")
    assert result.exit_code == 1
    assert "10 of 100 rows (10.0%) were rejected" in error_line(result)


@pytest.mark.parametrize("where", ["plain field", "quoted field with newlines", "JSON value"])
def test_a_10mb_field_is_read(where: str, tmp_path: Path) -> None:
    if where == "JSON value":
        events = tmp_path / "events.jsonl"
        lines = [json_line(i, event_type="task") for i in range(40)]
        lines.append(json_line(99, event_type="task", device_id="A" * (10 * MB)))
        events.write_text("\n".join(lines) + "\n", encoding="utf-8")
        config = write_config(tmp_path, "[input.kinds.device]\ncolumn = 'device_id'\n")
        rows = _run_ok(events, "--config", config, out=tmp_path / "out")
    else:
        big = "A" * (10 * MB) if where == "plain field" else '"' + "A,\n" * (10 * MB // 3) + '"'
        events = tmp_path / "events.csv"
        events.write_text(
            HEADER + good_lines() + f"big,2024-03-01T00:00:00Z,task,{big},1.2.3.4,P\n"
        )
        rows = _run_ok(events, out=tmp_path / "out")
    assert rows == {"read": 41, "accepted": 41, "quarantined": 0, "duplicates": 0}


def test_odd_but_readable_files_are_read(tmp_path: Path) -> None:
    """A UTF-8 BOM, a NUL inside a field, and integer contributor ids in Parquet."""
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + (HEADER + good_lines(10)).encode())
    assert _run_ok(bom, out=tmp_path / "o1")["accepted"] == 10
    nul = tmp_path / "nul.csv"
    nul.write_bytes(
        (HEADER + good_lines(10)).encode() + b"a\x00b,2024-03-01T00:00:00Z,task,d,1.2.3.4,P\n"
    )
    assert _run_ok(nul, out=tmp_path / "o2")["read"] == 11
    ints = write_parquet(tmp_path / "ints.parquet", contributor_id=pa.array([7, 8], pa.int64()))
    assert _run_ok(ints, out=tmp_path / "o3")["accepted"] == 2
    members = pd.read_parquet(tmp_path / "o3" / "members.parquet")
    assert sorted(members["contributor_id"]) == ["7", "8"]  # ints are ids as text


# --- real processes: what a user's shell sees ----------------------------------------------


def ringfinder_command() -> list[str]:
    script = Path(sys.executable).parent / "ringfinder"
    found = str(script) if script.exists() else shutil.which("ringfinder")
    assert found, "the ringfinder console script is not installed"
    return [found]


def run_process(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [*ringfinder_command(), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.parametrize(
    "name, data, expected",
    [
        ("garbage.csv", GARBAGE, "the header line is not UTF-8 text"),
        ("garbage.jsonl", GARBAGE, "lines are not valid UTF-8"),
        ("utf16.csv", (HEADER + good_lines()).encode("utf-16"), "file is UTF-16 text"),
        (
            "huge-header.csv",
            b"x" * (10 * MB) + b"\n1\n",
            "column 'contributor_id' (input.contributor) not found",
        ),
    ],
)
def test_a_real_process_prints_exactly_one_line(
    name: str, data: bytes, expected: str, tmp_path: Path
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    done = run_process("detect", path, "--out", tmp_path / "out")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr[:2000]
    assert lines[0].startswith(f"ringfinder: error: {path}: ")
    assert expected in lines[0]
    assert len(lines[0]) < 2100
    assert done.stdout == ""


def test_a_real_process_reads_a_10mb_field(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    path.write_text(
        HEADER + good_lines() + "big,2024-03-01T00:00:00Z,task," + "A" * (10 * MB) + ",1.2.3.4,P\n"
    )
    done = run_process("detect", path, "--out", tmp_path / "out", "--no-html")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert all(PROGRESS.match(line) for line in done.stderr.splitlines()), done.stderr[-2000:]
    assert done.stdout.startswith("read 41 rows: 41 accepted, 0 quarantined, 0 duplicates")
    manifest_rows(tmp_path / "out")


# --- spreadsheet safety --------------------------------------------------------------------

FORMULAS = ['=HYPERLINK("http://x","y")', "+1", "-2+3", "@SUM(A1)", "\t=1"]


def _csv_cells(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [cell for row in csv.reader(handle) for cell in row]


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_formulas_are_neutralised_in_every_csv_export_but_raw_elsewhere(
    tmp_path: Path, newline: str
) -> None:
    events = tmp_path / "events.csv"
    with events.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator=newline)
        writer.writerow(HEADER.strip().split(","))
        for i, who in enumerate(FORMULAS):  # one ring: one phone, one payout account
            writer.writerow(
                [
                    who,
                    f"2024-03-01T0{i}:00:00Z",
                    "signup",
                    "farm-phone",
                    f"198.51.100.{i}",
                    "GB00 RING",
                ]
            )
        for i in range(20):
            writer.writerow(
                [
                    f"honest{i}",
                    "2024-03-02T00:00:00Z",
                    "task",
                    f"own{i}",
                    f"203.0.113.{i}",
                    f"OWN{i}",
                ]
            )
        writer.writerow(['=HYPERLINK("http://x","y")', "not a time", "task", "@SUM(A1)", "", ""])
    with events.open("a", newline="", encoding="utf-8") as handle:  # malformed: kept as they came
        handle.write(
            "".join(
                line + newline
                for line in ["+1,ragged", "-2+3,ragged", "@SUM(A1),ragged", "\t=1,ragged"]
            )
        )
    config = write_config(tmp_path, "[input]\nmax_bad_fraction = 0.3\n")
    out = tmp_path / "out"
    rows = _run_ok(events, "--config", config, out=out)
    assert rows["quarantined"] == 5

    stripped = sorted(who.strip() for who in FORMULAS)  # ids are trimmed on the way in
    for name in ("members.csv", "rings.csv", "quarantine.csv"):
        unsafe = [cell for cell in _csv_cells(out / name) if cell.startswith(FORMULA_START)]
        assert unsafe == [], (name, unsafe)
    with (out / "members.csv").open(newline="", encoding="utf-8") as handle:
        in_csv = sorted(row["contributor_id"] for row in csv.DictReader(handle))
    assert in_csv == sorted("'" + who for who in stripped)
    with (out / "quarantine.csv").open(newline="", encoding="utf-8") as handle:
        raws = sorted(row["raw"] for row in csv.DictReader(handle))
    assert sorted(["'+1,ragged", "'-2+3,ragged", "'@SUM(A1),ragged", "'\t=1,ragged"]) == sorted(
        r for r in raws if r.endswith("ragged")
    )
    assert json.loads(next(r for r in raws if r.startswith("{")))["device_id"] == "@SUM(A1)"

    assert sorted(pd.read_parquet(out / "members.parquet")["contributor_id"]) == stripped
    rule_inputs = [
        json.loads(line) for line in (out / "rule_inputs.jsonl").read_text().splitlines()
    ]
    assert sorted(r["contributor_id"] for r in rule_inputs) == stripped


# --- resources -----------------------------------------------------------------------------


def test_memory_limit_threads_and_temp_directory_reach_duckdb(tmp_path: Path) -> None:
    spill = tmp_path / "spill"
    config = build_config(
        {"resources": {"memory_limit": "300MB", "threads": 2, "temp_directory": str(spill)}}
    )
    con = connect(config)
    try:
        memory, threads, temp = con.execute(
            "SELECT current_setting('memory_limit'), current_setting('threads'), "
            "current_setting('temp_directory')"
        ).fetchone()  # type: ignore[misc]
    finally:
        con.close()
    assert memory in ("286.1 MiB", "300.0 MB")  # DuckDB shows 300MB in binary units
    assert int(threads) == 2
    assert Path(temp) == spill


def test_the_defaults_leave_duckdb_alone() -> None:
    con = connect(Config())
    try:
        threads = con.execute("SELECT current_setting('threads')").fetchone()[0]  # type: ignore[index]
    finally:
        con.close()
    assert int(threads) >= 1


def _huge_ring(n: int) -> pd.DataFrame:
    """``n`` accounts, each on its own device and IP, chained by payout accounts they share
    in twos: one ring of ``n`` held together by strong links, with a linear projection."""
    rows = []
    for i in range(n):
        when = f"2024-03-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z"
        ip = f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"
        rows.append((f"m{i:05d}", when, "signup", f"dev{i}", ip, f"A{i // 2}"))
        rows.append((f"m{i:05d}", when, "task", f"dev{i}", ip, f"B{(i + 1) // 2}"))
    return pd.DataFrame(rows, columns=HEADER.strip().split(","))


def test_a_ring_of_ten_thousand_is_scored() -> None:
    result = find_rings(_huge_ring(10_000), Config())
    assert len(result.rings) == 1
    assert int(result.rings["size"].iloc[0]) == 10_000
    assert len(result.members) == 10_000
    assert 0 <= float(result.rings["ring_score"].iloc[0]) <= 1
    assert "SHARED_PAYOUT" in result.rings["reasons"].iloc[0].split(";")


def test_ten_thousand_accounts_on_one_payout_account_are_one_ring() -> None:
    """Far above the payment hub_cap (200): a strong identifier is never a hub; its users are
    joined through star links, not 50 million projected pairs."""
    frame = _huge_ring(10_000).assign(payout_account="GB00 COLLECTOR 0001")
    result = find_rings(frame)
    assert len(result.rings) == 1
    assert int(result.rings["size"].iloc[0]) == 10_000
    assert bool(result.rings["flagged"].iloc[0])
    assert "SHARED_PAYOUT" in result.rings["reasons"].iloc[0].split(";")
