"""An outsider cannot grow the audit trail without bound: a mutating call without
credentials is answered 401 and audited, but such events are stored per process at most
UNAUTHENTICATED_PER_SECOND a second (after a burst), while every authenticated call's
event still is. Over HTTP against a real server, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from typing import Any

import httpx

from imagejobs.api.audit_trail import UNAUTHENTICATED_BURST, UNAUTHENTICATED_PER_SECOND
from tests.conftest import ServerProcess
from tests.engine_support import server_body
from tests.factories import OPERATOR_HEADERS, new_tenant
from tests.integration.http import signed_client

FLOOD = 1000


def _events(server: ServerProcess) -> list[dict[str, Any]]:
    url = server.base_url + "/_imagejobs/audit"
    events: list[dict[str, Any]] = []
    before: dict[str, str] = {}
    while True:
        page = httpx.get(url, params={"limit": "1000", **before}, headers=OPERATOR_HEADERS)
        assert page.status_code == 200, page.text
        batch = page.json()["events"]
        events += batch
        if len(batch) < 1000:
            return events
        before = {"before": batch[-1]["id"]}


def test_unauthenticated_calls_are_audited_within_a_budget(
    server: ServerProcess, database_url: str
) -> None:
    tenant = new_tenant(database_url)
    started = time.monotonic()
    with httpx.Client(base_url=server.base_url) as outsider:
        for i in range(FLOOD):
            answer = outsider.patch(
                f"/v1/flood-{i}/image-servers/actions/batch-delete", json={"items": ["1"]}
            )
            assert answer.status_code == 401
    elapsed = time.monotonic() - started
    created = signed_client(server.base_url, tenant).post(
        f"/v1/{tenant.project_id}/image-servers", json=server_body()
    )
    assert created.status_code == 200, created.text

    for _ in range(200):  # events are stored beside the answers, a moment later
        events = _events(server)
        if any(e["request_id"] == created.headers["x-request-id"] for e in events):
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the authenticated call was not audited")
    unauthenticated = [e for e in events if e["principal"] == "-"]
    assert all(e["status"] == 401 for e in unauthenticated)
    # The burst is stored whole; beyond it, the rate (plus a second of slack).
    assert len(unauthenticated) >= UNAUTHENTICATED_BURST
    assert len(unauthenticated) <= UNAUTHENTICATED_BURST + UNAUTHENTICATED_PER_SECOND * (
        elapsed + 1
    )
    server.assert_quiet_log()
