"""Identifier strings: contributor ids, device ids with their user agents, IPv4 and IPv6
addresses, IBANs and task ids, rendered from integer codes with numpy and pyarrow."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ringfinder.synth.population import (
    ANDROID,
    DESKTOP,
    DEVICE_PLACEHOLDER,
    IOS,
    IP_PLACEHOLDER,
    V4,
    V6,
    World,
)
from ringfinder.synth.scenario import DEVICE_PLACEHOLDERS, IP_PLACEHOLDERS

_USER_AGENTS = {
    DESKTOP: (
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
    ANDROID: (
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
    IOS: (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
        "like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
        "like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
        "Marketplace/5.12.1 (iPhone; iOS 18.1; Scale/3.00)",
    ),
    DEVICE_PLACEHOLDER: ("okhttp/4.12.0", "Marketplace/4.0.0 (unknown)"),
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


@dataclass(frozen=True)
class Strings:
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


def render_identifiers(world: World, rng: np.random.Generator) -> Strings:
    """Render contributor ids, devices, IPs, payout accounts and tasks to strings."""
    numbers = rng.choice(16**8, size=world.n, replace=False)
    contributor = fixed_strings(_prefixed(b"c_", _hex_chars(numbers, 8)))
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
            DESKTOP: lambda k: _hex_chars(rng.integers(0, 256, size=(k, 16), dtype=np.uint8)),
            ANDROID: lambda k: _hex_chars(rng.integers(0, 256, size=(k, 8), dtype=np.uint8)),
            IOS: lambda k: _uuid_chars(rng.integers(0, 256, size=(k, 16), dtype=np.uint8)),
            DEVICE_PLACEHOLDER: lambda k: pa.array(DEVICE_PLACEHOLDERS[:k]),
        },
    )
    ip_styles = world.ips.styles()
    ip = _by_style(
        ip_styles,
        {
            V4: lambda k: _ipv4_strings(rng, k),
            V6: lambda k: _ipv6_chars(rng, k),
            IP_PLACEHOLDER: lambda k: pa.array(IP_PLACEHOLDERS[:k]),
        },
    )
    width = max(6, len(str(world.tasks - 1)))
    task = fixed_strings(_prefixed(b"t-", digit_chars(np.arange(world.tasks), width)))
    return Strings(
        contributor=contributor,
        contributor_order=contributor_order,
        device=device,
        device_agent=device_agent,
        user_agent=pa.array(agents),
        ip=ip,
        ip_is_v4=ip_styles == V4,
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
            parts.append(strings if isinstance(strings, pa.Array) else fixed_strings(strings))
            positions.append(where)
    inverse = np.empty(len(styles), dtype=np.int64)
    inverse[np.concatenate(positions)] = np.arange(len(styles))
    return pa.concat_arrays(parts).take(pa.array(inverse))


def fixed_strings(chars: np.ndarray) -> pa.Array:
    """One ASCII string per row of a ``(n, width)`` uint8 matrix, without copying twice."""
    count, width = chars.shape
    offsets = np.arange(0, (count + 1) * width, width, dtype=np.int64)
    data = pa.py_buffer(np.ascontiguousarray(chars))
    if offsets[-1] < 2**31:
        return pa.StringArray.from_buffers(count, pa.py_buffer(offsets.astype(np.int32)), data)
    return pa.LargeStringArray.from_buffers(count, pa.py_buffer(offsets), data)


def literal_chars(text: bytes, count: int) -> np.ndarray:
    """``text`` on each of ``count`` rows, as a read-only ``(count, len(text))`` uint8 view."""
    return np.broadcast_to(np.frombuffer(text, np.uint8), (count, len(text)))


def _prefixed(prefix: bytes, chars: np.ndarray) -> np.ndarray:
    return np.hstack([literal_chars(prefix, len(chars)), chars])


def _hex_chars(values: np.ndarray, digits: int | None = None, *, upper: bool = False) -> np.ndarray:
    """Hex digits of integers (``digits`` wide) or of the bytes of a uint8 matrix."""
    alphabet = _HEX_UPPER if upper else _HEX_LOWER
    if digits is None:  # a (n, k) byte matrix -> (n, 2k) hex digits
        return alphabet[np.stack([values >> 4, values & 15], axis=2).reshape(len(values), -1)]
    shifts = 4 * np.arange(digits - 1, -1, -1, dtype=np.uint64)
    return alphabet[(values.astype(np.uint64)[:, None] >> shifts) & np.uint64(15)]


def digit_chars(values: np.ndarray, width: int) -> np.ndarray:
    """Zero-padded decimal digits of non-negative integers."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return (48 + (values.astype(np.int64)[:, None] // powers) % 10).astype(np.uint8)


def _uuid_chars(raw: np.ndarray) -> np.ndarray:
    """Upper-case version-4 UUIDs (as iOS vendor ids are written) from 16 random bytes."""
    raw = raw.copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    digits = _hex_chars(raw, upper=True)
    dash = literal_chars(b"-", len(raw))
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
    render = {
        index: partial(_iban_chars, rng, country=code, pattern=pattern, banks=banks)
        for index, (code, _, pattern, banks) in enumerate(_IBAN_LAYOUTS)
    }
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
    tail = literal_chars(country.encode() + b"00", count)
    remainder = np.zeros(count, dtype=np.int64)
    for column in np.hstack([bban, tail]).T:
        letter = column >= ord("A")
        value = np.where(letter, column.astype(np.int64) - 55, column.astype(np.int64) - 48)
        remainder = (remainder * np.where(letter, 100, 10) + value) % 97
    head = literal_chars(country.encode(), count)
    return np.hstack([head, digit_chars(98 - remainder, 2), bban])
