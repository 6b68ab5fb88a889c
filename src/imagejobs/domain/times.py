"""Wire time format: UTC, millisecond precision, ``Z`` suffix (spec §1.4)."""

from __future__ import annotations

import time


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def format_time(epoch_ms: int) -> str:
    """``1646649643858`` -> ``"2022-03-07T10:40:43.858Z"``."""
    seconds, millis = divmod(epoch_ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def format_optional_time(epoch_ms: int | None) -> str | None:
    return None if epoch_ms is None else format_time(epoch_ms)
