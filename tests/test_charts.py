"""Evaluation charts: data to pixels, gaps, ticks and outlines on figures worked by hand."""

from __future__ import annotations

import math

from ringfinder.evaluate.charts import (
    BOTTOM,
    HEIGHT,
    LEFT,
    RIGHT,
    TOP,
    WIDTH,
    X_TOP,
    Line,
    chart,
    figure,
    histogram_outline,
    steps,
    ticks,
)


def _xy(point: str) -> tuple[float, float]:
    x, y = point.split(",")
    return float(x), float(y)


def test_points_land_on_the_frame_and_y_grows_upwards() -> None:
    c = chart("t", "x", "y", [Line("l", [0, X_TOP, 0.51], [0, 10, 5])], y_top=10)
    (path,) = c["lines"][0]["paths"]
    origin, corner, middle = (_xy(p) for p in path.split())
    assert origin == (LEFT, HEIGHT - BOTTOM)
    assert corner == (WIDTH - RIGHT, TOP)
    assert middle == ((LEFT + WIDTH - RIGHT) / 2, (TOP + HEIGHT - BOTTOM) / 2)
    assert c["frame"] == {
        "x": LEFT,
        "y": TOP,
        "w": WIDTH - LEFT - RIGHT,
        "h": HEIGHT - TOP - BOTTOM,
    }


def test_missing_values_break_a_line_into_runs_and_bad_marks_are_dropped() -> None:
    line = Line("l", [0, 0.25, 0.5, 0.75, 1.0], [0.1, math.nan, 0.3, 0.4, None])  # type: ignore[list-item]
    c = chart("t", "x", "y", [line], rules=[0.5, math.nan], dots=[(0.5, math.nan), (1, 1)])
    assert [len(p.split()) for p in c["lines"][0]["paths"]] == [1, 2]
    assert c["rules"] == [c["xticks"][2]["at"]]  # 0.5 sits on the middle tick
    assert c["dots"] == [
        {
            "x": f"{LEFT + (WIDTH - LEFT - RIGHT) / X_TOP:.1f}",
            "y": f"{TOP + (HEIGHT - TOP - BOTTOM) * (1 - 1 / X_TOP):.1f}",
        }
    ]


def test_ticks_are_round_and_cover_the_axis() -> None:
    assert ticks(X_TOP) == [0, 0.25, 0.5, 0.75, 1.0]
    assert ticks(7) == [0, 2, 4, 6]
    assert ticks(105) == [0, 25, 50, 75, 100]
    assert ticks(1.0) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    c = chart("t", "x", "y", [], y_top=105)
    assert [t["label"] for t in c["yticks"]] == ["0", "25", "50", "75", "100"]


def test_steps_and_histogram_outlines() -> None:
    assert steps([0, 0.5, 1], [1, 0.8, 0.6]) == ([0, 0, 0.5, 0.5, 1], [1, 0.8, 0.8, 0.6, 0.6])
    xs, ys = histogram_outline([0, 0.5, 1], [2, 3])
    assert list(zip(xs, ys, strict=True)) == [(0, 0), (0, 2), (0.5, 2), (0.5, 3), (1, 3), (1, 0)]


def test_figure_legend_names_each_line_once_with_its_colour() -> None:
    a = chart("a", "x", "y", [Line("one", [0], [0]), Line("two", [0], [0])])
    b = chart("b", "x", "y", [Line("one", [0], [0]), Line("three", [0], [0], dash="2 2")])
    legend = figure("caption", a, b)["legend"]
    assert [e["name"] for e in legend] == ["one", "two", "three"]
    assert legend[0]["colour"] == a["lines"][0]["colour"] != legend[1]["colour"]
    assert b["lines"][1]["dash"] == "2 2"
