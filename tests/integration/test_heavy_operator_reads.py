"""An audit page of 1,000 events and a /metrics scrape hold up no tenant: their rendering
runs on a thread. Each render is held here, where it runs, until the test lets it go, so
what another tenant sees meanwhile is checked by order of events, not by time."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

import imagejobs.api.audit
import imagejobs.api.probes
from imagejobs.testing import Cloud, serve
from tests.integration.test_deep_pages import WAIT, jobs_state, lister


class HeldRender:
    """Holds the first call of a render function where it runs, until ``release``."""

    def __init__(self, render: Callable[..., bytes]) -> None:
        self.render = render
        self.started = threading.Event()
        self.release = threading.Event()
        self.on_loop = False
        self.holding = False
        self._first = threading.Lock()

    def __call__(self, *args: Any) -> bytes:
        if self._first.acquire(blocking=False):
            try:
                asyncio.get_running_loop()
                self.on_loop = True
            except RuntimeError:
                pass
            self.holding = True
            self.started.set()
            self.release.wait(WAIT)
            self.holding = False
        return self.render(*args)


@pytest.fixture
def cloud(database_url: str) -> Iterator[Cloud]:
    with serve(database_url=database_url) as cloud:
        yield cloud


def _served_meanwhile(cloud: Cloud, held: HeldRender, url: str, **kwargs: Any) -> httpx.Response:
    """Ask ``url`` (a held render), list another tenant's jobs while it is held, then let
    it go; its answer."""
    tenant = cloud.tenant()
    cloud.load(jobs_state(tenant.project_id, 840_000_000_000_000_000, 2))
    with ThreadPoolExecutor(1) as pool:
        heavy = pool.submit(httpx.get, url, timeout=WAIT, **kwargs)
        try:
            assert held.started.wait(WAIT), "the render was never reached"
            assert not held.on_loop, "the render ran on the event loop"
            assert lister(cloud, tenant)(0).count == 2
            assert held.holding, "the tenant waited for the render"
            assert not heavy.done()
        finally:
            held.release.set()
        return heavy.result(WAIT)


def test_a_tenant_is_served_while_a_big_audit_page_is_rendered(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = HeldRender(imagejobs.api.audit.audit_page)
    monkeypatch.setattr(imagejobs.api.audit, "audit_page", held)
    for _ in range(3):  # each a mutating call: an audit event
        cloud.tenant()
    operator = {"X-Imagejobs-Operator-Token": cloud.settings.operator_token}
    url = f"{cloud.endpoint}/_imagejobs/audit?limit=1000"
    answer = _served_meanwhile(cloud, held, url, headers=operator)
    assert answer.status_code == 200
    events = answer.json()["events"]
    assert len(events) >= 3
    assert [e["id"] for e in events] == sorted((e["id"] for e in events), reverse=True)
    assert {e["operation"] for e in events} >= {"POST /_imagejobs/tenants"}
    assert set(events[0]) == {
        "id",
        "time",
        "request_id",
        "principal",
        "account_id",
        "method",
        "path",
        "operation",
        "project_id",
        "status",
        "error_code",
        "dropped",
    }


def test_a_tenant_is_served_while_the_metrics_are_rendered(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = HeldRender(imagejobs.api.probes.render_metrics)
    monkeypatch.setattr(imagejobs.api.probes, "render_metrics", held)
    answer = _served_meanwhile(cloud, held, f"{cloud.endpoint}/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=")
    assert "imagejobs_requests_total{" in answer.text
    assert 'imagejobs_jobs{job_type="CREATE_SERVER",status="SUCCESS"} 2.0' in answer.text
