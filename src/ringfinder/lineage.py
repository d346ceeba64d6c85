"""Lineage: stable ring ids across runs, matched by member overlap.

A ring of this run that is the same ring as one of the previous run keeps that ring's id, so
rule systems and investigators can follow it for weeks. Every other ring gets a new id derived
from its members (never a run counter), checked against every id used before.

Matching rules
--------------
Let ``n`` be a new ring, ``o`` an old ring (previous run) and ``shared = |n ∩ o|``. Then

- ``jaccard = shared / |n ∪ o|``, ``held = shared / |o|`` (the share of ``o`` now in ``n``) and
  ``drawn = shared / |n|`` (the share of ``n`` that was in ``o``);
- ``n`` and ``o`` are *mutual best* when ``o`` is the only old ring sharing the most members
  with ``n`` and ``n`` is the only new ring sharing the most members with ``o`` (a tie means
  the lineage is ambiguous and nothing is continued through it);
- ``n`` *takes most of* ``o`` when ``held > 1/2``; ``n`` is a *fragment* of ``o`` when
  ``drawn > 1/2``. ``n`` is a *merge* when it takes most of two or more old rings; ``o`` has
  *split* when it has two or more fragments.

A new ring **continues** an old ring, and keeps its id, when they are mutual best and either

1. ``jaccard >= min_overlap`` (the same ring, give or take a few members), or
2. by containment: ``held >= min_containment`` (it grew: nearly all the old members are still
   there, however many joined) or ``drawn >= min_containment`` (it shrank: nearly all of its
   members were in the old ring, however many left), provided ``n`` is not a merge and ``o``
   has not split.

A continuing ring's status is ``grown``, ``shrunk`` or ``kept`` by its size against the old
ring's. Every other new ring gets a new id and is

- ``merged``, with ``parents`` the old rings it takes most of, when it is a merge;
- ``split``, with ``parents = [o]``, when it is a fragment of an old ring ``o`` that has
  split (``o`` may still continue through its largest fragment when rule 1 holds: the rest
  split off);
- ``new`` otherwise, without parents.

An old ring that neither continues nor is a parent is ``gone``; when a new ring takes most
of it (a big ring that continued by rule 1 and swallowed a small one), that ring is recorded
as where it went (``absorbed``). The overlap matching follows
the community tracking of Greene, Doyle and Cunningham (2010), "Tracking the evolution of
communities in dynamic social networks", with mutual best matches as in Palla, Barabási and
Vicsek (2007), "Quantifying social group evolution".
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ringfinder.errors import InputError
from ringfinder.export import unguarded
from ringfinder.schema import CONTRIBUTOR

RING_ID_PREFIX = "R"
RING_ID_HEX = 12
RING_ID = "ring_id"
RING_ID_FORM = f"{RING_ID_PREFIX}[0-9a-f]{{{RING_ID_HEX}}}"
RING_INDEX = "ring_index"

NEW = "new"
KEPT = "kept"
GROWN = "grown"
SHRUNK = "shrunk"
SPLIT = "split"
MERGED = "merged"
GONE = "gone"
#: Statuses of a ring of this run that keeps the id of a ring of the previous run.
CONTINUED = (KEPT, GROWN, SHRUNK)
#: Every status a ring of this run can have.
STATUSES = (NEW, KEPT, GROWN, SHRUNK, SPLIT, MERGED)


def ring_id_for(members: Collection[str], *, salt: int = 0) -> str:
    """Deterministic id of a ring from its member ids (order does not matter).

    ``salt`` > 0 derives another id from the same members, for when the first is taken.

    Examples
    --------
    >>> ring_id_for(["b", "a"]) == ring_id_for(["a", "b"])
    True
    >>> ring_id_for(["a", "b"], salt=1) != ring_id_for(["a", "b"])
    True
    """
    text = "\n".join(sorted(members))
    if salt:
        text += f"\n#salt={salt}"
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=16)
    return RING_ID_PREFIX + digest.hexdigest()[:RING_ID_HEX]


@dataclass(frozen=True)
class Lineage:
    """Ring ids of one run and how its rings descend from the previous run's.

    Attributes
    ----------
    ids : dict of int to str
        ``ring_index`` → ring id, in ``ring_index`` order.
    parents : dict of str to list of str
        Ring id → the previous run's ring ids it came from (sorted); only for ``split`` and
        ``merged`` rings.
    status : dict of str to str
        Ring id → one of ``STATUSES``.
    gone : list of str
        The previous run's ring ids that neither continue nor are a parent (sorted).
    absorbed : dict of str to str
        Gone ring id → id of the ring of this run that took most of its members, if any.
    """

    ids: dict[int, str]
    parents: dict[str, list[str]] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)
    gone: list[str] = field(default_factory=list)
    absorbed: dict[str, str] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Rings of this run per status, and ``gone`` rings of the previous run."""
        counts = {name: 0 for name in STATUSES}
        for value in self.status.values():
            counts[value] += 1
        counts[GONE] = len(self.gone)
        return counts


def match_rings(
    assignment: pd.DataFrame,
    previous_members: pd.DataFrame | None,
    *,
    used_ids: Collection[str] = frozenset(),
    min_overlap: float = 0.5,
    min_containment: float = 0.8,
) -> Lineage:
    """Give each ring of this run an id: the previous run's when it is the same ring, else new.

    Parameters
    ----------
    assignment : DataFrame
        ``contributor_id, ring_index``: this run's rings, each contributor in at most one.
    previous_members : DataFrame or None
        ``contributor_id, ring_id`` of the previous run (other columns are ignored); ``None``
        or empty when there is none.
    used_ids : collection of str
        Every ring id used before (for example ``history.used_ring_ids``); a new id is never
        one of them, nor one of the previous run's ids.
    min_overlap : float
        Jaccard similarity at which a mutual best pair is the same ring (rule 1 above).
    min_containment : float
        Share of the old ring kept (growth) or of the new ring inherited (shrinkage) at which
        a mutual best pair is the same ring (rule 2 above).

    Returns
    -------
    Lineage
        Ids, parents, statuses and the previous run's rings that are gone.

    Examples
    --------
    >>> old = pd.DataFrame({"contributor_id": ["a", "b", "c"], "ring_id": ["R1"] * 3})
    >>> new = pd.DataFrame({"contributor_id": ["a", "b", "c", "d"], "ring_index": [0] * 4})
    >>> lineage = match_rings(new, old)
    >>> lineage.ids, lineage.status
    ({0: 'R1'}, {'R1': 'grown'})
    """
    for name, value in (("min_overlap", min_overlap), ("min_containment", min_containment)):
        if not 0 < value <= 1:
            raise ValueError(f"{name} = {value}: must be in (0, 1]")
    _require(assignment, (CONTRIBUTOR, RING_INDEX), "assignment")
    current = assignment[[CONTRIBUTOR, RING_INDEX]]
    members = _members_by_ring(current)
    if previous_members is None or previous_members.empty:
        previous = pd.DataFrame({CONTRIBUTOR: pd.Series(dtype=str), RING_ID: pd.Series(dtype=str)})
    else:
        _require(previous_members, (CONTRIBUTOR, RING_ID), "previous members")
        previous = previous_members[[CONTRIBUTOR, RING_ID]].dropna()

    pairs = _overlaps(current, previous)
    continued = _continuations(pairs, min_overlap=min_overlap, min_containment=min_containment)
    continued_new = dict(
        zip(continued[RING_INDEX].tolist(), continued[RING_ID].tolist(), strict=True)
    )
    merge_parents = _merge_parents(pairs)
    split_parent = _split_parents(pairs)

    taken = set(used_ids) | set(previous[RING_ID].unique().tolist()) | set(continued_new.values())
    ids: dict[int, str] = {}
    status: dict[str, str] = {}
    parents: dict[str, list[str]] = {}
    old_sizes = previous.groupby(RING_ID).size().to_dict()
    for index, ring in members.items():
        if index in continued_new:
            ring_id = continued_new[index]
            size, old = len(ring), old_sizes[ring_id]
            status[ring_id] = GROWN if size > old else SHRUNK if size < old else KEPT
        else:
            ring_id = _fresh_id(ring, taken)
            taken.add(ring_id)
            if index in merge_parents:
                status[ring_id], parents[ring_id] = MERGED, merge_parents[index]
            elif index in split_parent:
                status[ring_id], parents[ring_id] = SPLIT, [split_parent[index]]
            else:
                status[ring_id] = NEW
        ids[index] = ring_id
    ancestors = set(continued_new.values()).union(*parents.values())
    gone = sorted(set(old_sizes) - ancestors)
    most = pairs[(pairs["held"] > 0.5) & pairs[RING_ID].isin(gone)]
    absorbed = {
        old: ids[int(index)] for old, index in zip(most[RING_ID], most[RING_INDEX], strict=True)
    }
    return Lineage(
        ids=ids, parents=parents, status=status, gone=gone, absorbed=dict(sorted(absorbed.items()))
    )


def assign_ring_ids(
    assignment: pd.DataFrame, *, used_ids: Collection[str] = frozenset()
) -> dict[int, str]:
    """Map each ``ring_index`` of a detect assignment to an id derived from its members."""
    return match_rings(assignment, None, used_ids=used_ids).ids


def read_run_members(run_dir: str | Path) -> pd.DataFrame:
    """The ``members`` table of a finished detect run (``members.parquet``, else ``members.csv``).

    Cells that the CSV export neutralised against spreadsheet formulas are restored.

    Raises
    ------
    InputError
        If the folder holds no members table, or it cannot be read or lacks
        ``contributor_id``/``ring_id``.
    """
    folder = Path(run_dir)
    parquet, csv = folder / "members.parquet", folder / "members.csv"
    try:
        if parquet.is_file():
            frame, source = pd.read_parquet(parquet), parquet
        elif csv.is_file():
            frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
            frame = frame.apply(unguarded)
            if "flagged" in frame:
                frame["flagged"] = frame["flagged"].str.lower().eq("true")
            for column in ("ring_score", "member_score"):
                if column in frame:
                    frame[column] = pd.to_numeric(frame[column], errors="coerce")
            source = csv
        else:
            raise InputError(
                f"{folder}: not a detect run folder (no members.parquet or members.csv)"
            )
    except InputError:
        raise
    except (OSError, ValueError) as exc:
        raise InputError(f"{folder}: cannot read the members table: {exc}") from None
    _require(frame, (CONTRIBUTOR, RING_ID), str(source))
    return frame


def check_ring_ids(members: pd.DataFrame, source: str) -> pd.DataFrame:
    """``members`` as they are, if every ring id is one ``ring_id_for`` makes.

    The ids of a previous run are handed on to rule engines, the pages and their file names;
    an edited or foreign table would hand on whatever it holds.

    Raises
    ------
    InputError
        Naming the first id that is not ``R`` and 12 hexadecimal digits, and its row.
    """
    ids = members[RING_ID].astype(str)
    bad = ~ids.str.fullmatch(RING_ID_FORM)
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise InputError(
            f"{source}: ring id {ids.iloc[row]!r} (row {row + 1}) is not a ringfinder ring id "
            f"({RING_ID_PREFIX} and {RING_ID_HEX} hexadecimal digits); give an unedited run"
        )
    return members


def _require(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(
            f"{what}: missing column(s) {', '.join(missing)}; expected {', '.join(columns)}"
        )


def _overlaps(current: pd.DataFrame, previous: pd.DataFrame) -> pd.DataFrame:
    """One row per (new ring, old ring) sharing members: counts, sizes and overlap ratios."""
    new_size = current.groupby(RING_INDEX).size().rename("new_size")
    old_size = previous.groupby(RING_ID).size().rename("old_size")
    pairs = (
        current.merge(previous, on=CONTRIBUTOR, how="inner")
        .groupby([RING_INDEX, RING_ID], sort=True)
        .size()
        .rename("shared")
        .reset_index()
        .join(new_size, on=RING_INDEX)
        .join(old_size, on=RING_ID)
    )
    shared = pairs["shared"].astype(float)
    pairs["jaccard"] = shared / (pairs["new_size"] + pairs["old_size"] - pairs["shared"])
    pairs["held"] = shared / pairs["old_size"]
    pairs["drawn"] = shared / pairs["new_size"]
    return pairs


def _strict_best(pairs: pd.DataFrame, key: str) -> pd.Series:
    """Rows that are the only one of their ``key`` group with the group's largest overlap."""
    top = pairs.groupby(key)["shared"].transform("max")
    is_top = pairs["shared"] == top
    ties = is_top.groupby(pairs[key]).transform("sum")
    return is_top & (ties == 1)


def _continuations(
    pairs: pd.DataFrame, *, min_overlap: float, min_containment: float
) -> pd.DataFrame:
    """The (new ring, old ring) pairs that are the same ring: rules 1 and 2."""
    mutual = _strict_best(pairs, RING_INDEX) & _strict_best(pairs, RING_ID)
    merge = pairs[RING_INDEX].map((pairs["held"] > 0.5).groupby(pairs[RING_INDEX]).sum()) >= 2
    split = pairs[RING_ID].map((pairs["drawn"] > 0.5).groupby(pairs[RING_ID]).sum()) >= 2
    similar = pairs["jaccard"] >= min_overlap
    contained = (
        ((pairs["held"] >= min_containment) | (pairs["drawn"] >= min_containment)) & ~merge & ~split
    )
    return pairs.loc[mutual & (similar | contained), [RING_INDEX, RING_ID]]


def _members_by_ring(current: pd.DataFrame) -> dict[int, list[str]]:
    """Ring index → its members, in ring index order (one stable sort, no per-group pandas)."""
    if current.empty:
        return {}
    index = current[RING_INDEX].to_numpy()
    order = np.argsort(index, kind="stable")
    index = index[order]
    names = current[CONTRIBUTOR].to_numpy(dtype=object)[order].tolist()
    starts = np.flatnonzero(np.r_[True, index[1:] != index[:-1]])
    ends = np.r_[starts[1:], len(index)]
    return {int(index[a]): names[a:b] for a, b in zip(starts, ends, strict=True)}


def _merge_parents(pairs: pd.DataFrame) -> dict[int, list[str]]:
    """New rings that take most of two or more old rings → those old rings."""
    most = pairs.loc[pairs["held"] > 0.5, [RING_INDEX, RING_ID]]
    most = most[most.groupby(RING_INDEX)[RING_ID].transform("size") >= 2]
    parents: dict[int, list[str]] = {}
    for index, ring_id in sorted(
        zip(most[RING_INDEX].tolist(), most[RING_ID].tolist(), strict=True)
    ):
        parents.setdefault(int(index), []).append(ring_id)
    return parents


def _split_parents(pairs: pd.DataFrame) -> dict[int, str]:
    """Fragments of old rings that have two or more fragments → that old ring."""
    fragments = pairs[pairs["drawn"] > 0.5]
    count = fragments.groupby(RING_ID)[RING_INDEX].transform("size")
    split = fragments[count >= 2]
    return dict(zip(split[RING_INDEX].astype(int).tolist(), split[RING_ID].tolist(), strict=True))


def _fresh_id(members: Collection[str], taken: Collection[str]) -> str:
    """The members' id, or the first salted one that is not taken."""
    salt = 0
    ring_id = ring_id_for(members)
    while ring_id in taken:
        salt += 1
        ring_id = ring_id_for(members, salt=salt)
    return ring_id


def lineage_frame(lineage: Lineage) -> pd.DataFrame:
    """``ring_id, status, parents`` (parents joined by ``;``), one row per ring of this run."""
    return pd.DataFrame(
        {
            RING_ID: list(lineage.status),
            "status": list(lineage.status.values()),
            "parents": [";".join(lineage.parents.get(r, [])) for r in lineage.status],
        }
    )
