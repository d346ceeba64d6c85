"""Synthetic event logs with planted fraud rings, honest lookalikes and messy data.

The generator first builds a population: fraud rings of five kinds, honest contributors who
*look* suspicious (households, campuses, carrier NAT users, café customers, VPN users, broken
clients) and plain honest contributors. Every contributor gets a small menu of *channels* -- a
device (or a range of devices) used from an IP (or a range of IPs), with a weight -- and all
events are then drawn at once with numpy, each event picking one channel of its contributor.
Identifiers stay integer codes until the end, when they are rendered to strings with pyarrow,
messed up on a seeded share of rows, and written batch by batch.

The population, the events and the mess come from three independent random streams spawned
from one seed, so changing a messiness rate never changes who is in which ring or which events
happen: a messy file and a clean file of the same seed hold the same events.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ringfinder.config import InputConfig
from ringfinder.errors import ConfigError
from ringfinder.schema import CONTRIBUTOR, DEVICE, EVENT_TYPE, IP, PAYMENT, TIME

__all__ = [
    "BAD_TIMESTAMPS",
    "BENIGN_ROLES",
    "DEVICE_PLACEHOLDERS",
    "EVENT_COLUMNS",
    "EVENT_TYPES",
    "IP_PLACEHOLDERS",
    "LABEL_COLUMNS",
    "RING_TYPES",
    "GenerateResult",
    "Scenario",
    "generate",
]

logger = logging.getLogger(__name__)

_DEFAULT_KINDS = InputConfig().kinds
DEVICE_COLUMN = _DEFAULT_KINDS[DEVICE].column
IP_COLUMN = _DEFAULT_KINDS[IP].column
PAYOUT_COLUMN = _DEFAULT_KINDS[PAYMENT].column
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
EVENT_TYPES = ("signup", "login", "task_submit", "payout_change")
_SIGNUP, _LOGIN, _SUBMIT, _PAYOUT_CHANGE = range(4)
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
_ROLES = BENIGN_ROLES + tuple(RING_TYPES)
_ROLE = {name: code for code, name in enumerate(_ROLES)}
#: Placeholder values that broken clients send instead of a device id or an IP.
DEVICE_PLACEHOLDERS = ("unknown", "00000000-0000-0000-0000-000000000000", "null", "", "undefined")
IP_PLACEHOLDERS = ("0.0.0.0", "unknown", "", "null", "::")
#: Values of unparseable timestamps in broken rows.
BAD_TIMESTAMPS = ("yesterday", "N/A", "2026-13-45T99:99:99Z", "not a date")

Format = Literal["parquet", "csv", "csv.gz"]
SizeRange = tuple[int, int]
_T = TypeVar("_T")

_DAY = 86_400
_CHANNELS = 5  # channels per contributor: device (range) x IP (range) x weight
_BATCH_ROWS = 1 << 20
_NULL = -1

# Device styles, IP styles.
_DESKTOP, _ANDROID, _IOS, _DEVICE_PLACEHOLDER = range(4)
_V4, _V6, _IP_PLACEHOLDER = range(3)

# Local hour-of-day activity profile (night low, evening peak): hour h has _HOURLY[h] slots.
_HOURLY = (2, 1, 1, 1, 1, 1, 2, 3, 5, 6, 6, 6, 6, 6, 6, 6, 6, 7, 8, 9, 9, 8, 6, 4)
_HOUR_SLOTS = np.repeat(np.arange(24), _HOURLY)
# Time zones of contributors as UTC offsets in minutes, and their share.
_TZ_MINUTES = np.array([-480, -300, -180, 0, 60, 120, 180, 330, 420, 480, 540])
_TZ_SHARE = np.array([6, 12, 8, 10, 22, 10, 4, 12, 6, 6, 4], dtype=np.float64)

_USER_AGENTS = {
    _DESKTOP: (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like "
        "Gecko) Version/18.1 Safari/605.1.15",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/130.0.0.0 Safari/537.36",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36",
    ),
    _ANDROID: (
        "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.6778.81 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 13; SM-A536B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/130.0.6723.102 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.6778.39 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 12; Redmi Note 11) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/129.0.6668.100 Mobile Safari/537.36",
        "Marketplace/5.12.0 (Android 13; SM-A135F)",
    ),
    _IOS: (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
        "like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
        "like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
        "Marketplace/5.12.1 (iPhone; iOS 18.1; Scale/3.00)",
    ),
    _DEVICE_PLACEHOLDER: ("okhttp/4.12.0", "Marketplace/4.0.0 (unknown)"),
}

# IBAN layouts: country, share, BBAN pattern ("9" a digit, "A" a bank letter from the list).
_IBAN_LAYOUTS = (
    ("DE", 0.4, "99999999" + "9" * 10, ()),
    ("GB", 0.2, "AAAA" + "9" * 14, ("NWBK", "BARC", "LOYD", "HBUK", "MIDL")),
    ("NL", 0.2, "AAAA" + "9" * 10, ("ABNA", "INGB", "RABO", "TRIO", "SNSB")),
    ("ES", 0.2, "9" * 20, ()),
)
_MOBILE_V6_PREFIXES = ((0x2A02, 0x8109), (0x2607, 0xFB90), (0x2A01, 0xE0A3), (0x2401, 0x4900))
# Public first octets for IPv4 addresses: skips 0, 10, 100 (CGNAT), 127, 169, 172, 192 and 224+.
_V4_FIRST_OCTETS = np.array(
    [o for o in range(1, 224) if o not in (0, 10, 100, 127, 169, 172, 192)], dtype=np.int64
)
_HEX_LOWER = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_HEX_UPPER = np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8)
_PADS = (("", " "), (" ", ""), ("  ", " "))  # whitespace noise: (before, after)
_PORTS = ("443", "8080", "51234")


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


def generate(
    out_dir: Path,
    *,
    scenario: Scenario = Scenario(),  # noqa: B008 - frozen, so a safe default
    seed: int = 0,
    fmt: Format = "parquet",
    columns: Mapping[str, str] | None = None,
) -> GenerateResult:
    """Write a synthetic event log with planted rings, its labels and a detect config.

    Writes ``events.<fmt>``, ``labels.csv`` (``contributor_id,label,ring_id,ring_type,role``)
    and ``config.toml`` (the ``[input]`` section for the columns written) into ``out_dir``.
    The same scenario, seed and format give byte-identical files.

    Parameters
    ----------
    out_dir : Path
        Output folder; created if missing. Existing files of the same names are replaced.
    scenario : Scenario
        Population, rings and messiness.
    seed : int
        Seed of every random choice.
    fmt : {"parquet", "csv", "csv.gz"}
        Format of the events file. Ragged lines only occur in CSV.
    columns : mapping of str to str, optional
        Renames canonical columns (``EVENT_COLUMNS``) to imitate a foreign export, e.g.
        ``{"contributor_id": "worker_uuid"}``; ``config.toml`` maps the names written.

    Returns
    -------
    GenerateResult
        Paths written and counts.

    Raises
    ------
    ConfigError
        If ``fmt`` or ``columns`` is invalid, or the scenario's groups do not fit in its
        population.

    Examples
    --------
    >>> import tempfile
    >>> result = generate(Path(tempfile.mkdtemp()), scenario=Scenario(contributors=2000))
    >>> sorted(result.rings) == sorted(RING_TYPES) and min(result.rings.values()) >= 1
    True
    """
    if fmt not in ("parquet", "csv", "csv.gz"):
        raise ConfigError(f"fmt = {fmt!r}: expected one of parquet, csv, csv.gz")
    names = _column_names(columns)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    population_rng, event_rng, mess_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)
    )
    world = _World(scenario, population_rng)
    events = _draw_events(world, event_rng)
    strings = _render_identifiers(world, population_rng)
    mess = _add_mess(events, scenario, strings.ip_is_v4, mess_rng, ragged=fmt != "parquet")
    events_path = out_dir / f"events.{fmt}"
    agents = strings.user_agent if fmt == "parquet" else _csv_cell(strings.user_agent)
    batches = _event_batches(events, mess, world.tz, strings, agents)
    _write_events(events_path, fmt, names, _ahead(batches))
    labels_path = out_dir / "labels.csv"
    _write_labels(labels_path, world, strings)
    config_path = out_dir / "config.toml"
    config_path.write_text(_config_toml(names, fmt, seed), encoding="utf-8")
    result = GenerateResult(
        events_path=events_path,
        labels_path=labels_path,
        config_path=config_path,
        rows=len(mess.source),
        events=len(events.time),
        duplicate_rows=mess.duplicate_rows,
        broken_rows=mess.broken_rows,
        contributors=world.n,
        fraud_contributors=int((world.ring >= 0).sum()),
        rings={kind: sum(1 for r in world.rings if r.kind == kind) for kind in RING_TYPES},
    )
    logger.info(
        "generated %d rows (%d events) for %d contributors, %d in rings, into %s",
        result.rows,
        result.events,
        result.contributors,
        result.fraud_contributors,
        out_dir,
    )
    return result


def _column_names(columns: Mapping[str, str] | None) -> dict[str, str]:
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


# ---------------------------------------------------------------- population

# Ring type -> (count knob, size knob, share of ring members when the count is left at None).
_RING_KNOBS = {
    "device_farm": ("device_farms", "device_farm_size", 0.35),
    "payout_consolidation": ("payout_consolidations", "payout_consolidation_size", 0.2),
    "chain": ("chains", "chain_size", 0.15),
    "small_ring": ("small_rings", "small_ring_size", 0.2),
    "lockstep": ("lockstep_rings", "lockstep_size", 0.1),
}


@dataclass(frozen=True)
class _Ring:
    kind: str
    number: int  # within its kind, from 1


class _Codes:
    """Integer codes of one identifier kind, each with a rendering style."""

    def __init__(self) -> None:
        self._styles: list[np.ndarray] = []
        self.total = 0

    def new(self, styles: np.ndarray | int, count: int) -> np.ndarray:
        """Allocate ``count`` new codes with one style each (or one style for all)."""
        self._styles.append(np.broadcast_to(np.asarray(styles, dtype=np.int8), (count,)).copy())
        self.total += count
        return np.arange(self.total - count, self.total, dtype=np.int64)

    def styles(self) -> np.ndarray:
        """The style of every code, by code."""
        return np.concatenate(self._styles)


class _World:
    """The population: roles, rings, times, channels and payout accounts per contributor.

    A channel is a device code (plus a random offset below its device span) used from an IP
    code (likewise), with a weight; the signup always uses channel 0, which is why channel 0
    holds what characterises the role (the farm devices, the café PC, the chain link).
    """

    def __init__(self, scenario: Scenario, rng: np.random.Generator) -> None:
        self.scenario = s = scenario
        self.rng = rng
        self.t0 = int(np.datetime64(s.start, "s").astype(np.int64))
        self.t_end = self.t0 + s.days * _DAY
        self.tasks = s.tasks or max(1000, 2 * s.contributors)
        self.devices = _Codes()
        self.ips = _Codes()
        self.payouts = 0
        # placeholders first, so their codes are their index in the placeholder tuples
        self.devices.new(_DEVICE_PLACEHOLDER, len(DEVICE_PLACEHOLDERS))
        self.ips.new(_IP_PLACEHOLDER, len(IP_PLACEHOLDERS))

        ring_sizes = {kind: self._ring_sizes(kind) for kind in RING_TYPES}
        n_fraud = sum(int(sizes.sum()) for sizes in ring_sizes.values())
        honest = s.contributors - n_fraud
        groups = self._group_sizes(honest)
        singles = {
            "vpn": round(s.vpn_share * honest),
            "placeholder": round(s.placeholder_rate * s.contributors),
        }
        needed = n_fraud + sum(int(g.sum()) for g in groups.values()) + sum(singles.values())
        if needed > s.contributors:
            raise ConfigError(
                f"scenario: rings and lookalike groups need {needed} contributors but "
                f"contributors = {s.contributors}; lower the group counts or sizes"
            )

        self.n = n = s.contributors
        self.role = np.full(n, _ROLE["honest"], dtype=np.int8)
        self.ring = np.full(n, _NULL, dtype=np.int32)
        self.signup = np.zeros(n, dtype=np.int64)
        self.span_days = np.zeros(n, dtype=np.float64)
        self.tz = rng.choice(len(_TZ_MINUTES), size=n, p=_TZ_SHARE / _TZ_SHARE.sum())
        self.payout0 = np.full(n, _NULL, dtype=np.int64)
        self.payout1 = np.full(n, _NULL, dtype=np.int64)
        self.payout1_at = np.zeros(n, dtype=np.int64)
        self.ch_device = np.zeros((n, _CHANNELS), dtype=np.int64)
        self.ch_device_span = np.ones((n, _CHANNELS), dtype=np.int64)
        self.ch_ip = np.zeros((n, _CHANNELS), dtype=np.int64)
        self.ch_ip_span = np.ones((n, _CHANNELS), dtype=np.int64)
        self.ch_weight = np.zeros((n, _CHANNELS), dtype=np.float64)
        self.rings: list[_Ring] = []
        self.lockstep_rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._next = 0

        self.campus_ips = self.ips.new(_V4, len(groups["campus"]))
        self.nat_ips = self.ips.new(_V4, len(groups["carrier_nat"]))
        exits = s.vpn_exits if s.vpn_exits is not None else max(5, s.contributors // 2_000)
        self.vpn_ips = self.ips.new(_V4, exits)
        self.cafe_ips = self.ips.new(_V4, len(groups["cafe"]))
        self.cafe_pcs = self.devices.new(_DESKTOP, len(groups["cafe"]))
        self.proxy_ips = self.ips.new(_V4, 60 + s.contributors // 1_000)

        builders = {
            "device_farm": self._device_farm,
            "payout_consolidation": self._payout_consolidation,
            "chain": self._chain,
            "small_ring": self._small_ring,
            "lockstep": self._lockstep,
        }
        for kind, sizes in ring_sizes.items():
            for number, size in enumerate(sizes, start=1):
                members = self._take(int(size), kind)
                self.ring[members] = len(self.rings)
                self.rings.append(_Ring(kind, number))
                builders[kind](members)
        benign = np.arange(self._next, n)
        self._households(groups["household"])
        for campus_ip, size in zip(self.campus_ips, groups["campus"], strict=True):
            self._campus(self._take(int(size), "campus"), campus_ip)
        for nat_ip, size in zip(self.nat_ips, groups["carrier_nat"], strict=True):
            self._channel(
                self._take(int(size), "carrier_nat"), 0, self._phones(int(size)), nat_ip, 1.0
            )
        for cafe, size in enumerate(groups["cafe"]):
            self._cafe(self._take(int(size), "cafe"), cafe)
        self._vpn(self._take(singles["vpn"], "vpn"))
        self._placeholder(self._take(singles["placeholder"], "placeholder"))
        self._honest(self._take(n - self._next, "honest"))
        self._benign_times(benign)

    # -- planning

    def _ring_sizes(self, kind: str) -> np.ndarray:
        s = self.scenario
        count_knob, size_knob, mix = _RING_KNOBS[kind]
        low, high = getattr(s, size_knob)
        count = getattr(s, count_knob)
        if count is None:
            count = max(1, round(s.contributors * s.ring_share * mix / ((low + high) / 2)))
        return self.rng.integers(low, high + 1, size=count)

    def _group_sizes(self, honest: int) -> dict[str, np.ndarray]:
        """Sizes of every lookalike group; counts left at ``None`` scale with the population."""
        s = self.scenario

        def sizes(count: int | None, per: int, size: SizeRange) -> np.ndarray:
            if count is None:  # one group per `per` contributors, within ~15 % of the honest
                count = min(max(1, s.contributors // per), int(0.15 * honest / sum(size) * 2))
            return self.rng.integers(size[0], size[1] + 1, size=count)

        households = round(s.household_rate * honest / (sum(s.household_size) / 2))
        return {
            "household": sizes(households, 1, s.household_size),
            "campus": sizes(s.campuses, 10_000, s.campus_size),
            "carrier_nat": sizes(s.carrier_nat_ips, 5_000, s.carrier_nat_users),
            "cafe": sizes(s.cafes, 2_500, s.cafe_size),
        }

    def _take(self, count: int, role: str) -> np.ndarray:
        members = np.arange(self._next, self._next + count)
        self._next += count
        self.role[members] = _ROLE[role]
        return members

    # -- identifiers

    def _phones(self, count: int) -> np.ndarray:
        return self.devices.new(np.where(self.rng.random(count) < 0.55, _ANDROID, _IOS), count)

    def _desktops_for(self, has: np.ndarray, otherwise: np.ndarray) -> np.ndarray:
        """A new desktop where ``has``, else ``otherwise``."""
        devices = otherwise.copy()
        devices[has] = self.devices.new(_DESKTOP, int(has.sum()))
        return devices

    def _mobile_ips(self, count: int, *, nat: bool = True) -> np.ndarray:
        """Mobile IPs: a carrier NAT IP (if ``nat``), else one of their own, often IPv6."""
        rng = self.rng
        share = self.scenario.mobile_nat_rate if nat and len(self.nat_ips) else 0.0
        behind_nat = rng.random(count) < share
        codes = rng.choice(self.nat_ips, size=count) if share else np.empty(count, np.int64)
        own = int((~behind_nat).sum())
        codes[~behind_nat] = self.ips.new(np.where(rng.random(own) < 0.6, _V6, _V4), own)
        return codes

    def _new_payouts(self, count: int) -> np.ndarray:
        self.payouts += count
        return np.arange(self.payouts - count, self.payouts, dtype=np.int64)

    def _channel(
        self,
        members: np.ndarray,
        slot: int,
        device: np.ndarray | int,
        ip: np.ndarray | int,
        weight: np.ndarray | float,
        *,
        device_span: np.ndarray | int = 1,
        ip_span: np.ndarray | int = 1,
    ) -> None:
        """Let ``members`` use ``device`` (+ an offset below its span) from ``ip`` (likewise)."""
        self.ch_device[members, slot] = device
        self.ch_device_span[members, slot] = device_span
        self.ch_ip[members, slot] = ip
        self.ch_ip_span[members, slot] = ip_span
        self.ch_weight[members, slot] = weight

    def _ring_start(self, members: np.ndarray, *, spread_days: float, margin_days: float) -> None:
        """Signups within ``spread_days`` from a random moment, in one time zone."""
        rng = self.rng
        latest = max(1.0, self.scenario.days - margin_days - spread_days)
        start = self.t0 + int(rng.uniform(0, latest) * _DAY)
        offsets = np.sort(rng.uniform(0, spread_days * _DAY, size=len(members)))
        self.signup[members] = start + offsets.astype(np.int64)
        self.tz[members] = rng.integers(len(_TZ_MINUTES))

    # -- fraud rings

    def _device_farm(self, members: np.ndarray) -> None:
        """Burst of signups, 2-5 shared phones, rotating proxies, 1-3 payout accounts."""
        rng, k = self.rng, len(members)
        farm_phones = self.devices.new(_ANDROID, int(rng.integers(2, 6)))
        pool = int(rng.integers(5, 31))  # a window of the proxy IPs; farms' windows overlap
        proxy = self.proxy_ips[int(rng.integers(0, len(self.proxy_ips) - pool + 1))]
        self._channel(
            members, 0, farm_phones[0], proxy, 0.85, device_span=len(farm_phones), ip_span=pool
        )
        own = rng.random(k) < 0.25
        own_phones = np.zeros(k, dtype=np.int64)
        own_phones[own] = self._phones(int(own.sum()))
        self._channel(members, 1, own_phones, proxy, np.where(own, 0.15, 0.0), ip_span=pool)
        accounts = self._new_payouts(int(rng.integers(1, 4)))
        self.payout0[members] = accounts[np.arange(k) % len(accounts)]
        self._ring_start(members, spread_days=rng.uniform(1, 6) / 24, margin_days=8)
        self.span_days[members] = rng.uniform(3, 21, size=k)

    def _payout_consolidation(self, members: np.ndarray) -> None:
        """Own devices and IPs; payouts switched to 1-2 collectors 2-10 days after signup."""
        rng, k = self.rng, len(members)
        self._channel(members, 0, self.devices.new(_DESKTOP, k), self.ips.new(_V4, k), 0.6)
        self._channel(members, 1, self._phones(k), self._mobile_ips(k, nat=False), 0.4)
        self.payout0[members] = self._new_payouts(k)
        collectors = self._new_payouts(int(rng.integers(1, 3)))
        self.payout1[members] = collectors[np.arange(k) % len(collectors)]
        self._ring_start(members, spread_days=rng.uniform(1, 7), margin_days=14)
        delay = (rng.uniform(2, 10, size=k) * _DAY).astype(np.int64)
        self.payout1_at[members] = self.signup[members] + delay
        self.span_days[members] = rng.uniform(12, 30, size=k)

    def _chain(self, members: np.ndarray) -> None:
        """Member i+1 shares a device, a payout account or an IP with member i, in turn."""
        rng, k = self.rng, len(members)
        devices = self.devices.new(_DESKTOP, k)
        homes = self.ips.new(_V4, k)
        payouts = self._new_payouts(k)
        link = (int(rng.integers(3)) + np.arange(k - 1)) % 3  # 0 device, 1 payout, 2 IP
        link_device = np.r_[devices[0], np.where(link == 0, devices[:-1], devices[1:])]
        link_ip = np.r_[homes[0], np.where(link == 2, homes[:-1], homes[1:])]
        payouts[1:] = np.where(link == 1, payouts[:-1], payouts[1:])
        self.payout0[members] = payouts
        self._channel(members, 0, link_device, link_ip, 0.2)
        self._channel(members, 1, devices, homes, 0.4)
        # camouflage: popular honest identifiers, a carrier NAT IP and a café PC
        mobile = rng.choice(self.nat_ips, size=k) if len(self.nat_ips) else self._mobile_ips(k)
        self._channel(members, 2, self._phones(k), mobile, 0.25)
        if len(self.cafe_pcs):
            cafe = rng.integers(len(self.cafe_pcs), size=k)
            weight = np.where(rng.random(k) < 0.6, 0.15, 0.0)
            self._channel(members, 3, self.cafe_pcs[cafe], self.cafe_ips[cafe], weight)
        self._ring_start(members, spread_days=rng.uniform(3, 20), margin_days=10)
        self.span_days[members] = rng.uniform(15, 40, size=k)

    def _small_ring(self, members: np.ndarray) -> None:
        """One device, one home IP and one payout account for 3-4 accounts."""
        rng, k = self.rng, len(members)
        device = self.devices.new(_DESKTOP if rng.random() < 0.5 else _ANDROID, 1)
        self._channel(members, 0, device, self.ips.new(_V4, 1), 0.75)
        own = rng.random(k) < 0.5
        phones = np.zeros(k, dtype=np.int64)
        phones[own] = self._phones(int(own.sum()))
        mobile = np.zeros(k, dtype=np.int64)
        mobile[own] = self._mobile_ips(int(own.sum()), nat=False)
        self._channel(members, 1, phones, mobile, np.where(own, 0.25, 0.0))
        self.payout0[members] = self._new_payouts(1)
        self._ring_start(members, spread_days=rng.uniform(0.2, 3), margin_days=10)
        self.span_days[members] = rng.uniform(10, 40, size=k)

    def _lockstep(self, members: np.ndarray) -> None:
        """Own identifiers only; all members submit the same tasks within seconds."""
        rng, s, k = self.rng, self.scenario, len(members)
        self._channel(members, 0, self.devices.new(_DESKTOP, k), self.ips.new(_V4, k), 0.6)
        self._channel(members, 1, self._phones(k), self._mobile_ips(k, nat=False), 0.4)
        self.payout0[members] = self._new_payouts(k)
        self._ring_start(members, spread_days=rng.uniform(1, 10), margin_days=20)
        self.span_days[members] = rng.uniform(20, 40, size=k)
        low, high = s.lockstep_cosubmissions
        episodes = int(rng.integers(low, high + 1))
        first = int(self.signup[members].max()) + 3600
        last = min(self.t_end - 3600, first + int(self.span_days[members].min() * _DAY))
        at = np.sort(rng.integers(first, last, size=episodes))
        jitter = rng.integers(0, 10, size=(k, episodes))
        tasks = np.tile(_draw_tasks(rng, episodes, self.tasks), k)
        self.lockstep_rows.append((np.repeat(members, episodes), (at + jitter).ravel(), tasks))

    # -- honest contributors and lookalikes

    def _households(self, sizes: np.ndarray) -> None:
        """2-4 accounts behind one home IP, some on one family computer, own payouts."""
        rng = self.rng
        members = self._take(int(sizes.sum()), "household")
        k = len(members)
        household = np.repeat(np.arange(len(sizes)), sizes)
        is_family = rng.random(len(sizes)) < self.scenario.family_computer_rate
        family_pc = np.zeros(len(sizes), dtype=np.int64)
        family_pc[is_family] = self.devices.new(_DESKTOP, int(is_family.sum()))
        family, family_pc = is_family[household], family_pc[household]
        self.role[members[family]] = _ROLE["family_computer"]
        first = members[0] + np.r_[0, np.cumsum(sizes)[:-1]]
        homes = self.ips.new(_V4, len(sizes))[household]
        phones = self._phones(k)
        own = self._desktops_for(~family & (rng.random(k) < 0.6), phones)
        self._channel(members, 0, np.where(family, family_pc, own), homes, 0.4)
        self._channel(members, 1, phones, homes, 0.35)
        self._channel(members, 2, phones, self._mobile_ips(k), 0.25)
        self.tz[members] = self.tz[first][household]

    def _campus(self, members: np.ndarray, campus_ip: int) -> None:
        """Hundreds of students behind one NAT IP, each with their own devices."""
        k = len(members)
        phones = self._phones(k)
        self._channel(members, 0, self.devices.new(_DESKTOP, k), campus_ip, 0.45)
        self._channel(members, 1, phones, campus_ip, 0.3)
        self._channel(members, 2, phones, self._mobile_ips(k), 0.25)
        self.tz[members] = self.tz[members[0]]

    def _cafe(self, members: np.ndarray, cafe: int) -> None:
        """Customers of one café PC and IP, who also use their own phones at home and out."""
        k = len(members)
        phones = self._phones(k)
        self._channel(members, 0, self.cafe_pcs[cafe], self.cafe_ips[cafe], 0.4)
        self._channel(members, 1, phones, self.cafe_ips[cafe], 0.15)
        self._channel(members, 2, phones, self._mobile_ips(k), 0.3)
        self._channel(members, 3, phones, self.ips.new(_V4, k), 0.15)
        self.tz[members] = self.tz[members[0]]

    def _vpn(self, members: np.ndarray) -> None:
        """A laptop going out through the exits of one VPN provider (ten exits each)."""
        rng, k, exits = self.rng, len(members), len(self.vpn_ips)
        laptops = self.devices.new(_DESKTOP, k)
        provider = rng.integers(0, (exits + 9) // 10, size=k)
        span = np.minimum(10, exits - 10 * provider)
        self._channel(members, 0, laptops, self.vpn_ips[10 * provider], 0.6, ip_span=span)
        self._channel(members, 1, self._phones(k), self._mobile_ips(k), 0.25)
        self._channel(members, 2, laptops, self.ips.new(_V4, k), 0.15)

    def _placeholder(self, members: np.ndarray) -> None:
        """Broken clients: a placeholder device id, IP or both on every event."""
        rng, k = self.rng, len(members)
        mode = rng.integers(0, 3, size=k)  # 0 device broken, 1 IP broken, 2 both
        device = rng.integers(len(DEVICE_PLACEHOLDERS), size=k)  # placeholder codes = index
        device[mode == 1] = self._phones(int((mode == 1).sum()))
        ip = rng.integers(len(IP_PLACEHOLDERS), size=k)
        ip[mode == 0] = self.ips.new(_V4, int((mode == 0).sum()))
        self._channel(members, 0, device, ip, 1.0)

    def _honest(self, members: np.ndarray) -> None:
        """A phone (and mostly a laptop) at home, the phone also out on mobile data."""
        rng, k = self.rng, len(members)
        phones = self._phones(k)
        homes = self.ips.new(_V4, k)
        self._channel(members, 0, self._desktops_for(rng.random(k) < 0.7, phones), homes, 0.45)
        self._channel(members, 1, phones, homes, 0.25)
        self._channel(members, 2, phones, self._mobile_ips(k), 0.3)

    def _benign_times(self, members: np.ndarray) -> None:
        """Signups over the window, activity over weeks, an occasional new payout account."""
        rng, s, k = self.rng, self.scenario, len(members)
        day = rng.integers(0, s.days - 3, size=k)
        signup = _local_times(rng, self.t0, day, self.tz[members])
        self.signup[members] = np.clip(signup, self.t0, self.t_end - 3 * _DAY)
        left = (self.t_end - self.signup[members]) / _DAY
        self.span_days[members] = np.clip(rng.lognormal(np.log(20), 0.8, size=k), 1, left)
        self.payout0[members] = self._new_payouts(k)
        changes = members[rng.random(k) < s.payout_change_rate]
        self.payout1[changes] = self._new_payouts(len(changes))
        delay = rng.uniform(1, np.maximum(1.5, self.span_days[changes])) * _DAY
        self.payout1_at[changes] = self.signup[changes] + delay.astype(np.int64)


def _local_times(rng: np.random.Generator, t0: int, day: np.ndarray, tz: np.ndarray) -> np.ndarray:
    """Epoch seconds of a diurnal local time of day on local ``day`` (days after ``t0``)."""
    # one integer per event: which of the 120 hour-slots of _HOURLY, and the second in it
    draw = rng.integers(0, len(_HOUR_SLOTS) * 3600, size=len(day))
    second_of_day = _HOUR_SLOTS[draw // 3600] * 3600 + draw % 3600
    return t0 + day.astype(np.int64) * _DAY + second_of_day - _TZ_MINUTES[tz] * 60


def _draw_tasks(rng: np.random.Generator, count: int, pool: int) -> np.ndarray:
    """Task numbers with Zipf-like popularity: rank r has weight (r + 50) ** -1.1."""
    low, high = 50.0**-0.1, (pool + 50.0) ** -0.1
    ranks = (low + rng.random(count) * (high - low)) ** -10.0 - 50.0
    return np.clip(ranks.astype(np.int64), 0, pool - 1)


# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class _Events:
    """True events as codes, one entry per event (``-1``: no payout account or task)."""

    contributor: np.ndarray
    time: np.ndarray
    event_type: np.ndarray
    device: np.ndarray
    ip: np.ndarray
    payout: np.ndarray
    task: np.ndarray

    def take(self, index: np.ndarray) -> _Events:
        """The events at ``index``, in that order."""
        return _Events(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


@dataclass(frozen=True)
class _Mess:
    """How each event's cells are written (0: clean), and the rows of the file.

    ``source`` and ``broken`` have one entry per written row, in file order: the event the row
    shows, and how it is broken (0 not, 1 no contributor id, 2 unparseable timestamp, 3 ragged
    CSV line). The other arrays have one entry per event.
    """

    time: np.ndarray
    contributor: np.ndarray
    device: np.ndarray
    ip: np.ndarray
    payout: np.ndarray
    pad: np.ndarray
    source: np.ndarray
    broken: np.ndarray
    duplicate_rows: int
    broken_rows: int


def _draw_events(world: _World, rng: np.random.Generator) -> _Events:
    """Every event of every contributor, as codes, signups first, clean.

    Besides the signup, everyone has at least one event (ring members at least four, so they
    work a little like everyone else); the first few of them go through channels 1, 2, ... in
    turn, so every channel a contributor has shows up in the data if they have events enough.
    """
    s, n = world.scenario, world.n
    shape, mean = 1.2, s.events_per_contributor - 2
    others = 1 + rng.negative_binomial(shape, shape / (shape + mean), size=n)
    others[world.ring >= 0] += 3
    who = np.repeat(np.arange(n), others)
    rank = np.arange(len(who)) - np.repeat(np.cumsum(others) - others, others)
    first_day = (world.signup + _TZ_MINUTES[world.tz] * 60 - world.t0) // _DAY
    active = rng.random(len(who), dtype=np.float32) * world.span_days[who]
    day = first_day[who] + active.astype(np.int64)
    at = _local_times(rng, world.t0, day, world.tz[who])
    early = at <= world.signup[who]
    at[early] = world.signup[who[early]] + rng.integers(30, 7200, size=int(early.sum()))
    late = at >= world.t_end
    room = world.t_end - 1 - world.signup[who[late]]
    at[late] = world.signup[who[late]] + 1 + (rng.random(int(late.sum())) * room).astype(np.int64)
    action = np.where(rng.random(len(who), dtype=np.float32) < 0.3, _LOGIN, _SUBMIT)

    changers = np.flatnonzero(world.payout1 >= 0)
    lock_who, lock_at, lock_task = (
        (np.concatenate(column) for column in zip(*world.lockstep_rows, strict=True))
        if world.lockstep_rows
        else (np.empty(0, np.int64),) * 3
    )
    contributor = np.concatenate([np.arange(n), who, changers, lock_who])
    time = np.concatenate(
        [world.signup, at, np.minimum(world.payout1_at[changers], world.t_end - 1), lock_at]
    )
    event_type = np.concatenate(
        [
            np.full(n, _SIGNUP),
            action,
            np.full(len(changers), _PAYOUT_CHANGE),
            np.full(len(lock_who), _SUBMIT),
        ]
    ).astype(np.int8)
    payout = np.concatenate(
        [
            world.payout0,
            np.full(len(who), _NULL),
            world.payout1[changers],
            np.full(len(lock_who), _NULL),
        ]
    )
    task = np.full(len(contributor), _NULL, dtype=np.int64)
    submit = np.flatnonzero(event_type == _SUBMIT)
    task[submit] = _draw_tasks(rng, len(submit), world.tasks)
    task[len(task) - len(lock_task) :] = lock_task

    # pick a channel per event (signups use channel 0), then a device and an IP within it
    cumulative = np.cumsum(world.ch_weight, axis=1)
    cumulative /= cumulative[:, -1:]
    u = rng.random(len(contributor), dtype=np.float32)
    channel = np.zeros(len(contributor), dtype=np.int64)
    for slot in range(_CHANNELS - 1):
        channel += u >= cumulative[:, slot][contributor]
    channel[:n] = 0
    turn = np.flatnonzero(rank < _CHANNELS - 1)
    turn = turn[world.ch_weight[who[turn], rank[turn] + 1] > 0]
    channel[n + turn] = rank[turn] + 1
    cell = contributor * _CHANNELS + channel
    device = _in_span(rng, world.ch_device.ravel()[cell], world.ch_device_span.ravel()[cell])
    ip = _in_span(rng, world.ch_ip.ravel()[cell], world.ch_ip_span.ravel()[cell])
    return _Events(contributor, time, event_type, device, ip, payout, task)


def _in_span(rng: np.random.Generator, first: np.ndarray, span: np.ndarray) -> np.ndarray:
    """A random code in ``[first, first + span)`` per entry (most spans are 1)."""
    wide = np.flatnonzero(span > 1)
    codes = first.copy()
    codes[wide] += rng.integers(0, span[wide])
    return codes


def _add_mess(
    events: _Events,
    scenario: Scenario,
    ip_is_v4: np.ndarray,
    rng: np.random.Generator,
    *,
    ragged: bool,
) -> _Mess:
    """Mark cells to write messily, pick duplicate and broken rows, order all rows by time."""
    s, m = scenario, len(events.time)
    # IPv4 cells: [0, mapped rate) mapped or bracketed, then [.., + noise rate) spaced
    ip = np.zeros(m, dtype=np.int8)
    u = rng.random(m, dtype=np.float32)
    mapped_below = np.where(ip_is_v4[events.ip], np.float32(s.ipv4_mapped_rate), np.float32(0))
    ip[(u >= mapped_below) & (u < mapped_below + s.identifier_noise_rate)] = 1
    mapped = np.flatnonzero(u < mapped_below)
    ip[mapped] = rng.integers(2, 4, size=len(mapped))
    # payout cells: [0, formatted rate) grouped, then [.., + noise rate) case and spaces
    payout = np.zeros(m, dtype=np.int8)
    u = np.where(events.payout >= 0, rng.random(m, dtype=np.float32), np.float32(2))
    grouped_below, noisy_below = (
        s.formatted_payout_rate,
        s.formatted_payout_rate + s.identifier_noise_rate,
    )
    noisy = np.flatnonzero((u >= grouped_below) & (u < noisy_below))
    payout[noisy] = rng.integers(1, 4, size=len(noisy))
    grouped = np.flatnonzero(u < grouped_below)
    payout[grouped] = rng.integers(4, 7, size=len(grouped))

    duplicates = rng.choice(m, size=round(s.duplicate_rate * m), replace=False)
    candidates = np.flatnonzero(events.event_type != _SIGNUP)
    broken_from = rng.choice(candidates, size=round(s.broken_rate * m), replace=False)
    source = np.concatenate([np.arange(m), duplicates, broken_from])
    broken = np.zeros(len(source), dtype=np.int8)
    broken[m + len(duplicates) :] = rng.integers(1, 4 if ragged else 3, size=len(broken_from))
    # sort by time, ties in source order: one unique integer key per row, no stable sort
    key = (events.time[source] - events.time.min()) * len(source) + np.arange(len(source))
    key.sort()
    order = key % len(source)
    return _Mess(
        time=_mark(rng, m, s.timestamp_mix_rate, 1, 5),  # 1-4: the other formats
        contributor=_mark(rng, m, s.identifier_noise_rate, 1, 4),  # 1 case, 2 pad, 3 both
        device=_mark(rng, m, s.identifier_noise_rate, 1, 4),
        ip=ip,
        payout=payout,
        pad=rng.integers(0, len(_PADS), size=m, dtype=np.int8),
        source=source[order],
        broken=broken[order],
        duplicate_rows=len(duplicates),
        broken_rows=len(broken_from),
    )


def _mark(rng: np.random.Generator, count: int, rate: float, low: int, high: int) -> np.ndarray:
    """A variant in [low, high) for a ``rate`` share of ``count`` cells, else 0."""
    marks = np.zeros(count, dtype=np.int8)
    chosen = np.flatnonzero(rng.random(count, dtype=np.float32) < rate)
    marks[chosen] = rng.integers(low, high, size=len(chosen))
    return marks


# ---------------------------------------------------------------- strings


@dataclass(frozen=True)
class _Strings:
    """The written form of every code."""

    contributor: pa.Array
    contributor_order: np.ndarray  # contributors sorted by id
    device: pa.Array
    device_agent: np.ndarray
    user_agent: pa.Array
    ip: pa.Array
    ip_is_v4: np.ndarray
    payout: pa.Array
    task: pa.Array


def _render_identifiers(world: _World, rng: np.random.Generator) -> _Strings:
    """Render contributor ids, devices, IPs, payout accounts and tasks to strings."""
    numbers = rng.choice(16**8, size=world.n, replace=False)
    contributor = _fixed_strings(_prefixed(b"c_", _hex_chars(numbers, 8)))
    contributor_order = np.argsort(numbers)

    device_styles = world.devices.styles()
    agents = [agent for style in sorted(_USER_AGENTS) for agent in _USER_AGENTS[style]]
    first_agent = np.cumsum([0] + [len(_USER_AGENTS[style]) for style in sorted(_USER_AGENTS)])
    device_agent = first_agent[device_styles] + (
        rng.random(len(device_styles)) * np.diff(first_agent)[device_styles]
    ).astype(np.int64)
    device = _by_style(
        device_styles,
        {
            _DESKTOP: lambda k: _hex_chars(rng.integers(0, 256, size=(k, 16), dtype=np.uint8)),
            _ANDROID: lambda k: _hex_chars(rng.integers(0, 256, size=(k, 8), dtype=np.uint8)),
            _IOS: lambda k: _uuid_chars(rng.integers(0, 256, size=(k, 16), dtype=np.uint8)),
            _DEVICE_PLACEHOLDER: lambda k: pa.array(DEVICE_PLACEHOLDERS[:k]),
        },
    )
    ip_styles = world.ips.styles()
    ip = _by_style(
        ip_styles,
        {
            _V4: lambda k: _ipv4_strings(rng, k),
            _V6: lambda k: _ipv6_chars(rng, k),
            _IP_PLACEHOLDER: lambda k: pa.array(IP_PLACEHOLDERS[:k]),
        },
    )
    width = max(6, len(str(world.tasks - 1)))
    task = _fixed_strings(_prefixed(b"t-", _digit_chars(np.arange(world.tasks), width)))
    return _Strings(
        contributor=contributor,
        contributor_order=contributor_order,
        device=device,
        device_agent=device_agent,
        user_agent=pa.array(agents),
        ip=ip,
        ip_is_v4=ip_styles == _V4,
        payout=_iban_strings(rng, world.payouts),
        task=task,
    )


def _by_style(
    styles: np.ndarray, render: Mapping[int, Callable[[int], pa.Array | np.ndarray]]
) -> pa.Array:
    """Strings for codes of mixed styles: ``render[style](count)`` gives that style's strings."""
    parts, positions = [], []
    for style, make in render.items():
        where = np.flatnonzero(styles == style)
        if len(where):
            strings = make(len(where))
            parts.append(strings if isinstance(strings, pa.Array) else _fixed_strings(strings))
            positions.append(where)
    inverse = np.empty(len(styles), dtype=np.int64)
    inverse[np.concatenate(positions)] = np.arange(len(styles))
    return pa.concat_arrays(parts).take(pa.array(inverse))


def _fixed_strings(chars: np.ndarray) -> pa.Array:
    """One ASCII string per row of a ``(n, width)`` uint8 matrix, without copying twice."""
    count, width = chars.shape
    offsets = np.arange(0, (count + 1) * width, width, dtype=np.int64)
    data = pa.py_buffer(np.ascontiguousarray(chars))
    if offsets[-1] < 2**31:
        return pa.StringArray.from_buffers(count, pa.py_buffer(offsets.astype(np.int32)), data)
    return pa.LargeStringArray.from_buffers(count, pa.py_buffer(offsets), data)


def _prefixed(prefix: bytes, chars: np.ndarray) -> np.ndarray:
    head = np.broadcast_to(np.frombuffer(prefix, np.uint8), (len(chars), len(prefix)))
    return np.hstack([head, chars])


def _hex_chars(values: np.ndarray, digits: int | None = None, *, upper: bool = False) -> np.ndarray:
    """Hex digits of integers (``digits`` wide) or of the bytes of a uint8 matrix."""
    alphabet = _HEX_UPPER if upper else _HEX_LOWER
    if digits is None:  # a (n, k) byte matrix -> (n, 2k) hex digits
        return alphabet[np.stack([values >> 4, values & 15], axis=2).reshape(len(values), -1)]
    shifts = 4 * np.arange(digits - 1, -1, -1, dtype=np.uint64)
    return alphabet[(values.astype(np.uint64)[:, None] >> shifts) & np.uint64(15)]


def _digit_chars(values: np.ndarray, width: int) -> np.ndarray:
    """Zero-padded decimal digits of non-negative integers."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return (48 + (values.astype(np.int64)[:, None] // powers) % 10).astype(np.uint8)


def _uuid_chars(raw: np.ndarray) -> np.ndarray:
    """Upper-case version-4 UUIDs (as iOS vendor ids are written) from 16 random bytes."""
    raw = raw.copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    digits = _hex_chars(raw, upper=True)
    dash = np.full((len(raw), 1), ord("-"), dtype=np.uint8)
    cuts = np.split(digits, [8, 12, 16, 20], axis=1)
    return np.hstack([cuts[0], dash, cuts[1], dash, cuts[2], dash, cuts[3], dash, cuts[4]])


def _ipv4_strings(rng: np.random.Generator, count: int) -> pa.Array:
    """Distinct public-looking IPv4 addresses (no private, loopback or multicast ranges)."""
    per_octet = 256 * 256 * 254
    drawn = rng.choice(len(_V4_FIRST_OCTETS) * per_octet, size=count, replace=False)
    first, rest = np.divmod(drawn, per_octet)
    octets = [
        _V4_FIRST_OCTETS[first],
        rest // (256 * 254),
        rest // 254 % 256,
        1 + rest % 254,
    ]
    return pc.binary_join_element_wise(*(pc.cast(pa.array(o), pa.string()) for o in octets), ".")


def _ipv6_chars(rng: np.random.Generator, count: int) -> np.ndarray:
    """Mobile IPv6 addresses in canonical form (no zero group, so nothing to compress)."""
    groups = rng.integers(0x1000, 0x10000, size=(count, 8), dtype=np.int64)
    prefixes = np.array(_MOBILE_V6_PREFIXES)[rng.integers(len(_MOBILE_V6_PREFIXES), size=count)]
    groups[:, :2] = prefixes
    digits = _hex_chars(groups.ravel(), 4).reshape(count, 8, 4)
    colon = np.full((count, 8, 1), ord(":"), dtype=np.uint8)
    return np.concatenate([digits, colon], axis=2).reshape(count, 40)[:, :39]


def _iban_strings(rng: np.random.Generator, count: int) -> pa.Array:
    """IBANs with valid check digits, from a few countries' layouts."""
    share = np.array([layout[1] for layout in _IBAN_LAYOUTS])
    country = rng.choice(len(_IBAN_LAYOUTS), size=count, p=share / share.sum())
    render = {}
    for index, (code, _, pattern, banks) in enumerate(_IBAN_LAYOUTS):
        render[index] = lambda k, code=code, pattern=pattern, banks=banks: _iban_chars(
            rng, k, code, pattern, banks
        )
    return _by_style(country, render)


def _iban_chars(
    rng: np.random.Generator, count: int, country: str, pattern: str, banks: tuple[str, ...]
) -> np.ndarray:
    """``count`` IBANs of one country: random BBANs and their ISO 13616 check digits."""
    bban = (48 + rng.integers(0, 10, size=(count, len(pattern)))).astype(np.uint8)
    letters = [i for i, c in enumerate(pattern) if c == "A"]
    if letters:
        bank = np.frombuffer("".join(banks).encode(), np.uint8).reshape(len(banks), -1)
        bban[:, letters] = bank[rng.integers(len(banks), size=count)]
    # move country + "00" behind the BBAN, read letters as 10-35, take the number mod 97
    tail = np.broadcast_to(np.frombuffer(country.encode() + b"00", np.uint8), (count, 4))
    remainder = np.zeros(count, dtype=np.int64)
    for column in np.hstack([bban, tail]).T:
        letter = column >= ord("A")
        value = np.where(letter, column.astype(np.int64) - 55, column.astype(np.int64) - 48)
        remainder = (remainder * np.where(letter, 100, 10) + value) % 97
    head = np.broadcast_to(np.frombuffer(country.encode(), np.uint8), (count, 2))
    return np.hstack([head, _digit_chars(98 - remainder, 2), bban])


def _iso_chars(seconds: np.ndarray, separator: str, suffix: bytes) -> np.ndarray:
    """``YYYY-MM-DD?HH:MM:SS`` + suffix for epoch seconds, via tables of days and clock times."""
    days, second_of_day = np.divmod(seconds, _DAY)
    first, last = (int(days.min()), int(days.max())) if len(days) else (0, -1)
    dates = _date_chars(np.arange(first, last + 1))
    count = len(seconds)

    def literal(text: bytes) -> np.ndarray:
        return np.broadcast_to(np.frombuffer(text, np.uint8), (count, len(text)))

    return np.hstack(
        [
            dates[days - first],
            literal(separator.encode()),
            _clock_chars()[second_of_day],
            literal(suffix),
        ]
    )


def _date_chars(days: np.ndarray) -> np.ndarray:
    """``YYYY-MM-DD`` of days since 1970-01-01 (H. Hinnant's civil-from-days algorithm)."""
    z = days + 719_468
    era = z // 146_097
    day_of_era = z - era * 146_097
    year_of_era = (
        day_of_era - day_of_era // 1460 + day_of_era // 36_524 - day_of_era // 146_096
    ) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    shifted_month = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * shifted_month + 2) // 5 + 1
    month = np.where(shifted_month < 10, shifted_month + 3, shifted_month - 9)
    year = year_of_era + era * 400 + (month <= 2)
    dash = np.full((len(days), 1), ord("-"), dtype=np.uint8)
    return np.hstack(
        [_digit_chars(year, 4), dash, _digit_chars(month, 2), dash, _digit_chars(day, 2)]
    )


@cache
def _clock_chars() -> np.ndarray:
    """``HH:MM:SS`` of every second of a day."""
    second = np.arange(_DAY)
    colon = np.full((_DAY, 1), ord(":"), dtype=np.uint8)
    return np.hstack(
        [
            _digit_chars(second // 3600, 2),
            colon,
            _digit_chars(second // 60 % 60, 2),
            colon,
            _digit_chars(second % 60, 2),
        ]
    )


def _offset_suffix(minutes: int) -> str:
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


# ---------------------------------------------------------------- messy cells


def _mask(flags: np.ndarray) -> pa.Array:
    return pa.array(flags, type=pa.bool_())


_Variant = Callable[[pa.Array, np.ndarray, np.ndarray], pa.Array]


def _cells(
    strings: pa.Array, codes: np.ndarray, mess: np.ndarray, pad: np.ndarray, variant: _Variant
) -> pa.Array:
    """Cells for ``codes`` (``-1``: null), rewritten by ``variant`` where ``mess`` > 0."""
    cells = strings.take(pa.array(codes, mask=codes < 0))
    messy = (mess > 0) & (codes >= 0)
    if not messy.any():
        return cells
    where = np.flatnonzero(messy)
    return pc.replace_with_mask(
        cells, _mask(messy), variant(cells.take(pa.array(where)), mess[where], pad[where])
    )


def _case_space(values: pa.Array, mess: np.ndarray, pad: np.ndarray) -> pa.Array:
    """Variant 1 flips the case, 2 adds surrounding spaces, 3 does both."""
    flipped = pc.if_else(_mask(mess & 1 > 0), pc.utf8_swapcase(values), values)
    before = pa.array([p[0] for p in _PADS]).take(pa.array(pad))
    after = pa.array([p[1] for p in _PADS]).take(pa.array(pad))
    padded = pc.binary_join_element_wise(before, flipped, after, "")
    return pc.if_else(_mask(mess & 2 > 0), padded, flipped)


def _ip_variant(values: pa.Array, mess: np.ndarray, pad: np.ndarray) -> pa.Array:
    """Variant 1 adds spaces (and flips IPv6 case), 2 ``::ffff:a.b.c.d``, 3 ``[a.b.c.d]:port``."""
    spaced = _case_space(values, np.full(len(mess), 3), pad)
    mapped = pc.binary_join_element_wise(pa.scalar("::ffff:"), values, "")
    port = pa.array(_PORTS).take(pa.array(pad))
    bracketed = pc.binary_join_element_wise(pa.scalar("["), values, pa.scalar("]:"), port, "")
    return pc.choose(pa.array(mess - 1), spaced, mapped, bracketed)


def _payout_variant(values: pa.Array, mess: np.ndarray, pad: np.ndarray) -> pa.Array:
    """Variants 1-3 as ``_case_space``; grouped by four with 4 spaces, 5 hyphens, 6 both
    separators in lower case (``de89-3704-0044 0532 0130 00``)."""
    cased = _case_space(values, np.where(mess <= 3, mess, 0), pad)
    grouped = pc.utf8_rtrim(pc.replace_substring_regex(values, "(.{4})", "\\1 "), characters=" ")
    hyphens = pc.replace_substring(grouped, " ", "-")
    mixed = pc.utf8_lower(pc.replace_substring(grouped, " ", "-", max_replacements=2))
    return pc.choose(pa.array(np.where(mess <= 3, 0, mess - 3)), cased, grouped, hyphens, mixed)


def _time_cells(
    seconds: np.ndarray, mess: np.ndarray, tz: np.ndarray, unparseable: np.ndarray
) -> pa.Array:
    """ISO 8601 UTC times, other formats of the same instant where ``mess``, junk where asked."""
    cells = _fixed_strings(_iso_chars(seconds, "T", b"Z"))
    messy = (mess > 0) | unparseable
    if not messy.any():
        return cells
    where = np.flatnonzero(messy)
    at, zone = seconds[where], tz[where]
    local = _fixed_strings(_iso_chars(at + _TZ_MINUTES[zone] * 60, "T", b""))
    suffixes = pa.array([_offset_suffix(int(m)) for m in _TZ_MINUTES]).take(pa.array(zone))
    variants = (
        _fixed_strings(_iso_chars(at, " ", b"")),
        pc.binary_join_element_wise(local, suffixes, ""),
        pc.cast(pa.array(at), pa.string()),
        pc.cast(pa.array(at * 1000), pa.string()),
        pa.array(BAD_TIMESTAMPS).take(pa.array(at % len(BAD_TIMESTAMPS))),
    )
    choice = np.where(unparseable[where], 4, mess[where] - 1)
    return pc.replace_with_mask(cells, _mask(messy), pc.choose(pa.array(choice), *variants))


def _event_batches(
    events: _Events, mess: _Mess, tz: np.ndarray, strings: _Strings, user_agents: pa.Array
) -> Iterator[tuple[list[pa.Array], np.ndarray]]:
    """The written columns (``EVENT_COLUMNS`` order) batch by batch, and the ragged rows.

    ``user_agents`` is ``strings.user_agent``, CSV-quoted when writing CSV.
    """
    event_types = pa.array(EVENT_TYPES)
    for start in range(0, len(mess.source), _BATCH_ROWS):
        index = mess.source[start : start + _BATCH_ROWS]
        broken = mess.broken[start : start + _BATCH_ROWS]
        e, pad = events.take(index), mess.pad[index]
        contributor = np.where(broken == 1, _NULL, e.contributor)
        columns = [
            _cells(strings.contributor, contributor, mess.contributor[index], pad, _case_space),
            _time_cells(e.time, mess.time[index], tz[e.contributor], broken == 2),
            event_types.take(pa.array(e.event_type)),
            _cells(strings.device, e.device, mess.device[index], pad, _case_space),
            _cells(strings.ip, e.ip, mess.ip[index], pad, _ip_variant),
            _cells(strings.payout, e.payout, mess.payout[index], pad, _payout_variant),
            strings.task.take(pa.array(e.task, mask=e.task < 0)),
            user_agents.take(pa.array(strings.device_agent[e.device])),
        ]
        yield columns, broken == 3


def _ahead(items: Iterator[_T]) -> Iterator[_T]:
    """Yield from ``items`` while a worker thread computes the next item (numpy and pyarrow
    release the GIL, so rendering one batch overlaps with writing the previous one)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        upcoming = pool.submit(next, items, None)
        while (item := upcoming.result()) is not None:
            upcoming = pool.submit(next, items, None)
            yield item


# ---------------------------------------------------------------- files


def _write_events(
    path: Path,
    fmt: Format,
    names: Mapping[str, str],
    batches: Iterator[tuple[list[pa.Array], np.ndarray]],
) -> None:
    """Write event batches as Parquet, or as CSV (ragged rows as short or long lines)."""
    header = [names[column] for column in EVENT_COLUMNS]
    if fmt == "parquet":
        schema = pa.schema([(name, pa.string()) for name in header])
        # dictionaries pay off only for the few-valued columns
        repeated = [names[EVENT_TYPE], names[TASK_COLUMN], names[USER_AGENT_COLUMN]]
        with pq.ParquetWriter(path, schema, compression="zstd", use_dictionary=repeated) as writer:
            for columns, _ in batches:
                writer.write_table(pa.table(columns, schema=schema))
        return
    with path.open("wb") as raw, ExitStack() as stack:
        write = raw.write
        if fmt == "csv.gz":  # no file name or time in the header: same bytes every run
            gz = gzip.GzipFile("", "wb", compresslevel=3, fileobj=raw, mtime=0)
            write = stack.enter_context(gz).write
        _write_csv_lines(write, [_csv_cell(pa.array([name])) for name in header], np.zeros(1, bool))
        for columns, ragged in batches:
            _write_csv_lines(write, columns, ragged)


def _write_csv_lines(
    write: Callable[[memoryview], object], cells: list[pa.Array], ragged: np.ndarray
) -> None:
    """Write one CSV line per row of ``cells``, which are quoted already where they must be.

    (Quoting is left to the callers because only the user agents ever need it, and they are
    quoted once in their dictionary instead of row by row.) Ragged rows are cut after four
    fields, or (every other one) written with the last field unquoted -- a user agent's comma
    then splits it -- or, if it has none, with a trailing comma.
    """
    join = {"null_handling": "replace", "null_replacement": ""}
    lines = pc.binary_join_element_wise(*cells, ",", **join)
    if ragged.any():
        where = pa.array(np.flatnonzero(ragged))
        short = pc.binary_join_element_wise(*(c.take(where) for c in cells[:4]), ",", **join)
        last = pc.replace_substring(cells[-1].take(where), '"', "")  # agents hold no quotes
        unquoted = pc.binary_join_element_wise(
            *(c.take(where) for c in cells[:-1]), last, ",", **join
        )
        trailing = pc.binary_join_element_wise(lines.take(where), pa.scalar(""), ",")
        long = pc.if_else(pc.match_substring(last, ","), unquoted, trailing)
        pick_short = _mask(np.arange(len(where)) % 2 == 0)
        lines = pc.replace_with_mask(lines, _mask(ragged), pc.if_else(pick_short, short, long))
    text = pc.binary_join_element_wise(lines, pa.scalar(""), "\n")
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int32)
    first, last_byte = offsets[text.offset], offsets[text.offset + len(text)]
    write(memoryview(text.buffers()[2])[first:last_byte])


def _csv_cell(values: pa.Array) -> pa.Array:
    """Quote a cell (doubling its quotes) when it holds a comma, quote or line break."""
    needs = pc.match_substring_regex(values, '[,"\r\n]')
    quoted = pc.binary_join_element_wise(
        pa.scalar('"'), pc.replace_substring(values, '"', '""'), pa.scalar('"'), ""
    )
    return pc.if_else(needs, quoted, values)


def _write_labels(path: Path, world: _World, strings: _Strings) -> None:
    """``labels.csv``: one row per contributor, by clean contributor id."""
    order = pa.array(strings.contributor_order)
    ring = world.ring
    ring_ids = pa.array(
        [f"R-{RING_TYPES[r.kind]}-{r.number:03d}" for r in world.rings], pa.string()
    )
    ring_types = pa.array([r.kind for r in world.rings], pa.string())
    ring_index = pa.array(ring, mask=ring < 0)
    columns = [
        strings.contributor,
        pa.array(np.where(ring >= 0, "fraud", "benign")),
        ring_ids.take(ring_index),
        ring_types.take(ring_index),
        pa.array(_ROLES).take(pa.array(world.role)),
    ]
    with path.open("wb") as sink:
        _write_csv_lines(sink.write, [pa.array([c]) for c in LABEL_COLUMNS], np.zeros(1, bool))
        _write_csv_lines(sink.write, [c.take(order) for c in columns], np.zeros(world.n, bool))


def _config_toml(names: Mapping[str, str], fmt: Format, seed: int) -> str:
    """The ``[input]`` section of a detect config for the columns written."""
    lines = [
        "# ringfinder detect config for the synthetic events beside it",
        f"# (written by ringfinder.synth.generate, seed {seed}); other sections keep defaults.",
        "[input]",
        f"format = {_toml(fmt.removesuffix('.gz'))}",
        f"contributor = {_toml(names[CONTRIBUTOR])}",
        f"timestamp = {_toml(names[TIME])}",
        f"event_type = {_toml(names[EVENT_TYPE])}",
        f"target = {_toml(names[TASK_COLUMN])}",
    ]
    for kind, kind_config in _DEFAULT_KINDS.items():
        lines += ["", f"[input.kinds.{kind}]", f"column = {_toml(names[kind_config.column])}"]
        lines += [
            f"{key} = {_toml(getattr(kind_config, key))}"
            for key in ("normaliser", "weight", "hub_cap", "strong")
        ]
    return "\n".join(lines) + "\n"


def _toml(value: str | float | bool) -> str:
    """A TOML literal: JSON string escapes are valid TOML basic-string escapes."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, str) else repr(value)
