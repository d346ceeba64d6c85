"""DuckDB query results as pandas frames, with text columns moved through Arrow.

DuckDB's ``.df()`` makes a Python string of every text value before pandas stores it: for the
ring evidence at 10M events (400k rows, five text columns) that took 0.54 s, where Arrow hands
the same strings to pandas in 0.09 s. Everything else keeps ``.df()``'s conversions (nullable
integers, dates as timestamps), so callers see the frames they always did. Both steps, and
staging, rely on ``insertion_order_kept`` for rows that come back in the order they went in.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import duckdb
import pandas as pd
import pyarrow as pa


@contextmanager
def insertion_order_kept(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Within the block, results keep the order of their input rows (``row_number() OVER ()``
    counts rows as they came, a scan of an Arrow table returns them as they stand): DuckDB
    promises it only with ``preserve_insertion_order``, which the pipeline turns off."""
    ((previous,),) = con.execute("SELECT current_setting('preserve_insertion_order')").fetchall()
    con.execute("SET preserve_insertion_order = true")
    try:
        yield
    finally:
        con.execute(f"SET preserve_insertion_order = {bool(previous)}")


def _is_text(field: pa.Field) -> bool:
    return bool(
        pa.types.is_string(field.type)
        or pa.types.is_large_string(field.type)
        or pa.types.is_string_view(field.type)
    )


def fetch_frame(con: duckdb.DuckDBPyConnection, query: str) -> pd.DataFrame:
    """The result of ``query`` on ``con``, equal to ``con.execute(query).df()``, faster.

    Examples
    --------
    >>> fetch_frame(duckdb.connect(), "SELECT 'a' AS s, 1 AS i").to_dict("records")
    [{'s': 'a', 'i': 1}]
    """
    table = con.sql(query).to_arrow_table()
    text = [field.name for field in table.schema if _is_text(field)]
    # In insertion order: else the scan of the other columns could return their rows in
    # another order than the text columns'.
    with insertion_order_kept(con):
        if not text or not table.num_rows:  # nothing to gain; and empty text stays object
            return con.from_arrow(table).df()
        other = [name for name in table.column_names if name not in text]
        parts = [table.select(text).to_pandas()]
        if other:
            parts.append(con.from_arrow(table.select(other)).df())
    return pd.concat(parts, axis=1)[table.column_names]
