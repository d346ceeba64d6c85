"""The mess: which cells are written in another format, and which rows are duplicated or
broken, drawn from their own random stream so the events never depend on it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ringfinder.synth.events import Events
from ringfinder.synth.scenario import SIGNUP, Scenario

PADS = (("", " "), (" ", ""), ("  ", " "))  # whitespace noise: (before, after)


@dataclass(frozen=True)
class Mess:
    """How each event's cells are written (0: clean), and the rows of the file.

    ``source`` and ``broken`` have one entry per written row, in file order: the event the row
    shows, and how it is broken (0 not, 1 no contributor id, 2 unparseable timestamp, 3 ragged
    CSV line). The other arrays have one entry per event.
    """

    time: np.ndarray
    contributor: np.ndarray
    device: np.ndarray
    ip: np.ndarray
    payout: np.ndarray
    pad: np.ndarray
    source: np.ndarray
    broken: np.ndarray
    duplicate_rows: int
    broken_rows: int


def add_mess(
    events: Events,
    scenario: Scenario,
    ip_is_v4: np.ndarray,
    rng: np.random.Generator,
    *,
    ragged: bool,
) -> Mess:
    """Mark cells to write messily, pick duplicate and broken rows, order all rows by time."""
    s, m = scenario, len(events.time)
    # IPv4 cells: [0, mapped rate) mapped or bracketed, then [.., + noise rate) spaced
    ip = np.zeros(m, dtype=np.int8)
    u = rng.random(m, dtype=np.float32)
    mapped_below = np.where(ip_is_v4[events.ip], np.float32(s.ipv4_mapped_rate), np.float32(0))
    ip[(u >= mapped_below) & (u < mapped_below + s.identifier_noise_rate)] = 1
    mapped = np.flatnonzero(u < mapped_below)
    ip[mapped] = rng.integers(2, 4, size=len(mapped))
    # payout cells: [0, formatted rate) grouped, then [.., + noise rate) case and spaces
    payout = np.zeros(m, dtype=np.int8)
    u = np.where(events.payout >= 0, rng.random(m, dtype=np.float32), np.float32(2))
    grouped_below, noisy_below = (
        s.formatted_payout_rate,
        s.formatted_payout_rate + s.identifier_noise_rate,
    )
    noisy = np.flatnonzero((u >= grouped_below) & (u < noisy_below))
    payout[noisy] = rng.integers(1, 4, size=len(noisy))
    grouped = np.flatnonzero(u < grouped_below)
    payout[grouped] = rng.integers(4, 7, size=len(grouped))

    duplicates = rng.choice(m, size=round(s.duplicate_rate * m), replace=False)
    candidates = np.flatnonzero(events.event_type != SIGNUP)
    broken_from = rng.choice(candidates, size=round(s.broken_rate * m), replace=False)
    source = np.concatenate([np.arange(m), duplicates, broken_from])
    broken = np.zeros(len(source), dtype=np.int8)
    broken[m + len(duplicates) :] = rng.integers(1, 4 if ragged else 3, size=len(broken_from))
    # sort by time, ties in source order: one unique integer key per row, no stable sort
    key = (events.time[source] - events.time.min()) * len(source) + np.arange(len(source))
    key.sort()
    order = key % len(source)
    return Mess(
        time=_mark(rng, m, s.timestamp_mix_rate, 1, 5),  # 1-4: the other formats
        contributor=_mark(rng, m, s.identifier_noise_rate, 1, 4),  # 1 case, 2 pad, 3 both
        device=_mark(rng, m, s.identifier_noise_rate, 1, 4),
        ip=ip,
        payout=payout,
        pad=rng.integers(0, len(PADS), size=m, dtype=np.int8),
        source=source[order],
        broken=broken[order],
        duplicate_rows=len(duplicates),
        broken_rows=len(broken_from),
    )


def _mark(rng: np.random.Generator, count: int, rate: float, low: int, high: int) -> np.ndarray:
    """A variant in [low, high) for a ``rate`` share of ``count`` cells, else 0."""
    marks = np.zeros(count, dtype=np.int8)
    chosen = np.flatnonzero(rng.random(count, dtype=np.float32) < rate)
    marks[chosen] = rng.integers(low, high, size=len(chosen))
    return marks
