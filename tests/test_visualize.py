"""report.html, ring pages and explain_ring: complete, escaped, self-contained, deterministic."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringfinder.errors import InputError
from ringfinder.schema import MEMBERS_COLUMNS, REASON_MEANINGS, RINGS_COLUMNS, Reason
from ringfinder.visualize import (
    CSP,
    MAX_DRAWN_NODES,
    TIMELINE_BUCKETS,
    explain_ring,
    layout_ring_graph,
    ring_page_name,
    score_bands,
    script_json,
    visible_text,
    write_report,
)

HOSTILE = (
    "<img src=x onerror=alert(1)>",
    '"><script>alert(1)</script>',
    'see href <a href="javascript:alert(1)">x</a>',
    "javascript:alert(1)",
    "</script><script>alert(2)</script><!--",
    "' onmouseover='alert(3)",
)
START = pd.Timestamp("2024-03-01 00:00:00")
ROLE = {"device": "device", "ip": "ip", "payment": "payment", "email": "other"}

Ring = Sequence[Sequence[tuple[str, str]]]  # members, each a list of (kind, identifier)


def make_tables(
    rings: dict[str, tuple[Ring, Sequence[str]]],
    *,
    threshold: float = 0.5,
    event_type: str = "task_submit",
) -> dict[str, Any]:
    """The tables ``write_report`` takes, for rings given as members and their identifiers.

    ``rings`` maps ring id → (members, contributor ids); a ring's score falls with its position.
    """
    ring_rows, member_rows, evidence_rows, timeline_rows = [], [], [], []
    for position, (ring_id, (ring, names)) in enumerate(rings.items()):
        score = round(max(0.97 - 0.1 * position, 0.05), 3)
        users: dict[tuple[str, str], int] = {}
        for identifiers in ring:
            for key in set(identifiers):
                users[key] = users.get(key, 0) + 1
        for i, (name, identifiers) in enumerate(zip(names, ring, strict=True)):
            first, last = START + pd.Timedelta(hours=i), START + pd.Timedelta(days=3, hours=i)
            for kind, value in identifiers:
                evidence_rows.append(
                    {
                        "ring_id": ring_id,
                        "contributor_id": name,
                        "kind": kind,
                        "role": ROLE[kind],
                        "identifier": value,
                        "n_events": 3 + i,
                        "first_seen": first,
                        "last_seen": last,
                        "degree": users[(kind, value)] + (kind == "ip"),
                        "ring_users": users[(kind, value)],
                        "hub": value.startswith("hub"),
                        "infrastructure": value.startswith("cafe"),
                    }
                )
            member_rows.append(
                {
                    "contributor_id": name,
                    "ring_id": ring_id,
                    "ring_score": score,
                    "flagged": score >= threshold,
                    "member_score": round(score * (1 - 0.01 * i), 6),
                    "reasons": "SHARED_PAYOUT;DEVICE_FARM",
                    "first_seen": first,
                    "last_seen": last,
                    "n_events": 4,
                    "shared_identifiers": sum(users[k] >= 2 for k in identifiers),
                }
            )
            for day in (0, 3):
                timeline_rows.append(
                    {
                        "ring_id": ring_id,
                        "contributor_id": name,
                        "day": START + pd.Timedelta(days=day),
                        "event_type": "signup" if day == 0 else event_type,
                        "n_events": 2,
                    }
                )
        shared = {k for k, n in users.items() if n >= 2}
        ring_rows.append(
            {
                "ring_id": ring_id,
                "size": len(names),
                "ring_score": score,
                "flagged": score >= threshold,
                "reasons": "SHARED_PAYOUT;DEVICE_FARM"
                if position % 2 == 0
                else "SHARED_IP;SHARED_INFRASTRUCTURE",
                "shared_devices": sum(k[0] == "device" for k in shared),
                "shared_ips": sum(k[0] == "ip" for k in shared),
                "shared_payments": sum(k[0] == "payment" for k in shared),
                "shared_other": sum(k[0] == "email" for k in shared),
                "accounts_per_device": 2.0,
                "accounts_per_payment": 3.0,
                "signup_span_hours": 5.0,
                "first_seen": START,
                "last_seen": START + pd.Timedelta(days=3, hours=len(names)),
                "time_span_days": 3.2,
                "strong_link_share": 0.5,
            }
        )
    members = pd.DataFrame(member_rows, columns=list(MEMBERS_COLUMNS))
    n_flagged = int(members["flagged"].sum()) if len(members) else 0
    return {
        "rings": pd.DataFrame(ring_rows, columns=list(RINGS_COLUMNS)),
        "members": members,
        "evidence": pd.DataFrame(evidence_rows),
        "timeline": pd.DataFrame(timeline_rows),
        "manifest": {
            "rows": {"read": 1000, "accepted": 990, "quarantined": 7, "duplicates": 3},
            "contributors": 321,
            "rings": len(ring_rows),
            "flagged_rings": sum(r["flagged"] for r in ring_rows),
            "flagged_contributors": n_flagged,
            "config": {"score": {"threshold": threshold}},
            "ringfinder_version": "0.1.0",
        },
    }


def star_ring(
    names: Sequence[str], *, payout: str = "PAY-1", devices: Sequence[str] = ("dev-a", "dev-b")
) -> Ring:
    """Everyone shares one payout account; devices alternate; each has an IP of their own."""
    return [
        [("payment", payout), ("device", devices[i % len(devices)]), ("ip", f"10.0.0.{i}")]
        for i in range(len(names))
    ]


def hostile_tables() -> dict[str, Any]:
    names = [f"{h}#{i}" for i, h in enumerate(HOSTILE)]
    hostile = [
        [
            ("payment", HOSTILE[1]),
            ("device", HOSTILE[i % 2]),
            ("email", HOSTILE[4]),
            ("ip", f"10.0.0.{i}"),
        ]
        for i in range(len(names))
    ]
    plain = ["alice", "bob", "carol"]
    return make_tables(
        {"R00000000000a": (hostile, names), "R00000000000b": (star_ring(plain), plain)},
        event_type=HOSTILE[0],
    )


class Structure(HTMLParser):
    """Every start tag with its attributes, and the text of every <script>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._in_script: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = dict(attrs)
            self.scripts.append((self._in_script, ""))

    def handle_data(self, data: str) -> None:
        if self._in_script is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = None


def structure(path: Path) -> Structure:
    parser = Structure()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return parser


def pages(folder: Path) -> list[Path]:
    return [folder / "report.html", *sorted((folder / "rings").glob("*.html"))]


def graph_data(path: Path) -> dict[str, Any]:
    scripts = [text for attrs, text in structure(path).scripts if attrs.get("id") == "ring-graph"]
    assert len(scripts) == 1
    data: dict[str, Any] = json.loads(scripts[0])
    return data


@pytest.fixture
def hostile_run(tmp_path: Path) -> Path:
    write_report(tmp_path, **hostile_tables())
    return tmp_path


def test_report_and_a_page_for_every_ring(tmp_path: Path) -> None:
    names = {f"R{i:012x}": [f"c{i}-{j}" for j in range(4 + i)] for i in range(5)}
    tables = make_tables({rid: (star_ring(n), n) for rid, n in names.items()})
    write_report(tmp_path, **tables)
    assert sorted(p.name for p in (tmp_path / "rings").iterdir()) == sorted(
        f"{r}.html" for r in names
    )
    report = structure(tmp_path / "report.html")
    hrefs = [a.get("href") or "" for tag, a in report.tags if tag == "a"]
    links = [href for href in hrefs if href.startswith("rings/")]
    assert sorted(links) == sorted(f"rings/{r}.html" for r in names)
    for ring_id, members in names.items():
        data = graph_data(tmp_path / "rings" / f"{ring_id}.html")
        # every member, the payout account and both devices; each member links to 2 of them
        assert len(data["nodes"]) == len(members) + 3
        assert len(data["edges"]) == 2 * len(members)
        assert len(data["nodeTips"]) == len(data["nodes"])
        assert len(data["edgeFacts"]) == len(data["edges"])


def test_report_counts_by_band_and_reason(tmp_path: Path) -> None:
    names = {f"R{i:012x}": [f"c{i}-{j}" for j in range(2 + i)] for i in range(8)}
    tables = make_tables({rid: (star_ring(n), n) for rid, n in names.items()})
    write_report(tmp_path, **tables)
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    band_rows = re.findall(
        r'<tr><td>([^<]*)(?:<span[^>]*>flagged</span>)?\s*</td><td class="num">(\d+)</td>'
        r'<td class="num">(\d+)</td></tr>',
        html,
    )
    rings = tables["rings"]
    assert sum(int(n) for _, n, _ in band_rows) == len(rings)
    assert sum(int(c) for _, _, c in band_rows) == rings["size"].sum()
    for label, low, high in score_bands(0.5):
        expected = int(((rings["ring_score"] >= low) & (rings["ring_score"] < high)).sum())
        assert (label, str(expected)) in {(b.strip(), n) for b, n, _ in band_rows}
    assert REASON_MEANINGS[Reason.SHARED_INFRASTRUCTURE] in html
    assert html.count('<tr class="flagged"') == int(rings["flagged"].sum())


@given(st.floats(min_value=0.01, max_value=0.99))
def test_score_bands_cover_the_scores_once(threshold: float) -> None:
    bands = score_bands(threshold)
    for score in (0.0, threshold, 0.7, 0.9, 0.95, 1.0, threshold - 1e-9):
        assert sum(low <= score < high for _, low, high in bands) == 1
    assert [low for _, low, _ in bands if low >= threshold][-1] == threshold


@given(st.text())
def test_script_json_round_trips_and_never_closes_the_script(text: str) -> None:
    encoded = str(script_json({"id": text, "list": [text]}))
    assert "<" not in encoded and ">" not in encoded and "&" not in encoded
    shown = visible_text(text)
    assert json.loads(encoded) == {"id": shown, "list": [shown]}
    assert shown == text or not text.isprintable()


def test_hostile_strings_are_text(hostile_run: Path) -> None:
    allowed = {
        "html",
        "head",
        "meta",
        "title",
        "style",
        "body",
        "header",
        "main",
        "footer",
        "section",
        "div",
        "h1",
        "h2",
        "h3",
        "p",
        "span",
        "strong",
        "a",
        "ul",
        "li",
        "dl",
        "dt",
        "dd",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "button",
        "input",
        "label",
        "aside",
        "details",
        "summary",
        "script",
        "svg",
        "circle",
        "rect",
        "polygon",
        "line",
        "text",
    }
    for page in pages(hostile_run):
        html = page.read_text(encoding="utf-8")
        parsed = structure(page)
        assert {tag for tag, _ in parsed.tags} <= allowed, page.name
        for tag, attrs in parsed.tags:
            assert not [name for name in attrs if name.startswith("on")], (page.name, tag, attrs)
            assert not (attrs.get("href") or "").strip().lower().startswith("javascript:")
            if tag == "script":
                assert "src" not in attrs
        for text in HOSTILE:
            if "<" in text or ">" in text:
                assert text not in html  # never raw, anywhere (the JSON block escapes < > & too)
    ring_page = hostile_run / "rings" / "R00000000000a.html"
    html = ring_page.read_text(encoding="utf-8")
    assert "&lt;img src=x onerror=alert(1)&gt;#0" in html  # the members table shows it as text
    data = graph_data(ring_page)
    texts = {value for tip in data["nodeTips"] for _, value in tip}
    assert {f"{h}#{i}" for i, h in enumerate(HOSTILE)} <= texts
    assert {HOSTILE[0], HOSTILE[1], HOSTILE[4]} <= texts  # devices, payout, email as data
    scripts = structure(ring_page).scripts
    assert [attrs.get("type") for attrs, _ in scripts] == ["application/json", None, None, None]


def test_control_and_bidi_characters_are_shown_not_obeyed(tmp_path: Path) -> None:
    names = ["x\x00y", "abc\u202edef", "red\x1b[31m", "two\nlines"]
    write_report(tmp_path, **make_tables({"R00000000000c": (star_ring(names), names)}))
    shown = ["x\\x00y", "abc\\u202edef", "red\\x1b[31m", "two\\nlines"]
    ring_page = tmp_path / "rings" / "R00000000000c.html"
    for page in pages(tmp_path):
        html = page.read_text(encoding="utf-8")
        assert not [c for c in "\x00\u202e\x1b" if c in html], page.name
    html = ring_page.read_text(encoding="utf-8")
    assert all(f"<td>{text}</td>" in html for text in shown)  # the members table
    texts = {value for tip in graph_data(ring_page)["nodeTips"] for _, value in tip}
    assert set(shown) <= texts


def test_json_block_cannot_close_the_script_tag(hostile_run: Path) -> None:
    html = (hostile_run / "rings" / "R00000000000a.html").read_text(encoding="utf-8")
    start = html.index('<script type="application/json" id="ring-graph">')
    block = html[start : html.index("</script>", start)]
    assert "<!--" not in block and "</" not in block[1:]
    assert json.loads(block.split(">", 1)[1])["nodes"]  # the whole JSON is inside the block


def test_pages_are_self_contained(hostile_run: Path) -> None:
    external = re.compile(
        r"""(?:src|href|action|formaction)\s*=\s*["']?\s*(?:[a-z][a-z0-9+.-]*:)?//""", re.I
    )
    for page in pages(hostile_run):
        html = page.read_text(encoding="utf-8")
        assert not external.search(html), page.name
        assert "<link" not in html.lower()
        assert not re.search(r"<script[^>]*\bsrc\s*=", html, re.I)
        assert not re.search(r"@import|url\(\s*['\"]?\s*(?:https?:)?//", html, re.I)
        (csp,) = re.findall(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', html)
        scripts = re.findall(r"<script>(.*?)</script>", html, re.DOTALL)
        hashes = {
            "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
            for s in scripts
        }
        policy = dict(d.strip().split(" ", 1) for d in csp.split(";"))
        assert policy["default-src"] == "'none'" and policy["img-src"] == "data:"
        assert set(policy["script-src"].split()) == hashes and scripts  # no 'unsafe-inline'
        assert csp == CSP.format(scripts=policy["script-src"])


def test_big_ring_is_summarised(tmp_path: Path) -> None:
    names = [f"m{i:04d}" for i in range(60)]
    ring = [[("payment", f"PAY-{i // 6}"), ("device", f"dev-{i // 3}")] for i in range(60)]
    tables = make_tables(
        {"R0000000000bb": (ring, names), "R0000000000cc": (star_ring(names[:4]), names[:4])}
    )
    write_report(tmp_path, max_nodes=30, **tables)
    big = tmp_path / "rings" / "R0000000000bb.html"
    data = graph_data(big)
    assert 0 < len(data["nodes"]) <= 30
    html = big.read_text(encoding="utf-8")
    assert 'data-summarised="true"' in html and "Summary: this ring has 60 members" in html
    assert len(re.findall(r"<tr><td>m\d{4}</td>", html)) == 60  # the tables still list everyone
    small = (tmp_path / "rings" / "R0000000000cc.html").read_text(encoding="utf-8")
    assert 'data-summarised="false"' in small and "Summary:" not in small
    # the summary keeps the most shared identifiers and members linked to them
    graph = layout_ring_graph(
        tables["members"].query("ring_id == 'R0000000000bb'"),
        tables["evidence"].query("ring_id == 'R0000000000bb'"),
        max_nodes=30,
    )
    assert graph.summarised and graph.members == 60 and graph.identifiers == 30
    assert graph.drawn_identifiers + graph.drawn_members == len(graph.nodes) <= 30
    drawn = {tip[0][1] for tip in graph.node_tips}
    assert "PAY-0" in drawn
    linked = {graph.edges[i]["from"] for i in range(len(graph.edges))}
    members_drawn = [i for i, tip in enumerate(graph.node_tips) if tip[0][0] == "contributor"]
    assert set(members_drawn) <= linked  # no member drawn without a link


def test_default_cap_draws_a_2000_member_ring_whole() -> None:
    names = [f"m{i:05d}" for i in range(2000)]
    ring = [[("payment", f"PAY-{i // 40}"), ("device", f"dev-{i // 4}")] for i in range(2000)]
    tables = make_tables({"R0000000000dd": (ring, names)})
    graph = layout_ring_graph(tables["members"], tables["evidence"])
    assert MAX_DRAWN_NODES >= 2000 + 550
    assert not graph.summarised and len(graph.nodes) == 2000 + 50 + 500
    assert len(graph.edges) == 4000
    xs = [node["x"] for node in graph.nodes]
    assert max(xs) - min(xs) > 1000  # laid out, not stacked


def test_output_is_deterministic_and_inputs_untouched(tmp_path: Path) -> None:
    tables = hostile_tables()
    before = {k: v.copy(deep=True) for k, v in tables.items() if isinstance(v, pd.DataFrame)}
    write_report(tmp_path / "a", **tables)
    write_report(tmp_path / "b", **tables)
    for page in pages(tmp_path / "a"):
        twin = tmp_path / "b" / page.relative_to(tmp_path / "a")
        assert page.read_bytes() == twin.read_bytes(), page.name
    for name, frame in before.items():
        pd.testing.assert_frame_equal(tables[name], frame)


def test_ring_ids_cannot_leave_the_rings_folder(tmp_path: Path) -> None:
    names = ["a", "b"]
    odd = "R/../../x<y> z"
    write_report(tmp_path, **make_tables({odd: (star_ring(names), names)}))
    assert [p.name for p in (tmp_path / "rings").iterdir()] == [ring_page_name(odd)]
    assert "/" not in ring_page_name(odd)
    hrefs = [a["href"] for tag, a in structure(tmp_path / "report.html").tags if tag == "a"]
    assert hrefs == ["rings/" + ring_page_name(odd).replace("%", "%25")]
    assert not (tmp_path.parent / "x.html").exists()


def test_empty_run_writes_a_report(tmp_path: Path) -> None:
    tables = make_tables({})
    write_report(
        tmp_path,
        rings=tables["rings"],
        members=tables["members"],
        evidence=pd.DataFrame(),
        timeline=pd.DataFrame(),
        manifest=tables["manifest"],
    )
    assert "No rings were found" in (tmp_path / "report.html").read_text(encoding="utf-8")
    assert list((tmp_path / "rings").iterdir()) == []


def test_long_activity_is_bucketed(tmp_path: Path) -> None:
    names = ["a", "b", "c"]
    tables = make_tables({"R00000000000e": (star_ring(names), names)})
    days = pd.date_range(START, periods=900, freq="D")
    tables["timeline"] = pd.DataFrame(
        {
            "ring_id": "R00000000000e",
            "contributor_id": "a",
            "day": days,
            "event_type": "login",
            "n_events": 1,
        }
    )
    write_report(tmp_path, **tables)
    html = (tmp_path / "rings" / "R00000000000e.html").read_text(encoding="utf-8")
    chart = html[html.index('<svg class="timeline"') :]
    chart = chart[: chart.index("</svg>")]
    assert 0 < chart.count("<rect ") <= TIMELINE_BUCKETS
    assert "per 8 days" in html


def write_run_dir(folder: Path, tables: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("rings", "members", "evidence", "timeline"):
        tables[name].to_parquet(folder / f"{name}.parquet", index=False)
    (folder / "manifest.json").write_text(json.dumps(tables["manifest"]), encoding="utf-8")
    return folder


def test_explain_ring_prints_evidence_and_reasons(tmp_path: Path) -> None:
    names = [f"user\x1b[31m{i}" for i in range(25)]
    tables = make_tables({"R00000000000f": (star_ring(names), names)})
    run_dir = write_run_dir(tmp_path / "run", tables)
    text = explain_ring(run_dir, "R00000000000f")
    assert text.startswith("Ring R00000000000f: score 0.970, FLAGGED (threshold 0.5), 25 members")
    assert (
        REASON_MEANINGS[Reason.SHARED_PAYOUT] in text
        and REASON_MEANINGS[Reason.DEVICE_FARM] in text
    )
    assert "payment  PAY-1  25 / 25" in text
    assert "\x1b" not in text and "user\\x1b[31m0" in text  # control characters escaped
    members = [line for line in text.splitlines() if "user\\x1b" in line]
    assert len(members) == 20  # the top 20 by member score
    assert "Members (top 20 of 25 by member score)" in text


def test_explain_ring_errors_name_the_ring_and_the_folder(tmp_path: Path) -> None:
    names = ["a", "b"]
    run_dir = write_run_dir(
        tmp_path / "run", make_tables({"R000000000001": (star_ring(names), names)})
    )
    with pytest.raises(InputError) as missing_ring:
        explain_ring(run_dir, "Rnope\nsecond line")
    message = str(missing_ring.value)
    assert "Rnope" in message and str(run_dir) in message and "\n" not in message
    with pytest.raises(InputError, match="no such run folder"):
        explain_ring(tmp_path / "absent", "R000000000001")
    (run_dir / "evidence.parquet").unlink()
    with pytest.raises(InputError, match=r"evidence\.parquet: not found"):
        explain_ring(run_dir, "R000000000001")
    (run_dir / "rings.parquet").write_text("not parquet", encoding="utf-8")
    with pytest.raises(InputError, match=r"rings\.parquet: cannot be read"):
        explain_ring(run_dir, "R000000000001")


def test_visible_text_escapes_control_characters() -> None:
    assert visible_text("plain <b>") == "plain <b>"
    assert visible_text("a\nb\x1b]0;title\x07\u202e") == "a\\nb\\x1b]0;title\\x07\\u202e"
    assert visible_text(None) == ""


def test_pipeline_output_renders(tmp_path: Path) -> None:
    from ringfinder.pipeline import find_rings

    rows = []
    for i, name in enumerate(HOSTILE[:4]):
        for day in range(3):
            rows.append(
                (
                    f"{name}#{i}",
                    f"2024-03-0{day + 1}T0{i}:00:00Z",
                    "signup" if day == 0 else "login",
                    f"{HOSTILE[i % 2]} device",
                    f"10.1.0.{i + 1}",
                    "PAYOUT-X",
                )
            )
    for i in range(20):
        rows.append(
            (f"user{i}", "2024-03-01T00:00:00Z", "signup", f"d{i}", f"172.16.0.{i + 1}", f"p{i}")
        )
    events = pd.DataFrame(
        rows,
        columns=["contributor_id", "event_time", "event_type", "device_id", "ip", "payout_account"],
    )
    result = find_rings(events)
    write_report(
        tmp_path,
        rings=result.rings,
        members=result.members,
        evidence=result.evidence,
        timeline=result.timeline,
        manifest=result.manifest,
    )
    assert len(result.rings) >= 1
    for ring_id in result.rings["ring_id"]:
        data = graph_data(tmp_path / "rings" / ring_page_name(ring_id))
        assert data["nodes"] and data["edges"]
    for page in pages(tmp_path):
        html = page.read_text(encoding="utf-8")
        assert [h for h in HOSTILE if "<" in h and h in html] == []
