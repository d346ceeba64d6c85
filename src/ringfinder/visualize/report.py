"""``report.html`` (the run's KPIs, score bands, reasons and a table of every ring) and
``write_report``, which writes it beside a page per ring in ``rings/``."""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from ringfinder.history import RUN_COUNTS
from ringfinder.schema import Reason
from ringfinder.visualize.graph import MAX_DRAWN_NODES
from ringfinder.visualize.page import render_page
from ringfinder.visualize.records import RingRecords, ring_records
from ringfinder.visualize.ring_page import render_ring
from ringfinder.visualize.text import format_number, format_time, reason_codes, reason_meaning

SCORE_BANDS = (0.9, 0.7)  # band edges above the threshold


def ring_page_name(ring_id: str) -> str:
    """File name of a ring's page in ``rings/``: the id percent-encoded, so it stays one name.

    Examples
    --------
    >>> ring_page_name("R5feee8a40681"), ring_page_name("../x")
    ('R5feee8a40681.html', '..%2Fx.html')
    """
    return urllib.parse.quote(str(ring_id), safe="") + ".html"


def _ring_href(ring_id: str) -> str:
    return "rings/" + urllib.parse.quote(ring_page_name(ring_id), safe="")


def score_bands(threshold: float) -> list[tuple[str, float, float]]:
    """Score bands ``(label, low, high)``, highest first, the last one below the threshold.

    Examples
    --------
    >>> [label for label, _, _ in score_bands(0.5)]
    ['≥ 0.9', '0.7 – 0.9', '0.5 – 0.7', 'below 0.5 (not flagged)']
    """
    cuts = sorted({c for c in SCORE_BANDS if c > threshold} | {threshold}, reverse=True)
    bands: list[tuple[str, float, float]] = []
    high = math.inf
    for cut in cuts:
        bands.append((f"≥ {cut:g}" if math.isinf(high) else f"{cut:g} – {high:g}", cut, high))
        high = cut
    bands.append((f"below {threshold:g} (not flagged)", -math.inf, threshold))
    return bands


def _band_counts(rings: pd.DataFrame, threshold: float) -> list[dict[str, Any]]:
    score = rings["ring_score"].astype(float)
    size = rings["size"].astype(float)
    out = []
    for label, low, high in score_bands(threshold):
        inside = (score >= low) & (score < high)
        out.append(
            {
                "label": label,
                "rings": int(inside.sum()),
                "contributors": int(size[inside].sum()),
                "flagged": low >= threshold,
            }
        )
    return out


def _reason_counts(rings: pd.DataFrame) -> list[dict[str, Any]]:
    counts: dict[str, list[int]] = {}
    for reasons, flagged in zip(rings["reasons"], rings["flagged"], strict=True):
        for code in reason_codes(reasons):
            entry = counts.setdefault(code, [0, 0])
            entry[0] += 1
            entry[1] += int(bool(flagged))
    known = [r.value for r in Reason]
    order = [c for c in known if c in counts] + sorted(c for c in counts if c not in known)
    return [
        {"code": c, "meaning": reason_meaning(c), "rings": counts[c][0], "flagged": counts[c][1]}
        for c in order
    ]


def _kpis(manifest: Mapping[str, Any], rings: pd.DataFrame) -> list[tuple[str, str]]:
    rows = manifest.get("rows", {})
    return [
        ("events read", format_number(rows.get("read"))),
        ("accepted", format_number(rows.get("accepted"))),
        ("quarantined", format_number(rows.get("quarantined"))),
        ("exact duplicates", format_number(rows.get("duplicates"))),
        ("contributors", format_number(manifest.get("contributors"))),
        ("rings", format_number(manifest.get("rings", len(rings)))),
        ("flagged rings", format_number(manifest.get("flagged_rings"))),
        ("flagged contributors", format_number(manifest.get("flagged_contributors"))),
    ]


def manifest_threshold(manifest: Mapping[str, Any]) -> float:
    """The run's flagging threshold, ``config.score.threshold``; 0.5 when it has none."""
    try:
        return float(manifest["config"]["score"]["threshold"])
    except (KeyError, TypeError, ValueError):
        return 0.5


TREND_SERIES = (("rings", "#4e79a7"), ("flagged_rings", "#e15759"), ("new", "#59a14f"))
TREND_WIDTH, TREND_HEIGHT = 900, 160


def trend_chart(history: pd.DataFrame | None) -> dict[str, Any] | None:
    """Lines of rings, flagged rings and new rings per recorded run, as SVG geometry."""
    if history is None or len(history) < 2:
        return None
    runs = history.reset_index(drop=True)
    top = max(1.0, float(max(runs[name].max() for name, _ in TREND_SERIES)))
    step = TREND_WIDTH / (len(runs) - 1)

    def point(i: int, value: float) -> str:
        return f"{i * step:.1f},{TREND_HEIGHT - 10 - (TREND_HEIGHT - 20) * value / top:.1f}"

    lines = [
        {
            "name": name,
            "colour": colour,
            "points": " ".join(point(i, float(v)) for i, v in enumerate(runs[name].fillna(0))),
        }
        for name, colour in TREND_SERIES
    ]
    rows = [
        [
            str(r.recorded_at)[:19],
            *(format_number(getattr(r, c), 0) for c in RUN_COUNTS),
            format_number(r.score_drift),
        ]
        for r in runs.itertuples(index=False)
    ]
    return {
        "lines": lines,
        "rows": rows,
        "width": TREND_WIDTH,
        "height": TREND_HEIGHT,
        "max": int(top),
    }


def render_report(
    rings: pd.DataFrame,
    *,
    manifest: Mapping[str, Any],
    paged: set[str] | None = None,
    history: pd.DataFrame | None = None,
) -> str:
    """The HTML of ``report.html``: the run's KPIs and a sortable, filterable ring table.

    Rings in ``paged`` (all when ``None``) link to their ring page; with a run ``history``
    (``history.history_table``) of two or more runs the report shows the trend.
    """
    threshold = manifest_threshold(manifest)
    table = rings.sort_values(["ring_score", "ring_id"], ascending=[False, True], kind="stable")
    ring_rows = [
        {
            "ring_id": str(r.ring_id),
            "href": _ring_href(str(r.ring_id)) if paged is None or str(r.ring_id) in paged else "",
            "score": format_number(r.ring_score),
            "flagged": bool(r.flagged),
            "size": format_number(r.size),
            "reasons": reason_codes(r.reasons),
            "devices": format_number(r.shared_devices),
            "ips": format_number(r.shared_ips),
            "payments": format_number(r.shared_payments),
            "other": format_number(r.shared_other),
            "first_seen": format_time(r.first_seen),
            "last_seen": format_time(r.last_seen),
            "span_days": format_number(r.time_span_days, 1),
        }
        for r in table.itertuples(index=False)
    ]
    return render_page(
        "report.html.j2",
        version=str(manifest.get("ringfinder_version", "")),
        threshold=f"{threshold:g}",
        kpis=_kpis(manifest, rings),
        bands=_band_counts(rings, threshold),
        reasons=_reason_counts(rings),
        rings=ring_rows,
        trend=trend_chart(history),
    )


def _write(path: Path, html: str) -> None:
    path.write_text(html, encoding="utf-8", errors="replace", newline="\n")


def write_report(
    folder: Path,
    *,
    rings: pd.DataFrame,
    members: pd.DataFrame,
    evidence: pd.DataFrame,
    timeline: pd.DataFrame,
    manifest: Mapping[str, Any],
    max_nodes: int = MAX_DRAWN_NODES,
    max_pages: int | None = None,
    history: pd.DataFrame | None = None,
) -> None:
    """Write ``folder/report.html`` and ``folder/rings/<ring_id>.html`` for each ring.

    Each page inlines vis-network (about 0.5 MB), so with ``max_pages`` only that many rings
    get a page: flagged rings first, then by score. The report lists every ring.

    Parameters
    ----------
    folder : the run's output folder.
    rings, members, evidence, timeline : the run's tables (see the README); not modified.
    manifest : the run's manifest (row accounting, counts, ``config.score.threshold``).
    max_nodes : rings whose graph would have more nodes are drawn as a summary.
    max_pages : at most this many ring pages (``None``: every ring).
    history : the run history (``history.history_table``), for the trend chart.

    Examples
    --------
    >>> result = find_rings("events.csv")  # doctest: +SKIP
    >>> write_report(Path("out"), rings=result.rings, members=result.members,
    ...              evidence=result.evidence, timeline=result.timeline,
    ...              manifest=result.manifest)  # doctest: +SKIP
    """
    folder = Path(folder)
    pages = folder / "rings"
    pages.mkdir(parents=True, exist_ok=True)
    ranked = rings.sort_values(
        ["flagged", "ring_score", "ring_id"], ascending=[False, False, True], kind="stable"
    )
    if max_pages is not None:
        ranked = ranked.head(max_pages)
    paged = set(ranked["ring_id"].astype(str))
    _write(
        folder / "report.html",
        render_report(rings, manifest=manifest, paged=paged, history=history),
    )
    threshold = manifest_threshold(manifest)
    records = ring_records(members, evidence, timeline)
    for ring in ranked.to_dict("records"):
        ring_id = str(ring["ring_id"])
        html = render_ring(
            ring,
            records.get(ring_id, RingRecords()),
            threshold=threshold,
            max_nodes=max_nodes,
            seed=0,
        )
        _write(pages / ring_page_name(ring_id), html)
