"""Data values as display text: times, numbers, short labels, reason codes in words."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from ringfinder.schema import REASON_MEANINGS, Reason

TIME_FORMAT = "%Y-%m-%d %H:%M"
LABEL_CHARS = 20


def format_time(value: Any) -> str:
    """``value`` as ``TIME_FORMAT`` text; ``""`` when missing."""
    stamp = pd.Timestamp(value) if value is not None else pd.NaT
    return "" if pd.isna(stamp) else stamp.strftime(TIME_FORMAT)


def is_missing(value: Any) -> bool:
    """Whether ``value`` is ``None``, ``pd.NA`` or a float NaN."""
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def format_number(value: Any, digits: int = 3) -> str:
    """A whole number without decimals, any other with ``digits`` of them; ``""`` when missing.

    Examples
    --------
    >>> format_number(6.0), format_number(0.95123), format_number(None)
    ('6', '0.951', '')
    """
    if is_missing(value):
        return ""
    number = float(value)
    if number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return f"{number:.{digits}f}"


def shorten(text: str, limit: int = LABEL_CHARS) -> str:
    """``text`` cut to ``limit`` characters, the last one an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def reason_codes(reasons: Any) -> list[str]:
    """The codes of a ``;``-separated ``reasons`` cell, in order."""
    return [code for code in str(reasons or "").split(";") if code]


def reason_meaning(code: str) -> str:
    """A reason code in words."""
    try:
        return REASON_MEANINGS[Reason(code)]
    except ValueError:
        return "unknown reason code"
