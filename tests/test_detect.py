"""Detect: properties of the ring assignment on random graphs, and strong links."""

from __future__ import annotations

import itertools
import random
import tracemalloc

import pandas as pd
import pytest

from ringfinder.config import DetectConfig
from ringfinder.detect import detect_rings

Edge = tuple[str, str, float, bool]


def pairs_frame(edges: list[Edge], solid: list[bool] | None = None) -> pd.DataFrame:
    """The projection as detect gets it: a < b, a weight, a strong flag and a solid flag (a link
    through something other than IP addresses; every link is solid unless told otherwise)."""
    rows = [(min(a, b), max(a, b), w, s) for a, b, w, s in edges]
    frame = pd.DataFrame(rows, columns=["a", "b", "weight", "strong"])
    frame["solid"] = [True] * len(frame) if solid is None else solid
    return frame


def clique(members: list[str], *, weight: float = 1.0, strong: bool = False) -> list[Edge]:
    return [(a, b, weight, strong) for a, b in itertools.combinations(members, 2)]


def rings_of(assignment: pd.DataFrame) -> list[set[str]]:
    """The rings as sets of members, in ring_index order."""
    groups = assignment.groupby("ring_index")["contributor_id"].agg(set)
    return [groups[i] for i in sorted(groups.index)]


def random_pairs(seed: int) -> pd.DataFrame:
    """Planted groups (dense inside, some strong links) plus sparse noise between groups."""
    rng = random.Random(seed)
    members = [f"m{i:03d}" for i in range(160)]
    rng.shuffle(members)
    groups, start = [], 0
    while start < len(members):
        size = rng.randint(2, 25)
        groups.append(members[start : start + size])
        start += size
    edges: list[Edge] = []
    for group in groups:
        for a, b in itertools.combinations(group, 2):
            if rng.random() < 0.6:
                edges.append((a, b, rng.uniform(0.2, 3.0), rng.random() < 0.05))
    for _ in range(80):
        a, b = rng.sample(members, 2)
        edges.append((a, b, rng.uniform(0.05, 0.5), rng.random() < 0.03))
    # A strong link (a shared payout account) is always solid; some others are IP-only.
    frame = pairs_frame(edges, solid=[strong or rng.random() < 0.8 for _, _, _, strong in edges])
    return frame.drop_duplicates(["a", "b"]).sort_values(["a", "b"]).reset_index(drop=True)


def check_assignment(pairs: pd.DataFrame, assignment: pd.DataFrame, config: DetectConfig) -> None:
    """Properties every assignment has."""
    assert list(assignment.columns) == ["contributor_id", "ring_index"]
    # Each contributor in at most one ring, and only contributors that have a link.
    assert assignment["contributor_id"].is_unique
    assert set(assignment["contributor_id"]) <= set(pairs["a"]) | set(pairs["b"])
    # Rings have at least min_ring_size members.
    sizes = assignment.groupby("ring_index").size()
    assert sizes.min() >= max(config.min_ring_size, 2)
    # Ring numbers are 0..n-1, in the order of each ring's smallest member id.
    rings = rings_of(assignment)
    assert sorted(sizes.index) == list(range(len(rings)))
    smallest = [min(ring) for ring in rings]
    assert smallest == sorted(smallest)
    # Rows are sorted by contributor id.
    assert assignment["contributor_id"].tolist() == sorted(assignment["contributor_id"])
    # Strongly linked contributors always share a ring.
    ring_of = dict(zip(assignment["contributor_id"], assignment["ring_index"], strict=True))
    for a, b in pairs.loc[pairs["strong"], ["a", "b"]].itertuples(index=False):
        assert a in ring_of and b in ring_of
        assert ring_of[a] == ring_of[b]


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_assignment_properties_on_random_graphs(seed: int) -> None:
    pairs = random_pairs(seed)
    config = DetectConfig(seed=seed)
    assignment = detect_rings(pairs, config=config)
    assert len(assignment) > 0
    check_assignment(pairs, assignment, config)


@pytest.mark.parametrize("seed", [0, 1])
def test_same_seed_same_rings(seed: int) -> None:
    pairs = random_pairs(seed + 10)
    config = DetectConfig(seed=seed)
    first = detect_rings(pairs, config=config)
    second = detect_rings(pairs.copy(), config=config)
    pd.testing.assert_frame_equal(first, second)


def test_input_order_does_not_change_the_rings() -> None:
    pairs = random_pairs(5)
    shuffled = pairs.sample(frac=1.0, random_state=1).reset_index(drop=True)
    config = DetectConfig()
    assert rings_of(detect_rings(pairs, config=config)) == rings_of(
        detect_rings(shuffled, config=config)
    )


def test_the_callers_frame_is_not_changed() -> None:
    pairs = random_pairs(6)
    before = pairs.copy()
    detect_rings(pairs, config=DetectConfig())
    pd.testing.assert_frame_equal(pairs, before)


def test_two_disjoint_cliques_are_two_rings() -> None:
    left = [f"x{i}" for i in range(5)]
    right = [f"a{i}" for i in range(4)]
    assignment = detect_rings(pairs_frame(clique(left) + clique(right)), config=DetectConfig())
    # Numbered by smallest member: "a0" < "x0", so the right clique is ring 0.
    assert rings_of(assignment) == [set(right), set(left)]


def two_cliques_with_a_bridge(*, strong: bool) -> pd.DataFrame:
    left = [f"l{i:02d}" for i in range(10)]
    right = [f"r{i:02d}" for i in range(10)]
    return pairs_frame(clique(left) + clique(right) + [("l09", "r00", 1.0, strong)])


def test_leiden_splits_two_cliques_joined_by_a_weak_link() -> None:
    # The baseline for the strong-link test below: without the strong flag they are split.
    assignment = detect_rings(two_cliques_with_a_bridge(strong=False), config=DetectConfig())
    rings = rings_of(assignment)
    assert len(rings) == 2
    assert {"l09", "r00"} not in [ring & {"l09", "r00"} for ring in rings]


def test_a_strong_link_keeps_its_ends_in_one_ring_even_when_leiden_would_split() -> None:
    pairs = two_cliques_with_a_bridge(strong=True)
    config = DetectConfig()
    assignment = detect_rings(pairs, config=config)
    check_assignment(pairs, assignment, config)
    ring_of = dict(zip(assignment["contributor_id"], assignment["ring_index"], strict=True))
    assert ring_of["l09"] == ring_of["r00"]


def test_a_chain_of_strong_links_is_one_ring() -> None:
    # l09 pays out with r00, r00 with m00: one actor behind all three, across three cliques.
    cliques = [[f"{side}{i:02d}" for i in range(10)] for side in "lmr"]
    edges = [e for members in cliques for e in clique(members)]
    edges += [("l09", "r00", 1.0, True), ("r00", "m00", 1.0, True)]
    pairs = pairs_frame(edges)
    config = DetectConfig()
    assignment = detect_rings(pairs, config=config)
    check_assignment(pairs, assignment, config)
    ring_of = dict(zip(assignment["contributor_id"], assignment["ring_index"], strict=True))
    assert ring_of["l09"] == ring_of["r00"] == ring_of["m00"]


def test_min_ring_size_drops_small_rings() -> None:
    pairs = pairs_frame(clique(["a1", "a2"]) + clique(["b1", "b2", "b3"]))
    assert rings_of(detect_rings(pairs, config=DetectConfig(min_ring_size=2))) == [
        {"a1", "a2"},
        {"b1", "b2", "b3"},
    ]
    assert rings_of(detect_rings(pairs, config=DetectConfig(min_ring_size=3))) == [
        {"b1", "b2", "b3"}
    ]


def test_no_pairs_no_rings() -> None:
    empty = pd.DataFrame(
        {
            "a": pd.Series(dtype=str),
            "b": pd.Series(dtype=str),
            "weight": pd.Series(dtype=float),
            "strong": pd.Series(dtype=bool),
        }
    )
    assignment = detect_rings(empty, config=DetectConfig())
    assert assignment.empty
    assert list(assignment.columns) == ["contributor_id", "ring_index"]


def test_memory_grows_linearly_with_many_small_rings() -> None:
    n = 3000  # 3000 separate pairs: 6000 contributors
    pairs = pd.DataFrame(
        {
            "a": [f"a{i:05d}" for i in range(n)],
            "b": [f"b{i:05d}" for i in range(n)],
            "weight": 1.0,
            "strong": False,
            "solid": True,
        }
    )
    tracemalloc.start()
    try:
        assignment = detect_rings(pairs, config=DetectConfig())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert assignment["ring_index"].nunique() == n
    assert peak < 50e6
