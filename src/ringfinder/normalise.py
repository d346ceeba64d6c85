"""Identifier normalisers, one per kind, as DuckDB SQL expressions.

Each normaliser turns a raw text column into a canonical identifier or NULL. A NULL means
"no identifier": garbage, or a placeholder such as ``unknown`` or an all-zero id. Placeholders
never link people. IPv6 canonical form needs the ``ipaddress`` module, so it runs in a Python
UDF that DuckDB calls only for the rare values that contain a colon.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from functools import lru_cache

import duckdb

from ringfinder.config import InputConfig, Normaliser

IPV6_FUNCTION = "rf_ipv6"
IPV6_PREFIX_FUNCTION = "rf_ipv6_prefix"
IPV4_PATTERN = r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$"
# Only zeros and separators: 0, 0000-0000, 00:00:00:00:00:00 ...
ALL_ZERO_PATTERN = r"^[0\-:._ ]+$"


def sql_literal(value: str) -> str:
    """Quote a string as a SQL literal."""
    return "'" + value.replace("'", "''") + "'"


def sql_identifier(name: str) -> str:
    """Quote a column name for SQL."""
    return '"' + name.replace('"', '""') + '"'


@lru_cache(maxsize=65536)
def canonical_ipv6(value: str) -> str | None:
    """Canonical text of an IPv6 address; an IPv4-mapped address becomes its IPv4 form."""
    try:
        address = ipaddress.IPv6Address(value)
    except ValueError:
        return None
    mapped = address.ipv4_mapped
    return str(mapped) if mapped is not None else address.compressed


@lru_cache(maxsize=65536)
def ipv6_prefix(value: str) -> str | None:
    """The /64 network of a canonical IPv6 address (IPv4 values are handled in SQL)."""
    try:
        return str(ipaddress.IPv6Network((value, 64), strict=False))
    except ValueError:
        return None


def register_functions(con: duckdb.DuckDBPyConnection) -> None:
    """Make the Python helpers that the SQL normalisers call known to ``con``."""
    for name, function in ((IPV6_FUNCTION, canonical_ipv6), (IPV6_PREFIX_FUNCTION, ipv6_prefix)):
        try:
            con.create_function(name, function, ["VARCHAR"], "VARCHAR", side_effects=False)
        except duckdb.CatalogException:
            pass  # already registered on this connection


def _ip_sql(column: str) -> str:
    """Canonical IP: strip brackets, ports and zone ids; IPv4-mapped IPv6 to IPv4; else NULL."""
    s = f"lower(trim({column}))"
    s = f"regexp_replace({s}, '^\\[([^\\]]*)\\](:\\d+)?$', '\\1')"  # [v6]:port
    s = f"regexp_replace({s}, '^(\\d+\\.\\d+\\.\\d+\\.\\d+):\\d+$', '\\1')"  # v4:port
    s = f"regexp_replace({s}, '%.*$', '')"  # zone id
    s = f"regexp_replace({s}, '^(?:0{{1,4}}:){{0,5}}:?(?:0{{0,4}}:)?ffff:(\\d+\\.\\d+\\.\\d+\\.\\d+)$', '\\1')"
    octets = f"regexp_extract({s}, '{IPV4_PATTERN}', ['a', 'b', 'c', 'd'])"
    parts = [f"try_cast({octets}.{p} AS INTEGER)" for p in "abcd"]
    valid_v4 = " AND ".join(f"{p} <= 255" for p in parts)
    v4 = " || '.' || ".join(f"CAST({p} AS VARCHAR)" for p in parts)
    return (
        f"(CASE WHEN regexp_full_match({s}, '{IPV4_PATTERN[1:-1]}') "
        f"THEN (CASE WHEN {valid_v4} THEN {v4} END) "
        f"WHEN contains({s}, ':') AND regexp_full_match({s}, '[0-9a-f:.]+') "
        f"THEN {IPV6_FUNCTION}({s}) END)"
    )


def _ip_prefix_sql(column: str) -> str:
    """The /24 (IPv4) or /64 (IPv6) network of an address: a weaker kind than the address."""
    ip = _ip_sql(column)
    return (
        f"(CASE WHEN contains({ip}, ':') THEN {IPV6_PREFIX_FUNCTION}({ip}) "
        f"WHEN {ip} IS NOT NULL THEN regexp_replace({ip}, '\\.\\d+$', '.0/24') END)"
    )


def _email_sql(column: str, config: InputConfig) -> str:
    s = f"lower(trim({column}))"
    local = f"split_part({s}, '@', 1)"
    domain = f"split_part({s}, '@', 2)"
    if config.email_strip_plus:
        local = f"split_part({local}, '+', 1)"
    if config.email_dotless_domains:
        domains = ", ".join(sql_literal(d.lower()) for d in config.email_dotless_domains)
        local = f"(CASE WHEN {domain} IN ({domains}) THEN replace({local}, '.', '') ELSE {local} END)"
    valid = f"regexp_full_match({s}, '[^@\\s]+@[^@\\s]+\\.[^@\\s]+')"
    return f"(CASE WHEN {valid} THEN {local} || '@' || {domain} END)"


def _phone_sql(column: str) -> str:
    digits = f"regexp_replace({column}, '[^0-9]', '', 'g')"
    return f"(CASE WHEN length({digits}) >= 6 THEN {digits} END)"


def normaliser_sql(normaliser: Normaliser, column: str, config: InputConfig) -> str:
    """SQL expression that normalises ``column`` (already quoted) and drops placeholders."""
    if normaliser == "ip":
        expr = _ip_sql(column)
    elif normaliser == "ip_prefix":
        expr = _ip_prefix_sql(column)
    elif normaliser == "device":
        expr = f"lower(trim({column}))"
    elif normaliser == "payment":
        expr = f"upper(regexp_replace({column}, '[^0-9A-Za-z]', '', 'g'))"
    elif normaliser == "email":
        expr = _email_sql(column, config)
    elif normaliser == "phone":
        expr = _phone_sql(column)
    else:
        expr = f"trim({column})"
    placeholders = ", ".join(sql_literal(p.strip().lower()) for p in config.placeholders)
    raw_is_placeholder = f"lower(trim({column})) IN ({placeholders})" if placeholders else "false"
    return (
        f"(CASE WHEN {column} IS NULL OR {raw_is_placeholder} "
        f"OR regexp_full_match(trim({column}), '{ALL_ZERO_PATTERN[1:-1]}') THEN NULL "
        f"ELSE nullif({expr}, '') END)"
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
    expr = normaliser_sql(normaliser, "x", config)
    rows = con.execute(f"SELECT {expr} FROM v ORDER BY i").fetchall()
    con.close()
    return [row[0] for row in rows]
