"""A ring's graph as vis-network draws it: members, the identifiers they share, positions.

Positions are computed here with igraph (Fruchterman & Reingold 1991) and drawn with physics
off, so large rings open at once. Above ``MAX_DRAWN_NODES`` the graph is a summary: the
identifiers used by the most members and a sample of their users. Nodes carry no ``title``,
so vis-network's own popup (an innerHTML path) is never used; their evidence goes to the page
as data (``node_tips``, ``edge_facts``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import igraph as ig
import numpy as np
import pandas as pd

from ringfinder.visualize.records import RingRecords, identifier_flags, ring_records
from ringfinder.visualize.text import format_number, is_missing, shorten

MAX_DRAWN_NODES = 3000  # above this a ring's graph is a summary
SUMMARY_IDENTIFIERS = 40  # identifiers drawn in a summary: those used by the most members
SUMMARY_MEMBERS = 300  # members drawn in a summary
LABELLED_NODES = 300  # above this many nodes only the most shared identifiers carry labels
LABELLED_IDENTIFIERS = 25
NEIGHBOUR_PIXELS = 70.0  # typical distance from a node to its nearest neighbour

# Node style: (vis-network shape, colour) by role; kinds of role "other" take turns.
MEMBER_STYLE = ("dot", "#4e79a7")
ROLE_STYLE = {
    "device": ("square", "#f28e2b"),
    "ip": ("triangle", "#59a14f"),
    "payment": ("diamond", "#e15759"),
}
OTHER_STYLES = (("hexagon", "#b07aa1"), ("star", "#9c755f"), ("triangleDown", "#edc948"))
HUB_COLOUR = "#a0a0a0"


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


def build_ring_graph(ring: RingRecords, *, max_nodes: int, seed: int) -> RingGraph:
    """The graph of one ring's prepared records (see ``layout_ring_graph``)."""
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
        score = 0.0 if is_missing(m.member_score) else float(m.member_score)
        index[contributor] = len(graph.nodes)
        graph.nodes.append(
            {
                "id": len(graph.nodes),
                "group": "member",
                "label": shorten(contributor) if labelled else "",
                "size": round(scale * (8 + 8 * score), 1),
            }
        )
        graph.node_tips.append(
            _tip(
                ("contributor", contributor),
                ("member score", format_number(m.member_score)),
                ("events", format_number(m.n_events)),
                ("first seen", m.first_seen),
                ("last seen", m.last_seen),
                ("shared identifiers", format_number(m.shared_identifiers)),
                ("own identifiers", ring.own.get(contributor, "none")),
            )
        )
    id_index: dict[tuple[str, str], int] = {}
    weak: set[tuple[str, str]] = set()
    for rank, s in enumerate(drawn_ids):
        kind, value = str(s.kind), str(s.identifier)
        flags = identifier_flags(
            s, hub="hub: ignored for linking", infrastructure="infrastructure: down-weighted"
        )
        suffix = "-hub" if s.hub else "-infrastructure" if s.infrastructure else ""
        if flags:
            weak.add((kind, value))
        id_index[(kind, value)] = len(graph.nodes)
        graph.nodes.append(
            {
                "id": len(graph.nodes),
                "group": group_of[kind] + suffix,
                "label": shorten(value) if labelled or rank < LABELLED_IDENTIFIERS else "",
                "size": round(scale * (10 + 3 * math.log2(max(int(s.ring_users), 1))), 1),
            }
        )
        graph.node_tips.append(
            _tip(
                (kind, value),
                ("ring members using it", format_number(s.ring_users)),
                ("contributors using it", format_number(s.degree)),
                ("events by ring members", format_number(s.n_events)),
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
        n_events = 1 if is_missing(link.n_events) else int(link.n_events)
        edge: dict[str, Any] = {
            "from": source,
            "to": target,
            "width": round(min(1 + 1.5 * math.log10(max(n_events, 1)), 8.0), 2),
        }
        if key in weak:
            edge["dashes"] = True
        graph.edges.append(edge)
        graph.edge_facts.append([format_number(n_events), link.first_seen, link.last_seen])

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
    return build_ring_graph(ring, max_nodes=max_nodes, seed=seed)
