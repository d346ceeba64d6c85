"""History: every detect run recorded in one embedded DuckDB file, and the trends across runs.

The file (``[output] history``) holds four tables:

- ``meta``: ``key, value``; ``schema_version`` tells a ringfinder history from any other file.
- ``runs``: one row per run, in the order recorded (``seq``), with its counts and manifest.
- ``rings``: ``run_id, ring_id, size, ring_score, flagged, reasons, status, parents``.
- ``memberships``: ``run_id, contributor_id, ring_id, ring_score, member_score, flagged,
  reasons, action``.

A run id names a run's content, not its time: ``run_id_for`` hashes the manifest (version,
resolved config, input fingerprints, seed, row counts; not the timings) and the members'
ring ids, so recording the same run twice is detected: a run id that is already there is
the same run, left as recorded, unless ``replace=True``, which swaps the run's rows in place
and keeps its position in the history.

Trends (``history_table``) compare each run with the one recorded before it, by ring id: a
ring is *new* when its id was not in the previous run, *grown*/*shrunk* when its id was and
its size went up/down, *closed* when an id of the previous run is no longer there (it ended,
split or merged). With lineage (``detect --previous``) ids carry over, so these are true
ring events; without it most rings look new every run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pandas as pd

from ringfinder.errors import InputError
from ringfinder.schema import CONTRIBUTOR

if TYPE_CHECKING:
    from ringfinder.lineage import Lineage

SCHEMA_VERSION = "1"
RUN_ID_PREFIX = "run-"
#: Manifest keys left out of the run id: they differ between identical runs.
VOLATILE_MANIFEST_KEYS = ("timings_seconds",)
#: The counts of rings and flagged contributors a run records, as the trend shows them.
RUN_COUNTS = (
    "rings",
    "new",
    "grown",
    "shrunk",
    "closed",
    "flagged_rings",
    "flagged_contributors",
)
#: Columns of ``history_table``.
HISTORY_COLUMNS = (
    "run_id",
    "recorded_at",
    *RUN_COUNTS,
    "newly_flagged",
    "mean_flagged_score",
    "score_drift",
)

_TABLES = (
    "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)",
    """CREATE TABLE IF NOT EXISTS runs (
        run_id VARCHAR PRIMARY KEY,
        seq INTEGER NOT NULL,
        recorded_at TIMESTAMP NOT NULL,
        ringfinder_version VARCHAR,
        contributors BIGINT,
        rings INTEGER NOT NULL,
        flagged_rings INTEGER NOT NULL,
        flagged_contributors INTEGER NOT NULL,
        manifest VARCHAR NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS rings (
        run_id VARCHAR NOT NULL,
        ring_id VARCHAR NOT NULL,
        size INTEGER NOT NULL,
        ring_score DOUBLE,
        flagged BOOLEAN NOT NULL,
        reasons VARCHAR,
        status VARCHAR,
        parents VARCHAR[]
    )""",
    """CREATE TABLE IF NOT EXISTS memberships (
        run_id VARCHAR NOT NULL,
        contributor_id VARCHAR NOT NULL,
        ring_id VARCHAR NOT NULL,
        ring_score DOUBLE,
        member_score DOUBLE,
        flagged BOOLEAN NOT NULL,
        reasons VARCHAR,
        action VARCHAR
    )""",
)
_EXPECTED_COLUMNS = {
    "meta": ("key", "value"),
    "runs": (
        "run_id",
        "seq",
        "recorded_at",
        "ringfinder_version",
        "contributors",
        "rings",
        "flagged_rings",
        "flagged_contributors",
        "manifest",
    ),
    "rings": ("run_id", "ring_id", "size", "ring_score", "flagged", "reasons", "status", "parents"),
    "memberships": (
        "run_id",
        "contributor_id",
        "ring_id",
        "ring_score",
        "member_score",
        "flagged",
        "reasons",
        "action",
    ),
}


def run_id_for(manifest: Mapping[str, Any], members: pd.DataFrame) -> str:
    """A timestamp-free run id: a hash of the manifest (without timings) and the ring ids.

    Examples
    --------
    >>> members = pd.DataFrame({"contributor_id": ["a", "b"], "ring_id": ["R1", "R1"]})
    >>> run_id_for({"seed": 0}, members) == run_id_for({"seed": 0, "timings_seconds": {}}, members)
    True
    """
    stable = {k: v for k, v in manifest.items() if k not in VOLATILE_MANIFEST_KEYS}
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps(stable, sort_keys=True, default=str).encode("utf-8"))
    pairs = members[[CONTRIBUTOR, "ring_id"]].astype(str).sort_values([CONTRIBUTOR, "ring_id"])
    for contributor, ring in pairs.itertuples(index=False):
        digest.update(f"\n{contributor}\t{ring}".encode())
    return RUN_ID_PREFIX + digest.hexdigest()[:16]


def record_run(
    db_path: str | Path,
    *,
    run_id: str,
    members: pd.DataFrame,
    rings: pd.DataFrame,
    manifest: Mapping[str, Any],
    lineage: Lineage | None = None,
    replace: bool = False,
) -> bool:
    """Append one run to the history file, creating the file and its tables if absent.

    Returns ``False``, changing nothing, when ``run_id`` is already recorded (the same run
    again: same inputs, config and rings) and ``replace`` is not set; ``True`` otherwise.

    Parameters
    ----------
    db_path : path of the DuckDB history file.
    run_id : the run's id, e.g. ``run_id_for(manifest, members)``.
    members, rings : the run's output tables (``members`` and ``rings`` of a ``RunResult``).
    manifest : the run's manifest, stored as JSON.
    lineage : the run's ``Lineage``; its statuses and parents are stored with the rings.
    replace : replace a run already recorded under ``run_id`` instead of keeping it.

    Raises
    ------
    InputError
        If the file is not a ringfinder history or is locked by another process.

    Examples
    --------
    >>> run_id = run_id_for(result.manifest, result.members)  # doctest: +SKIP
    >>> record_run("history.duckdb", run_id=run_id, members=result.members,
    ...            rings=result.rings, manifest=result.manifest)  # doctest: +SKIP
    """
    ring_rows = _ring_rows(rings, lineage)
    member_rows = _member_rows(members)
    recorded_at = datetime.now(UTC).replace(tzinfo=None)
    with _connect(db_path, read_only=False) as con:
        con.execute("BEGIN TRANSACTION")
        try:
            existing = con.execute("SELECT seq FROM runs WHERE run_id = ?", [run_id]).fetchone()
            if existing is not None and not replace:
                con.execute("ROLLBACK")
                return False
            values = [
                manifest.get("ringfinder_version"),
                manifest.get("contributors"),
                len(ring_rows),
                int(ring_rows["flagged"].sum()),
                int(member_rows["flagged"].sum()),
                json.dumps(manifest, sort_keys=True, default=str),
            ]
            if existing is None:
                con.execute(
                    "INSERT INTO runs SELECT ?, COALESCE((SELECT MAX(seq) FROM runs), 0) + 1,"
                    " ?, ?, ?, ?, ?, ?, ?",
                    [run_id, recorded_at, *values],
                )
            else:
                con.execute(
                    "UPDATE runs SET recorded_at = ?, ringfinder_version = ?, contributors = ?,"
                    " rings = ?, flagged_rings = ?, flagged_contributors = ?, manifest = ?"
                    " WHERE run_id = ?",
                    [recorded_at, *values, run_id],
                )
                con.execute("DELETE FROM rings WHERE run_id = ?", [run_id])
                con.execute("DELETE FROM memberships WHERE run_id = ?", [run_id])
            con.register("rf_ring_rows", ring_rows)
            con.execute(
                "INSERT INTO rings SELECT ?, ring_id, size, ring_score, flagged, reasons, status,"
                " parents FROM rf_ring_rows",
                [run_id],
            )
            con.register("rf_member_rows", member_rows)
            con.execute(
                "INSERT INTO memberships SELECT ?, contributor_id, ring_id, ring_score,"
                " member_score, flagged, reasons, action FROM rf_member_rows",
                [run_id],
            )
            con.execute("COMMIT")
            return True
        except BaseException:
            con.execute("ROLLBACK")
            raise


def used_ring_ids(db_path: str | Path) -> set[str]:
    """Every ring id any recorded run has used; empty when the file does not exist yet."""
    if not Path(db_path).exists():
        return set()
    with _connect(db_path, read_only=True) as con:
        return {row[0] for row in con.execute("SELECT DISTINCT ring_id FROM rings").fetchall()}


def latest_members(db_path: str | Path) -> pd.DataFrame | None:
    """The memberships of the last recorded run (``contributor_id, ring_id, ...``), or ``None``.

    ``None`` when the file does not exist or holds no run: the next run has no previous run.
    """
    if not Path(db_path).exists():
        return None
    with _connect(db_path, read_only=True) as con:
        last = con.execute("SELECT run_id FROM runs ORDER BY seq DESC LIMIT 1").fetchone()
        if last is None:
            return None
        return con.execute(
            "SELECT contributor_id, ring_id, ring_score, member_score, flagged, reasons, action"
            " FROM memberships WHERE run_id = ? ORDER BY contributor_id",
            [last[0]],
        ).df()


def recorded_runs(db_path: str | Path) -> list[str]:
    """Run ids in the order they were recorded; empty when the file does not exist yet."""
    if not Path(db_path).exists():
        return []
    with _connect(db_path, read_only=True) as con:
        return [row[0] for row in con.execute("SELECT run_id FROM runs ORDER BY seq").fetchall()]


def history_table(db_path: str | Path) -> pd.DataFrame:
    """One row per recorded run, oldest first: ring events, flags and score drift.

    Columns (``HISTORY_COLUMNS``): ``rings``; ``new``, ``grown``, ``shrunk`` and ``closed``
    against the previous run (see the module docstring); ``flagged_rings`` and
    ``flagged_contributors``; ``newly_flagged``, contributors flagged now but not in the
    previous run; ``mean_flagged_score``, the mean ring score of the flagged rings; and
    ``score_drift``, the mean change of ring score of the rings present in both runs.
    The first run counts every ring as new and has no drift.

    Raises
    ------
    InputError
        If the file does not exist or is not a ringfinder history.
    """
    if not Path(db_path).exists():
        raise InputError(f"{db_path}: no history file; set output.history and run detect first")
    with _connect(db_path, read_only=True) as con:
        frame = con.execute(_history_query()).df()
    return frame[list(HISTORY_COLUMNS)]


def _history_query() -> str:
    """Per run, against the run recorded just before it (matched by ring id)."""
    return """
    WITH ordered AS (
        SELECT run_id, seq, recorded_at, LAG(run_id) OVER (ORDER BY seq) AS previous_run
        FROM runs
    ),
    pairs AS (
        SELECT o.run_id, cur.ring_id, cur.size, cur.ring_score, cur.flagged,
               old.size AS old_size, old.ring_score AS old_score
        FROM ordered o
        JOIN rings cur ON cur.run_id = o.run_id
        LEFT JOIN rings old ON old.run_id = o.previous_run AND old.ring_id = cur.ring_id
    ),
    ring_events AS (
        SELECT run_id,
               COUNT(*) AS rings,
               COUNT(*) FILTER (WHERE old_size IS NULL) AS new,
               COUNT(*) FILTER (WHERE size > old_size) AS grown,
               COUNT(*) FILTER (WHERE size < old_size) AS shrunk,
               COUNT(*) FILTER (WHERE flagged) AS flagged_rings,
               AVG(ring_score) FILTER (WHERE flagged) AS mean_flagged_score,
               AVG(ring_score - old_score) AS score_drift
        FROM pairs GROUP BY run_id
    ),
    closed AS (
        SELECT o.run_id, COUNT(*) AS closed
        FROM ordered o
        JOIN rings old ON old.run_id = o.previous_run
        ANTI JOIN rings cur ON cur.run_id = o.run_id AND cur.ring_id = old.ring_id
        GROUP BY o.run_id
    ),
    flags AS (
        SELECT o.run_id,
               COUNT(*) AS flagged_contributors,
               COUNT(*) FILTER (WHERE before.contributor_id IS NULL) AS newly_flagged
        FROM ordered o
        JOIN memberships m ON m.run_id = o.run_id AND m.flagged
        LEFT JOIN memberships before ON before.run_id = o.previous_run
             AND before.contributor_id = m.contributor_id AND before.flagged
        GROUP BY o.run_id
    )
    SELECT o.run_id, o.recorded_at,
           COALESCE(e.rings, 0)::BIGINT AS rings, COALESCE(e.new, 0)::BIGINT AS new,
           COALESCE(e.grown, 0)::BIGINT AS grown, COALESCE(e.shrunk, 0)::BIGINT AS shrunk,
           COALESCE(c.closed, 0)::BIGINT AS closed,
           COALESCE(e.flagged_rings, 0)::BIGINT AS flagged_rings,
           COALESCE(f.flagged_contributors, 0)::BIGINT AS flagged_contributors,
           COALESCE(f.newly_flagged, 0)::BIGINT AS newly_flagged,
           e.mean_flagged_score, e.score_drift
    FROM ordered o
    LEFT JOIN ring_events e USING (run_id)
    LEFT JOIN closed c USING (run_id)
    LEFT JOIN flags f USING (run_id)
    ORDER BY o.seq
    """


def _ring_rows(rings: pd.DataFrame, lineage: Lineage | None) -> pd.DataFrame:
    """The stored columns of the rings table, with lineage status and parents when known."""
    _require(rings, ("ring_id", "size", "ring_score", "flagged"), "rings")
    ring_ids = rings["ring_id"].astype(str)
    status = lineage.status if lineage is not None else {}
    parents = lineage.parents if lineage is not None else {}
    return pd.DataFrame(
        {
            "ring_id": ring_ids,
            "size": rings["size"].astype("int64"),
            "ring_score": rings["ring_score"].astype(float),
            "flagged": rings["flagged"].astype(bool),
            "reasons": _text(rings, "reasons"),
            "status": ring_ids.map(status) if lineage is not None else None,
            "parents": [parents.get(r, []) for r in ring_ids] if lineage is not None else None,
        }
    ).astype({"status": object, "reasons": object})


def _member_rows(members: pd.DataFrame) -> pd.DataFrame:
    """The stored columns of the memberships table."""
    _require(members, (CONTRIBUTOR, "ring_id", "flagged"), "members")
    optional = {c: members.get(c) for c in ("ring_score", "member_score")}
    return pd.DataFrame(
        {
            CONTRIBUTOR: members[CONTRIBUTOR].astype(str),
            "ring_id": members["ring_id"].astype(str),
            "ring_score": optional["ring_score"],
            "member_score": optional["member_score"],
            "flagged": members["flagged"].astype(bool),
            "reasons": _text(members, "reasons"),
            "action": _text(members, "action"),
        }
    ).astype({"ring_score": float, "member_score": float, "reasons": object, "action": object})


def _text(frame: pd.DataFrame, column: str) -> pd.Series | None:
    """A text column as Python strings (missing values stay missing), or ``None`` if absent."""
    if column not in frame:
        return None
    values = frame[column]
    return (
        values.astype(object).where(values.notna(), None).map(lambda v: v if v is None else str(v))
    )


def _require(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"{what}: missing column(s) {', '.join(missing)} to record in the history")


@contextmanager
def _connect(db_path: str | Path, *, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the history file, check (or, for writing, create) its tables, and close it after."""
    path = Path(db_path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.Error as exc:
        raise InputError(f"{path}: cannot open the history database: {_first_line(exc)}") from None
    try:
        _check_schema(con, path, create=not read_only)
        yield con
    except duckdb.Error as exc:
        raise InputError(f"{path}: history database error: {_first_line(exc)}") from None
    finally:
        con.close()


def _check_schema(con: duckdb.DuckDBPyConnection, path: Path, *, create: bool) -> None:
    tables = {
        name: tuple(columns)
        for name, columns in con.execute(
            "SELECT table_name, list(column_name ORDER BY column_index) FROM duckdb_columns()"
            " WHERE database_name = current_database() AND schema_name = 'main' GROUP BY table_name"
        ).fetchall()
    }
    if not tables and create:
        con.execute("BEGIN TRANSACTION")
        for statement in _TABLES:
            con.execute(statement)
        con.execute("INSERT INTO meta VALUES ('schema_version', ?)", [SCHEMA_VERSION])
        con.execute("COMMIT")
        return
    if "meta" not in tables:
        raise InputError(f"{path}: not a ringfinder history database (no meta table)")
    row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    version = row[0] if row else None
    if version != SCHEMA_VERSION:
        raise InputError(
            f"{path}: history schema version {version!r}, expected {SCHEMA_VERSION!r};"
            " record into a new file"
        )
    for name, columns in _EXPECTED_COLUMNS.items():
        if tables.get(name) != columns:
            raise InputError(
                f"{path}: history table {name!r} has columns {tables.get(name)}, expected {columns}"
            )


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
