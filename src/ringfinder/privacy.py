"""Privacy: keyed HMAC-SHA256 pseudonyms for identifiers in every output.

A plain hash is not enough: the IPv4 space is small enough to enumerate in minutes. With a
secret key (from ``RINGFINDER_HMAC_KEY``, never from a file) a token is stable across runs with
the same key and reveals nothing without it. Each kind hashes in its own domain, so the same
string as a device and as an IP gives unrelated tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

import duckdb

from ringfinder.errors import ConfigError

KEY_VARIABLE = "RINGFINDER_HMAC_KEY"
PSEUDONYM_FUNCTION = "rf_pseudonym"
TOKEN_HEX = 24
MIN_KEY_LENGTH = 16


@dataclass(frozen=True)
class Privacy:
    """What to pseudonymise: identifiers when ``key`` is set; contributor ids too if asked."""

    key: bytes | None = None
    contributors: bool = False


NO_PRIVACY = Privacy()


def privacy_from_env(pseudonymize: bool, *, contributors: bool = False) -> Privacy:
    """The HMAC key from the environment when pseudonymising; refuse to start without one."""
    if not pseudonymize:
        return NO_PRIVACY
    key = os.environ.get(KEY_VARIABLE, "")
    if len(key) < MIN_KEY_LENGTH:
        raise ConfigError(
            f"privacy.pseudonymize = true needs a secret of at least {MIN_KEY_LENGTH} characters "
            f"in the environment variable {KEY_VARIABLE}"
        )
    return Privacy(key=key.encode("utf-8"), contributors=contributors)


def pseudonym(key: bytes, domain: str, value: str) -> str:
    """Keyed token of ``value`` in ``domain``.

    Examples
    --------
    >>> pseudonym(b"k" * 16, "ip", "10.0.0.1") == pseudonym(b"k" * 16, "ip", "10.0.0.1")
    True
    >>> pseudonym(b"k" * 16, "ip", "10.0.0.1") == pseudonym(b"k" * 16, "device", "10.0.0.1")
    False
    """
    digest = hmac.new(key, f"{domain}\x1f{value}".encode(), hashlib.sha256).hexdigest()
    return f"{domain}_{digest[:TOKEN_HEX]}"


def register_pseudonym_function(con: duckdb.DuckDBPyConnection, key: bytes) -> None:
    """Make ``rf_pseudonym(domain, value)`` callable from SQL on ``con``."""

    def token(domain: str | None, value: str | None) -> str | None:
        return None if value is None or domain is None else pseudonym(key, domain, value)

    con.create_function(  # type: ignore[call-overload]
        PSEUDONYM_FUNCTION,
        token,
        ["VARCHAR", "VARCHAR"],
        "VARCHAR",
        null_handling="special",
        side_effects=False,
    )
