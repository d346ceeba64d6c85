"""DuckDB query results as pandas frames, with text columns moved through Arrow.

DuckDB's ``.df()`` makes a Python string of every text value before pandas stores it: for the
ring evidence at 10M events (400k rows, five text columns) that took 0.54 s, where Arrow hands
the same strings to pandas in 0.09 s. Everything else keeps ``.df()``'s conversions (nullable
integers, dates as timestamps), so callers see the frames they always did.
"""

from __future__ import annotations

import duckdb
import pandas as pd
import pyarrow as pa


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
    # A connection of its own: the pipeline's turns preserve_insertion_order off, and a scan of
    # the Arrow table could then hand back the other columns' rows in another order.
    with duckdb.connect() as converter:
        if not text or not table.num_rows:  # nothing to gain; and empty text stays object
            return converter.from_arrow(table).df()
        other = [name for name in table.column_names if name not in text]
        parts = [table.select(text).to_pandas()]
        if other:
            parts.append(converter.from_arrow(table.select(other)).df())
    return pd.concat(parts, axis=1)[table.column_names]
