"""Lockstep pairs: the SQL of ``graph.lockstep_pairs_sql`` against a brute-force Python reference.

The reference is written from the definition, not from the SQL: every pair of acts on a target
is compared, so the SQL's bucket and cell shortcuts must give exactly the same pairs.
"""

from __future__ import annotations

import functools
import math
import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from fractions import Fraction

import duckdb
import pandas as pd
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

from ringfinder.config import Config, GraphConfig
from ringfinder.graph import lockstep_pairs_sql
from ringfinder.schema import CONTRIBUTOR, TARGET, TIME

EPOCH_2024 = 1_704_067_200  # 2024-01-01T00:00:00Z, a multiple of every window used here
# Mixed case, digits and punctuation, so string order differs from the order of creation.
NAMES = ["a", "b", "ab", "B", "u1", "u2", "u10", "u11", "U3", "z9", "zz", "Zed", "m-1", "m_1"]

Row = tuple[str, str | None, int]  # contributor, target (None: no target), epoch seconds
Act = tuple[str, str, int]
Pair = tuple[str, str, int]  # a < b, co_targets


@dataclass(frozen=True)
class Scenario:
    """Events and the lockstep settings they are checked with."""

    rows: list[Row]
    window: float
    max_bucket: int
    min_targets: int
    min_share: float

    def config(self) -> Config:
        """The default config with this scenario's lockstep settings."""
        return Config(
            graph=GraphConfig(
                lockstep_window_seconds=self.window,
                lockstep_max_bucket=self.max_bucket,
                lockstep_min_targets=self.min_targets,
                lockstep_min_share=self.min_share,
            )
        )


# --- the reference --------------------------------------------------------------------------


@functools.cache
def bucket(window: float, seconds: int) -> int:
    """floor(epoch / W), computed exactly."""
    return math.floor(Fraction(seconds) / Fraction(window))


def usable_acts(scenario: Scenario) -> list[Act]:
    """Acts with a target, minus those in a (target, bucket) with too many contributors."""
    acts = [(c, t, s) for c, t, s in scenario.rows if t is not None]
    crowd: dict[tuple[str, int], set[str]] = defaultdict(set)
    for contributor, target, seconds in acts:
        crowd[(target, bucket(scenario.window, seconds))].add(contributor)
    return [
        (c, t, s)
        for c, t, s in acts
        if len(crowd[(t, bucket(scenario.window, s))]) <= scenario.max_bucket
    ]


def close_acts(scenario: Scenario) -> list[tuple[Act, Act]]:
    """Every pair of usable acts by two contributors on one target, at most W apart in time
    and in the same or adjacent buckets."""
    acts = usable_acts(scenario)
    close = []
    for x in acts:
        for y in acts:
            px, tx, sx = x
            py, ty, sy = y
            if (
                px != py
                and tx == ty
                and abs(bucket(scenario.window, sx) - bucket(scenario.window, sy)) <= 1
                and abs(sx - sy) <= scenario.window
            ):
                close.append((x, y))
    return close


def targets_of(scenario: Scenario) -> dict[str, int]:
    """How many distinct targets each contributor acted on, crowded buckets included."""
    targets: dict[str, set[str]] = defaultdict(set)
    for contributor, target, _ in scenario.rows:
        if target is not None:
            targets[contributor].add(target)
    return {contributor: len(acted_on) for contributor, acted_on in targets.items()}


def share_needed(scenario: Scenario, a: str, b: str) -> Fraction:
    """min_share × the smaller target count, reading the share as the decimal the config
    spells (0.4 of 5 targets is exactly 2)."""
    targets = targets_of(scenario)
    return Fraction(repr(scenario.min_share)) * min(targets[a], targets[b])


def reference_pairs(scenario: Scenario) -> set[Pair]:
    """(a, b, co_targets) of pairs with enough close targets, absolutely and as a share."""
    shared: dict[tuple[str, str], set[str]] = defaultdict(set)
    for (p, target, _), (q, _, _) in close_acts(scenario):
        shared[(min(p, q), max(p, q))].add(target)
    return {
        (a, b, len(common))
        for (a, b), common in shared.items()
        if len(common) >= scenario.min_targets and len(common) >= share_needed(scenario, a, b)
    }


# --- the SQL --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    """One connection with an empty ``events`` table; opening one per example is slow."""
    connection = duckdb.connect()
    connection.execute("SET TimeZone='UTC'")
    connection.execute(
        f"CREATE TABLE events ({CONTRIBUTOR} VARCHAR, {TARGET} VARCHAR, {TIME} TIMESTAMP)"
    )
    yield connection
    connection.close()


def sql_pairs(con: duckdb.DuckDBPyConnection, scenario: Scenario) -> set[Pair]:
    """Run ``lockstep_pairs_sql`` with ``events`` holding exactly the scenario's rows."""
    con.execute("DELETE FROM events")
    if scenario.rows:
        frame = pd.DataFrame(
            {
                CONTRIBUTOR: pd.Series([c for c, _, _ in scenario.rows], dtype=object),
                TARGET: pd.Series([t for _, t, _ in scenario.rows], dtype=object),
                TIME: pd.to_datetime([s for _, _, s in scenario.rows], unit="s"),
            }
        )
        con.register("frame", frame)
        con.execute(f"INSERT INTO events SELECT {CONTRIBUTOR}, {TARGET}, {TIME} FROM frame")
        con.unregister("frame")
    return set(con.execute(lockstep_pairs_sql(scenario.config())).fetchall())


# --- random data ----------------------------------------------------------------------------


def random_scenario(rng: random.Random) -> Scenario:
    """Few contributors and targets, acts bunched into bursts a little under and over W wide.

    Small groups act together on several targets (lockstep), bursts of up to six crowd a
    bucket, and solo acts add noise; some rows are duplicated and some have no target. Half
    the data sits around the Unix epoch, so buckets are negative as well as positive.
    """
    window = rng.choice([7.5, 10.0, 30.0])
    contributors = rng.sample(NAMES, rng.randint(3, 12))
    targets = [f"t{i}" for i in range(rng.randint(3, 8))]
    span = rng.choice([60, 300])
    base = rng.choice([EPOCH_2024, -span // 2]) + rng.randint(0, 59)
    jitter = int(window * 0.6)
    rows: list[Row] = []

    def burst(members: list[str], target: str) -> None:
        centre = base + rng.randint(0, span)
        rows.extend((m, target, centre + rng.randint(-jitter, jitter)) for m in members)

    for _ in range(rng.randint(0, 3)):  # lockstep groups
        group = rng.sample(contributors, rng.randint(2, min(4, len(contributors))))
        for target in rng.sample(targets, rng.randint(1, min(5, len(targets)))):
            burst([m for m in group if rng.random() < 0.85], target)
        for member in group:  # and on their own, which lowers their share together
            rows.extend(
                (member, rng.choice(targets), base + rng.randint(0, span))
                for _ in range(rng.randint(0, 3))
            )
    for _ in range(rng.randint(0, 4)):  # crowds
        crowd = rng.sample(contributors, rng.randint(2, min(6, len(contributors))))
        burst(crowd, rng.choice(targets))
    for _ in range(rng.randint(0, 30)):  # noise, some without a target
        maybe = None if rng.random() < 0.15 else rng.choice(targets)
        rows.append((rng.choice(contributors), maybe, base + rng.randint(0, span)))
    rows += [row for row in rows if rng.random() < 0.1]  # the same act twice
    rng.shuffle(rows)
    return Scenario(
        rows=rows,
        window=window,
        max_bucket=rng.randint(2, 5),
        min_targets=rng.randint(2, 3),
        min_share=rng.choice([0.0, 0.25, 0.4, 0.5, 0.6, 0.75, 0.8]),
    )


def test_lockstep_pairs_match_reference_on_seeded_data(con: duckdb.DuckDBPyConnection) -> None:
    """300 seeds agree exactly, and between them they exercise every rule of the definition."""
    seen: dict[str, int] = defaultdict(int)
    for seed in range(300):
        scenario = random_scenario(random.Random(seed))
        expected = reference_pairs(scenario)
        assert sql_pairs(con, scenario) == expected, f"seed {seed}: {scenario}"

        seen["pairs"] += bool(expected)
        seen["crowding"] += reference_pairs(replace(scenario, max_bucket=10**6)) != expected
        seen["share"] += reference_pairs(replace(scenario, min_share=0.0)) != expected
        seen["min_targets"] += reference_pairs(replace(scenario, min_targets=1)) != expected
        seen["share_edge"] += any(co == share_needed(scenario, a, b) for a, b, co in expected)
        close = close_acts(scenario)
        seen["straddle"] += any(
            bucket(scenario.window, x[2]) != bucket(scenario.window, y[2]) for x, y in close
        )
        seen["exactly_w"] += any(abs(x[2] - y[2]) == scenario.window for x, y in close)
        usable = usable_acts(scenario)
        seen["near_miss"] += any(
            x[0] != y[0]
            and x[1] == y[1]
            and bucket(scenario.window, y[2]) - bucket(scenario.window, x[2]) == 1
            and abs(x[2] - y[2]) > scenario.window
            for x in usable
            for y in usable
        )
        seen["negative"] += any(s < 0 for _, _, s in scenario.rows)
    for case in (
        "pairs",
        "crowding",
        "share",
        "share_edge",
        "min_targets",
        "straddle",
        "exactly_w",
        "near_miss",
    ):
        assert seen[case] >= 20, f"only {seen[case]} of 300 seeds exercise {case}: {dict(seen)}"
    assert seen["negative"] >= 100


@settings(max_examples=150, deadline=None)
@given(st.randoms(use_true_random=False))
def test_lockstep_pairs_match_reference(con: duckdb.DuckDBPyConnection, rng: random.Random) -> None:
    """Hypothesis drives the same generator, so a failure shrinks towards a small example."""
    scenario = random_scenario(rng)
    note(repr(scenario))
    assert sql_pairs(con, scenario) == reference_pairs(scenario)


# --- by hand --------------------------------------------------------------------------------


def hand_scenario(*, max_bucket: int = 2, min_targets: int = 2, min_share: float = 0.5) -> Scenario:
    """W = 10 s, so buckets are [0, 10), [10, 20), ... seconds after midnight.

    - a and b: t1 at 1 and 4 (same bucket), t2 at 69 and 71 (either side of 70), t3 at 120
      and 130 (exactly W apart, adjacent buckets). a also does t1 at 0, t1 at 1 a second time
      and one act with no target: t1's first bucket holds four acts but two contributors.
    - c: t1 at 15 and t2 at 82, W + 1 from b's nearest acts, so linked to nobody; c's t1 at 15
      and b's at 4 are in adjacent buckets but too far apart.
    - d and e: t4 at 300 and 302; t5 at 401 and 402 in a bucket that f (t5 at 403) crowds
      past lockstep_max_bucket = 2, so they share only one usable target.
    - g and h: t6 and t7 together (500/505 and 600/609), then four and three targets alone:
      2 close targets, 6 and 5 targets in all.
    """
    rows: list[Row] = [
        ("a", "t1", 0),
        ("a", "t1", 1),
        ("a", "t1", 1),
        ("a", None, 2),
        ("b", "t1", 4),
        ("a", "t2", 69),
        ("b", "t2", 71),
        ("a", "t3", 120),
        ("b", "t3", 130),
        ("c", "t1", 15),
        ("c", "t2", 82),
        ("d", "t4", 300),
        ("e", "t4", 302),
        ("d", "t5", 401),
        ("e", "t5", 402),
        ("f", "t5", 403),
        ("g", "t6", 500),
        ("h", "t6", 505),
        ("g", "t7", 600),
        ("h", "t7", 609),
    ]
    rows += [("g", f"t{n}", 700 + 100 * n) for n in (8, 9, 10, 11)]
    rows += [("h", f"t{n}", 700 + 100 * n) for n in (12, 13, 14)]
    return Scenario(
        rows=[(c, t, EPOCH_2024 + s) for c, t, s in rows],
        window=10.0,
        max_bucket=max_bucket,
        min_targets=min_targets,
        min_share=min_share,
    )


def test_hand_worked_lockstep_pairs(con: duckdb.DuckDBPyConnection) -> None:
    """Only a and b (3 targets): d and e lose t5 to the crowd, and g and h's 2 close targets
    are less than half of h's 5."""
    scenario = hand_scenario()
    assert sql_pairs(con, scenario) == {("a", "b", 3)}
    assert reference_pairs(scenario) == {("a", "b", 3)}


def test_hand_worked_pairs_without_the_crowd_or_the_share(con: duckdb.DuckDBPyConnection) -> None:
    """A bucket cap of 3 gives d and e their t5 (2 targets, not 3); 0.4 of h's 5 targets (the
    smaller count, not g's 6) is exactly 2."""
    uncrowded = hand_scenario(max_bucket=3)
    assert sql_pairs(con, uncrowded) == {("a", "b", 3), ("d", "e", 2)}
    lenient = hand_scenario(min_share=0.4)
    assert sql_pairs(con, lenient) == {("a", "b", 3), ("g", "h", 2)}
    strict = hand_scenario(max_bucket=3, min_targets=3)
    assert sql_pairs(con, strict) == {("a", "b", 3)}
    assert all(sql_pairs(con, s) == reference_pairs(s) for s in (uncrowded, lenient, strict))
