"""Atomic outputs: a run writes beside the target and swaps it in whole, or leaves it alone.

A run killed at any point (SIGKILL: no clean-up code runs) leaves the previous output as it
was, and whatever it left beside the target is cleared by the next run.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from ringfinder.cli import main
from ringfinder.export import atomic_folder
from ringfinder.synth import Scenario, generate

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL and pid checks are POSIX")

HEADER = "contributor_id,event_time,event_type,device_id,ip,payout_account\n"


def small_events(folder: Path) -> Path:
    """Three accounts on one phone and one payout account, and three loners."""
    path = folder / "small.csv"
    rows = [
        f"r{i},2024-03-01T0{i}:00:00Z,signup,farm-phone,198.51.100.{i},GB00 RING\n"
        for i in range(3)
    ]
    rows += [f"h{i},2024-03-02T0{i}:00:00Z,task,own{i},203.0.113.{i},OWN{i}\n" for i in range(3)]
    path.write_text(HEADER + "".join(rows), encoding="utf-8")
    return path


def detect_in_process(events: Path, out: Path) -> None:
    result = CliRunner().invoke(main, ["detect", str(events), "--out", str(out), "--no-html"])
    assert result.exit_code == 0, result.output


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with the hash of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.glob(f".{out.name}.*"))


def dead_pid() -> int:
    """The pid of a process that has ended and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def ringfinder_script() -> str:
    script = Path(sys.executable).parent / "ringfinder"
    found = str(script) if script.exists() else shutil.which("ringfinder")
    assert found, "the ringfinder console script is not installed"
    return found


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A generated export big enough that a run takes seconds: (events, config)."""
    made = generate(tmp_path_factory.mktemp("large"), scenario=Scenario(contributors=20000), seed=1)
    return made.events_path, made.config_path


def start_detect(events: Path, config: Path, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [ringfinder_script(), "detect", str(events), "--config", str(config), "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_a_run_killed_while_writing_leaves_the_previous_output(
    large: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    detect_in_process(small_events(tmp_path), out)
    before = snapshot(out)
    members = (out / "members.csv").read_bytes()

    run = start_detect(*large, out)
    staging = tmp_path / f".out.tmp-{run.pid}"
    deadline = time.monotonic() + 120
    while run.poll() is None and time.monotonic() < deadline:
        if staging.is_dir() and any(staging.iterdir()):  # mid-way through writing the outputs
            os.kill(run.pid, signal.SIGKILL)
            break
        time.sleep(0.001)
    run.wait()
    assert run.returncode == -signal.SIGKILL, "the run ended before it could be killed mid-write"

    assert (out / "members.csv").read_bytes() == members
    assert snapshot(out) == before  # nothing added, nothing half-written
    assert leftovers(out) == [staging.name]  # what a SIGKILL leaves: the staging folder only

    detect_in_process(small_events(tmp_path), out)  # the next run is not disturbed, and tidies up
    assert leftovers(out) == []
    assert (out / "members.csv").read_bytes() == members


def test_a_run_killed_early_leaves_the_previous_output(
    large: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    detect_in_process(small_events(tmp_path), out)
    before = snapshot(out)
    run = start_detect(*large, out)
    time.sleep(1.0)
    assert run.poll() is None, "the run ended within a second: the input is too small"
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    assert snapshot(out) == before
    assert all(not name.startswith(".out.old-") for name in leftovers(out))


def test_a_finished_run_replaces_the_whole_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text("{}")
    (out / "stale.csv").write_text("from an older version")
    with atomic_folder(out) as staging:
        assert staging.parent == tmp_path and staging.name == f".out.tmp-{os.getpid()}"
        assert not (out / "members.csv").exists()  # nothing is written into the target itself
        (staging / "members.csv").write_text("new")
        (staging / "manifest.json").write_text("{}")
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "members.csv"]
    assert leftovers(out) == []


def test_a_failed_run_leaves_the_target_and_no_staging(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text("old")
    with pytest.raises(RuntimeError), atomic_folder(out) as staging:
        (staging / "manifest.json").write_text("half")
        raise RuntimeError("disk full")
    assert (out / "manifest.json").read_text() == "old"
    assert leftovers(out) == []


def test_staging_of_dead_runs_is_removed_and_of_live_runs_kept(tmp_path: Path) -> None:
    out = tmp_path / "out"
    dead, alive = dead_pid(), os.getppid()
    for name in (f".out.tmp-{dead}", f".out.old-{dead}", f".out.tmp-{alive}", ".out.tmp-notapid"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "members.csv").write_text("half")
    (tmp_path / ".outer.tmp-1").mkdir()  # another target's name: not ours to touch
    out.mkdir()
    (out / "manifest.json").write_text("previous")
    with pytest.raises(RuntimeError), atomic_folder(out):
        raise RuntimeError("stop before writing")
    assert leftovers(out) == [f".out.tmp-{alive}", ".out.tmp-notapid"]
    assert (tmp_path / ".outer.tmp-1").is_dir()
    assert (out / "manifest.json").read_text() == "previous"


def test_an_output_moved_aside_by_a_killed_run_is_put_back(tmp_path: Path) -> None:
    """Killed between moving the old output aside and moving the new one in: the target is
    missing and ``.out.old-PID`` holds the previous output. The next run restores it first."""
    out = tmp_path / "out"
    aside = tmp_path / f".out.old-{dead_pid()}"
    aside.mkdir()
    (aside / "manifest.json").write_text("previous")
    with pytest.raises(RuntimeError), atomic_folder(out):
        raise RuntimeError("this run fails too")
    assert (out / "manifest.json").read_text() == "previous"
    assert leftovers(out) == []
