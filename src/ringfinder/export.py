"""Export: the output files of a run, written atomically into the target folder.

CSV text cells that a spreadsheet would read as a formula are neutralised (OWASP CSV
injection); Parquet and JSON keep the raw values.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from ringfinder.errors import ConfigError
from ringfinder.normalise import sql_identifier, sql_literal
from ringfinder.schema import (
    FORMULA_GUARD,
    FORMULA_START,
    MEMBERS_COLUMNS,
    QUARANTINE_COLUMNS,
    RINGS_COLUMNS,
)


def iso_utc(stamps: pd.Series) -> pd.Series:
    """Times as ISO 8601 UTC text to the second (``2026-01-02T03:04:05Z``); missing stays missing.

    NumPy writes the text 4x faster than ``Series.dt.strftime``, which formats value by value.

    >>> iso_utc(pd.Series(pd.to_datetime(["2026-01-02 03:04:05.9", None]))).tolist()
    ['2026-01-02T03:04:05Z', nan]
    """
    if stamps.dt.tz is not None:
        stamps = stamps.dt.tz_convert(None)
    seconds = stamps.to_numpy(dtype="datetime64[s]")
    text = np.char.add(np.datetime_as_string(seconds, unit="s"), "Z")
    return pd.Series(text, index=stamps.index, dtype=object).where(stamps.notna())


GUARDED_START = (*FORMULA_START, FORMULA_GUARD)


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` fit for CSV: formulas neutralised, times as ISO 8601 UTC, flags as text.

    A text cell that starts like a formula gets a quote before it, so it stays text; so does
    one that starts with a quote, so that ``unguarded`` can tell the two apart.

    Examples
    --------
    >>> spreadsheet_safe(pd.DataFrame({"id": ["=1+2", "c1", "'=1"]}))["id"].tolist()
    ["'=1+2", 'c1', "''=1"]
    """
    out = frame.copy()
    for column in out.columns:
        series = out[column]
        if pd.api.types.is_datetime64_any_dtype(series):
            out[column] = iso_utc(series)
        elif pd.api.types.is_bool_dtype(series):
            out[column] = series.map({True: "true", False: "false"})
        elif pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series):
            try:
                guarded = series.str.startswith(GUARDED_START).fillna(False).astype(bool)
            except AttributeError:  # .str refuses a column that holds no text at all
                continue
            if guarded.any():
                out[column] = series.mask(guarded, FORMULA_GUARD + series[guarded].astype(str))
    return out


def unguarded(values: pd.Series) -> pd.Series:
    """Text read back from a CSV export as it was before ``spreadsheet_safe``.

    >>> unguarded(pd.Series(["'=1+2", "c1", "''=1", "'c"])).tolist()
    ['=1+2', 'c1', "'=1", "'c"]
    """
    guarded = values.str.startswith(FORMULA_GUARD) & values.str[1:2].isin(GUARDED_START)
    return values.where(~guarded, values.str[1:])


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` to ``path`` as spreadsheet-safe CSV.

    DuckDB's writer quotes and formats numbers as pandas' ``to_csv`` does (shortest round-trip
    floats, quotes only where needed) at a fifth of the time. Only an empty text differs: DuckDB
    quotes it to tell it from a missing value, so it is written missing, as pandas writes it.

    A spreadsheet set to a ``;`` list separator splits unquoted cells at ``;``, and a part
    after one (``a;=1+1``) would start a formula there: a text column holding a ``;`` is
    quoted throughout.
    """
    safe = spreadsheet_safe(frame)
    quoted = []
    for column in safe.columns:
        if pd.api.types.is_object_dtype(safe[column]) or pd.api.types.is_string_dtype(safe[column]):
            text = safe[column]
            safe[column] = text.mask(text.eq("").fillna(False).astype(bool))
            if text.astype(str).str.contains(";", regex=False).any():
                quoted.append(sql_identifier(str(column)))
    force = f", FORCE_QUOTE ({', '.join(quoted)})" if quoted else ""
    with duckdb.connect() as con:
        con.register("rf_csv", safe)
        con.execute(f"COPY rf_csv TO {sql_literal(str(path))} (FORMAT csv, HEADER{force})")


def write_table(frame: pd.DataFrame, folder: Path, name: str, *, parquet: bool) -> None:
    """Write ``name.csv`` (spreadsheet-safe) and, if asked, ``name.parquet`` (raw values)."""
    write_csv(frame, folder / f"{name}.csv")
    if parquet:
        frame.to_parquet(folder / f"{name}.parquet", index=False)


def rule_input_lines(members: pd.DataFrame) -> Iterator[str]:
    """One JSON object per flagged contributor, for rule engines."""
    # astype(bool): an empty object column would index columns, not rows (no rings found).
    flagged = members[members["flagged"].astype(bool)].sort_values("contributor_id")
    for row in flagged.itertuples(index=False):
        record: dict[str, Any] = {
            "contributor_id": row.contributor_id,
            "ring_id": row.ring_id,
            "ring_score": float(row.ring_score),
            "member_score": float(row.member_score),
            "flagged": True,
            "reasons": [r for r in str(row.reasons).split(";") if r],
            "action": row.action,
        }
        yield json.dumps(record, ensure_ascii=False, sort_keys=True)


def _pid_alive(pid: int) -> bool:
    if os.name != "posix":
        return True  # no safe check here: leave the folder alone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists, under another user
    return True


def _clean_stale(target: Path) -> None:
    """Clear what killed runs left beside ``target``: ``.NAME.tmp-PID`` staging folders go,
    and ``.NAME.old-PID`` goes too, unless the run died between moving the previous output
    aside and moving the new one in: then it is the output, and goes back in place."""
    for path in sorted(target.parent.glob(f".{glob.escape(target.name)}.*-*")):
        mark, _, pid = path.name[len(target.name) + 1 :].rpartition("-")
        if mark not in (".tmp", ".old") or not pid.isdigit() or _pid_alive(int(pid)):
            continue
        if mark == ".old" and not target.exists():
            path.rename(target)
        else:
            shutil.rmtree(path, ignore_errors=True)


def check_out_folder(target: Path, keep: Sequence[Path] = ()) -> None:
    """Refuse an output folder that replacing whole would lose something in.

    ``target`` must be new, empty or an earlier output (with ``manifest.json``), and hold none
    of the files in ``keep`` (the run's inputs, config, history): replacing it deletes them.
    """
    target = target.resolve()
    if target.is_dir() and any(target.iterdir()) and not (target / "manifest.json").is_file():
        raise ConfigError(
            f"{target}: folder exists and is not a ringfinder output (no manifest.json); "
            f"--out must name a new or empty folder, or an earlier output to replace"
        )
    for path in keep:
        if path.resolve().is_relative_to(target):
            raise ConfigError(
                f"{path}: lies inside --out {target}, which the run replaces whole; "
                f"move it out or write the outputs to another folder"
            )


@contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """Yield a fresh folder beside ``target``; on success it replaces ``target`` whole."""
    target = target.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(target)
    check_out_folder(target)
    staging = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    previous = target.parent / f".{target.name}.old-{os.getpid()}"
    if target.exists():
        target.rename(previous)
    staging.rename(target)
    shutil.rmtree(previous, ignore_errors=True)


def write_outputs(
    folder: Path,
    *,
    members: pd.DataFrame,
    rings: pd.DataFrame,
    quarantine: pd.DataFrame,
    manifest: dict[str, Any],
    parquet: bool = True,
) -> None:
    """Write members, rings, rule inputs, quarantine and the manifest into ``folder``."""
    write_table(members[list(MEMBERS_COLUMNS)], folder, "members", parquet=parquet)
    write_table(rings[list(RINGS_COLUMNS)], folder, "rings", parquet=parquet)
    with (folder / "rule_inputs.jsonl").open("w", encoding="utf-8", newline="\n") as handle:
        for line in rule_input_lines(members):
            handle.write(line + "\n")
    write_csv(quarantine[list(QUARANTINE_COLUMNS)], folder / "quarantine.csv")
    (folder / "manifest.json").write_text(
        json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8"
    )
