"""Visualize: report.html and a page per ring for investigators; explain_ring for the terminal.

Every string that comes from the data (contributor ids, identifiers, event types, reason codes)
is attacker-controlled. It reaches a page in one of two ways only:

- through Jinja2 with autoescaping on, as element text or a quoted attribute value;
- as JSON in a ``<script type="application/json">`` block whose ``<``, ``>`` and ``&`` are
  escaped (so no value can close the block), which the page parses with ``JSON.parse`` and
  turns into DOM text nodes (``textContent``). Graph nodes carry no ``title``, so
  vis-network's own popup (an innerHTML path in pyvis' templates) is never used.

The pages are self-contained: vis-network's script comes from the installed pyvis package and
is inlined, the CSS is our own, and a Content-Security-Policy allows inline script and style
only, so a page cannot load anything from anywhere. Graph positions are computed here with
igraph (Fruchterman & Reingold 1991) and drawn with physics off, so large rings open at once.

The tables are prepared once per run (sorting, grouping, time formatting) and split by ring,
so writing a thousand ring pages costs little more than writing the files.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import random
import re
import urllib.parse
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import igraph as ig
import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup

from ringfinder.errors import InputError, RingfinderError
from ringfinder.schema import CONTRIBUTOR, IDENTIFIER, KIND, REASON_MEANINGS, Reason

CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:"
MAX_DRAWN_NODES = 3000  # above this a ring's graph is a summary
SUMMARY_IDENTIFIERS = 40  # identifiers drawn in a summary: those used by the most members
SUMMARY_MEMBERS = 300  # members drawn in a summary
LABELLED_NODES = 300  # above this many nodes only the most shared identifiers carry labels
LABELLED_IDENTIFIERS = 25
MAX_TABLE_ROWS = 20000  # rows per table on a ring page, at most
INLINE_TABLE_ROWS = 300  # rows written as HTML; the rest are drawn when asked for
LABEL_CHARS = 20
NEIGHBOUR_PIXELS = 70.0  # typical distance from a node to its nearest neighbour
TIME_FORMAT = "%Y-%m-%d %H:%M"
TIMELINE_BUCKETS = 120  # at most this many bars in a ring's activity chart
TIMELINE_TYPES = 5  # event types drawn in their own colour; the rest are "other types"
SCORE_BANDS = (0.9, 0.7)  # band edges above the threshold
VIS_NETWORK_JS = ("lib", "vis-9.1.2", "vis-network.min.js")

# Node style: (vis-network shape, colour) by role; kinds of role "other" take turns.
MEMBER_STYLE = ("dot", "#4e79a7")
ROLE_STYLE = {
    "device": ("square", "#f28e2b"),
    "ip": ("triangle", "#59a14f"),
    "payment": ("diamond", "#e15759"),
}
OTHER_STYLES = (("hexagon", "#b07aa1"), ("star", "#9c755f"), ("triangleDown", "#edc948"))
HUB_COLOUR = "#a0a0a0"
EVENT_COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#bab0ac")

MEMBER_FIELDS = (
    "ring_id",
    CONTRIBUTOR,
    "member_score",
    "n_events",
    "shared_identifiers",
    "first_seen",
    "last_seen",
)
EVIDENCE_FIELDS = (
    "ring_id",
    CONTRIBUTOR,
    KIND,
    "role",
    IDENTIFIER,
    "n_events",
    "first_seen",
    "last_seen",
    "degree",
    "ring_users",
    "hub",
    "infrastructure",
)
SHARED_FIELDS = (
    KIND,
    IDENTIFIER,
    "role",
    "degree",
    "ring_users",
    "n_events",
    "first_seen",
    "last_seen",
    "hub",
    "infrastructure",
)


# --------------------------------------------------------------------------- text


def _time(value: Any) -> str:
    stamp = pd.Timestamp(value) if value is not None else pd.NaT
    return "" if pd.isna(stamp) else stamp.strftime(TIME_FORMAT)


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _number(value: Any, digits: int = 3) -> str:
    if _missing(value):
        return ""
    number = float(value)
    if number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return f"{number:.{digits}f}"


def _short(text: str, limit: int = LABEL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _codes(reasons: Any) -> list[str]:
    return [code for code in str(reasons or "").split(";") if code]


def _meaning(code: str) -> str:
    try:
        return REASON_MEANINGS[Reason(code)]
    except ValueError:
        return "unknown reason code"


def script_json(data: Any) -> Markup:
    """JSON for a ``<script type="application/json">`` block that no value can break out of.

    ``<``, ``>`` and ``&`` are written as ``\\u003c``-style escapes, which ``JSON.parse`` reads
    back unchanged, so no string can put ``</script>`` or ``<!--`` in front of the HTML parser.

    Examples
    --------
    >>> str(script_json({"id": "</script><b>"}))
    '{"id":"\\\\u003c/script\\\\u003e\\\\u003cb\\\\u003e"}'
    """
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)  # noqa: S704 - escaped above for the script-data context


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


def terminal_text(value: Any) -> str:
    """``value`` as plain text for a terminal: control characters (ANSI escapes, newlines,
    bidi overrides) written as escapes.

    Examples
    --------
    >>> terminal_text("a\\x1b[31mb\\n")
    'a\\\\x1b[31mb\\\\n'
    """
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )


# --------------------------------------------------------------------------- assets


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("ringfinder", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"], default_for_string=True, default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


@functools.lru_cache(maxsize=1)
def vis_network_js() -> Markup:
    """vis-network's standalone script from the installed pyvis package, safe to inline.

    Found without importing pyvis (which would import networkx and IPython helpers).
    """
    spec = importlib.util.find_spec("pyvis")
    if spec is None or not spec.submodule_search_locations:
        raise RingfinderError("pyvis is not installed; it provides the vis-network script")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*VIS_NETWORK_JS)
    script = path.read_text(encoding="utf-8")
    # Inside <script> only "</script" and "<!--" mean something to the HTML parser.
    script = re.sub(r"</(script)", r"<\\/\1", script, flags=re.IGNORECASE)
    script = script.replace("<!--", "<\\!--")
    return Markup(script)  # noqa: S704 - a packaged library, made inert for the script context


# --------------------------------------------------------------------------- per-ring records


def _formatted_times(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with ``first_seen`` and ``last_seen`` as text, formatted at once."""
    out = frame.copy()
    for column in ("first_seen", "last_seen"):
        if column in out.columns:
            stamps = pd.to_datetime(out[column])
            out[column] = stamps.dt.strftime(TIME_FORMAT).where(stamps.notna(), "")
    return out


def shared_identifiers(evidence: pd.DataFrame) -> pd.DataFrame:
    """One row per ring and identifier that two or more of the ring's members use.

    Sorted by ring (when ``evidence`` has a ``ring_id``), then most shared first.
    """
    by_ring = ["ring_id"] if "ring_id" in evidence.columns else []
    if evidence.empty:
        return pd.DataFrame(columns=[*by_ring, *SHARED_FIELDS])
    shared = evidence[evidence["ring_users"] >= 2]
    table = shared.groupby([*by_ring, KIND, IDENTIFIER], as_index=False, sort=False).agg(
        role=("role", "first"),
        degree=("degree", "max"),
        ring_users=("ring_users", "max"),
        n_events=("n_events", "sum"),
        first_seen=("first_seen", "min"),
        last_seen=("last_seen", "max"),
        hub=("hub", "any"),
        infrastructure=("infrastructure", "any"),
    )
    keys = [*by_ring, "ring_users", KIND, IDENTIFIER]
    order = table.sort_values(
        keys, ascending=[True] * len(by_ring) + [False, True, True], kind="stable"
    )
    return order.reset_index(drop=True)[[*by_ring, *SHARED_FIELDS]]


@dataclass
class RingRecords:
    """One ring's rows, ready to render: named tuples whose times are text.

    ``members`` best member score first; ``links`` the member–identifier rows of identifiers
    two or more members share; ``shared`` one row per such identifier, most shared first;
    ``own`` per member, the identifiers no other member uses, counted per kind;
    ``timeline`` (day, event type, events).
    """

    members: list[Any] = field(default_factory=list)
    links: list[Any] = field(default_factory=list)
    shared: list[Any] = field(default_factory=list)
    own: dict[str, str] = field(default_factory=dict)
    timeline: list[tuple[pd.Timestamp, str, int]] = field(default_factory=list)


def ring_records(
    members: pd.DataFrame, evidence: pd.DataFrame, timeline: pd.DataFrame
) -> dict[str, RingRecords]:
    """Split a run's tables by ring, sorted and formatted in one pass over each table."""
    records: dict[str, RingRecords] = {}

    def ring(ring_id: Any) -> RingRecords:
        return records.setdefault(str(ring_id), RingRecords())

    if len(members):
        frame = _formatted_times(members[list(MEMBER_FIELDS)])
        frame = frame.sort_values(
            ["ring_id", "member_score", CONTRIBUTOR], ascending=[True, False, True], kind="stable"
        )
        for row in frame.itertuples(index=False, name="Member"):
            ring(row.ring_id).members.append(row)
    if len(evidence) and "ring_id" in evidence.columns:
        used = evidence[list(EVIDENCE_FIELDS)]
        linking = used["ring_users"] >= 2
        links = _formatted_times(used[linking])
        links = links.sort_values(["ring_id", CONTRIBUTOR, KIND, IDENTIFIER], kind="stable")
        for row in links.itertuples(index=False, name="Link"):
            ring(row.ring_id).links.append(row)
        for row in _formatted_times(shared_identifiers(used)).itertuples(
            index=False, name="Shared"
        ):
            ring(row.ring_id).shared.append(row)
        own = used[~linking].groupby(["ring_id", CONTRIBUTOR, KIND], sort=True).size()
        for (ring_id, contributor, kind), n in own.items():
            counts = ring(ring_id).own
            text = f"{kind} {n}"
            counts[str(contributor)] = (
                f"{counts[str(contributor)]}, {text}" if str(contributor) in counts else text
            )
    if len(timeline) and "ring_id" in timeline.columns:
        frame = timeline.assign(
            day=pd.to_datetime(timeline["day"]).dt.normalize(),
            event_type=timeline["event_type"].fillna("").astype(str),
        )
        per_day = frame.groupby(["ring_id", "day", "event_type"], sort=True)["n_events"].sum()
        for (ring_id, day, event_type), n in per_day.items():
            ring(ring_id).timeline.append((pd.Timestamp(day), str(event_type), int(n)))
    return records


# --------------------------------------------------------------------------- ring graph


@dataclass
class RingGraph:
    """What a ring page draws: vis-network groups, nodes and edges with positions, and their
    evidence (``node_tips[i]``: ``[key, value]`` lines of node ``i``; ``edge_facts[j]``: events,
    first and last seen of edge ``j``). All strings are data, never markup."""

    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    nodes: list[dict[str, Any]] = field(default_factory=list)
    edges: list[dict[str, Any]] = field(default_factory=list)
    node_tips: list[list[list[str]]] = field(default_factory=list)
    edge_facts: list[list[str]] = field(default_factory=list)
    legend: list[dict[str, str]] = field(default_factory=list)
    summarised: bool = False
    members: int = 0
    identifiers: int = 0
    drawn_members: int = 0
    drawn_identifiers: int = 0
    weak_links: bool = False  # some drawn identifiers are hubs or infrastructure

    def data(self) -> dict[str, Any]:
        """The JSON the page's script reads."""
        return {
            "groups": self.groups,
            "nodes": self.nodes,
            "edges": self.edges,
            "nodeTips": self.node_tips,
            "edgeFacts": self.edge_facts,
        }


def _kind_styles(kinds: Iterable[tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """Shape and colour of each identifier kind, by its role; "other" kinds take turns."""
    styles: dict[str, tuple[str, str]] = {}
    others = 0
    for kind, role in sorted(set(kinds)):
        if kind in styles:
            continue
        if role in ROLE_STYLE:
            styles[kind] = ROLE_STYLE[role]
        else:
            styles[kind] = OTHER_STYLES[others % len(OTHER_STYLES)]
            others += 1
    return styles


def _group(shape: str, colour: str, *, dashed: bool = False) -> dict[str, Any]:
    border = "#555555" if dashed else colour
    group: dict[str, Any] = {
        "shape": shape,
        "color": {
            "background": colour,
            "border": border,
            "highlight": {"background": colour, "border": "#111111"},
            "hover": {"background": colour, "border": "#111111"},
        },
    }
    if dashed:
        group.update(borderWidth=2, shapeProperties={"borderDashes": [3, 3]})
    return group


def _layout(n: int, edges: list[tuple[int, int]], *, seed: int) -> np.ndarray:
    """Positions in vis-network pixels: Fruchterman-Reingold from a seeded start."""
    if n <= 1:
        return np.zeros((n, 2))
    start = np.random.default_rng(seed).uniform(-1.0, 1.0, (n, 2)) * math.sqrt(n)
    graph = ig.Graph(n=n, edges=edges)
    # igraph's FR jitters vertices with igraph's RNG: seed it for byte-identical pages, then
    # give igraph back its default generator (Python's random module).
    ig.set_random_number_generator(random.Random(seed))
    try:
        layout = graph.layout_fruchterman_reingold(seed=start.tolist(), niter=300)
    finally:
        ig.set_random_number_generator(random)
    coords = np.asarray(layout.coords)
    coords -= coords.mean(axis=0)
    # Scale so that a typical node's nearest neighbour is NEIGHBOUR_PIXELS away (measured on
    # up to 400 evenly spaced nodes): dense rings spread out, sparse ones do not sprawl.
    sample = coords[np.linspace(0, n - 1, min(n, 400)).astype(int)]
    distances = np.linalg.norm(sample[:, None, :] - coords[None, :, :], axis=2)
    distances[distances == 0] = np.inf
    nearest = float(np.median(distances.min(axis=1)))
    return coords * (NEIGHBOUR_PIXELS / nearest if 0 < nearest < np.inf else 1.0)


def _tip(*lines: tuple[str, str]) -> list[list[str]]:
    return [[key, value] for key, value in lines if value != ""]


def _summary_selection(ring: RingRecords, max_nodes: int) -> tuple[list[Any], list[Any]]:
    """The identifiers used by the most members, and a sample of their users: in turn, each
    identifier's best-scored user not yet taken, so every drawn identifier shows its users."""
    drawn_ids = ring.shared[: min(SUMMARY_IDENTIFIERS, max(1, max_nodes // 4))]
    cap = min(SUMMARY_MEMBERS, max(1, max_nodes - len(drawn_ids)))
    rank = {str(m.contributor_id): i for i, m in enumerate(ring.members)}
    users: dict[tuple[str, str], list[int]] = {
        (str(s.kind), str(s.identifier)): [] for s in drawn_ids
    }
    for link in ring.links:
        key = (str(link.kind), str(link.identifier))
        if key in users and str(link.contributor_id) in rank:
            users[key].append(rank[str(link.contributor_id)])
    queues = [sorted(users[key], reverse=True) for key in users]  # best rank at the end
    chosen: set[int] = set()
    while len(chosen) < cap and any(queues):
        for queue in queues:
            while queue and queue[-1] in chosen:
                queue.pop()
            if queue and len(chosen) < cap:
                chosen.add(queue.pop())
    if not chosen:  # nothing links the drawn identifiers: show the best-scored members
        chosen = set(range(min(cap, len(ring.members))))
    return [ring.members[i] for i in sorted(chosen)], drawn_ids


def _ring_graph(ring: RingRecords, *, max_nodes: int, seed: int) -> RingGraph:
    graph = RingGraph(members=len(ring.members), identifiers=len(ring.shared))
    drawn_members, drawn_ids = ring.members, ring.shared
    if len(ring.members) + len(ring.shared) > max_nodes:
        graph.summarised = True
        drawn_members, drawn_ids = _summary_selection(ring, max_nodes)
    graph.drawn_members, graph.drawn_identifiers = len(drawn_members), len(drawn_ids)

    styles = _kind_styles((str(s.kind), str(s.role)) for s in ring.shared)
    group_of = {kind: f"k{number}" for number, kind in enumerate(sorted(styles))}
    graph.groups["member"] = _group(*MEMBER_STYLE)
    graph.legend.append(
        {"label": "contributor (ring member)", "shape": MEMBER_STYLE[0], "colour": MEMBER_STYLE[1]}
    )
    drawn_kinds = {str(s.kind) for s in drawn_ids}
    for kind, (shape, colour) in sorted(styles.items()):
        graph.groups[group_of[kind]] = _group(shape, colour)
        graph.groups[group_of[kind] + "-hub"] = _group(shape, HUB_COLOUR, dashed=True)
        graph.groups[group_of[kind] + "-infrastructure"] = _group(shape, colour, dashed=True)
        if kind in drawn_kinds:
            graph.legend.append({"label": kind, "shape": shape, "colour": colour})
    if any(s.hub for s in drawn_ids):
        graph.legend.append(
            {
                "label": "hub: shared too widely, ignored for linking",
                "shape": "square",
                "colour": HUB_COLOUR,
            }
        )

    labelled = len(drawn_members) + len(drawn_ids) <= LABELLED_NODES
    scale = 1.0 if labelled else 0.5  # smaller nodes keep the structure of big rings visible
    index: dict[str, int] = {}
    for m in drawn_members:
        contributor = str(m.contributor_id)
        score = 0.0 if _missing(m.member_score) else float(m.member_score)
        index[contributor] = len(graph.nodes)
        graph.nodes.append(
            {
                "id": len(graph.nodes),
                "group": "member",
                "label": _short(contributor) if labelled else "",
                "size": round(scale * (8 + 8 * score), 1),
            }
        )
        graph.node_tips.append(
            _tip(
                ("contributor", contributor),
                ("member score", _number(m.member_score)),
                ("events", _number(m.n_events)),
                ("first seen", m.first_seen),
                ("last seen", m.last_seen),
                ("shared identifiers", _number(m.shared_identifiers)),
                ("own identifiers", ring.own.get(contributor, "none")),
            )
        )
    id_index: dict[tuple[str, str], int] = {}
    weak: set[tuple[str, str]] = set()
    for rank, s in enumerate(drawn_ids):
        kind, value = str(s.kind), str(s.identifier)
        flags = [
            name
            for name, on in (
                ("hub: ignored for linking", s.hub),
                ("infrastructure: down-weighted", s.infrastructure),
            )
            if on
        ]
        suffix = "-hub" if s.hub else "-infrastructure" if s.infrastructure else ""
        if flags:
            weak.add((kind, value))
        id_index[(kind, value)] = len(graph.nodes)
        graph.nodes.append(
            {
                "id": len(graph.nodes),
                "group": group_of[kind] + suffix,
                "label": _short(value) if labelled or rank < LABELLED_IDENTIFIERS else "",
                "size": round(scale * (10 + 3 * math.log2(max(int(s.ring_users), 1))), 1),
            }
        )
        graph.node_tips.append(
            _tip(
                (kind, value),
                ("ring members using it", _number(s.ring_users)),
                ("contributors using it", _number(s.degree)),
                ("events by ring members", _number(s.n_events)),
                ("first seen", s.first_seen),
                ("last seen", s.last_seen),
                ("flags", ", ".join(flags)),
            )
        )
    graph.weak_links = bool(weak)
    for link in ring.links:
        key = (str(link.kind), str(link.identifier))
        source, target = index.get(str(link.contributor_id)), id_index.get(key)
        if source is None or target is None:
            continue
        n_events = 1 if _missing(link.n_events) else int(link.n_events)
        edge: dict[str, Any] = {
            "from": source,
            "to": target,
            "width": round(min(1 + 1.5 * math.log10(max(n_events, 1)), 8.0), 2),
        }
        if key in weak:
            edge["dashes"] = True
        graph.edges.append(edge)
        graph.edge_facts.append([_number(n_events), link.first_seen, link.last_seen])

    positions = _layout(len(graph.nodes), [(e["from"], e["to"]) for e in graph.edges], seed=seed)
    for node, (x, y) in zip(graph.nodes, positions, strict=True):
        node["x"], node["y"] = round(float(x), 1), round(float(y), 1)
    return graph


def layout_ring_graph(
    members: pd.DataFrame,
    evidence: pd.DataFrame,
    *,
    max_nodes: int = MAX_DRAWN_NODES,
    seed: int = 0,
) -> RingGraph:
    """Nodes (members and the identifiers they share) and edges of one ring, laid out.

    Parameters
    ----------
    members : the ring's rows of the members table.
    evidence : the ring's rows of the evidence table (member × identifier).
    max_nodes : above this many nodes, draw a summary: the identifiers used by the most
        members and a sample of members (those using them, highest member score first).
    seed : seed of the layout.

    Returns
    -------
    RingGraph whose parts are plain JSON-able values.

    Examples
    --------
    >>> ring = result.members.ring_id == "R5feee8a40681"  # doctest: +SKIP
    >>> graph = layout_ring_graph(result.members[ring], result.evidence[...])  # doctest: +SKIP
    """
    records = ring_records(members, evidence, pd.DataFrame())
    ring = next(iter(records.values()), RingRecords())
    return _ring_graph(ring, max_nodes=max_nodes, seed=seed)


# --------------------------------------------------------------------------- ring page


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
        ("members", _number(ring.get("size"))),
        ("shared devices", _number(ring.get("shared_devices"))),
        ("shared IPs", _number(ring.get("shared_ips"))),
        ("shared payout accounts", _number(ring.get("shared_payments"))),
        ("other shared identifiers", _number(ring.get("shared_other"))),
        ("accounts per device", _number(ring.get("accounts_per_device"))),
        ("accounts per payout account", _number(ring.get("accounts_per_payment"))),
        ("signups spread over (hours)", _number(ring.get("signup_span_hours"), 1)),
        ("first seen", _time(ring.get("first_seen"))),
        ("last seen", _time(ring.get("last_seen"))),
        ("active for (days)", _number(ring.get("time_span_days"), 1)),
        ("share of strong links", _number(ring.get("strong_link_share"))),
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
        flags = " ".join(
            name
            for name, on in (
                ("hub (ignored for linking)", s.hub),
                ("infrastructure (down-weighted)", s.infrastructure),
            )
            if on
        )
        rows.append(
            [
                str(s.kind),
                str(s.identifier),
                _number(s.ring_users),
                _number(s.degree),
                _number(s.n_events),
                s.first_seen,
                s.last_seen,
                flags,
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
            _number(m.member_score),
            _number(m.n_events),
            _number(m.shared_identifiers),
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


def _render_ring(
    ring: Mapping[str, Any],
    records: RingRecords,
    *,
    threshold: float | None,
    max_nodes: int,
    seed: int,
) -> str:
    graph = _ring_graph(records, max_nodes=max_nodes, seed=seed)
    return (
        _environment()
        .get_template("ring.html.j2")
        .render(
            csp=CSP,
            ring_id=str(ring["ring_id"]),
            score=_number(ring["ring_score"]),
            flagged=bool(ring["flagged"]),
            threshold=f"{threshold:g}" if threshold is not None else "",
            reasons=[(code, _meaning(code)) for code in _codes(ring["reasons"])],
            facts=_ring_facts(ring),
            graph=graph,
            graph_json=script_json(graph.data()),
            identifiers=_identifier_table(records.shared),
            members=_member_table(records.members),
            timeline=_timeline_chart(records.timeline),
            vis_js=vis_network_js(),
        )
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
    return _render_ring(ring, records, threshold=threshold, max_nodes=max_nodes, seed=seed)


# --------------------------------------------------------------------------- report


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
        for code in _codes(reasons):
            entry = counts.setdefault(code, [0, 0])
            entry[0] += 1
            entry[1] += int(bool(flagged))
    known = [r.value for r in Reason]
    order = [c for c in known if c in counts] + sorted(c for c in counts if c not in known)
    return [
        {"code": c, "meaning": _meaning(c), "rings": counts[c][0], "flagged": counts[c][1]}
        for c in order
    ]


def _kpis(manifest: Mapping[str, Any], rings: pd.DataFrame) -> list[tuple[str, str]]:
    rows = manifest.get("rows", {})
    return [
        ("events read", _number(rows.get("read"))),
        ("accepted", _number(rows.get("accepted"))),
        ("quarantined", _number(rows.get("quarantined"))),
        ("exact duplicates", _number(rows.get("duplicates"))),
        ("contributors", _number(manifest.get("contributors"))),
        ("rings", _number(manifest.get("rings", len(rings)))),
        ("flagged rings", _number(manifest.get("flagged_rings"))),
        ("flagged contributors", _number(manifest.get("flagged_contributors"))),
    ]


def _threshold(manifest: Mapping[str, Any]) -> float:
    try:
        return float(manifest["config"]["score"]["threshold"])
    except (KeyError, TypeError, ValueError):
        return 0.5


def render_report(
    rings: pd.DataFrame, *, manifest: Mapping[str, Any], paged: set[str] | None = None
) -> str:
    """The HTML of ``report.html``: the run's KPIs and a sortable, filterable ring table.

    Rings in ``paged`` (all when ``None``) link to their ring page.
    """
    threshold = _threshold(manifest)
    table = rings.sort_values(["ring_score", "ring_id"], ascending=[False, True], kind="stable")
    ring_rows = [
        {
            "ring_id": str(r.ring_id),
            "href": _ring_href(str(r.ring_id)) if paged is None or r.ring_id in paged else "",
            "score": _number(r.ring_score),
            "flagged": bool(r.flagged),
            "size": _number(r.size),
            "reasons": _codes(r.reasons),
            "devices": _number(r.shared_devices),
            "ips": _number(r.shared_ips),
            "payments": _number(r.shared_payments),
            "other": _number(r.shared_other),
            "first_seen": _time(r.first_seen),
            "last_seen": _time(r.last_seen),
            "span_days": _number(r.time_span_days, 1),
        }
        for r in table.itertuples(index=False)
    ]
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            csp=CSP,
            version=str(manifest.get("ringfinder_version", "")),
            threshold=f"{threshold:g}",
            kpis=_kpis(manifest, rings),
            bands=_band_counts(rings, threshold),
            reasons=_reason_counts(rings),
            rings=ring_rows,
        )
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
    _write(folder / "report.html", render_report(rings, manifest=manifest, paged=paged))
    threshold = _threshold(manifest)
    records = ring_records(members, evidence, timeline)
    for ring in ranked.to_dict("records"):
        ring_id = str(ring["ring_id"])
        html = _render_ring(
            ring,
            records.get(ring_id, RingRecords()),
            threshold=threshold,
            max_nodes=max_nodes,
            seed=0,
        )
        _write(pages / ring_page_name(ring_id), html)


# --------------------------------------------------------------------------- terminal


def _read_run_table(run_dir: Path, name: str, ring_id: str | None = None) -> pd.DataFrame:
    path = run_dir / f"{name}.parquet"
    if not path.is_file():
        raise InputError(f"{path}: not found; is {run_dir} the output folder of ringfinder detect?")
    try:
        if ring_id is None:
            return pd.read_parquet(path)
        return pd.read_parquet(path, filters=[("ring_id", "==", ring_id)])
    except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(f"{path}: cannot be read: {first_line}") from exc


def explain_ring(run_dir: Path, ring_id: str) -> str:
    """A ring's score, reasons in words, shared identifiers and top members, as terminal text.

    Reads ``rings.parquet``, ``members.parquet`` and ``evidence.parquet`` (and the threshold
    from ``manifest.json`` when present) from a ``ringfinder detect`` output folder. Every
    value from the data is plain text with control characters escaped.

    Raises
    ------
    InputError
        The folder or one of its files is missing or unreadable, or it has no ring ``ring_id``.

    Examples
    --------
    >>> print(explain_ring(Path("out"), "R5feee8a40681"))  # doctest: +SKIP
    Ring R5feee8a40681: score 0.951, FLAGGED (threshold 0.5), 6 members
    ...
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such run folder")
    rings = _read_run_table(run_dir, "rings")
    match = rings[rings["ring_id"].astype(str) == str(ring_id)] if len(rings) else rings
    if match.empty:
        raise InputError(f"ring '{terminal_text(ring_id)}' not found in {run_dir}")
    ring = match.iloc[0].to_dict()
    members = _read_run_table(run_dir, "members", str(ring_id))
    evidence = _read_run_table(run_dir, "evidence", str(ring_id))
    records = ring_records(members, evidence, pd.DataFrame()).get(str(ring_id), RingRecords())
    threshold: float | None = None
    manifest_path = run_dir / "manifest.json"
    if manifest_path.is_file():
        try:
            threshold = _threshold(json.loads(manifest_path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            threshold = None

    t = terminal_text
    flagged = "FLAGGED" if bool(ring["flagged"]) else "not flagged"
    if threshold is not None:
        flagged += f" (threshold {threshold:g})"
    lines = [
        f"Ring {t(ring['ring_id'])}: score {_number(ring['ring_score'])}, {flagged}, "
        f"{_number(ring['size'])} members",
        f"Active {_time(ring.get('first_seen'))} to {_time(ring.get('last_seen'))} "
        f"({_number(ring.get('time_span_days'), 1)} days); signups spread over "
        f"{_number(ring.get('signup_span_hours'), 1)} hours",
        "",
        "Reasons:",
    ]
    codes = _codes(ring["reasons"])
    width = max((len(t(c)) for c in codes), default=0)
    lines += [f"  {t(c):<{width}}  {_meaning(c)}" for c in codes] or ["  (none)"]

    shared, shown = records.shared, records.shared[:30]
    lines += [
        "",
        f"Shared identifiers ({len(shared)}): kind, value, ring members / all users, flags",
    ]
    kind_width = max((len(t(s.kind)) for s in shown), default=0)
    value_width = min(max((len(t(s.identifier)) for s in shown), default=0), 60)
    for s in shown:
        flags = " ".join(
            name for name, on in (("hub", s.hub), ("infrastructure", s.infrastructure)) if on
        )
        lines.append(
            f"  {t(s.kind):<{kind_width}}  {t(s.identifier):<{value_width}}  "
            f"{_number(s.ring_users)} / {_number(s.degree)}  {flags}".rstrip()
        )
    if len(shared) > len(shown):
        lines.append(f"  ... and {len(shared) - len(shown)} more")
    if not shared:
        lines.append("  (none)")

    top = records.members[:20]
    lines += [
        "",
        f"Members (top {len(top)} of {len(records.members)} by member score): "
        "member score, events, first seen, last seen, contributor",
    ]
    for m in top:
        lines.append(
            f"  {_number(m.member_score):<8}  {_number(m.n_events):>6}  "
            f"{m.first_seen:<16}  {m.last_seen:<16}  {t(m.contributor_id)}"
        )
    return "\n".join(lines)
