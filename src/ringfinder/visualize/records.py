"""A run's members, evidence and timeline split by ring, sorted and with times as text.

The tables are prepared once per run and split by ring, so writing a thousand ring pages costs
little more than writing the files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ringfinder.schema import CONTRIBUTOR, IDENTIFIER, KIND
from ringfinder.visualize.text import TIME_FORMAT

MEMBER_FIELDS = (
    "ring_id",
    CONTRIBUTOR,
    "member_score",
    "n_events",
    "shared_identifiers",
    "first_seen",
    "last_seen",
)
EVIDENCE_FIELDS = (
    "ring_id",
    CONTRIBUTOR,
    KIND,
    "role",
    IDENTIFIER,
    "n_events",
    "first_seen",
    "last_seen",
    "degree",
    "ring_users",
    "hub",
    "infrastructure",
)
SHARED_FIELDS = (
    KIND,
    IDENTIFIER,
    "role",
    "degree",
    "ring_users",
    "n_events",
    "first_seen",
    "last_seen",
    "hub",
    "infrastructure",
)


def _formatted_times(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with ``first_seen`` and ``last_seen`` as text, formatted at once."""
    out = frame.copy()
    for column in ("first_seen", "last_seen"):
        stamps = pd.to_datetime(out[column])
        out[column] = stamps.dt.strftime(TIME_FORMAT).where(stamps.notna(), "")
    return out


def shared_identifiers(evidence: pd.DataFrame) -> pd.DataFrame:
    """One row per ring and identifier that two or more of the ring's members use.

    Sorted by ring (when ``evidence`` has a ``ring_id``), then most shared first.
    """
    by_ring = ["ring_id"] if "ring_id" in evidence.columns else []
    if evidence.empty:
        return pd.DataFrame(columns=[*by_ring, *SHARED_FIELDS])
    shared = evidence[evidence["ring_users"] >= 2]
    table = shared.groupby([*by_ring, KIND, IDENTIFIER], as_index=False, sort=False).agg(
        role=("role", "first"),
        degree=("degree", "max"),
        ring_users=("ring_users", "max"),
        n_events=("n_events", "sum"),
        first_seen=("first_seen", "min"),
        last_seen=("last_seen", "max"),
        hub=("hub", "any"),
        infrastructure=("infrastructure", "any"),
    )
    keys = [*by_ring, "ring_users", KIND, IDENTIFIER]
    order = table.sort_values(
        keys, ascending=[True] * len(by_ring) + [False, True, True], kind="stable"
    )
    return order.reset_index(drop=True)[[*by_ring, *SHARED_FIELDS]]


def identifier_flags(
    identifier: Any, *, hub: str = "hub", infrastructure: str = "infrastructure"
) -> list[str]:
    """The flags a shared identifier carries, named ``hub`` and ``infrastructure``.

    A hub is shared too widely and ignored for linking; shared infrastructure (a café's IP, a
    carrier NAT) is down-weighted.
    """
    return [
        name
        for name, on in ((hub, identifier.hub), (infrastructure, identifier.infrastructure))
        if on
    ]


@dataclass
class RingRecords:
    """One ring's rows, ready to render: named tuples whose times are text.

    ``members`` best member score first; ``links`` the member–identifier rows of identifiers
    two or more members share; ``shared`` one row per such identifier, most shared first;
    ``own`` per member, the identifiers no other member uses, counted per kind;
    ``timeline`` (day, event type, events).
    """

    members: list[Any] = field(default_factory=list)
    links: list[Any] = field(default_factory=list)
    shared: list[Any] = field(default_factory=list)
    own: dict[str, str] = field(default_factory=dict)
    timeline: list[tuple[pd.Timestamp, str, int]] = field(default_factory=list)


def ring_records(
    members: pd.DataFrame, evidence: pd.DataFrame, timeline: pd.DataFrame
) -> dict[str, RingRecords]:
    """Split a run's tables by ring, sorted and formatted in one pass over each table."""
    records: dict[str, RingRecords] = {}

    def ring(ring_id: Any) -> RingRecords:
        return records.setdefault(str(ring_id), RingRecords())

    if len(members):
        frame = _formatted_times(members[list(MEMBER_FIELDS)])
        frame = frame.sort_values(
            ["ring_id", "member_score", CONTRIBUTOR], ascending=[True, False, True], kind="stable"
        )
        for row in frame.itertuples(index=False, name="Member"):
            ring(row.ring_id).members.append(row)
    if len(evidence) and "ring_id" in evidence.columns:
        used = evidence[list(EVIDENCE_FIELDS)]
        linking = used["ring_users"] >= 2
        links = _formatted_times(used[linking])
        links = links.sort_values(["ring_id", CONTRIBUTOR, KIND, IDENTIFIER], kind="stable")
        for row in links.itertuples(index=False, name="Link"):
            ring(row.ring_id).links.append(row)
        for row in _formatted_times(shared_identifiers(used)).itertuples(
            index=False, name="Shared"
        ):
            ring(row.ring_id).shared.append(row)
        own = used[~linking].groupby(["ring_id", CONTRIBUTOR, KIND], sort=True).size()
        for (ring_id, contributor, kind), n in own.items():
            counts = ring(ring_id).own
            text = f"{kind} {n}"
            counts[str(contributor)] = (
                f"{counts[str(contributor)]}, {text}" if str(contributor) in counts else text
            )
    if len(timeline) and "ring_id" in timeline.columns:
        frame = timeline.assign(
            day=pd.to_datetime(timeline["day"]).dt.normalize(),
            event_type=timeline["event_type"].fillna("").astype(str),
        )
        per_day = frame.groupby(["ring_id", "day", "event_type"], sort=True)["n_events"].sum()
        for (ring_id, day, event_type), n in per_day.items():
            ring(ring_id).timeline.append((pd.Timestamp(day), str(event_type), int(n)))
    return records
