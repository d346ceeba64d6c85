"""Read what an evaluation compares: a ``ringfinder detect`` run directory and a labels table.

Both are checked as they are read; an error names the file, the row or key, the value and what
was expected. Labels hold one verdict per contributor (the latest one when they are dated).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import TypeAdapter, ValidationError

from ringfinder.config import Band, InputConfig, ScoreConfig
from ringfinder.decide import NO_ACTION, assign_actions
from ringfinder.errors import InputError
from ringfinder.export import unguarded
from ringfinder.schema import CONTRIBUTOR

# Member columns read here (listed in schema.MEMBERS_COLUMNS); ACTION is added by decision bands.
RING_ID = "ring_id"
RING_SCORE = "ring_score"
MEMBER_SCORE = "member_score"
FLAGGED = "flagged"
REASONS = "reasons"
ACTION = "action"
LABEL = "label"
LABEL_RING = "label_ring_id"  # the labels' own ring_id, renamed so it never meets the run's
REVIEW_DATE_COLUMNS = ("review_date", "reviewed_at", "reviewed_on", "label_date")
MISSING = "(missing)"

_FRAUD = frozenset({"fraud", "1", "1.0", "true", "yes", "bad"})
_BENIGN = frozenset({"benign", "0", "0.0", "false", "no", "good", "honest", "legit"})
_UNKNOWN = frozenset({"", "unknown", "nan", "none", "null", "na", "n/a", "?"})


@dataclass(frozen=True)
class Run:
    """A checked run: its members, flag threshold, population count and decision bands.

    ``ignore_case``: the run took ids that differ only in case for one contributor
    (``input.contributor_ignore_case``), so labels are matched to it ignoring case too.
    """

    members: pd.DataFrame
    threshold: float
    contributors: int | None
    bands: tuple[Band, ...] | None
    ignore_case: bool = False


@dataclass(frozen=True)
class Labels:
    """Checked labels: one row per contributor.

    ``frame`` holds ``contributor_id``, ``y`` (1.0 fraud, 0.0 benign, NaN unknown),
    ``label_ring_id`` ('' when none) and one ``segment:<name>`` text column per segment.
    """

    frame: pd.DataFrame
    source: str
    segments: tuple[str, ...]
    review_range: tuple[str, str] | None
    rows: int
    respelled: int = 0  # label rows whose id the run spells in another case


def segment_column(name: str) -> str:
    """The frame column of a segment, kept apart from ringfinder's own column names."""
    return f"segment:{name}"


def isin_ids(values: pd.Series, among: pd.Series) -> np.ndarray:
    """``values.isin(among)`` on object arrays: a hash table, where pandas' arrow strings loop."""
    return (
        pd.Series(values.to_numpy(dtype=object), dtype=object)
        .isin(among.to_numpy(dtype=object))
        .to_numpy()
    )


def _as_text(values: pd.Series) -> pd.Series:
    return values.astype(object).where(values.notna(), "").astype(str)


# --------------------------------------------------------------------------- the run
def read_run(run_dir: Path, notes: list[str]) -> Run:
    """Read members and manifest of ``run_dir``; what is assumed or inferred goes to ``notes``.

    Without an ``action`` column, actions are assigned from the manifest's decision bands.

    Examples
    --------
    >>> run = read_run(Path("out/sample"), [])  # doctest: +SKIP
    >>> run.threshold, len(run.members)  # doctest: +SKIP
    """
    members = _read_members(run_dir)
    path = run_dir / "manifest.json"
    manifest: dict[str, Any] = {}
    if path.is_file():
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{path}: cannot read manifest: {exc}") from None
        if not isinstance(manifest, dict):
            raise InputError(f"{path}: expected a JSON object")
    else:
        notes.append(f"{path.name} not found: default threshold, no run population count")
    config = manifest.get("config") or {}
    score = config.get("score") if isinstance(config, dict) else None
    score = score if isinstance(score, dict) else {}
    threshold = score.get("threshold", ScoreConfig().threshold)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise InputError(f"{path}: config.score.threshold = {threshold!r}: expected a number")
    contributors = manifest.get("contributors")
    if contributors is not None and (
        isinstance(contributors, bool) or not isinstance(contributors, int) or contributors < 0
    ):
        raise InputError(f"{path}: contributors = {contributors!r}: expected a count")
    bands = None
    if score.get("bands") is not None:
        try:
            bands = tuple(TypeAdapter(list[Band]).validate_python(score["bands"]))
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(p) for p in ("config", "score", "bands", *first["loc"]))
            raise InputError(f"{path}: {key}: {first['msg']}") from None
    if ACTION not in members.columns and bands:
        members[ACTION] = assign_actions(members, bands).to_numpy()
        notes.append("members have no action column: actions assigned from the run's bands")
    flagged_min = members.loc[members[FLAGGED], RING_SCORE].min()
    unflagged_max = members.loc[~members[FLAGGED], RING_SCORE].max()
    if (flagged_min < threshold) or (unflagged_max >= threshold):
        notes.append("the flagged column disagrees with ring_score >= threshold for some members")
    read_input = config.get("input") if isinstance(config, dict) else None
    ignore_case = (read_input if isinstance(read_input, dict) else {}).get(
        "contributor_ignore_case", InputConfig().contributor_ignore_case
    )
    return Run(members, float(threshold), contributors, bands, ignore_case is True)


def _read_members(run_dir: Path) -> pd.DataFrame:
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: run directory not found")
    parquet, csv = run_dir / "members.parquet", run_dir / "members.csv"
    try:
        if parquet.is_file():
            path, members = parquet, pd.read_parquet(parquet)
        elif csv.is_file():
            path = csv
            members = pd.read_csv(csv, dtype=str, keep_default_na=False)
            members = members.apply(unguarded)
        else:
            raise InputError(
                f"{run_dir}: no members.parquet or members.csv (not a `ringfinder detect` output?)"
            )
    except (OSError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"{run_dir}: cannot read members: {exc}") from None
    required = (CONTRIBUTOR, RING_ID, RING_SCORE, FLAGGED, MEMBER_SCORE, REASONS)
    for column in required:
        if column not in members.columns:
            raise InputError(f"{path}: missing column {column!r}")
    out = pd.DataFrame(
        {
            CONTRIBUTOR: _as_text(members[CONTRIBUTOR]),
            RING_ID: _as_text(members[RING_ID]),
            REASONS: _as_text(members[REASONS]),
        }
    )
    for column in (RING_SCORE, MEMBER_SCORE):
        values = pd.to_numeric(members[column], errors="coerce")
        if values.isna().any():
            row = int(np.flatnonzero(values.isna().to_numpy())[0]) + 1
            raise InputError(f"{path} row {row}: {column} is missing or not a number")
        out[column] = values.astype(float).to_numpy()
    flags = _as_text(members[FLAGGED]).str.strip().str.lower()
    known = flags.isin(["true", "false", "1", "0"])
    if not known.all():
        row = int(np.flatnonzero(~known.to_numpy())[0]) + 1
        raise InputError(f"{path} row {row}: flagged must be true or false")
    out[FLAGGED] = flags.isin(["true", "1"]).to_numpy()
    if ACTION in members.columns:
        out[ACTION] = _as_text(members[ACTION]).replace("", NO_ACTION)
    duplicated = out[CONTRIBUTOR].duplicated()
    if duplicated.any():
        who = out[CONTRIBUTOR][duplicated].iloc[0]
        raise InputError(f"{path}: contributor {who!r} appears in more than one row")
    return out


# --------------------------------------------------------------------------- the labels
def read_labels(
    labels: Path | str | pd.DataFrame,
    *,
    segment_columns: Sequence[str] | None = None,
    spellings: pd.Series | None = None,
) -> Labels:
    """Read and check a labels table: one verdict per contributor (the latest when dated).

    Parameters
    ----------
    labels : file (CSV, TSV, Parquet, JSONL, JSON) or DataFrame with ``contributor_id`` and
        ``label`` (fraud/benign, 1/0, true/false; empty = unknown), optional ``ring_id``, a review
        date column and segments.
    segment_columns : the segment columns (default: every column not otherwise known).

    Examples
    --------
    >>> frame = pd.DataFrame({"contributor_id": ["a", "b"], "label": ["fraud", "0"]})
    >>> read_labels(frame).frame["y"].tolist()
    [1.0, 0.0]
    """
    if isinstance(labels, pd.DataFrame):
        source, raw = "labels", labels
    else:
        source, raw = str(labels), _read_table(Path(labels))
    raw = raw.rename(columns=lambda c: str(c).strip())
    for column in (CONTRIBUTOR, LABEL):
        if column not in raw.columns:
            raise InputError(
                f"{source}: missing column {column!r} (labels need contributor_id and label:"
                " fraud/benign or 1/0)"
            )
    review = next((c for c in REVIEW_DATE_COLUMNS if c in raw.columns), None)
    known_cols = {CONTRIBUTOR, LABEL, RING_ID, review}
    if segment_columns is None:
        segments = tuple(c for c in raw.columns if c not in known_cols)
    else:
        segments = tuple(segment_columns)
        for column in segments:
            if column not in raw.columns:
                raise InputError(f"{source}: missing segment column {column!r}")
    frame = pd.DataFrame({CONTRIBUTOR: _as_text(raw[CONTRIBUTOR]).str.strip().to_numpy()})
    if (frame[CONTRIBUTOR] == "").any():
        row = int(np.flatnonzero((frame[CONTRIBUTOR] == "").to_numpy())[0]) + 1
        raise InputError(f"{source} row {row}: empty contributor_id")
    respelled = 0
    if spellings is not None:
        frame[CONTRIBUTOR], respelled = _respelled(frame[CONTRIBUTOR], spellings)
    text = _as_text(raw[LABEL]).str.strip().str.lower().to_numpy()
    is_fraud, is_benign = np.isin(text, list(_FRAUD)), np.isin(text, list(_BENIGN))
    bad = ~(is_fraud | is_benign | np.isin(text, list(_UNKNOWN)))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{source} row {row + 1}: label {raw[LABEL].iloc[row]!r} is not fraud/benign, 1/0 or"
            " true/false (empty means unknown)"
        )
    frame["y"] = np.where(is_fraud, 1.0, np.where(is_benign, 0.0, np.nan))
    frame[LABEL_RING] = _as_text(raw[RING_ID]).str.strip().to_numpy() if RING_ID in raw else ""
    for column in segments:
        frame[segment_column(column)] = _segment_values(raw[column]).to_numpy()
    review_range = None
    if review is not None:
        when = pd.to_datetime(
            _as_text(raw[review]).to_numpy(), errors="coerce", utc=True, format="ISO8601"
        )
        frame["_when"] = when
        if when.notna().any():
            review_range = (when.min().isoformat(), when.max().isoformat())
        frame = frame.sort_values("_when", kind="stable", na_position="first")
    known = frame[frame["y"].notna()]
    latest = known
    if review is not None:  # verdicts of one date conflict as undated ones do
        when = known["_when"]
        last = when.groupby(known[CONTRIBUTOR]).transform("max")  # NaT when none is dated
        latest = known[when.eq(last) | (when.isna() & last.isna())]
    verdicts = latest.groupby(CONTRIBUTOR)["y"].nunique()
    conflicting = verdicts[verdicts > 1]
    if len(conflicting):
        hint = (
            "two verdicts share its latest review_date"
            if review is not None
            else "add a review_date column so the latest verdict wins"
        )
        raise InputError(
            f"{source}: contributor {conflicting.index[0]!r} has conflicting labels ({hint})"
        )
    known = known.drop_duplicates(CONTRIBUTOR, keep="last")
    unknown = frame[frame["y"].isna() & ~isin_ids(frame[CONTRIBUTOR], known[CONTRIBUTOR])]
    unknown = unknown.drop_duplicates(CONTRIBUTOR, keep="last")
    frame = pd.concat([known, unknown]).drop(columns="_when", errors="ignore")
    frame = frame.sort_values(CONTRIBUTOR, kind="stable").reset_index(drop=True)
    return Labels(frame, source, segments, review_range, len(raw), respelled)


def _respelled(ids: pd.Series, spellings: pd.Series) -> tuple[pd.Series, int]:
    """Ids spelled as the run spells them (``spellings``: lower case → the run's spelling),
    else as the labels first spell them; and how many label rows the run spells otherwise."""
    folded = ids.str.lower()
    first = ids.groupby(folded.to_numpy(), sort=False).transform("first")
    run_spelling = folded.map(spellings).astype(object)
    changed = int((run_spelling.notna() & (run_spelling != ids)).sum())
    return run_spelling.where(run_spelling.notna(), first.astype(object)), changed


#: Compressed text tables pandas reads by their name: labels.csv.gz is a CSV file.
_COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".zip")


def _read_table(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix in _COMPRESSED:
        suffix = Path(path.stem).suffix.lower()
        suffix = suffix if suffix in (".csv", ".tsv", ".txt", ".jsonl", ".ndjson", ".json") else ""
    if not path.is_file():
        raise InputError(f"{path}: labels file not found")
    try:
        if suffix in (".csv", ".tsv", ".txt"):
            sep = "\t" if suffix == ".tsv" else ","
            # index_col=False: a delimiter ending each row is no extra first column (an index);
            # a field past the header's has no name, so nothing reads it
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", pd.errors.ParserWarning)
                return pd.read_csv(path, dtype=str, keep_default_na=False, sep=sep, index_col=False)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".jsonl", ".ndjson", ".json"):
            return pd.read_json(path, lines=suffix != ".json", dtype=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read labels: {exc}") from None
    raise InputError(
        f"{path}: unsupported labels file type {suffix or path.suffix!r}"
        " (use .csv, .tsv, .parquet, .jsonl, the text ones optionally .gz)"
    )


def _segment_values(values: pd.Series) -> pd.Series:
    """Segment values as text; a numeric column with many values is cut into quartiles."""
    text = _as_text(values).str.strip()
    numbers = pd.to_numeric(text.where(text != ""), errors="coerce")
    present = text != ""
    if present.any() and numbers[present].notna().all() and numbers.nunique() > 12:
        bins = pd.qcut(numbers, 4, duplicates="drop")
        names = bins.cat.rename_categories(lambda b: f"{b.left:g} to {b.right:g}")
        labels = names.astype(object)  # a blank value has no bin: NaN, then MISSING
        text = labels.where(present, "")
    return text.replace("", MISSING)
