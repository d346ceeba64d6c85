"""Where the false positives are: broken down by reason code and by label segment, with examples.

Each breakdown row counts contributors, benign ones, flagged, true and false positives, the benign
false-positive rate, precision, the share of all false positives, and a few example contributors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from ringfinder.evaluate.inputs import (
    ACTION,
    FLAGGED,
    MEMBER_SCORE,
    REASONS,
    RING_ID,
    RING_SCORE,
    segment_column,
)
from ringfinder.evaluate.metrics import ratio
from ringfinder.schema import CONTRIBUTOR

MAX_SEGMENT_VALUES = 50
N_EXAMPLES = 5
MAX_FP_EXAMPLES = 25
OTHER = "(other)"


def fp_by_segment(frame: pd.DataFrame, segment: str) -> list[dict[str, Any]]:
    """The breakdown by one label segment; past ``MAX_SEGMENT_VALUES`` the rest is ``(other)``."""
    return _breakdown(frame, segment_column(segment), cap=True)


def fp_by_reason(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The breakdown by reason code over members; a member counts once per reason it carries."""
    in_ring = frame[frame["in_ring"] & (frame[CONTRIBUTOR] != "")]
    exploded = in_ring.assign(reason=in_ring[REASONS].str.split(";")).explode("reason")
    exploded["reason"] = exploded["reason"].fillna("").astype(str).str.strip()
    exploded = exploded[exploded["reason"] != ""]
    rows = _breakdown(exploded, "reason")
    total_fp = int(frame["fp"].sum())
    for row in rows:  # share of all false positives, not only those with a reason
        row["fp_share"] = ratio(row["false_positives"], total_fp)
        row["reason"] = row.pop("value")
    return rows


def fp_examples(frame: pd.DataFrame, segments: Sequence[str]) -> list[dict[str, Any]]:
    """The highest-scored false positives (at most ``MAX_FP_EXAMPLES``) with their segments."""
    wrong = frame[frame["fp"]].sort_values(
        [RING_SCORE, MEMBER_SCORE, CONTRIBUTOR], ascending=[False, False, True], kind="stable"
    )
    columns = [CONTRIBUTOR, RING_ID, RING_SCORE, MEMBER_SCORE, REASONS]
    columns += [ACTION] if ACTION in frame else []
    rows = wrong[columns].head(MAX_FP_EXAMPLES).to_dict("records")
    for row, (_, source) in zip(rows, wrong.head(MAX_FP_EXAMPLES).iterrows(), strict=True):
        row["segments"] = {c: source[segment_column(c)] for c in segments}
    return rows


def _breakdown(frame: pd.DataFrame, key: str, *, cap: bool = False) -> list[dict[str, Any]]:
    """Per value of ``key``: contributors, flagged, false positives, rates and examples."""
    if frame.empty:
        return []
    groups = frame.groupby(key, sort=True)
    stats = pd.DataFrame(
        {
            "contributors": groups.size(),
            "benign": groups["negative"].sum(),
            "flagged": groups[FLAGGED].sum(),
            "true_positives": groups["tp"].sum(),
            "false_positives": groups["fp"].sum(),
        }
    )
    stats = stats.sort_values(["false_positives", "contributors"], ascending=False, kind="stable")
    if cap and len(stats) > MAX_SEGMENT_VALUES:
        rest = stats.iloc[MAX_SEGMENT_VALUES - 1 :].sum()
        stats = pd.concat([stats.iloc[: MAX_SEGMENT_VALUES - 1], rest.to_frame(OTHER).T])
    total_fp = int(frame["fp"].sum())
    stats["fp_rate"] = ratio(stats["false_positives"], stats["benign"])
    stats["precision"] = ratio(stats["true_positives"], stats["flagged"])
    stats["fp_share"] = ratio(stats["false_positives"], total_fp)
    wrong = frame[frame["fp"]].sort_values(
        [RING_SCORE, CONTRIBUTOR], ascending=[False, True], kind="stable"
    )
    examples = wrong.groupby(key, sort=False)[CONTRIBUTOR].agg(lambda s: list(s[:N_EXAMPLES]))
    stats["examples"] = [examples.get(v, []) for v in stats.index]
    return stats.rename_axis("value").reset_index().to_dict("records")
