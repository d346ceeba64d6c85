"""Writing the files: events as Parquet or CSV (gzipped or not), ``labels.csv`` and the
detect config ``config.toml``."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ringfinder.schema import CONTRIBUTOR, EVENT_TYPE, TIME
from ringfinder.synth.cells import bool_mask
from ringfinder.synth.population import World
from ringfinder.synth.render import Strings
from ringfinder.synth.scenario import (
    DEFAULT_KINDS,
    EVENT_COLUMNS,
    LABEL_COLUMNS,
    RING_TYPES,
    ROLES,
    TASK_COLUMN,
    USER_AGENT_COLUMN,
    Format,
)

_T = TypeVar("_T")


def _ahead(items: Iterator[_T]) -> Iterator[_T]:
    """Yield from ``items`` while a worker thread computes the next item (numpy and pyarrow
    release the GIL, so rendering one batch overlaps with writing the previous one)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        upcoming = pool.submit(next, items, None)
        while (item := upcoming.result()) is not None:
            upcoming = pool.submit(next, items, None)
            yield item


def write_events(
    path: Path,
    fmt: Format,
    names: Mapping[str, str],
    batches: Iterator[tuple[list[pa.Array], np.ndarray]],
) -> None:
    """Write event batches as Parquet, or as CSV (ragged rows as short or long lines).

    The next batch is computed in a worker thread while one is written.
    """
    header = [names[column] for column in EVENT_COLUMNS]
    batches = _ahead(batches)
    if fmt == "parquet":
        schema = pa.schema([(name, pa.string()) for name in header])
        # dictionaries pay off only for the few-valued columns
        repeated = [names[EVENT_TYPE], names[TASK_COLUMN], names[USER_AGENT_COLUMN]]
        with pq.ParquetWriter(path, schema, compression="zstd", use_dictionary=repeated) as writer:
            for columns, _ in batches:
                writer.write_table(pa.table(columns, schema=schema))
        return
    with path.open("wb") as raw, ExitStack() as stack:
        write = raw.write
        if fmt == "csv.gz":  # no file name or time in the header: same bytes every run
            gz = gzip.GzipFile("", "wb", compresslevel=3, fileobj=raw, mtime=0)
            write = stack.enter_context(gz).write
        _write_csv_header(write, header)
        for columns, ragged in batches:
            _write_csv_lines(write, columns, ragged)


def _write_csv_header(write: Callable[[memoryview], object], names: Sequence[str]) -> None:
    _write_csv_lines(write, [csv_cell(pa.array([name])) for name in names])


def _write_csv_lines(
    write: Callable[[memoryview], object], cells: list[pa.Array], ragged: np.ndarray | None = None
) -> None:
    """Write one CSV line per row of ``cells``, which are quoted already where they must be.

    (Quoting is left to the callers because only the user agents ever need it, and they are
    quoted once in their dictionary instead of row by row.) Ragged rows are cut after four
    fields, or (every other one) written with the last field unquoted -- a user agent's comma
    then splits it -- or, if it has none, with a trailing comma.
    """
    join = {"null_handling": "replace", "null_replacement": ""}
    lines = pc.binary_join_element_wise(*cells, ",", **join)
    if ragged is not None and ragged.any():
        where = pa.array(np.flatnonzero(ragged))
        short = pc.binary_join_element_wise(*(c.take(where) for c in cells[:4]), ",", **join)
        last = pc.replace_substring(cells[-1].take(where), '"', "")  # agents hold no quotes
        unquoted = pc.binary_join_element_wise(
            *(c.take(where) for c in cells[:-1]), last, ",", **join
        )
        trailing = pc.binary_join_element_wise(lines.take(where), pa.scalar(""), ",")
        long = pc.if_else(pc.match_substring(last, ","), unquoted, trailing)
        pick_short = bool_mask(np.arange(len(where)) % 2 == 0)
        lines = pc.replace_with_mask(lines, bool_mask(ragged), pc.if_else(pick_short, short, long))
    text = pc.binary_join_element_wise(lines, pa.scalar(""), "\n")
    # Large inputs come as chunked arrays (one chunk per take of a big column): write each.
    for chunk in text.chunks if isinstance(text, pa.ChunkedArray) else [text]:
        offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int32)
        first, last_byte = offsets[chunk.offset], offsets[chunk.offset + len(chunk)]
        write(memoryview(chunk.buffers()[2])[first:last_byte])


def csv_cell(values: pa.Array) -> pa.Array:
    """Quote a cell (doubling its quotes) when it holds a comma, quote or line break."""
    needs = pc.match_substring_regex(values, '[,"\r\n]')
    quoted = pc.binary_join_element_wise(
        pa.scalar('"'), pc.replace_substring(values, '"', '""'), pa.scalar('"'), ""
    )
    return pc.if_else(needs, quoted, values)


def write_labels(path: Path, world: World, strings: Strings) -> None:
    """``labels.csv``: one row per contributor, by clean contributor id."""
    order = pa.array(strings.contributor_order)
    ring = world.ring
    ring_ids = pa.array(
        [f"R-{RING_TYPES[r.kind]}-{r.number:03d}" for r in world.rings], pa.string()
    )
    ring_types = pa.array([r.kind for r in world.rings], pa.string())
    ring_index = pa.array(ring, mask=ring < 0)
    columns = [
        strings.contributor,
        pa.array(np.where(ring >= 0, "fraud", "benign")),
        ring_ids.take(ring_index),
        ring_types.take(ring_index),
        pa.array(ROLES).take(pa.array(world.role)),
    ]
    with path.open("wb") as sink:
        _write_csv_header(sink.write, LABEL_COLUMNS)
        _write_csv_lines(sink.write, [c.take(order) for c in columns])


def write_config(path: Path, names: Mapping[str, str], fmt: Format, seed: int) -> None:
    """``config.toml``: the ``[input]`` section of a detect config for the columns written."""
    lines = [
        "# ringfinder detect config for the synthetic events beside it",
        f"# (written by ringfinder.synth.generate, seed {seed}); other sections keep defaults.",
        "[input]",
        f"format = {_toml(fmt.removesuffix('.gz'))}",
        f"contributor = {_toml(names[CONTRIBUTOR])}",
        f"timestamp = {_toml(names[TIME])}",
        f"event_type = {_toml(names[EVENT_TYPE])}",
        f"target = {_toml(names[TASK_COLUMN])}",
    ]
    for kind, kind_config in DEFAULT_KINDS.items():
        lines += ["", f"[input.kinds.{kind}]", f"column = {_toml(names[kind_config.column])}"]
        lines += [
            f"{key} = {_toml(getattr(kind_config, key))}"
            for key in ("normaliser", "weight", "hub_cap", "strong")
        ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _toml(value: str | float | bool) -> str:
    """A TOML literal: JSON string escapes are valid TOML basic-string escapes."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, str) else repr(value)
