"""The command line: outputs, exit codes, one-line errors, determinism, spreadsheet safety."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner, Result

from ringfinder.cli import main

EventWriter = Callable[..., Path]  # the ``write_events`` fixture
OUTPUTS = (
    "members.csv",
    "members.parquet",
    "rings.csv",
    "rings.parquet",
    "rule_inputs.jsonl",
    "quarantine.csv",
    "manifest.json",
)
# Ring members whose ids a spreadsheet would run as formulas.
RING = ['=HYPERLINK("http://x")', "+1234", "-cmd", "@SUM(A1)"]
LONERS = ["dave", "erin", "frank", "gina"]


def tiny_events() -> list[tuple[str, ...]]:
    """Four accounts on one phone paying out to one account (a ring), four honest loners,
    one exact duplicate and one row without a contributor id: 22 rows."""
    rows = []
    for i, c in enumerate(RING):
        for day in (1, 2):
            rows.append(
                (
                    c,
                    f"2024-03-0{day}T0{i}:00:00Z",
                    "signup" if day == 1 else "task",
                    "farm-phone-1",
                    f"198.51.100.{i + 1}",
                    "GB00 RING 0001",
                )
            )
    for i, c in enumerate(LONERS):
        for day in (1, 2, 3):
            rows.append(
                (
                    c,
                    f"2024-03-0{day}T1{i}:00:00Z",
                    "task",
                    f"own-phone-{c}",
                    f"203.0.113.{i + 1}",
                    f"OWN-{c}",
                )
            )
    rows.append(rows[-1])  # an exact duplicate
    rows.append(("", "2024-03-01T00:00:00Z", "task", "=cmd|' /C calc'!A0", "", ""))
    return rows


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def error_line(result: Result) -> str:
    """The one line the CLI prints on an error; fails on anything else, such as a traceback."""
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ringfinder: error: ")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.output
    return errors[0]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    """One successful `detect` on the tiny events, shared by the tests that read its outputs."""
    folder = tmp_path_factory.mktemp("cli")
    path = folder / "events.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(
            ["contributor_id", "event_time", "event_type", "device_id", "ip", "payout_account"]
        )
        writer.writerows(tiny_events())
    out = folder / "out"
    return out, invoke("detect", str(path), "--out", str(out))


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_detect_writes_every_output(run: tuple[Path, Result]) -> None:
    out, result = run
    assert result.exit_code == 0, result.output
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    assert "read 22 rows: 20 accepted, 1 quarantined, 1 duplicates; 8 contributors" in result.stdout
    assert "1 rings, 1 flagged (4 contributors)" in result.stdout


def test_each_stage_reports_the_time_it_took(run: tuple[Path, Result]) -> None:
    """The progress display ends each stage with its time, so a long run shows where it is."""
    _, result = run
    for stage in ("ingest", "graph", "detect", "score", "write"):
        assert re.search(rf"^{stage} done in \d+\.\d s$", result.stderr, re.MULTILINE), stage


def test_the_ring_is_found_and_flagged(run: tuple[Path, Result]) -> None:
    out, _ = run
    members = pd.read_parquet(out / "members.parquet")
    assert sorted(members["contributor_id"]) == sorted(RING)
    assert members["ring_id"].nunique() == 1
    assert members["flagged"].all()
    rings = read_csv_rows(out / "rings.csv")
    assert len(rings) == 1
    assert rings[0]["size"] == "4"
    assert rings[0]["flagged"] == "true"
    assert 0.5 <= float(rings[0]["ring_score"]) <= 1.0
    assert "SHARED_PAYOUT" in rings[0]["reasons"].split(";")
    rule_inputs = [
        json.loads(line) for line in (out / "rule_inputs.jsonl").read_text().splitlines()
    ]
    assert sorted(r["contributor_id"] for r in rule_inputs) == sorted(RING)
    assert all(r["ring_id"] == rings[0]["ring_id"] and r["flagged"] is True for r in rule_inputs)


def test_manifest_rows_add_up(run: tuple[Path, Result]) -> None:
    out, _ = run
    manifest = json.loads((out / "manifest.json").read_text())
    rows = manifest["rows"]
    assert rows == {"read": 22, "accepted": 20, "quarantined": 1, "duplicates": 1}
    assert rows["read"] == rows["accepted"] + rows["quarantined"] + rows["duplicates"]
    assert manifest["quarantine_reasons"] == {"missing contributor id": 1}
    assert len(read_csv_rows(out / "quarantine.csv")) == rows["quarantined"]
    assert manifest["seed"] == 0
    assert manifest["config"]["detect"]["seed"] == 0
    assert manifest["inputs"][0]["path"].endswith("events.csv")


def test_formula_cells_are_neutralised_in_csv_but_raw_in_parquet(run: tuple[Path, Result]) -> None:
    out, _ = run
    in_csv = sorted(row["contributor_id"] for row in read_csv_rows(out / "members.csv"))
    assert in_csv == sorted("'" + c for c in RING)
    in_parquet = sorted(pd.read_parquet(out / "members.parquet")["contributor_id"])
    assert in_parquet == sorted(RING)
    (quarantined,) = read_csv_rows(out / "quarantine.csv")
    assert not quarantined["raw"].startswith(("=", "+", "-", "@"))
    assert json.loads(quarantined["raw"])["device_id"] == "=cmd|' /C calc'!A0"


def test_json_summary(run: tuple[Path, Result], tmp_path: Path) -> None:
    out, _ = run
    events = out.parent / "events.csv"
    result = invoke("detect", str(events), "--out", str(tmp_path / "out"), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["rows"] == {"read": 22, "accepted": 20, "quarantined": 1, "duplicates": 1}
    assert summary["rings"] == 1
    assert summary["flagged_contributors"] == 4
    assert summary["out_dir"] == str(tmp_path / "out")


def test_two_runs_give_byte_identical_tables(run: tuple[Path, Result], tmp_path: Path) -> None:
    out, _ = run
    events = out.parent / "events.csv"
    again = tmp_path / "again"
    for _ in range(2):  # the second run replaces the first one's folder
        result = invoke("detect", str(events), "--out", str(again))
        assert result.exit_code == 0, result.output
    for name in ("members.csv", "rings.csv"):
        assert (again / name).read_bytes() == (out / name).read_bytes(), name


def test_running_out_of_memory_says_which_settings_help(
    run: tuple[Path, Result], tmp_path: Path
) -> None:
    """An input bigger than the memory limit is not the input's fault: the line says so."""
    out, _ = run
    config = tmp_path / "tight.toml"
    config.write_text('[resources]\nmemory_limit = "2MB"\nthreads = 1\n')
    events = str(out.parent / "events.csv")
    result = invoke("detect", events, "--out", str(tmp_path / "o"), "--config", str(config))
    assert result.exit_code == 1
    line = error_line(result)
    assert line.startswith("ringfinder: error: data engine ran out of memory (Out of Memory")
    assert "raise resources.memory_limit" in line and "resources.temp_directory" in line
    assert "cannot read" not in line


def test_a_bad_config_exits_2_naming_the_key(run: tuple[Path, Result], tmp_path: Path) -> None:
    out, _ = run
    config = tmp_path / "bad.toml"
    config.write_text("[detect]\nresolution = -1\n")
    result = invoke(
        "detect",
        str(out.parent / "events.csv"),
        "--out",
        str(tmp_path / "o"),
        "--config",
        str(config),
    )
    assert result.exit_code == 2
    line = error_line(result)
    assert line.startswith(f"ringfinder: error: {config}: detect.resolution = -1: ")
    assert not (tmp_path / "o").exists()


def test_an_unknown_config_key_exits_2(run: tuple[Path, Result], tmp_path: Path) -> None:
    out, _ = run
    config = tmp_path / "bad.toml"
    config.write_text("[score]\ntreshold = 0.4\n")
    result = invoke(
        "detect",
        str(out.parent / "events.csv"),
        "--out",
        str(tmp_path / "o"),
        "--config",
        str(config),
    )
    assert result.exit_code == 2
    assert error_line(result) == f"ringfinder: error: {config}: score.treshold: unknown key"


def test_no_inputs_is_a_usage_error(tmp_path: Path) -> None:
    result = invoke("detect", "--out", str(tmp_path / "o"))
    assert result.exit_code == 2
    assert "give input files" in error_line(result)


def test_a_missing_input_exits_1_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    result = invoke("detect", str(missing), "--out", str(tmp_path / "o"))
    assert result.exit_code == 1
    assert error_line(result) == f"ringfinder: error: {missing}: input file not found"
    assert not (tmp_path / "o").exists()


def test_too_many_bad_rows_exits_1(write_events: EventWriter, tmp_path: Path) -> None:
    good = [(f"c{i}", "2024-03-01T00:00:00Z", "task", "d", "", "") for i in range(9)]
    bad = [("", "2024-03-01T00:00:00Z", "task", "d", "", "")]  # 1 of 10 > 5 %
    path = write_events(good + bad)
    result = invoke("detect", str(path), "--out", str(tmp_path / "o"))
    assert result.exit_code == 1
    line = error_line(result)
    assert line.startswith(f"ringfinder: error: {path}: 1 of 10 rows (10.0%) were rejected")
    assert "input.max_bad_fraction = 0.05" in line
    assert line.endswith(
        f"the first is row 10 of {path} (missing contributor id); raise the limit to get them "
        "all in quarantine.csv"
    )
    assert not (tmp_path / "o").exists()


def test_too_many_bad_rows_names_the_inputs_with_the_most(
    write_events: EventWriter, tmp_path: Path
) -> None:
    good = [(f"c{i}", "2024-03-01T00:00:00Z", "task", "d", "", "") for i in range(6)]
    bad = [("", "2024-03-01T00:00:00Z", "task", "d", "", "")]
    clean = write_events(good, name="in/a.csv")
    few = write_events(good + bad, name="in/b.csv")
    many = write_events(good + bad * 3, name="in/c.csv")
    result = invoke("detect", str(tmp_path / "in"), "--out", str(tmp_path / "o"))
    assert result.exit_code == 1
    line = error_line(result)
    assert line.startswith(
        f"ringfinder: error: {many} (3 rejected), {few} (1 rejected): 4 of 22 rows (18.2%)"
    )
    assert str(clean) not in line
    assert f"; missing contributor id: 4; the first is row 7 of {few} (" in line


def test_a_looser_bad_row_limit_lets_the_run_pass(
    write_events: EventWriter, tmp_path: Path
) -> None:
    good = [(f"c{i}", "2024-03-01T00:00:00Z", "task", "d", "", "") for i in range(9)]
    bad = [("", "2024-03-01T00:00:00Z", "task", "d", "", "")]
    path = write_events(good + bad)
    config = tmp_path / "loose.toml"
    config.write_text("[input]\nmax_bad_fraction = 0.2\n")
    result = invoke("detect", str(path), "--out", str(tmp_path / "o"), "--config", str(config))
    assert result.exit_code == 0, result.output
    assert len(read_csv_rows(tmp_path / "o" / "quarantine.csv")) == 1
