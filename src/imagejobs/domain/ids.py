"""18-digit, time-ordered numeric ids, like the real service's ``702364883651395584``.

Layout of ``id - 10**17`` (which keeps every id at exactly 18 digits for ~109 years
after ``EPOCH_MS``): milliseconds since the epoch << 18 | node (8 bits) << 10 | sequence
(10 bits). Ordering ids numerically orders them by creation time, so "newest first" is
``ORDER BY id DESC`` on one index.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from collections.abc import Callable

from imagejobs.domain.errors import InternalError

EPOCH_MS = 1_577_836_800_000  # 2020-01-01T00:00:00Z
ID_BASE = 10**17
NODE_BITS = 8
SEQUENCE_BITS = 10
_TIME_SHIFT = NODE_BITS + SEQUENCE_BITS
_SEQUENCE_MASK = (1 << SEQUENCE_BITS) - 1
MAX_ID = 10**18 - 1
_FIRST_SEQUENCES = 1 << (SEQUENCE_BITS - 1)  # a millisecond's first sequence is below this


def id_for(time_ms: int, node: int, sequence: int) -> int:
    """The id for a given time, node and sequence number (pure; used by seeding)."""
    return (
        ID_BASE
        + ((time_ms - EPOCH_MS) << _TIME_SHIFT)
        + ((node & ((1 << NODE_BITS) - 1)) << SEQUENCE_BITS)
        + (sequence & _SEQUENCE_MASK)
    )


def time_of(job_id: int) -> int:
    """Milliseconds since the Unix epoch at which ``job_id`` was generated."""
    return ((job_id - ID_BASE) >> _TIME_SHIFT) + EPOCH_MS


class IdGenerator:
    """Thread-safe generator of unique, increasing ids for one process.

    ``node`` tells processes apart: the server leases one from the database
    (storage/node_store.py) so that live processes never share one, and calls
    ``use_node``; until then (and in tools) it is random. An insert whose id still
    collides (a process that stalled past its node's lease) is retried with new ids.
    """

    def __init__(self, node: int | None = None, clock_ms: Callable[[], int] | None = None) -> None:
        self._node = secrets.randbelow(1 << NODE_BITS) if node is None else node
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._lock = threading.Lock()
        self._last_ms = 0
        self._sequence = 0
        self._random = random.Random()  # noqa: S311 - spreading, not secrecy

    @property
    def node(self) -> int:
        return self._node

    def use_node(self, node: int) -> None:
        with self._lock:
            self._node = node

    def next_id(self) -> int:
        with self._lock:
            now = max(self._clock_ms(), self._last_ms)
            if now == self._last_ms:
                self._sequence += 1
                if self._sequence > _SEQUENCE_MASK:
                    # The sequence ran out in this millisecond: borrow the next one.
                    now += 1
                    self._sequence = self._first_sequence()
            else:
                self._sequence = self._first_sequence()
            self._last_ms = now
            return id_for(now, self._node, self._sequence)

    def skip(self) -> None:
        """Move past ids another process may be minting too (after a collision): a few
        milliseconds on, at a random sequence."""
        with self._lock:
            self._last_ms = max(self._clock_ms(), self._last_ms) + 1 + self._random.randrange(8)
            self._sequence = self._first_sequence()

    def _first_sequence(self) -> int:
        # A random start: processes that share a node and a millisecond rarely meet.
        return self._random.randrange(_FIRST_SEQUENCES)


class IdCollision(InternalError):
    """A new id collided with an existing one (retried with new ids)."""


def parse_id(text: str) -> int | None:
    """The numeric id in ``text``, or None when it cannot be one of ours."""
    if len(text) != 18 or not text.isdigit() or not text.isascii():
        return None
    return int(text)
