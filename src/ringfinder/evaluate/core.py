"""Evaluate a finished run against labels: the ``Evaluation`` and ``evaluate_run``.

``evaluate_run`` joins the run's members to the labels in one evaluation frame (one row per
evaluated contributor) and gathers the figures: contributor-level counts and rates at the run's
threshold, ring figures, PR and ROC curves, precision at k for review queues, the threshold scan
and recommendations, figures per decision band and the false-positive breakdowns.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ringfinder import __version__
from ringfinder.decide import NO_ACTION
from ringfinder.errors import ConfigError
from ringfinder.evaluate.false_positives import fp_by_reason, fp_by_segment, fp_examples
from ringfinder.evaluate.inputs import (
    ACTION,
    FLAGGED,
    LABEL_RING,
    MEMBER_SCORE,
    MISSING,
    REASONS,
    RING_ID,
    RING_SCORE,
    Labels,
    Run,
    isin_ids,
    read_labels,
    read_run,
    segment_column,
)
from ringfinder.evaluate.metrics import Curve, confusion_counts, precision_recall_f1, ratio
from ringfinder.evaluate.report import format_threshold, format_value, write_evaluation
from ringfinder.evaluate.rings import ring_curve, ring_figures
from ringfinder.evaluate.thresholds import THRESHOLD_GRID, recommend_thresholds, scan_thresholds
from ringfinder.schema import CONTRIBUTOR

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Evaluation:
    """The figures of one evaluation; ``to_dict`` is ``eval.json``."""

    run_dir: str
    labels_source: str
    threshold: float
    options: dict[str, Any]
    population: dict[str, Any]
    contributors: dict[str, Any]
    rings: dict[str, Any]
    curves: dict[str, Curve]
    precision_at_k: list[dict[str, Any]]
    recommendations: list[dict[str, Any]]
    tradeoff: list[dict[str, Any]]
    bands: list[dict[str, Any]]
    fp_by_reason: list[dict[str, Any]]
    fp_by_segment: dict[str, list[dict[str, Any]]]
    fp_examples: list[dict[str, Any]]
    notes: list[str]
    score_samples: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data: floats rounded to 6 places, NaN as null, stable order."""
        return _clean(
            {
                "ringfinder_version": __version__,
                "run_dir": self.run_dir,
                "labels": self.labels_source,
                "threshold": self.threshold,
                "options": self.options,
                "population": self.population,
                "contributors": self.contributors,
                "rings": self.rings,
                "curves": {name: curve.to_dict() for name, curve in self.curves.items()},
                "precision_at_k": self.precision_at_k,
                "thresholds": {"recommended": self.recommendations, "table": self.tradeoff},
                "bands": self.bands,
                "false_positives": {
                    "by_reason": self.fp_by_reason,
                    "by_segment": self.fp_by_segment,
                    "examples": self.fp_examples,
                },
                "notes": self.notes,
            }
        )

    def summary_rows(self) -> list[tuple[str, str]]:
        """``(figure, value)`` rows for the CLI's summary table."""
        c, p, r = self.contributors, self.population, self.rings
        curve = self.curves["contributor_ring_score"]
        fmt = format_value
        rows = [
            ("threshold", format_threshold(self.threshold)),
            (
                "labelled contributors",
                f"{p['labelled_fraud']} fraud, {p['labelled_benign']} benign,"
                f" {p['labelled_unknown']} unknown",
            ),
            ("flagged in run", str(c["flagged_in_run"])),
            ("precision", fmt(c["precision"])),
            ("recall", fmt(c["recall"])),
            ("F1", fmt(c["f1"])),
            ("benign FP rate", fmt(c["fp_rate"], 4)),
            ("FP per 10k evaluated", fmt(c["fp_per_10k"], 1)),
            ("average precision", fmt(curve.average_precision)),
            ("ROC AUC", fmt(curve.roc_auc)),
        ]
        if r["labelled_rings"]:
            rows.append(
                (
                    "labelled rings found",
                    f"{r['labelled_rings_found']}/{r['labelled_rings']} ({fmt(r['found_rate'])})",
                )
            )
        rows.append(("flagged ring purity (mean)", fmt(r["mean_purity"])))
        rows += [(f"precision@{row['k']}", fmt(row["precision"])) for row in self.precision_at_k]
        for rec in self.recommendations:
            value = "none meets it"
            if rec["threshold"] is not None:
                value = (
                    f"{format_threshold(rec['threshold'])} (recall {fmt(rec['recall'])},"
                    f" precision {fmt(rec['precision'])}, {rec['flagged_in_run']} flagged)"
                )
            rows.append((f"threshold for {rec['constraint']}", value))
        return rows


def evaluate_run(
    run_dir: Path | str,
    labels: Path | str | pd.DataFrame,
    *,
    out_dir: Path | str | None = None,
    fp_budget_rate: float | None = None,
    fp_per_10k: float | None = None,
    review_capacity: int | None = None,
    unlabelled_benign: bool = False,
    ks: Sequence[int] = (10, 50, 100, 500),
    segment_columns: Sequence[str] | None = None,
) -> Evaluation:
    """Evaluate a ``ringfinder detect`` run directory against labels.

    Parameters
    ----------
    run_dir : the ``--out`` directory of ``ringfinder detect``.
    labels : file (CSV, Parquet, JSONL) or DataFrame with ``contributor_id`` and ``label``
        (fraud/benign, 1/0; empty = unknown), optional ``ring_id``, ``review_date`` and segments.
    out_dir : when given, ``eval.json`` and ``eval.html`` are written there.
    fp_budget_rate : largest acceptable share of benign contributors flagged.
    fp_per_10k : largest acceptable number of flagged benign contributors per 10,000 evaluated.
    review_capacity : most contributors (labelled or not) the run may flag.
    unlabelled_benign : count contributors without a label as benign instead of leaving them out.
    ks : review-queue sizes for precision at k.
    segment_columns : label columns to break false positives down by (default: all extra ones).

    Examples
    --------
    >>> ev = evaluate_run("out/", "labels.csv", fp_budget_rate=0.001)  # doctest: +SKIP
    >>> ev.contributors["precision"], ev.recommendations[0]["threshold"]  # doctest: +SKIP
    """
    _check_options(fp_budget_rate, fp_per_10k, review_capacity, ks)
    run_dir = Path(run_dir)
    notes: list[str] = []
    run = read_run(run_dir, notes)
    table = read_labels(labels, segment_columns=segment_columns, spellings=_spellings(run))
    if table.respelled:
        notes.append(
            f"{table.respelled} label ids matched the run's ids only ignoring case"
            " (the run had input.contributor_ignore_case)"
        )
    frame, population = _evaluation_frame(run, table, unlabelled_benign, notes)
    y = frame["y"].to_numpy() == 1.0
    scan = scan_thresholds(frame, run)
    recommendations = recommend_thresholds(
        scan,
        population,
        fp_budget_rate=fp_budget_rate,
        fp_per_10k=fp_per_10k,
        review_capacity=review_capacity,
    )
    for rec in recommendations:
        if rec["threshold"] is None:
            notes.append(f"no threshold keeps {rec['constraint']} with recall above 0")
    shown = set(THRESHOLD_GRID) | {run.threshold}
    shown |= {rec["threshold"] for rec in recommendations if rec["threshold"] is not None}
    member_y = run.members[CONTRIBUTOR].map(table.frame.set_index(CONTRIBUTOR)["y"])
    if unlabelled_benign:
        member_y = member_y.fillna(0.0)
    evaluation = Evaluation(
        run_dir=str(run_dir),
        labels_source=table.source,
        threshold=run.threshold,
        options={
            "unlabelled_benign": unlabelled_benign,
            "fp_budget_rate": fp_budget_rate,
            "fp_per_10k": fp_per_10k,
            "review_capacity": review_capacity,
            "ks": list(ks),
            "segment_columns": list(table.segments),
            "review_dates": list(table.review_range) if table.review_range else None,
        },
        population=population,
        contributors=_at_threshold(frame, run),
        rings=ring_figures(frame, run=run, labels=table, notes=notes),
        curves={
            "contributor_ring_score": Curve.from_scores(
                "contributors by ring score", y, frame[RING_SCORE].to_numpy()
            ),
            "contributor_member_score": Curve.from_scores(
                "contributors by member score", y, frame[MEMBER_SCORE].to_numpy()
            ),
            "ring_score": ring_curve(frame),
        },
        precision_at_k=_precision_at_k(run.members, member_y, int(y.sum()), ks),
        recommendations=recommendations,
        tradeoff=scan[scan["threshold"].isin(shown)].to_dict("records"),
        bands=_band_figures(run, member_y),
        fp_by_reason=fp_by_reason(frame),
        fp_by_segment={c: fp_by_segment(frame, c) for c in table.segments},
        fp_examples=fp_examples(frame, table.segments),
        notes=notes,
        score_samples={
            "fraud": run.members[RING_SCORE][member_y == 1.0].to_numpy(),
            "benign": run.members[RING_SCORE][member_y == 0.0].to_numpy(),
            "unlabelled": run.members[RING_SCORE][member_y.isna()].to_numpy(),
        },
    )
    for note in notes:
        logger.info("evaluate: %s", note)
    if out_dir is not None:
        write_evaluation(evaluation, out_dir)
    return evaluation


def _spellings(run: Run) -> pd.Series | None:
    """Lower-case id → the run's spelling, when the run took ids ignoring case."""
    if not run.ignore_case:
        return None
    ids = run.members[CONTRIBUTOR]
    spellings = pd.Series(ids.to_numpy(dtype=object), index=ids.str.lower().to_numpy())
    return spellings[~spellings.index.duplicated()]


def _check_options(
    fp_budget_rate: float | None,
    fp_per_10k: float | None,
    review_capacity: int | None,
    ks: Sequence[int],
) -> None:
    if fp_budget_rate is not None and not 0 <= fp_budget_rate <= 1:
        raise ConfigError(f"fp_budget_rate = {fp_budget_rate!r}: must be between 0 and 1")
    if fp_per_10k is not None and not fp_per_10k >= 0:
        raise ConfigError(f"fp_per_10k = {fp_per_10k!r}: must be >= 0")
    if review_capacity is not None and (isinstance(review_capacity, bool) or review_capacity < 0):
        raise ConfigError(f"review_capacity = {review_capacity!r}: must be >= 0")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ConfigError(f"ks: {k!r}: must be a positive integer")


def _evaluation_frame(
    run: Run, table: Labels, unlabelled_benign: bool, notes: list[str]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One row per evaluated contributor with its label, ring, score, flag and segments."""
    labels, members = table.frame, run.members
    if unlabelled_benign:
        ids = pd.Index(labels[CONTRIBUTOR]).union(pd.Index(members[CONTRIBUTOR]))
        frame = pd.DataFrame({CONTRIBUTOR: ids.to_numpy()})
        frame = frame.merge(labels, on=CONTRIBUTOR, how="left")
        frame["y"] = frame["y"].fillna(0.0)
        extra = (run.contributors or 0) - len(frame)
        if extra > 0:  # run contributors in no ring and not in the labels: benign, score 0
            filler = pd.DataFrame({CONTRIBUTOR: [""] * extra, "y": 0.0})
            frame = pd.concat([frame, filler], ignore_index=True)
        if run.contributors is None:
            notes.append("run size unknown: unlabelled contributors in no ring are not counted")
    else:
        frame = labels[labels["y"].notna()].reset_index(drop=True)
    indexed = members.set_index(CONTRIBUTOR)
    ids = frame[CONTRIBUTOR]
    frame[RING_ID] = ids.map(indexed[RING_ID]).astype(object).fillna("")
    frame["in_ring"] = frame[RING_ID] != ""
    for column in (RING_SCORE, MEMBER_SCORE):
        frame[column] = ids.map(indexed[column]).fillna(0.0).astype(float)
    frame[FLAGGED] = isin_ids(ids, members.loc[members[FLAGGED], CONTRIBUTOR])
    frame[REASONS] = ids.map(indexed[REASONS]).astype(object).fillna("")
    if ACTION in members:
        frame[ACTION] = ids.map(indexed[ACTION]).astype(object).fillna(NO_ACTION)
    for column in table.segments:
        frame[segment_column(column)] = frame[segment_column(column)].fillna(MISSING).astype(object)
    frame[LABEL_RING] = frame[LABEL_RING].fillna("").astype(object)
    frame["positive"] = frame["y"] == 1.0
    frame["negative"] = ~frame["positive"]
    frame["tp"] = frame["positive"] & frame[FLAGGED]
    frame["fp"] = frame["negative"] & frame[FLAGGED]
    y = labels["y"]
    population = {
        "labels_rows": table.rows,
        "labelled_fraud": int((y == 1.0).sum()),
        "labelled_benign": int((y == 0.0).sum()),
        "labelled_unknown": int(y.isna().sum()),
        "run_contributors": run.contributors,
        "run_members": len(members),
        "run_rings": int(members[RING_ID].nunique()),
        "evaluated": len(frame),
        "evaluated_positive": int(frame["positive"].sum()),
        "evaluated_negative": int(frame["negative"].sum()),
        "evaluated_in_rings": int(frame["in_ring"].sum()),
        "unlabelled_members": int(
            (~isin_ids(members[CONTRIBUTOR], labels.loc[y.notna(), CONTRIBUTOR])).sum()
        ),
    }
    return frame, population


def _at_threshold(frame: pd.DataFrame, run: Run) -> dict[str, Any]:
    """Contributor-level counts and rates of the run's own flags."""
    tp, fp, fn, tn = confusion_counts(frame["positive"], frame[FLAGGED])
    precision, recall, f1 = precision_recall_f1(frame["positive"], frame[FLAGGED])
    flagged_ids = run.members.loc[run.members[FLAGGED], CONTRIBUTOR]
    return {
        "threshold": run.threshold,
        "evaluated": len(frame),
        "flagged": tp + fp,
        "true_positives": tp,
        "false_positives": fp,
        "false_negatives": fn,
        "true_negatives": tn,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "fp_rate": ratio(fp, fp + tn),
        "fp_per_10k": ratio(fp * 10_000, len(frame)),
        "flagged_in_run": len(flagged_ids),
        "flagged_not_evaluated": int((~isin_ids(flagged_ids, frame[CONTRIBUTOR])).sum()),
        "flagged_rings": int(run.members.loc[run.members[FLAGGED], RING_ID].nunique()),
    }


def _precision_at_k(
    members: pd.DataFrame, member_y: pd.Series, positives: int, ks: Sequence[int]
) -> list[dict[str, Any]]:
    """Precision and recall of the first k members of the review queue.

    The queue orders members by ring score, then member score, both high first; then by id.
    """
    queue = members.sort_values(
        [RING_SCORE, MEMBER_SCORE, CONTRIBUTOR], ascending=[False, False, True], kind="stable"
    )
    # float even with no members (an empty reindex is an object array, which isnan refuses)
    ranked = member_y.reindex(queue.index).to_numpy(dtype=float)
    known = np.cumsum(~np.isnan(ranked))
    fraud = np.cumsum(ranked == 1.0)
    rows = []
    for k in sorted(set(int(k) for k in ks)):
        size = min(k, ranked.size)
        n_known = int(known[size - 1]) if size else 0
        n_fraud = int(fraud[size - 1]) if size else 0
        rows.append(
            {
                "k": k,
                "queue": size,
                "labelled": n_known,
                "fraud": n_fraud,
                "precision": ratio(n_fraud, n_known),
                "recall": ratio(n_fraud, positives),
            }
        )
    return rows


def _band_figures(run: Run, member_y: pd.Series) -> list[dict[str, Any]]:
    """Members, flags and labels per action, in band order then the rest, ``none`` last."""
    members = run.members
    if ACTION not in members:
        return []
    frame = pd.DataFrame(
        {
            ACTION: members[ACTION],
            FLAGGED: members[FLAGGED],
            "labelled": member_y.notna(),
            "fraud": member_y == 1.0,
            "benign": member_y == 0.0,
        }
    )
    stats = frame.groupby(ACTION).agg(
        members=(FLAGGED, "size"),
        flagged=(FLAGGED, "sum"),
        labelled=("labelled", "sum"),
        fraud=("fraud", "sum"),
        benign=("benign", "sum"),
    )
    order = list(dict.fromkeys(b.action for b in run.bands or ()))
    order += sorted(a for a in stats.index if a not in order and a != NO_ACTION) + [NO_ACTION]
    stats = stats.reindex([a for a in order if a in stats.index])
    stats["precision"] = ratio(stats["fraud"], stats["labelled"])
    return stats.rename_axis(ACTION).reset_index().to_dict("records")


def _clean(value: Any) -> Any:
    """JSON-ready: numpy to Python, floats rounded to 6 places, NaN and inf to null."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_clean(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        if not math.isfinite(number):
            return None
        return round(number, 6)
    if value is None or isinstance(value, str):
        return value
    if value is pd.NA or value is pd.NaT:
        return None
    return str(value)
