"""The HTML pages in a real headless Chromium: they render, hostile data stays inert, nothing loads.

Chromium is driven over the Chrome DevTools Protocol on ``--remote-debugging-pipe`` (file
descriptors 3 and 4, NUL-terminated JSON), so no WebSocket library and no port are needed.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from ringfinder.pipeline import RunResult, find_rings
from ringfinder.visualize import ring_page_name, write_report

CHROMIUM = Path(os.environ.get("RINGFINDER_CHROMIUM", "/usr/bin/chromium"))
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason=f"headless Chromium not installed at {CHROMIUM}"
    ),
]

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--mute-audio",
    "--window-size=1280,900",
    "--remote-debugging-pipe",
)
HOSTILE = (
    '<img src=x onerror="window.__pwned=1">',
    '"><script>window.__pwned=2</script>',
    'see href <a href="javascript:window.__pwned=3">here</a>',
    "javascript:window.__pwned=4",
    "<svg onload=window.__pwned=5>",
)


class Chromium:
    """A headless Chromium and a minimal CDP client over its debugging pipe."""

    def __init__(self, profile: Path, *, timeout: float = 30.0) -> None:
        self.timeout = timeout
        to_browser, self._write_fd = os.pipe()
        self._read_fd, from_browser = os.pipe()
        # The child's pipe ends must not be 3 or 4 themselves, or dup2 would clobber one.
        to_browser, from_browser = _above(to_browser, 5), _above(from_browser, 5)

        def wire_pipe() -> None:  # runs in the child: Chromium reads fd 3 and writes fd 4
            os.dup2(to_browser, 3)
            os.dup2(from_browser, 4)

        self.log_path = profile / "chromium.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            close_fds=False,
            preexec_fn=wire_pipe,
            start_new_session=True,
        )
        os.close(to_browser)
        os.close(from_browser)
        self._ids = itertools.count(1)
        self._lock = threading.Condition()
        self._write_lock = threading.Lock()
        self._responses: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._read_fd, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self._lock:
                    self._lock.notify_all()
                return
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                message = json.loads(raw)
                if message.get("method") == "Page.javascriptDialogOpening":
                    # A dialog blocks the page: record it, then dismiss it.
                    self._post(
                        "Page.handleJavaScriptDialog", {"accept": False}, message.get("sessionId")
                    )
                with self._lock:
                    if "id" in message:
                        self._responses[message["id"]] = message
                    else:
                        self.events.append(message)
                    self._lock.notify_all()

    def _post(self, method: str, params: dict[str, Any] | None, session: str | None) -> int:
        ident = next(self._ids)
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        with self._write_lock:
            while data:
                data = data[os.write(self._write_fd, data) :]
        return ident

    def send(
        self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None
    ) -> dict[str, Any]:
        """Send a CDP command and wait for its result."""
        ident = self._post(method, params, session)
        deadline = time.monotonic() + self.timeout
        with self._lock:
            while ident not in self._responses:
                left = deadline - time.monotonic()
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"chromium exited ({self.process.returncode}); see {self.log_path}"
                    )
                if left <= 0:
                    raise TimeoutError(f"no answer to {method} within {self.timeout} s")
                self._lock.wait(left)
            response = self._responses.pop(ident)
        if "error" in response:
            raise RuntimeError(f"{method}: {response['error']}")
        return response.get("result", {})

    def wait_for(
        self, method: str, session: str, *, timeout: float | None = None
    ) -> dict[str, Any]:
        """Wait for an event of this session."""
        deadline = time.monotonic() + (timeout or self.timeout)
        with self._lock:
            while True:
                for event in self.events:
                    if event.get("method") == method and event.get("sessionId") == session:
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {method} within {timeout or self.timeout} s")
                self._lock.wait(left)

    def session_events(self, session: str, method: str) -> list[dict[str, Any]]:
        with self._lock:
            return [
                e
                for e in self.events
                if e.get("sessionId") == session and e.get("method") == method
            ]

    def close(self) -> None:
        try:
            self._post("Browser.close", None, None)
            self.process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(timeout=5)
            for fd in (self._write_fd, self._read_fd):
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._log.close()


def _above(fd: int, minimum: int) -> int:
    """A duplicate of ``fd`` numbered ``minimum`` or more (the original is closed)."""
    if fd >= minimum:
        return fd
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, minimum)
    os.close(fd)
    return high


class Page:
    """One tab on a local file; dialogs, exceptions, console errors and requests are recorded."""

    def __init__(self, browser: Chromium, path: Path) -> None:
        self.browser = browser
        self.url = path.resolve().as_uri()
        created = browser.send("Target.createTarget", {"url": "about:blank"})
        self.target = created["targetId"]
        attached = browser.send("Target.attachToTarget", {"targetId": self.target, "flatten": True})
        self.session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Network", "Log"):
            browser.send(f"{domain}.enable", session=self.session)
        browser.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False},
            session=self.session,
        )
        self.started = time.perf_counter()
        browser.send("Page.navigate", {"url": self.url}, session=self.session)
        browser.wait_for("Page.loadEventFired", self.session)
        self.loaded = time.perf_counter() - self.started

    def evaluate(self, expression: str) -> Any:
        result = self.browser.send(
            "Runtime.evaluate",
            {
                "expression": expression,
                "returnByValue": True,
                "awaitPromise": True,
            },
            session=self.session,
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:60]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_until(self, expression: str, *, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.evaluate(expression):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expression} still false after {timeout} s")
            time.sleep(0.05)

    def mouse(self, kind: str, x: float, y: float) -> None:
        params: dict[str, Any] = {"type": kind, "x": x, "y": y}
        if kind != "mouseMoved":
            params.update(button="left", clickCount=1)
        self.browser.send("Input.dispatchMouseEvent", params, session=self.session)

    def close(self) -> None:
        self.browser.send("Target.closeTarget", {"targetId": self.target})

    def screenshot(self, path: Path) -> None:
        import base64

        shot = self.browser.send("Page.captureScreenshot", {"format": "png"}, session=self.session)
        path.write_bytes(base64.b64decode(shot["data"]))

    def assert_inert(self) -> None:
        """Nothing injected ran, no dialog opened, no script failed, nothing left the page."""
        assert self.evaluate("typeof window.__pwned") == "undefined"
        assert self.browser.session_events(self.session, "Page.javascriptDialogOpening") == []
        errors = self.browser.session_events(self.session, "Runtime.exceptionThrown")
        assert errors == []
        logged = [
            e["params"]["entry"]
            for e in self.browser.session_events(self.session, "Log.entryAdded")
        ]
        assert [entry for entry in logged if entry.get("level") == "error"] == []
        requests = [
            e["params"]["request"]["url"]
            for e in self.browser.session_events(self.session, "Network.requestWillBeSent")
        ]
        assert requests == [self.url]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    chromium = Chromium(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield chromium
    finally:
        chromium.close()


@pytest.fixture
def open_page(browser: Chromium) -> Iterator[Callable[[Path], Page]]:
    """Open pages in tabs that are closed after the test."""
    opened: list[Page] = []

    def open_(path: Path) -> Page:
        opened.append(Page(browser, path))
        return opened[-1]

    yield open_
    for page in opened:
        with contextlib.suppress(OSError, RuntimeError, TimeoutError):
            page.close()


def hostile_events(n_big: int = 0) -> pd.DataFrame:
    """A ring whose contributor ids, devices and event types are hostile, a plain ring, noise,
    and optionally one ring of ``n_big`` members chained through payout accounts."""
    rows = []
    start = pd.Timestamp("2024-03-01T00:00:00Z")

    def event(contributor: str, hours: float, kind: str, device: str, ip: str, payout: str) -> None:
        rows.append(
            (contributor, (start + pd.Timedelta(hours=hours)).isoformat(), kind, device, ip, payout)
        )

    for i, text in enumerate(HOSTILE):
        device = f"{HOSTILE[(i % 2) + 1]} href device"
        event(f"{text}#{i}", i * 0.3, "signup", device, f"10.0.0.{i + 1}", "PAYOUT-1")
        for day in range(4):
            event(
                f"{text}#{i}",
                24 * day + i,
                HOSTILE[day % len(HOSTILE)],
                device,
                f"10.0.0.{i + 1}",
                "PAYOUT-1",
            )
    for i in range(6):
        event(
            f"farm_{i}",
            200 + i * 0.1,
            "signup",
            f"farm-device-{i % 2}",
            f"192.168.7.{i % 3 + 1}",
            "PAYOUT-2",
        )
    for i in range(40):
        event(f"user_{i}", 5 * i, "signup", f"device-{i}", f"172.16.0.{i + 1}", f"own-{i}")
    for i in range(n_big):
        contributor = f"big_{i:05d}"
        device = f"big-device-{i // 4}"
        event(
            contributor,
            300 + i * 0.01,
            "signup",
            device,
            f"10.9.{i // 250}.{i % 250 + 1}",
            f"BIGPAY{i // 40}",
        )
        event(
            contributor,
            320 + i * 0.01,
            "task_submit",
            device,
            f"10.9.{i // 250}.{i % 250 + 1}",
            f"BIGPAY{(i + 20) // 40}",
        )
    return pd.DataFrame(
        rows,
        columns=["contributor_id", "event_time", "event_type", "device_id", "ip", "payout_account"],
    )


def write_run(folder: Path, events: pd.DataFrame, **options: Any) -> RunResult:
    result = find_rings(events)
    write_report(
        folder,
        rings=result.rings,
        members=result.members,
        evidence=result.evidence,
        timeline=result.timeline,
        manifest=result.manifest,
        **options,
    )
    return result


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunResult]:
    folder = tmp_path_factory.mktemp("run")
    return folder, write_run(folder, hostile_events())


def _hostile_ring(result: RunResult) -> str:
    members = result.members
    return str(members.loc[members["contributor_id"] == f"{HOSTILE[0]}#0", "ring_id"].iloc[0])


NODE_POINTS = """(() => {
  const net = window.ringNetwork;
  document.getElementById("graph").scrollIntoView();
  const box = document.getElementById("graph").getBoundingClientRect();
  const points = net.canvasToDOM ? Object.entries(net.getPositions()).map(([id, p]) => {
    const d = net.canvasToDOM(p);
    return [Number(id), box.left + d.x, box.top + d.y];
  }) : [];
  const inside = p => p[1] > box.left && p[1] < box.right && p[2] > box.top && p[2] < box.bottom;
  return points.filter(inside);
})()"""


def test_report_renders_ring_table_and_filters(
    open_page: Callable[[Path], Page], run: tuple[Path, RunResult]
) -> None:
    folder, result = run
    rings = result.rings
    page = open_page(folder / "report.html")
    assert page.evaluate("document.querySelectorAll('#rings tbody tr').length") == len(rings)
    links = page.evaluate(
        "Array.from(document.querySelectorAll('#rings tbody a')).map(a => a.getAttribute('href'))"
    )
    assert sorted(links) == sorted(f"rings/{ring_page_name(r)}" for r in rings["ring_id"])
    # Sorting by size ascending puts the smallest ring first.
    page.evaluate("document.querySelectorAll('#rings thead button')[3].click()")
    first = page.evaluate("document.querySelector('#rings tbody tr').cells[3].textContent")
    assert int(first) == rings["size"].min()
    # The text filter and the flagged-only toggle hide rows.
    ring_id = str(rings["ring_id"].iloc[-1])
    page.evaluate(f"""(() => {{ const f = document.getElementById('filter');
        f.value = {json.dumps(ring_id.lower())}; f.dispatchEvent(new Event('input')); }})()""")
    assert (
        page.evaluate(
            "Array.from(document.querySelectorAll('#rings tbody tr')).filter(r => !r.hidden).length"
        )
        == 1
    )
    page.assert_inert()


def test_ring_page_hostile_ids_stay_text_on_load_hover_and_click(
    open_page: Callable[[Path], Page], run: tuple[Path, RunResult], tmp_path: Path
) -> None:
    folder, result = run
    ring_id = _hostile_ring(result)
    page = open_page(folder / "rings" / ring_page_name(ring_id))
    page.wait_until("document.getElementById('graph').dataset.drawn === 'true'")
    expected = int(page.evaluate("document.getElementById('graph').dataset.nodeCount"))
    assert expected >= len(HOSTILE) + 2  # the members, the shared devices and the payout account
    assert page.evaluate("window.ringNetwork.body.data.nodes.length") == expected
    assert page.evaluate("document.querySelectorAll('#members tbody tr').length") == len(HOSTILE)
    # The hostile strings are on the page, as text.
    text = page.evaluate("document.body.innerText")
    assert all(f"{h}#{i}" in text for i, h in enumerate(HOSTILE))
    assert (
        page.evaluate(
            "document.querySelectorAll('img, iframe, object, embed, a[href^=javascript]').length"
        )
        == 0
    )
    assert page.evaluate("document.scripts.length") == 4  # graph data, vis-network, graph, tables

    points = page.evaluate(NODE_POINTS)
    assert len(points) == expected
    tooltips = []
    for _, x, y in points:
        page.mouse("mouseMoved", x, y)
        time.sleep(0.25)  # tooltipDelay is 150 ms
        tooltips.append(
            page.evaluate(
                "(() => { const t = document.querySelector('#graph .graph-tip');"
                " return t && !t.hidden ? t.textContent : null; })()"
            )
        )
        page.mouse("mousePressed", x, y)
        page.mouse("mouseReleased", x, y)
    page.assert_inert()  # nothing ran on hover or click, nothing was fetched
    shown = [t for t in tooltips if t]
    assert len(shown) >= len(points) - 1  # every node shows its evidence (overlaps aside)
    assert any('<img src=x onerror="window.__pwned=1">' in t for t in shown)
    assert (
        page.evaluate("document.querySelectorAll('#graph .graph-tip *:not(div):not(b)').length")
        == 0
    )
    assert (
        page.evaluate("document.querySelectorAll('div.vis-tooltip').length") == 0
    )  # vis' popup unused
    assert page.evaluate("document.querySelectorAll('#details *:not(div):not(b)').length") == 0
    assert page.evaluate("document.getElementById('details').textContent.length") > 0
    page.screenshot(tmp_path / "ring.png")
    page.assert_inert()


def test_big_ring_page_draws_every_node(open_page: Callable[[Path], Page], tmp_path: Path) -> None:
    folder = tmp_path / "big"
    rings = write_run(folder, hostile_events(n_big=2000)).rings
    big = rings[rings["size"] == 2000]
    assert len(big) == 1
    page = open_page(folder / "rings" / ring_page_name(str(big["ring_id"].iloc[0])))
    page.wait_until("document.getElementById('graph').dataset.drawn === 'true'")
    count = int(page.evaluate("document.getElementById('graph').dataset.nodeCount"))
    assert count > 2000
    assert page.evaluate("window.ringNetwork.body.data.nodes.length") == count
    assert page.evaluate("document.getElementById('graph').dataset.summarised") == "false"
    # The members table starts short; "show all" adds the rest as text.
    rows = "document.querySelectorAll('#members tbody tr').length"
    assert page.evaluate(rows) < 2000
    page.evaluate("document.querySelector('button.show-more[data-table=members]').click()")
    assert page.evaluate(rows) == 2000
    page.assert_inert()


def test_summarised_ring_page_says_so(open_page: Callable[[Path], Page], tmp_path: Path) -> None:
    folder = tmp_path / "summary"
    result = write_run(folder, hostile_events(), max_nodes=6)
    page = open_page(folder / "rings" / ring_page_name(_hostile_ring(result)))
    page.wait_until("document.getElementById('graph').dataset.drawn === 'true'")
    assert page.evaluate("document.getElementById('graph').dataset.summarised") == "true"
    assert page.evaluate("window.ringNetwork.body.data.nodes.length") <= 6
    assert "Summary" in page.evaluate("document.getElementById('summary-note').textContent")
    page.assert_inert()


def test_a_script_slipped_into_a_page_is_refused_by_its_policy(
    open_page: Callable[[Path], Page], run: tuple[Path, RunResult], tmp_path: Path
) -> None:
    """Were an escaping slip to let a script in, the page's CSP (its own scripts by hash)
    would refuse it, while the page's own scripts still draw the graph."""
    folder, result = run
    page_file = folder / "rings" / ring_page_name(_hostile_ring(result))
    slipped = tmp_path / "slipped.html"
    html = page_file.read_text(encoding="utf-8")
    slipped.write_text(html.replace("</main>", "<script>window.__pwned=9</script></main>", 1))
    page = open_page(slipped)
    page.wait_until("document.getElementById('graph').dataset.drawn === 'true'")
    assert page.evaluate("typeof window.__pwned") == "undefined"
    logged = [
        e["params"]["entry"] for e in page.browser.session_events(page.session, "Log.entryAdded")
    ]
    assert any("Content Security Policy" in entry.get("text", "") for entry in logged), logged
