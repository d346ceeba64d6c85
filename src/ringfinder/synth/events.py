"""The true events: every contributor's signup, activity, payout changes and lockstep
co-submissions, drawn at once over the population's channels, as integer codes."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from ringfinder.synth.population import (
    CHANNELS,
    DAY,
    NULL,
    TZ_MINUTES,
    World,
    draw_tasks,
    local_times,
)
from ringfinder.synth.scenario import LOGIN, PAYOUT_CHANGE, SIGNUP, SUBMIT


@dataclass(frozen=True)
class Events:
    """True events as codes, one entry per event (``-1``: no payout account or task)."""

    contributor: np.ndarray
    time: np.ndarray
    event_type: np.ndarray
    device: np.ndarray
    ip: np.ndarray
    payout: np.ndarray
    task: np.ndarray

    def take(self, index: np.ndarray) -> Events:
        """The events at ``index``, in that order."""
        return Events(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


def draw_events(world: World, rng: np.random.Generator) -> Events:
    """Every event of every contributor, as codes, signups first, clean.

    Besides the signup, everyone has at least one event (ring members at least four, so they
    work a little like everyone else); the first few of them go through channels 1, 2, ... in
    turn, so every channel a contributor has shows up in the data if they have events enough.
    """
    s, n = world.scenario, world.n
    shape, mean = 1.2, s.events_per_contributor - 2
    others = 1 + rng.negative_binomial(shape, shape / (shape + mean), size=n)
    others[world.ring >= 0] += 3
    who = np.repeat(np.arange(n), others)
    rank = np.arange(len(who)) - np.repeat(np.cumsum(others) - others, others)
    first_day = (world.signup + TZ_MINUTES[world.tz] * 60 - world.t0) // DAY
    active = rng.random(len(who), dtype=np.float32) * world.span_days[who]
    day = first_day[who] + active.astype(np.int64)
    at = local_times(rng, world.t0, day, world.tz[who])
    early = at <= world.signup[who]
    at[early] = world.signup[who[early]] + rng.integers(30, 7200, size=int(early.sum()))
    late = at >= world.t_end
    room = world.t_end - 1 - world.signup[who[late]]
    at[late] = world.signup[who[late]] + 1 + (rng.random(int(late.sum())) * room).astype(np.int64)
    action = np.where(rng.random(len(who), dtype=np.float32) < 0.3, LOGIN, SUBMIT)

    changers = np.flatnonzero(world.payout1 >= 0)
    lock_who, lock_at, lock_task = (
        (np.concatenate(column) for column in zip(*world.lockstep_rows, strict=True))
        if world.lockstep_rows
        else (np.empty(0, np.int64),) * 3
    )
    contributor = np.concatenate([np.arange(n), who, changers, lock_who])
    time = np.concatenate(
        [world.signup, at, np.minimum(world.payout1_at[changers], world.t_end - 1), lock_at]
    )
    event_type = np.concatenate(
        [
            np.full(n, SIGNUP),
            action,
            np.full(len(changers), PAYOUT_CHANGE),
            np.full(len(lock_who), SUBMIT),
        ]
    ).astype(np.int8)
    payout = np.concatenate(
        [
            world.payout0,
            np.full(len(who), NULL),
            world.payout1[changers],
            np.full(len(lock_who), NULL),
        ]
    )
    task = np.full(len(contributor), NULL, dtype=np.int64)
    submit = np.flatnonzero(event_type == SUBMIT)
    task[submit] = draw_tasks(rng, len(submit), world.tasks)
    task[len(task) - len(lock_task) :] = lock_task

    # pick a channel per event (signups use channel 0), then a device and an IP within it
    cumulative = np.cumsum(world.ch_weight, axis=1)
    cumulative /= cumulative[:, -1:]
    u = rng.random(len(contributor), dtype=np.float32)
    channel = np.zeros(len(contributor), dtype=np.int64)
    for slot in range(CHANNELS - 1):
        channel += u >= cumulative[:, slot][contributor]
    channel[:n] = 0
    turn = np.flatnonzero(rank < CHANNELS - 1)
    turn = turn[world.ch_weight[who[turn], rank[turn] + 1] > 0]
    channel[n + turn] = rank[turn] + 1
    cell = contributor * CHANNELS + channel
    device = _in_span(rng, world.ch_device.ravel()[cell], world.ch_device_span.ravel()[cell])
    ip = _in_span(rng, world.ch_ip.ravel()[cell], world.ch_ip_span.ravel()[cell])
    return Events(contributor, time, event_type, device, ip, payout, task)


def _in_span(rng: np.random.Generator, first: np.ndarray, span: np.ndarray) -> np.ndarray:
    """A random code in ``[first, first + span)`` per entry (most spans are 1)."""
    wide = np.flatnonzero(span > 1)
    codes = first.copy()
    codes[wide] += rng.integers(0, span[wide])
    return codes
