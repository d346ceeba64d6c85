"""fetch_frame gives exactly the frame DuckDB's .df() gives, for every column type we read."""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest

from ringfinder.frames import fetch_frame

ROWS = """SELECT * FROM (VALUES
    (1, true, 'a', 1.5, TIMESTAMP '2024-01-01 10:00', DATE '2024-01-02', 3::UBIGINT, ['p', 'q'],
     {'k': 'v'}, 'é'),
    (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, ''),
    (2, false, 'b', 2.5, TIMESTAMP '2024-01-03', DATE '2024-01-04', 4::UBIGINT, [], {'k': NULL},
     NULL)
) t(i, b, s, d, ts, day, u, texts, st, other)"""


@pytest.mark.parametrize(
    "query",
    [
        ROWS,
        f"{ROWS} WHERE i IS NOT NULL",  # no NULLs: plain numpy integers and booleans
        f"{ROWS} WHERE false",  # no rows: text columns stay object, as .df() makes them
        "SELECT 1 AS only_number",
        "SELECT 'x' AS only_text",
        "SELECT range AS n, 'r' || range AS name FROM range(5000) ORDER BY n DESC",
    ],
)
def test_fetch_frame_equals_df(query: str) -> None:
    con = duckdb.connect()
    expected = con.execute(query).df()
    got = fetch_frame(con, query)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert list(got.dtypes) == list(expected.dtypes)


def test_fetch_frame_keeps_rows_whole_and_in_order_on_a_pipeline_connection() -> None:
    con = duckdb.connect()
    con.execute("SET threads = 2")
    con.execute("SET preserve_insertion_order = false")  # as the pipeline runs
    query = (
        "SELECT 'k' || (i % 97) AS key, i, i * 2 AS twice, DATE '2024-01-01' + CAST(i % 9 AS INT) "
        "AS day FROM range(300000) t(i) ORDER BY key, i"
    )
    got = fetch_frame(con, query)
    pd.testing.assert_frame_equal(got, con.execute(query).df(), check_exact=True)
    assert (got["twice"] == 2 * got["i"]).all()  # text and other columns stay on one row
    assert got["i"].iloc[:3].tolist() == [0, 97, 194]
