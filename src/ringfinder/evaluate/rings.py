"""Ring-level figures: labelled rings found (Jaccard >= 0.5), purity of flagged rings, ring curve.

A labelled ring is the set of fraud contributors sharing a ``ring_id`` in the labels; it is found
when a flagged run ring matches it with Jaccard similarity of at least ``JACCARD_FOUND``.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from ringfinder.evaluate.inputs import FLAGGED, LABEL_RING, RING_ID, RING_SCORE, Labels, Run
from ringfinder.evaluate.metrics import Curve, ratio
from ringfinder.schema import CONTRIBUTOR

JACCARD_FOUND = 0.5


def ring_curve(frame: pd.DataFrame) -> Curve:
    """Rings with a labelled member; a ring is positive when most labelled members are fraud."""
    in_ring = frame[frame["in_ring"]]
    rings = in_ring.groupby(RING_ID).agg(score=(RING_SCORE, "max"), fraud=("positive", "mean"))
    return Curve.from_scores("rings by ring score", rings["fraud"] >= 0.5, rings["score"])


def ring_figures(
    frame: pd.DataFrame, *, run: Run, labels: Labels, notes: list[str]
) -> dict[str, Any]:
    """Counts, purity of flagged rings and, when labels name rings, labelled rings found.

    ``frame`` is the evaluation frame (one row per evaluated contributor); a missing ring id
    in the labels is noted in ``notes`` and leaves the ring recall figures None.
    """
    members = run.members
    sizes = members.groupby(RING_ID).size()
    ring_flagged = members.groupby(RING_ID)[FLAGGED].any()
    labelled = frame[frame["in_ring"] & frame[FLAGGED]]
    purity = labelled.groupby(RING_ID).agg(labelled=("positive", "size"), fraud=("positive", "sum"))
    purity["purity"] = purity["fraud"] / purity["labelled"]
    purity["size"] = sizes.reindex(purity.index).to_numpy()
    purity["ring_score"] = members.groupby(RING_ID)[RING_SCORE].max().reindex(purity.index)
    figures: dict[str, Any] = {
        "rings_in_run": len(sizes),
        "flagged_rings": int(ring_flagged.sum()),
        "flagged_rings_with_labels": len(purity),
        "mean_purity": float(purity["purity"].mean()) if len(purity) else math.nan,
        "pooled_purity": ratio(purity["fraud"].sum(), purity["labelled"].sum()),
        "pure_rings": int((purity["purity"] == 1.0).sum()),
        "labelled_rings": None,
        "labelled_rings_found": None,
        "found_rate": None,
        "labelled_rings_detected_any": None,
        "flagged_rings_matching": None,
        "labelled_ring_matches": [],
        "flagged_ring_purity": purity.reset_index()[
            [RING_ID, "size", "ring_score", "labelled", "fraud", "purity"]
        ].to_dict("records"),
    }
    truth = labels.frame[(labels.frame["y"] == 1.0) & (labels.frame[LABEL_RING] != "")]
    if truth.empty:
        notes.append("labels have no ring_id for fraud contributors: ring recall not computed")
        return figures
    best_any = _best_matches(truth, members, sizes)
    best_flagged = _best_matches(truth, members[members[FLAGGED]], sizes)
    table_rows = best_any[["size"]].join(best_flagged[["ring", "jaccard"]])
    table_rows["found"] = table_rows["jaccard"] >= JACCARD_FOUND
    found = table_rows[table_rows["found"]]
    figures.update(
        labelled_rings=len(table_rows),
        labelled_rings_found=int(table_rows["found"].sum()),
        found_rate=float(table_rows["found"].mean()),
        labelled_rings_detected_any=int((best_any["jaccard"] >= JACCARD_FOUND).sum()),
        flagged_rings_matching=int(found["ring"].nunique()),
        labelled_ring_matches=table_rows.rename_axis("labelled_ring")
        .reset_index()
        .rename(columns={"ring": "best_flagged_ring"})
        .to_dict("records"),
    )
    return figures


def _best_matches(truth: pd.DataFrame, members: pd.DataFrame, sizes: pd.Series) -> pd.DataFrame:
    """Each labelled ring's best run ring by Jaccard similarity (ties: the lowest ring id)."""
    truth_size = truth.groupby(LABEL_RING).size()
    pairs = truth[[CONTRIBUTOR, LABEL_RING]].merge(members[[CONTRIBUTOR, RING_ID]], on=CONTRIBUTOR)
    inter = pairs.groupby([LABEL_RING, RING_ID]).size().rename("inter").reset_index()
    union = (
        truth_size.reindex(inter[LABEL_RING]).to_numpy()
        + sizes.reindex(inter[RING_ID]).to_numpy()
        - inter["inter"].to_numpy()
    )
    inter["jaccard"] = inter["inter"] / union
    best = inter.sort_values(["jaccard", RING_ID], ascending=[False, True], kind="stable")
    best = best.drop_duplicates(LABEL_RING).set_index(LABEL_RING)
    out = pd.DataFrame({"size": truth_size})
    out["ring"] = best[RING_ID].reindex(out.index)
    out["jaccard"] = best["jaccard"].reindex(out.index).fillna(0.0)
    return out.sort_index()
