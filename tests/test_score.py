"""Scoring on hand-made rings whose right answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ringfinder import find_rings
from ringfinder.score import MIN_CONTRIBUTION, MITIGATION_SHARE, Reason, _reasons


def _events(rows: list[tuple[str, str, str, str, str, str]]) -> pd.DataFrame:
    columns = ["contributor_id", "event_time", "event_type", "device_id", "ip", "payout_account"]
    return pd.DataFrame(rows, columns=columns)


def _family_without_payouts() -> list[tuple[str, str, str, str, str, str]]:
    """Four people behind one router on one family PC, all signing up the same evening."""
    rows = []
    for i in range(4):
        rows.append((f"fam{i}", f"2026-01-01T20:0{i}:00Z", "signup", "family-pc", "81.2.3.4", ""))
        rows.append(
            (f"fam{i}", f"2026-01-0{i + 2}T20:00:00Z", "login", "family-pc", "81.2.3.4", "")
        )
    return rows


def _farm_without_payouts() -> list[tuple[str, str, str, str, str, str]]:
    """Eight accounts made within an hour, each used on both of two devices."""
    return [
        (
            f"farm{i}",
            f"2026-01-05T03:{i:02d}:{rig:02d}Z",
            "signup" if rig == 0 else "login",
            f"rig-{rig}",
            f"10.9.0.{i}",
            "",
        )
        for i in range(8)
        for rig in range(2)
    ]


def test_weak_evidence_alone_never_flags_a_household() -> None:
    result = find_rings(_events(_family_without_payouts()))
    (ring,) = result.rings.itertuples()
    assert ring.size == 4
    assert not ring.flagged
    assert ring.ring_score <= 0.45
    assert {"SHARED_DEVICE", "SIGNUP_BURST"} <= set(ring.reasons.split(";"))


def test_many_accounts_on_few_devices_is_a_farm_even_without_payouts() -> None:
    result = find_rings(_events(_farm_without_payouts() + _family_without_payouts()))
    rings = result.rings.set_index("size")
    assert bool(rings.at[8, "flagged"])
    assert "DEVICE_FARM" in rings.at[8, "reasons"].split(";")
    assert not bool(rings.at[4, "flagged"])


def test_a_shared_payout_account_flags_a_small_ring() -> None:
    rows = [
        (
            f"s{i}",
            f"2026-02-0{i + 1}T10:00:00Z",
            "signup",
            f"own-{i}",
            f"77.1.1.{i}",
            "DE00 1111 2222",
        )
        for i in range(3)
    ]
    result = find_rings(_events(rows))
    (ring,) = result.rings.itertuples()
    assert ring.flagged and ring.reasons.split(";")[0] == "SHARED_PAYOUT"


def test_reason_lists_order_by_contribution_then_name_and_end_with_mitigations() -> None:
    nan = float("nan")
    contributions = {
        Reason.SIGNUP_BURST: np.array([0.30, 0.10, 0.04, nan]),
        Reason.SHARED_DEVICE: np.array([0.30, 0.20, 0.0, 0.05]),
        Reason.SHARED_PAYOUT: np.array([0.90, 0.049, 0.0, 0.0]),
    }
    mitigations = {
        Reason.SHARED_INFRASTRUCTURE: np.array([0.0, 0.5, 0.49, 1.0]),
        Reason.INDEPENDENT_PAYOUTS: np.array([0.7, 0.0, 0.0, 1.0]),
    }
    assert _reasons(contributions, mitigations) == [
        "SHARED_PAYOUT;SHARED_DEVICE;SIGNUP_BURST;INDEPENDENT_PAYOUTS",  # tie broken by name
        "SHARED_DEVICE;SIGNUP_BURST;SHARED_INFRASTRUCTURE",  # 0.049 is below MIN_CONTRIBUTION
        "",  # nothing reaches either threshold
        "SHARED_DEVICE;SHARED_INFRASTRUCTURE;INDEPENDENT_PAYOUTS",  # a NaN is no evidence
    ]
    assert MIN_CONTRIBUTION == 0.05 and MITIGATION_SHARE == 0.5
