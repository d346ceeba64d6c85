"""Tests of lineage: ring ids that stay stable across runs, matched by member overlap."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringfinder.config import load_config
from ringfinder.errors import InputError
from ringfinder.lineage import (
    CONTINUED,
    Lineage,
    assign_ring_ids,
    check_ring_ids,
    match_rings,
    read_run_members,
    ring_id_for,
)
from ringfinder.pipeline import run_detect
from ringfinder.synth import Scenario, generate


def assignment(rings: Sequence[Sequence[str]]) -> pd.DataFrame:
    """A detect assignment: ring ``i`` holds ``rings[i]``."""
    rows = [(member, index) for index, ring in enumerate(rings) for member in ring]
    return pd.DataFrame(rows, columns=["contributor_id", "ring_index"])


def previous(rings: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """A previous run's members: ring id → members."""
    rows = [(member, ring_id) for ring_id, ring in rings.items() for member in ring]
    return pd.DataFrame(rows, columns=["contributor_id", "ring_id"])


def members_of(lineage: Lineage, rings: Sequence[Sequence[str]]) -> dict[str, list[str]]:
    """Ring id → members, for feeding one run's result to the next."""
    return {lineage.ids[i]: list(ring) for i, ring in enumerate(rings)}


def letters(text: str) -> list[str]:
    return list(text)


# --- ids without a previous run -------------------------------------------------------------


def test_without_previous_ids_come_from_members() -> None:
    rings = [letters("abc"), letters("de")]
    lineage = match_rings(assignment(rings), None)
    assert lineage.ids == {0: ring_id_for("abc"), 1: ring_id_for("de")}
    assert set(lineage.status.values()) == {"new"}
    assert lineage.parents == {} and lineage.gone == []
    assert assign_ring_ids(assignment(rings)) == lineage.ids


def test_ring_id_ignores_member_order_and_salt_changes_it() -> None:
    assert ring_id_for(["b", "a"]) == ring_id_for(["a", "b"])
    assert ring_id_for(["a", "b"], salt=1) != ring_id_for(["a", "b"])
    assert ring_id_for(["a", "b"]).startswith("R") and len(ring_id_for(["a"])) == 13


# --- a ring keeps its id while it is the same ring ------------------------------------------


@pytest.mark.parametrize(
    ("new_members", "status"),
    [
        ("abcde", "kept"),  # unchanged
        ("abcdef", "grown"),  # one joined
        ("abcd", "shrunk"),  # one left
        ("abcdf", "kept"),  # one left, one joined: same size
        ("abcdefgh", "grown"),  # jaccard 5/8
    ],
)
def test_ring_keeps_its_id_when_members_join_or_leave(new_members: str, status: str) -> None:
    lineage = match_rings(assignment([letters(new_members)]), previous({"R1": letters("abcde")}))
    assert lineage.ids == {0: "R1"}
    assert lineage.status == {"R1": status}
    assert lineage.gone == []


def test_growth_by_containment_keeps_the_id() -> None:
    # Jaccard 2/6 is below min_overlap, but the whole old ring is inside the new one.
    lineage = match_rings(assignment([letters("abcdef")]), previous({"R1": letters("ab")}))
    assert lineage.ids == {0: "R1"} and lineage.status == {"R1": "grown"}


def test_shrinkage_by_containment_keeps_the_id() -> None:
    # Jaccard 3/10, but every member of the new ring was in the old one; the rest went quiet.
    lineage = match_rings(assignment([letters("abc")]), previous({"R1": letters("abcdefghij")}))
    assert lineage.ids == {0: "R1"} and lineage.status == {"R1": "shrunk"}


def test_weak_overlap_gives_a_new_id_and_the_old_ring_is_gone() -> None:
    # 3 of 8 old members with 5 newcomers: jaccard 3/13, held 3/8, drawn 3/8.
    lineage = match_rings(assignment([letters("abcvwxyz")]), previous({"R1": letters("abcdefgh")}))
    assert lineage.ids[0] == ring_id_for("abcvwxyz")
    assert lineage.status == {lineage.ids[0]: "new"}
    assert lineage.gone == ["R1"]


def test_min_overlap_and_min_containment_are_respected() -> None:
    old = previous({"R1": letters("abcd")})
    new = assignment([letters("abcdef")])  # jaccard 4/6, held 1.0
    assert match_rings(new, old).ids == {0: "R1"}
    assert match_rings(new, old, min_overlap=0.7).ids == {0: "R1"}  # still contained
    assert match_rings(new, old, min_overlap=0.7, min_containment=1.0).ids == {0: "R1"}
    strict = match_rings(assignment([letters("abcefg")]), old, min_overlap=0.7, min_containment=0.8)
    assert strict.ids[0] != "R1"  # jaccard 3/7, held 3/4, drawn 3/6


# --- splits and merges get new ids with their parents ---------------------------------------


def test_split_gives_two_new_ids_with_the_parent() -> None:
    lineage = match_rings(
        assignment([letters("abcd"), letters("efgh")]), previous({"R1": letters("abcdefgh")})
    )
    assert "R1" not in lineage.ids.values()
    assert lineage.ids[0] != lineage.ids[1]
    for ring_id in lineage.ids.values():
        assert lineage.status[ring_id] == "split"
        assert lineage.parents[ring_id] == ["R1"]
    assert lineage.gone == []


def test_uneven_split_without_a_dominant_part_is_a_split() -> None:
    # 4 + 3 of 10: the larger part has jaccard 0.4; it is wholly inside the old ring, but the
    # old ring has two fragments, so containment does not make it the same ring.
    lineage = match_rings(
        assignment([letters("abcd"), letters("efg")]), previous({"R1": letters("abcdefghij")})
    )
    assert lineage.status == {lineage.ids[0]: "split", lineage.ids[1]: "split"}
    assert "R1" not in lineage.ids.values()


def test_the_larger_part_of_a_split_with_jaccard_one_half_keeps_the_id() -> None:
    # 5 + 4 of 10: the larger part has jaccard 0.5 = min_overlap, so it is the same ring.
    lineage = match_rings(
        assignment([letters("abcde"), letters("fghi")]), previous({"R1": letters("abcdefghij")})
    )
    assert lineage.ids[0] == "R1" and lineage.status["R1"] == "shrunk"
    assert lineage.parents[lineage.ids[1]] == ["R1"]


def test_a_few_members_splitting_off_leave_the_ring_its_id() -> None:
    # 8 of 10 stay together (jaccard 0.8): the same ring; the other two form a ring of their own.
    lineage = match_rings(
        assignment([letters("abcdefgh"), letters("ij")]), previous({"R1": letters("abcdefghij")})
    )
    assert lineage.ids[0] == "R1" and lineage.status["R1"] == "shrunk"
    assert lineage.status[lineage.ids[1]] == "split"
    assert lineage.parents[lineage.ids[1]] == ["R1"]


def test_merge_gives_a_new_id_with_both_parents() -> None:
    lineage = match_rings(
        assignment([letters("abcdefgh")]), previous({"R2": letters("efgh"), "R1": letters("abcd")})
    )
    (ring_id,) = lineage.ids.values()
    assert ring_id not in ("R1", "R2")
    assert lineage.status == {ring_id: "merged"}
    assert lineage.parents == {ring_id: ["R1", "R2"]}
    assert lineage.gone == []


def test_a_big_ring_absorbing_a_pair_keeps_its_id() -> None:
    big = [f"m{i:02d}" for i in range(20)]
    lineage = match_rings(assignment([[*big, "x", "y"]]), previous({"R1": big, "R2": ["x", "y"]}))
    assert lineage.ids == {0: "R1"} and lineage.status == {"R1": "grown"}
    assert lineage.gone == ["R2"] and lineage.absorbed == {"R2": "R1"}


def test_grown_ring_that_also_takes_another_ring_is_a_merge() -> None:
    # Both old rings are wholly inside the new ring and neither dominates it: a merge.
    lineage = match_rings(
        assignment([letters("abcdefghij")]), previous({"R1": letters("abc"), "R2": letters("def")})
    )
    (ring_id,) = lineage.ids.values()
    assert lineage.status == {ring_id: "merged"} and lineage.parents[ring_id] == ["R1", "R2"]


def test_counts_cover_every_ring() -> None:
    old = previous(
        {"R1": letters("abcd"), "R2": letters("efgh"), "R3": letters("ij"), "R4": letters("kl")}
    )
    lineage = match_rings(
        assignment([letters("abcd"), letters("efgh"), letters("ijkl"), letters("xy")]), old
    )
    assert lineage.counts() == {
        "new": 1,
        "kept": 2,
        "grown": 0,
        "shrunk": 0,
        "split": 0,
        "merged": 1,
        "gone": 0,
    }


def test_no_rings_now_means_every_previous_ring_is_gone() -> None:
    lineage = match_rings(
        assignment([]).astype({"ring_index": "int64"}), previous({"R1": letters("ab")})
    )
    assert lineage == Lineage(ids={}, gone=["R1"])


# --- ids are never reused -------------------------------------------------------------------


def test_new_id_avoids_used_and_previous_ids() -> None:
    used = {ring_id_for("ab")}
    lineage = match_rings(assignment([letters("ab")]), None, used_ids=used)
    assert lineage.ids[0] not in used
    assert lineage.ids[0] == ring_id_for("ab", salt=1)
    # The salted id is taken too: the next salt.
    lineage = match_rings(
        assignment([letters("ab")]), None, used_ids=used | {ring_id_for("ab", salt=1)}
    )
    assert lineage.ids[0] == ring_id_for("ab", salt=2)


def test_new_id_avoids_the_id_of_a_kept_ring() -> None:
    # The old ring is called by the id the new pair's members hash to; it continues as abcdef.
    clash = ring_id_for("xy")
    lineage = match_rings(
        assignment([letters("abcdef"), letters("xy")]), previous({clash: letters("abcde")})
    )
    assert lineage.ids[0] == clash
    assert lineage.ids[1] != clash


def test_no_id_reuse_across_three_runs() -> None:
    run1 = [letters("abcd"), letters("efg"), letters("hi")]
    first = match_rings(assignment(run1), None)
    used = set(first.ids.values())
    # Run 2: abcd and hi grow, efg is gone (its members are quiet).
    run2 = [letters("abcde"), letters("hijk")]
    second = match_rings(assignment(run2), previous(members_of(first, run1)), used_ids=used)
    assert second.ids == {0: first.ids[0], 1: first.ids[2]}
    assert second.gone == [first.ids[1]]
    used |= set(second.ids.values())
    # Run 3: efg comes back exactly as it was; the old id is not handed out again.
    run3 = [letters("abcde"), letters("hijk"), letters("efg")]
    third = match_rings(assignment(run3), previous(members_of(second, run2)), used_ids=used)
    assert third.ids[0] == first.ids[0] and third.ids[1] == first.ids[2]
    assert third.ids[2] != first.ids[1] and third.ids[2] not in used
    assert third.status[third.ids[2]] == "new"


# --- determinism and invariants -------------------------------------------------------------


def test_same_result_whatever_the_row_order() -> None:
    old = previous({"R1": letters("abcdefgh"), "R2": letters("ijkl"), "R3": letters("mnop")})
    new = assignment([letters("abcd"), letters("efgh"), letters("ijklmnop"), letters("qr")])
    first = match_rings(new, old)
    again = match_rings(new.sample(frac=1, random_state=1), old.sample(frac=1, random_state=2))
    assert again == first


@st.composite
def two_runs(draw: st.DrawFn) -> tuple[list[list[str]], dict[str, list[str]]]:
    people = [f"c{i:02d}" for i in range(draw(st.integers(2, 30)))]

    def rings(labels: list[int]) -> list[list[str]]:
        groups: dict[int, list[str]] = {}
        for person, label in zip(people, labels, strict=True):
            if label >= 0:
                groups.setdefault(label, []).append(person)
        return [g for _, g in sorted(groups.items()) if len(g) >= 2]

    labels = st.lists(st.integers(-1, 5), min_size=len(people), max_size=len(people))
    old = rings(draw(labels))
    new = rings(draw(labels))
    return new, {f"R{i}": ring for i, ring in enumerate(old)}


@settings(max_examples=60, deadline=None)
@given(two_runs(), st.sampled_from([0.3, 0.5, 0.8]))
def test_matching_invariants(
    runs: tuple[list[list[str]], dict[str, list[str]]], min_overlap: float
) -> None:
    new, old = runs
    used = {"Rused", *old}
    lineage = match_rings(
        assignment(new), previous(old) if old else None, used_ids={"Rused"}, min_overlap=min_overlap
    )
    ids = list(lineage.ids.values())
    assert sorted(lineage.ids) == list(range(len(new)))
    assert len(set(ids)) == len(ids)  # every ring its own id
    assert set(lineage.status) == set(ids)
    for index, ring_id in lineage.ids.items():
        if lineage.status[ring_id] in CONTINUED:
            assert set(old[ring_id]) & set(new[index])  # a kept id names an overlapping ring
        else:
            assert ring_id not in used  # a new id was never used
        assert set(lineage.parents.get(ring_id, [])) <= set(old)
        assert bool(lineage.parents.get(ring_id)) == (
            lineage.status[ring_id] in ("split", "merged")
        )
    assert set(lineage.gone) <= set(old) - set(ids)
    assert set(lineage.absorbed) <= set(lineage.gone) and set(lineage.absorbed.values()) <= set(ids)
    # Jaccard above one half always continues: that pair is the unique mutual best.
    for index, ring in enumerate(new):
        for ring_id, old_ring in old.items():
            shared = len(set(ring) & set(old_ring))
            if shared / len(set(ring) | set(old_ring)) > max(min_overlap, 0.5):
                assert lineage.ids[index] == ring_id
    assert (
        match_rings(
            assignment(new),
            previous(old) if old else None,
            used_ids={"Rused"},
            min_overlap=min_overlap,
        )
        == lineage
    )


# --- inputs ---------------------------------------------------------------------------------


def test_missing_columns_and_bad_thresholds_are_errors() -> None:
    with pytest.raises(InputError, match="previous members: missing column"):
        match_rings(assignment([letters("ab")]), pd.DataFrame({"contributor_id": ["a"]}))
    with pytest.raises(InputError, match="assignment: missing column"):
        match_rings(pd.DataFrame({"contributor_id": ["a"]}), None)
    with pytest.raises(ValueError, match="min_overlap = 0"):
        match_rings(assignment([letters("ab")]), None, min_overlap=0)


def test_read_run_members_from_parquet_or_csv(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "contributor_id": ["=cmd", "b"],
            "ring_id": ["R1", "R1"],
            "flagged": [True, False],
            "ring_score": [0.7, 0.7],
        }
    )
    frame.to_parquet(tmp_path / "members.parquet", index=False)
    assert read_run_members(tmp_path)["contributor_id"].tolist() == ["=cmd", "b"]
    (tmp_path / "members.parquet").unlink()
    (tmp_path / "members.csv").write_text(
        "contributor_id,ring_id,flagged,ring_score\n'=cmd,R1,true,0.7\nb,R1,false,0.7\n",
        encoding="utf-8",
    )
    back = read_run_members(tmp_path)
    assert back["contributor_id"].tolist() == ["=cmd", "b"]
    assert back["flagged"].tolist() == [True, False]
    assert back["ring_score"].tolist() == [0.7, 0.7]
    with pytest.raises(InputError, match="not a detect run folder"):
        read_run_members(tmp_path / "nowhere")


# --- target: on a generated set, rings present in two runs keep their id --------------------


def _relabel(
    members: pd.DataFrame, previous_members: pd.DataFrame | None, used: set[str]
) -> pd.DataFrame:
    """Give a run's rings lineage ids, as pipeline does with the detect assignment."""
    order = {ring: i for i, ring in enumerate(sorted(members["ring_id"].unique()))}
    index = members["ring_id"].map(order)
    lineage = match_rings(members.assign(ring_index=index), previous_members, used_ids=used)
    return members.assign(ring_id=index.map(lineage.ids))


def _rings(members: pd.DataFrame) -> dict[str, frozenset[str]]:
    return {ring: frozenset(group) for ring, group in members.groupby("ring_id")["contributor_id"]}


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b)


@pytest.fixture(scope="module")
def windowed_runs(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, frozenset[str]]]:
    """Detect on days 1-60, 1-75 and 1-90 of one generated 90-day set, ids matched run to run."""
    folder = tmp_path_factory.mktemp("ninety_days")
    generated = generate(
        folder, scenario=Scenario(contributors=3000, days=90, timestamp_mix_rate=0.0), seed=11
    )
    config = load_config(generated.config_path)
    events = str(generated.events_path).replace("'", "''")
    runs: list[dict[str, frozenset[str]]] = []
    previous_members: pd.DataFrame | None = None
    used: set[str] = set()
    for days in (60, 75, 90):
        sql = (
            f"SELECT * FROM read_parquet('{events}') WHERE try_cast(event_time AS TIMESTAMP)"
            f" < TIMESTAMP '2026-01-01' + INTERVAL {days} DAY"
        )
        members = _relabel(run_detect(config=config, sql=sql).members, previous_members, used)
        runs.append(_rings(members))
        used |= set(members["ring_id"])
        previous_members = members[["contributor_id", "ring_id"]]
    return runs


def test_rings_present_in_both_runs_keep_their_id(
    windowed_runs: list[dict[str, frozenset[str]]],
) -> None:
    for old, new in zip(windowed_runs, windowed_runs[1:], strict=False):
        # The same ring in both runs: an old and a new ring with jaccard >= 0.5.
        same = [
            (o, n)
            for o, old_ring in old.items()
            for n, new_ring in new.items()
            if _jaccard(old_ring, new_ring) >= 0.5
        ]
        assert len(same) >= 30
        kept = sum(o == n for o, n in same)
        assert kept / len(same) >= 0.95, f"{kept} of {len(same)} rings kept their id"


def test_no_id_names_a_different_ring(windowed_runs: list[dict[str, frozenset[str]]]) -> None:
    seen: set[str] = set()
    for i, run in enumerate(windowed_runs):
        for ring_id, ring in run.items():
            if ring_id in seen:
                # Only the previous run can hand an id on, and only to the same ring:
                # mostly the same members, or one ring wholly inside the other.
                before = windowed_runs[i - 1].get(ring_id)
                assert before is not None, f"{ring_id} reused after a gap"
                shared = len(before & ring)
                assert _jaccard(before, ring) >= 0.5 or shared >= 0.8 * min(len(before), len(ring))
        seen |= set(run)


@pytest.mark.parametrize("ring_id", ["", "R1", "RABCDEF012345", "r0123456789ab", "R0123456789abc"])
def test_only_ids_ringfinder_makes_pass_the_check(ring_id: str) -> None:
    good = ring_id_for(["a", "b"])
    members = pd.DataFrame({"contributor_id": ["a", "b", "c"], "ring_id": [good, good, ring_id]})
    with pytest.raises(
        InputError, match=r"^prev: ring id .* \(row 3\) is not a ringfinder ring id"
    ):
        check_ring_ids(members, "prev")
    assert check_ring_ids(members.iloc[:2], "prev").equals(members.iloc[:2])
