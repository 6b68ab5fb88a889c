"""A PostgreSQL cluster of a test's own (initdb + pg_ctl on a free port), to stop, kill and
restart under load without touching the shared server on 5432.

PostgreSQL refuses to run as root, so when the tests run as root every command runs as
the ``postgres`` user, in a directory it owns.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.conftest import free_port, require_programs


def postgres_bin() -> Path:
    """The newest installed PostgreSQL's bin directory (Debian layout)."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: p.parts)
    if not versions:
        require_programs(Path("/usr/lib/postgresql/<version>/bin/pg_ctl"))
    return versions[-1].parent


def as_postgres(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` as the postgres user when we are root (PostgreSQL refuses root)."""
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload, no-any-return]


def owned_directory(prefix: str) -> Path:
    """A fresh directory the postgres user owns (pytest's tmp_path is root-only)."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(directory, account.pw_uid, account.pw_gid)
    return directory


class PgCluster:
    """One cluster: ``start``, ``stop`` (fast shutdown), ``remove``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.root = owned_directory("imagejobs-pg-")
        self.data = self.root / "data"
        self.bin = postgres_bin()
        as_postgres(
            [str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"]
        )
        self.admin_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root}"
            " -c fsync=off -c shared_buffers=16MB -c max_connections=60"
        )
        log = str(self.root / "server.log")
        pg_ctl = [str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", log]
        as_postgres([*pg_ctl, "-w", "-t", "60", "start"])

    def stop(self) -> None:
        as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"])

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, FileNotFoundError):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
