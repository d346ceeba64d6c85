"""Input files: formats by extension, globs and folders, fingerprints, known-bad lists."""

from __future__ import annotations

import csv
import glob
import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ringfinder.errors import InputError
from ringfinder.normalise import WHITESPACE
from ringfinder.schema import CONTRIBUTOR

FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}


# Files an input folder may hold beside the data: with a forced format, everything else is read.
NOT_DATA = {".toml", ".yaml", ".yml", ".ini", ".cfg", ".md", ".html", ".htm", ".py", ".sh", ".pdf"}


def _format_of(path: Path, forced: str) -> str:
    if forced != "auto":
        return forced
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".zst"):
        suffixes = suffixes[:-1]
    fmt = FORMATS.get(suffixes[-1] if suffixes else "")
    if fmt is None:
        raise InputError(
            f"{path}: unknown file type; use .csv, .parquet or .jsonl, or set input.format"
        )
    return fmt


def resolve_inputs(
    inputs: Sequence[str | Path], *, forced_format: str = "auto"
) -> list[tuple[Path, str]]:
    """Expand globs and folders into a sorted list of (file, format)."""
    files: list[Path] = []
    for item in inputs:
        text = str(item)
        path = Path(text)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if _is_data_file(p, path, forced_format))
            if not found:
                raise InputError(f"{path}: folder holds no .csv, .parquet or .jsonl files")
            files.extend(found)
        elif any(ch in text for ch in "*?["):
            matched = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            if not matched:
                raise InputError(f"{text}: no input files match this pattern")
            files.extend(matched)
        elif path.is_file():
            files.append(path)
        else:
            raise InputError(f"{path}: input file not found")
    unique = sorted(dict.fromkeys(files))
    return [(p, _format_of(p, forced_format)) for p in unique]


def _is_data_file(path: Path, folder: Path, forced: str) -> bool:
    """Whether a file found in input ``folder`` is read: by its extension (with a forced format,
    any but a known other kind of file's), not hidden or a marker, nor in a hidden or marker
    folder (``.``, ``_``: ``_SUCCESS``, ``.crc``, ``_temporary``, ``.ipynb_checkpoints``), and
    not in an earlier ringfinder output (a folder with ``manifest.json``)."""
    parts = path.relative_to(folder).parts
    if not path.is_file() or any(part.startswith((".", "_")) for part in parts):
        return False
    if (path.parent / "manifest.json").is_file():
        return False
    if forced != "auto":
        return path.suffix.lower() not in NOT_DATA
    try:
        _format_of(path, "auto")
    except InputError:
        return False
    return True


def fingerprint(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def read_known_bad(path: str | Path) -> list[str]:
    """Contributor ids from a known-bad list: one id per line, or a CSV with a contributor_id column.

    Each line is one row: a quote left open ends with its line, instead of joining the ids of
    the lines after it into one.

    Examples
    --------
    >>> read_known_bad("banned.txt")  # doctest: +SKIP
    ['c_0001', 'c_0042']
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
        lines = re.split(r"\r\n|\r|\n", text) if text else []  # not at U+2028 & co.
    except FileNotFoundError:
        raise InputError(f"{path}: known-bad file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read known-bad file: {exc}") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        try:
            rows.append(next(csv.reader([line]), []))
        except csv.Error as exc:
            raise InputError(f"{path}: line {number}: {exc}") from None
    if not rows:
        raise InputError(f"{path}: known-bad file is empty")
    header = [cell.strip().lower() for cell in rows[0]]
    column, body = (header.index(CONTRIBUTOR), rows[1:]) if CONTRIBUTOR in header else (0, rows)
    cells = (row[column].strip(WHITESPACE) for row in body if len(row) > column)
    ids = sorted({cell for cell in cells if cell})
    if not ids:
        raise InputError(f"{path}: known-bad file lists no contributor id")
    return ids
