"""Shared fixtures: a database URL per dialect, stores on it, and a real server process.

PostgreSQL tests use ``IMAGEJOBS_TEST_POSTGRES_URL`` (default: the local trust-auth server).
When it is unreachable they skip with the reason, unless ``IMAGEJOBS_REQUIRE_POSTGRES=1``
(set by CI), which turns the skip into a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from imagejobs.storage.database import Database, database_for
from imagejobs.storage.job_store import SqlJobStore
from imagejobs.storage.migrate import migrate
from tests.factories import TEST_KEY_BASE64, TEST_OPERATOR_TOKEN, Tenant, new_tenant

POSTGRES_URL = os.environ.get(
    "IMAGEJOBS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REQUIRE_POSTGRES = os.environ.get("IMAGEJOBS_REQUIRE_POSTGRES") == "1"
# CI installs every program the fault, failover and clock tests drive; on a user's machine
# without one of them those tests skip with the reason (the README's command still passes).
REQUIRE_PROGRAMS = os.environ.get("IMAGEJOBS_REQUIRE_PROGRAMS") == "1"
_names = itertools.count()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _admin_url(database: str) -> str:
    return POSTGRES_URL.rsplit("/", 1)[0] + "/" + database


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(POSTGRES_URL, timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """A migrated template database; each test clones it (fast, isolated)."""
    try:
        asyncio.run(_admin("SELECT 1"))
    except (OSError, asyncpg.PostgresError) as exc:
        reason = f"PostgreSQL is not reachable at {POSTGRES_URL} ({exc.__class__.__name__})"
        if REQUIRE_POSTGRES:
            pytest.fail(reason + " and IMAGEJOBS_REQUIRE_POSTGRES=1")
        pytest.skip(reason + "; set IMAGEJOBS_TEST_POSTGRES_URL to run these tests")
    name = f"imagejobs_template_{os.getpid()}"
    asyncio.run(_admin(f"DROP DATABASE IF EXISTS {name}"))
    asyncio.run(_admin(f"CREATE DATABASE {name}"))
    asyncio.run(migrate(_admin_url(name)))
    yield name
    asyncio.run(_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture
def postgres_url(postgres_template: str) -> Iterator[str]:
    name = f"imagejobs_test_{os.getpid()}_{next(_names)}"
    asyncio.run(_admin(f"CREATE DATABASE {name} TEMPLATE {postgres_template}"))
    yield _admin_url(name)
    asyncio.run(_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'imagejobs.db'}"
    asyncio.run(migrate(url))
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """A migrated, empty database of each dialect."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    db = database_for(database_url)
    await db.open()
    yield db
    await db.close()


@pytest.fixture
async def store(database: Database) -> SqlJobStore:
    return SqlJobStore(database)


def require_programs(*programs: str | Path) -> None:
    """Skip this test, naming what is missing and its Debian package, unless
    ``IMAGEJOBS_REQUIRE_PROGRAMS=1`` (CI), which turns the skip into a failure.
    A program is a name on PATH or a file's path."""
    missing = [
        str(program)
        for program in programs
        if not (Path(program).exists() if isinstance(program, Path) else shutil.which(program))
    ]
    if missing:
        reason = f"needs {', '.join(missing)} ({', '.join(DEBIAN_PACKAGES)}: see .ci/run)"
        if REQUIRE_PROGRAMS:
            pytest.fail(reason + " and IMAGEJOBS_REQUIRE_PROGRAMS=1")
        pytest.skip(reason)


# What .ci/run installs for the tests that drive other programs.
DEBIAN_PACKAGES = (
    "faketime",
    "haproxy",
    "postgresql-15-auto-failover",
    "pg-auto-failover-cli",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ServerProcess:
    """``imagejobs serve`` in a child process, as a user runs it."""

    def __init__(
        self,
        database_url: str,
        data_dir: Path,
        *extra: str,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        extra_env = extra_env or {}
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = data_dir / "server.log"
        env = {
            **os.environ,
            "IMAGEJOBS_LOG_LEVEL": "warning",
            "IMAGEJOBS_ENCRYPTION_KEY": TEST_KEY_BASE64,
            "IMAGEJOBS_IAM_CACHE_SECONDS": "0",
            "IMAGEJOBS_BOOTSTRAP_DEMO_ACCOUNT": "false",
            "IMAGEJOBS_OPERATOR_TOKEN": TEST_OPERATOR_TOKEN,
            **extra_env,
        }
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "imagejobs",
                "serve",
                "--port",
                str(self.port),
                "--database-url",
                database_url,
                "--data-dir",
                str(data_dir),
                *extra,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group: stop() ends its workers too
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()}")
            try:
                httpx.get(self.base_url + "/openapi.json", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not start: {self.log_path.read_text()}")

    def assert_quiet_log(self) -> None:
        """Test servers log at WARNING: anything logged is a complaint (about a client)."""
        log = self.log_path.read_text()
        assert not re.search(r"Traceback|ERROR|WARNING|CRITICAL", log), log[-3000:]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        # A worker that missed its SIGTERM must not outlive the test, holding its port.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self._log.close()


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(database_url, tmp_path)
    yield process
    process.stop()


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def live_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A database shared by one module's tests; each test works in its own project."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('live') / 'imagejobs.db'}"
        asyncio.run(migrate(url))
        yield url
        return
    template: str = request.getfixturevalue("postgres_template")
    name = f"imagejobs_live_{os.getpid()}_{next(_names)}"
    asyncio.run(_admin(f"CREATE DATABASE {name} TEMPLATE {template}"))
    yield _admin_url(name)
    asyncio.run(_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture(scope="module")
def live_server(
    live_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    process = ServerProcess(live_database_url, tmp_path_factory.mktemp("server"))
    yield process
    process.stop()


# --- CI guard: with IMAGEJOBS_REQUIRE_POSTGRES=1, a skipped PostgreSQL test fails the run.
_postgres_outcomes: dict[str, int] = {"passed": 0, "skipped": 0}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "postgres" in report.keywords and report.when in ("setup", "call"):
        if report.skipped:
            _postgres_outcomes["skipped"] += 1
        elif report.passed and report.when == "call":
            _postgres_outcomes["passed"] += 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not REQUIRE_POSTGRES or session.config.option.collectonly:
        return
    if _postgres_outcomes["skipped"] or not _postgres_outcomes["passed"]:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print(f"\nIMAGEJOBS_REQUIRE_POSTGRES=1 but PostgreSQL tests: {_postgres_outcomes}")


@pytest.fixture(scope="module")
def live_tenant(live_database_url: str) -> Tenant:
    """An account shared by a module's tests that only read or fail."""
    return new_tenant(live_database_url)
