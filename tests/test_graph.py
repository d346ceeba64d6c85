"""Graph: the SQL projection against networkx on random bipartite graphs; hubs; infrastructure."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from typing import Any

import duckdb
import networkx as nx
import pandas as pd
import pytest
from networkx.algorithms import bipartite

import ringfinder.graph
from ringfinder.config import Config, GraphConfig, InputConfig, KindConfig
from ringfinder.graph import GraphStats, build_graph
from ringfinder.ingest import read_events

COLUMNS = ["contributor_id", "event_time", "event_type", "device_id", "ip", "payout_account"]
KIND_COLUMN = {"device": "device_id", "ip": "ip", "payment": "payout_account"}


def graph_config(
    *, device_cap: int = 60, ip_cap: int = 25, payment_cap: int = 200, **graph: Any
) -> Config:
    kinds = {
        "device": KindConfig(
            column="device_id", normaliser="device", weight=1.0, hub_cap=device_cap
        ),
        "ip": KindConfig(column="ip", normaliser="ip", weight=0.3, hub_cap=ip_cap),
        "payment": KindConfig(
            column="payout_account",
            normaliser="payment",
            weight=3.0,
            hub_cap=payment_cap,
            strong=True,
        ),
    }
    return Config(input=InputConfig(kinds=kinds), graph=GraphConfig(**graph))


def events_frame(uses: list[tuple[str, str, str]]) -> pd.DataFrame:
    """One event per (contributor, kind, identifier) use, other identifier columns empty."""
    rows = []
    for i, (contributor, kind, identifier) in enumerate(uses):
        row = dict.fromkeys(COLUMNS)
        row.update(
            contributor_id=contributor,
            event_time=f"2024-01-01T00:00:{i % 60:02d}Z",
            event_type="task",
            **{KIND_COLUMN[kind]: identifier},
        )
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS, dtype=object)


def run_graph(
    uses: list[tuple[str, str, str]], config: Config
) -> tuple[GraphStats, duckdb.DuckDBPyConnection]:
    con = duckdb.connect()
    con.register("input_events", events_frame(uses))
    read_events(con, relation="input_events", config=config.input)
    return build_graph(con, config=config), con


def pairs_of(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], dict[str, Any]]:
    rows = con.execute("SELECT a, b, weight, n_shared, strong, kinds FROM pairs").fetchall()
    return {
        (a, b): {"weight": w, "n_shared": n, "strong": s, "kinds": k} for a, b, w, n, s, k in rows
    }


# --- the reference --------------------------------------------------------------------------


def random_uses(seed: int, n_contributors: int = 300) -> list[tuple[str, str, str]]:
    """Contributors using a mix of popular (shared) and private identifiers of three kinds.

    Identifiers are written in varied spellings (case, spaces, dashes) that normalise to one.
    Some device ids look like IP addresses: an identifier only links within its own kind.
    """
    rng = random.Random(seed)
    popular = {"device": 40, "ip": 25, "payment": 60}
    uses = []
    for c in range(n_contributors):
        contributor = f"u{c:04d}"
        for kind, n_popular in popular.items():
            for _ in range(rng.randint(0, 3)):
                if rng.random() < 0.55:
                    j = min(int(rng.expovariate(1 / (n_popular / 3))), n_popular - 1)
                    base = {
                        "device": f"10.0.{j}.1" if j % 2 else f"dev-{j}",
                        "ip": f"10.0.{j}.1",
                        "payment": f"IBAN{j:04d}",
                    }[kind]
                else:
                    base = {
                        "device": f"own-{c}-{rng.random():.6f}",
                        "ip": f"172.16.{c % 250}.{rng.randint(1, 250)}",
                        "payment": f"OWN{c}X{rng.randint(0, 9)}",
                    }[kind]
                spelled = {
                    "device": rng.choice([base, base.upper(), f"  {base} "]),
                    "ip": rng.choice([base, f"{base}:{rng.randint(1, 65535)}", f"::ffff:{base}"]),
                    "payment": rng.choice([base, base.lower(), "-".join(base)]),
                }[kind]
                uses.append((contributor, kind, spelled))
                if rng.random() < 0.2:
                    uses.append((contributor, kind, spelled))  # a second event on the same edge
    return uses


def canonical(kind: str, raw: str) -> str:
    """Independent Python spelling of the normalised identifier, for the generator's values."""
    if kind == "device":
        return raw.strip().lower()
    if kind == "ip":
        raw = raw.removeprefix("::ffff:")
        return raw.rsplit(":", 1)[0] if ":" in raw else raw
    return "".join(ch for ch in raw if ch.isalnum()).upper()


def reference_graph(uses: list[tuple[str, str, str]]) -> tuple[nx.Graph, list[str]]:
    graph = nx.Graph()
    contributors = sorted({c for c, _, _ in uses})
    graph.add_nodes_from(contributors, bipartite=0)
    for contributor, kind, raw in uses:
        node = (kind, canonical(kind, raw))
        graph.add_node(node, bipartite=1)
        graph.add_edge(contributor, node)
    return graph, contributors


def reference_identifiers(
    graph: nx.Graph, config: Config
) -> tuple[dict[tuple[str, str], float], set[tuple[str, str]]]:
    """Pair weight of each identifier: kind weight × infrastructure factor × ln 3 / ln(degree + 1).

    Infrastructure: a device or IP with at least ``infrastructure_min_contributors`` users, at
    least ``infrastructure_own_share`` of whom also use one of that kind used by no one else.
    """
    g = config.graph
    kinds = config.input.kinds
    identifiers = [n for n, side in graph.nodes(data="bipartite") if side == 1]
    has_own: dict[tuple[str, str], bool] = defaultdict(bool)
    for kind, value in identifiers:
        if graph.degree[(kind, value)] == 1:
            (owner,) = graph[(kind, value)]
            has_own[(owner, kind)] = True
    weights = {}
    infrastructures = set()
    for node in identifiers:
        kind, _ = node
        users = list(graph[node])
        infrastructure = (
            kinds[kind].resolved_role(kind) in ("device", "ip")
            and len(users) >= g.infrastructure_min_contributors
            and sum(has_own[(u, kind)] for u in users) / len(users) >= g.infrastructure_own_share
        )
        if infrastructure:
            infrastructures.add(node)
        factor = g.infrastructure_weight if infrastructure else 1.0
        weights[node] = kinds[kind].weight * factor * math.log(3) / math.log(len(users) + 1)
    return weights, infrastructures


@pytest.mark.parametrize(
    ("seed", "infrastructure_weight"), [(1, 0.1), (2, 0.1), (3, 0.25), (4, 0.0)]
)
def test_projection_matches_networkx(seed: int, infrastructure_weight: float) -> None:
    config = graph_config(
        device_cap=14, ip_cap=12, payment_cap=18, infrastructure_weight=infrastructure_weight
    )
    uses = random_uses(seed)
    stats, con = run_graph(uses, config)

    full, contributors = reference_graph(uses)
    caps = {kind: spec.hub_cap for kind, spec in config.input.kinds.items()}
    hubs = [
        n for n, side in full.nodes(data="bipartite") if side == 1 and full.degree[n] > caps[n[0]]
    ]
    weights, infrastructure = reference_identifiers(full, config)  # degrees before hubs go
    linkable = full.copy()
    linkable.remove_nodes_from(hubs)
    linkable.remove_nodes_from([n for n, w in weights.items() if w == 0])  # links nobody

    counted = bipartite.weighted_projected_graph(linkable, contributors)

    def shared_weight(graph: nx.Graph, u: str, v: str) -> float:
        return sum(weights[n] for n in set(graph[u]) & set(graph[v]))

    weighted = bipartite.generic_weighted_projected_graph(
        linkable, contributors, weight_function=shared_weight
    )

    ours = pairs_of(con)
    assert set(ours) == {tuple(sorted(e)) for e in counted.edges}
    assert ours, "the random graph should have pairs"
    for (a, b), pair in ours.items():
        shared = set(linkable[a]) & set(linkable[b])
        assert pair["n_shared"] == counted[a][b]["weight"]
        assert pair["weight"] == pytest.approx(weighted[a][b]["weight"], rel=1e-9)
        assert pair["strong"] == any(kind == "payment" for kind, _ in shared)
        assert pair["kinds"] == sorted({kind for kind, _ in shared})

    # The graph really exercised hub suppression and infrastructure down-weighting.
    expected_hubs: dict[str, int] = defaultdict(int)
    for kind, _ in hubs:
        expected_hubs[kind] += 1
    assert stats.hubs == dict(expected_hubs)
    assert stats.hubs, "the random graph should have hubs"
    flagged = con.execute(
        "SELECT kind, identifier FROM identifiers WHERE infrastructure"
    ).fetchall()
    assert set(flagged) == infrastructure
    assert set(flagged) - set(hubs), (
        "the random graph should have infrastructure below the hub caps"
    )
    same_text = [
        v
        for k, v in weights
        if k == "device" and ("ip", v) in weights and ("device", v) not in hubs
    ]
    assert same_text, "some device ids should spell the same as an IP address"
    assert stats.edges == full.number_of_edges()
    assert stats.pairs == len(ours)

    # Only shared identifiers are kept, but the counts are of all of them.
    per_kind: dict[str, int] = defaultdict(int)
    for kind, _ in weights:
        per_kind[kind] += 1
    assert stats.identifiers == dict(per_kind)
    kept = con.execute("SELECT kind, identifier, degree FROM identifiers").fetchall()
    shared = {n for n in weights if full.degree[n] >= 2}
    assert {(kind, value) for kind, value, _ in kept} == shared
    assert all(degree == full.degree[(kind, value)] for kind, value, degree in kept)
    assert len(shared) < len(weights), "the random graph should have unshared identifiers"


def test_min_pair_weight_drops_light_pairs() -> None:
    uses = random_uses(7, n_contributors=120)
    _, con = run_graph(uses, graph_config())
    all_pairs = pairs_of(con)
    cut = sorted(p["weight"] for p in all_pairs.values())[len(all_pairs) // 2]
    _, con = run_graph(uses, graph_config(min_pair_weight=cut))
    heavy = pairs_of(con)
    assert heavy == {k: p for k, p in all_pairs.items() if p["weight"] >= cut}
    assert 0 < len(heavy) < len(all_pairs)


# --- hubs, infrastructure, placeholders -------------------------------------------------------


def test_an_identifier_above_its_hub_cap_links_nobody() -> None:
    uses = [(f"c{i}", "ip", "203.0.113.9") for i in range(6)]  # a carrier NAT
    uses += [("c0", "device", "phone-a"), ("c1", "device", "phone-a")]
    stats, con = run_graph(uses, graph_config(ip_cap=5))
    assert set(pairs_of(con)) == {("c0", "c1")}
    assert pairs_of(con)[("c0", "c1")]["kinds"] == ["device"]
    assert stats.hubs == {"ip": 1}
    hub = con.execute(
        "SELECT degree, hub FROM identifiers WHERE identifier = '203.0.113.9'"
    ).fetchone()
    assert hub == (6, True)


def test_an_identifier_at_its_hub_cap_still_links() -> None:
    uses = [(f"c{i}", "ip", "203.0.113.9") for i in range(5)]
    stats, con = run_graph(uses, graph_config(ip_cap=5))
    assert len(pairs_of(con)) == 10  # 5 choose 2
    assert stats.hubs == {}


def test_a_shared_device_beside_private_devices_is_infrastructure() -> None:
    # An internet café PC: ten people use it, and each also has a phone of their own.
    uses = [(f"c{i}", "device", "cafe-pc-1") for i in range(10)]
    uses += [(f"c{i}", "device", f"phone-{i}") for i in range(10)]
    stats, con = run_graph(uses, graph_config(infrastructure_weight=0.1))
    row = con.execute(
        "SELECT degree, infrastructure, weight FROM identifiers WHERE identifier = 'cafe-pc-1'"
    ).fetchone()
    assert row is not None
    degree, infrastructure, weight = row
    assert (degree, infrastructure) == (10, True)
    assert weight == pytest.approx(1.0 * 0.1 * math.log(3) / math.log(11))
    assert stats.infrastructure == {"device": 1}
    pairs = pairs_of(con)
    assert len(pairs) == 45
    assert [p["weight"] for p in pairs.values()] == pytest.approx([weight] * 45)


def test_infrastructure_weight_zero_links_nobody_through_it() -> None:
    uses = [(f"c{i}", "device", "cafe-pc-1") for i in range(10)]
    uses += [(f"c{i}", "device", f"phone-{i}") for i in range(10)]
    uses += [("c0", "payment", "SHARED-1"), ("c1", "payment", "SHARED-1")]
    stats, con = run_graph(uses, graph_config(infrastructure_weight=0.0))
    assert stats.infrastructure == {"device": 1}
    assert set(pairs_of(con)) == {("c0", "c1")}
    assert pairs_of(con)[("c0", "c1")]["kinds"] == ["payment"]


def test_a_device_farm_is_not_infrastructure() -> None:
    # Ten accounts on one phone and nothing else: no one has a device of their own.
    uses = [(f"c{i}", "device", "farm-phone") for i in range(10)]
    stats, con = run_graph(uses, graph_config())
    row = con.execute(
        "SELECT infrastructure, weight FROM identifiers WHERE identifier = 'farm-phone'"
    ).fetchone()
    assert row == (False, pytest.approx(math.log(3) / math.log(11)))
    assert stats.infrastructure == {}
    assert [p["weight"] for p in pairs_of(con).values()] == pytest.approx(
        [math.log(3) / math.log(11)] * 45
    )


def test_a_shared_payout_account_is_never_infrastructure() -> None:
    uses = [(f"c{i}", "payment", "COLLECTOR-1") for i in range(10)]
    uses += [(f"c{i}", "payment", f"OWN-{i}") for i in range(10)]
    stats, con = run_graph(uses, graph_config())
    assert stats.infrastructure == {}
    assert all(p["strong"] for p in pairs_of(con).values())


def test_placeholders_never_link_contributors() -> None:
    placeholders = {
        "device": ["unknown", "UNKNOWN", "null", "", "00000000-0000-0000-0000-000000000000", "n/a"],
        "ip": ["0.0.0.0", "::", "127.0.0.1", "unknown", "0.0.0.0:443"],
        "payment": ["none", "N/A", "0", "000-000"],
    }
    uses = [
        (f"c{i}-{kind}", kind, value)
        for kind, values in placeholders.items()
        for value in values
        for i in range(3)
    ]
    stats, con = run_graph(uses, graph_config())
    assert pairs_of(con) == {}
    assert stats.edges == 0
    assert stats.identifiers == {}


def test_uses_grouped_in_slices_of_contributors_give_the_same_graph(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As for inputs of tens of millions of events, where one GROUP BY held the run's peak."""
    config = graph_config(device_cap=14, ip_cap=12, payment_cap=18)
    uses = random_uses(3)
    _, whole = run_graph(uses, config)
    monkeypatch.setattr(ringfinder.graph, "EVENTS_PER_USES_SLICE", 100)
    _, sliced = run_graph(uses, config)
    ((events,),) = sliced.execute("SELECT count(*) FROM events").fetchall()
    assert events > 4 * 100  # five slices or more
    edges = "SELECT * FROM edges ORDER BY ALL"
    assert whole.execute(edges).fetchall() == sliced.execute(edges).fetchall()
    assert max(row[3] for row in sliced.execute(edges).fetchall()) > 1  # uses were summed
    assert pairs_of(whole) == pairs_of(sliced) != {}
