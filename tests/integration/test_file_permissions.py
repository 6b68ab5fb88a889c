"""Secrets at rest are the owner's alone (issue 8, item 8): the SQLite database and its
-wal/-shm, the operator key and the demo credentials are 0600 in a 0700 data directory,
with the usual umask 022, on a server's first start and through the CLI."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerProcess


@pytest.fixture
def umask_022() -> Iterator[None]:
    # Child processes inherit it: what a user's shell usually has.
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode))


def _modes(directory: Path, *names: str) -> dict[str, str]:
    return {name: _mode(directory / name) for name in ("", *names)}


def _imagejobs(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "imagejobs", *args],
        check=True,
        capture_output=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("IMAGEJOBS_")},
        timeout=120,
    )


def test_a_first_start_keeps_every_secret_file_private(tmp_path: Path, umask_022: None) -> None:
    data = tmp_path / "fresh" / "data"  # neither exists yet: the server makes both
    server = ServerProcess(
        f"sqlite:///{data / 'imagejobs.db'}",
        tmp_path / "log",
        "--data-dir",
        str(data),
        extra_env={"IMAGEJOBS_ENCRYPTION_KEY": "", "IMAGEJOBS_BOOTSTRAP_DEMO_ACCOUNT": "true"},
    )
    try:
        # A running server holds the database open in WAL mode: -wal and -shm exist now.
        assert httpx.get(server.base_url + "/openapi.json").status_code == 200
        files = ("imagejobs.db", "imagejobs.db-wal", "imagejobs.db-shm")
        secrets = ("secret.key", "demo-credentials.json")
        assert _modes(data, *files, *secrets) == {
            "": "0o700",
            **dict.fromkeys(files + secrets, "0o600"),
        }
        assert _mode(data.parent) == "0o700"
    finally:
        server.stop()


def test_migrate_and_seed_keep_the_database_private(tmp_path: Path, umask_022: None) -> None:
    data = tmp_path / "data"
    _imagejobs("migrate", "--data-dir", str(data))
    assert _modes(data, "imagejobs.db") == {"": "0o700", "imagejobs.db": "0o600"}
    _imagejobs("seed", "--data-dir", str(data), "--project-id", "p1", "--jobs", "10")
    assert _modes(data, "imagejobs.db") == {"": "0o700", "imagejobs.db": "0o600"}


def test_a_database_an_earlier_version_left_open_is_closed(tmp_path: Path, umask_022: None) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    # An earlier version's server, still running: SQLite made its files 0644.
    connection = sqlite3.connect(data / "imagejobs.db", isolation_level=None)
    files = ("imagejobs.db", "imagejobs.db-wal", "imagejobs.db-shm")
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE leftover (x)")
        assert _modes(data, *files) == {"": "0o755", **dict.fromkeys(files, "0o644")}
        _imagejobs("migrate", "--data-dir", str(data))
        assert _modes(data, *files) == {"": "0o700", **dict.fromkeys(files, "0o600")}
    finally:
        connection.close()
