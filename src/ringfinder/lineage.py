"""Lineage: ring ids derived from the members, so the same ring gets the same id in every run."""

from __future__ import annotations

import hashlib

import pandas as pd

from ringfinder.schema import CONTRIBUTOR

RING_ID_PREFIX = "R"
RING_ID_HEX = 12


def ring_id_for(members: list[str]) -> str:
    """Deterministic id of a ring from its sorted member ids.

    Examples
    --------
    >>> ring_id_for(["b", "a"]) == ring_id_for(["a", "b"])
    True
    """
    digest = hashlib.blake2b("\n".join(sorted(members)).encode("utf-8"), digest_size=16)
    return RING_ID_PREFIX + digest.hexdigest()[:RING_ID_HEX]


def assign_ring_ids(assignment: pd.DataFrame) -> dict[int, str]:
    """Map each ``ring_index`` of a detect assignment to its ring id."""
    groups = assignment.groupby("ring_index")[CONTRIBUTOR].agg(list)
    return {int(index): ring_id_for(members) for index, members in groups.items()}
