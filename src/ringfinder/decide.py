"""Decision bands: map ring and member scores (and reason codes) to actions for rule engines."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pandas as pd

from ringfinder.config import Band

NO_ACTION = "none"


def assign_actions(members: pd.DataFrame, bands: Sequence[Band]) -> pd.Series:
    """The action of each member: the first band it matches, else ``"none"``.

    Parameters
    ----------
    members : DataFrame with ``ring_score``, ``member_score`` and ``reasons`` (``;``-separated).
    bands : ordered bands; the first match wins.

    Examples
    --------
    >>> m = pd.DataFrame({"ring_score": [0.9, 0.6, 0.2], "member_score": [0.9, 0.6, 0.2],
    ...                   "reasons": ["SHARED_PAYOUT", "SHARED_IP", ""]})
    >>> assign_actions(m, [Band(action="hold_payouts", min_score=0.8),
    ...                    Band(action="manual_review", min_score=0.5)]).tolist()
    ['hold_payouts', 'manual_review', 'none']
    """
    action = pd.Series(NO_ACTION, index=members.index, name="action", dtype=object)
    undecided = pd.Series(True, index=members.index)
    reasons = members["reasons"].fillna("").astype(str)
    for band in bands:
        score = pd.to_numeric(members[band.score], errors="coerce").fillna(0.0)
        match = undecided & (score >= band.min_score)
        if band.reasons_any:
            codes = "|".join(re.escape(str(code)) for code in band.reasons_any)
            match &= reasons.str.contains(rf"(?:^|;)(?:{codes})(?:;|$)", regex=True)
        action[match] = band.action
        undecided &= ~match
    return action
