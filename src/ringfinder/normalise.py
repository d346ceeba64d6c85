"""Identifier normalisers, one per kind, as DuckDB SQL expressions.

Each normaliser turns a raw text column into a canonical identifier or NULL. A NULL means
"no identifier": garbage, or a placeholder such as ``unknown`` or an all-zero id. Placeholders
never link people. IPv6 canonical form needs the ``ipaddress`` module, so it runs in a Python
UDF that DuckDB calls only for the rare values that contain a colon.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache

import duckdb
import pyarrow as pa

from ringfinder.config import InputConfig, Normaliser
from ringfinder.privacy import NO_PRIVACY, PSEUDONYM_FUNCTION, Privacy

IPV6_FUNCTION = "rf_ipv6"
IPV6_PREFIX_FUNCTION = "rf_ipv6_prefix"
IPV4_MAPPED_PREFIX = bytes(10) + b"\xff\xff"
# One to three digits worth at most 255 (leading zeros allowed: 010 is 10).
IPV4_OCTET = r"(?:[01]?\d?\d|2[0-4]\d|25[0-5])"
IPV4_PATTERN = rf"^{IPV4_OCTET}\.{IPV4_OCTET}\.{IPV4_OCTET}\.{IPV4_OCTET}$"
# An octet as canonical text writes: no leading zero. Most addresses are already so.
CANONICAL_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
CANONICAL_IPV4 = rf"{CANONICAL_OCTET}(?:\.{CANONICAL_OCTET}){{3}}"


def _canonical_ipv6_pattern() -> str:
    """A regular expression for IPv6 text that is canonical (RFC 5952) and has no zero group.

    Eight groups, or a ``::`` standing for two or more zero groups (the only zero run, so the
    longest); no group with a leading zero. Most IPv6 addresses in logs are written so, and
    matching them in SQL spares the Python helper (10x the cost) all but the rest.
    """
    group = "[1-9a-f][0-9a-f]{0,3}"

    def groups(n: int) -> str:
        return "" if n == 0 else f"{group}(?::{group}){{{n - 1}}}"

    forms = [groups(8)] + [
        f"{groups(left)}::{groups(right)}" for left in range(7) for right in range(7 - left)
    ]
    return "|".join(f"(?:{form})" for form in forms)


CANONICAL_IPV6 = _canonical_ipv6_pattern()
# DuckDB's one-argument trim() strips spaces only; identifiers also come with tabs, newlines
# and, pasted from web pages and spreadsheets, Unicode spaces (no-break, em, ideographic, BOM).
WHITESPACE = (
    " \t\n\v\f\r\x85\xa0\u1680"
    + "".join(map(chr, range(0x2000, 0x200C)))
    + "\u2028\u2029\u202f\u205f\u3000\ufeff"
)
_WHITESPACE_CLASS = "[" + "".join(f"\\x{{{ord(c):X}}}" for c in WHITESPACE) + "]"
EDGE_WHITESPACE = rf"^{_WHITESPACE_CLASS}+|{_WHITESPACE_CLASS}+$"


def sql_literal(value: str) -> str:
    """Quote a string as a SQL literal."""
    return "'" + value.replace("'", "''") + "'"


def sql_identifier(name: str) -> str:
    """Quote a column name for SQL."""
    return '"' + name.replace('"', '""') + '"'


def sql_trim(expr: str) -> str:
    """SQL that strips leading and trailing whitespace (ASCII and Unicode spaces) from ``expr``.

    Most values have none, and two character tests are five times cheaper than trimming
    with a character set, so only the rest go through the regular expression. The last
    character is taken by index: ``right(x, 1)`` counts every character of a long value first.
    """
    return (
        f"(CASE WHEN {_no_edge_whitespace(expr)} THEN {expr} "
        f"ELSE regexp_replace({expr}, '{EDGE_WHITESPACE}', '', 'g') END)"
    )


def _no_edge_whitespace(expr: str) -> str:
    """SQL: ``expr`` starts and ends with a printable ASCII character, so it has no whitespace
    to trim; the regular expression looks at the rest (a non-ASCII edge may be a Unicode space)."""
    return f"ascii({expr}) BETWEEN 33 AND 126 AND ascii(({expr})[-1]) BETWEEN 33 AND 126"


def canonical_ipv6(value: str | None) -> str | None:
    """Canonical text of an IPv6 address; an IPv4-mapped address becomes its IPv4 form.

    The C library's inet_pton/inet_ntop write RFC 5952 text (lower case, longest zero run
    compressed) many times faster than ``ipaddress``; the rare forms they print with an
    embedded dotted quad go through ``ipaddress``, which prints them in hex.
    """
    if value is None:
        return None
    try:
        packed = socket.inet_pton(socket.AF_INET6, value)
    except (OSError, ValueError):
        return None
    if packed[:12] == IPV4_MAPPED_PREFIX:
        return socket.inet_ntop(socket.AF_INET, packed[12:])
    text = socket.inet_ntop(socket.AF_INET6, packed)
    return ipaddress.IPv6Address(packed).compressed if "." in text else text


@lru_cache(maxsize=65536)
def ipv6_prefix(value: str | None) -> str | None:
    """The /64 network of a canonical IPv6 address (IPv4 values are handled in SQL)."""
    if value is None:
        return None
    try:
        return str(ipaddress.IPv6Network((value, 64), strict=False))
    except ValueError:
        return None


def _vectorised(function: Callable[[str | None], str | None]) -> Callable[[pa.Array], pa.Array]:
    """Wrap a one-value helper for DuckDB's Arrow UDFs: one Python call per batch, not per row."""

    def batch(values: pa.Array) -> pa.Array:
        return pa.array([function(v) for v in values.to_pylist()], type=pa.string())

    return batch


def register_functions(con: duckdb.DuckDBPyConnection) -> None:
    """Make the Python helpers that the SQL normalisers call known to ``con``."""
    for name, function in ((IPV6_FUNCTION, canonical_ipv6), (IPV6_PREFIX_FUNCTION, ipv6_prefix)):
        # Already registered on this connection: nothing to do.
        with contextlib.suppress(duckdb.CatalogException):
            # "special": the helpers return NULL for text that is not an address; with the
            # default handling DuckDB raises on any NULL a UDF returns. (The enum for it moved
            # between DuckDB releases; the string works in all of them.)
            con.create_function(  # type: ignore[call-overload]
                name,
                _vectorised(function),
                ["VARCHAR"],
                "VARCHAR",
                type="arrow",
                null_handling="special",
                side_effects=False,
            )


def _ip_query(values: str) -> str:
    """Canonical IP: strip brackets, ports and zone ids; IPv4-mapped IPv6 to IPv4; else NULL.

    Staged in subqueries so that each regular expression runs once per value; plain
    dotted-quad values (the vast majority) skip the clean-up expressions, and canonical ones
    (no leading zeros) skip splitting into octets. IPv6 text already canonical (without an
    IPv4-mapped prefix, which becomes IPv4) is kept as it is; the rest goes to the helper.
    """
    cleaned = "regexp_replace(f, '^\\[([^\\]]*)\\](:\\d+)?$', '\\1')"  # [v6]:port
    cleaned = f"regexp_replace({cleaned}, '^(\\d+\\.\\d+\\.\\d+\\.\\d+):\\d+$', '\\1')"  # v4:port
    cleaned = f"regexp_replace({cleaned}, '%.*$', '')"  # zone id
    cleaned = (
        f"regexp_replace({cleaned}, "
        "'^(?:0{1,4}:){0,5}:?(?:0{0,4}:)?ffff:(\\d+\\.\\d+\\.\\d+\\.\\d+)$', '\\1')"
    )
    return f"""
    SELECT raw, placeholder, CASE
        WHEN canonical THEN s
        WHEN octets IS NOT NULL THEN
            CASE WHEN list_bool_and(list_transform(octets, lambda o: o <= 255))
            THEN array_to_string(octets, '.') END
        WHEN regexp_full_match(s, '{CANONICAL_IPV6}') AND NOT starts_with(s, '::ffff:') THEN s
        WHEN contains(s, ':') AND regexp_full_match(s, '[0-9a-f:.]+') THEN {IPV6_FUNCTION}(s)
        END AS norm
    FROM (
        SELECT *, CASE WHEN NOT canonical AND regexp_full_match(s, '{IPV4_PATTERN[1:-1]}')
            THEN list_transform(string_split(s, '.'), lambda o: CAST(o AS INTEGER)) END AS octets
        FROM (
            SELECT *, regexp_full_match(s, '{CANONICAL_IPV4}') AS canonical FROM (
                SELECT *, CASE WHEN regexp_full_match(f, '[0-9.]+') THEN f ELSE {cleaned} END AS s
                FROM {values}
            )
        )
    )"""


def _ip_prefix_query(values: str, placeholders: str) -> str:
    """The /24 (IPv4) or /64 (IPv6) network of an address: a weaker kind than the address.

    A value that already is a network (``1.2.3.0/24``) is read as its address, so normalising
    twice changes nothing. An address that is a placeholder has no network, and a network whose
    own address is a placeholder (``0.0.0.0/24``, ``::/64``) is a placeholder too.
    """
    address = "regexp_replace(f, '/\\d{1,3}$', '')"
    addresses = f"(SELECT raw, t, {address} AS f, placeholder FROM {values})"
    network_address = "regexp_replace(norm, '/\\d+$', '')"
    return f"""
    SELECT raw, placeholder OR {_is_placeholder(network_address, placeholders)} AS placeholder, norm
    FROM (
        SELECT raw, placeholder OR {_is_placeholder("norm", placeholders)} AS placeholder,
            CASE WHEN contains(norm, ':') THEN {IPV6_PREFIX_FUNCTION}(norm)
            ELSE regexp_replace(norm, '\\.\\d+$', '.0/24') END AS norm
        FROM ({_ip_query(addresses)})
    )"""


def _email_sql(config: InputConfig) -> str:
    local = "split_part(f, '@', 1)"
    domain = "split_part(f, '@', 2)"
    if config.email_strip_plus:
        local = f"split_part({local}, '+', 1)"
    if config.email_dotless_domains:
        domains = ", ".join(sql_literal(d.lower()) for d in config.email_dotless_domains)
        local = (
            f"(CASE WHEN {domain} IN ({domains}) THEN replace({local}, '.', '') ELSE {local} END)"
        )
    valid = "regexp_full_match(f, '[^@\\s]+@[^@\\s]+\\.[^@\\s]+')"
    # The local part can end up empty ("+tag@gmail.com"): that is no address.
    return f"(CASE WHEN {valid} AND {local} <> '' THEN {local} || '@' || {domain} END)"


def _simple_sql(normaliser: Normaliser, config: InputConfig) -> str:
    """Normalisers that are one expression over ``t`` (trimmed) and ``f`` (trimmed, case-folded)."""
    if normaliser == "device":
        return "f"
    if normaliser == "payment":
        return "upper(regexp_replace(t, '[^0-9A-Za-z]', '', 'g'))"
    if normaliser == "email":
        return _email_sql(config)
    if normaliser == "phone":
        digits = "regexp_replace(t, '[^0-9]', '', 'g')"
        return f"(CASE WHEN length({digits}) >= 6 THEN {digits} END)"
    return "t"


# Placeholders made only of zeros and separators ("0000", "00:00:00", "0.0"), and the
# code points of those characters (0 is the empty text's).
ZERO_LIKE = "0-:._ "
ZERO_LIKE_FIRST = ", ".join(str(c) for c in sorted({0, *map(ord, ZERO_LIKE)}))


def placeholder_list_sql(config: InputConfig) -> str:
    """The configured placeholders, trimmed and case-folded, as an SQL ``IN`` list."""
    return ", ".join(sql_literal(p.strip().lower()) for p in config.placeholders) or "NULL"


def _is_placeholder(column: str, placeholders: str) -> str:
    """SQL: ``column`` (trimmed, case-folded text) is a placeholder, empty or only zeros.

    Trimming with a character set costs more than the rest of a device's normalising; the
    CASE tries it only on text that starts with one of the characters (a 1.8M-value check at
    10M events: 0.34 → 0.08 s).
    """
    return (
        f"({column} IN ({placeholders}) OR CASE WHEN ascii({column}) IN ({ZERO_LIKE_FIRST}) "
        f"THEN ltrim({column}, '{ZERO_LIKE}') = '' ELSE false END)"
    )


def _already_normal(normaliser: Normaliser, column: str, placeholders: str) -> str | None:
    """SQL: ``column`` is in its normal form for certain, told by one cheap test, or ``None``.

    A dotted quad without leading zeros is a canonical IP; lower-case text without edge
    whitespace is a normal device id; upper-case letters and digits a normal payout account;
    each unless it is a placeholder.
    """
    if normaliser == "ip":
        return (
            f"regexp_full_match({column}, '{CANONICAL_IPV4}') "
            f"AND NOT {_is_placeholder(column, placeholders)}"
        )
    if normaliser == "device":
        return (
            f"{_no_edge_whitespace(column)} AND lower({column}) = {column} "
            f"AND NOT {_is_placeholder(column, placeholders)}"
        )
    if normaliser == "payment":
        return (
            f"regexp_full_match({column}, '[0-9A-Z]+') "
            f"AND NOT {_is_placeholder(f'lower({column})', placeholders)}"
        )
    return None


def normalise_query(
    normaliser: Normaliser,
    source: str,
    column: str,
    config: InputConfig,
    *,
    changed_only: bool = False,
) -> str:
    """Query mapping each distinct raw value of ``source.column`` to its normal form (or NULL).

    Normalising distinct values, not rows, does the work once per identifier. The raw value and
    the normal form are both checked for placeholders: normalising can make one (``N-A`` → ``NA``,
    ``127.000.000.001`` → ``127.0.0.1``). With ``changed_only``, values that one cheap test shows
    to be normal already are left out (most are): at 30M events the bench's three maps took
    4.0 s instead of 6.2 s.
    """
    placeholders = placeholder_list_sql(config)
    normal = _already_normal(normaliser, "raw", placeholders) if changed_only else None
    wanted = f"WHERE NOT ({normal})" if normal else ""
    # MATERIALIZED: inlined, the trimmed and folded text and the normal form were computed
    # again for every use of them; so the device and payment maps at 10M take half the time.
    cte = f"""WITH rf_values AS MATERIALIZED (
        SELECT raw, t, f, {_is_placeholder("f", placeholders)} AS placeholder
        FROM (SELECT raw, {sql_trim("raw")} AS t, lower({sql_trim("raw")}) AS f
              FROM (SELECT DISTINCT {column} AS raw FROM {source} WHERE {column} IS NOT NULL)
              {wanted})
    )"""
    values = "rf_values"  # the CTE above
    if normaliser == "ip":
        inner = _ip_query(values)
    elif normaliser == "ip_prefix":
        inner = _ip_prefix_query(values, placeholders)
    else:
        inner = f"SELECT raw, placeholder, {_simple_sql(normaliser, config)} AS norm FROM {values}"
    # A device's normal form is the folded text itself, checked already.
    out_placeholder = (
        "false" if normaliser == "device" else _is_placeholder("lower(norm)", placeholders)
    )
    return (
        f"{cte}, rf_normal AS MATERIALIZED ({inner}) "
        f"SELECT raw, CASE WHEN placeholder OR {out_placeholder} THEN NULL ELSE norm END AS norm "
        "FROM rf_normal"
    )


def normalise_values(
    normaliser: Normaliser, values: Iterable[str | None], config: InputConfig | None = None
) -> list[str | None]:
    """Normalise a list of raw values with the same SQL that ingest runs; for tests and notebooks.

    Examples
    --------
    >>> normalise_values("ip", ["::ffff:10.0.0.1", "[2001:db8::1]:443", "unknown"])
    ['10.0.0.1', '2001:db8::1', None]
    """
    config = config or InputConfig()
    items: Sequence[str | None] = list(values)
    con = duckdb.connect()
    register_functions(con)
    con.execute("CREATE TABLE v (i INTEGER, x VARCHAR)")
    con.executemany("INSERT INTO v VALUES (?, ?)", list(enumerate(items)))
    mapping = normalise_query(normaliser, "v", "x", config)
    rows = con.execute(
        f"SELECT m.norm FROM v LEFT JOIN ({mapping}) m ON m.raw = v.x ORDER BY v.i"
    ).fetchall()
    con.close()
    return [row[0] for row in rows]


def create_identifier_map(
    con: duckdb.DuckDBPyConnection,
    table: str,
    kind: str,
    normaliser: Normaliser,
    source: str,
    column: str,
    config: InputConfig,
    privacy: Privacy = NO_PRIVACY,
) -> None:
    """Create ``table`` (raw, norm): the values of ``source.column`` (identifiers of ``kind``)
    that normalising, and pseudonymising when ``privacy`` has a key, changes.

    A value missing from the map is already in normal form: most are, and a small map is
    cheap to join (``mapped_sql``).
    """
    # With a key every value changes: it becomes a token.
    query = normalise_query(normaliser, source, column, config, changed_only=not privacy.key)
    if privacy.key:
        query = (
            f"SELECT raw, {PSEUDONYM_FUNCTION}({sql_literal(kind)}, norm) AS norm FROM ({query})"
        )
    # MATERIALIZED: pushed into the query, the filter would normalise every value twice.
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {table} AS WITH full_map AS MATERIALIZED ({query}) "
        f"SELECT * FROM full_map WHERE norm IS DISTINCT FROM raw"
    )


def mapped_sql(table: str, raw: str) -> str:
    """SQL: the normal form of the value ``raw``, with its map ``table`` joined on it."""
    return f"(CASE WHEN {table}.raw IS NULL THEN {raw} ELSE {table}.norm END)"
