"""Diff: what changed between two detect runs, ring by ring and contributor by contributor.

Rings are matched by member overlap with the same rules as lineage (``lineage.match_rings``),
so the diff is right whether or not the newer run was made with ``--previous``: a ring of the
new run is ``kept``, ``grown`` or ``shrunk`` when it continues a ring of the old run (whatever
its id), ``split`` or ``merged`` with its parent rings, or ``new``; a ring of the old run
that neither continues nor is a parent is ``gone`` (``into`` the new ring that took most of its
members, if one did). Contributors are compared by flag: flagged in the new run but not in the
old one (``newly flagged``), and the reverse (``no longer flagged``). Both sides are read from
the runs' ``members`` tables, which carry each ring's score and flag.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ringfinder.errors import InputError
from ringfinder.lineage import (
    CONTINUED,
    GONE,
    KEPT,
    MERGED,
    RING_ID,
    RING_INDEX,
    SPLIT,
    STATUSES,
    match_rings,
    read_run_members,
)
from ringfinder.schema import CONTRIBUTOR

#: Every change a ring can show in a diff, in report order.
CHANGES = (*STATUSES, GONE)
#: Column titles of ``RunDiff.rows``.
ROW_HEADER = ("change", "id", "before", "after")
#: Columns of ``RunDiff.rings``.
RING_COLUMNS = (
    "change",
    "ring_id",
    "old_ring_id",
    "parents",
    "into",
    "old_size",
    "size",
    "old_score",
    "ring_score",
    "flagged",
)
NEWLY_FLAGGED = "newly flagged"
NO_LONGER_FLAGGED = "no longer flagged"


@dataclass(frozen=True)
class RunDiff:
    """The changes from one detect run to another.

    Attributes
    ----------
    old, new : str
        The run folders compared.
    rings : DataFrame
        One row per ring of the new run, then one per ``gone`` ring of the old run
        (``RING_COLUMNS``): ``ring_id`` is the new run's id (the old id for a gone ring),
        ``old_ring_id`` the ring it continues, ``parents`` the rings it split or merged from,
        ``into`` (gone rings) the new ring that took most of its members, if any.
    contributors : DataFrame
        ``change, contributor_id, old_ring_id, ring_id, old_score, ring_score`` for every
        contributor newly flagged or no longer flagged, sorted by change and id.
    """

    old: str
    new: str
    rings: pd.DataFrame
    contributors: pd.DataFrame

    def counts(self) -> dict[str, int]:
        """Rings per change (``CHANGES``), and contributors newly and no longer flagged."""
        per_change = self.rings["change"].value_counts()
        counts = {change: int(per_change.get(change, 0)) for change in CHANGES}
        per_flag = self.contributors["change"].value_counts()
        for change in (NEWLY_FLAGGED, NO_LONGER_FLAGGED):
            counts[change.replace(" ", "_")] = int(per_flag.get(change, 0))
        return counts

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary: counts, rings by change (kept ones too) and contributors."""
        rings: dict[str, list[dict[str, Any]]] = {}
        for change in CHANGES:
            chosen = self.rings[self.rings["change"] == change]
            rings[change] = [_ring_record(row) for row in chosen.to_dict("records")]
        contributors = {
            change.replace(" ", "_"): [
                _plain(row)
                for row in self.contributors[self.contributors["change"] == change]
                .drop(columns="change")
                .to_dict("records")
            ]
            for change in (NEWLY_FLAGGED, NO_LONGER_FLAGGED)
        }
        return {
            "old": self.old,
            "new": self.new,
            "counts": self.counts(),
            "rings": rings,
            "contributors": contributors,
        }

    def rows(self) -> list[tuple[str, str, str, str]]:
        """``(change, id, before, after)`` rows (``ROW_HEADER``), kept rings left out."""
        out: list[tuple[str, str, str, str]] = []
        for change in CHANGES:
            if change == KEPT:
                continue
            for row in self.rings[self.rings["change"] == change].itertuples(index=False):
                out.append((change, row.ring_id, _before(row), _after(row)))
        for row in self.contributors.itertuples(index=False):
            before = _membership(row.old_ring_id, row.old_score)
            after = _membership(row.ring_id, row.ring_score)
            out.append((row.change, row.contributor_id, before, after))
        return out


def diff_runs(
    old_dir: str | Path,
    new_dir: str | Path,
    *,
    min_overlap: float = 0.5,
    min_containment: float = 0.8,
) -> RunDiff:
    """Compare two detect run folders: rings new, grown, shrunk, split, merged and gone, and flags.

    Parameters
    ----------
    old_dir, new_dir : folders written by ``ringfinder detect`` (``members.parquet`` or
        ``members.csv``).
    min_overlap, min_containment : the matching thresholds of ``lineage.match_rings``.

    Returns
    -------
    RunDiff

    Raises
    ------
    InputError
        If a folder is not a detect run.

    Examples
    --------
    >>> diff = diff_runs("out/monday", "out/tuesday")  # doctest: +SKIP
    >>> diff.counts()["merged"]  # doctest: +SKIP
    >>> diff.to_dict()["contributors"]["newly_flagged"][:1]  # doctest: +SKIP
    """
    old_members, new_members = read_run_members(old_dir), read_run_members(new_dir)
    for folder, frame in ((old_dir, old_members), (new_dir, new_members)):
        if "flagged" not in frame:
            raise InputError(f"{folder}: the members table has no flagged column")
    rings = _ring_changes(
        old_members, new_members, min_overlap=min_overlap, min_containment=min_containment
    )
    return RunDiff(
        old=str(old_dir),
        new=str(new_dir),
        rings=rings,
        contributors=_flag_changes(old_members, new_members),
    )


def _ring_table(members: pd.DataFrame) -> pd.DataFrame:
    """Size, score and flag per ring, from a members table."""
    score = (
        members["ring_score"]
        if "ring_score" in members
        else pd.Series(float("nan"), index=members.index)
    )
    table = members.assign(_score=score.astype(float), _flagged=members["flagged"].astype(bool))
    return table.groupby(RING_ID, sort=True).agg(
        size=(CONTRIBUTOR, "size"), ring_score=("_score", "max"), flagged=("_flagged", "any")
    )


def _ring_changes(
    old_members: pd.DataFrame,
    new_members: pd.DataFrame,
    *,
    min_overlap: float,
    min_containment: float,
) -> pd.DataFrame:
    """One row per ring of the new run and per gone ring of the old run."""
    old_rings, new_rings = _ring_table(old_members), _ring_table(new_members)
    index = pd.Series(range(len(new_rings)), index=new_rings.index)
    assignment = pd.DataFrame(
        {CONTRIBUTOR: new_members[CONTRIBUTOR], RING_INDEX: new_members[RING_ID].map(index)}
    )
    lineage = match_rings(
        assignment, old_members, min_overlap=min_overlap, min_containment=min_containment
    )
    new_id_of = {lineage.ids[int(i)]: ring_id for ring_id, i in index.items()}
    records = []
    for ring_id, ring in new_rings.iterrows():
        matched = lineage.ids[int(index[ring_id])]
        change = lineage.status[matched]
        old_id = matched if change in CONTINUED else None
        records.append(
            {
                "change": change,
                "ring_id": ring_id,
                "old_ring_id": old_id,
                "parents": lineage.parents.get(matched, []),
                "into": None,
                "old_size": old_rings.at[old_id, "size"] if old_id else None,
                "size": ring["size"],
                "old_score": old_rings.at[old_id, "ring_score"] if old_id else None,
                "ring_score": ring["ring_score"],
                "flagged": ring["flagged"],
            }
        )
    for ring_id in lineage.gone:
        old = old_rings.loc[ring_id]
        records.append(
            {
                "change": GONE,
                "ring_id": ring_id,
                "old_ring_id": ring_id,
                "parents": [],
                "into": new_id_of.get(lineage.absorbed.get(ring_id, "")),
                "old_size": old["size"],
                "size": None,
                "old_score": old["ring_score"],
                "ring_score": None,
                "flagged": None,
            }
        )
    frame = pd.DataFrame.from_records(records, columns=list(RING_COLUMNS))
    order = {change: i for i, change in enumerate(CHANGES)}
    frame = frame.sort_values(
        ["change", "ring_id"], key=lambda s: s.map(order) if s.name == "change" else s
    )
    for column in ("old_ring_id", "into"):
        frame[column] = _objects(frame[column])
    return frame.astype(
        {
            "old_size": "Int64",
            "size": "Int64",
            "old_score": "Float64",
            "ring_score": "Float64",
            "flagged": "boolean",
        }
    ).reset_index(drop=True)


def _flag_changes(old_members: pd.DataFrame, new_members: pd.DataFrame) -> pd.DataFrame:
    """Contributors flagged in one run and not in the other."""

    def flags(members: pd.DataFrame) -> pd.DataFrame:
        score = members["ring_score"] if "ring_score" in members else float("nan")
        return pd.DataFrame(
            {
                CONTRIBUTOR: members[CONTRIBUTOR].astype(str),
                "ring_id": members[RING_ID].astype(str),
                "score": score,
                "flagged": members["flagged"].astype(bool),
            }
        )

    both = flags(old_members).merge(
        flags(new_members), on=CONTRIBUTOR, how="outer", suffixes=("_old", "_new")
    )
    was = both["flagged_old"].fillna(False).astype(bool)
    now = both["flagged_new"].fillna(False).astype(bool)
    both["change"] = None
    both.loc[now & ~was, "change"] = NEWLY_FLAGGED
    both.loc[was & ~now, "change"] = NO_LONGER_FLAGGED
    changed = both[both["change"].notna()]
    out = pd.DataFrame(
        {
            "change": changed["change"].astype(str),
            CONTRIBUTOR: changed[CONTRIBUTOR],
            "old_ring_id": _objects(changed["ring_id_old"]),
            "ring_id": _objects(changed["ring_id_new"]),
            "old_score": changed["score_old"].astype("Float64"),
            "ring_score": changed["score_new"].astype("Float64"),
        }
    )
    return out.sort_values(["change", CONTRIBUTOR]).reset_index(drop=True)


def _objects(values: pd.Series) -> pd.Series:
    """Text values as Python objects, missing ones as ``None`` (not NaN)."""
    return values.astype(object).where(values.notna(), None)


def _plain(record: dict[str, Any]) -> dict[str, Any]:
    """A record with pandas missing values as ``None`` and numpy scalars as Python ones."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, list):
            out[key] = value
        elif value is None or value is pd.NA or (isinstance(value, float) and value != value):
            out[key] = None
        elif hasattr(value, "item"):
            out[key] = value.item()
        else:
            out[key] = value
    return out


def _ring_record(row: dict[str, Any]) -> dict[str, Any]:
    record = _plain(row)
    record.pop("change")
    return record


def _before(row: Any) -> str:
    if row.change in (SPLIT, MERGED):
        return "from " + ", ".join(row.parents)
    if row.old_ring_id is None or pd.isna(row.old_size):
        return "-"
    return _ring_text(row.old_ring_id, row.old_size, row.old_score)


def _after(row: Any) -> str:
    if pd.isna(row.size):
        return f"into {row.into}" if row.into else "-"
    return _ring_text(None, row.size, row.ring_score)


def _ring_text(ring_id: str | None, size: Any, score: Any) -> str:
    text = f"{int(size)} members"
    if not pd.isna(score):
        text += f", score {float(score):.3f}"
    return f"{ring_id}: {text}" if ring_id else text


def _membership(ring_id: Any, score: Any) -> str:
    if ring_id is None or pd.isna(ring_id):
        return "not in a ring"
    return f"{ring_id}, score {float(score):.3f}" if not pd.isna(score) else str(ring_id)
