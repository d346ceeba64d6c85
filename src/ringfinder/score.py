"""Score: interpretable ring features, a ring score in [0, 1] with reason codes, member scores.

Evidence is split in two groups. Strong evidence (a shared payout account, payout consolidation,
lockstep, a device farm's many accounts on few devices, a known-bad member) is hard for honest
people to produce. Weak evidence (shared devices and IPs, a signup burst, a closed world) has
benign lookalikes, so it is damped when the shared identifiers look like infrastructure (a café
PC, a campus NAT) or when every member keeps a payout account of their own (a household), and
on its own it stays below ``score.weak_ceiling``. Each group combines its evidence as a
noisy-OR; so does the ring score.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import numpy as np
import pandas as pd

from ringfinder.config import Config
from ringfinder.frames import fetch_frame
from ringfinder.normalise import sql_literal
from ringfinder.schema import CONTRIBUTOR, EVENT_TYPE, TIME, Reason

ROLES = ("device", "ip", "payment", "other")
FARM_MIN_SIZE = 5
MIN_CONTRIBUTION = 0.05  # evidence below this does not make a reason
MITIGATION_SHARE = 0.5  # a mitigation is named when it covers at least this share


def _role_case(config: Config) -> str:
    arms = " ".join(
        f"WHEN {sql_literal(kind)} THEN {sql_literal(spec.resolved_role(kind))}"
        for kind, spec in config.input.kinds.items()
    )
    return f"(CASE kind {arms} END)"


def member_features_sql(config: Config) -> str:
    """Per member: signup time, activity span, events, in-ring link strength, shared identifiers."""
    signups = ", ".join(sql_literal(e.lower()) for e in config.input.signup_events) or "NULL"
    return f"""
    WITH activity AS (
        SELECT {CONTRIBUTOR}, min({TIME}) AS first_seen, max({TIME}) AS last_seen,
            count(*) AS n_events,
            coalesce(min({TIME}) FILTER (WHERE {EVENT_TYPE} IN ({signups})), min({TIME})) AS signup
        FROM ring_events GROUP BY ALL
    ), strength AS (
        SELECT {CONTRIBUTOR}, sum(weight) AS strength FROM (
            SELECT a AS {CONTRIBUTOR}, weight FROM ring_links
            UNION ALL SELECT b, weight FROM ring_links
        ) GROUP BY ALL
    ), shared AS (
        SELECT {CONTRIBUTOR}, count(*) FILTER (WHERE ring_users >= 2) AS shared_identifiers
        FROM ring_usage GROUP BY ALL
    )
    SELECT m.{CONTRIBUTOR}, m.ring_index, a.first_seen, a.last_seen, a.n_events, a.signup,
        coalesce(s.strength, 0) AS strength, coalesce(h.shared_identifiers, 0) AS shared_identifiers
    FROM ring_members m JOIN activity a USING ({CONTRIBUTOR})
    LEFT JOIN strength s USING ({CONTRIBUTOR}) LEFT JOIN shared h USING ({CONTRIBUTOR})
    """


# The events of ring members: activity and the timeline read these, not all events.
RING_EVENTS_SQL = f"""
    SELECT m.ring_index, e.{CONTRIBUTOR}, e.{TIME}, e.{EVENT_TYPE}
    FROM events e JOIN ring_members m USING ({CONTRIBUTOR})
"""

RING_LINKS_SQL = f"""
    SELECT x.ring_index, p.a, p.b, p.weight, p.strong, p.co_targets
    FROM pairs p
    JOIN ring_members x ON x.{CONTRIBUTOR} = p.a
    JOIN ring_members y ON y.{CONTRIBUTOR} = p.b AND y.ring_index = x.ring_index
"""


def ring_usage_sql(config: Config) -> str:
    """Every identifier a ring member uses: the member's events and first/last seen with it, and
    how many ring members and how many people use it (``identifiers`` lists only those used by
    two or more: the others are the member's alone)."""
    return f"""
    WITH used AS (
        SELECT m.ring_index, e.{CONTRIBUTOR}, e.kind, e.identifier, {_role_case(config)} AS role,
            e.n_events, e.first_seen, e.last_seen, coalesce(i.degree, 1) AS degree,
            coalesce(i.hub, false) AS hub, coalesce(i.infrastructure, false) AS infrastructure
        FROM ring_members m JOIN edges e USING ({CONTRIBUTOR})
        LEFT JOIN identifiers i USING (kind, identifier)
    )
    SELECT *, count(*) OVER (PARTITION BY ring_index, kind, identifier) AS ring_users FROM used
    """


def _id_match(config: Config) -> str:
    if config.input.contributor_ignore_case:
        return f"lower(m.{CONTRIBUTOR}) = lower(k.{CONTRIBUTOR})"
    return f"m.{CONTRIBUTOR} = k.{CONTRIBUTOR}"


def ring_features_sql(config: Config) -> str:
    """Per ring: size, sharing per role, accounts per device and payout, closed world, burst.

    Distinct identifiers and members per role are counted from ``ring_usage`` grouped once by
    identifier and once by member: twelve DISTINCT aggregates over its rows took 1.3 s at 30M
    events, these 0.35 s.
    """
    window = config.score.burst_window_hours
    shared = "ring_users >= 2 AND NOT hub"
    per_identifier = ", ".join(
        f"count(*) FILTER (WHERE role = '{role}' AND shared) AS shared_{role}, "
        f"count(*) FILTER (WHERE role = '{role}') AS distinct_{role}"
        for role in ROLES
    )
    per_member = ", ".join(
        f"count(*) FILTER (WHERE role = '{role}' AND shared) AS covered_{role}" for role in ROLES
    )
    return f"""
    WITH identifiers AS (
        SELECT ring_index, {per_identifier} FROM (
            SELECT ring_index, role, identifier, bool_or({shared}) AS shared
            FROM ring_usage GROUP BY ALL
        ) GROUP BY ring_index
    ), covered AS (
        SELECT ring_index, {per_member} FROM (
            SELECT ring_index, role, {CONTRIBUTOR}, bool_or({shared}) AS shared
            FROM ring_usage GROUP BY ALL
        ) GROUP BY ring_index
    ), uses AS (
        SELECT ring_index,
            max(ring_users) FILTER (WHERE role = 'payment') AS max_payment_users,
            sum(ring_users) FILTER (WHERE {shared}) AS inside_uses,
            sum(degree) FILTER (WHERE {shared}) AS all_uses,
            avg(CAST(infrastructure AS DOUBLE))
                FILTER (WHERE {shared} AND role IN ('device', 'ip')) AS infra_share
        FROM ring_usage GROUP BY ring_index
    ), usage AS (
        SELECT * FROM identifiers JOIN covered USING (ring_index) JOIN uses USING (ring_index)
    ), independent AS (
        SELECT ring_index, avg(CAST(own AND NOT shares AS DOUBLE)) AS independent_share
        FROM (
            SELECT ring_index, {CONTRIBUTOR},
                bool_or(role = 'payment' AND degree = 1) AS own,
                bool_or(role = 'payment' AND ring_users >= 2) AS shares
            FROM ring_usage GROUP BY ALL
        ) GROUP BY ring_index
    ), burst AS (
        SELECT ring_index, max(in_window) AS burst_members FROM (
            SELECT ring_index, count(*) OVER (
                PARTITION BY ring_index ORDER BY signup
                RANGE BETWEEN CURRENT ROW AND INTERVAL ({window!r} * 3600) SECOND FOLLOWING
            ) AS in_window FROM member_features
        ) GROUP BY ring_index
    ), span AS (
        SELECT ring_index, count(*) AS size, min(first_seen) AS first_seen,
            max(last_seen) AS last_seen,
            epoch(max(signup) - min(signup)) / 3600.0 AS signup_span_hours
        FROM member_features GROUP BY ring_index
    ), links AS (
        SELECT ring_index, count(*) AS links, count(*) FILTER (WHERE strong) AS strong_links,
            count(*) FILTER (WHERE co_targets > 0) AS lockstep_links
        FROM ring_links GROUP BY ring_index
    ), lockstep AS (
        SELECT ring_index, count(DISTINCT member) AS lockstep_members FROM (
            SELECT ring_index, a AS member FROM ring_links WHERE co_targets > 0
            UNION ALL SELECT ring_index, b FROM ring_links WHERE co_targets > 0
        ) GROUP BY ring_index
    )
    SELECT * FROM span JOIN usage USING (ring_index) JOIN independent USING (ring_index)
    JOIN burst USING (ring_index) LEFT JOIN links USING (ring_index)
    LEFT JOIN lockstep USING (ring_index)
    LEFT JOIN (
        SELECT ring_index, count(*) AS known_bad_members
        FROM ring_members m JOIN known_bad k ON {_id_match(config)} GROUP BY ring_index
    ) USING (ring_index)
    ORDER BY ring_index
    """


def _evidence(
    f: pd.DataFrame, config: Config
) -> tuple[dict[Reason, np.ndarray], dict[Reason, np.ndarray]]:
    """Strength in [0, 1] of each piece of evidence per ring, split into strong and weak."""
    s = config.score
    n = f["size"].to_numpy(float)
    cover = {role: f[f"covered_{role}"].to_numpy(float) / n for role in ROLES}
    devices = np.maximum(f["distinct_device"].to_numpy(float), 1)
    payments = np.maximum(f["distinct_payment"].to_numpy(float), 1)
    per_device = n / devices
    max_payment = f["max_payment_users"].fillna(0).to_numpy(float) / n
    burst = f["burst_members"].to_numpy(float) / n
    known_bad = f["known_bad_members"].fillna(0).to_numpy(float)
    inside = f["inside_uses"].fillna(0).to_numpy(float)
    closed = np.divide(
        inside,
        f["all_uses"].fillna(0).to_numpy(float),
        out=np.zeros_like(n),
        where=f["all_uses"].fillna(0).to_numpy(float) > 0,
    )
    shared_roles = sum((f[f"shared_{role}"].to_numpy(float) > 0).astype(float) for role in ROLES)

    # A farm is bigger than a household (2-4 accounts) and has far more accounts than devices.
    farm = (n >= FARM_MIN_SIZE) * cover["device"] * np.clip((per_device - 1.0) / 4.0, 0, 1)
    consolidation = (n >= 4) * np.clip((max_payment - 0.25) / 0.5, 0, 1) * (n / payments >= 2)
    strong = {
        Reason.SHARED_PAYOUT: s.weight_shared_payout * cover["payment"],
        Reason.PAYOUT_CONSOLIDATION: s.weight_shared_payout * consolidation,
        Reason.LOCKSTEP: s.weight_lockstep * f["lockstep_members"].fillna(0).to_numpy(float) / n,
        Reason.KNOWN_BAD: s.weight_known_bad
        * np.clip(0.5 + 0.5 * known_bad / n, 0, 1)
        * (known_bad > 0),
        Reason.DEVICE_FARM: s.weight_device_farm * farm,
    }
    weak = {
        Reason.SHARED_DEVICE: s.weight_shared_device * cover["device"],
        Reason.SHARED_IP: s.weight_shared_ip * cover["ip"],
        Reason.SHARED_IDENTIFIER: s.weight_shared_other * cover["other"],
        Reason.SIGNUP_BURST: s.weight_signup_burst * (n >= 3) * np.clip((burst - 0.5) / 0.4, 0, 1),
        Reason.CLOSED_WORLD: s.weight_closed_world * np.clip((closed - 0.7) / 0.3, 0, 1),
        Reason.MULTI_KIND_LINKS: s.weight_multi_kind * np.clip(shared_roles - 1, 0, 2) / 2,
    }
    return strong, weak


def _noisy_or(parts: dict[Reason, np.ndarray], size: int) -> np.ndarray:
    keep = np.ones(size)
    for value in parts.values():
        keep *= 1.0 - value
    return 1.0 - keep


def _reasons(
    contributions: dict[Reason, np.ndarray], mitigations: dict[Reason, np.ndarray]
) -> list[str]:
    """Per ring: codes contributing at least ``MIN_CONTRIBUTION``, largest first (ties by name),
    then the mitigations holding at least ``MITIGATION_SHARE``; ';'-joined."""
    codes = sorted(contributions, key=lambda c: c.value)
    values = np.column_stack([contributions[c] for c in codes])
    order = np.argsort(-values, axis=1, kind="stable")  # stable: equal values keep name order
    order[~(np.take_along_axis(values, order, axis=1) >= MIN_CONTRIBUTION)] = -1
    mitigated = np.column_stack([v >= MITIGATION_SHARE for v in mitigations.values()])
    # Rings share few distinct reason lists: join each once (rows as bytes: unique is fast).
    shown = np.ascontiguousarray(np.hstack([order, mitigated]), dtype=np.int8)
    rows = shown.view(np.dtype((np.void, shown.shape[1]))).ravel()
    keys, which = np.unique(rows, return_inverse=True)
    patterns = keys.view(np.int8).reshape(-1, shown.shape[1])
    texts = [
        ";".join(
            [codes[i].value for i in pattern[: len(codes)] if i >= 0]
            + [m.value for m, on in zip(mitigations, pattern[len(codes) :], strict=True) if on]
        )
        for pattern in patterns
    ]
    return [texts[i] for i in which.ravel()]


def score_ring_features(features: pd.DataFrame, *, config: Config) -> pd.DataFrame:
    """Ring score, flag and reason codes from the ring features (one row per ring)."""
    s = config.score
    size = len(features)
    strong, weak = _evidence(features, config)
    infra = features["infra_share"].fillna(0).to_numpy(float)
    independent = features["independent_share"].fillna(0).to_numpy(float)
    damping = (1 - s.infrastructure_damping * infra) * (
        1 - s.independent_payout_damping * independent
    )
    weak = {code: value * damping for code, value in weak.items()}
    # Weak evidence alone never reaches a flag: it has honest lookalikes (a family on one PC).
    weak_part = np.minimum(_noisy_or(weak, size), s.weak_ceiling)
    ring_score = 1.0 - (1.0 - _noisy_or(strong, size)) * (1.0 - weak_part)
    out = features.copy()
    out["ring_score"] = np.round(np.clip(ring_score, 0.0, 1.0), 6)
    out["flagged"] = out["ring_score"] >= s.threshold
    out["reasons"] = _reasons(
        {**strong, **weak},
        {Reason.SHARED_INFRASTRUCTURE: infra, Reason.INDEPENDENT_PAYOUTS: independent},
    )
    return out


def score_rings(
    con: duckdb.DuckDBPyConnection,
    assignment: pd.DataFrame,
    *,
    config: Config,
    known_bad: Sequence[str] = (),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score every candidate ring and its members.

    Parameters
    ----------
    con : connection holding ``events``, ``edges``, ``identifiers`` and ``pairs``.
    assignment : ``contributor_id`` → ``ring_index`` from ``detect_rings``.
    known_bad : contributor ids already banned; rings that hold one score higher (KNOWN_BAD).

    Returns
    -------
    (rings, members): rings with features, ``ring_score``, ``flagged`` and ``reasons``;
    members with their activity, ``member_score`` and in-ring link strength.
    """
    con.register("ring_members_frame", assignment)
    con.execute("CREATE OR REPLACE TEMP TABLE ring_members AS SELECT * FROM ring_members_frame")
    con.unregister("ring_members_frame")
    con.execute(f"CREATE OR REPLACE TEMP TABLE known_bad ({CONTRIBUTOR} VARCHAR)")
    if known_bad:
        con.executemany("INSERT INTO known_bad VALUES (?)", [(c,) for c in sorted(set(known_bad))])
    con.execute(f"CREATE OR REPLACE TEMP TABLE ring_events AS {RING_EVENTS_SQL}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE ring_links AS {RING_LINKS_SQL}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE ring_usage AS {ring_usage_sql(config)}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE member_features AS {member_features_sql(config)}")
    features = fetch_frame(con, ring_features_sql(config))
    rings = score_ring_features(features, config=config)
    members = fetch_frame(con, f"SELECT * FROM member_features ORDER BY {CONTRIBUTOR}")
    members = members.merge(
        rings[["ring_index", "ring_score", "flagged", "reasons"]], on="ring_index"
    )
    top = members.groupby("ring_index")["strength"].transform("max")
    share = np.divide(members["strength"], top, out=np.zeros(len(members)), where=top > 0)
    members["member_score"] = np.round(members["ring_score"] * (0.5 + 0.5 * share), 6)
    return rings, members


def ring_evidence(con: duckdb.DuckDBPyConnection) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The evidence behind each ring, for investigators (after ``score_rings``).

    Returns
    -------
    (identifiers, timeline): every identifier a member uses, with its kind, role, event counts,
    first/last seen, how many people and how many members use it, and its hub and
    infrastructure flags; and each member's events per day and event type.
    """
    identifiers = f"""
        SELECT ring_index, {CONTRIBUTOR}, kind, role, identifier, n_events, first_seen, last_seen,
            degree, ring_users, hub, infrastructure
        FROM ring_usage ORDER BY ring_index, {CONTRIBUTOR}, kind, identifier
    """
    timeline = f"""
        SELECT ring_index, {CONTRIBUTOR}, CAST(date_trunc('day', {TIME}) AS DATE) AS day,
            coalesce({EVENT_TYPE}, '') AS event_type, count(*) AS n_events
        FROM ring_events GROUP BY ALL ORDER BY ALL
    """
    return fetch_frame(con, identifiers), fetch_frame(con, timeline)
