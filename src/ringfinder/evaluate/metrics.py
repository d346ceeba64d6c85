"""Binary classification metrics with numpy: counts, precision/recall/F1, PR and ROC curves.

The conventions follow scikit-learn (the tests check against it): curves have one point per
distinct score, average precision is the step-wise sum without interpolation, ROC AUC counts
ties half. Undefined ratios (0 / 0) are NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_CURVE_POINTS = 500


def ratio(num: Any, den: Any) -> Any:
    """num / den, NaN where den is 0, without warnings; scalars stay scalars.

    Examples
    --------
    >>> ratio(1, 4), ratio(1, 0)
    (0.25, nan)
    """
    n = np.asarray(num, dtype=float)
    d = np.asarray(den, dtype=float)
    out = np.divide(n, d, out=np.full(np.broadcast(n, d).shape, np.nan), where=d != 0)
    return float(out) if out.ndim == 0 else out


def confusion_counts(y_true: Any, y_pred: Any) -> tuple[int, int, int, int]:
    """``(tp, fp, fn, tn)`` for binary truths and predictions.

    Examples
    --------
    >>> confusion_counts([1, 1, 0, 0], [1, 0, 1, 0])
    (1, 1, 1, 1)
    """
    t = np.asarray(y_true).astype(bool)
    p = np.asarray(y_pred).astype(bool)
    tp = int(np.count_nonzero(t & p))
    fp = int(np.count_nonzero(~t & p))
    fn = int(np.count_nonzero(t & ~p))
    return tp, fp, fn, int(t.size - tp - fp - fn)


def precision_recall_f1(y_true: Any, y_pred: Any) -> tuple[float, float, float]:
    """Precision, recall and F1 of binary predictions; NaN where undefined (0 / 0).

    Examples
    --------
    >>> precision_recall_f1([1, 1, 0, 0], [1, 0, 1, 0])
    (0.5, 0.5, 0.5)
    """
    tp, fp, fn, _ = confusion_counts(y_true, y_pred)
    return ratio(tp, tp + fp), ratio(tp, tp + fn), ratio(2 * tp, 2 * tp + fp + fn)


def ranked_counts(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct thresholds (descending) with true and false positives at ``score >= threshold``.

    Examples
    --------
    >>> t, tp, fp = ranked_counts([1, 0, 1], [0.9, 0.5, 0.5])
    >>> t.tolist(), tp.tolist(), fp.tolist()
    ([0.9, 0.5], [1, 2], [0, 1])
    """
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(scores, dtype=float)
    if s.size == 0:
        return np.empty(0), np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), s.size - 1]
    tps = np.cumsum(y, dtype=np.int64)[last]
    return s[last], tps, last + 1 - tps


def pr_curve(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(precision, recall, thresholds)`` at each distinct score, thresholds descending."""
    thresholds, tps, fps = ranked_counts(y_true, scores)
    positives = int(np.count_nonzero(np.asarray(y_true).astype(bool)))
    return ratio(tps, tps + fps), ratio(tps, positives), thresholds


def roc_points(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` starting at (0, 0), thresholds descending (first is +inf)."""
    thresholds, tps, fps = ranked_counts(y_true, scores)
    y = np.asarray(y_true).astype(bool)
    positives, negatives = int(np.count_nonzero(y)), int(y.size - np.count_nonzero(y))
    fpr = ratio(np.r_[0, fps], negatives)
    tpr = ratio(np.r_[0, tps], positives)
    return fpr, tpr, np.r_[np.inf, thresholds]


def average_precision(y_true: Any, scores: Any) -> float:
    """Average precision: sum over distinct thresholds of (R_n - R_n-1) * P_n (NaN if no positive).

    Examples
    --------
    >>> round(average_precision([1, 1, 0, 0, 1], [0.9, 0.8, 0.7, 0.6, 0.1]), 4)
    0.8667
    """
    precision, recall, _ = pr_curve(y_true, scores)
    return _area_under_pr(precision, recall)


def roc_auc(y_true: Any, scores: Any) -> float:
    """Area under the ROC curve, ties counted half (NaN unless both classes are present).

    Examples
    --------
    >>> round(roc_auc([1, 1, 0, 0, 1], [0.9, 0.8, 0.7, 0.6, 0.1]), 4)
    0.6667
    """
    fpr, tpr, _ = roc_points(y_true, scores)
    return _area_under_roc(fpr, tpr)


def _area_under_pr(precision: np.ndarray, recall: np.ndarray) -> float:
    if recall.size == 0 or np.isnan(recall[0]):
        return math.nan
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _area_under_roc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    if fpr.size < 2 or np.isnan(fpr[-1]) or np.isnan(tpr[-1]):
        return math.nan
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))  # trapezoids; numpy 1 and 2


@dataclass(frozen=True, eq=False)
class Curve:
    """A PR and ROC curve with its summary numbers."""

    name: str
    n_positive: int
    n_negative: int
    thresholds: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    fpr: np.ndarray
    tpr: np.ndarray
    average_precision: float
    roc_auc: float

    @classmethod
    def from_scores(cls, name: str, y_true: Any, scores: Any) -> Curve:
        """Both curves of ``scores`` against binary ``y_true``.

        Examples
        --------
        >>> Curve.from_scores("demo", [1, 0, 1], [0.9, 0.2, 0.4]).roc_auc
        1.0
        """
        y = np.asarray(y_true).astype(bool)
        precision, recall, thresholds = pr_curve(y, scores)
        fpr, tpr, _ = roc_points(y, scores)
        return cls(
            name,
            int(np.count_nonzero(y)),
            int(y.size - np.count_nonzero(y)),
            thresholds,
            precision,
            recall,
            fpr,
            tpr,
            _area_under_pr(precision, recall),
            _area_under_roc(fpr, tpr),
        )

    def to_dict(self) -> dict[str, Any]:
        """Summary and points; long curves are thinned to at most ``MAX_CURVE_POINTS``."""
        keep = _thin(self.thresholds.size)
        return {
            "positives": self.n_positive,
            "negatives": self.n_negative,
            "average_precision": self.average_precision,
            "roc_auc": self.roc_auc,
            "points": {
                "threshold": self.thresholds[keep],
                "precision": self.precision[keep],
                "recall": self.recall[keep],
                "fpr": self.fpr[1:][keep],
                "tpr": self.tpr[1:][keep],
            },
        }


def _thin(n: int) -> np.ndarray:
    if n <= MAX_CURVE_POINTS:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, MAX_CURVE_POINTS).round().astype(int))
