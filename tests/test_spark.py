"""Spark engine: the projection on PySpark (local mode) equals DuckDB's, table for table.

Needs pyspark and Java; skipped with the reason when either is missing. One local Spark serves
the whole module.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pytest

from ringfinder import pipeline
from ringfinder.config import Config, InputConfig, KindConfig, load_config
from ringfinder.errors import ConfigError, InputError
from ringfinder.graph import GraphStats, build_graph
from ringfinder.ingest import normalised_events_sql, read_events
from ringfinder.pipeline import connect, run_detect
from ringfinder.privacy import Privacy
from ringfinder.spark import SparkProjection, build_graph_on_spark, project_with_spark

pytestmark = pytest.mark.spark

FIXTURES = Path(__file__).parent.parent / "fixtures"
SAMPLES = {"sample": "events.csv.gz", "foreign": "events.parquet"}
KEYS = {
    "edges": ["contributor_id", "kind", "identifier"],
    "identifiers": ["kind", "identifier"],
    "lockstep_pairs": ["a", "b"],
    "pairs": ["a", "b"],
    "strong_links": ["contributor_id", "strong_key"],
}


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    """A local Spark for the module: two cores, no UI, few shuffle partitions, UTC."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        pytest.skip("pyspark is not installed (pip install 'ringfinder[spark]')")
    if shutil.which("java") is None:
        pytest.skip("java is not on PATH: local Spark needs Java 17 or later")
    session = (
        SparkSession.builder.master("local[2]")
        .appName("ringfinder-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.sql.session.timeZone", "UTC")
        # A short-lived JVM: the quick compiler alone starts Spark in half the time.
        .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
        .getOrCreate()
    )
    yield session
    session.stop()


def duckdb_graph(
    name: str, folder: Path
) -> tuple[duckdb.DuckDBPyConnection, Config, GraphStats, str]:
    """The fixture ingested and projected by DuckDB, as ``run_detect`` does it, and its events
    exported for Spark first (the graph frees the identifiers as read)."""
    config = load_config(FIXTURES / name / "config.toml")
    con = connect(config)
    read_events(con, [FIXTURES / name / SAMPLES[name]], config=config.input)
    events = export_events(con, config, folder)
    return con, config, build_graph(con, config=config), events


def export_events(con: duckdb.DuckDBPyConnection, config: Config, folder: Path) -> str:
    """The events with normal identifiers, as Parquet (what ``build_graph_on_spark`` stages)."""
    path = folder / "events.parquet"
    con.execute(f"COPY ({normalised_events_sql(con, config.input)}) TO '{path}' (FORMAT parquet)")
    return str(path)


def comparable(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """Rows in key order, list cells as tuples (numpy arrays do not compare as values)."""
    frame = frame.sort_values(KEYS[table]).reset_index(drop=True)
    if "kinds" in frame:
        frame["kinds"] = frame["kinds"].map(tuple)
    return frame


def assert_same_table(spark_frame: pd.DataFrame, duck_frame: pd.DataFrame, table: str) -> None:
    """Same columns, dtypes and rows; weights to 1e-12 relative, everything else exactly."""
    ours, theirs = comparable(spark_frame, table), comparable(duck_frame, table)
    assert list(ours.columns) == list(theirs.columns), table
    assert len(ours) == len(theirs), table
    if theirs.empty:  # DuckDB gives an empty text column the object dtype
        return
    for column in ours.columns:
        if ours[column].dtype.kind == "f":
            assert theirs[column].dtype.kind == "f", (table, column)
            assert np.isclose(ours[column], theirs[column], rtol=1e-12, atol=0).all(), (
                table,
                column,
            )
        else:
            pd.testing.assert_series_equal(ours[column], theirs[column], obj=f"{table}.{column}")


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_spark_projection_equals_duckdb(spark: Any, name: str, tmp_path: Path) -> None:
    con, config, stats, events = duckdb_graph(name, tmp_path)
    projection = project_with_spark(events, config=config, spark=spark)
    assert isinstance(projection, SparkProjection)
    for table in KEYS:
        assert_same_table(
            getattr(projection, table), con.execute(f"SELECT * FROM {table}").df(), table
        )
    assert projection.stats == stats
    # Not vacuous: both kinds of links are there, and every pair is ordered.
    assert stats.pairs > 0 and stats.lockstep_pairs > 0
    assert (projection.pairs["a"] < projection.pairs["b"]).all()


def test_odd_kind_names_no_targets_and_crowded_payouts(spark: Any, tmp_path: Path) -> None:
    """Kind names that need quoting, no lockstep, and a strong identifier above its cap."""
    odd = "pay'out \\ `x"
    kinds = {
        "device": KindConfig(column="device_id", normaliser="device", hub_cap=2),
        odd: KindConfig(column="acct", normaliser="text", weight=3.0, hub_cap=2, strong=True),
    }
    config = Config(input=InputConfig(kinds=kinds))
    rows = [  # acct A is shared by four (crowded, still strong), d1 by three (a hub)
        ("c1", "d1", "A"),
        ("c2", "d1", "A"),
        ("c3", "d1", "A"),
        ("c4", "d2", "A"),
        ("c5", "d2", "B"),
        ("c6", "d3", "B"),
        ("c7", "d4", "C"),
    ]
    frame = pd.DataFrame(
        [(c, f"2024-01-01T00:00:{i:02d}Z", "task", d, a) for i, (c, d, a) in enumerate(rows)],
        columns=["contributor_id", "event_time", "event_type", "device_id", "acct"],
    )
    con = connect(config)
    con.register("rf_test_events", frame)
    read_events(con, config=config.input, relation="rf_test_events")
    events = export_events(con, config, tmp_path)
    stats = build_graph(con, config=config)
    projection = project_with_spark(events, config=config, spark=spark)
    for table in KEYS:
        assert_same_table(
            getattr(projection, table), con.execute(f"SELECT * FROM {table}").df(), table
        )
    assert projection.stats == stats
    assert projection.lockstep_pairs.empty
    assert projection.identifiers["crowded"].sum() == 2 and projection.identifiers["hub"].sum() == 1
    assert len(projection.strong_links) == 6


def test_spark_engine_leaves_detection_and_scores_unchanged(
    spark: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole run, with the graph stage swapped for Spark as the pipeline wires it."""
    config = load_config(FIXTURES / "sample" / "config.toml")
    inputs = [FIXTURES / "sample" / SAMPLES["sample"]]
    expected = run_detect(inputs, config=config)

    def graph_on_spark(
        con: duckdb.DuckDBPyConnection, *, config: Config, privacy: Privacy
    ) -> GraphStats:
        return build_graph_on_spark(con, config=config, privacy=privacy, spark=spark)

    monkeypatch.setattr(pipeline, "build_graph", graph_on_spark)
    result = run_detect(inputs, config=config)
    assert len(result.rings) > 0
    assert result.manifest["graph"] == expected.manifest["graph"]
    for table in ("rings", "members", "evidence", "timeline"):
        pd.testing.assert_frame_equal(
            getattr(result, table),
            getattr(expected, table),
            check_exact=False,
            rtol=1e-9,
            obj=table,
        )


def test_missing_events_column_is_an_input_error(spark: Any, tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    pd.DataFrame({"contributor_id": ["a"], "event_time": ["2024-01-01"]}).to_parquet(path)
    with pytest.raises(InputError, match=r"events\.parquet: .*lacks the columns id_device, id_ip"):
        project_with_spark(str(path), config=Config(), spark=spark)


def test_without_pyspark_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyspark.sql", None)  # makes the import fail
    with pytest.raises(ConfigError) as error:
        project_with_spark("events.parquet", config=Config())
    assert str(error.value) == "engine = \"spark\" needs pyspark: pip install 'ringfinder[spark]'"
