"""The audit trail's retention as operators run it: a real server deletes events past
IMAGEJOBS_AUDIT_RETENTION_DAYS by itself, in batches, while it keeps answering, and counts
them in /metrics; `imagejobs audit purge` does it now; a bad setting is refused at start.
On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from imagejobs.domain.ids import IdGenerator
from imagejobs.domain.times import now_ms
from imagejobs.services.audit_retention import DAY_MS
from imagejobs.storage.database import database_for
from imagejobs.storage.ops_store import AuditEvent, SqlOpsStore
from tests.conftest import ServerProcess
from tests.engine_support import server_body
from tests.factories import OPERATOR_HEADERS, new_tenant
from tests.integration.http import signed_client
from tests.integration.test_operations import metric_samples

OLD = 1500


def _store_events(database_url: str, days_ago: float, n: int, prefix: str) -> None:
    then = now_ms() - int(days_ago * DAY_MS)

    async def store() -> None:
        database = database_for(database_url)
        await database.open()
        try:
            ops = SqlOpsStore(database, IdGenerator(clock_ms=lambda: then))
            await ops.add_audit_events(
                [
                    AuditEvent(
                        0,
                        then,
                        f"{prefix}-{i}",
                        "acme/root",
                        "acme",
                        "DELETE",
                        "/v1/p/image-servers/1",
                        "DeleteImageServer",
                        "p",
                        200,
                        "",
                    )
                    for i in range(n)
                ]
            )
        finally:
            await database.close()

    asyncio.run(store())


def _request_ids(base_url: str) -> set[str]:
    """Every stored event's request id, read page by page as an operator."""
    ids: set[str] = set()
    before: dict[str, str] = {}
    while True:
        page = httpx.get(
            base_url + "/_imagejobs/audit",
            params={"limit": "1000", **before},
            headers=OPERATOR_HEADERS,
        )
        assert page.status_code == 200, page.text
        events = page.json()["events"]
        ids |= {e["request_id"] for e in events}
        if len(events) < 1000:
            return ids
        before = {"before": events[-1]["id"]}


def test_a_server_purges_old_events_by_itself_and_keeps_answering(
    database_url: str, tmp_path: Path
) -> None:
    tenant = new_tenant(database_url)
    _store_events(database_url, 120, OLD, "old")
    _store_events(database_url, 10, 3, "recent")
    server = ServerProcess(
        database_url,
        tmp_path,
        extra_env={
            "IMAGEJOBS_AUDIT_RETENTION_DAYS": "30",
            "IMAGEJOBS_AUDIT_PURGE_SECONDS": "0.2",
            "IMAGEJOBS_AUDIT_PURGE_BATCH": "100",  # 15 batches
        },
    )
    try:
        client = signed_client(server.base_url, tenant)
        created = client.post(f"/v1/{tenant.project_id}/image-servers", json=server_body())
        assert created.status_code == 200, created.text
        request_id = created.headers["x-request-id"]
        for _ in range(600):  # the purge runs by itself; the service answers meanwhile
            listed = client.get(f"/v1/{tenant.project_id}/image-server-jobs?job_type=CREATE_SERVER")
            assert listed.status_code == 200, listed.text
            remaining = _request_ids(server.base_url)
            if not any(r.startswith("old-") for r in remaining) and request_id in remaining:
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"old events still there: {len(remaining)} events")
        assert {f"recent-{i}" for i in range(3)} <= remaining
        samples = metric_samples(server.base_url)
        assert samples[("imagejobs_audit_events_purged_total", ())] == OLD
        server.assert_quiet_log()
    finally:
        server.stop()


def test_retention_zero_keeps_every_event(database_url: str, tmp_path: Path) -> None:
    _store_events(database_url, 3650, 20, "old")
    server = ServerProcess(
        database_url,
        tmp_path,
        extra_env={"IMAGEJOBS_AUDIT_RETENTION_DAYS": "0", "IMAGEJOBS_AUDIT_PURGE_SECONDS": "0.1"},
    )
    try:
        time.sleep(1)  # ten purge intervals: none runs
        assert _request_ids(server.base_url) == {f"old-{i}" for i in range(20)}
        samples = metric_samples(server.base_url)
        assert samples[("imagejobs_audit_events_purged_total", ())] == 0
    finally:
        server.stop()


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imagejobs", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )


def _stored(database_url: str) -> set[str]:
    async def read() -> set[str]:
        database = database_for(database_url)
        await database.open()
        try:
            return {e.request_id for e in await SqlOpsStore(database).audit_events(10_000)}
        finally:
            await database.close()

    return asyncio.run(read())


def test_the_operator_purges_now_with_the_cli(database_url: str) -> None:
    _store_events(database_url, 400, 30, "older")
    _store_events(database_url, 60, 20, "old")
    _store_events(database_url, 1, 5, "recent")
    url = ["--database-url", database_url]

    kept = _cli("audit", "purge", *url, env={"IMAGEJOBS_AUDIT_RETENTION_DAYS": "0"})
    assert kept.returncode == 0, kept.stderr
    assert "nothing deleted" in kept.stdout
    assert len(_stored(database_url)) == 55

    by_setting = _cli("audit", "purge", *url, env={"IMAGEJOBS_AUDIT_PURGE_BATCH": "7"})
    assert by_setting.returncode == 0, by_setting.stderr
    assert by_setting.stdout.strip() == "deleted 30 audit events older than 90 days"

    by_flag = _cli("audit", "purge", *url, "--older-than-days", "30")
    assert by_flag.returncode == 0, by_flag.stderr
    assert by_flag.stdout.strip() == "deleted 20 audit events older than 30 days"
    assert _stored(database_url) == {f"recent-{i}" for i in range(5)}

    listed = _cli("audit", *url, "--limit", "2")  # the listing is still `imagejobs audit`
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.splitlines()) == 2


def test_bad_retention_settings_are_refused_with_a_clear_error(sqlite_url: str) -> None:
    cases = {
        "IMAGEJOBS_AUDIT_RETENTION_DAYS": ("-1", "must be a whole number of days from 0"),
        "IMAGEJOBS_AUDIT_PURGE_SECONDS": ("0", "must be from 0.1 to 86400 seconds, not 0"),
        "IMAGEJOBS_AUDIT_PURGE_BATCH": ("0", "must be from 1 to 100000 events, not 0"),
    }
    for name, (value, reason) in cases.items():
        answer = _cli("audit", "purge", "--database-url", sqlite_url, env={name: value})
        assert answer.returncode == 2
        assert f"{name} {reason}" in answer.stderr
        assert "Traceback" not in answer.stderr
    for value in ("90d", "1.5"):
        answer = _cli(
            "serve",
            "--database-url",
            sqlite_url,
            env={"IMAGEJOBS_AUDIT_RETENTION_DAYS": value},
        )
        assert answer.returncode == 2
        assert f"IMAGEJOBS_AUDIT_RETENTION_DAYS must be a whole number, not '{value}'" in (
            answer.stderr
        )
    too_long = _cli("audit", "purge", "--database-url", sqlite_url, "--older-than-days", "0")
    assert too_long.returncode == 2
    assert "--older-than-days" in too_long.stderr
