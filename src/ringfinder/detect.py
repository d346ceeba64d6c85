"""Detect: candidate rings from the weighted contributor graph.

Leiden community detection (Traag, Waltman & van Eck 2019) runs per connected component, and
only on components large enough to need splitting: the result is the same as one run over the
whole graph, far faster on graphs of many small components. It uses igraph's built-in Leiden
(modularity objective), the same algorithm as leidenalg and 30x faster on a 93k-vertex
component here (0.7 s against 21.8 s). Strong
links (a shared payout account) are contracted first, so accounts that pay out to one account
always land in one ring.
"""

from __future__ import annotations

import random

import igraph as ig
import numpy as np
import pandas as pd

from ringfinder.config import DetectConfig
from ringfinder.schema import CONTRIBUTOR

RING_INDEX = "ring_index"


def _strong_groups(n: int, edges: np.ndarray, strong: np.ndarray, stars: np.ndarray) -> np.ndarray:
    """Group of each contributor in the components of strong links.

    Strong links are strong pairs, and ``stars``: (contributor, strong identifier) rows whose
    identifier vertices are numbered after the ``n`` contributors. Groups are numbered 0..k-1.
    """
    keys = int(stars[:, 1].max()) + 1 if len(stars) else 0
    links = np.concatenate([edges[strong], np.column_stack([stars[:, 0], stars[:, 1] + n])])
    graph = ig.Graph(n=n + keys, edges=links.tolist())
    membership = np.asarray(graph.connected_components().membership, dtype=np.int64)[:n]
    return np.unique(membership, return_inverse=True)[1].astype(np.int64)


def _leiden(graph: ig.Graph, *, config: DetectConfig) -> np.ndarray:
    """Seeded Leiden on one component; igraph draws from the RNG we install for the call."""
    ig.set_random_number_generator(random.Random(config.seed))
    try:
        clustering = graph.community_leiden(
            objective_function="modularity",
            weights="weight",
            resolution=config.resolution,
            n_iterations=config.iterations,
        )
    finally:
        ig.set_random_number_generator(random)
    return np.asarray(clustering.membership, dtype=np.int64)


def _communities(graph: ig.Graph, sizes: np.ndarray, *, config: DetectConfig) -> np.ndarray:
    """Community label per vertex: a small component is one community, a large one is split.

    ``sizes`` holds the contributors behind each (contracted) vertex; a component is large
    when it holds at least ``leiden_min_size`` contributors and more than one vertex.
    """
    components = graph.connected_components()
    membership = np.asarray(components.membership, dtype=np.int64)
    labels = membership * graph.vcount()  # room for sub-labels inside each component
    contributors = np.bincount(membership, weights=sizes)
    vertices_per = np.bincount(membership)
    large = (contributors >= config.leiden_min_size) & (vertices_per > 1)
    for component in np.flatnonzero(large):
        vertices = np.flatnonzero(membership == component)
        sub = graph.induced_subgraph(vertices.tolist(), implementation="create_from_scratch")
        labels[vertices] += _leiden(sub, config=config)
    return labels


def _split_weak(
    labels: np.ndarray, edges: np.ndarray, weights: np.ndarray, solid: np.ndarray
) -> np.ndarray:
    """Split communities that only weak (IP-only) links hold together.

    Inside each community, the components of solid links become the rings. A member with
    only weak links joins the part it is most strongly tied to; a community with no solid
    link at all (a household behind one router) stays whole.
    """
    n = len(labels)
    labels = np.unique(labels, return_inverse=True)[1].astype(np.int64)  # dense 0..k-1
    inside = labels[edges[:, 0]] == labels[edges[:, 1]]
    keep = inside & solid
    parts = np.asarray(ig.Graph(n=n, edges=edges[keep].tolist()).connected_components().membership)
    part_size = np.bincount(parts)
    lonely = part_size[parts] == 1
    # Lonely members attach to the neighbouring part with the most weak weight.
    weak = inside & ~solid
    a, b, w = edges[weak, 0], edges[weak, 1], weights[weak]
    src = np.concatenate([a, b])
    dst = np.concatenate([b, a])
    wt = np.concatenate([w, w])
    mask = lonely[src] & ~lonely[dst]
    if mask.any():
        ties = pd.DataFrame({"src": src[mask], "part": parts[dst[mask]], "w": wt[mask]})
        best = ties.groupby(["src", "part"], sort=True)["w"].sum().reset_index()
        best = best.sort_values(
            ["src", "w", "part"], ascending=[True, False, True]
        ).drop_duplicates("src")
        parts = parts.copy()
        parts[best["src"].to_numpy()] = best["part"].to_numpy()
    # Members of a community without any solid link keep the community as it was.
    solid_anywhere = np.bincount(labels[edges[keep, 0]], minlength=labels.max() + 1) > 0
    return np.where(solid_anywhere[labels], parts + labels.max() + 1, labels)


def detect_rings(
    pairs: pd.DataFrame, *, config: DetectConfig, strong_links: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Assign contributors to candidate rings.

    Parameters
    ----------
    pairs : the projection, with columns ``a``, ``b``, ``weight``, ``strong`` and ``solid``.
    config : the ``[detect]`` section (resolution, seed, sizes).
    strong_links : ``contributor_id``, ``strong_key``: everyone behind one strong identifier
        (a payout account) lands in one ring, however many they are.

    Returns
    -------
    DataFrame with ``contributor_id`` and ``ring_index`` (0, 1, ... numbered by each ring's
    smallest member id), one row per contributor placed in a ring of at least
    ``min_ring_size`` members. Every contributor is in at most one ring.

    Examples
    --------
    >>> pairs = pd.DataFrame({"a": ["x"], "b": ["y"], "weight": [1.0], "strong": [True], "solid": [True]})
    >>> detect_rings(pairs, config=DetectConfig()).ring_index.tolist()
    [0, 0]
    """
    empty = pd.DataFrame({CONTRIBUTOR: pd.Series(dtype=str), RING_INDEX: pd.Series(dtype=np.int64)})
    stars = (
        strong_links
        if strong_links is not None
        else pd.DataFrame({CONTRIBUTOR: pd.Series(dtype=str), "strong_key": pd.Series(dtype=str)})
    )
    if pairs.empty and stars.empty:
        return empty
    # Vertex i is the i-th contributor id in sorted order. pandas hashes the ids: at 30M events
    # 0.1 s, where sorting them as numpy strings and searching took 0.7 s.
    codes, names = pd.factorize(
        pd.concat([pairs["a"], pairs["b"], stars[CONTRIBUTOR]], ignore_index=True), sort=True
    )
    codes = codes.astype(np.int64)
    n_pairs = len(pairs)
    edges = np.column_stack([codes[:n_pairs], codes[n_pairs : 2 * n_pairs]]).reshape(-1, 2)
    weights = pairs["weight"].to_numpy(float)
    star_edges = np.column_stack(
        [codes[2 * n_pairs :], pd.factorize(stars["strong_key"])[0].astype(np.int64)]
    ).reshape(-1, 2)
    groups = _strong_groups(len(names), edges, pairs["strong"].to_numpy(bool), star_edges)

    # Contract strong groups into one vertex each; internal weight becomes a self-loop.
    contracted = ig.Graph(n=int(groups.max()) + 1, edges=groups[edges].tolist())
    contracted.es["weight"] = weights.tolist()
    contracted.simplify(multiple=True, loops=False, combine_edges={"weight": "sum"})
    labels = _communities(contracted, np.bincount(groups).astype(float), config=config)[groups]

    if config.split_weak_links:
        labels = _split_weak(labels, edges, weights, pairs["solid"].to_numpy(bool))
    labels = np.unique(labels, return_inverse=True)[1]
    kept = np.flatnonzero(np.bincount(labels)[labels] >= config.min_ring_size)
    if not len(kept):
        return empty
    # Rings are numbered by their smallest member id, that is by their first vertex.
    first_vertex = np.full(labels.max() + 1, len(names))
    np.minimum.at(first_vertex, labels[kept], kept)
    ring_index = np.unique(first_vertex[labels[kept]], return_inverse=True)[1].astype(np.int64)
    return pd.DataFrame({CONTRIBUTOR: names[kept], RING_INDEX: ring_index})
