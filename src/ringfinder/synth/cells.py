"""The written cells: timestamps in their formats, identifiers in their messy variants, and
the columns of the events file batch by batch."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ringfinder.synth.events import Events
from ringfinder.synth.mess import PADS, Mess
from ringfinder.synth.population import DAY, NULL, TZ_MINUTES
from ringfinder.synth.render import Strings, digit_chars, fixed_strings, literal_chars
from ringfinder.synth.scenario import BAD_TIMESTAMPS, EVENT_TYPES

_BATCH_ROWS = 1 << 20
_PORTS = ("443", "8080", "51234")  # of bracketed IPv4 cells, picked by the pad variant


def _iso_chars(seconds: np.ndarray, separator: str, suffix: bytes) -> np.ndarray:
    """``YYYY-MM-DD?HH:MM:SS`` + suffix for epoch seconds, via tables of days and clock times."""
    days, second_of_day = np.divmod(seconds, DAY)
    first, last = (int(days.min()), int(days.max())) if len(days) else (0, -1)
    dates = _date_chars(np.arange(first, last + 1))
    return np.hstack(
        [
            dates[days - first],
            literal_chars(separator.encode(), len(seconds)),
            _clock_chars()[second_of_day],
            literal_chars(suffix, len(seconds)),
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
    dash = literal_chars(b"-", len(days))
    return np.hstack([digit_chars(year, 4), dash, digit_chars(month, 2), dash, digit_chars(day, 2)])


@cache
def _clock_chars() -> np.ndarray:
    """``HH:MM:SS`` of every second of a day."""
    second = np.arange(DAY)
    colon = literal_chars(b":", DAY)
    return np.hstack(
        [
            digit_chars(second // 3600, 2),
            colon,
            digit_chars(second // 60 % 60, 2),
            colon,
            digit_chars(second % 60, 2),
        ]
    )


def _offset_suffix(minutes: int) -> str:
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def bool_mask(flags: np.ndarray) -> pa.Array:
    """A pyarrow boolean array of ``flags``, for ``if_else`` and ``replace_with_mask``."""
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
        cells, bool_mask(messy), variant(cells.take(pa.array(where)), mess[where], pad[where])
    )


def _case_space(values: pa.Array, mess: np.ndarray, pad: np.ndarray) -> pa.Array:
    """Variant 1 flips the case, 2 adds surrounding spaces, 3 does both."""
    flipped = pc.if_else(bool_mask(mess & 1 > 0), pc.utf8_swapcase(values), values)
    before = pa.array([p[0] for p in PADS]).take(pa.array(pad))
    after = pa.array([p[1] for p in PADS]).take(pa.array(pad))
    padded = pc.binary_join_element_wise(before, flipped, after, "")
    return pc.if_else(bool_mask(mess & 2 > 0), padded, flipped)


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
    cells = fixed_strings(_iso_chars(seconds, "T", b"Z"))
    messy = (mess > 0) | unparseable
    if not messy.any():
        return cells
    where = np.flatnonzero(messy)
    at, zone = seconds[where], tz[where]
    local = fixed_strings(_iso_chars(at + TZ_MINUTES[zone] * 60, "T", b""))
    suffixes = pa.array([_offset_suffix(int(m)) for m in TZ_MINUTES]).take(pa.array(zone))
    variants = (
        fixed_strings(_iso_chars(at, " ", b"")),
        pc.binary_join_element_wise(local, suffixes, ""),
        pc.cast(pa.array(at), pa.string()),
        pc.cast(pa.array(at * 1000), pa.string()),
        pa.array(BAD_TIMESTAMPS).take(pa.array(at % len(BAD_TIMESTAMPS))),
    )
    choice = np.where(unparseable[where], 4, mess[where] - 1)
    return pc.replace_with_mask(cells, bool_mask(messy), pc.choose(pa.array(choice), *variants))


def event_batches(
    events: Events, mess: Mess, tz: np.ndarray, strings: Strings, user_agents: pa.Array
) -> Iterator[tuple[list[pa.Array], np.ndarray]]:
    """The written columns (``EVENT_COLUMNS`` order) batch by batch, and the ragged rows.

    ``user_agents`` is ``strings.user_agent``, CSV-quoted when writing CSV.
    """
    event_types = pa.array(EVENT_TYPES)
    for start in range(0, len(mess.source), _BATCH_ROWS):
        index = mess.source[start : start + _BATCH_ROWS]
        broken = mess.broken[start : start + _BATCH_ROWS]
        e, pad = events.take(index), mess.pad[index]
        contributor = np.where(broken == 1, NULL, e.contributor)
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
