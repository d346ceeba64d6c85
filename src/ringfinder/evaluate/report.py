"""Write an evaluation: ``eval.json`` and a self-contained ``eval.html``.

The HTML report (template ``templates/eval.html.j2``) has inline SVG charts (``charts``), escaped
text, no scripts and no network access. Same evaluation, same bytes.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import numpy as np

from ringfinder import __version__
from ringfinder.errors import InputError
from ringfinder.evaluate.charts import (
    DASHES,
    Line,
    chart,
    figure,
    histogram_outline,
    steps,
)
from ringfinder.evaluate.inputs import ACTION, RING_ID
from ringfinder.evaluate.thresholds import THRESHOLD_GRID
from ringfinder.schema import CONTRIBUTOR
from ringfinder.visualize.text import visible_output

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
        "threshold": format_threshold(ev.threshold),
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
        finalize=visible_output,
        keep_trailing_newline=True,
    )


def format_threshold(value: float | None) -> str:
    """A threshold as text that, used as ``score.threshold``, flags exactly the same rings.

    Rounded to a few places it could fall below a ring score and flag more than was measured.

    Examples
    --------
    >>> format_threshold(0.5), format_threshold(0.72549), format_threshold(None)
    ('0.5', '0.72549', 'n/a')
    """
    return "n/a" if value is None else repr(float(value))


def _table(rows: list[dict[str, Any]], columns: Sequence[str]) -> dict[str, Any]:
    def cell(row: dict[str, Any], column: str) -> str:
        value = row.get(column)
        return format_threshold(value) if column == "threshold" else format_value(value)

    return {"columns": list(columns), "rows": [[cell(r, c) for c in columns] for r in rows]}


def _figures(evaluation: Evaluation) -> list[dict[str, Any]]:
    """The report's figures: PR and ROC, ring scores by label, the threshold trade-off."""
    return [_curves_figure(evaluation), _scores_figure(evaluation), _tradeoff_figure(evaluation)]


def _curves_figure(evaluation: Evaluation) -> dict[str, Any]:
    curves = [c for c in evaluation.curves.values() if c.n_positive and c.n_negative]
    points = [c.to_dict()["points"] for c in curves]  # thinned: a few hundred per curve
    pr = [
        Line(c.name, *steps([0.0, *p["recall"]], [1.0, *p["precision"]]))
        for c, p in zip(curves, points, strict=True)
    ]
    roc = [
        Line(c.name, [0.0, *p["fpr"]], [0.0, *p["tpr"]])
        for c, p in zip(curves, points, strict=True)
    ]
    at_threshold = (evaluation.contributors["recall"], evaluation.contributors["precision"])
    chance = Line("chance", [0, 1], [0, 1], dash="2 2")
    return figure(
        "PR and ROC curves (dot: the configured threshold)",
        chart(
            "PR", "recall", "precision", pr, dots=[at_threshold] if None not in at_threshold else []
        ),
        chart("ROC", "false positive rate", "true positive rate", [*roc, chance]),
    )


def _scores_figure(evaluation: Evaluation) -> dict[str, Any]:
    shown = [(k, v) for k, v in evaluation.score_samples.items() if v.size]
    counts = [np.histogram(v, bins=THRESHOLD_GRID)[0] for _, v in shown]
    members = [
        Line(f"{name} ({values.size})", *histogram_outline(THRESHOLD_GRID, c.tolist()), dash=dash)
        for (name, values), c, dash in zip(shown, counts, DASHES, strict=False)
    ]
    highest = max((int(c.max()) for c in counts), default=0)
    return figure(
        "Ring score of ring members by label (dashed: threshold)",
        chart(
            "Ring scores by label",
            "ring score",
            "ring members",
            members,
            y_top=max(highest * 1.05, 1.0),
            rules=[evaluation.threshold],
        ),
    )


def _tradeoff_figure(evaluation: Evaluation) -> dict[str, Any]:
    rows = [r for r in evaluation.tradeoff if r["threshold"] in THRESHOLD_GRID]
    t = [r["threshold"] for r in rows]
    lines = [
        Line(key, t, [math.nan if r[key] is None else r[key] for r in rows])
        for key in ("precision", "recall", "fp_rate")
    ]
    return figure(
        "Precision, recall and benign FP rate by threshold",
        chart("Trade-off across thresholds", "threshold", "", lines, rules=[evaluation.threshold]),
    )
