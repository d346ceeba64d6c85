"""What a synthetic marketplace looks like: the ``Scenario`` knobs, the columns and values
written, and what ``generate`` returns."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

import numpy as np

from ringfinder.config import InputConfig
from ringfinder.errors import ConfigError
from ringfinder.schema import CONTRIBUTOR, DEVICE, EVENT_TYPE, IP, PAYMENT, TIME

DEFAULT_KINDS = InputConfig().kinds
DEVICE_COLUMN = DEFAULT_KINDS[DEVICE].column
IP_COLUMN = DEFAULT_KINDS[IP].column
PAYOUT_COLUMN = DEFAULT_KINDS[PAYMENT].column
TASK_COLUMN = "task_id"
USER_AGENT_COLUMN = "user_agent"
#: The canonical columns of ``events.<fmt>``, in file order.
EVENT_COLUMNS = (
    CONTRIBUTOR,
    TIME,
    EVENT_TYPE,
    DEVICE_COLUMN,
    IP_COLUMN,
    PAYOUT_COLUMN,
    TASK_COLUMN,
    USER_AGENT_COLUMN,
)
#: The columns of ``labels.csv``.
LABEL_COLUMNS = ("contributor_id", "label", "ring_id", "ring_type", "role")
#: Values of the ``event_type`` column.
EVENT_TYPES = ("signup", "login", "task_submit", "payout_change")
SIGNUP, LOGIN, SUBMIT, PAYOUT_CHANGE = range(len(EVENT_TYPES))  # event type codes
#: Planted ring types and the short name used in their ring ids (``R-farm-003``).
RING_TYPES = {
    "device_farm": "farm",
    "payout_consolidation": "payout",
    "chain": "chain",
    "small_ring": "small",
    "lockstep": "lockstep",
}
#: Primary roles of benign contributors (honest users and honest lookalikes).
BENIGN_ROLES = (
    "honest",
    "household",
    "family_computer",
    "campus",
    "carrier_nat",
    "cafe",
    "vpn",
    "placeholder",
)
ROLES = BENIGN_ROLES + tuple(RING_TYPES)  # every role; a role code is its index
#: Placeholder values that broken clients send instead of a device id or an IP.
DEVICE_PLACEHOLDERS = ("unknown", "00000000-0000-0000-0000-000000000000", "null", "", "undefined")
IP_PLACEHOLDERS = ("0.0.0.0", "unknown", "", "null", "::")
#: Values of unparseable timestamps in broken rows.
BAD_TIMESTAMPS = ("yesterday", "N/A", "2026-13-45T99:99:99Z", "not a date")

Format = Literal["parquet", "csv", "csv.gz"]
SizeRange = tuple[int, int]


@dataclass(frozen=True)
class Scenario:
    """Every knob of a synthetic marketplace: population, lookalikes, rings and mess.

    Counts left at ``None`` scale with ``contributors`` (at least one group of each kind,
    but no lookalike kind takes more than about 15 % of the honest contributors); the
    defaults give a realistic base rate of about 0.25 % of contributors in rings. Ranges are
    inclusive ``(low, high)``. Invalid knobs raise ``ConfigError`` naming every one of them.

    Attributes
    ----------
    contributors : int
        Total honest and fraud contributors.
    days : int
        Length of the observed window in days (at least 28); every event falls inside it.
    start : str
        First day of the window, ``YYYY-MM-DD`` (UTC).
    events_per_contributor : float
        Mean events per contributor, signup included (heavy-tailed per contributor). Ring
        members get three more, and lockstep members their co-submissions on top.
    tasks : int or None
        Size of the task pool; ``None`` gives two tasks per contributor (at least 1000).
        Task popularity is Zipf-like, so popular tasks get many submissions.
    payout_change_rate : float
        Share of honest contributors who switch once to a new payout account of their own.
    household_rate : float
        Share of honest contributors living in households behind one home IP.
    household_size : tuple of int
        Accounts per household.
    family_computer_rate : float
        Share of households whose members also share one family computer.
    campuses : int or None
        Campuses whose students all go out through one NAT IP (one per 10 000 contributors).
    campus_size : tuple of int
        Students per campus.
    carrier_nat_ips : int or None
        Mobile carrier NAT IPs (one per 5 000 contributors).
    carrier_nat_users : tuple of int
        Mobile-only users behind each carrier NAT IP.
    mobile_nat_rate : float
        Share of the other honest phone users whose mobile traffic also leaves through one of
        the carrier NAT IPs (the rest get an IP of their own, often IPv6).
    vpn_share : float
        Share of honest contributors who work through a commercial VPN.
    vpn_exits : int or None
        VPN exit IPs, in providers of ten exits each (one per 2 000 contributors, at least 5).
    cafes : int or None
        Internet cafés: one PC and one IP used by dozens of unrelated people, who also use
        their own phones and payout accounts (one per 2 500 contributors).
    cafe_size : tuple of int
        Customers per café.
    placeholder_rate : float
        Share of events sent by broken clients with a placeholder device id and/or IP
        (see ``DEVICE_PLACEHOLDERS`` and ``IP_PLACEHOLDERS``): that share of contributors
        has such a client and uses nothing else.
    ring_share : float
        Share of contributors in rings, used for ring counts left at ``None`` (every type
        gets at least one ring).
    device_farms, device_farm_size
        Device farms: signup burst within hours, 2-5 devices shared by nearly all members,
        rotating proxy IPs from a pool that other farms may share, 1-3 payout accounts.
    payout_consolidations, payout_consolidation_size
        Members with devices and IPs of their own who switch their payouts (a
        ``payout_change`` event) to 1-2 collector accounts 2-10 days after signup.
    chains, chain_size
        Accounts linked pairwise through different identifier kinds in turn (A-B a device,
        B-C a payout account, C-D an IP, ...), camouflaged by carrier NAT IPs and café PCs.
    small_rings, small_ring_size
        3-4 accounts sharing one device, one home IP and one payout account.
    lockstep_rings, lockstep_size
        Members who share no identifier at all but submit the same tasks within seconds.
    lockstep_cosubmissions : tuple of int
        Tasks every lockstep ring submits together; each pair co-submits that many times.
    timestamp_mix_rate : float
        Share of rows whose ``event_time`` is not ``2026-01-03T04:05:06Z`` but, in equal
        parts, ``2026-01-03 04:05:06`` (UTC), local time with offset
        ``2026-01-03T06:05:06+02:00``, epoch seconds or epoch milliseconds -- same instant.
    identifier_noise_rate : float
        Per identifier cell (contributor id, device id, IP, payout account): probability of a
        case flip and/or surrounding spaces. IPv4 addresses only get the spaces.
    ipv4_mapped_rate : float
        Share of IPv4 cells written as ``::ffff:1.2.3.4`` or ``[1.2.3.4]:443``.
    formatted_payout_rate : float
        Share of payout cells written in groups of four: ``DE89 3704 0044 0532 0130 00``,
        ``DE89-3704-...`` or ``de89-3704-0044 0532 ...``, in equal parts.
    duplicate_rate : float
        Extra rows, as a share of events, that exactly duplicate an event row.
    broken_rate : float
        Extra rows, as a share of events, copied from an event (not a signup) and broken: no
        contributor id, an unparseable timestamp (``BAD_TIMESTAMPS``), or in CSV a ragged
        line with too few or too many fields.
    """

    contributors: int = 5000
    days: int = 60
    start: str = "2026-01-01"
    events_per_contributor: float = 10.0
    tasks: int | None = None
    payout_change_rate: float = 0.08
    household_rate: float = 0.08
    household_size: SizeRange = (2, 4)
    family_computer_rate: float = 0.35
    campuses: int | None = None
    campus_size: SizeRange = (150, 600)
    carrier_nat_ips: int | None = None
    carrier_nat_users: SizeRange = (100, 400)
    mobile_nat_rate: float = 0.3
    vpn_share: float = 0.03
    vpn_exits: int | None = None
    cafes: int | None = None
    cafe_size: SizeRange = (20, 50)
    placeholder_rate: float = 0.01
    ring_share: float = 0.0025
    device_farms: int | None = None
    device_farm_size: SizeRange = (10, 40)
    payout_consolidations: int | None = None
    payout_consolidation_size: SizeRange = (5, 15)
    chains: int | None = None
    chain_size: SizeRange = (4, 8)
    small_rings: int | None = None
    small_ring_size: SizeRange = (3, 4)
    lockstep_rings: int | None = None
    lockstep_size: SizeRange = (3, 6)
    lockstep_cosubmissions: SizeRange = (20, 40)
    timestamp_mix_rate: float = 0.02
    identifier_noise_rate: float = 0.02
    ipv4_mapped_rate: float = 0.01
    formatted_payout_rate: float = 0.2
    duplicate_rate: float = 0.005
    broken_rate: float = 0.002

    def __post_init__(self) -> None:
        problems = list(self._problems())
        if problems:
            raise ConfigError("scenario: " + "; ".join(problems))

    def _problems(self) -> Iterator[str]:
        """Every invalid knob, named, with what was expected."""
        if not 100 <= self.contributors <= 50_000_000:
            yield f"contributors = {self.contributors}: must be in [100, 50000000]"
        if not 28 <= self.days <= 3650:
            yield f"days = {self.days}: must be in [28, 3650]"
        try:
            valid_start = len(self.start) == 10 and not np.isnat(np.datetime64(self.start, "D"))
        except ValueError:
            valid_start = False
        if not valid_start:
            yield f"start = {self.start!r}: expected a date like 2026-01-01"
        if not 2 <= self.events_per_contributor <= 10_000:
            yield f"events_per_contributor = {self.events_per_contributor}: must be in [2, 10000]"
        minimum_low = {"chain_size": 3, "lockstep_cosubmissions": 1}
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name.endswith(("_rate", "_share")) and not 0 <= value <= 1:
                yield f"{item.name} = {value}: must be in [0, 1]"
            elif item.type == "SizeRange":
                low = minimum_low.get(item.name, 2)
                if len(value) != 2 or not low <= value[0] <= value[1]:
                    yield f"{item.name} = {value}: expected (low, high) with {low} <= low <= high"
            elif item.type == "int | None" and value is not None and value < 0:
                yield f"{item.name} = {value}: must be >= 0 (or None to scale with contributors)"
        if self.tasks is not None and self.tasks < 10:
            yield f"tasks = {self.tasks}: must be >= 10"
        if self.vpn_exits == 0 and self.vpn_share > 0:
            yield "vpn_exits = 0: VPN users (vpn_share > 0) need at least one exit"
        if self.ipv4_mapped_rate + self.identifier_noise_rate > 1:
            yield "ipv4_mapped_rate + identifier_noise_rate: must be <= 1"
        if self.formatted_payout_rate + self.identifier_noise_rate > 1:
            yield "formatted_payout_rate + identifier_noise_rate: must be <= 1"


@dataclass(frozen=True)
class GenerateResult:
    """What ``generate`` wrote.

    Attributes
    ----------
    events_path, labels_path, config_path : Path
        The files written.
    rows : int
        Data rows in the events file: events + duplicate rows + broken rows.
    events : int
        Distinct true events.
    duplicate_rows, broken_rows : int
        Extra rows: exact duplicates, and broken copies (see ``Scenario.broken_rate``).
    contributors, fraud_contributors : int
        Contributors in ``labels.csv``, and those labelled fraud.
    rings : dict of str to int
        Planted rings by ring type.
    """

    events_path: Path
    labels_path: Path
    config_path: Path
    rows: int
    events: int
    duplicate_rows: int
    broken_rows: int
    contributors: int
    fraud_contributors: int
    rings: dict[str, int]


def column_names(columns: Mapping[str, str] | None) -> dict[str, str]:
    """The written name of every canonical column, after checking the renaming."""
    names = {column: column for column in EVENT_COLUMNS}
    for canonical, written in (columns or {}).items():
        if canonical not in names:
            raise ConfigError(
                f"columns: {canonical!r} is not an event column; expected one of "
                + ", ".join(EVENT_COLUMNS)
            )
        if not written or not written.strip():
            raise ConfigError(f"columns.{canonical}: the new name is empty")
        names[canonical] = written
    if len(set(names.values())) < len(names):
        raise ConfigError(f"columns: two columns would get the same name: {sorted(names.values())}")
    return names
