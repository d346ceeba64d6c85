"""Line charts for the evaluation report, as pixel geometry the template draws as inline SVG.

No plotting library: a chart is its frame, ticks and polylines, so the report stays one
self-contained file, the same evaluation gives the same bytes, every label goes through the
template's escaping, and no command pays for importing a plotting stack.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

WIDTH, HEIGHT = 320, 230
LEFT, RIGHT, TOP, BOTTOM = 46, 12, 26, 40
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd")
DASHES = ("", "6 3", "2 2")
X_TOP = 1.02  # x is a score, rate or threshold in [0, 1]; a little room past 1


@dataclass(frozen=True)
class Line:
    """One series; points with a non-finite coordinate break it, as gaps."""

    name: str
    x: Sequence[float]
    y: Sequence[float]
    dash: str = ""


def chart(
    title: str,
    xlabel: str,
    ylabel: str,
    lines: Sequence[Line],
    *,
    y_top: float = X_TOP,
    rules: Sequence[float] = (),
    dots: Sequence[tuple[float, float]] = (),
) -> dict[str, Any]:
    """Geometry of one chart from 0 to ``X_TOP`` and ``y_top``; ``rules`` are dashed verticals.

    Examples
    --------
    >>> chart("t", "x", "y", [Line("diagonal", [0, 1], [0, 1])])["lines"][0]["paths"]
    ['46.0,190.0 302.9,29.2']
    """
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> str:
        return _num(LEFT + x / X_TOP * plot_width)

    def py(y: float) -> str:
        return _num(TOP + (1 - y / y_top) * plot_height)

    return {
        "width": WIDTH,
        "height": HEIGHT,
        "title": title,
        "xlabel": xlabel,
        "ylabel": ylabel,
        "frame": {"x": LEFT, "y": TOP, "w": plot_width, "h": plot_height},
        "xticks": [{"at": px(v), "label": format(v, "g")} for v in ticks(X_TOP)],
        "yticks": [{"at": py(v), "label": format(v, "g")} for v in ticks(y_top)],
        "lines": [
            {
                "name": line.name,
                "colour": PALETTE[i % len(PALETTE)],
                "dash": line.dash,
                "paths": [
                    " ".join(f"{px(x)},{py(y)}" for x, y in run) for run in _finite_runs(line)
                ],
            }
            for i, line in enumerate(lines)
        ],
        "rules": [px(x) for x in rules if math.isfinite(x)],
        "dots": [{"x": px(x), "y": py(y)} for x, y in dots if math.isfinite(x + y)],
    }


def figure(caption: str, *charts: dict[str, Any]) -> dict[str, Any]:
    """Charts shown side by side under one caption, with one legend of their lines' names."""
    legend = {line["name"]: line["colour"] for c in charts for line in c["lines"]}
    return {
        "caption": caption,
        "charts": list(charts),
        "legend": [{"name": k, "colour": v} for k, v in legend.items()],
    }


def steps(x: Sequence[float], y: Sequence[float]) -> tuple[list[float], list[float]]:
    """Staircase through the points, each ``y[i]`` held on the interval ending at ``x[i]``.

    Examples
    --------
    >>> steps([0, 0.5, 1], [1, 0.8, 0.6])
    ([0, 0, 0.5, 0.5, 1], [1, 0.8, 0.8, 0.6, 0.6])
    """
    xs, ys = [x[0]], [y[0]]
    for i in range(1, len(x)):
        xs += [x[i - 1], x[i]]
        ys += [y[i], y[i]]
    return xs, ys


def histogram_outline(
    edges: Sequence[float], counts: Sequence[int]
) -> tuple[list[float], list[float]]:
    """The outline of a histogram's bars, from the baseline back to it.

    Examples
    --------
    >>> histogram_outline([0, 0.5, 1], [2, 3])
    ([0, 0, 0.5, 0.5, 1, 1], [0, 2, 2, 3, 3, 0])
    """
    xs, ys = [edges[0]], [0]
    for i, count in enumerate(counts):
        xs += [edges[i], edges[i + 1]]
        ys += [count, count]
    return [*xs, edges[-1]], [*ys, 0]


def ticks(top: float) -> list[float]:
    """0 and round steps (1, 2, 2.5 or 5 times a power of ten) up to ``top``: four to six.

    Examples
    --------
    >>> ticks(1.02), ticks(7)
    ([0.0, 0.25, 0.5, 0.75, 1.0], [0, 2, 4, 6])
    """
    power = 10 ** math.floor(math.log10(top / 5))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= top / 5)
    return [round(i * step, 10) for i in range(int(top / step + 1e-9) + 1)]


def _finite_runs(line: Line) -> list[list[tuple[float, float]]]:
    runs: list[list[tuple[float, float]]] = [[]]
    for point in zip(line.x, line.y, strict=True):
        if all(v is not None and math.isfinite(v) for v in point):
            runs[-1].append(point)
        elif runs[-1]:
            runs.append([])
    return [run for run in runs if run]


def _num(value: float) -> str:
    return f"{value:.1f}"
