"""Tests of diff: two hand-made run folders compared ring by ring and contributor by contributor."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from ringfinder.cli import main
from ringfinder.diff import CHANGES, ROW_HEADER, RunDiff, diff_runs
from ringfinder.errors import InputError
from ringfinder.export import write_table
from ringfinder.lineage import ring_id_for

# ring id → (members, ring score, flagged)
OLD = {
    "R1": ("abcde", 0.8, True),  # grows by one
    "R2": ("fghijk", 0.6, True),  # splits into fgh and ijk
    "R3": ("lm", 0.3, False),  # merges with R4
    "R4": ("no", 0.4, False),
    "R5": ("qrst", 0.9, True),  # gone: its members are quiet
    "R6": ("uv", 0.2, False),  # kept, unchanged
    "R7": ("wx", 0.7, True),  # absorbed by the big ring Rbig
    "Rbig": ("ABCDEFGHIJ", 0.5, False),
}
NEW = {
    "R1": ("abcdeY", 0.85, True),
    "S1": ("fgh", 0.7, True),
    "S2": ("ijk", 0.2, False),
    "M1": ("lmno", 0.75, True),
    "R6": ("uv", 0.2, False),
    "N1": ("yz", 0.65, True),
    "Rbig": ("ABCDEFGHIJwx", 0.5, False),
}


def write_run(
    folder: Path, rings: dict[str, tuple[str, float, bool]], *, parquet: bool = True
) -> Path:
    members = pd.DataFrame(
        [
            {
                "contributor_id": c,
                "ring_id": ring_id,
                "ring_score": score,
                "flagged": flagged,
                "member_score": score,
                "reasons": "SHARED_DEVICE",
            }
            for ring_id, (people, score, flagged) in rings.items()
            for c in people
        ]
    ).sort_values("contributor_id")
    table = pd.DataFrame(
        [
            {
                "ring_id": r,
                "size": len(p),
                "ring_score": s,
                "flagged": f,
                "reasons": "SHARED_DEVICE",
            }
            for r, (p, s, f) in rings.items()
        ]
    )
    folder.mkdir(parents=True)
    write_table(members, folder, "members", parquet=parquet)
    write_table(table, folder, "rings", parquet=parquet)
    return folder


@pytest.fixture
def diff(tmp_path: Path) -> RunDiff:
    return diff_runs(write_run(tmp_path / "old", OLD), write_run(tmp_path / "new", NEW))


def test_ring_changes(diff: RunDiff) -> None:
    assert diff.counts() == {
        "new": 1,
        "kept": 1,
        "grown": 2,
        "shrunk": 0,
        "split": 2,
        "merged": 1,
        "gone": 2,
        "newly_flagged": 7,
        "no_longer_flagged": 9,
    }
    rings = diff.rings.set_index("ring_id")
    assert rings.loc["R1", ["change", "old_ring_id", "old_size", "size"]].tolist() == [
        "grown",
        "R1",
        5,
        6,
    ]
    assert rings.loc["S1", "parents"] == ["R2"] and rings.loc["S2", "parents"] == ["R2"]
    assert rings.loc["M1", "change"] == "merged" and rings.loc["M1", "parents"] == ["R3", "R4"]
    assert rings.loc["N1", "change"] == "new" and rings.loc["N1", "parents"] == []
    assert rings.loc["Rbig", "change"] == "grown"
    gone = diff.rings[diff.rings["change"] == "gone"].set_index("ring_id")
    assert gone["into"].to_dict() == {"R5": None, "R7": "Rbig"}
    assert gone.loc["R5", "old_size"] == 4 and pd.isna(gone.loc["R5", "size"])


def test_contributor_changes(diff: RunDiff) -> None:
    people = diff.contributors.groupby("change")["contributor_id"].agg(lambda s: "".join(sorted(s)))
    # Newly flagged: Y joined R1, lmno are in the flagged merge, yz are new.
    # No longer flagged: ijk split off unflagged, qrst are gone, wx went into unflagged Rbig.
    assert people.to_dict() == {"newly flagged": "Ylmnoyz", "no longer flagged": "ijkqrstwx"}


def test_json_is_complete_and_serialisable(diff: RunDiff) -> None:
    data = json.loads(json.dumps(diff.to_dict()))
    assert data["counts"] == diff.counts()
    assert set(data["rings"]) == set(CHANGES)
    (merged,) = data["rings"]["merged"]
    assert merged == {
        "ring_id": "M1",
        "old_ring_id": None,
        "parents": ["R3", "R4"],
        "into": None,
        "old_size": None,
        "size": 4,
        "old_score": None,
        "ring_score": 0.75,
        "flagged": True,
    }
    assert [r["ring_id"] for r in data["rings"]["kept"]] == ["R6"]
    assert data["contributors"]["newly_flagged"][0] == {
        "contributor_id": "Y",
        "old_ring_id": None,
        "ring_id": "R1",
        "old_score": None,
        "ring_score": 0.85,
    }


def test_rows_for_the_text_table(diff: RunDiff) -> None:
    rows = diff.rows()
    assert all(len(row) == len(ROW_HEADER) for row in rows)
    assert ("grown", "R1", "R1: 5 members, score 0.800", "6 members, score 0.850") in rows
    assert ("merged", "M1", "from R3, R4", "4 members, score 0.750") in rows
    assert ("split", "S1", "from R2", "3 members, score 0.700") in rows
    assert ("gone", "R7", "R7: 2 members, score 0.700", "into Rbig") in rows
    assert ("gone", "R5", "R5: 4 members, score 0.900", "-") in rows
    assert ("newly flagged", "Y", "not in a ring", "R1, score 0.850") in rows
    assert ("no longer flagged", "i", "R2, score 0.600", "S2, score 0.200") in rows
    assert not any(row[0] == "kept" for row in rows)
    changes = [row[0] for row in rows]
    assert changes == sorted(
        changes, key=lambda c: [*CHANGES, "newly flagged", "no longer flagged"].index(c)
    )


def test_diff_of_runs_made_without_lineage_matches_by_members(tmp_path: Path) -> None:
    # The new run named its rings from their members only: R1 grew, but is called otherwise.
    renamed = {
        ring_id_for(people): (people, score, flagged) for people, score, flagged in NEW.values()
    }
    diff = diff_runs(write_run(tmp_path / "old", OLD), write_run(tmp_path / "new", renamed))
    rings = diff.rings.set_index("ring_id")
    assert rings.loc[ring_id_for("abcdeY"), ["change", "old_ring_id"]].tolist() == ["grown", "R1"]
    assert rings.loc[ring_id_for("uv"), ["change", "old_ring_id"]].tolist() == ["kept", "R6"]
    assert diff.counts()["gone"] == 2
    gone = diff.rings[diff.rings["change"] == "gone"].set_index("ring_id")
    assert gone.loc["R7", "into"] == ring_id_for("ABCDEFGHIJwx")


def test_csv_only_runs(tmp_path: Path) -> None:
    old = write_run(
        tmp_path / "old", {"R1": ("abc", 0.9, True), "R2": ("=de", 0.1, False)}, parquet=False
    )
    new = write_run(
        tmp_path / "new", {"R1": ("abcf", 0.9, True), "R2": ("=de", 0.6, True)}, parquet=False
    )
    diff = diff_runs(old, new)
    assert diff.counts()["grown"] == 1 and diff.counts()["kept"] == 1
    assert sorted(diff.contributors["contributor_id"]) == ["=", "d", "e", "f"]


def test_not_a_run_folder(tmp_path: Path) -> None:
    old = write_run(tmp_path / "old", OLD)
    with pytest.raises(InputError, match="not a detect run folder"):
        diff_runs(old, tmp_path / "missing")


def test_the_text_table_shows_control_characters_as_escapes(tmp_path: Path) -> None:
    hostile = ["t\x1b]0;title\x07", "r\u202ex", "red\x1b[31m"]
    new = {**NEW, "N2": (hostile, 0.9, True)}
    old_dir, new_dir = write_run(tmp_path / "old", OLD), write_run(tmp_path / "new", new)
    shown = CliRunner().invoke(main, ["diff", str(old_dir), str(new_dir)])
    assert shown.exit_code == 0, shown.output
    assert not [c for c in "\x1b\x07\u202e" if c in shown.output]
    flagged = [line.split()[2] for line in shown.output.splitlines() if "newly flagged  " in line]
    assert {"t\\x1b]0;title\\x07", "r\\u202ex", "red\\x1b[31m"} <= set(flagged)
