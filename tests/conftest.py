"""Shared fixtures: writing small event files with known contents."""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

# The columns the default config maps, in the order the event files are written.
EVENT_COLUMNS = ("contributor_id", "event_time", "event_type", "device_id", "ip", "payout_account")

EventWriter = Callable[..., Path]


@pytest.fixture
def write_events(tmp_path: Path) -> EventWriter:
    """Write rows (tuples in ``EVENT_COLUMNS`` order, or dicts) to a CSV file in ``tmp_path``.

    ``write_events(rows, name="events.csv", header=EVENT_COLUMNS)`` returns the file's path.
    """

    def write(
        rows: Sequence[Sequence[str] | dict[str, str]],
        name: str = "events.csv",
        header: Sequence[str] = EVENT_COLUMNS,
    ) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(header)
            for row in rows:
                writer.writerow([row.get(c, "") for c in header] if isinstance(row, dict) else row)
        return path

    return write
