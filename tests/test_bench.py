"""scripts/bench.py runs end to end at a tiny size and prints its table.

Speed targets are never checked here: the benchmark measures, it does not test.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import duckdb
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench.py"


def _load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("text", "events"),
    [("1M", 1_000_000), ("500k", 500_000), ("2000000", 2_000_000), ("2.5m", 2_500_000)],
)
def test_sizes_accept_the_usual_spellings(text: str, events: int) -> None:
    assert bench.parse_size(text) == events
    assert bench.parse_size(bench.size_label(events)) == events


def test_bad_size_is_one_line_error() -> None:
    done = _run("--sizes", "10X")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "bench.py: error: argument --sizes: size '10X': expected a number like 1M, 500k or 2000000"
    ]


def test_tiny_run_prints_table_and_saves_json(tmp_path: Path) -> None:
    saved = tmp_path / "bench.json"
    args = ("--sizes", "2k", "--runs", "1", "--data-dir", str(tmp_path / "data"))
    done = _run(*args, "--json", str(saved))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = next(line for line in lines if line.startswith("size "))
    columns = ("ingest", "graph", "detect", "score", "write", "total s", "peak GiB", "read s")
    for column in (*columns, "÷ read", "speedup"):
        assert column in header
    row = next(line for line in lines if line.startswith("2k "))
    assert "failed" not in row and row.rstrip().endswith("x")
    assert any("targets" in line for line in lines)
    report = json.loads(saved.read_text(encoding="utf-8"))
    (result,) = report["results"]
    assert result["events"] == 2_000 and len(result["runs"]) == 1
    run = result["runs"][0]
    assert set(run["stages"]) >= {"ingest", "graph", "detect", "score", "write"}
    assert all(s["seconds"] >= 0 and s["peak_bytes"] > 0 for s in run["stages"].values())
    assert run["peak_bytes"] >= max(s["peak_bytes"] for s in run["stages"].values())
    assert result["baseline"]["status"] == "ok"
    assert 0 < result["read_seconds"] < run["seconds"]  # reading is part of the run
    assert f"{result['median']['seconds'] / result['read_seconds']:.1f}" in row.split()
    # The data is cached: asking for it again does not generate it again.
    events_path = tmp_path / "data" / "2k" / "events.parquet"
    written = events_path.stat().st_mtime_ns
    assert bench.ensure_data(tmp_path / "data", 2_000)[0] == events_path
    assert events_path.stat().st_mtime_ns == written


def test_the_yardstick_scales_the_time_target_to_the_machine() -> None:
    """A machine that reads the 10M file in 2.6 s, twice the issue's 1.3 s, gets 30 s for 15."""
    entry = {
        "events": 10_000_000,
        "input": "parquet",
        "median": {"seconds": 19.0, "peak_bytes": 1.9 * bench.GIB},
        "read_seconds": 2.6,
        "baseline": {"status": "not run"},
    }
    checks = {c["target"]: c for c in bench.check_targets([entry])}
    assert checks["10M events: <= 15 s and <= 2 GiB peak"]["status"] == "missed"  # still a miss
    (info,) = [c for c in checks.values() if c["status"] == "info"]
    assert info["measured"] == "2.60 s here: the 15 s target scales to 30.0 s"
    table = bench.results_table(
        [
            {
                **entry,
                "size": "10M",
                "rows": 1,
                "contributors": 1,
                "median": {**entry["median"], "stages": {}},
            }
        ]
    )
    assert "2.60" in table.splitlines()[-1].split() and "7.3" in table.splitlines()[-1].split()


def test_memory_limit_reaches_the_runs(tmp_path: Path) -> None:
    """--memory-limit and --temp-dir become the runs' resources, and the report says so."""
    saved = tmp_path / "bench.json"
    spill = tmp_path / "spill"
    done = _run(
        "--sizes", "2k", "--runs", "1", "--no-baseline", "--data-dir", str(tmp_path / "data"),
        "--memory-limit", "300MB", "--temp-dir", str(spill), "--json", str(saved),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"memory_limit = 300MB, spilling to {spill}" in done.stdout
    report = json.loads(saved.read_text(encoding="utf-8"))
    assert report["memory_limit"] == "300MB"
    assert report["results"][0]["runs"][0]["memory_limit"] == "300MB"


def test_every_input_form_reads_the_same_events(tmp_path: Path) -> None:
    """--input converts the cached Parquet once; every form gives the same rows and rings."""
    data = tmp_path / "data"
    found = {}
    for form in bench.INPUT_FORMS:
        saved = tmp_path / f"{form}.json"
        done = _run("--sizes", "2k", "--runs", "1", "--data-dir", str(data), "--input", form,
                    "--json", str(saved))  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert f"read as {form}," in done.stdout
        (result,) = json.loads(saved.read_text(encoding="utf-8"))["results"]
        assert Path(result["data"]).name == bench.INPUT_FORMS[form][0]
        # The baseline reads Parquet with pandas: it is only beside the Parquet runs.
        assert result["baseline"]["status"] == ("ok" if form == "parquet" else "not run")
        run = result["runs"][0]
        found[form] = (run["rows"], run["pairs"], run["rings"], run["flagged_rings"])
    assert len(set(map(json.dumps, found.values()))) == 1, found
    assert found["parquet"][0]["quarantined"] > 0  # the mess is there to be read alike
    typed = data / "2k" / "events-typed.parquet"
    types = {row[0]: row[1] for row in duckdb.sql(f"DESCRIBE SELECT * FROM '{typed}'").fetchall()}
    assert types["event_time"] == "TIMESTAMP"
