"""Write an evaluation: ``eval.json`` and a self-contained ``eval.html``.

The HTML report (template ``templates/eval.html.j2``) has inline PNG plots drawn with matplotlib's
Agg canvas, escaped text, no scripts and no network access. Same evaluation, same bytes.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import numpy as np

from ringfinder import __version__
from ringfinder.errors import InputError
from ringfinder.evaluate.inputs import ACTION, RING_ID
from ringfinder.evaluate.thresholds import THRESHOLD_GRID
from ringfinder.schema import CONTRIBUTOR

if TYPE_CHECKING:
    from ringfinder.evaluate.core import Evaluation

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
_RECOMMENDED_COLUMNS = (
    "constraint",
    "threshold",
    "recall",
    "precision",
    "flagged_in_run",
    "false_positives",
    "fp_rate",
    "fp_per_10k",
)


def write_evaluation(evaluation: Evaluation, out_dir: Path | str) -> dict[str, Path]:
    """Write ``eval.json`` and the self-contained ``eval.html`` into ``out_dir``.

    Returns the written paths by name. Same evaluation, same bytes.

    Examples
    --------
    >>> write_evaluation(evaluate_run("out/", "labels.csv"), "out/")  # doctest: +SKIP
    {'json': PosixPath('out/eval.json'), 'html': PosixPath('out/eval.html')}
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
        "threshold": format_value(ev.threshold),
        "summary": {"columns": ["figure", "value"], "rows": ev.summary_rows()},
        "figures": _figures(ev),
        "recommended": _table(ev.recommendations, _RECOMMENDED_COLUMNS),
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
    return _environment().get_template("eval.html.j2").render(**context)


def format_value(value: Any, places: int = 3) -> str:
    """A figure as table text: ``places`` decimals, ``n/a`` for missing or not finite.

    Examples
    --------
    >>> format_value(0.5), format_value(float("nan")), format_value(True), format_value(12)
    ('0.500', 'n/a', 'yes', '12')
    """
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


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("ringfinder", "templates"),
        autoescape=True,
        keep_trailing_newline=True,
    )


def _table(rows: list[dict[str, Any]], columns: Sequence[str]) -> dict[str, Any]:
    return {
        "columns": list(columns),
        "rows": [[format_value(r.get(c)) for c in columns] for r in rows],
    }


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
    shown = [(k, v) for k, v in evaluation.score_samples.items() if v.size]
    for (name, values), style in zip(shown, ("-", "--", ":"), strict=False):
        label = f"{name} ({values.size})"
        ax.hist(
            values,
            bins=list(THRESHOLD_GRID),
            histtype="step",
            linewidth=1.8,
            linestyle=style,
            label=label,
        )
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
