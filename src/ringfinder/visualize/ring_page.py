"""One ring's page: its graph, reasons in words, facts, shared identifiers, members, timeline.

Every string from the data reaches the page either through Jinja2 with autoescaping on, or as
JSON (``script_json``) that the page's script turns into DOM text nodes.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
from markupsafe import Markup

from ringfinder.visualize.graph import MAX_DRAWN_NODES, build_ring_graph
from ringfinder.visualize.page import render_page, script_json, vis_network_js
from ringfinder.visualize.records import RingRecords, identifier_flags, ring_records
from ringfinder.visualize.text import format_number, format_time, reason_codes, reason_meaning

MAX_TABLE_ROWS = 20000  # rows per table on a ring page, at most
INLINE_TABLE_ROWS = 300  # rows written as HTML; the rest are drawn when asked for
TIMELINE_BUCKETS = 120  # at most this many bars in a ring's activity chart
TIMELINE_TYPES = 5  # event types drawn in their own colour; the rest are "other types"
EVENT_COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#bab0ac")


def _timeline_chart(timeline: list[tuple[pd.Timestamp, str, int]]) -> dict[str, Any]:
    """Stacked bars of events per day (or per few days) and event type, as SVG geometry."""
    chart: dict[str, Any] = {
        "bars": [],
        "legend": [],
        "rows": [],
        "series": [],
        "width": 900,
        "height": 160,
        "bucket_days": 1,
        "max": 0,
        "first": "",
        "last": "",
    }
    if not timeline:
        return chart
    totals: Counter[str] = Counter()
    for _, event_type, n in timeline:
        totals[event_type] += n
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
    main = [name for name, _ in ranked[:TIMELINE_TYPES]]
    series = [*main, *([None] if len(ranked) > TIMELINE_TYPES else [])]  # None: other types
    names = ["(none)" if s == "" else "(other types)" if s is None else s for s in series]
    first = min(day for day, _, _ in timeline)
    last = max(day for day, _, _ in timeline)
    bucket = max(1, math.ceil(((last - first).days + 1) / TIMELINE_BUCKETS))
    buckets = math.ceil(((last - first).days + 1) / bucket)
    counts: dict[int, Counter[str | None]] = {}
    for day, event_type, n in timeline:
        key = event_type if event_type in main else None
        counts.setdefault((day - first).days // bucket, Counter())[key] += n
    top = max(sum(c.values()) for c in counts.values())
    width, plot = chart["width"], chart["height"] - 20
    step = width / buckets
    for b in sorted(counts):
        start = (first + pd.Timedelta(days=b * bucket)).strftime("%Y-%m-%d")
        label = start if bucket == 1 else f"{start} +{bucket - 1} d"
        y = float(plot)
        for s, name, colour in zip(series, names, EVENT_COLOURS, strict=False):
            n = counts[b].get(s, 0)
            if n:
                h = plot * n / top
                y -= h
                chart["bars"].append(
                    {
                        "x": round((b + 0.1) * step, 2),
                        "y": round(y, 2),
                        "w": round(max(0.8 * step, 1.0), 2),
                        "h": round(h, 2),
                        "colour": colour,
                        "title": f"{label} · {name}: {n}",
                    }
                )
        chart["rows"].append(
            {
                "day": label,
                "total": sum(counts[b].values()),
                "by_type": [counts[b].get(s, 0) for s in series],
            }
        )
    chart.update(
        legend=[
            {"name": name, "colour": colour}
            for name, colour in zip(names, EVENT_COLOURS, strict=False)
        ],
        series=names,
        bucket_days=bucket,
        max=top,
        first=first.strftime("%Y-%m-%d"),
        last=last.strftime("%Y-%m-%d"),
    )
    return chart


def _ring_facts(ring: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [
        ("members", format_number(ring.get("size"))),
        ("shared devices", format_number(ring.get("shared_devices"))),
        ("shared IPs", format_number(ring.get("shared_ips"))),
        ("shared payout accounts", format_number(ring.get("shared_payments"))),
        ("other shared identifiers", format_number(ring.get("shared_other"))),
        ("accounts per device", format_number(ring.get("accounts_per_device"))),
        ("accounts per payout account", format_number(ring.get("accounts_per_payment"))),
        ("signups spread over (hours)", format_number(ring.get("signup_span_hours"), 1)),
        ("first seen", format_time(ring.get("first_seen"))),
        ("last seen", format_time(ring.get("last_seen"))),
        ("active for (days)", format_number(ring.get("time_span_days"), 1)),
        ("share of strong links", format_number(ring.get("strong_link_share"))),
    ]


@dataclass
class Table:
    """A table of text cells: the first ``INLINE_TABLE_ROWS`` rows are HTML, the rest JSON that
    the page turns into rows (as text) on demand, so long tables do not slow the page down."""

    element_id: str
    noun: str
    columns: list[tuple[str, bool]]  # (header, numeric)
    rows: list[list[str]]
    total: int

    @property
    def inline(self) -> list[list[str]]:
        return self.rows[:INLINE_TABLE_ROWS]

    @property
    def more(self) -> Markup | None:
        rest = self.rows[INLINE_TABLE_ROWS:]
        return script_json(rest) if rest else None


def _identifier_table(shared: list[Any]) -> Table:
    rows = []
    for s in shared[:MAX_TABLE_ROWS]:
        flags = identifier_flags(
            s, hub="hub (ignored for linking)", infrastructure="infrastructure (down-weighted)"
        )
        rows.append(
            [
                str(s.kind),
                str(s.identifier),
                format_number(s.ring_users),
                format_number(s.degree),
                format_number(s.n_events),
                s.first_seen,
                s.last_seen,
                " ".join(flags),
            ]
        )
    columns = [
        ("kind", False),
        ("identifier", False),
        ("ring members", True),
        ("all users", True),
        ("events", True),
        ("first seen", False),
        ("last seen", False),
        ("flags", False),
    ]
    return Table("identifiers", "identifiers", columns, rows, len(shared))


def _member_table(members: list[Any]) -> Table:
    rows = [
        [
            str(m.contributor_id),
            format_number(m.member_score),
            format_number(m.n_events),
            format_number(m.shared_identifiers),
            m.first_seen,
            m.last_seen,
        ]
        for m in members[:MAX_TABLE_ROWS]
    ]
    columns = [
        ("contributor", False),
        ("member score", True),
        ("events", True),
        ("shared identifiers", True),
        ("first seen", False),
        ("last seen", False),
    ]
    return Table("members", "members", columns, rows, len(members))


def render_ring(
    ring: Mapping[str, Any],
    records: RingRecords,
    *,
    threshold: float | None,
    max_nodes: int,
    seed: int,
) -> str:
    """The HTML of one ring's page from its prepared records (see ``render_ring_page``)."""
    graph = build_ring_graph(records, max_nodes=max_nodes, seed=seed)
    return render_page(
        "ring.html.j2",
        ring_id=str(ring["ring_id"]),
        score=format_number(ring["ring_score"]),
        flagged=bool(ring["flagged"]),
        threshold=f"{threshold:g}" if threshold is not None else "",
        reasons=[(code, reason_meaning(code)) for code in reason_codes(ring["reasons"])],
        facts=_ring_facts(ring),
        graph=graph,
        graph_json=script_json(graph.data()),
        identifiers=_identifier_table(records.shared),
        members=_member_table(records.members),
        timeline=_timeline_chart(records.timeline),
        vis_js=vis_network_js(),
    )


def render_ring_page(
    ring: Mapping[str, Any],
    *,
    members: pd.DataFrame,
    evidence: pd.DataFrame,
    timeline: pd.DataFrame,
    threshold: float | None = None,
    max_nodes: int = MAX_DRAWN_NODES,
    seed: int = 0,
) -> str:
    """The HTML of one ring's page: graph, reasons in words, evidence, members, timeline.

    Parameters
    ----------
    ring : the ring's row of the rings table (a Series or a dict).
    members, evidence, timeline : the ring's rows of those tables.
    threshold : the run's flagging threshold, shown beside the score.
    max_nodes, seed : see ``layout_ring_graph``.
    """
    records = ring_records(members, evidence, timeline).get(str(ring["ring_id"]), RingRecords())
    return render_ring(ring, records, threshold=threshold, max_nodes=max_nodes, seed=seed)
