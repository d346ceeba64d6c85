"""What other thresholds would cost: a scan over candidate thresholds, and the best one per limit.

A threshold ``t`` flags every ring member with ``ring_score >= t``; contributors in no ring are
never flagged. Candidates are every ring score in the run, a fixed grid and the run's threshold.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ringfinder.evaluate.inputs import RING_ID, RING_SCORE, Run
from ringfinder.evaluate.metrics import ratio

THRESHOLD_GRID = tuple(round(0.05 * i, 2) for i in range(21))


def scan_thresholds(frame: pd.DataFrame, run: Run) -> pd.DataFrame:
    """Counts and rates when flagging ring members with ``ring_score >= t``, for many t.

    ``frame`` is the evaluation frame: one row per evaluated contributor with ``in_ring``,
    ``positive`` and ``ring_score``.
    """
    members = run.members
    candidates = np.unique(
        np.r_[members[RING_SCORE].to_numpy(), np.asarray(THRESHOLD_GRID), run.threshold]
    )
    in_ring = frame[frame["in_ring"]]
    pos = in_ring.loc[in_ring["positive"], RING_SCORE].to_numpy()
    neg = in_ring.loc[~in_ring["positive"], RING_SCORE].to_numpy()
    positives = int(frame["positive"].sum())
    negatives = len(frame) - positives
    tp = _count_at_least(pos, candidates)
    fp = _count_at_least(neg, candidates)
    ring_scores = members.groupby(RING_ID)[RING_SCORE].max().to_numpy()
    return pd.DataFrame(
        {
            "threshold": candidates,
            "flagged_in_run": _count_at_least(members[RING_SCORE].to_numpy(), candidates),
            "flagged_rings": _count_at_least(ring_scores, candidates),
            "flagged": tp + fp,
            "true_positives": tp,
            "false_positives": fp,
            "false_negatives": positives - tp,
            "precision": ratio(tp, tp + fp),
            "recall": ratio(tp, positives),
            "f1": ratio(2 * tp, tp + fp + positives),
            "fp_rate": ratio(fp, negatives),
            "fp_per_10k": ratio(fp * 10_000, len(frame)),
        }
    )


def recommend_thresholds(
    scan: pd.DataFrame,
    population: dict[str, Any],
    *,
    fp_budget_rate: float | None,
    fp_per_10k: float | None,
    review_capacity: int | None,
) -> list[dict[str, Any]]:
    """Per constraint (and all together), the threshold with the highest recall that keeps it.

    Among thresholds with equal recall the highest wins: it flags the fewest contributors.
    A constraint no threshold keeps with recall above 0 has ``threshold`` None.
    """
    fp, n = scan["false_positives"], population["evaluated"]
    constraints: list[tuple[str, float, pd.Series]] = []
    if fp_budget_rate is not None:
        negatives = population["evaluated_negative"]
        ok = fp <= fp_budget_rate * negatives + 1e-9
        constraints.append((f"benign FP rate <= {fp_budget_rate:g}", fp_budget_rate, ok))
    if fp_per_10k is not None:
        ok = fp * 10_000 <= fp_per_10k * n + 1e-9
        constraints.append((f"FP per 10k <= {fp_per_10k:g}", fp_per_10k, ok))
    if review_capacity is not None:
        ok = scan["flagged_in_run"] <= review_capacity
        constraints.append((f"at most {review_capacity} flagged", review_capacity, ok))
    if len(constraints) > 1:
        together = np.logical_and.reduce([ok for _, _, ok in constraints])
        constraints.append(("all constraints", math.nan, pd.Series(together, index=scan.index)))
    result = []
    for name, limit, ok in constraints:
        fits = scan[ok & (scan["recall"] > 0)]
        row: dict[str, Any] = {"constraint": name, "limit": limit, "threshold": None}
        if len(fits):
            best = fits.sort_values(["recall", "threshold"], ascending=False, kind="stable")
            row.update(best.head(1).to_dict("records")[0])
        result.append(row)
    return result


def _count_at_least(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    ordered = np.sort(values)
    return ordered.size - np.searchsorted(ordered, thresholds, side="left")
