"""A small async database seam over two drivers: stdlib ``sqlite3`` and ``asyncpg``.

Stores write SQL once with ``:name`` parameters (``Statement``) and run it through a
``Database``; the two adapters differ only in how they execute it.

SQLite statements run inline on the event loop: an indexed read takes tens of
microseconds, far less than a hop to a thread would cost (ARCHITECTURE.md #4). Reads use
their own connection (WAL readers never wait for writers); writes use a second
connection behind an ``asyncio.Lock``, so transactions of concurrent coroutines never
interleave on one connection.

A read whose cost grows with its input (a page at a deep offset: ~0.1 us per row
skipped, 50 ms at offset 450,000) goes through ``fetch_deep``: on SQLite it runs on one of
a few reader threads, each with its own connection (``sqlite3`` releases the GIL while a
statement steps), so the loop serves other callers meanwhile; on PostgreSQL it may take
only part of the pool, so cheap calls always find a connection (docs/operations.md). On
both, the statement timeout bounds it: PostgreSQL cancels the statement, and on SQLite
the loop interrupts it (``_DeepRead``); either way the caller gets ServiceUnavailable.
"""

from __future__ import annotations

import asyncio
import random
import re
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import asyncpg

from imagejobs.domain.errors import ServiceUnavailable
from imagejobs.storage.private_files import private_sqlite_database

Row = Sequence[Any]
Params = Mapping[str, Any]
_NAMED_PARAM = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")


@dataclass(frozen=True)
class Statement:
    """One SQL statement with ``:name`` parameters, compiled for each driver once."""

    text: str
    names: tuple[str, ...] = field(init=False)
    sqlite: str = field(init=False)
    postgres: str = field(init=False)

    def __post_init__(self) -> None:
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in names:
                names.append(name)
            return f"{{{names.index(name) + 1}}}"

        template = _NAMED_PARAM.sub(number, self.text)
        object.__setattr__(self, "names", tuple(names))
        object.__setattr__(self, "sqlite", re.sub(r"\{(\d+)\}", r"?\1", template))
        object.__setattr__(self, "postgres", re.sub(r"\{(\d+)\}", r"$\1", template))

    def args(self, params: Params) -> tuple[Any, ...]:
        return tuple(params[name] for name in self.names)


# The rows of one counter that concurrent PostgreSQL writers spread over (job_counters'
# stripe): a transaction adds to one of them, so two creates in one project rarely wait on
# each other's row lock until commit. SQLite has one writer at a time: one stripe.
COUNTER_STRIPES = 16

# A page this deep or deeper (rows skipped) is a deep read (``fetch_deep``). Measured on
# SQLite over a 1M-job project (bench/README.md, deep_offset.py): inline, offset 1,000
# holds the loop ~0.12 ms, about what a whole small request costs; a hop to a thread adds
# ~0.2 ms of latency to the call but holds the loop only while it is handed over.
DEEP_READ_OFFSET = 1_000
# Deep reads that run at once: SQLite reader threads; on PostgreSQL at most this share of
# the pool's connections.
DEEP_READ_THREADS = 2


class Transaction(ABC):
    counter_stripe = 0  # the job_counters stripe this transaction adds to

    @abstractmethod
    async def execute(self, statement: Statement, params: Params) -> None: ...

    @abstractmethod
    async def execute_many(self, statement: Statement, rows: Iterable[Params]) -> None: ...

    @abstractmethod
    async def execute_rows(self, statement: Statement, rows: Iterable[Sequence[Any]]) -> None:
        """Run ``statement`` once per row, each row giving the parameters positionally."""

    @abstractmethod
    async def fetch(self, statement: Statement, params: Params) -> list[Row]: ...


class Database(ABC):
    dialect: ClassVar[str]
    # Pages at this offset or deeper are read with ``fetch_deep``.
    deep_offset: int = DEEP_READ_OFFSET
    # Calls answered with ServiceUnavailable (the database unreachable, full or too slow),
    # read by the metrics at scrape time.
    unavailable_errors: int = 0

    def pool_usage(self) -> dict[str, int]:
        """Connections by state (``in_use``, ``idle``, ``max``), for the metrics."""
        return {}

    @abstractmethod
    async def open(self) -> None:
        """Connect; called once before any other method."""

    @abstractmethod
    async def fetch(self, statement: Statement, params: Params) -> list[Row]:
        """Run one read statement (its own snapshot) and return all rows."""

    @abstractmethod
    async def fetch_args(self, statement: Statement, args: Sequence[Any]) -> list[Row]:
        """``fetch`` with the parameters given positionally, in ``statement.names`` order
        (for hot reads: no mapping built and taken apart per call)."""

    async def fetch_deep(self, statement: Statement, args: Sequence[Any]) -> list[Row]:
        """``fetch_args`` for a read whose cost grows with its input (a deep page): run so
        that it holds up no other caller (off the event loop, within its share of
        connections). Callers decide by ``deep_offset``."""
        return await self.fetch_args(statement, args)

    @abstractmethod
    async def read_snapshot(self, reads: Sequence[tuple[Statement, Params]]) -> list[list[Row]]:
        """Each read's rows, all from one snapshot of the database (a read transaction),
        for a read of many tables that must agree with each other (a project's export).
        It takes no write lock, so every process's writers go on meanwhile, and it holds
        up no other caller (off the event loop on SQLite, within the deep reads' share of
        the pool on PostgreSQL). No time limit: its cost is the data's size."""

    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """A write transaction: committed when the block ends, rolled back on error."""

    @abstractmethod
    async def write(self, statement: Statement, params: Params) -> list[Row]:
        """Run one statement that writes as a transaction of its own, and return its rows
        (on PostgreSQL one round trip: a single statement is atomic without BEGIN and
        COMMIT of its own)."""

    @abstractmethod
    async def close(self) -> None: ...


# --- SQLite -----------------------------------------------------------------------------


def sqlite_path(url: str) -> Path:
    """``sqlite:///relative.db`` or ``sqlite:////abs/path.db`` -> a path."""
    return Path(url.removeprefix("sqlite:///"))


def connect_sqlite(path: Path, *, synchronous: str = "NORMAL") -> sqlite3.Connection:
    connection = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, cached_statements=256
    )
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(f"PRAGMA synchronous={synchronous}")
    connection.execute("PRAGMA foreign_keys=ON")
    connection.execute("PRAGMA busy_timeout=5000")
    # 16 MiB of page cache per connection: deep pages cost the same as with 64 MiB, and a
    # worker (two connections) stays well under its memory budget.
    connection.execute("PRAGMA cache_size=-16384")
    connection.execute("PRAGMA temp_store=MEMORY")
    return connection


# Result codes that mean "not now" (a lock held too long, the disk), answered with 503.
_SQLITE_UNAVAILABLE = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_INTERRUPT,  # a deep read past the statement timeout (_DeepRead)
    }
)


def _unavailable(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _SQLITE_UNAVAILABLE


class _DeepRead:
    """One SQLite deep read's time limit, the statement timeout that PostgreSQL enforces
    itself: past it, the event loop interrupts the statement on its reader thread's
    connection (``sqlite3.Connection.interrupt`` may be called from any thread), which
    then fails with SQLITE_INTERRUPT, answered 503 as a PostgreSQL timeout is. The limit
    counts from when the statement starts on a reader thread, not while it waits for one.
    The lock keeps an interrupt from reaching the connection's next statement."""

    __slots__ = ("_connection", "_finished", "_lock", "_started", "_timeout", "_timer")

    def __init__(self, timeout: float) -> None:
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._started = 0.0
        self._finished = False
        self._timer: asyncio.TimerHandle | None = None
        self._timeout = timeout

    def arm(self, loop: asyncio.AbstractEventLoop, delay: float) -> None:
        """On the loop: look again in ``delay`` seconds."""
        self._timer = loop.call_later(delay, self._expire, loop)

    def disarm(self) -> None:
        """On the loop, once the read is over."""
        if self._timer is not None:
            self._timer.cancel()

    def begin(self, connection: sqlite3.Connection) -> None:
        """On the reader thread, just before the statement runs."""
        with self._lock:
            self._connection, self._started = connection, time.monotonic()

    def end(self) -> None:
        """On the reader thread, once the statement is done (or failed)."""
        with self._lock:
            self._finished = True

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            if self._finished:
                return
            if self._connection is None:  # still waiting for a reader thread
                self.arm(loop, self._timeout)
                return
            left = self._started + self._timeout - time.monotonic()
            if left > 0:
                self.arm(loop, left)
                return
            self._connection.interrupt()


class _SqliteTransaction(Transaction):
    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    async def execute(self, statement: Statement, params: Params) -> None:
        self._connection.execute(statement.sqlite, statement.args(params))

    async def execute_many(self, statement: Statement, rows: Iterable[Params]) -> None:
        self._connection.executemany(statement.sqlite, (statement.args(r) for r in rows))

    async def execute_rows(self, statement: Statement, rows: Iterable[Sequence[Any]]) -> None:
        self._connection.executemany(statement.sqlite, rows)

    async def fetch(self, statement: Statement, params: Params) -> list[Row]:
        return self._connection.execute(statement.sqlite, statement.args(params)).fetchall()


class SqliteDatabase(Database):
    dialect = "sqlite"

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str = "NORMAL",
        timeout_seconds: float = 5.0,
        max_bytes: int = 0,
    ) -> None:
        self.path = path
        self._synchronous = synchronous
        self._busy_ms = round(timeout_seconds * 1000)
        self._timeout = timeout_seconds  # also a deep read's limit (_DeepRead)
        self._max_bytes = max_bytes
        self._reader: sqlite3.Connection
        self._writer: sqlite3.Connection
        self._write_lock = asyncio.Lock()
        # Deep reads: a few threads, each with a read connection of its own (made in the
        # thread on its first deep read, closed with the database).
        self._deep_threads: ThreadPoolExecutor | None = None
        self._deep_local = threading.local()
        self._deep_connections: list[sqlite3.Connection] = []
        self._deep_connections_lock = threading.Lock()

    async def open(self) -> None:
        # Opening never makes a data directory: a command run from the wrong folder is told
        # the database is missing instead of leaving an empty one behind (migrate makes it).
        if self.path.parent.is_dir():
            private_sqlite_database(self.path)
        self._reader = connect_sqlite(self.path, synchronous=self._synchronous)
        self._writer = connect_sqlite(self.path, synchronous=self._synchronous)
        for connection in (self._reader, self._writer):
            connection.execute(f"PRAGMA busy_timeout={self._busy_ms}")
        if self._max_bytes:  # a cap on the file: past it, writes fail with SQLITE_FULL
            (page_size,) = self._writer.execute("PRAGMA page_size").fetchone()
            self._writer.execute(f"PRAGMA max_page_count={max(1, self._max_bytes // page_size)}")

    async def fetch(self, statement: Statement, params: Params) -> list[Row]:
        return self._read(statement, statement.args(params))

    async def fetch_args(self, statement: Statement, args: Sequence[Any]) -> list[Row]:
        return self._read_on(self._reader, statement, args)

    def _read(self, statement: Statement, args: Sequence[Any]) -> list[Row]:
        return self._read_on(self._reader, statement, args)

    def _read_on(
        self, connection: sqlite3.Connection, statement: Statement, args: Sequence[Any]
    ) -> list[Row]:
        try:
            return connection.execute(statement.sqlite, args).fetchall()
        except sqlite3.OperationalError as exc:
            if _unavailable(exc):
                self.unavailable_errors += 1
                raise ServiceUnavailable() from exc
            raise

    async def fetch_deep(self, statement: Statement, args: Sequence[Any]) -> list[Row]:
        if self._deep_threads is None:
            self._deep_threads = ThreadPoolExecutor(
                DEEP_READ_THREADS, thread_name_prefix="imagejobs-deep-read"
            )
        loop = asyncio.get_running_loop()
        limit = _DeepRead(self._timeout)
        limit.arm(loop, self._timeout)
        try:
            return await loop.run_in_executor(
                self._deep_threads, self._read_deep, statement, args, limit
            )
        finally:
            limit.disarm()

    def _read_deep(self, statement: Statement, args: Sequence[Any], limit: _DeepRead) -> list[Row]:
        """In a reader thread: the read on that thread's own connection, interrupted once
        it has run for the statement timeout (``limit``)."""
        connection = self._thread_connection()
        limit.begin(connection)
        try:
            return self._read_on(connection, statement, args)
        finally:
            limit.end()

    async def read_snapshot(self, reads: Sequence[tuple[Statement, Params]]) -> list[list[Row]]:
        if self._deep_threads is None:
            self._deep_threads = ThreadPoolExecutor(
                DEEP_READ_THREADS, thread_name_prefix="imagejobs-deep-read"
            )
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._deep_threads, self._read_snapshot, reads)

    def _read_snapshot(self, reads: Sequence[tuple[Statement, Params]]) -> list[list[Row]]:
        """In a reader thread, on its own read-only connection: a deferred transaction,
        whose first SELECT fixes the snapshot (WAL: writers append meanwhile, unseen)."""
        connection = self._thread_connection()
        try:
            connection.execute("BEGIN")
            try:
                return [
                    self._read_on(connection, statement, statement.args(params))
                    for statement, params in reads
                ]
            finally:
                connection.execute("ROLLBACK")  # it wrote nothing
        except sqlite3.OperationalError as exc:
            if _unavailable(exc):
                self.unavailable_errors += 1
                raise ServiceUnavailable() from exc
            raise

    def _thread_connection(self) -> sqlite3.Connection:
        """This reader thread's connection (made on its first read)."""
        connection: sqlite3.Connection | None = getattr(self._deep_local, "connection", None)
        if connection is None:
            connection = self._deep_connection()
            self._deep_local.connection = connection
            with self._deep_connections_lock:
                self._deep_connections.append(connection)
        return connection

    def _deep_connection(self) -> sqlite3.Connection:
        connection = connect_sqlite(self.path, synchronous=self._synchronous)
        connection.execute(f"PRAGMA busy_timeout={self._busy_ms}")
        connection.execute("PRAGMA query_only=ON")
        return connection

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._write_lock, self._begin() as tx:
            yield tx

    @asynccontextmanager
    async def transaction_without_foreign_keys(self) -> AsyncIterator[Transaction]:
        """A transaction in which foreign keys are neither checked nor cascaded (SQLite
        ignores the pragma inside a transaction: it is set around this one). For a writer
        that deletes children before their parents itself: a whole table's ``DELETE``
        without ``WHERE`` is then SQLite's truncation (pages freed, no row visited), which
        it never does for a table taking part in a foreign key."""
        async with self._write_lock:
            self._writer.execute("PRAGMA foreign_keys=OFF")
            try:
                async with self._begin() as tx:
                    yield tx
            finally:
                self._writer.execute("PRAGMA foreign_keys=ON")

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[Transaction]:
        """A transaction on the writer; the caller holds the write lock."""
        try:
            self._writer.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:  # locked past busy_timeout
            if _unavailable(exc):
                self.unavailable_errors += 1
                raise ServiceUnavailable() from exc
            raise
        try:
            yield _SqliteTransaction(self._writer)
            self._writer.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            self._rollback()
            if _unavailable(exc):
                self.unavailable_errors += 1
                raise ServiceUnavailable() from exc
            raise
        except BaseException:
            self._rollback()
            raise

    async def write(self, statement: Statement, params: Params) -> list[Row]:
        async with self.transaction() as tx:
            return await tx.fetch(statement, params)

    def _rollback(self) -> None:
        # SQLite has already rolled back after some errors (SQLITE_FULL, SQLITE_IOERR).
        if self._writer.in_transaction:
            self._writer.execute("ROLLBACK")

    async def close(self) -> None:
        if self._deep_threads is not None:
            # Deep reads still running finish first (each is bounded by the table's size).
            await asyncio.get_running_loop().run_in_executor(
                None, self._deep_threads.shutdown, True
            )
            self._deep_threads = None
        with self._deep_connections_lock:
            for connection in self._deep_connections:
                connection.close()
            self._deep_connections.clear()
        self._reader.close()
        self._writer.close()


# --- PostgreSQL -------------------------------------------------------------------------


# Failures that mean "the database is not reachable now", answered with 503: the
# connection is gone, the server shuts down or cancelled the statement (class 57), a call
# ran past its timeout, a failover left the connection on a read-only standby, or the
# driver lost track of a connection cut mid-statement ("cannot switch to state").
_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.ReadOnlySQLTransactionError,
    asyncpg.InternalClientError,
)


class _PostgresTransaction(Transaction):
    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection
        self.counter_stripe = random.randrange(COUNTER_STRIPES)  # noqa: S311 - not secret

    async def execute(self, statement: Statement, params: Params) -> None:
        await self._connection.execute(statement.postgres, *statement.args(params))

    async def execute_many(self, statement: Statement, rows: Iterable[Params]) -> None:
        await self._connection.executemany(statement.postgres, [statement.args(r) for r in rows])

    async def execute_rows(self, statement: Statement, rows: Iterable[Sequence[Any]]) -> None:
        await self._connection.executemany(statement.postgres, list(rows))

    async def fetch(self, statement: Statement, params: Params) -> list[Row]:
        rows: list[Row] = await self._connection.fetch(statement.postgres, *statement.args(params))
        return rows


class PostgresDatabase(Database):
    dialect = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        min_size: int = 2,
        max_size: int = 10,
        connect_timeout: float = 1.0,
        statement_timeout: float = 5.0,
    ) -> None:
        self._dsn = postgres_dsn(url)
        self._min_size = min_size
        self._max_size = max_size
        self._connect_timeout = connect_timeout
        self._timeout = statement_timeout
        self._pool: asyncpg.Pool
        # Deep reads hold at most this many of the pool's connections at once: the rest
        # stay for cheap calls, however many deep reads wait.
        self._deep_slots = asyncio.Semaphore(max(1, min(DEEP_READ_THREADS, max_size // 2)))

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                # Every statement and every connection attempt is bounded: a database
                # that stops answering makes calls fail with 503, never hang.
                command_timeout=self._timeout,
                timeout=self._connect_timeout,
                reset=_keep_session,
            )
        except _UNAVAILABLE as exc:
            raise ServiceUnavailable() from exc

    def _failed(self, exc: BaseException) -> ServiceUnavailable:
        self.unavailable_errors += 1
        if isinstance(exc, asyncpg.ReadOnlySQLTransactionError | asyncpg.InternalClientError):
            # A failover demoted this connection's server, or the connection is in an
            # unknown state: reconnect every pooled connection (to the new primary).
            self._pool.expire_connections()
        return ServiceUnavailable()

    def pool_usage(self) -> dict[str, int]:
        size, idle = self._pool.get_size(), self._pool.get_idle_size()
        return {"in_use": size - idle, "idle": idle, "max": self._pool.get_max_size()}

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    async def fetch(self, statement: Statement, params: Params) -> list[Row]:
        return await self.fetch_args(statement, statement.args(params))

    async def fetch_args(self, statement: Statement, args: Sequence[Any]) -> list[Row]:
        try:
            rows: list[Row] = await self._pool.fetch(statement.postgres, *args)
        except _UNAVAILABLE as exc:
            raise self._failed(exc) from exc
        return rows

    async def fetch_deep(self, statement: Statement, args: Sequence[Any]) -> list[Row]:
        try:
            async with (
                self._deep_slots,
                self._pool.acquire(timeout=self._timeout) as connection,
            ):
                return await self._fetch_on(connection, statement, args)
        except _UNAVAILABLE as exc:
            raise self._failed(exc) from exc

    async def _fetch_on(
        self, connection: asyncpg.Connection, statement: Statement, args: Sequence[Any]
    ) -> list[Row]:
        rows: list[Row] = await connection.fetch(statement.postgres, *args)
        return rows

    async def read_snapshot(self, reads: Sequence[tuple[Statement, Params]]) -> list[list[Row]]:
        try:
            async with (
                self._deep_slots,
                self._pool.acquire(timeout=self._timeout) as connection,
                # One snapshot for every statement; read-only: no row lock, no write.
                connection.transaction(isolation="repeatable_read", readonly=True),
            ):
                return [
                    await self._fetch_on(connection, statement, statement.args(params))
                    for statement, params in reads
                ]
        except _UNAVAILABLE as exc:
            raise self._failed(exc) from exc

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        try:
            async with (
                self._pool.acquire(timeout=self._timeout) as connection,
                connection.transaction(),
            ):
                yield _PostgresTransaction(connection)
        except _UNAVAILABLE as exc:
            raise self._failed(exc) from exc

    async def write(self, statement: Statement, params: Params) -> list[Row]:
        return await self.fetch(statement, params)  # a pooled connection autocommits

    async def close(self) -> None:
        await self._pool.close()


async def _keep_session(connection: asyncpg.Connection) -> None:
    """What a connection goes back to the pool with: asyncpg's default runs a reset query
    (advisory locks, cursors, LISTEN, settings), a second round trip for every read and
    transaction; nothing here changes session state on a pooled connection (the runner's
    LISTEN connection is unlistened or terminated before it goes back), and an open
    transaction is still rolled back by asyncpg before this is called."""


def postgres_dsn(url: str) -> str:
    """Accept SQLAlchemy-style ``postgresql+asyncpg://`` as well as plain ``postgresql://``."""
    return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", url)


def dialect_of(url: str) -> str:
    if url.startswith("sqlite:"):
        return "sqlite"
    if re.match(r"^postgres(ql)?(\+\w+)?://", url):
        return "postgresql"
    raise ValueError(f"unsupported database URL scheme: {url.split(':', 1)[0]!r}")


def database_for(
    url: str,
    *,
    sqlite_synchronous: str = "NORMAL",
    connect_timeout: float = 1.0,
    statement_timeout: float = 5.0,
    sqlite_max_bytes: int = 0,
) -> Database:
    """An unopened database for ``url``: call ``await db.open()`` inside the event loop."""
    if dialect_of(url) == "sqlite":
        return SqliteDatabase(
            sqlite_path(url),
            synchronous=sqlite_synchronous,
            timeout_seconds=statement_timeout,
            max_bytes=sqlite_max_bytes,
        )
    return PostgresDatabase(
        url, connect_timeout=connect_timeout, statement_timeout=statement_timeout
    )
