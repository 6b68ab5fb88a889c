"""Wire time format: UTC, millisecond precision, ``Z`` suffix (spec §1.4)."""

from __future__ import annotations

import time
from functools import lru_cache

_DAY_MS = 86_400_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@lru_cache(maxsize=4096)
def _date(day: int) -> str:
    """``YYYY-MM-DD`` of the ``day``-th day since 1970-01-01 (cached: pages share days)."""
    return time.strftime("%Y-%m-%d", time.gmtime(day * 86_400))


# Times in wire form by epoch millisecond. A page's times were mostly sent before (lists
# are read again and again, finished jobs' times never change), and a lookup costs a
# twentieth of formatting; the cache is emptied when full, so it stays small.
_WIRE_TIMES: dict[int, str] = {}
_WIRE_TIMES_MAX = 1 << 15


def format_time(epoch_ms: int) -> str:
    """``1646649643858`` -> ``"2022-03-07T10:40:43.858Z"``."""
    text = _WIRE_TIMES.get(epoch_ms)
    if text is None:
        if len(_WIRE_TIMES) >= _WIRE_TIMES_MAX:
            _WIRE_TIMES.clear()
        text = _WIRE_TIMES[epoch_ms] = _format_time(epoch_ms)
    return text


def _format_time(epoch_ms: int) -> str:
    # No gmtime/strftime per call: the date comes from a per-day cache, the time of day
    # from integer arithmetic.
    day, in_day = divmod(epoch_ms, _DAY_MS)
    seconds, millis = divmod(in_day, 1000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return f"{_date(day)}T{hour:02d}:{minute:02d}:{second:02d}.{millis:03d}Z"


class _ThisSecond:
    """The current second in wire form without its milliseconds."""

    at = -1
    text = ""


_MILLIS = tuple(f"{millis:03d}Z" for millis in range(1000))


def format_now() -> str:
    """``format_time(now_ms())``, for the access log: the second is formatted once, not
    each millisecond put into (and crowding out of) the cache of stored times."""
    second, millis = divmod(time.time_ns() // 1_000_000, 1000)
    if second != _ThisSecond.at:
        _ThisSecond.text = _format_time(second * 1000)[:-4]
        _ThisSecond.at = second
    return _ThisSecond.text + _MILLIS[millis]


def format_optional_time(epoch_ms: int | None) -> str | None:
    return None if epoch_ms is None else format_time(epoch_ms)
