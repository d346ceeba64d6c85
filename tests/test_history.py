"""Tests of the run history: recording runs in a DuckDB file and reading the trends back."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pytest

from ringfinder.errors import InputError
from ringfinder.history import (
    HISTORY_COLUMNS,
    history_table,
    latest_members,
    record_run,
    recorded_runs,
    run_id_for,
    used_ring_ids,
)
from ringfinder.lineage import Lineage, match_rings


def members_frame(rings: dict[str, tuple[list[str], float, bool]]) -> pd.DataFrame:
    """A members table: ring id → (members, ring score, flagged)."""
    rows = [
        {
            "contributor_id": c,
            "ring_id": ring_id,
            "ring_score": score,
            "flagged": flagged,
            "member_score": score,
            "reasons": "SHARED_DEVICE" if flagged else "",
            "action": "review" if flagged else "",
        }
        for ring_id, (members, score, flagged) in rings.items()
        for c in members
    ]
    return pd.DataFrame(rows).sort_values("contributor_id").reset_index(drop=True)


def rings_frame(members: pd.DataFrame) -> pd.DataFrame:
    return (
        members.groupby("ring_id")
        .agg(
            size=("contributor_id", "size"),
            ring_score=("ring_score", "first"),
            flagged=("flagged", "first"),
            reasons=("reasons", "first"),
        )
        .reset_index()
    )


def record(
    db: Path, members: pd.DataFrame, *, lineage: Lineage | None = None, replace: bool = False
) -> str:
    manifest = {
        "ringfinder_version": "0.1.0",
        "contributors": 100,
        "seed": 0,
        "timings_seconds": {"detect": 0.1},
    }
    run_id = run_id_for(manifest, members)
    rings = rings_frame(members)
    record_run(
        db,
        run_id=run_id,
        members=members,
        rings=rings,
        manifest=manifest,
        lineage=lineage,
        replace=replace,
    )
    return run_id


RUN1 = members_frame(
    {
        "R1": (["a", "b", "c"], 0.8, True),
        "R2": (["d", "e"], 0.2, False),
        "R3": (["f", "g", "h", "i"], 0.6, True),
    }
)
# R1 grows and scores higher, R2 gets flagged, R3 loses a member and its flag, R4 is new.
RUN2 = members_frame(
    {
        "R1": (["a", "b", "c", "j"], 0.9, True),
        "R2": (["d", "e"], 0.7, True),
        "R3": (["f", "g", "h"], 0.4, False),
        "R4": (["k", "l"], 0.55, True),
    }
)
# R2 and R4 end; R1 stays.
RUN3 = members_frame({"R1": (["a", "b", "c", "j"], 0.9, True)})


def test_round_trip(tmp_path: Path) -> None:
    db = tmp_path / "history" / "runs.duckdb"
    assert used_ring_ids(db) == set() and latest_members(db) is None and recorded_runs(db) == []
    ids = [record(db, run) for run in (RUN1, RUN2, RUN3)]
    assert recorded_runs(db) == ids
    assert used_ring_ids(db) == {"R1", "R2", "R3", "R4"}
    latest = latest_members(db)
    assert latest is not None
    assert latest[["contributor_id", "ring_id"]].to_dict("records") == RUN3[
        ["contributor_id", "ring_id"]
    ].to_dict("records")
    assert latest["flagged"].tolist() == [True] * 4
    assert latest["action"].tolist() == ["review"] * 4


def test_history_table_figures(tmp_path: Path) -> None:
    db = tmp_path / "runs.duckdb"
    ids = [record(db, run) for run in (RUN1, RUN2, RUN3)]
    table = history_table(db)
    assert tuple(table.columns) == HISTORY_COLUMNS
    assert table["run_id"].tolist() == ids
    figures = table[
        [
            "rings",
            "new",
            "grown",
            "shrunk",
            "closed",
            "flagged_rings",
            "flagged_contributors",
            "newly_flagged",
        ]
    ].to_dict("records")
    assert figures == [
        {
            "rings": 3,
            "new": 3,
            "grown": 0,
            "shrunk": 0,
            "closed": 0,
            "flagged_rings": 2,
            "flagged_contributors": 7,
            "newly_flagged": 7,
        },
        {
            "rings": 4,
            "new": 1,
            "grown": 1,
            "shrunk": 1,
            "closed": 0,
            "flagged_rings": 3,
            "flagged_contributors": 8,
            "newly_flagged": 5,
        },
        {
            "rings": 1,
            "new": 0,
            "grown": 0,
            "shrunk": 0,
            "closed": 3,
            "flagged_rings": 1,
            "flagged_contributors": 4,
            "newly_flagged": 0,
        },
    ]
    assert table["mean_flagged_score"].tolist() == pytest.approx([0.7, (0.9 + 0.7 + 0.55) / 3, 0.9])
    assert pd.isna(table["score_drift"][0])
    assert table["score_drift"][1] == pytest.approx((0.1 + 0.5 - 0.2) / 3)
    assert table["score_drift"][2] == pytest.approx(0.0)


def test_a_run_recorded_twice_is_kept_unless_replaced(tmp_path: Path) -> None:
    db = tmp_path / "runs.duckdb"
    first = record(db, RUN1)
    second = record(db, RUN2)
    before = history_table(db)
    assert record(db, RUN1) == first
    pd.testing.assert_frame_equal(history_table(db), before)  # not even recorded_at changes
    record(db, RUN1, replace=True)
    assert history_table(db)["recorded_at"][0] > before["recorded_at"][0]
    assert recorded_runs(db) == [first, second]  # replaced in place, order kept
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute(
            "SELECT COUNT(*) FROM memberships WHERE run_id = ?", [first]
        ).fetchone() == (len(RUN1),)
        assert con.execute("SELECT COUNT(*) FROM rings WHERE run_id = ?", [first]).fetchone() == (
            3,
        )


def test_lineage_status_and_parents_are_stored(tmp_path: Path) -> None:
    db = tmp_path / "runs.duckdb"
    record(db, RUN1)
    previous = latest_members(db)
    # R1 (abc) and R2 (de) merge, leaving c out; R3 stays.
    new = pd.DataFrame({"contributor_id": list("abdefghi"), "ring_index": [0, 0, 0, 0, 1, 1, 1, 1]})
    lineage = match_rings(new, previous, used_ids=used_ring_ids(db))
    members = new.assign(
        ring_id=new["ring_index"].map(lineage.ids), ring_score=0.5, flagged=False, reasons=""
    )
    run_id = record(db, members.drop(columns="ring_index"), lineage=lineage)
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(
            "SELECT ring_id, status, parents FROM rings WHERE run_id = ? ORDER BY status", [run_id]
        ).fetchall()
    merged_id = lineage.ids[0]
    assert rows == [("R3", "kept", []), (merged_id, "merged", ["R1", "R2"])]
    assert history_table(db)["closed"].tolist() == [0, 2]


def test_run_id_ignores_timings_and_follows_content() -> None:
    manifest = {"seed": 0, "inputs": [{"sha256": "x"}], "timings_seconds": {"detect": 1.0}}
    same = run_id_for({**manifest, "timings_seconds": {"detect": 2.0}}, RUN1)
    assert run_id_for(manifest, RUN1) == same
    assert run_id_for(manifest, RUN1.sample(frac=1, random_state=0)) == same
    assert run_id_for({**manifest, "seed": 1}, RUN1) != same
    assert run_id_for(manifest, RUN2) != same
    assert same.startswith("run-")


def test_missing_file(tmp_path: Path) -> None:
    db = tmp_path / "absent.duckdb"
    with pytest.raises(InputError, match="no history file"):
        history_table(db)
    assert not db.exists()  # reading never creates it


def test_not_a_database_is_an_input_error(tmp_path: Path) -> None:
    db = tmp_path / "notes.duckdb"
    db.write_text("these are not the runs you are looking for\n" * 100, encoding="utf-8")
    with pytest.raises(InputError, match=r"notes\.duckdb: cannot open the history database"):
        used_ring_ids(db)
    with pytest.raises(InputError, match="cannot open the history database"):
        record(db, RUN1)


def test_another_database_is_an_input_error(tmp_path: Path) -> None:
    db = tmp_path / "other.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE rings (x INTEGER)")
    with pytest.raises(InputError, match="not a ringfinder history database"):
        record(db, RUN1)
    with pytest.raises(InputError, match="not a ringfinder history database"):
        history_table(db)


def test_other_schema_version_is_an_input_error(tmp_path: Path) -> None:
    db = tmp_path / "runs.duckdb"
    record(db, RUN1)
    with duckdb.connect(str(db)) as con:
        con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(InputError, match="history schema version '99', expected '1'"):
        latest_members(db)


def test_members_without_required_columns_are_refused(tmp_path: Path) -> None:
    db = tmp_path / "runs.duckdb"
    with pytest.raises(InputError, match="members: missing column"):
        record_run(
            db,
            run_id="run-x",
            members=RUN1.drop(columns="flagged"),
            rings=rings_frame(RUN1),
            manifest={},
        )
    assert recorded_runs(db) == []
