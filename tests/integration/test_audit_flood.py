"""An outsider cannot grow the audit trail without bound: a mutating call without
credentials is answered 401 and audited, but such events are stored per process at most
UNAUTHENTICATED_PER_SECOND a second (after a burst), while every authenticated call's
event still is. Over HTTP against a real server, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from imagejobs.api.audit_trail import (
    DROPPED_OPERATION,
    UNAUTHENTICATED_BURST,
    UNAUTHENTICATED_PER_SECOND,
)
from tests.conftest import ServerProcess
from tests.engine_support import server_body
from tests.factories import OPERATOR_HEADERS, Tenant, new_tenant
from tests.integration.http import AkSkAuth, signed_client

FLOOD = 1000
AUDIT = "/_imagejobs/audit"


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
    # What was not stored is counted where an operator looks, by reason only.
    assert _dropped(server) == {
        "account_rate": 0,
        "unauthenticated_rate": FLOOD - len(unauthenticated),
        "database": 0,
    }
    server.assert_quiet_log()


def test_one_accounts_events_are_stored_within_a_budget_and_the_rest_counted(
    database_url: str, tmp_path: Path
) -> None:
    """An account's cheap calls (here a refused body, 400 before any work) were each
    stored: a tenant could grow the audit table by ~1 KB a request, as fast as one worker
    answers, and on SQLite make every audit write a longer hold of the write lock. Past its
    budget an account's events are counted in markers (operation AuditEventsDropped), so
    every event is either stored or counted, and other accounts' events are all stored."""
    burst, rate = 50, 5.0
    server = ServerProcess(
        database_url,
        tmp_path,
        extra_env={
            "IMAGEJOBS_AUDIT_ACCOUNT_BURST": str(burst),
            "IMAGEJOBS_AUDIT_ACCOUNT_RATE": str(rate),
        },
    )
    try:
        flooder, other = new_tenant(database_url), new_tenant(database_url)
        flood = 400
        started = time.monotonic()
        with httpx.Client(
            base_url=server.base_url, auth=AkSkAuth(flooder.access_key, flooder.secret_key)
        ) as client:
            for _ in range(flood):
                answer = client.patch(
                    f"/v1/{flooder.project_id}/image-servers/actions/batch-delete",
                    json={"items": []},
                )
                assert answer.status_code == 400
        elapsed = time.monotonic() - started

        account = _account_id(server, flooder)
        others: list[str] = []
        for _ in range(100):  # a marker is stored with a later event, a second apart
            created = signed_client(server.base_url, other).post(
                f"/v1/{other.project_id}/image-servers", json=server_body()
            )
            assert created.status_code == 200, created.text
            others.append(created.headers["x-request-id"])
            events = _events(server)
            mine = [e for e in events if e["account_id"] == account]
            stored = [e for e in mine if e["operation"] != DROPPED_OPERATION]
            dropped = sum(e["dropped"] for e in mine if e["operation"] == DROPPED_OPERATION)
            if len(stored) + dropped == flood and set(others) <= _request_ids(events):
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"{len(stored)} stored + {dropped} counted != {flood}")
        assert burst <= len(stored) <= burst + rate * (elapsed + 1)
        # The operator sees the drops in /metrics too (the markers are per account, the
        # counter is not: its label is the reason, of which there are three).
        assert _dropped(server) == {
            "account_rate": flood - len(stored),
            "unauthenticated_rate": 0,
            "database": 0,
        }
        markers = [e for e in mine if e["operation"] == DROPPED_OPERATION]
        assert all(m["status"] == 429 and m["principal"] == "imagejobs" for m in markers)
        # The account's root reads its markers too.
        own = signed_client(server.base_url, flooder).get(AUDIT, params={"limit": "1000"})
        assert {e["id"] for e in markers} <= {e["id"] for e in own.json()["events"]}
        server.assert_quiet_log()
    finally:
        server.stop()


def _dropped(server: ServerProcess) -> dict[str, float]:
    """imagejobs_audit_events_dropped_total by reason, as Prometheus would read /metrics."""
    scrape = httpx.get(server.base_url + "/metrics")
    assert scrape.status_code == 200, scrape.text
    families = {f.name: f for f in text_string_to_metric_families(scrape.text)}
    family = families["imagejobs_audit_events_dropped"]
    assert family.type == "counter"
    return {
        sample.labels["reason"]: sample.value
        for sample in family.samples
        if sample.name == "imagejobs_audit_events_dropped_total"
    }


def _account_id(server: ServerProcess, tenant: Tenant) -> str:
    answer = signed_client(server.base_url, tenant).get("/v3/auth/domains")
    assert answer.status_code == 200, answer.text
    return str(answer.json()["domains"][0]["id"])


def _request_ids(events: list[dict[str, Any]]) -> set[str]:
    return {e["request_id"] for e in events}
