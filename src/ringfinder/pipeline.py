"""Pipeline: the only place the stages meet. ingest → graph → detect → score → lineage → export."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from ringfinder import __version__
from ringfinder.config import Config, load_config
from ringfinder.decide import assign_actions
from ringfinder.detect import detect_rings
from ringfinder.errors import InputError
from ringfinder.export import atomic_folder, check_out_folder, write_outputs
from ringfinder.frames import fetch_frame
from ringfinder.graph import build_graph
from ringfinder.history import (
    history_table,
    latest_members,
    record_run,
    run_id_for,
    used_ring_ids,
)
from ringfinder.ingest import IngestResult, read_events, resolve_inputs
from ringfinder.lineage import check_ring_ids, match_rings
from ringfinder.normalise import sql_literal
from ringfinder.privacy import privacy_from_env, pseudonym
from ringfinder.schema import (
    COLUMN_TYPES,
    CONTRIBUTOR,
    MEMBERS_COLUMNS,
    QUARANTINE_COLUMNS,
    RINGS_COLUMNS,
)
from ringfinder.score import ring_evidence, score_rings
from ringfinder.spark import build_graph_on_spark
from ringfinder.visualize import write_report

StageReporter = Callable[[str], AbstractContextManager[object]]


@dataclass
class RunResult:
    """The result tables of one run, and its manifest."""

    members: pd.DataFrame
    rings: pd.DataFrame
    quarantine: pd.DataFrame
    manifest: dict[str, Any]
    evidence: pd.DataFrame = field(default_factory=pd.DataFrame)
    timeline: pd.DataFrame = field(default_factory=pd.DataFrame)
    out_dir: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)


def connect(config: Config) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the configured resource limits."""
    con = duckdb.connect(":memory:")
    # DuckDB draws a progress bar on stdout for queries over 2 s: at 100M events it would land
    # in the middle of --json output. The CLI shows progress per stage on stderr instead.
    con.execute("SET enable_progress_bar = false")
    # Every result that reaches an output is sorted; unordered, DuckDB needs less time and memory.
    con.execute("SET preserve_insertion_order = false")
    r = config.resources
    if r.memory_limit:
        con.execute(f"SET memory_limit = {sql_literal(r.memory_limit)}")
    if r.threads:
        con.execute(f"SET threads = {r.threads}")
    if r.temp_directory:
        con.execute(f"SET temp_directory = {sql_literal(r.temp_directory)}")
    return con


def _ring_tables(
    rings: pd.DataFrame, members: pd.DataFrame, ids: dict[int, str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Name rings by id, derive the evidence columns and order both tables for output."""
    rings = rings.assign(ring_id=rings["ring_index"].map(ids))
    size = rings["size"].to_numpy(float)
    rings = rings.rename(
        columns={
            "shared_device": "shared_devices",
            "shared_ip": "shared_ips",
            "shared_payment": "shared_payments",
        }
    )
    rings["accounts_per_device"] = np.round(size / np.maximum(rings["distinct_device"], 1), 3)
    rings["accounts_per_payment"] = np.round(size / np.maximum(rings["distinct_payment"], 1), 3)
    rings["signup_span_hours"] = rings["signup_span_hours"].round(3)
    span = (rings["last_seen"] - rings["first_seen"]).dt.total_seconds() / 86400
    rings["time_span_days"] = span.round(3)
    links = rings["links"].fillna(0).to_numpy(float)
    strong = rings["strong_links"].fillna(0).to_numpy(float)
    rings["strong_link_share"] = np.round(
        np.divide(strong, links, out=np.zeros_like(links), where=links > 0), 3
    )
    rings = rings.sort_values(["ring_score", "ring_id"], ascending=[False, True]).reset_index(
        drop=True
    )
    members = members.assign(ring_id=members["ring_index"].map(ids))
    members = members.sort_values(CONTRIBUTOR).reset_index(drop=True)
    return rings, members


# What the events became: scoring is the last to read them. Dropped before the evidence comes
# into Python, they leave room for its frames on top of DuckDB's memory limit.
GRAPH_TABLES = ("events", "edges", "identifiers", "lockstep_pairs", "pairs", "strong_links")


def _drop_tables(con: duckdb.DuckDBPyConnection, tables: Sequence[str]) -> None:
    for table in tables:
        con.execute(f"DROP TABLE IF EXISTS {table}")


def _empty(columns: Sequence[str]) -> pd.DataFrame:
    """A table of no rows with the columns' types (``schema.COLUMN_TYPES``)."""
    return pd.DataFrame({c: pd.Series(dtype=COLUMN_TYPES[c]) for c in columns})


@contextmanager
def _timed(name: str, timings: dict[str, float], report: StageReporter | None) -> Iterator[None]:
    started = time.perf_counter()
    with report(name) if report else nullcontext():
        yield
    timings[name] = round(time.perf_counter() - started, 3)


def run_detect(
    inputs: Sequence[str | Path] = (),
    *,
    config: Config,
    out_dir: Path | None = None,
    sql: str | None = None,
    frame: pd.DataFrame | None = None,
    report: StageReporter | None = None,
    known_bad: Sequence[str] = (),
    previous: pd.DataFrame | None = None,
    used_ids: Collection[str] = frozenset(),
) -> RunResult:
    """Run the whole detection pipeline; write the outputs when ``out_dir`` is given.

    Parameters
    ----------
    inputs : event files, globs or folders.
    config : the resolved configuration.
    out_dir : folder for the outputs (replaced atomically); ``None`` writes nothing.
    sql : a DuckDB query to use as the input instead of files.
    frame : a DataFrame of events to use as the input.
    report : called with each stage's name, returns a context manager (progress display).
    known_bad : contributor ids already banned: rings holding one score higher.
    previous : the previous run's members (``contributor_id, ring_id``); a ring that is the
        same ring keeps its id (``lineage.match_rings``). Defaults to the last run recorded in
        ``output.history`` when that is set.
    used_ids : ring ids used before; a new ring never gets one (the history's are added).
    """
    timings: dict[str, float] = {}
    history = Path(config.output.history) if config.output.history else None
    if out_dir is not None:  # before the work, not after it
        files = [p for p, _ in resolve_inputs(inputs, forced_format=config.input.format)]
        check_out_folder(Path(out_dir), [*files, *([history] if history else [])])
    if history is not None:
        used_ids = set(used_ids) | used_ring_ids(history)
        if previous is None:
            previous = latest_members(history)
            if previous is not None:
                check_ring_ids(previous, f"{history} (output.history)")
    privacy = privacy_from_env(
        config.privacy.pseudonymize, contributors=config.privacy.pseudonymize_contributors
    )
    if privacy.key and privacy.contributors:
        known_bad = [pseudonym(privacy.key, "contributor", c) for c in known_bad]
    con = connect(config)
    try:
        with _timed("ingest", timings, report):
            if frame is not None:
                con.register("rf_input_frame", frame)
            ingest = read_events(
                con,
                inputs,
                config=config.input,
                sql=sql,
                relation="rf_input_frame" if frame is not None else None,
                privacy=privacy,
                previous_ids=previous[CONTRIBUTOR] if previous is not None else (),
            )
            _check_bad_fraction(con, ingest, config)
        with _timed("graph", timings, report):
            if config.resources.engine == "spark":
                stats = build_graph_on_spark(
                    con,
                    config=config,
                    privacy=privacy,
                    master=config.resources.spark_master,
                    staging_dir=config.resources.spark_staging_dir,
                )
            else:
                stats = build_graph(con, config=config, privacy=privacy)
        with _timed("detect", timings, report):
            pairs = fetch_frame(con, "SELECT a, b, weight, strong, solid FROM pairs ORDER BY a, b")
            stars = fetch_frame(
                con, f"SELECT {CONTRIBUTOR}, strong_key FROM strong_links ORDER BY ALL"
            )
            assignment = detect_rings(pairs, config=config.detect, strong_links=stars)
        with _timed("score", timings, report):
            evidence, timeline = pd.DataFrame(), pd.DataFrame()
            lineage = match_rings(assignment, previous, used_ids=used_ids)
            if assignment.empty:
                rings, members = _empty(RINGS_COLUMNS), _empty(MEMBERS_COLUMNS)
            else:
                ids = lineage.ids
                rings, members = score_rings(con, assignment, config=config, known_bad=known_bad)
                _drop_tables(con, GRAPH_TABLES)
                rings, members = _ring_tables(rings, members, ids)
                members["action"] = assign_actions(members, config.score.bands)
                evidence, timeline = (
                    frame.assign(ring_id=frame.pop("ring_index").map(ids))
                    for frame in ring_evidence(con)
                )
        quarantine = fetch_frame(con, "SELECT * FROM quarantine ORDER BY source, row, reason")
    finally:
        con.close()
    manifest = {
        "ringfinder_version": __version__,
        "config": config.model_dump(mode="json"),
        "inputs": ingest.inputs or [{"query": sql} if sql else {"dataframe": True}],
        "rows": {
            "read": ingest.rows_read,
            "accepted": ingest.rows_accepted,
            "quarantined": ingest.rows_quarantined,
            "duplicates": ingest.rows_duplicate,
        },
        "quarantine_reasons": ingest.quarantine_reasons,
        "contributors": ingest.contributors,
        "graph": {
            "edges": stats.edges,
            "identifiers": stats.identifiers,
            "hubs_suppressed": stats.hubs,
            "infrastructure_downweighted": stats.infrastructure,
            "pairs": stats.pairs,
            "lockstep_pairs": stats.lockstep_pairs,
        },
        "rings": int(len(rings)),
        "flagged_rings": int(rings["flagged"].astype(bool).sum()) if len(rings) else 0,
        "flagged_contributors": int(members["flagged"].astype(bool).sum()) if len(members) else 0,
        "seed": config.detect.seed,
        "known_bad": len(set(known_bad)),
        "lineage": {
            "previous_rings": int(previous["ring_id"].nunique()) if previous is not None else 0,
            "counts": lineage.counts(),
            "parents": lineage.parents,
            "absorbed": lineage.absorbed,
        },
        "timings_seconds": timings,
    }
    if history is not None:
        with _timed("history", timings, report):
            run_id = run_id_for(manifest, members)
            recorded = record_run(
                history,
                run_id=run_id,
                members=members,
                rings=rings,
                manifest=manifest,
                lineage=lineage,
            )
        manifest["run_id"] = run_id
        manifest["recorded_in_history"] = recorded
    result = RunResult(
        members=members,
        rings=rings,
        quarantine=quarantine[list(QUARANTINE_COLUMNS)],
        manifest=manifest,
        evidence=evidence,
        timeline=timeline,
        out_dir=out_dir,
        timings=timings,
    )
    if out_dir is not None:
        with _timed("write", timings, report), atomic_folder(Path(out_dir)) as staging:
            write_outputs(
                staging,
                members=members,
                rings=rings,
                quarantine=result.quarantine,
                manifest=manifest,
                parquet=config.output.parquet,
            )
            evidence.to_parquet(staging / "evidence.parquet", index=False)
            timeline.to_parquet(staging / "timeline.parquet", index=False)
            if config.output.html:
                write_report(
                    staging,
                    rings=rings,
                    members=members,
                    evidence=evidence,
                    timeline=timeline,
                    manifest=manifest,
                    max_pages=config.output.max_ring_pages,
                    history=history_table(history) if history is not None else None,
                )
    return result


def _check_bad_fraction(
    con: duckdb.DuckDBPyConnection, ingest: IngestResult, config: Config
) -> None:
    """Stop when more rows were rejected than ``input.max_bad_fraction`` allows, naming the
    inputs with the most rejected rows, the commonest reasons and the first rejected row."""
    limit = config.input.max_bad_fraction
    read, quarantined = ingest.rows_read, ingest.rows_quarantined
    if read and quarantined / read > limit:
        reasons = sorted(ingest.quarantine_reasons.items(), key=lambda kv: -kv[1])
        top = ", ".join(f"{reason}: {n}" for reason, n in reasons[:3])
        sources = list(ingest.quarantine_sources.items())
        named = (
            sources[0][0]
            if len(sources) == 1
            else ", ".join(f"{s} ({n} rejected)" for s, n in sources[:3])
        )
        more = f" and {len(sources) - 3} more" if len(sources) > 3 else ""
        ((source, row, reason),) = con.execute(
            "SELECT source, row, reason FROM quarantine ORDER BY source, row, reason LIMIT 1"
        ).fetchall()
        raise InputError(
            f"{named}{more}: {quarantined} of {read} rows ({quarantined / read:.1%}) were "
            f"rejected, more than input.max_bad_fraction = {limit}; {top}; the first is row "
            f"{row} of {source} ({reason}); raise the limit to get them all in quarantine.csv"
        )


def find_rings(
    data: pd.DataFrame | str | Path | Sequence[str | Path],
    config: Config | str | Path | None = None,
    *,
    sql: str | None = None,
    out_dir: str | Path | None = None,
) -> RunResult:
    """Find and score rings in a DataFrame or event files; the entry point for notebooks.

    Parameters
    ----------
    data : a pandas DataFrame of events, or one or more paths, folders or globs.
    config : a ``Config``, a path to a TOML config, or ``None`` for the defaults.
    sql : a DuckDB query to use as the input (``data`` is then ignored; pass ``()``).
    out_dir : also write the output files there.

    Returns
    -------
    RunResult with ``members``, ``rings`` and ``quarantine`` DataFrames and the ``manifest``.

    Examples
    --------
    >>> result = find_rings("fixtures/sample/events.csv.gz", "fixtures/sample/config.toml")  # doctest: +SKIP
    >>> result.rings[["ring_id", "size", "ring_score", "reasons"]].head()  # doctest: +SKIP
    """
    resolved = config if isinstance(config, Config) else load_config(config)
    target = Path(out_dir) if out_dir is not None else None
    if isinstance(data, pd.DataFrame):
        return run_detect(config=resolved, frame=data, out_dir=target)
    inputs = [data] if isinstance(data, str | Path) else list(data)
    return run_detect(inputs, config=resolved, sql=sql, out_dir=target)
