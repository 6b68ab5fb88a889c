"""What the operator's terminal shows: `imagejobs audit` prints paths any outsider chose
(unauthenticated mutating calls are audited) without letting them forge a line or send
an escape sequence, and a reader that stops early (`| head`) is no database error."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from imagejobs.domain.times import now_ms
from imagejobs.storage.database import database_for
from imagejobs.storage.ops_store import AuditEvent, SqlOpsStore

FORGED = "/v1/x\n2026-01-01T00:00:00.000Z 1 acme/root DELETE /v1/p/image-servers/1 \x1b[2J"


def _store(database_url: str, paths: list[str], operation: str = "unmatched") -> None:
    async def store() -> None:
        database = database_for(database_url)
        await database.open()
        try:
            events = [
                AuditEvent(0, now_ms(), f"r{i}", "-", "", "POST", path, operation, "", 401, "")
                for i, path in enumerate(paths)
            ]
            await SqlOpsStore(database).add_audit_events(events)
        finally:
            await database.close()

    asyncio.run(store())


def _imagejobs(*args: str) -> list[str]:
    return [sys.executable, "-m", "imagejobs", *args]


def test_an_audited_path_cannot_forge_a_line_of_the_audit_listing(sqlite_url: str) -> None:
    _store(sqlite_url, [FORGED])
    listed = subprocess.run(
        _imagejobs("audit", "--database-url", sqlite_url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == 1, listed.stdout
    assert all(c.isprintable() for c in lines[0])
    assert '"/v1/x\\n2026-01-01T00:00:00.000Z 1 acme/root DELETE' in lines[0]


def test_a_reader_that_stops_early_is_no_database_problem(sqlite_url: str) -> None:
    _store(sqlite_url, [f"/v1/p/image-servers/{i}" for i in range(2_000)])
    process = subprocess.Popen(
        _imagejobs("audit", "--database-url", sqlite_url, "--limit", "2000"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    process.stdout.readline()
    process.stdout.close()  # as `| head -1` does once it has its line
    _, errors = process.communicate(timeout=60)
    assert "database" not in errors
    assert "Traceback" not in errors


def test_a_route_named_by_its_method_and_path_is_not_said_twice(sqlite_url: str) -> None:
    # A login's line read "POST /v3/auth/tokens POST /v3/auth/tokens -> 201".
    _store(sqlite_url, ["/v3/auth/tokens"], operation="POST /v3/auth/tokens")
    listed = subprocess.run(
        _imagejobs("audit", "--database-url", sqlite_url),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert listed.stdout.count("/v3/auth/tokens") == 1, listed.stdout
    assert " - POST /v3/auth/tokens -> 401 (request r0)" in listed.stdout
