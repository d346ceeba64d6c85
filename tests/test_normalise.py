"""Identifier normalisers: known answers, and properties checked with hypothesis."""

from __future__ import annotations

import ipaddress
import string
from collections.abc import Iterator, Sequence
from typing import get_args

import duckdb
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ringfinder.config import DEFAULT_PLACEHOLDERS, InputConfig, Normaliser
from ringfinder.normalise import (
    create_identifier_map,
    mapped_sql,
    normalise_query,
    normalise_values,
    register_functions,
)
from ringfinder.privacy import NO_PRIVACY, Privacy, pseudonym, register_pseudonym_function

NORMALISERS: tuple[Normaliser, ...] = get_args(Normaliser)
EXAMPLES = 20  # per normaliser and property


@pytest.fixture(scope="module")
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    """One connection for the property tests; normalise_values opens one per call (slow)."""
    connection = duckdb.connect()
    register_functions(connection)
    yield connection
    connection.close()


def _load_values(con: duckdb.DuckDBPyConnection, values: Sequence[str | None]) -> None:
    """Table ``v``: the values (``x``) numbered by position (``i``)."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE v AS SELECT unnest($v) AS x, generate_subscripts($v, 1) AS i",
        {"v": list(values)},
    )


def normalise_batch(
    con: duckdb.DuckDBPyConnection,
    normaliser: Normaliser,
    values: Sequence[str | None],
    config: InputConfig | None = None,
) -> list[str | None]:
    """What ``normalise_values`` does (the SQL that ingest runs), on a shared connection."""
    _load_values(con, values)
    mapping = normalise_query(normaliser, "v", "x", config or InputConfig())
    rows = con.execute(
        f"SELECT m.norm FROM v LEFT JOIN ({mapping}) m ON m.raw = v.x ORDER BY v.i"
    ).fetchall()
    return [row[0] for row in rows]


def mapped_batch(
    con: duckdb.DuckDBPyConnection,
    normaliser: Normaliser,
    values: Sequence[str | None],
    privacy: Privacy = NO_PRIVACY,
) -> list[str | None]:
    """The values through the identifier map the graph builds, which lists only changed values."""
    _load_values(con, values)
    create_identifier_map(con, "rf_test_map", "k", normaliser, "v", "x", InputConfig(), privacy)
    rows = con.execute(
        f"SELECT {mapped_sql('m', 'v.x')} FROM v LEFT JOIN rf_test_map m ON m.raw = v.x "
        "ORDER BY v.i"
    ).fetchall()
    return [row[0] for row in rows]


# --- known answers ------------------------------------------------------------------------


IP_ANSWERS = dict(
    [
        ("1.2.3.4", "1.2.3.4"),
        ("  1.2.3.4\t", "1.2.3.4"),
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
        ("::ffff:1.2.3.4", "1.2.3.4"),
        ("::FFFF:1.2.3.4", "1.2.3.4"),
        ("0:0:0:0:0:ffff:1.2.3.4", "1.2.3.4"),
        ("::ffff:c000:280", "192.0.2.128"),
        ("1.2.3.4:8080", "1.2.3.4"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("010.001.002.003", "10.1.2.3"),
        ("garbage", None),
        ("1.2.3", None),
        ("1.2.3.4.5", None),
        ("256.1.1.1", None),
        ("1.2.3.999", None),
        ("2001:db8::g", None),
        ("1:2:3:4:5:6:7:8:9", None),  # looks like IPv6 but is not
        ("1:", None),
        (":::", None),
        # Canonical already, or one step from it: kept, or compressed as RFC 5952 says.
        ("2a01:e0a3:2a1d:cc4d:9b3f:6105:9f03:6a9f", "2a01:e0a3:2a1d:cc4d:9b3f:6105:9f03:6a9f"),
        ("2001:db8:1:1:1:1:1::", "2001:db8:1:1:1:1:1:0"),  # :: for one group is not canonical
        ("1::2:3:4:5:6:7", "1:0:2:3:4:5:6:7"),
        ("::2:3:4:5:6:7:8", "0:2:3:4:5:6:7:8"),
        ("1:0:0:2::3", "1:0:0:2::3"),  # the longest zero run goes
        ("1:0:0:2:0:0:0:3", "1:0:0:2::3"),
        ("1:0:0:2::3:4", "1::2:0:0:3:4"),  # of two as long, the first
        ("::ffff:a01:203", "10.1.2.3"),
        ("1:2:3:4:5:6:7", None),
        ("12345::1", None),
        ("::1::2", None),
    ]
)


def test_ip_known_answers() -> None:
    raw = list(IP_ANSWERS)
    assert dict(zip(raw, normalise_values("ip", raw), strict=True)) == IP_ANSWERS


def test_ip_prefix_is_slash_24_for_ipv4_and_slash_64_for_ipv6() -> None:
    raw = [
        "1.2.3.4",
        "1.2.3.250",
        "::ffff:10.9.8.7",
        "2001:db8:1:2:3:4:5:6",
        "[2001:DB8:1:2::1]:80",
        "bad",
    ]
    assert normalise_values("ip_prefix", raw) == [
        "1.2.3.0/24",
        "1.2.3.0/24",
        "10.9.8.0/24",
        "2001:db8:1:2::/64",
        "2001:db8:1:2::/64",
        None,
    ]


def test_device_is_trimmed_and_case_folded() -> None:
    assert normalise_values("device", ["  AbC-123 ", "abc-123", "ABC-123"]) == ["abc-123"] * 3


def test_unicode_spaces_at_the_edges_are_trimmed_and_inner_text_kept() -> None:
    raw = ["\u00a0abc\u3000", "\ufeffabc\u2003", "abc", "\u00a0é x\u00a0"]
    assert normalise_values("text", raw) == ["abc", "abc", "abc", "é x"]


def test_payment_drops_spaces_and_punctuation_and_upper_cases() -> None:
    raw = ["gb12 3456-7890.ab", "GB12-3456-7890-AB", " gb12/3456/7890/ab "]
    assert normalise_values("payment", raw) == ["GB1234567890AB"] * 3


def test_email_lower_cases_and_folds_gmail_dots_and_plus_tags() -> None:
    raw = [
        "John.Doe+ringA@Gmail.com",
        "johndoe@gmail.com",
        "J.O.H.N.doe@googlemail.com",
        "John.Doe+x@Example.com",
        "not-an-email",
        "a@b",
    ]
    assert normalise_values("email", raw) == [
        "johndoe@gmail.com",
        "johndoe@gmail.com",
        "johndoe@googlemail.com",
        "john.doe@example.com",
        None,
        None,
    ]


def test_email_keeps_plus_tags_when_configured() -> None:
    config = InputConfig(email_strip_plus=False, email_dotless_domains=[])
    assert normalise_values("email", ["A.B+tag@gmail.com"], config) == ["a.b+tag@gmail.com"]


PLACEHOLDERS = [
    "",
    "   ",
    "\t",
    "unknown",
    "UNKNOWN",
    " Null ",
    "none",
    "0.0.0.0",
    "00000000-0000-0000-0000-000000000000",
    "00:00:00:00:00:00",
    None,
]


@pytest.mark.parametrize("normaliser", NORMALISERS)
def test_placeholders_become_none(normaliser: Normaliser, con: duckdb.DuckDBPyConnection) -> None:
    out = normalise_batch(con, normaliser, PLACEHOLDERS)
    assert dict(zip(PLACEHOLDERS, out, strict=True)) == dict.fromkeys(PLACEHOLDERS)


def test_only_zeros_and_separators_is_a_placeholder_whatever_comes_first() -> None:
    zero_like = ["0", "-", ".", "_", ":", "-0-", "._:", "0 0", "_000", ":00:00"]
    near_misses = ["0a", "-1", "_x", ".5", "00:00:01", ":a:", "a000", "10"]
    out = normalise_values("device", zero_like + near_misses)
    assert out == [None] * len(zero_like) + near_misses


def test_configured_placeholder_becomes_none() -> None:
    config = InputConfig(placeholders=["shared-kiosk"])
    assert normalise_values("device", ["Shared-Kiosk", "kiosk-2", "unknown"], config) == [
        None,
        "kiosk-2",
        "unknown",  # the custom list replaces the default one
    ]


@pytest.mark.parametrize(
    ("normaliser", "raw"),
    [
        ("payment", ["N-A", "unknown.", "(0)"]),  # would become "NA", "UNKNOWN", "0"
        ("ip", ["127.000.000.001", "::ffff:0.0.0.0", "0.0.0.0:80", "[::]:443"]),
        ("ip_prefix", ["0.0.0.0:80", "0.0.0.0/24"]),
        ("phone", ["(000) 000"]),
        ("email", ["+tag@gmail.com", ".@gmail.com"]),  # no local part left
    ],
)
def test_a_value_that_normalises_to_a_placeholder_becomes_none(
    normaliser: Normaliser, raw: list[str]
) -> None:
    assert normalise_values(normaliser, raw) == [None] * len(raw)


def test_batch_helper_agrees_with_normalise_values(con: duckdb.DuckDBPyConnection) -> None:
    raw = [
        "1.2.3.4:80",
        "[::1]:5",
        "Ab C",
        "x@Gmail.com",
        "+44 (0) 20-7946-0958",
        None,
        "unknown",
        "é",
    ]
    for normaliser in NORMALISERS:
        assert normalise_batch(con, normaliser, raw) == normalise_values(normaliser, raw)


# Values the map's shortcut (left out: already normal) must see through, and ones it may skip.
MAP_EXAMPLES = [
    *PLACEHOLDERS,
    "127.0.0.1",
    "1.2.3.4",
    "01.2.3.4",
    "dev-1",
    "DEV-1",
    " dev-1",
    "0000",
    "ABC123",
    "abc123",
    "AB 12",
    "NA",
    "0",
]


def test_identifier_map_with_a_key_turns_normal_values_into_tokens(
    con: duckdb.DuckDBPyConnection,
) -> None:
    key = b"k" * 32
    register_pseudonym_function(con, key)
    values = ["1.2.3.4", "0.0.0.0"]
    assert mapped_batch(con, "ip", values, Privacy(key=key)) == [
        pseudonym(key, "k", "1.2.3.4"),
        None,
    ]


# --- properties ---------------------------------------------------------------------------

identifier_like = st.one_of(
    st.text(max_size=24),
    st.text(alphabet=string.hexdigits + ":.[]%+@-_/ ", max_size=40),
    st.ip_addresses().map(str),
    st.tuples(st.ip_addresses(v=4), st.integers(0, 65535)).map(lambda t: f"{t[0]}:{t[1]}"),
    st.tuples(st.ip_addresses(v=6), st.integers(0, 65535)).map(lambda t: f"[{t[0]}]:{t[1]}"),
    st.tuples(st.text(max_size=8), st.sampled_from(["gmail.com", "GoogleMail.com", "x.org"])).map(
        "@".join
    ),
    st.sampled_from(DEFAULT_PLACEHOLDERS),
    st.none(),
)
value_lists = st.lists(identifier_like, min_size=1, max_size=60)


# Each example runs one or two queries: no deadline, and generation may look slow beside them.
PROPERTY = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.mark.parametrize("normaliser", NORMALISERS)
def test_no_crash_on_arbitrary_text(normaliser: Normaliser, con: duckdb.DuckDBPyConnection) -> None:
    @PROPERTY
    @given(values=value_lists)
    def check(values: list[str | None]) -> None:
        out = normalise_batch(con, normaliser, values)
        assert len(out) == len(values)
        assert all(v is None or (isinstance(v, str) and v != "") for v in out)

    check()


@pytest.mark.parametrize("normaliser", NORMALISERS)
def test_normalising_twice_changes_nothing(
    normaliser: Normaliser, con: duckdb.DuckDBPyConnection
) -> None:
    @PROPERTY
    @given(values=value_lists)
    def check(values: list[str | None]) -> None:
        once = normalise_batch(con, normaliser, values)
        twice = normalise_batch(con, normaliser, once)
        assert twice == once

    check()


@pytest.mark.parametrize("normaliser", NORMALISERS)
def test_identifier_map_agrees_with_normalising_every_value(
    normaliser: Normaliser, con: duckdb.DuckDBPyConnection
) -> None:
    @PROPERTY
    @given(values=value_lists)
    @example(values=MAP_EXAMPLES)
    def check(values: list[str | None]) -> None:
        assert mapped_batch(con, normaliser, values) == normalise_batch(con, normaliser, values)

    check()


def _python_canonical(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """The reference: ``ipaddress`` text, IPv4-mapped IPv6 as IPv4, placeholders as None."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    text = str(address)
    return None if text in DEFAULT_PLACEHOLDERS else text


@PROPERTY
@given(
    addresses=st.lists(st.ip_addresses(), min_size=1, max_size=60),
    spelling=st.sampled_from(["compressed", "exploded", "upper"]),
)
def test_ip_matches_python_ipaddress(
    addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address],
    spelling: str,
    con: duckdb.DuckDBPyConnection,
) -> None:
    if spelling == "compressed":
        raw = [str(a) for a in addresses]
    elif spelling == "exploded":
        raw = [a.exploded for a in addresses]
    else:
        raw = [str(a).upper() for a in addresses]
    assert normalise_batch(con, "ip", raw) == [_python_canonical(a) for a in addresses]
