"""How a CSV file is split: the delimiter and column names read from its header line.

DuckDB's sniffer infers the quoting from a sample, and one unterminated quote in it makes the
sniffer read the whole file without quoting: every good row with a quoted comma is rejected and
the broken one kept, its quote part of a device id. Read as RFC 4180 says (``"`` quotes, and
doubles itself), only the broken line is rejected.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from io import BufferedIOBase
from pathlib import Path

from ringfinder.errors import InputError
from ringfinder.ingest.checks import HEAD_BYTES, file_head, read_bytes

DELIMITERS = (",", "\t", ";", "|")
QUOTE = '"'
CHUNK_BYTES = 1 << 20
QUOTE_BYTE = QUOTE.encode()
LONE_CR = re.compile(rb"\r(?!\n)")


@dataclass(frozen=True)
class Dialect:
    """The delimiter of a CSV file and the names of its columns, in order."""

    delimiter: str
    columns: tuple[str, ...]


def read_dialect(path: Path, mapped: Collection[str], head: bytes | None = None) -> Dialect | None:
    """The dialect of ``path`` from its header line; ``None`` to leave it to DuckDB's sniffer.

    The delimiter is the candidate the header holds most of outside quotes (``,`` when it holds
    none). Names are trimmed, an empty one is ``column<i>`` and a repeated one gets ``_1``,
    ``_2``, … as DuckDB names them. The sniffer is left the files whose header cannot be read
    here (blank, longer than the bytes looked at, compressed other than with gzip) and
    tab-separated ones: those often come unquoted (PostgreSQL, Hive), their ``"`` plain text.

    Raises
    ------
    InputError
        If a column that ``mapped`` names (any case) is in the header more than once.
    """
    head = head or file_head(path)  # ``check_text`` has read it already
    if not head:
        return None
    text = head.decode("utf-8", errors="replace").removeprefix("\ufeff")
    line = re.match(r"[^\r\n]*", text).group()  # type: ignore[union-attr]
    complete = len(line) < len(text) or len(head) < HEAD_BYTES
    if not line.strip() or not complete or line.count(QUOTE) % 2:
        return None
    counts = Counter(c for c in re.sub(r'"[^"]*"', "", line) if c in DELIMITERS)
    delimiter = max(DELIMITERS, key=lambda d: counts[d])  # the first of a tie: "," before others
    if delimiter == "\t":
        return None
    names = next(csv.reader([line], delimiter=delimiter, quotechar=QUOTE, skipinitialspace=True))
    seen: Counter[str] = Counter()
    columns: list[str] = []
    taken: set[str] = set()
    for index, raw in enumerate(names):
        name = candidate = raw.strip() or f"column{index}"
        seen[name.lower()] += 1
        suffix = 0
        while candidate.lower() in taken:
            suffix += 1
            candidate = f"{name}_{suffix}"
        columns.append(candidate)
        taken.add(candidate.lower())
    for column in mapped:
        if seen[column.lower()] > 1:
            raise InputError(
                f"{path}: column {column!r} is in the header {seen[column.lower()]} times; "
                f"which one to read is ambiguous: rename or drop the others"
            )
    return Dialect(delimiter, tuple(columns))


def lone_carriage_return(path: Path) -> int | None:
    """The line of the first carriage return outside ``"`` quotes that ends no line (no line
    feed follows it), where DuckDB's CSV reader stops with "invalid state"; ``None`` if there is
    none, the file's lines end in CR alone (a classic Mac file), or it cannot be read here.

    Inside quotes a CR is data, and DuckDB reads it.
    """
    return read_bytes(path, _first_lone_cr)


def _first_lone_cr(handle: BufferedIOBase) -> int | None:
    """``lone_carriage_return`` of an open file, read a chunk at a time."""
    lines, quotes, carry = 1, 0, b""
    while data := handle.read(CHUNK_BYTES):
        chunk, carry = carry + data, b""
        end = len(chunk)
        if chunk.endswith(b"\r"):  # whether a line feed follows is in the next chunk
            carry, end = b"\r", end - 1
        start = 0
        for match in LONE_CR.finditer(chunk, 0, end):
            lines += chunk.count(b"\n", start, match.start())
            quotes += chunk.count(QUOTE_BYTE, start, match.start())
            start = match.start()
            if quotes % 2 == 0:
                # With no line feed before it, it ends the first line: a classic Mac file.
                return lines if lines > 1 else None
        lines += chunk.count(b"\n", start, end)
        quotes += chunk.count(QUOTE_BYTE, start, end)
    return None
