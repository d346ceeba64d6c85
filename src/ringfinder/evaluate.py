"""Evaluate a finished ``ringfinder detect`` run against analyst labels.

``evaluate_run`` reads a run directory (``members.parquet`` or ``members.csv``, ``manifest.json``)
and a labels table, and computes what a threshold costs: contributor-level precision, recall and
F1 at the configured threshold; ring-level recall (labelled rings matched with Jaccard >= 0.5)
and the purity of flagged rings; PR and ROC curves, average precision and ROC AUC; precision at k
for review queues; the threshold that maximises recall under a false-positive budget or a review
capacity; figures per decision band; and false positives broken down by segment and reason code.
``write_evaluation`` writes ``eval.json`` and a self-contained ``eval.html``.

The metrics are implemented here with numpy; the tests check them against scikit-learn.
Conventions: a contributor in no ring has score 0 and is never flagged; a contributor without a
label is unknown and left out, unless ``unlabelled_benign`` is set.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from jinja2 import Environment
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ringfinder import __version__
from ringfinder.config import ScoreConfig
from ringfinder.errors import ConfigError, InputError
from ringfinder.schema import CONTRIBUTOR, Reason

logger = logging.getLogger(__name__)

# Member columns read here (listed in schema.MEMBERS_COLUMNS); ACTION is added by decision bands.
RING_ID = "ring_id"
RING_SCORE = "ring_score"
MEMBER_SCORE = "member_score"
FLAGGED = "flagged"
REASONS = "reasons"
ACTION = "action"
NO_ACTION = "none"
LABEL = "label"
LABEL_RING = "label_ring_id"  # the labels' own ring_id, renamed so it never meets the run's
REVIEW_DATE_COLUMNS = ("review_date", "reviewed_at", "reviewed_on", "label_date")

JACCARD_FOUND = 0.5
THRESHOLD_GRID = tuple(round(0.05 * i, 2) for i in range(21))
MAX_SEGMENT_VALUES = 50
N_EXAMPLES = 5
MAX_FP_EXAMPLES = 25
MAX_CURVE_POINTS = 500
MISSING = "(missing)"
OTHER = "(other)"

_FRAUD = frozenset({"fraud", "1", "1.0", "true", "yes", "bad"})
_BENIGN = frozenset({"benign", "0", "0.0", "false", "no", "good", "honest", "legit"})
_UNKNOWN = frozenset({"", "unknown", "nan", "none", "null", "na", "n/a", "?"})
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


# --------------------------------------------------------------------------- decision bands
class Band(BaseModel):
    """One decision band: members whose score reaches ``min_score`` get ``action``.

    Bands are listed in order under ``[score] bands`` and the first match wins. With
    ``reasons_any`` the band also needs one of those reason codes on the member's row.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=40)
    min_score: float = Field(ge=0, le=1)
    score: Literal["ring_score", "member_score"] = "ring_score"
    reasons_any: list[Reason] = Field(default_factory=list)


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
    action = pd.Series(NO_ACTION, index=members.index, name=ACTION, dtype=object)
    open_ = pd.Series(True, index=members.index)
    reasons = members[REASONS].fillna("").astype(str) if REASONS in members else None
    for band in bands:
        score = pd.to_numeric(members[band.score], errors="coerce").fillna(0.0)
        match = open_ & (score >= band.min_score)
        if band.reasons_any:
            codes = "|".join(re.escape(str(code)) for code in band.reasons_any)
            has = (
                reasons.str.contains(rf"(?:^|;)\s*(?:{codes})\s*(?:;|$)", regex=True)
                if reasons is not None
                else pd.Series(False, index=members.index)
            )
            match &= has
        action[match] = band.action
        open_ &= ~match
    return action


# --------------------------------------------------------------------------- metrics (numpy)
def _ratio(num: Any, den: Any) -> Any:
    """num / den, NaN where den is 0, without warnings; scalars stay scalars."""
    n = np.asarray(num, dtype=float)
    d = np.asarray(den, dtype=float)
    out = np.divide(n, d, out=np.full(np.broadcast(n, d).shape, np.nan), where=d != 0)
    return float(out) if out.ndim == 0 else out


def confusion_counts(y_true: Any, y_pred: Any) -> tuple[int, int, int, int]:
    """``(tp, fp, fn, tn)`` for binary truths and predictions."""
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
    return _ratio(tp, tp + fp), _ratio(tp, tp + fn), _ratio(2 * tp, 2 * tp + fp + fn)


def ranked_counts(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct thresholds (descending) with true and false positives at ``score >= threshold``."""
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
    return _ratio(tps, tps + fps), _ratio(tps, positives), thresholds


def roc_points(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` starting at (0, 0), thresholds descending (first is +inf)."""
    thresholds, tps, fps = ranked_counts(y_true, scores)
    y = np.asarray(y_true).astype(bool)
    positives, negatives = int(np.count_nonzero(y)), int(y.size - np.count_nonzero(y))
    fpr = _ratio(np.r_[0, fps], negatives)
    tpr = _ratio(np.r_[0, tps], positives)
    return fpr, tpr, np.r_[np.inf, thresholds]


def average_precision(y_true: Any, scores: Any) -> float:
    """Average precision: sum over distinct thresholds of (R_n - R_n-1) * P_n (NaN if no positive).

    Examples
    --------
    >>> round(average_precision([1, 1, 0, 0, 1], [0.9, 0.8, 0.7, 0.6, 0.1]), 4)
    0.8667
    """
    precision, recall, _ = pr_curve(y_true, scores)
    if recall.size == 0 or np.isnan(recall[0]):
        return math.nan
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_auc(y_true: Any, scores: Any) -> float:
    """Area under the ROC curve, ties counted half (NaN unless both classes are present).

    Examples
    --------
    >>> round(roc_auc([1, 1, 0, 0, 1], [0.9, 0.8, 0.7, 0.6, 0.1]), 4)
    0.6667
    """
    fpr, tpr, _ = roc_points(y_true, scores)
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
            average_precision(y, scores),
            roc_auc(y, scores),
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


# --------------------------------------------------------------------------- reading inputs
@dataclass(frozen=True)
class _Run:
    members: pd.DataFrame
    threshold: float
    contributors: int | None
    bands: tuple[Band, ...] | None


@dataclass(frozen=True)
class Labels:
    """Checked labels: one row per contributor.

    ``frame`` holds ``contributor_id``, ``y`` (1.0 fraud, 0.0 benign, NaN unknown),
    ``label_ring_id`` ('' when none) and one ``segment:<name>`` text column per segment.
    """

    frame: pd.DataFrame
    source: str
    segments: tuple[str, ...]
    review_range: tuple[str, str] | None
    rows: int


def _unescape_formula(values: pd.Series) -> pd.Series:
    """Undo the spreadsheet guard of the CSV export: ``'=x`` back to ``=x``."""
    guarded = values.str.startswith("'") & values.str[1:2].isin(_FORMULA_START)
    return values.where(~guarded, values.str[1:])


def _as_text(values: pd.Series) -> pd.Series:
    return values.astype(object).where(values.notna(), "").astype(str)


def _isin(values: pd.Series, among: pd.Series) -> np.ndarray:
    """``values.isin(among)`` on object arrays: a hash table, where pandas' arrow strings loop."""
    return (
        pd.Series(values.to_numpy(dtype=object), dtype=object)
        .isin(among.to_numpy(dtype=object))
        .to_numpy()
    )


def _read_members(run_dir: Path) -> pd.DataFrame:
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: run directory not found")
    parquet, csv = run_dir / "members.parquet", run_dir / "members.csv"
    try:
        if parquet.is_file():
            path, members = parquet, pd.read_parquet(parquet)
        elif csv.is_file():
            path = csv
            members = pd.read_csv(csv, dtype=str, keep_default_na=False)
            members = members.apply(_unescape_formula)
        else:
            raise InputError(
                f"{run_dir}: no members.parquet or members.csv (not a `ringfinder detect` output?)"
            )
    except (OSError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"{run_dir}: cannot read members: {exc}") from None
    required = (CONTRIBUTOR, RING_ID, RING_SCORE, FLAGGED, MEMBER_SCORE, REASONS)
    for column in required:
        if column not in members.columns:
            raise InputError(f"{path}: missing column {column!r}")
    out = pd.DataFrame(
        {
            CONTRIBUTOR: _as_text(members[CONTRIBUTOR]),
            RING_ID: _as_text(members[RING_ID]),
            REASONS: _as_text(members[REASONS]),
        }
    )
    for column in (RING_SCORE, MEMBER_SCORE):
        values = pd.to_numeric(members[column], errors="coerce")
        if values.isna().any():
            row = int(np.flatnonzero(values.isna().to_numpy())[0]) + 1
            raise InputError(f"{path} row {row}: {column} is missing or not a number")
        out[column] = values.astype(float).to_numpy()
    flags = _as_text(members[FLAGGED]).str.strip().str.lower()
    known = flags.isin(["true", "false", "1", "0"])
    if not known.all():
        row = int(np.flatnonzero(~known.to_numpy())[0]) + 1
        raise InputError(f"{path} row {row}: flagged must be true or false")
    out[FLAGGED] = flags.isin(["true", "1"]).to_numpy()
    if ACTION in members.columns:
        out[ACTION] = _as_text(members[ACTION]).replace("", NO_ACTION)
    duplicated = out[CONTRIBUTOR].duplicated()
    if duplicated.any():
        who = out[CONTRIBUTOR][duplicated].iloc[0]
        raise InputError(f"{path}: contributor {who!r} appears in more than one row")
    return out


def _read_run(run_dir: Path, notes: list[str]) -> _Run:
    members = _read_members(run_dir)
    path = run_dir / "manifest.json"
    manifest: dict[str, Any] = {}
    if path.is_file():
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{path}: cannot read manifest: {exc}") from None
        if not isinstance(manifest, dict):
            raise InputError(f"{path}: expected a JSON object")
    else:
        notes.append(f"{path.name} not found: default threshold, no run population count")
    config = manifest.get("config") or {}
    score = config.get("score") if isinstance(config, dict) else None
    score = score if isinstance(score, dict) else {}
    threshold = score.get("threshold", ScoreConfig().threshold)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise InputError(f"{path}: config.score.threshold = {threshold!r}: expected a number")
    contributors = manifest.get("contributors")
    if contributors is not None and (
        isinstance(contributors, bool) or not isinstance(contributors, int) or contributors < 0
    ):
        raise InputError(f"{path}: contributors = {contributors!r}: expected a count")
    bands = None
    if score.get("bands") is not None:
        try:
            bands = tuple(TypeAdapter(list[Band]).validate_python(score["bands"]))
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(p) for p in ("config", "score", "bands", *first["loc"]))
            raise InputError(f"{path}: {key}: {first['msg']}") from None
    if ACTION not in members.columns and bands:
        members[ACTION] = assign_actions(members, bands).to_numpy()
        notes.append("members have no action column: actions assigned from the run's bands")
    flagged_min = members.loc[members[FLAGGED], RING_SCORE].min()
    unflagged_max = members.loc[~members[FLAGGED], RING_SCORE].max()
    if (flagged_min < threshold) or (unflagged_max >= threshold):
        notes.append("the flagged column disagrees with ring_score >= threshold for some members")
    return _Run(members, float(threshold), contributors, bands)


def _read_table(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if not path.is_file():
        raise InputError(f"{path}: labels file not found")
    try:
        if suffix in (".csv", ".tsv", ".txt"):
            sep = "\t" if suffix == ".tsv" else ","
            return pd.read_csv(path, dtype=str, keep_default_na=False, sep=sep)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".jsonl", ".ndjson", ".json"):
            return pd.read_json(path, lines=suffix != ".json", dtype=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read labels: {exc}") from None
    raise InputError(
        f"{path}: unsupported labels file type {suffix!r} (use .csv, .parquet, .jsonl)"
    )


def read_labels(
    labels: Path | str | pd.DataFrame, *, segment_columns: Sequence[str] | None = None
) -> Labels:
    """Read and check a labels table: one verdict per contributor (the latest when dated)."""
    if isinstance(labels, pd.DataFrame):
        source, raw = "labels", labels
    else:
        source, raw = str(labels), _read_table(Path(labels))
    raw = raw.rename(columns=lambda c: str(c).strip())
    for column in (CONTRIBUTOR, LABEL):
        if column not in raw.columns:
            raise InputError(
                f"{source}: missing column {column!r} (labels need contributor_id and label:"
                " fraud/benign or 1/0)"
            )
    review = next((c for c in REVIEW_DATE_COLUMNS if c in raw.columns), None)
    known_cols = {CONTRIBUTOR, LABEL, RING_ID, review}
    if segment_columns is None:
        segments = tuple(c for c in raw.columns if c not in known_cols)
    else:
        segments = tuple(segment_columns)
        for column in segments:
            if column not in raw.columns:
                raise InputError(f"{source}: missing segment column {column!r}")
    frame = pd.DataFrame({CONTRIBUTOR: _as_text(raw[CONTRIBUTOR]).str.strip().to_numpy()})
    if (frame[CONTRIBUTOR] == "").any():
        row = int(np.flatnonzero((frame[CONTRIBUTOR] == "").to_numpy())[0]) + 1
        raise InputError(f"{source} row {row}: empty contributor_id")
    text = _as_text(raw[LABEL]).str.strip().str.lower().to_numpy()
    is_fraud, is_benign = np.isin(text, list(_FRAUD)), np.isin(text, list(_BENIGN))
    bad = ~(is_fraud | is_benign | np.isin(text, list(_UNKNOWN)))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{source} row {row + 1}: label {raw[LABEL].iloc[row]!r} is not fraud/benign, 1/0 or"
            " true/false (empty means unknown)"
        )
    frame["y"] = np.where(is_fraud, 1.0, np.where(is_benign, 0.0, np.nan))
    frame[LABEL_RING] = _as_text(raw[RING_ID]).str.strip().to_numpy() if RING_ID in raw else ""
    for column in segments:
        frame[_segment(column)] = _segment_values(raw[column]).to_numpy()
    review_range = None
    if review is not None:
        when = pd.to_datetime(
            _as_text(raw[review]).to_numpy(), errors="coerce", utc=True, format="ISO8601"
        )
        frame["_when"] = when
        if when.notna().any():
            review_range = (when.min().isoformat(), when.max().isoformat())
        frame = frame.sort_values("_when", kind="stable", na_position="first")
    known = frame[frame["y"].notna()]
    if review is None:
        verdicts = known.groupby(CONTRIBUTOR)["y"].nunique()
        conflicting = verdicts[verdicts > 1]
        if len(conflicting):
            raise InputError(
                f"{source}: contributor {conflicting.index[0]!r} has conflicting labels (add a"
                " review_date column so the latest verdict wins)"
            )
    known = known.drop_duplicates(CONTRIBUTOR, keep="last")
    unknown = frame[frame["y"].isna() & ~_isin(frame[CONTRIBUTOR], known[CONTRIBUTOR])]
    unknown = unknown.drop_duplicates(CONTRIBUTOR, keep="last")
    frame = pd.concat([known, unknown]).drop(columns="_when", errors="ignore")
    frame = frame.sort_values(CONTRIBUTOR, kind="stable").reset_index(drop=True)
    return Labels(frame, source, segments, review_range, len(raw))


def _segment(name: str) -> str:
    """The frame column of a segment, kept apart from ringfinder's own column names."""
    return f"segment:{name}"


def _segment_values(values: pd.Series) -> pd.Series:
    """Segment values as text; a numeric column with many values is cut into quartiles."""
    text = _as_text(values).str.strip()
    numbers = pd.to_numeric(text.where(text != ""), errors="coerce")
    present = text != ""
    if present.any() and numbers[present].notna().all() and numbers.nunique() > 12:
        bins = pd.qcut(numbers, 4, duplicates="drop")
        labels = bins.map(lambda b: f"{b.left:g} to {b.right:g}").astype(object)
        text = labels.where(present, "")
    return text.replace("", MISSING)


# --------------------------------------------------------------------------- evaluation
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
        rows = [
            ("threshold", _fmt(self.threshold)),
            (
                "labelled contributors",
                f"{p['labelled_fraud']} fraud, {p['labelled_benign']} benign,"
                f" {p['labelled_unknown']} unknown",
            ),
            ("flagged in run", str(c["flagged_in_run"])),
            ("precision", _fmt(c["precision"])),
            ("recall", _fmt(c["recall"])),
            ("F1", _fmt(c["f1"])),
            ("benign FP rate", _fmt(c["fp_rate"], 4)),
            ("FP per 10k evaluated", _fmt(c["fp_per_10k"], 1)),
            ("average precision", _fmt(curve.average_precision)),
            ("ROC AUC", _fmt(curve.roc_auc)),
        ]
        if r["labelled_rings"]:
            rows.append(
                (
                    "labelled rings found",
                    f"{r['labelled_rings_found']}/{r['labelled_rings']} ({_fmt(r['found_rate'])})",
                )
            )
        rows.append(("flagged ring purity (mean)", _fmt(r["mean_purity"])))
        rows += [(f"precision@{row['k']}", _fmt(row["precision"])) for row in self.precision_at_k]
        for rec in self.recommendations:
            value = "none meets it"
            if rec["threshold"] is not None:
                value = (
                    f"{_fmt(rec['threshold'])} (recall {_fmt(rec['recall'])},"
                    f" precision {_fmt(rec['precision'])}, {rec['flagged_in_run']} flagged)"
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
    run = _read_run(run_dir, notes)
    table = read_labels(labels, segment_columns=segment_columns)
    frame, population = _evaluation_frame(run, table, unlabelled_benign, notes)
    y = frame["y"].to_numpy() == 1.0
    contributors = _at_threshold(frame, run)
    scan = _scan_thresholds(frame, run)
    recommendations = _recommend(scan, population, fp_budget_rate, fp_per_10k, review_capacity)
    for rec in recommendations:
        if rec["threshold"] is None:
            notes.append(f"no threshold keeps {rec['constraint']} with recall above 0")
    shown = set(THRESHOLD_GRID) | {run.threshold}
    shown |= {rec["threshold"] for rec in recommendations if rec["threshold"] is not None}
    tradeoff = scan[scan["threshold"].isin(shown)].to_dict("records")
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
        contributors=contributors,
        rings=_ring_figures(run, table, frame, notes),
        curves={
            "contributor_ring_score": Curve.from_scores(
                "contributors by ring score", y, frame[RING_SCORE].to_numpy()
            ),
            "contributor_member_score": Curve.from_scores(
                "contributors by member score", y, frame[MEMBER_SCORE].to_numpy()
            ),
            "ring_score": _ring_curve(frame),
        },
        precision_at_k=_precision_at_k(run.members, member_y, int(y.sum()), ks),
        recommendations=recommendations,
        tradeoff=tradeoff,
        bands=_band_figures(run, member_y),
        fp_by_reason=_reason_breakdown(frame),
        fp_by_segment={c: _breakdown(frame, _segment(c), cap=True) for c in table.segments},
        fp_examples=_fp_examples(frame, table.segments),
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
    run: _Run, table: Labels, unlabelled_benign: bool, notes: list[str]
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
    frame[RING_ID] = ids.map(indexed[RING_ID]).fillna("").astype(object)
    frame["in_ring"] = frame[RING_ID] != ""
    for column in (RING_SCORE, MEMBER_SCORE):
        frame[column] = ids.map(indexed[column]).fillna(0.0).astype(float)
    frame[FLAGGED] = _isin(ids, members.loc[members[FLAGGED], CONTRIBUTOR])
    frame[REASONS] = ids.map(indexed[REASONS]).fillna("").astype(object)
    if ACTION in members:
        frame[ACTION] = ids.map(indexed[ACTION]).fillna(NO_ACTION).astype(object)
    for column in table.segments:
        frame[_segment(column)] = frame[_segment(column)].fillna(MISSING).astype(object)
    frame[LABEL_RING] = frame[LABEL_RING].fillna("").astype(object)
    frame["positive"] = frame["y"] == 1.0
    frame["negative"] = ~frame["positive"]
    frame["tp"] = frame["positive"] & frame[FLAGGED]
    frame["fp"] = ~frame["positive"] & frame[FLAGGED]
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
        "evaluated_negative": int((~frame["positive"]).sum()),
        "evaluated_in_rings": int(frame["in_ring"].sum()),
        "unlabelled_members": int(
            (~_isin(members[CONTRIBUTOR], labels.loc[y.notna(), CONTRIBUTOR])).sum()
        ),
    }
    return frame, population


def _at_threshold(frame: pd.DataFrame, run: _Run) -> dict[str, Any]:
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
        "fp_rate": _ratio(fp, fp + tn),
        "fp_per_10k": _ratio(fp * 10_000, len(frame)),
        "flagged_in_run": len(flagged_ids),
        "flagged_not_evaluated": int((~_isin(flagged_ids, frame[CONTRIBUTOR])).sum()),
        "flagged_rings": int(run.members.loc[run.members[FLAGGED], RING_ID].nunique()),
    }


def _count_at_least(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    ordered = np.sort(values)
    return ordered.size - np.searchsorted(ordered, thresholds, side="left")


def _scan_thresholds(frame: pd.DataFrame, run: _Run) -> pd.DataFrame:
    """Counts and rates when flagging ring members with ``ring_score >= t``, for many t."""
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
            "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, positives),
            "f1": _ratio(2 * tp, tp + fp + positives),
            "fp_rate": _ratio(fp, negatives),
            "fp_per_10k": _ratio(fp * 10_000, len(frame)),
        }
    )


def _recommend(
    scan: pd.DataFrame,
    population: dict[str, Any],
    fp_budget_rate: float | None,
    fp_per_10k: float | None,
    review_capacity: int | None,
) -> list[dict[str, Any]]:
    """Per constraint (and all together), the threshold with the highest recall that keeps it.

    Among thresholds with equal recall the highest wins: it flags the fewest contributors.
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


def _ring_curve(frame: pd.DataFrame) -> Curve:
    """Rings with a labelled member; a ring is positive when most labelled members are fraud."""
    in_ring = frame[frame["in_ring"]]
    rings = in_ring.groupby(RING_ID).agg(score=(RING_SCORE, "max"), fraud=("positive", "mean"))
    return Curve.from_scores("rings by ring score", rings["fraud"] >= 0.5, rings["score"])


def _ring_figures(
    run: _Run, table: Labels, frame: pd.DataFrame, notes: list[str]
) -> dict[str, Any]:
    members = run.members
    sizes = members.groupby(RING_ID).size()
    ring_flagged = members.groupby(RING_ID)[FLAGGED].any()
    labelled = frame[frame["in_ring"] & frame[FLAGGED]]
    purity = labelled.groupby(RING_ID).agg(labelled=("positive", "size"), fraud=("positive", "sum"))
    purity["purity"] = purity["fraud"] / purity["labelled"]
    purity["size"] = sizes.reindex(purity.index).to_numpy()
    purity["ring_score"] = members.groupby(RING_ID)[RING_SCORE].max().reindex(purity.index)
    figures: dict[str, Any] = {
        "rings_in_run": len(sizes),
        "flagged_rings": int(ring_flagged.sum()),
        "flagged_rings_with_labels": len(purity),
        "mean_purity": float(purity["purity"].mean()) if len(purity) else math.nan,
        "pooled_purity": _ratio(purity["fraud"].sum(), purity["labelled"].sum()),
        "pure_rings": int((purity["purity"] == 1.0).sum()),
        "labelled_rings": None,
        "labelled_rings_found": None,
        "found_rate": None,
        "labelled_rings_detected_any": None,
        "flagged_rings_matching": None,
        "labelled_ring_matches": [],
        "flagged_ring_purity": purity.reset_index()[
            [RING_ID, "size", "ring_score", "labelled", "fraud", "purity"]
        ].to_dict("records"),
    }
    truth = table.frame[(table.frame["y"] == 1.0) & (table.frame[LABEL_RING] != "")]
    if truth.empty:
        notes.append("labels have no ring_id for fraud contributors: ring recall not computed")
        return figures
    best_any = _best_matches(truth, members, sizes)
    best_flagged = _best_matches(truth, members[members[FLAGGED]], sizes)
    table_rows = best_any[["size"]].join(best_flagged[["ring", "jaccard"]])
    table_rows["found"] = table_rows["jaccard"] >= JACCARD_FOUND
    found = table_rows[table_rows["found"]]
    figures.update(
        labelled_rings=len(table_rows),
        labelled_rings_found=int(table_rows["found"].sum()),
        found_rate=float(table_rows["found"].mean()),
        labelled_rings_detected_any=int((best_any["jaccard"] >= JACCARD_FOUND).sum()),
        flagged_rings_matching=int(found["ring"].nunique()),
        labelled_ring_matches=table_rows.rename_axis("labelled_ring")
        .reset_index()
        .rename(columns={"ring": "best_flagged_ring"})
        .to_dict("records"),
    )
    return figures


def _best_matches(truth: pd.DataFrame, members: pd.DataFrame, sizes: pd.Series) -> pd.DataFrame:
    """Each labelled ring's best run ring by Jaccard similarity (ties: the lowest ring id)."""
    truth_size = truth.groupby(LABEL_RING).size()
    pairs = truth[[CONTRIBUTOR, LABEL_RING]].merge(members[[CONTRIBUTOR, RING_ID]], on=CONTRIBUTOR)
    inter = pairs.groupby([LABEL_RING, RING_ID]).size().rename("inter").reset_index()
    union = (
        truth_size.reindex(inter[LABEL_RING]).to_numpy()
        + sizes.reindex(inter[RING_ID]).to_numpy()
        - inter["inter"].to_numpy()
    )
    inter["jaccard"] = inter["inter"] / union
    best = inter.sort_values(["jaccard", RING_ID], ascending=[False, True], kind="stable")
    best = best.drop_duplicates(LABEL_RING).set_index(LABEL_RING)
    out = pd.DataFrame({"size": truth_size})
    out["ring"] = best[RING_ID].reindex(out.index)
    out["jaccard"] = best["jaccard"].reindex(out.index).fillna(0.0)
    return out.sort_index()


def _queue(members: pd.DataFrame) -> pd.DataFrame:
    """Members in review order: ring score, then member score, both high first; then id."""
    return members.sort_values(
        [RING_SCORE, MEMBER_SCORE, CONTRIBUTOR], ascending=[False, False, True], kind="stable"
    )


def _precision_at_k(
    members: pd.DataFrame, member_y: pd.Series, positives: int, ks: Sequence[int]
) -> list[dict[str, Any]]:
    ranked = member_y.reindex(_queue(members).index).to_numpy()
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
                "precision": _ratio(n_fraud, n_known),
                "recall": _ratio(n_fraud, positives),
            }
        )
    return rows


def _band_figures(run: _Run, member_y: pd.Series) -> list[dict[str, Any]]:
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
    stats["precision"] = _ratio(stats["fraud"], stats["labelled"])
    return stats.rename_axis(ACTION).reset_index().to_dict("records")


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
    stats["fp_rate"] = _ratio(stats["false_positives"], stats["benign"])
    stats["precision"] = _ratio(stats["true_positives"], stats["flagged"])
    stats["fp_share"] = _ratio(stats["false_positives"], total_fp)
    wrong = frame[frame["fp"]].sort_values(
        [RING_SCORE, CONTRIBUTOR], ascending=[False, True], kind="stable"
    )
    examples = wrong.groupby(key, sort=False)[CONTRIBUTOR].agg(lambda s: list(s[:N_EXAMPLES]))
    stats["examples"] = [examples.get(v, []) for v in stats.index]
    return stats.rename_axis("value").reset_index().to_dict("records")


def _reason_breakdown(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The breakdown by reason code over members; a member counts once per reason it carries."""
    in_ring = frame[frame["in_ring"] & (frame[CONTRIBUTOR] != "")]
    exploded = in_ring.assign(reason=in_ring[REASONS].str.split(";")).explode("reason")
    exploded["reason"] = exploded["reason"].fillna("").astype(str).str.strip()
    exploded = exploded[exploded["reason"] != ""]
    rows = _breakdown(exploded, "reason")
    total_fp = int(frame["fp"].sum())
    for row in rows:  # share of all false positives, not only those with a reason
        row["fp_share"] = _ratio(row["false_positives"], total_fp)
        row["reason"] = row.pop("value")
    return rows


def _fp_examples(frame: pd.DataFrame, segments: Sequence[str]) -> list[dict[str, Any]]:
    wrong = frame[frame["fp"]].sort_values(
        [RING_SCORE, MEMBER_SCORE, CONTRIBUTOR], ascending=[False, False, True], kind="stable"
    )
    columns = [CONTRIBUTOR, RING_ID, RING_SCORE, MEMBER_SCORE, REASONS]
    columns += [ACTION] if ACTION in frame else []
    rows = wrong[columns].head(MAX_FP_EXAMPLES).to_dict("records")
    for row, (_, source) in zip(rows, wrong.head(MAX_FP_EXAMPLES).iterrows(), strict=True):
        row["segments"] = {c: source[_segment(c)] for c in segments}
    return rows


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


def _fmt(value: Any, places: int = 3) -> str:
    if value is None or (isinstance(value, float | np.floating) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return f"{float(value):.{places}f}"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


# --------------------------------------------------------------------------- writing
def write_evaluation(evaluation: Evaluation, out_dir: Path | str) -> dict[str, Path]:
    """Write ``eval.json`` and the self-contained ``eval.html`` into ``out_dir``.

    Returns the written paths by name. Same evaluation, same bytes.
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        paths = {"json": out / "eval.json", "html": out / "eval.html"}
        text = json.dumps(evaluation.to_dict(), indent=2, ensure_ascii=False, allow_nan=False)
        paths["json"].write_text(text + "\n", encoding="utf-8")
        paths["html"].write_text(render_evaluation_html(evaluation), encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{out}: cannot write evaluation: {exc}") from None
    return paths


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figures(evaluation: Evaluation) -> list[tuple[str, str]]:
    """``(caption, data URI)`` for each plot, drawn with matplotlib's Agg canvas."""
    from matplotlib.figure import Figure  # a Figure without pyplot: no global state, no display

    out = []
    fig = Figure(figsize=(6.4, 4.2), dpi=100)
    pr_ax, roc_ax = fig.subplots(1, 2)
    drawn = False
    for curve in evaluation.curves.values():
        if curve.n_positive and curve.n_negative:
            pr_ax.step(np.r_[0, curve.recall], np.r_[1, curve.precision], where="pre")
            roc_ax.plot(curve.fpr, curve.tpr, label=f"{curve.name}")
            drawn = True
    point = (evaluation.contributors["recall"], evaluation.contributors["precision"])
    if all(v is not None and math.isfinite(v) for v in point):
        pr_ax.plot([point[0]], [point[1]], "ko")
    pr_ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02), title="PR")
    roc_ax.plot([0, 1], [0, 1], color="0.7", linestyle=":")
    roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    if drawn:
        fig.legend(loc="lower center", ncols=3, fontsize=7)
    fig.subplots_adjust(bottom=0.25, wspace=0.35)
    out.append(("PR and ROC curves (dot: the configured threshold)", _png(fig)))

    fig = Figure(figsize=(6.4, 3.6), dpi=100)
    ax = fig.subplots()
    bins = [round(0.05 * i, 2) for i in range(21)]
    shown = [(k, v) for k, v in evaluation.score_samples.items() if v.size]
    for (name, values), style in zip(shown, ("-", "--", ":"), strict=False):
        label = f"{name} ({values.size})"
        ax.hist(values, bins=bins, histtype="step", linewidth=1.8, linestyle=style, label=label)
    ax.axvline(evaluation.threshold, color="k", linestyle="--", linewidth=1)
    ax.set(xlabel="ring score", ylabel="ring members", title="Ring scores by label")
    if shown:
        ax.legend(fontsize=8)
    fig.tight_layout()
    out.append(("Ring score of ring members by label (dashed: threshold)", _png(fig)))

    fig = Figure(figsize=(6.4, 3.6), dpi=100)
    ax = fig.subplots()
    rows = [r for r in evaluation.tradeoff if r["threshold"] in THRESHOLD_GRID]
    t = [r["threshold"] for r in rows]
    for key in ("precision", "recall", "fp_rate"):
        ax.plot(t, [math.nan if r[key] is None else r[key] for r in rows], marker=".", label=key)
    ax.axvline(evaluation.threshold, color="k", linestyle="--", linewidth=1)
    ax.set(xlabel="threshold", ylim=(0, 1.02), title="Trade-off across thresholds")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.append(("Precision, recall and benign FP rate by threshold", _png(fig)))
    return out


def _table(rows: list[dict[str, Any]], columns: Sequence[str]) -> dict[str, Any]:
    return {"columns": list(columns), "rows": [[_fmt(r.get(c)) for c in columns] for r in rows]}


_BREAKDOWN_COLUMNS = (
    "contributors",
    "benign",
    "flagged",
    "false_positives",
    "fp_rate",
    "precision",
    "fp_share",
    "examples",
)
_SCAN_COLUMNS = (
    "threshold",
    "flagged_in_run",
    "flagged_rings",
    "flagged",
    "true_positives",
    "false_positives",
    "precision",
    "recall",
    "f1",
    "fp_rate",
    "fp_per_10k",
)

_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; \
style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ringfinder evaluation</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:70em;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.2em .5em}
th{background:#f3f3f3;text-align:left}td{font-variant-numeric:tabular-nums}
.meta{color:#555}.notes li{color:#8a4b00}figure{margin:1em 0}img{max-width:100%}
</style></head><body>
{% macro table(t) -%}
<table><thead><tr>{% for c in t.columns %}<th>{{ c }}</th>{% endfor %}</tr></thead><tbody>
{% for r in t.rows %}<tr>{% for v in r %}<td>{{ v }}</td>{% endfor %}</tr>
{% endfor %}</tbody></table>
{%- endmacro %}
<h1>ringfinder evaluation</h1>
<p class="meta">run: {{ ev.run_dir }} · labels: {{ ev.labels_source }} · threshold: \
{{ threshold }} · ringfinder {{ version }}</p>
{% if ev.notes %}<ul class="notes">{% for n in ev.notes %}<li>{{ n }}</li>{% endfor %}</ul>\
{% endif %}
<h2>Summary</h2>{{ table(summary) }}
{% for caption, uri in figures %}<figure><img alt="{{ caption }}" src="{{ uri }}">
<figcaption>{{ caption }}</figcaption></figure>{% endfor %}
<h2>Thresholds</h2>
{% if recommended.rows %}<h3>Recommended under the given limits</h3>{{ table(recommended) }}\
{% endif %}
<h3>Trade-off</h3>{{ table(tradeoff) }}
<h2>Precision at k (review queue: ring score, then member score)</h2>{{ table(at_k) }}
{% if bands.rows %}<h2>Decision bands</h2>{{ table(bands) }}{% endif %}
<h2>Rings</h2>{{ table(rings) }}
{% if matches.rows %}<h3>Labelled rings</h3>{{ table(matches) }}{% endif %}
{% if purity.rows %}<h3>Flagged rings with labels, least pure first</h3>{{ table(purity) }}\
{% endif %}
<h2>False positives</h2>
<h3>By reason code</h3>{{ table(by_reason) }}
{% for name, t in by_segment %}<h3>By {{ name }}</h3>{{ table(t) }}{% endfor %}
<h3>Examples</h3>{{ table(examples) }}
</body></html>
"""


def render_evaluation_html(evaluation: Evaluation) -> str:
    """The self-contained report: inline PNG plots, escaped text, no scripts, no network."""
    ev = evaluation
    ring_keys = [k for k, v in ev.rings.items() if not isinstance(v, list)]
    purity = sorted(ev.rings["flagged_ring_purity"], key=lambda r: (r["purity"], r[RING_ID]))
    examples = [
        {**r, **{f"segment {k}": v for k, v in r["segments"].items()}} for r in ev.fp_examples
    ]
    example_columns = [c for c in examples[0] if c != "segments"] if examples else [CONTRIBUTOR]
    context = {
        "ev": ev,
        "version": __version__,
        "threshold": _fmt(ev.threshold),
        "summary": {"columns": ["figure", "value"], "rows": ev.summary_rows()},
        "figures": _figures(ev),
        "recommended": _table(
            ev.recommendations,
            [
                "constraint",
                "threshold",
                "recall",
                "precision",
                "flagged_in_run",
                "false_positives",
                "fp_rate",
                "fp_per_10k",
            ],
        ),
        "tradeoff": _table(ev.tradeoff, _SCAN_COLUMNS),
        "at_k": _table(
            ev.precision_at_k, ["k", "queue", "labelled", "fraud", "precision", "recall"]
        ),
        "bands": _table(
            ev.bands, [ACTION, "members", "flagged", "labelled", "fraud", "benign", "precision"]
        ),
        "rings": _table(
            [{"figure": k, "value": ev.rings[k]} for k in ring_keys], ["figure", "value"]
        ),
        "matches": _table(
            ev.rings["labelled_ring_matches"],
            ["labelled_ring", "size", "best_flagged_ring", "jaccard", "found"],
        ),
        "purity": _table(
            purity[:100], [RING_ID, "size", "ring_score", "labelled", "fraud", "purity"]
        ),
        "by_reason": _table(ev.fp_by_reason, ["reason", *_BREAKDOWN_COLUMNS]),
        "by_segment": [
            (name, _table(rows, ["value", *_BREAKDOWN_COLUMNS]))
            for name, rows in ev.fp_by_segment.items()
        ],
        "examples": _table(examples, example_columns),
    }
    env = Environment(autoescape=True, keep_trailing_newline=True)
    return env.from_string(_TEMPLATE).render(**context)
