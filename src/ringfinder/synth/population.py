"""The population: who is in which planted ring or honest lookalike group, and the devices,
IPs, payout accounts, time zones and active periods of every contributor, as integer codes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from ringfinder.errors import ConfigError
from ringfinder.synth.scenario import (
    DEVICE_PLACEHOLDERS,
    IP_PLACEHOLDERS,
    RING_TYPES,
    ROLES,
    Scenario,
    SizeRange,
)

DAY = 86_400
CHANNELS = 5  # channels per contributor: device (range) x IP (range) x weight
NULL = -1

# Device styles, IP styles.
DESKTOP, ANDROID, IOS, DEVICE_PLACEHOLDER = range(4)
V4, V6, IP_PLACEHOLDER = range(3)

# Local hour-of-day activity profile (night low, evening peak): hour h has _HOURLY[h] slots.
_HOURLY = (2, 1, 1, 1, 1, 1, 2, 3, 5, 6, 6, 6, 6, 6, 6, 6, 6, 7, 8, 9, 9, 8, 6, 4)
_HOUR_SLOTS = np.repeat(np.arange(24), _HOURLY)
# Time zones of contributors as UTC offsets in minutes, and their share.
TZ_MINUTES = np.array([-480, -300, -180, 0, 60, 120, 180, 330, 420, 480, 540])
_TZ_SHARE = np.array([6, 12, 8, 10, 22, 10, 4, 12, 6, 6, 4], dtype=np.float64)
_ROLE = {name: code for code, name in enumerate(ROLES)}

# Ring type -> (count knob, size knob, share of ring members when the count is left at None).
_RING_KNOBS = {
    "device_farm": ("device_farms", "device_farm_size", 0.35),
    "payout_consolidation": ("payout_consolidations", "payout_consolidation_size", 0.2),
    "chain": ("chains", "chain_size", 0.15),
    "small_ring": ("small_rings", "small_ring_size", 0.2),
    "lockstep": ("lockstep_rings", "lockstep_size", 0.1),
}


@dataclass(frozen=True)
class Ring:
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


class World:
    """The population: roles, rings, times, channels and payout accounts per contributor.

    A channel is a device code (plus a random offset below its device span) used from an IP
    code (likewise), with a weight; the signup always uses channel 0, which is why channel 0
    holds what characterises the role (the farm devices, the café PC, the chain link).
    """

    def __init__(self, scenario: Scenario, rng: np.random.Generator) -> None:
        self.scenario = s = scenario
        self.rng = rng
        self.t0 = int(np.datetime64(s.start, "s").astype(np.int64))
        self.t_end = self.t0 + s.days * DAY
        self.tasks = s.tasks or max(1000, 2 * s.contributors)
        self.devices = _Codes()
        self.ips = _Codes()
        self.payouts = 0
        # placeholders first, so their codes are their index in the placeholder tuples
        self.devices.new(DEVICE_PLACEHOLDER, len(DEVICE_PLACEHOLDERS))
        self.ips.new(IP_PLACEHOLDER, len(IP_PLACEHOLDERS))

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
        self.ring = np.full(n, NULL, dtype=np.int32)
        self.signup = np.zeros(n, dtype=np.int64)
        self.span_days = np.zeros(n, dtype=np.float64)
        self.tz = rng.choice(len(TZ_MINUTES), size=n, p=_TZ_SHARE / _TZ_SHARE.sum())
        self.payout0 = np.full(n, NULL, dtype=np.int64)
        self.payout1 = np.full(n, NULL, dtype=np.int64)
        self.payout1_at = np.zeros(n, dtype=np.int64)
        self.ch_device = np.zeros((n, CHANNELS), dtype=np.int64)
        self.ch_device_span = np.ones((n, CHANNELS), dtype=np.int64)
        self.ch_ip = np.zeros((n, CHANNELS), dtype=np.int64)
        self.ch_ip_span = np.ones((n, CHANNELS), dtype=np.int64)
        self.ch_weight = np.zeros((n, CHANNELS), dtype=np.float64)
        self.rings: list[Ring] = []
        self.lockstep_rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._next = 0

        self.campus_ips = self.ips.new(V4, len(groups["campus"]))
        self.nat_ips = self.ips.new(V4, len(groups["carrier_nat"]))
        exits = s.vpn_exits if s.vpn_exits is not None else max(5, s.contributors // 2_000)
        self.vpn_ips = self.ips.new(V4, exits)
        self.cafe_ips = self.ips.new(V4, len(groups["cafe"]))
        self.cafe_pcs = self._desktops(len(groups["cafe"]))
        self.proxy_ips = self.ips.new(V4, 60 + s.contributors // 1_000)

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
                self.rings.append(Ring(kind, number))
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
        return self.devices.new(np.where(self.rng.random(count) < 0.55, ANDROID, IOS), count)

    def _desktops(self, count: int) -> np.ndarray:
        return self.devices.new(DESKTOP, count)

    def _mobile_ips(self, count: int, *, nat: bool = True) -> np.ndarray:
        """Mobile IPs: a carrier NAT IP (if ``nat``), else one of their own, often IPv6."""
        rng = self.rng
        share = self.scenario.mobile_nat_rate if nat and len(self.nat_ips) else 0.0
        behind_nat = rng.random(count) < share
        codes = rng.choice(self.nat_ips, size=count) if share else np.empty(count, np.int64)
        own = int((~behind_nat).sum())
        codes[~behind_nat] = self.ips.new(np.where(rng.random(own) < 0.6, V6, V4), own)
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

    def _own_identifiers(self, members: np.ndarray) -> None:
        """A desktop at a home IP, a phone on mobile data and a payout account, all their own."""
        k = len(members)
        self._channel(members, 0, self._desktops(k), self.ips.new(V4, k), 0.6)
        self._channel(members, 1, self._phones(k), self._mobile_ips(k, nat=False), 0.4)
        self.payout0[members] = self._new_payouts(k)

    def _ring_start(self, members: np.ndarray, *, spread_days: float, margin_days: float) -> None:
        """Signups within ``spread_days`` from a random moment, in one time zone."""
        rng = self.rng
        latest = max(1.0, self.scenario.days - margin_days - spread_days)
        start = self.t0 + int(rng.uniform(0, latest) * DAY)
        offsets = np.sort(rng.uniform(0, spread_days * DAY, size=len(members)))
        self.signup[members] = start + offsets.astype(np.int64)
        self.tz[members] = rng.integers(len(TZ_MINUTES))

    # -- fraud rings

    def _device_farm(self, members: np.ndarray) -> None:
        """Burst of signups, 2-5 shared phones, rotating proxies, 1-3 payout accounts."""
        rng, k = self.rng, len(members)
        farm_phones = self.devices.new(ANDROID, int(rng.integers(2, 6)))
        pool = int(rng.integers(5, 31))  # a window of the proxy IPs; farms' windows overlap
        proxy = self.proxy_ips[int(rng.integers(0, len(self.proxy_ips) - pool + 1))]
        self._channel(
            members, 0, farm_phones[0], proxy, 0.85, device_span=len(farm_phones), ip_span=pool
        )
        own = rng.random(k) < 0.25
        own_phones = _new_where(own, self._phones)
        self._channel(members, 1, own_phones, proxy, np.where(own, 0.15, 0.0), ip_span=pool)
        accounts = self._new_payouts(int(rng.integers(1, 4)))
        self.payout0[members] = accounts[np.arange(k) % len(accounts)]
        self._ring_start(members, spread_days=rng.uniform(1, 6) / 24, margin_days=8)
        self.span_days[members] = rng.uniform(3, 21, size=k)

    def _payout_consolidation(self, members: np.ndarray) -> None:
        """Own devices and IPs; payouts switched to 1-2 collectors 2-10 days after signup."""
        rng, k = self.rng, len(members)
        self._own_identifiers(members)
        collectors = self._new_payouts(int(rng.integers(1, 3)))
        self.payout1[members] = collectors[np.arange(k) % len(collectors)]
        self._ring_start(members, spread_days=rng.uniform(1, 7), margin_days=14)
        delay = (rng.uniform(2, 10, size=k) * DAY).astype(np.int64)
        self.payout1_at[members] = self.signup[members] + delay
        self.span_days[members] = rng.uniform(12, 30, size=k)

    def _chain(self, members: np.ndarray) -> None:
        """Member i+1 shares a device, a payout account or an IP with member i, in turn."""
        rng, k = self.rng, len(members)
        devices = self._desktops(k)
        homes = self.ips.new(V4, k)
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
        device = self.devices.new(DESKTOP if rng.random() < 0.5 else ANDROID, 1)
        self._channel(members, 0, device, self.ips.new(V4, 1), 0.75)
        own = rng.random(k) < 0.5
        phones = _new_where(own, self._phones)
        mobile = _new_where(own, partial(self._mobile_ips, nat=False))
        self._channel(members, 1, phones, mobile, np.where(own, 0.25, 0.0))
        self.payout0[members] = self._new_payouts(1)
        self._ring_start(members, spread_days=rng.uniform(0.2, 3), margin_days=10)
        self.span_days[members] = rng.uniform(10, 40, size=k)

    def _lockstep(self, members: np.ndarray) -> None:
        """Own identifiers only; all members submit the same tasks within seconds."""
        rng, s, k = self.rng, self.scenario, len(members)
        self._own_identifiers(members)
        self._ring_start(members, spread_days=rng.uniform(1, 10), margin_days=20)
        self.span_days[members] = rng.uniform(20, 40, size=k)
        low, high = s.lockstep_cosubmissions
        episodes = int(rng.integers(low, high + 1))
        first = int(self.signup[members].max()) + 3600
        last = min(self.t_end - 3600, first + int(self.span_days[members].min() * DAY))
        at = np.sort(rng.integers(first, last, size=episodes))
        jitter = rng.integers(0, 10, size=(k, episodes))
        tasks = np.tile(draw_tasks(rng, episodes, self.tasks), k)
        self.lockstep_rows.append((np.repeat(members, episodes), (at + jitter).ravel(), tasks))

    # -- honest contributors and lookalikes

    def _households(self, sizes: np.ndarray) -> None:
        """2-4 accounts behind one home IP, some on one family computer, own payouts."""
        rng = self.rng
        members = self._take(int(sizes.sum()), "household")
        k = len(members)
        if k == 0:
            return
        household = np.repeat(np.arange(len(sizes)), sizes)
        is_family = rng.random(len(sizes)) < self.scenario.family_computer_rate
        family_pc = _new_where(is_family, self._desktops)
        family, family_pc = is_family[household], family_pc[household]
        self.role[members[family]] = _ROLE["family_computer"]
        first = members[0] + np.r_[0, np.cumsum(sizes)[:-1]]
        homes = self.ips.new(V4, len(sizes))[household]
        phones = self._phones(k)
        own = _new_where(~family & (rng.random(k) < 0.6), self._desktops, phones)
        self._channel(members, 0, np.where(family, family_pc, own), homes, 0.4)
        self._channel(members, 1, phones, homes, 0.35)
        self._channel(members, 2, phones, self._mobile_ips(k), 0.25)
        self.tz[members] = self.tz[first][household]

    def _campus(self, members: np.ndarray, campus_ip: int) -> None:
        """Hundreds of students behind one NAT IP, each with their own devices."""
        k = len(members)
        phones = self._phones(k)
        self._channel(members, 0, self._desktops(k), campus_ip, 0.45)
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
        self._channel(members, 3, phones, self.ips.new(V4, k), 0.15)
        self.tz[members] = self.tz[members[0]]

    def _vpn(self, members: np.ndarray) -> None:
        """A laptop going out through the exits of one VPN provider (ten exits each)."""
        rng, k, exits = self.rng, len(members), len(self.vpn_ips)
        laptops = self._desktops(k)
        provider = rng.integers(0, (exits + 9) // 10, size=k)
        span = np.minimum(10, exits - 10 * provider)
        self._channel(members, 0, laptops, self.vpn_ips[10 * provider], 0.6, ip_span=span)
        self._channel(members, 1, self._phones(k), self._mobile_ips(k), 0.25)
        self._channel(members, 2, laptops, self.ips.new(V4, k), 0.15)

    def _placeholder(self, members: np.ndarray) -> None:
        """Broken clients: a placeholder device id, IP or both on every event."""
        rng, k = self.rng, len(members)
        mode = rng.integers(0, 3, size=k)  # 0 device broken, 1 IP broken, 2 both
        device = rng.integers(len(DEVICE_PLACEHOLDERS), size=k)  # placeholder codes = index
        device[mode == 1] = self._phones(int((mode == 1).sum()))
        ip = rng.integers(len(IP_PLACEHOLDERS), size=k)
        ip[mode == 0] = self.ips.new(V4, int((mode == 0).sum()))
        self._channel(members, 0, device, ip, 1.0)

    def _honest(self, members: np.ndarray) -> None:
        """A phone (and mostly a laptop) at home, the phone also out on mobile data."""
        rng, k = self.rng, len(members)
        phones = self._phones(k)
        homes = self.ips.new(V4, k)
        desktops = _new_where(rng.random(k) < 0.7, self._desktops, phones)
        self._channel(members, 0, desktops, homes, 0.45)
        self._channel(members, 1, phones, homes, 0.25)
        self._channel(members, 2, phones, self._mobile_ips(k), 0.3)

    def _benign_times(self, members: np.ndarray) -> None:
        """Signups over the window, activity over weeks, an occasional new payout account."""
        rng, s, k = self.rng, self.scenario, len(members)
        day = rng.integers(0, s.days - 3, size=k)
        signup = local_times(rng, self.t0, day, self.tz[members])
        self.signup[members] = np.clip(signup, self.t0, self.t_end - 3 * DAY)
        left = (self.t_end - self.signup[members]) / DAY
        self.span_days[members] = np.clip(rng.lognormal(np.log(20), 0.8, size=k), 1, left)
        self.payout0[members] = self._new_payouts(k)
        changes = members[rng.random(k) < s.payout_change_rate]
        self.payout1[changes] = self._new_payouts(len(changes))
        delay = rng.uniform(1, np.maximum(1.5, self.span_days[changes])) * DAY
        self.payout1_at[changes] = self.signup[changes] + delay.astype(np.int64)


def _new_where(
    has: np.ndarray, make: Callable[[int], np.ndarray], otherwise: np.ndarray | int = 0
) -> np.ndarray:
    """``make(count)`` new codes where ``has``, ``otherwise`` elsewhere."""
    codes = np.array(np.broadcast_to(otherwise, has.shape), dtype=np.int64)
    codes[has] = make(int(has.sum()))
    return codes


def local_times(rng: np.random.Generator, t0: int, day: np.ndarray, tz: np.ndarray) -> np.ndarray:
    """Epoch seconds of a diurnal local time of day on local ``day`` (days after ``t0``)."""
    # one integer per event: which of the 120 hour-slots of _HOURLY, and the second in it
    draw = rng.integers(0, len(_HOUR_SLOTS) * 3600, size=len(day))
    second_of_day = _HOUR_SLOTS[draw // 3600] * 3600 + draw % 3600
    return t0 + day.astype(np.int64) * DAY + second_of_day - TZ_MINUTES[tz] * 60


def draw_tasks(rng: np.random.Generator, count: int, pool: int) -> np.ndarray:
    """Task numbers with Zipf-like popularity: rank r has weight (r + 50) ** -1.1."""
    low, high = 50.0**-0.1, (pool + 50.0) ** -0.1
    ranks = (low + rng.random(count) * (high - low)) ** -10.0 - 50.0
    return np.clip(ranks.astype(np.int64), 0, pool - 1)
