"""Column names, reason codes and output tables: written once, referenced everywhere."""

from __future__ import annotations

from enum import StrEnum

# Canonical event columns after ingest.
ROW_ID = "row_id"
SOURCE = "source"
CONTRIBUTOR = "contributor_id"
TIME = "event_time"
EVENT_TYPE = "event_type"
TARGET = "target"
KIND = "kind"
IDENTIFIER = "identifier"


def raw_identifier_column(kind: str) -> str:
    """Name of the ``events`` column that holds the identifiers of ``kind`` as they were read."""
    return f"raw_{kind}"


def identifier_column(kind: str) -> str:
    """Name of the column of normalised identifiers of ``kind`` in events as Spark reads them."""
    return f"id_{kind}"


# The exact outputs of `ringfinder detect`.
MEMBERS_COLUMNS = (
    "contributor_id",
    "ring_id",
    "ring_score",
    "flagged",
    "member_score",
    "reasons",
    "action",
    "first_seen",
    "last_seen",
    "n_events",
    "shared_identifiers",
)
RINGS_COLUMNS = (
    "ring_id",
    "size",
    "ring_score",
    "flagged",
    "reasons",
    "shared_devices",
    "shared_ips",
    "shared_payments",
    "shared_other",
    "accounts_per_device",
    "accounts_per_payment",
    "signup_span_hours",
    "first_seen",
    "last_seen",
    "time_span_days",
    "strong_link_share",
)
# The pandas type of each members and rings column: a run without rings writes them too,
# so that a typed load or a union of daily Parquet files does not meet untyped columns.
_TYPED_COLUMNS = {
    "str": ("contributor_id", "ring_id", "reasons"),
    "string[python]": ("action",),  # as decide.assign_actions gives it (Arrow string)
    "bool": ("flagged",),
    "datetime64[us]": ("first_seen", "last_seen"),
    "int64": (
        "size",
        "n_events",
        "shared_identifiers",
        "shared_devices",
        "shared_ips",
        "shared_payments",
        "shared_other",
    ),
    "float64": (
        "ring_score",
        "member_score",
        "accounts_per_device",
        "accounts_per_payment",
        "signup_span_hours",
        "time_span_days",
        "strong_link_share",
    ),
}
COLUMN_TYPES = {column: kind for kind, columns in _TYPED_COLUMNS.items() for column in columns}
QUARANTINE_COLUMNS = ("source", "row", "reason", "raw")
# A CSV text cell starting with one of these is read as a formula by spreadsheets (OWASP),
# or may be once a spreadsheet trims the line break in front.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")
# What the CSV export puts before such a cell, and before a cell that starts with it already,
# so that taking one off always gives the value back.
FORMULA_GUARD = "'"


class Reason(StrEnum):
    """Reason codes: short, stable tokens that rule engines key on (documented in the README)."""

    SHARED_PAYOUT = "SHARED_PAYOUT"
    PAYOUT_CONSOLIDATION = "PAYOUT_CONSOLIDATION"
    DEVICE_FARM = "DEVICE_FARM"
    SHARED_DEVICE = "SHARED_DEVICE"
    SHARED_IP = "SHARED_IP"
    SHARED_IDENTIFIER = "SHARED_IDENTIFIER"
    SIGNUP_BURST = "SIGNUP_BURST"
    CLOSED_WORLD = "CLOSED_WORLD"
    MULTI_KIND_LINKS = "MULTI_KIND_LINKS"
    LOCKSTEP = "LOCKSTEP"
    KNOWN_BAD = "KNOWN_BAD"
    SHARED_INFRASTRUCTURE = "SHARED_INFRASTRUCTURE"
    INDEPENDENT_PAYOUTS = "INDEPENDENT_PAYOUTS"


REASON_MEANINGS: dict[Reason, str] = {
    Reason.SHARED_PAYOUT: "two or more members pay out to the same account",
    Reason.PAYOUT_CONSOLIDATION: "many members switched their payouts to one or two collector accounts",
    Reason.DEVICE_FARM: "many accounts on few devices that nearly all members share",
    Reason.SHARED_DEVICE: "members share a device",
    Reason.SHARED_IP: "members share an IP address",
    Reason.SHARED_IDENTIFIER: "members share an identifier of another configured kind",
    Reason.SIGNUP_BURST: "most members signed up within a short window",
    Reason.CLOSED_WORLD: "members' identifiers are used by almost no one outside the ring",
    Reason.MULTI_KIND_LINKS: "members are linked through several identifier kinds",
    Reason.LOCKSTEP: "members acted on the same targets within seconds, repeatedly",
    Reason.KNOWN_BAD: "the ring contains a contributor from the known-bad list",
    Reason.SHARED_INFRASTRUCTURE: "mitigating: the shared identifiers look like a café, campus or NAT",
    Reason.INDEPENDENT_PAYOUTS: "mitigating: every member keeps a payout account of their own",
}

# Identifier kinds with a role in scoring; any other configured kind is "other".
DEVICE = "device"
IP = "ip"
PAYMENT = "payment"
