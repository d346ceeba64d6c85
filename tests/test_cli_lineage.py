"""CLI wiring of lineage: detect --previous, output.history, ringfinder history and diff."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
from click.testing import CliRunner

from ringfinder.cli import main
from ringfinder.history import HISTORY_COLUMNS

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sample"


def test_previous_history_and_diff(tmp_path: Path) -> None:
    events = next(p for p in sorted(FIXTURES.iterdir()) if p.name.startswith("events."))
    config = tmp_path / "config.toml"
    history = tmp_path / "history.duckdb"
    config.write_text(
        (FIXTURES / "config.toml").read_text()
        + f'\n[output]\nhtml = false\nhistory = "{history}"\n'
    )
    runner = CliRunner()
    base = ["detect", str(events), "--config", str(config)]
    first = runner.invoke(main, [*base, "--out", str(tmp_path / "one")])
    assert first.exit_code == 0, first.output
    second = runner.invoke(
        main, [*base, "--out", str(tmp_path / "two"), "--previous", str(tmp_path / "one")]
    )
    assert second.exit_code == 0, second.output
    assert "against the previous run:" in second.output and " 0 new," in second.output
    one = pd.read_parquet(tmp_path / "one" / "members.parquet")
    two = pd.read_parquet(tmp_path / "two" / "members.parquet")
    assert one[["contributor_id", "ring_id"]].equals(two[["contributor_id", "ring_id"]])
    # The same run again (its previous run is the second, as the second's was the first):
    # outputs are written, the history keeps one record of it.
    again = runner.invoke(main, [*base, "--out", str(tmp_path / "three"), "--json"])
    assert again.exit_code == 0, again.output
    summary = json.loads(again.stdout)
    assert summary["recorded_in_history"] is False
    manifest = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert summary["run_id"] == manifest["run_id"] and manifest["recorded_in_history"] is True
    assert (tmp_path / "three" / "members.parquet").exists()
    text_again = runner.invoke(main, [*base, "--out", str(tmp_path / "three")])
    assert text_again.exit_code == 0, text_again.output
    assert f"history: run {manifest['run_id']} is already recorded" in text_again.output

    shown = runner.invoke(main, ["history", str(history), "--json"])
    assert shown.exit_code == 0, shown.output
    runs = [json.loads(line) for line in shown.output.splitlines()]
    assert [r["new"] for r in runs] == [runs[0]["rings"], 0] and runs[1]["closed"] == 0
    text = runner.invoke(main, ["history", str(history)])
    assert text.exit_code == 0, text.output
    header, *lines = text.output.splitlines()
    assert header.split() == list(HISTORY_COLUMNS)
    for run, line in zip(runs, lines, strict=True):
        cells = line.split()
        assert cells[0] == run["run_id"] and cells[1] == run["recorded_at"][:10]
        assert cells[3:11] == [str(run[c]) for c in HISTORY_COLUMNS[2:-2]]
        assert cells[11] == f"{run['mean_flagged_score']:.3f}"  # a score: no sign
    assert lines[0].split()[-1] == "-" and lines[1].split()[-1] == "+0.000"  # drift: signed

    diffed = runner.invoke(main, ["diff", str(tmp_path / "one"), str(tmp_path / "two"), "--json"])
    assert diffed.exit_code == 0, diffed.output
    assert json.loads(diffed.output)["counts"]["kept"] == runs[0]["rings"]


def test_a_respelled_contributor_keeps_its_id_with_previous(tmp_path: Path) -> None:
    """An export that now spells a ring member in upper case still reports the old id."""
    config = tmp_path / "config.toml"
    config.write_text((FIXTURES / "config.toml").read_text() + "\n[output]\nhtml = false\n")
    runner = CliRunner()
    sample = FIXTURES / "events.csv.gz"
    first = runner.invoke(
        main, ["detect", str(sample), "--config", str(config), "--out", str(tmp_path / "one")]
    )
    assert first.exit_code == 0, first.output
    one = pd.read_parquet(tmp_path / "one" / "members.parquet")
    member = next(c for c in one["contributor_id"] if c.upper() != c)
    lines = gzip.decompress(sample.read_bytes()).decode().splitlines(keepends=True)
    (tmp_path / "events.csv").write_text(
        "".join(
            member.upper() + line[len(member) :] if line.startswith(member + ",") else line
            for line in lines
        )
    )
    base = ["detect", str(tmp_path / "events.csv"), "--config", str(config)]
    for name, extra, spelled, not_spelled in [
        ("alone", [], member.upper(), member),
        ("two", ["--previous", str(tmp_path / "one")], member, member.upper()),
    ]:
        run = runner.invoke(main, [*base, "--out", str(tmp_path / name), *extra])
        assert run.exit_code == 0, run.output
        ids = set(pd.read_parquet(tmp_path / name / "members.parquet")["contributor_id"])
        assert spelled in ids and not_spelled not in ids
    two = pd.read_parquet(tmp_path / "two" / "members.parquet")
    assert one[["contributor_id", "ring_id"]].equals(two[["contributor_id", "ring_id"]])


def test_history_and_diff_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(main, ["history", str(tmp_path / "none.duckdb")])
    assert missing.exit_code == 1
    assert missing.output.strip() == (
        f"ringfinder: error: {tmp_path / 'none.duckdb'}: no history file; set output.history and run detect first"
    )
    unset = runner.invoke(main, ["history"])
    assert unset.exit_code == 2
    assert "give the history file, or --config FILE with output.history set" in unset.output
    no_run = runner.invoke(main, ["diff", str(tmp_path), str(tmp_path)])
    assert no_run.exit_code == 1 and "not a detect run folder" in no_run.output


def test_an_edited_previous_run_is_refused_by_its_ring_id(tmp_path: Path) -> None:
    events = next(p for p in sorted(FIXTURES.iterdir()) if p.name.startswith("events."))
    config = tmp_path / "config.toml"
    config.write_text((FIXTURES / "config.toml").read_text() + "\n[output]\nhtml = false\n")
    runner = CliRunner()
    base = ["detect", str(events), "--config", str(config)]
    assert runner.invoke(main, [*base, "--out", str(tmp_path / "one")]).exit_code == 0
    members_file = tmp_path / "one" / "members.parquet"
    members = pd.read_parquet(members_file)
    members.loc[3, "ring_id"] = '"><img src=x onerror=alert(1)>'
    members.to_parquet(members_file, index=False)
    second = runner.invoke(
        main, [*base, "--out", str(tmp_path / "two"), "--previous", str(tmp_path / "one")]
    )
    assert second.exit_code == 1
    assert second.output.strip() == (
        f"ringfinder: error: {tmp_path / 'one'} (--previous): ring id "
        "'\"><img src=x onerror=alert(1)>' (row 4) is not a ringfinder ring id "
        "(R and 12 hexadecimal digits); give an unedited run"
    )
    assert not (tmp_path / "two").exists()
