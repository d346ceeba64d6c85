"""``explain_ring``: one ring of a finished run, as plain text for a terminal."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ringfinder.errors import InputError
from ringfinder.visualize.records import RingRecords, identifier_flags, ring_records
from ringfinder.visualize.report import manifest_threshold
from ringfinder.visualize.text import (
    format_number,
    format_time,
    reason_codes,
    reason_meaning,
    visible_text,
)


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
        raise InputError(f"ring '{visible_text(ring_id)}' not found in {run_dir}")
    ring = match.iloc[0].to_dict()
    members = _read_run_table(run_dir, "members", str(ring_id))
    evidence = _read_run_table(run_dir, "evidence", str(ring_id))
    records = ring_records(members, evidence, pd.DataFrame()).get(str(ring_id), RingRecords())
    threshold: float | None = None
    manifest_path = run_dir / "manifest.json"
    if manifest_path.is_file():
        try:
            threshold = manifest_threshold(json.loads(manifest_path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            threshold = None

    t = visible_text
    flagged = "FLAGGED" if bool(ring["flagged"]) else "not flagged"
    if threshold is not None:
        flagged += f" (threshold {threshold:g})"
    lines = [
        f"Ring {t(ring['ring_id'])}: score {format_number(ring['ring_score'])}, {flagged}, "
        f"{format_number(ring['size'])} members",
        f"Active {format_time(ring.get('first_seen'))} to {format_time(ring.get('last_seen'))} "
        f"({format_number(ring.get('time_span_days'), 1)} days); signups spread over "
        f"{format_number(ring.get('signup_span_hours'), 1)} hours",
        "",
        "Reasons:",
    ]
    codes = reason_codes(ring["reasons"])
    width = max((len(t(c)) for c in codes), default=0)
    lines += [f"  {t(c):<{width}}  {reason_meaning(c)}" for c in codes] or ["  (none)"]

    shared, shown = records.shared, records.shared[:30]
    lines += [
        "",
        f"Shared identifiers ({len(shared)}): kind, value, ring members / all users, flags",
    ]
    kind_width = max((len(t(s.kind)) for s in shown), default=0)
    value_width = min(max((len(t(s.identifier)) for s in shown), default=0), 60)
    for s in shown:
        flags = " ".join(identifier_flags(s))
        lines.append(
            f"  {t(s.kind):<{kind_width}}  {t(s.identifier):<{value_width}}  "
            f"{format_number(s.ring_users)} / {format_number(s.degree)}  {flags}".rstrip()
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
            f"  {format_number(m.member_score):<8}  {format_number(m.n_events):>6}  "
            f"{m.first_seen:<16}  {m.last_seen:<16}  {t(m.contributor_id)}"
        )
    return "\n".join(lines)
