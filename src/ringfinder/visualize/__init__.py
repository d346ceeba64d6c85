"""Visualize: report.html and a page per ring for investigators; explain_ring for the terminal.

Every string that comes from the data (contributor ids, identifiers, event types, reason codes)
is attacker-controlled. It reaches a page in one of two ways only:

- through Jinja2 with autoescaping on, as element text or a quoted attribute value;
- as JSON in a ``<script type="application/json">`` block whose ``<``, ``>`` and ``&`` are
  escaped (so no value can close the block), which the page parses with ``JSON.parse`` and
  turns into DOM text nodes (``textContent``). Graph nodes carry no ``title``, so
  vis-network's own popup (an innerHTML path in pyvis' templates) is never used.

The pages are self-contained: vis-network's script comes from the installed pyvis package and
is inlined, the CSS is our own, and a Content-Security-Policy allows inline style and the page's
own scripts (by SHA-256) only, so a page cannot load anything from anywhere, and a script that
an escaping slip let in would not run. Graph positions are computed here with
igraph (Fruchterman & Reingold 1991) and drawn with physics off, so large rings open at once.

Modules: ``text`` (values as display text), ``page`` (templates, CSP, inlined script and
JSON), ``records`` (a run's tables split by ring), ``graph`` (a ring's graph and layout),
``ring_page`` (one ring's page), ``report`` (``report.html`` and ``write_report``) and
``explain`` (``explain_ring``).
"""

from __future__ import annotations

from ringfinder.visualize.explain import explain_ring
from ringfinder.visualize.graph import (
    HUB_COLOUR,
    LABELLED_IDENTIFIERS,
    LABELLED_NODES,
    MAX_DRAWN_NODES,
    MEMBER_STYLE,
    NEIGHBOUR_PIXELS,
    OTHER_STYLES,
    ROLE_STYLE,
    SUMMARY_IDENTIFIERS,
    SUMMARY_MEMBERS,
    RingGraph,
    layout_ring_graph,
)
from ringfinder.visualize.page import CSP, VIS_NETWORK_JS, script_json, vis_network_js
from ringfinder.visualize.records import (
    EVIDENCE_FIELDS,
    MEMBER_FIELDS,
    SHARED_FIELDS,
    RingRecords,
    ring_records,
    shared_identifiers,
)
from ringfinder.visualize.report import (
    SCORE_BANDS,
    render_report,
    ring_page_name,
    score_bands,
    write_report,
)
from ringfinder.visualize.ring_page import (
    EVENT_COLOURS,
    INLINE_TABLE_ROWS,
    MAX_TABLE_ROWS,
    TIMELINE_BUCKETS,
    TIMELINE_TYPES,
    Table,
    render_ring_page,
)
from ringfinder.visualize.text import LABEL_CHARS, TIME_FORMAT, visible_text

__all__ = [
    "CSP",
    "EVENT_COLOURS",
    "EVIDENCE_FIELDS",
    "HUB_COLOUR",
    "INLINE_TABLE_ROWS",
    "LABELLED_IDENTIFIERS",
    "LABELLED_NODES",
    "LABEL_CHARS",
    "MAX_DRAWN_NODES",
    "MAX_TABLE_ROWS",
    "MEMBER_FIELDS",
    "MEMBER_STYLE",
    "NEIGHBOUR_PIXELS",
    "OTHER_STYLES",
    "ROLE_STYLE",
    "SCORE_BANDS",
    "SHARED_FIELDS",
    "SUMMARY_IDENTIFIERS",
    "SUMMARY_MEMBERS",
    "TIMELINE_BUCKETS",
    "TIMELINE_TYPES",
    "TIME_FORMAT",
    "VIS_NETWORK_JS",
    "RingGraph",
    "RingRecords",
    "Table",
    "explain_ring",
    "layout_ring_graph",
    "render_report",
    "render_ring_page",
    "ring_page_name",
    "ring_records",
    "score_bands",
    "script_json",
    "shared_identifiers",
    "visible_text",
    "vis_network_js",
    "write_report",
]
