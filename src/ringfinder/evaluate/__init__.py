"""Evaluate a finished ``ringfinder detect`` run against analyst labels.

``evaluate_run`` reads a run directory (``members.parquet`` or ``members.csv``, ``manifest.json``)
and a labels table, and computes what a threshold costs: contributor-level precision, recall and
F1 at the configured threshold; ring-level recall (labelled rings matched with Jaccard >= 0.5)
and the purity of flagged rings; PR and ROC curves, average precision and ROC AUC; precision at k
for review queues; the threshold that maximises recall under a false-positive budget or a review
capacity; figures per decision band; and false positives broken down by segment and reason code.
``write_evaluation`` writes ``eval.json`` and a self-contained ``eval.html``.

The metrics are implemented with numpy (``metrics``); the tests check them against scikit-learn.
Conventions: a contributor in no ring has score 0 and is never flagged; a contributor without a
label is unknown and left out, unless ``unlabelled_benign`` is set.

Modules: ``inputs`` (run and labels), ``metrics``, ``thresholds``, ``rings``,
``false_positives``, ``core`` (``Evaluation``, ``evaluate_run``) and ``report`` (writing).
"""

from __future__ import annotations

from ringfinder.evaluate.core import Evaluation, evaluate_run
from ringfinder.evaluate.inputs import Labels, read_labels
from ringfinder.evaluate.metrics import (
    Curve,
    average_precision,
    confusion_counts,
    pr_curve,
    precision_recall_f1,
    ranked_counts,
    roc_auc,
    roc_points,
)
from ringfinder.evaluate.report import render_evaluation_html, write_evaluation

__all__ = [
    "Curve",
    "Evaluation",
    "Labels",
    "average_precision",
    "confusion_counts",
    "evaluate_run",
    "pr_curve",
    "precision_recall_f1",
    "ranked_counts",
    "read_labels",
    "render_evaluation_html",
    "roc_auc",
    "roc_points",
    "write_evaluation",
]
