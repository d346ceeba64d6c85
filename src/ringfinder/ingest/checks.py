"""Checks that refuse an unusable input file whole, with one line that says why."""

from __future__ import annotations

import codecs
import gzip
from collections.abc import Callable
from io import BufferedIOBase
from pathlib import Path
from typing import TypeVar

import duckdb

from ringfinder.config import InputConfig
from ringfinder.errors import InputError

# DuckDB reads UTF-8 only; these byte-order marks say a text file is in another encoding.
FOREIGN_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)
HEAD_BYTES = 1 << 16
PARQUET_MAGIC = b"PAR1"
# Parquet column types that are not one value per row: a mapped column of these is unusable.
NESTED_TYPES = ("STRUCT", "MAP", "UNION")
T = TypeVar("T")


def read_bytes(path: Path, read: Callable[[BufferedIOBase], T]) -> T | None:
    """``read`` of the file's bytes, decompressed if gzipped; ``None`` when they cannot be read
    here: a zstd file (DuckDB reads those, the standard library cannot), or an unreadable one."""
    try:
        if path.suffix.lower() == ".zst":
            return None
        with gzip.open(path, "rb") if path.suffix.lower() == ".gz" else path.open("rb") as handle:
            return read(handle)
    except (OSError, EOFError):
        return None  # DuckDB reports the unreadable or corrupt file


def file_head(path: Path) -> bytes | None:
    """The first bytes of a file (``read_bytes``)."""
    return read_bytes(path, lambda handle: handle.read(HEAD_BYTES))


def check_text(path: Path, fmt: str) -> bytes | None:
    """Refuse a CSV or JSON-lines file that is not UTF-8 text before DuckDB misreads it; return
    the file's head (``file_head``) for the next look at it.

    A UTF-16 file would come out as column names full of NUL bytes, and a header line that is
    not UTF-8 would be rejected, making the first data line the header. Bad bytes further
    down are left to the reader, which quarantines those lines.
    """
    head = file_head(path)
    if head is None:
        return None
    if head.startswith(PARQUET_MAGIC):
        raise InputError(
            f"{path}: file is Parquet, not {fmt}: name it .parquet, or set input.format to "
            f"'auto' or 'parquet'"
        )
    for bom, encoding in FOREIGN_BOMS:
        if head.startswith(bom):
            raise InputError(
                f"{path}: file is {encoding} text (it starts with a {encoding} byte-order mark); "
                f"ringfinder reads UTF-8: re-encode it, e.g. iconv -f {encoding} -t UTF-8"
            )
    if fmt == "jsonl":
        _check_json_layout(path, head)
        return head
    header, newline, _ = head.partition(b"\n")
    complete = bool(newline) or len(head) < HEAD_BYTES
    try:
        codecs.getincrementaldecoder("utf-8")().decode(header, final=complete)
        readable = b"\x00" not in header
    except UnicodeDecodeError:
        readable = False
    if not readable:
        raise InputError(
            f"{path}: the header line is not UTF-8 text (binary data, or another encoding such as "
            f"UTF-16 or Latin-1); re-encode the file as UTF-8, e.g. iconv -f ENCODING -t UTF-8"
        )
    return head


def _check_json_layout(path: Path, head: bytes) -> None:
    """Refuse a JSON file that is not JSON lines: UTF-16 without a byte-order mark (a NUL in
    every other byte of ASCII text; a stray NUL only spoils its line), or a pretty-printed JSON
    array (its first line a lone ``[``). A line that is an array is only one bad line: it is
    quarantined."""
    start = head[:4096]
    if start.count(0) > len(start) // 4:
        raise InputError(
            f"{path}: file is not UTF-8 text: a NUL in every other byte is UTF-16 without a "
            f"byte-order mark; re-encode it, e.g. iconv -f UTF-16LE -t UTF-8"
        )
    lines = head.removeprefix(codecs.BOM_UTF8).splitlines()
    if next((line.strip() for line in lines if line.strip()), b"") == b"[":
        raise InputError(
            f"{path}: file is a JSON array, not JSON lines (one object per line); convert it, "
            f"e.g. jq -c '.[]' {path.name} > events.jsonl"
        )


def column_types(con: duckdb.DuckDBPyConnection, relation: str) -> dict[str, str]:
    """DuckDB type of each column of ``relation`` (a table function or a subquery), by
    lower-case name."""
    return {
        name.lower(): kind
        for name, kind, *_ in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()
    }


def check_parquet_types(types: dict[str, str], path: Path | str, config: InputConfig) -> None:
    """A mapped column of a Parquet file or query (``types`` from ``column_types``) must hold
    one value per row, not a struct, list or map."""
    for key, column in mapped_columns(config).items():
        kind = types.get(column.lower(), "")
        if kind.startswith(NESTED_TYPES) or kind.endswith("]"):
            raise InputError(
                f"{path}: column {column!r} ({key}) has the nested type {kind}; "
                f"expected text, a number or a timestamp"
            )


def check_encoding(
    con: duckdb.DuckDBPyConnection, index: int, path: Path, config: InputConfig
) -> None:
    """A file with more non-UTF-8 lines than ``input.max_bad_fraction`` is refused whole."""
    # fetchall, not fetchone: an unfinished result blocks create_function on this connection.
    ((bad, lines),) = con.execute(
        f"SELECT count(DISTINCT line) FILTER (error_type = 'INVALID ENCODING'), "
        f"count(DISTINCT line) FROM rf_rejects_{index}"
    ).fetchall()
    if not bad:
        return
    lines += con.execute(f"SELECT count(*) FROM rf_part_{index}").fetchall()[0][0]
    if bad / lines > config.max_bad_fraction:
        raise InputError(
            f"{path}: {bad} of {lines} lines are not valid UTF-8, more than input.max_bad_fraction "
            f"= {config.max_bad_fraction}; the file looks binary or in another encoding such as "
            f"Latin-1: re-encode it as UTF-8, e.g. iconv -f LATIN1 -t UTF-8"
        )


def mapped_columns(config: InputConfig) -> dict[str, str]:
    """Config key → source column, for every column the config maps."""
    mapped = {"input.contributor": config.contributor, "input.timestamp": config.timestamp}
    if config.event_type:
        mapped["input.event_type"] = config.event_type
    if config.target:
        mapped["input.target"] = config.target
    for name, kind in config.kinds.items():
        mapped[f"input.kinds.{name}.column"] = kind.column
    return mapped
