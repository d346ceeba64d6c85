"""Tests for ringfinder.evaluate: metrics by hand and against scikit-learn, run evaluation."""

from __future__ import annotations

import gzip
import json
import math
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ringfinder.config import Band
from ringfinder.decide import assign_actions
from ringfinder.errors import ConfigError, InputError
from ringfinder.evaluate import (
    average_precision,
    confusion_counts,
    evaluate_run,
    pr_curve,
    precision_recall_f1,
    read_labels,
    roc_auc,
    roc_points,
    write_evaluation,
)

PAYLOAD = "<img src=x onerror=alert(1)>"
BANDS = [
    {"action": "hold_payouts", "min_score": 0.8, "reasons_any": ["SHARED_PAYOUT"]},
    {"action": "manual_review", "min_score": 0.5},
    {"action": "monitor", "min_score": 0.2},
]


# --------------------------------------------------------------------------- fixtures
def _spreadsheet_safe(value: object) -> object:
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def make_run(
    tmp_path: Path,
    *,
    fmt: str = "parquet",
    b1: str = "b1",
    bands: list[dict] | None = None,
    with_action: bool = False,
    threshold: float = 0.5,
    contributors: int = 20,
    ignore_case: bool | None = None,
    ring_scores: dict[str, float] | None = None,
) -> Path:
    """A hand-made run: R1 (0.9, flagged) a1-a4, R2 (0.7, flagged) b1 b2, R3 (0.3) c1 c2."""
    rows = [
        ("a1", "R1", 0.9, 0.9, "SHARED_PAYOUT;SIGNUP_BURST"),
        ("a2", "R1", 0.9, 0.8, "SHARED_PAYOUT;SIGNUP_BURST"),
        ("a3", "R1", 0.9, 0.7, "SHARED_PAYOUT;SIGNUP_BURST"),
        ("a4", "R1", 0.9, 0.6, "SHARED_PAYOUT;SIGNUP_BURST"),
        (b1, "R2", 0.7, 0.7, "SHARED_IP;ACTIVITY_OVERLAP"),
        ("b2", "R2", 0.7, 0.6, "SHARED_IP;ACTIVITY_OVERLAP"),
        ("c1", "R3", 0.3, 0.3, "SHARED_IP"),
        ("c2", "R3", 0.3, 0.2, "SHARED_IP"),
    ]
    members = pd.DataFrame(
        rows, columns=["contributor_id", "ring_id", "ring_score", "member_score", "reasons"]
    )
    if ring_scores:
        members["ring_score"] = members["ring_id"].map(ring_scores).fillna(members["ring_score"])
    members["flagged"] = members["ring_score"] >= threshold
    members["first_seen"] = "2024-01-01T00:00:00Z"
    members["last_seen"] = "2024-01-09T00:00:00Z"
    members["n_events"] = 5
    members["shared_identifiers"] = 2
    if with_action:
        members["action"] = assign_actions(members, [Band(**b) for b in BANDS])
    run = tmp_path / "run"
    run.mkdir()
    if fmt == "parquet":
        members.to_parquet(run / "members.parquet", index=False)
    text = members.astype(object).map(_spreadsheet_safe)
    text["flagged"] = members["flagged"].map({True: "true", False: "false"})
    text.to_csv(run / "members.csv", index=False)
    rings = members.groupby("ring_id", as_index=False).agg(
        size=("contributor_id", "size"),
        ring_score=("ring_score", "max"),
        flagged=("flagged", "any"),
    )
    rings.to_csv(run / "rings.csv", index=False)
    score: dict = {"threshold": threshold}
    if bands is not None:
        score["bands"] = bands
    manifest = {
        "ringfinder_version": "0.1.0",
        "contributors": contributors,
        "config": {"score": score},
    }
    if ignore_case is not None:
        manifest["config"]["input"] = {"contributor_ignore_case": ignore_case}
    (run / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return run


def make_labels(tmp_path: Path, *, b1: str = "b1", country_b1: str = "FR") -> Path:
    labels = pd.DataFrame(
        [
            ("a1", "fraud", "L1", "US"),
            ("a2", "fraud", "L1", "US"),
            ("a3", "1", "L1", "US"),
            (b1, "benign", "", country_b1),
            ("b2", "0", "", "DE"),
            ("c1", "fraud", "L2", "US"),
            ("c2", "benign", "", "DE"),
            ("d1", "fraud", "L2", "US"),
            ("d2", "benign", "", "DE"),
            ("d3", "benign", "", "DE"),
            ("e1", "", "", "DE"),
        ],
        columns=["contributor_id", "label", "ring_id", "country"],
    )
    path = tmp_path / "labels.csv"
    labels.to_csv(path, index=False)
    return path


# --------------------------------------------------------------------------- metrics
def test_perfect_predictions_score_one() -> None:
    y = np.array([1, 1, 0, 1, 0, 0])
    scores = np.array([0.9, 0.8, 0.1, 0.7, 0.2, 0.0])
    assert precision_recall_f1(y, y) == (1.0, 1.0, 1.0)
    assert average_precision(y, scores) == 1.0
    assert roc_auc(y, scores) == 1.0


def test_hand_worked_metrics() -> None:
    y = [1, 1, 0, 0, 1]
    scores = [0.9, 0.8, 0.7, 0.6, 0.1]
    # AP: recall steps of 1/3 at precision 1, 1 and 3/5.
    assert average_precision(y, scores) == pytest.approx((1 + 1 + 0.6) / 3, abs=1e-12)
    # AUC: 4 of the 6 (positive, negative) pairs are ordered correctly.
    assert roc_auc(y, scores) == pytest.approx(4 / 6, abs=1e-12)
    assert confusion_counts(y, [1, 0, 1, 0, 0]) == (1, 1, 2, 1)
    p, r, f = precision_recall_f1(y, [1, 0, 1, 0, 0])
    assert (p, r, f) == pytest.approx((0.5, 1 / 3, 0.4))
    precision, recall, thresholds = pr_curve(y, scores)
    assert thresholds.tolist() == [0.9, 0.8, 0.7, 0.6, 0.1]
    assert precision.tolist() == pytest.approx([1, 1, 2 / 3, 0.5, 0.6])
    assert recall.tolist() == pytest.approx([1 / 3, 2 / 3, 2 / 3, 2 / 3, 1])


def test_ties_count_half() -> None:
    assert roc_auc([1, 0], [0.5, 0.5]) == 0.5
    assert average_precision([1, 0], [0.5, 0.5]) == 0.5


def test_undefined_metrics_are_nan() -> None:
    p, r, f = precision_recall_f1([0, 0], [0, 0])
    assert math.isnan(p) and math.isnan(r) and math.isnan(f)
    assert math.isnan(average_precision([0, 0], [0.1, 0.2]))
    assert math.isnan(roc_auc([1, 1], [0.1, 0.2]))
    assert math.isnan(roc_auc([], []))


@pytest.mark.parametrize("seed", range(40))
def test_agrees_with_sklearn_on_random_data(seed: int) -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 300))
    y = rng.integers(0, 2, n)
    y[0], y[1] = 0, 1  # both classes present
    scores = rng.random(n)
    if seed % 2:  # many ties
        scores = np.round(scores, 1)
    pred = scores >= rng.random()
    p, r, f = precision_recall_f1(y, pred)
    nan = float("nan")
    assert p == pytest.approx(metrics.precision_score(y, pred, zero_division=nan), nan_ok=True)
    assert r == pytest.approx(metrics.recall_score(y, pred), abs=1e-9)
    assert f == pytest.approx(metrics.f1_score(y, pred, zero_division=nan), nan_ok=True)
    assert abs(average_precision(y, scores) - metrics.average_precision_score(y, scores)) < 1e-9
    assert abs(roc_auc(y, scores) - metrics.roc_auc_score(y, scores)) < 1e-9
    precision, recall, thresholds = pr_curve(y, scores)
    sk_p, sk_r, sk_t = metrics.precision_recall_curve(y, scores)
    np.testing.assert_allclose(precision, sk_p[:-1][::-1], atol=1e-12)
    np.testing.assert_allclose(recall, sk_r[:-1][::-1], atol=1e-12)
    np.testing.assert_array_equal(thresholds, sk_t[::-1])
    fpr, tpr, _ = roc_points(y, scores)
    sk_fpr, sk_tpr, _ = metrics.roc_curve(y, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr, atol=1e-12)
    np.testing.assert_allclose(tpr, sk_tpr, atol=1e-12)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.floats(0, 1, allow_nan=False), st.booleans()),
        min_size=1,
        max_size=60,
    )
)
def test_metric_properties(rows: list[tuple[bool, float, bool]]) -> None:
    y = np.array([r[0] for r in rows])
    scores = np.array([r[1] for r in rows])
    pred = np.array([r[2] for r in rows])
    for value in precision_recall_f1(y, pred):
        assert math.isnan(value) or 0.0 <= value <= 1.0
    ap, auc = average_precision(y, scores), roc_auc(y, scores)
    assert math.isnan(ap) == (not y.any())
    assert math.isnan(auc) == (y.all() or not y.any())
    if not math.isnan(ap):
        assert 0.0 <= ap <= 1.0 + 1e-12
    if not math.isnan(auc):
        assert 0.0 <= auc <= 1.0 + 1e-12
        assert roc_auc(y, -scores) == pytest.approx(1.0 - auc, abs=1e-9)


# --------------------------------------------------------------------------- decision bands
def test_bands_first_match_wins() -> None:
    members = pd.DataFrame(
        {
            "ring_score": [0.95, 0.95, 0.6, 0.3, 0.1, 0.85],
            "member_score": [0.9, 0.9, 0.6, 0.3, 0.1, 0.1],
            "reasons": [
                "SHARED_PAYOUT;SIGNUP_BURST",
                "SHARED_IP",
                "SHARED_PAYOUT",
                "",
                "SHARED_PAYOUT",
                "SIGNUP_BURST;PAYOUT_CONSOLIDATION",
            ],
        }
    )
    bands = [Band(**b) for b in BANDS]
    actions = assign_actions(members, bands)
    assert actions.tolist() == [
        "hold_payouts",
        "manual_review",  # high score but no SHARED_PAYOUT: the next band
        "manual_review",  # SHARED_PAYOUT but below 0.8
        "monitor",
        "none",
        "manual_review",  # PAYOUT_CONSOLIDATION is not SHARED_PAYOUT
    ]
    # Order matters: a broad band first shadows the later ones.
    broad_first = [Band(action="monitor", min_score=0.2), *bands]
    assert set(assign_actions(members, broad_first)) == {"monitor", "none"}
    by_member = [Band(action="hold_payouts", min_score=0.5, score="member_score")]
    assert assign_actions(members, by_member).tolist()[-1] == "none"
    assert "reasons" in members and list(members.columns) == [
        "ring_score",
        "member_score",
        "reasons",
    ]


def test_band_config_is_validated() -> None:
    with pytest.raises(ValidationError):
        Band(action="hold", min_score=0.5, reasons_any=["SHARED_PAYOT"])
    with pytest.raises(ValidationError):
        Band(action="hold", min_score=1.5)
    with pytest.raises(ValidationError):
        Band(action="Hold Payouts!", min_score=0.5)
    with pytest.raises(ValidationError):
        Band(action="hold", min_score=0.5, colour="red")  # type: ignore[call-arg]


# --------------------------------------------------------------------------- evaluate_run
def test_hand_worked_run(tmp_path: Path) -> None:
    run = make_run(tmp_path, bands=BANDS)
    ev = evaluate_run(run, make_labels(tmp_path), ks=(1, 2, 4, 6, 8, 100))
    c = ev.contributors
    # evaluated: 10 labelled (a4 has no row, e1 an empty label); TP a1-a3, FP b1 b2, FN c1 d1.
    assert (c["evaluated"], c["true_positives"], c["false_positives"]) == (10, 3, 2)
    assert (c["false_negatives"], c["true_negatives"]) == (2, 3)
    assert c["precision"] == pytest.approx(0.6)
    assert c["recall"] == pytest.approx(0.6)
    assert c["f1"] == pytest.approx(0.6)
    assert c["fp_rate"] == pytest.approx(0.4)
    assert c["fp_per_10k"] == pytest.approx(2000)
    assert (c["flagged_in_run"], c["flagged_not_evaluated"], c["flagged_rings"]) == (6, 1, 2)
    p = ev.population
    assert (p["labelled_fraud"], p["labelled_benign"], p["labelled_unknown"]) == (5, 5, 1)
    assert p["unlabelled_members"] == 1

    curve = ev.curves["contributor_ring_score"]
    # thresholds 0.9 / 0.7 / 0.3 / 0: (P, R) = (1, .6) (.6, .6) (4/7, .8) (.5, 1)
    assert curve.average_precision == pytest.approx(0.6 + 0.2 * 4 / 7 + 0.2 * 0.5)
    assert curve.roc_auc == pytest.approx(18.5 / 25)
    rings_curve = ev.curves["ring_score"]  # R1 +, R2 -, R3 + (half fraud)
    assert rings_curve.average_precision == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert rings_curve.roc_auc == pytest.approx(0.5)

    r = ev.rings
    assert (r["rings_in_run"], r["flagged_rings"], r["flagged_rings_with_labels"]) == (3, 2, 2)
    assert r["mean_purity"] == pytest.approx(0.5)
    assert r["pooled_purity"] == pytest.approx(0.6)
    assert r["pure_rings"] == 1
    assert (r["labelled_rings"], r["labelled_rings_found"], r["found_rate"]) == (2, 1, 0.5)
    matches = {m["labelled_ring"]: m for m in r["labelled_ring_matches"]}
    assert matches["L1"]["best_flagged_ring"] == "R1"
    assert matches["L1"]["jaccard"] == pytest.approx(0.75)
    assert not matches["L2"]["found"] and matches["L2"]["jaccard"] == 0.0  # no flagged ring
    assert r["labelled_rings_detected_any"] == 1  # L1; L2 vs the unflagged R3 is only 1/3

    at_k = {row["k"]: row for row in ev.precision_at_k}
    assert at_k[1]["precision"] == 1.0 and at_k[4]["precision"] == 1.0
    assert (at_k[6]["labelled"], at_k[6]["fraud"]) == (5, 3)
    assert at_k[8]["precision"] == pytest.approx(4 / 7)
    assert at_k[8]["recall"] == pytest.approx(4 / 5)
    assert at_k[100]["queue"] == 8

    bands = {b["action"]: b for b in ev.bands}
    assert [b["action"] for b in ev.bands] == ["hold_payouts", "manual_review", "monitor"]
    assert (bands["hold_payouts"]["members"], bands["hold_payouts"]["labelled"]) == (4, 3)
    assert bands["hold_payouts"]["precision"] == 1.0
    assert bands["manual_review"]["precision"] == 0.0
    assert bands["monitor"]["precision"] == 0.5

    reasons = {row["reason"]: row for row in ev.fp_by_reason}
    assert reasons["SHARED_IP"]["false_positives"] == 2
    assert reasons["SHARED_IP"]["contributors"] == 4
    assert reasons["SHARED_IP"]["fp_rate"] == pytest.approx(2 / 3)
    assert reasons["SHARED_IP"]["fp_share"] == 1.0
    assert reasons["SHARED_IP"]["examples"] == ["b1", "b2"]
    assert reasons["SHARED_PAYOUT"]["false_positives"] == 0
    assert reasons["SHARED_PAYOUT"]["precision"] == 1.0
    country = {row["value"]: row for row in ev.fp_by_segment["country"]}
    assert [row["value"] for row in ev.fp_by_segment["country"]] == ["DE", "FR", "US"]
    assert (country["DE"]["contributors"], country["DE"]["false_positives"]) == (4, 1)
    assert country["DE"]["fp_rate"] == pytest.approx(0.25)
    assert country["US"]["precision"] == 1.0 and math.isnan(country["US"]["fp_rate"])
    assert [e["contributor_id"] for e in ev.fp_examples] == ["b1", "b2"]
    assert ev.fp_examples[0]["segments"] == {"country": "FR"}

    data = ev.to_dict()
    assert data["contributors"]["precision"] == 0.6
    assert data["false_positives"]["by_segment"]["country"][2]["fp_rate"] is None
    rows = dict(ev.summary_rows())
    assert rows["precision"] == "0.600" and rows["labelled rings found"] == "1/2 (0.500)"


def test_threshold_under_fp_budget(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    labels = make_labels(tmp_path)
    # fp <= 1 of 5 benign: only thresholds above 0.7 fit; recall 0.6, the highest such is 0.9.
    rec = evaluate_run(run, labels, fp_budget_rate=0.2).recommendations[0]
    assert rec["threshold"] == 0.9
    assert (rec["recall"], rec["false_positives"], rec["flagged_in_run"]) == (0.6, 0, 4)
    # fp <= 3: threshold 0.3 flags R3 too: recall 0.8 with 3 false positives.
    rec = evaluate_run(run, labels, fp_budget_rate=0.6).recommendations[0]
    assert (rec["threshold"], rec["recall"], rec["false_positives"]) == (0.3, 0.8, 3)
    # 3 FPs per 10k of 10 evaluated allow none; 2000 per 10k allow two (0.7 keeps recall 0.6).
    rec = evaluate_run(run, labels, fp_per_10k=3).recommendations[0]
    assert rec["threshold"] == 0.9 and rec["false_positives"] == 0
    rec = evaluate_run(run, labels, fp_per_10k=3000).recommendations[0]
    assert rec["threshold"] == 0.3


def test_recommended_threshold_is_printed_exactly(tmp_path: Path) -> None:
    """Rounded, 0.70004 would read 0.700 and flag R2 (0.70001: two more false positives)."""
    run = make_run(tmp_path, threshold=0.95, ring_scores={"R3": 0.70004, "R2": 0.70001})
    ev = evaluate_run(run, make_labels(tmp_path), fp_budget_rate=0.4)
    rec = ev.recommendations[0]
    assert rec["threshold"] == 0.70004 and rec["flagged_in_run"] == 6
    printed = dict(ev.summary_rows())["threshold for " + rec["constraint"]]
    assert printed.startswith("0.70004 (")
    assert dict(ev.summary_rows())["threshold"] == "0.95"


def test_review_capacity_is_respected(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    labels = make_labels(tmp_path)
    for capacity, expected in [(8, 0.3), (7, 0.9), (4, 0.9), (3, None)]:
        ev = evaluate_run(run, labels, review_capacity=capacity)
        rec = ev.recommendations[0]
        assert rec["threshold"] == expected, capacity
        if expected is not None:
            assert rec["flagged_in_run"] <= capacity  # the unlabelled a4 counts too
    ev = evaluate_run(run, labels, review_capacity=7, fp_budget_rate=0.6)
    assert [r["threshold"] for r in ev.recommendations] == [0.3, 0.9, 0.9]
    assert ev.recommendations[-1]["constraint"] == "all constraints"
    assert any("at most 3 flagged" in n for n in evaluate_run(run, labels, review_capacity=3).notes)
    table = {row["threshold"]: row for row in ev.tradeoff}
    assert {0.3, 0.5, 0.9} <= set(table)
    assert table[0.5]["flagged_in_run"] == 6 and table[0.5]["precision"] == pytest.approx(0.6)


def test_unknown_labels_are_excluded_unless_asked(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    labels = make_labels(tmp_path)
    ev = evaluate_run(run, labels)
    assert ev.contributors["evaluated"] == 10
    assert ev.contributors["false_positives"] == 2  # a4 (no label) is not a false positive
    ev = evaluate_run(run, labels, unlabelled_benign=True)
    # a4 and e1 become benign; 8 more run contributors (20 in the manifest) are benign, in no ring.
    c = ev.contributors
    assert (c["evaluated"], c["false_positives"], c["true_negatives"]) == (20, 3, 12)
    assert c["precision"] == pytest.approx(0.5)
    assert c["fp_rate"] == pytest.approx(3 / 15)


@pytest.mark.parametrize("ignore_case", [None, True, False])
def test_labels_match_ids_ignoring_case_as_the_run_did(tmp_path: Path, ignore_case: bool) -> None:
    """A1/A2 are a1/a2 when the run folded case (the default); D2 and d2 are one contributor."""
    labels = pd.read_csv(make_labels(tmp_path), dtype=str, keep_default_na=False)
    labels["contributor_id"] = labels["contributor_id"].replace({"a1": "A1", "a2": "A2"})
    labels = pd.concat([labels, pd.DataFrame([{"contributor_id": "D2", "label": "benign"}])])
    ev = evaluate_run(make_run(tmp_path, ignore_case=ignore_case), labels.fillna(""))
    c = ev.contributors
    if ignore_case is False:
        # a1, a2 flagged but unlabelled; A1, A2 (fraud, missed) and D2 are outside the rings.
        assert (c["evaluated"], c["true_positives"], c["false_negatives"]) == (11, 1, 4)
        assert not any("ignoring case" in n for n in ev.notes)
    else:
        assert (c["evaluated"], c["true_positives"], c["false_negatives"]) == (10, 3, 2)
        assert "2 label ids matched the run's ids only ignoring case" in " ".join(ev.notes)


def test_csv_members_are_unescaped(tmp_path: Path) -> None:
    formula = '=HYPERLINK("x")'
    run = make_run(tmp_path, fmt="csv", b1=formula)
    assert not (run / "members.parquet").exists()
    assert "'=HYPERLINK" in (run / "members.csv").read_text(encoding="utf-8")
    ev = evaluate_run(run, make_labels(tmp_path, b1=formula))
    assert ev.contributors["false_positives"] == 2
    assert ev.fp_examples[0]["contributor_id"] == formula


def test_action_column_from_detect_is_used(tmp_path: Path) -> None:
    ev = evaluate_run(make_run(tmp_path, with_action=True), make_labels(tmp_path))
    assert [b["action"] for b in ev.bands] == ["hold_payouts", "manual_review", "monitor"]
    assert not any("actions assigned" in n for n in ev.notes)


def test_labels_as_dataframe_with_review_dates() -> None:
    labels = pd.DataFrame(
        {
            "contributor_id": ["x", "x", "y", "z"],
            "label": ["fraud", "benign", "1", ""],
            "review_date": ["2024-03-01", "2024-01-01", "2024-02-01", ""],
            "tenure_days": ["1", "2", "3", "4"],
        }
    )
    before = labels.copy()
    table = read_labels(labels)
    pd.testing.assert_frame_equal(labels, before)  # the caller's frame is not touched
    verdicts = dict(zip(table.frame["contributor_id"], table.frame["y"], strict=True))
    assert verdicts["x"] == 1.0 and verdicts["y"] == 1.0 and math.isnan(verdicts["z"])
    assert table.segments == ("tenure_days",)
    assert table.review_range is not None and table.review_range[0].startswith("2024-01-01")
    for dates in (["2024-03-01", "2024-03-01"], ["", ""]):  # the latest is a tie: no winner
        tied = labels.iloc[:2].assign(review_date=dates)
        with pytest.raises(InputError, match="'x' has conflicting labels .two verdicts share"):
            read_labels(tied)
    older_tie = labels.iloc[:2].assign(review_date=["2024-03-01", ""])
    assert read_labels(older_tie).frame["y"].tolist() == [1.0]  # a dated verdict beats none


def test_numeric_segments_are_binned() -> None:
    labels = pd.DataFrame(
        {"contributor_id": [f"c{i}" for i in range(40)], "label": ["0"] * 40, "tenure": range(40)}
    )
    values = set(read_labels(labels).frame["segment:tenure"])
    assert len(values) == 4 and all(" to " in v for v in values)


def test_segment_named_like_an_internal_column(tmp_path: Path) -> None:
    labels = pd.read_csv(make_labels(tmp_path), dtype=str, keep_default_na=False)
    labels["flagged"] = labels["country"]  # an analyst's column that clashes with ours
    ev = evaluate_run(make_run(tmp_path), labels, segment_columns=["flagged"])
    assert ev.contributors["false_positives"] == 2
    assert [row["value"] for row in ev.fp_by_segment["flagged"]] == ["DE", "FR", "US"]


def test_many_segment_values_are_capped(tmp_path: Path) -> None:
    labels = pd.read_csv(make_labels(tmp_path), dtype=str, keep_default_na=False)
    extra = pd.DataFrame(
        {"contributor_id": [f"x{i}" for i in range(80)], "label": "benign", "ring_id": ""}
    )
    extra["country"] = [f"C{i:02d}" for i in range(80)]
    ev = evaluate_run(make_run(tmp_path), pd.concat([labels, extra]))
    rows = ev.fp_by_segment["country"]
    assert len(rows) == 50 and rows[-1]["value"] == "(other)"
    assert sum(r["contributors"] for r in rows) == ev.contributors["evaluated"] == 90
    assert sum(r["false_positives"] for r in rows) == 2


def test_numeric_segment_with_a_blank_value() -> None:
    labels = pd.DataFrame(
        {
            "contributor_id": [f"c{i}" for i in range(40)],
            "label": ["0"] * 40,
            "tenure": [str(i) for i in range(39)] + [""],
        }
    )
    frame = read_labels(labels).frame.set_index("contributor_id")["segment:tenure"]
    assert frame["c39"] == "(missing)" and frame.drop("c39").str.contains(" to ").all()


def test_a_run_without_rings_is_evaluated(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    for name in ("members.csv", "members.parquet"):
        frame = pd.read_parquet(run / "members.parquet")
        if name.endswith(".csv"):
            frame.iloc[:0].to_csv(run / name, index=False)
        else:
            frame.iloc[:0].to_parquet(run / name, index=False)
    ev = evaluate_run(run, make_labels(tmp_path))
    assert ev.contributors["true_positives"] == 0
    assert ev.contributors["false_negatives"] == 5  # every labelled fraud is missed


def test_a_delimiter_ending_each_label_row_shifts_nothing(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("contributor_id,label\na1,fraud,\na2,fraud,\nb1,benign,\n")
    ev = evaluate_run(make_run(tmp_path), path)
    assert ev.contributors["true_positives"] == 2
    assert ev.contributors["false_positives"] == 1


# --------------------------------------------------------------------------- errors
def test_compressed_label_files_are_read(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    labels = pd.read_csv(make_labels(tmp_path), dtype=str, keep_default_na=False)
    labels.to_csv(tmp_path / "labels.csv.gz", index=False)
    labels.to_json(tmp_path / "labels.jsonl.bz2", orient="records", lines=True)
    expected = evaluate_run(run, tmp_path / "labels.csv").contributors
    for name in ("labels.csv.gz", "labels.jsonl.bz2"):
        assert evaluate_run(run, tmp_path / name).contributors == expected
    labels.to_parquet(tmp_path / "labels.parquet")
    (tmp_path / "labels.parquet.gz").write_bytes(
        gzip.compress((tmp_path / "labels.parquet").read_bytes())
    )
    with pytest.raises(InputError, match="unsupported labels file type '.gz'"):
        evaluate_run(run, tmp_path / "labels.parquet.gz")


def test_missing_label_column_names_file_and_column(tmp_path: Path) -> None:
    path = tmp_path / "verdicts.csv"
    pd.DataFrame({"contributor_id": ["a"], "verdict": ["fraud"]}).to_csv(path, index=False)
    with pytest.raises(InputError) as info:
        evaluate_run(make_run(tmp_path), path)
    message = str(info.value)
    assert "verdicts.csv" in message and "'label'" in message and "\n" not in message


def test_run_without_members(tmp_path: Path) -> None:
    empty = tmp_path / "empty_run"
    empty.mkdir()
    with pytest.raises(InputError, match="empty_run.*members"):
        evaluate_run(empty, make_labels(tmp_path))
    with pytest.raises(InputError, match="not found"):
        evaluate_run(tmp_path / "nowhere", make_labels(tmp_path))


def test_bad_labels(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    bad = pd.DataFrame({"contributor_id": ["a1", "a2"], "label": ["fraud", "maybe"]})
    with pytest.raises(InputError, match=r"labels row 2: label 'maybe'"):
        evaluate_run(run, bad)
    twice = pd.DataFrame({"contributor_id": ["a1", "a1"], "label": ["fraud", "benign"]})
    with pytest.raises(InputError, match="'a1' has conflicting labels"):
        evaluate_run(run, twice)
    ok = pd.DataFrame({"contributor_id": ["a1"], "label": ["fraud"]})
    with pytest.raises(InputError, match="missing segment column 'country'"):
        evaluate_run(run, ok, segment_columns=["country"])
    with pytest.raises(InputError, match="labels.xlsx: labels file not found"):
        evaluate_run(run, tmp_path / "labels.xlsx")
    (tmp_path / "labels.xlsx").write_text("x")
    with pytest.raises(InputError, match="unsupported labels file type '.xlsx'"):
        evaluate_run(run, tmp_path / "labels.xlsx")


def test_bad_options() -> None:
    with pytest.raises(ConfigError, match="fp_budget_rate"):
        evaluate_run("anywhere", pd.DataFrame(), fp_budget_rate=2)
    with pytest.raises(ConfigError, match="review_capacity"):
        evaluate_run("anywhere", pd.DataFrame(), review_capacity=-1)
    with pytest.raises(ConfigError, match="ks"):
        evaluate_run("anywhere", pd.DataFrame(), ks=(0,))


def test_bad_bands_in_manifest(tmp_path: Path) -> None:
    run = make_run(tmp_path, bands=[{"action": "hold", "min_score": 0.5, "reasons_any": ["NO"]}])
    with pytest.raises(InputError, match=r"config\.score\.bands\.0\.reasons_any\.0"):
        evaluate_run(run, make_labels(tmp_path))


# --------------------------------------------------------------------------- outputs
class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_outputs_are_safe_self_contained_and_deterministic(tmp_path: Path) -> None:
    run = make_run(tmp_path, b1=PAYLOAD, bands=BANDS)
    labels = make_labels(tmp_path, b1=PAYLOAD, country_b1=PAYLOAD)
    ev = evaluate_run(run, labels, out_dir=tmp_path / "one", fp_budget_rate=0.2)
    write_evaluation(ev, tmp_path / "two")
    again = evaluate_run(run, labels, fp_budget_rate=0.2)
    write_evaluation(again, tmp_path / "three")
    for name in ("eval.json", "eval.html"):
        first = (tmp_path / "one" / name).read_bytes()
        assert first == (tmp_path / "two" / name).read_bytes()
        assert first == (tmp_path / "three" / name).read_bytes()

    html = (tmp_path / "one" / "eval.html").read_text(encoding="utf-8")
    assert PAYLOAD not in html
    assert html.count("&lt;img src=x onerror=alert(1)&gt;") >= 3  # id, segment value, examples
    assert "<script" not in html.lower()
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
    parser = _Collector()
    parser.feed(html)
    tags = [tag for tag, _ in parser.tags]
    assert "script" not in tags and "link" not in tags and "iframe" not in tags
    assert "img" not in tags and tags.count("svg") == 4  # PR, ROC, ring scores, trade-off
    assert not any(key.startswith("on") for _, attrs in parser.tags for key in attrs)
    assert "img-src" not in html  # the policy allows no images at all
    fraud = ev.score_samples["fraud"].size
    assert f"<title>fraud ({fraud})</title>" in html and fraud > 0
    assert PAYLOAD in "".join(parser.text)  # shown as text, never as markup

    data = json.loads((tmp_path / "one" / "eval.json").read_text(encoding="utf-8"))
    assert data["contributors"]["precision"] == 0.6
    assert data["thresholds"]["recommended"][0]["threshold"] == 0.9
    assert data["false_positives"]["examples"][0]["contributor_id"] == PAYLOAD
    assert {"threshold", "precision", "recall"} <= set(data["curves"]["ring_score"]["points"])


def test_empty_labels_do_not_crash(tmp_path: Path) -> None:
    labels = pd.DataFrame({"contributor_id": ["zz"], "label": [""]})
    ev = evaluate_run(make_run(tmp_path), labels, out_dir=tmp_path / "out")
    assert ev.contributors["evaluated"] == 0
    assert math.isnan(ev.contributors["precision"])
    assert (
        json.loads((tmp_path / "out" / "eval.json").read_text())["contributors"]["recall"] is None
    )
