"""Data values as display text: times, numbers, short labels, reason codes in words."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from markupsafe import Markup

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


def visible_text(value: Any) -> str:
    """``value`` as text to show, in a terminal or on a page: control and format characters
    (ANSI escapes, NUL, line breaks, bidi overrides) written as escapes, so that they can
    neither act nor hide; ``""`` when missing.

    Examples
    --------
    >>> visible_text("a\\x1b[31mb\\n"), visible_text("x\\x00y\\u202e")
    ('a\\\\x1b[31mb\\\\n', 'x\\\\x00y\\\\u202e')
    """
    if is_missing(value):
        return ""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )


def visible_strings(data: Any) -> Any:
    """``data`` (dicts, lists and scalars, as for JSON) with every string a ``visible_text``."""
    if isinstance(data, str):
        return visible_text(data)
    if isinstance(data, dict):
        return {visible_strings(k): visible_strings(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [visible_strings(v) for v in data]
    return data


def visible_output(value: Any) -> Any:
    """Jinja's ``finalize``: text that goes through a template is shown as ``visible_text``.

    Markup (the page's own script and JSON, escaped for their context already) is left alone.
    """
    if isinstance(value, str) and not isinstance(value, Markup):
        return visible_text(value)
    return value
