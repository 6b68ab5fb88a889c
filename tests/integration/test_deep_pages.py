"""Deep pages: one tenant paging deep in its project holds up no other tenant.

A page's cost grows with its offset (the database skips the rows one by one). Here every
deep read is held in the database layer (on SQLite in the reader thread that runs it, on
PostgreSQL holding its pooled connection) until the test lets it go, so what the other
tenant sees while a deep read is in progress is checked by order of events, not by time.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

import httpx
import pytest
from huaweicloudsdkworkspaceapp.v1 import (
    ListImageJobsRequest,
    ListImageJobsResponse,
    ListImageServersRequest,
)

from imagejobs.storage.database import PostgresDatabase, SqliteDatabase
from imagejobs.testing import Cloud, serve
from imagejobs.testing.cloud import Tenant
from tests.integration.http import AkSkAuth

DEEP = 5  # deep_page_offset for these tests
WAIT = 30.0  # a bound on waits that only a failing test reaches


class HeldDeepReads:
    """Holds the first deep read where the database runs it, until ``release``."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self._first = threading.Lock()
        self.held_on_loop = False
        self.holding = False  # the held read is waiting now

    def should_hold(self) -> bool:
        return self._first.acquire(blocking=False)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        held = self
        read_deep = SqliteDatabase._read_deep
        fetch_on = PostgresDatabase._fetch_on

        def sqlite_read_deep(self: SqliteDatabase, *args: Any) -> Any:
            if held.should_hold():
                held.held_on_loop = _on_event_loop()
                held.holding = True
                held.started.set()
                held.release.wait(WAIT)
                held.holding = False
            return read_deep(self, *args)

        async def postgres_fetch_on(self: PostgresDatabase, *args: Any) -> Any:
            if held.should_hold():
                held.holding = True
                held.started.set()
                await asyncio.to_thread(held.release.wait, WAIT)
                held.holding = False
            return await fetch_on(self, *args)

        monkeypatch.setattr(SqliteDatabase, "_read_deep", sqlite_read_deep)
        monkeypatch.setattr(PostgresDatabase, "_fetch_on", postgres_fetch_on)


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> HeldDeepReads:
    held = HeldDeepReads()
    held.install(monkeypatch)
    return held


@pytest.fixture
def cloud(database_url: str, held: HeldDeepReads) -> Iterator[Cloud]:
    with serve(database_url=database_url, deep_page_offset=DEEP, deep_page_queue=1) as cloud:
        try:
            yield cloud
        finally:
            held.release.set()


def jobs_state(project_id: str, first_id: int, count: int) -> dict[str, Any]:
    return {
        "project_id": project_id,
        "servers": [],
        "jobs": [
            {
                "id": str(first_id + n),
                "job_type": "CREATE_SERVER",
                "status": "SUCCESS",
                "begin_time": 1_700_000_000_000 + n,
                "end_time": 1_700_000_060_000 + n,
            }
            for n in range(count)
        ],
    }


def one_refused(more: list[Future[httpx.Response]], timeout: float) -> Future[httpx.Response]:
    """Of two more deep reads of an account whose first is held, one is refused at once
    (the gateway's throttling answer) and one waits its turn: that one is returned."""
    done, _ = wait(more, timeout=timeout, return_when=FIRST_COMPLETED)
    assert len(done) == 1, "every read waited for a deep-read thread; none was refused"
    (refused,) = done
    answer = refused.result()
    assert answer.status_code == 429, answer.text
    assert answer.headers["Retry-After"] == "1"
    assert answer.json() == {
        "error_code": "APIGW.0308",
        "error_msg": "The throttling threshold has been reached:"
        " policy deep page over ratelimit,limit:2,time:in flight",
    }
    (queued,) = [f for f in more if f is not refused]
    return queued


def lister(cloud: Cloud, tenant: Tenant) -> Callable[[int], ListImageJobsResponse]:
    def list_page(offset: int) -> ListImageJobsResponse:
        request = ListImageJobsRequest(job_type="CREATE_SERVER", offset=offset, limit=10)
        response: ListImageJobsResponse = cloud.client(tenant).list_image_jobs(request)
        return response

    return list_page


def test_another_tenant_is_served_while_one_reads_deep_pages(
    cloud: Cloud, held: HeldDeepReads
) -> None:
    a, b = cloud.tenant(), cloud.tenant()
    cloud.load(jobs_state(a.project_id, 770_000_000_000_000_000, 12))
    cloud.load(jobs_state(b.project_id, 780_000_000_000_000_000, 3))
    list_a, list_b = lister(cloud, a), lister(cloud, b)

    with ThreadPoolExecutor(4) as pool:
        deep_a = pool.submit(list_a, 10)
        assert held.started.wait(WAIT), "the deep page never reached a deep read"
        assert not held.held_on_loop, "a deep read ran on the event loop"

        # Tenant A sends two more deep pages: one waits its turn, one is refused (the
        # gateway's throttling answer; the SDK sees its status only, so plain HTTP here).
        auth = AkSkAuth(a.access_key, a.secret_key)
        url = f"{cloud.endpoint}/v1/{a.project_id}/image-server-jobs"
        query = {"job_type": "CREATE_SERVER", "offset": "8", "limit": "10"}
        more: list[Future[httpx.Response]] = [
            pool.submit(httpx.get, url, params=query, auth=auth, timeout=WAIT) for _ in range(2)
        ]
        queued = one_refused(more, WAIT)

        # Meanwhile tenant B lists its jobs, a first page and a deep one, as usual.
        first_b = list_b(0)
        assert first_b.count == 3
        assert [j.id for j in first_b.items] == [
            str(780_000_000_000_000_000 + n) for n in (2, 1, 0)
        ]
        deep_b = list_b(DEEP)
        assert (deep_b.count, deep_b.items) == (3, [])
        assert not deep_a.done(), "tenant B waited for tenant A's deep page"
        assert not queued.done(), "tenant A's pages did not take turns"

        held.release.set()
        page = deep_a.result(WAIT)
        assert page.count == 12
        assert [j.id for j in page.items] == [str(770_000_000_000_000_000 + n) for n in (1, 0)]
        assert [j["id"] for j in queued.result(WAIT).json()["items"]] == [
            str(770_000_000_000_000_000 + n) for n in (3, 2, 1, 0)
        ]


def test_a_server_name_filter_is_read_as_a_deep_page(cloud: Cloud, held: HeldDeepReads) -> None:
    """No index serves a substring: a name filter tests every server of the project, so it
    is read like a deep page, and the other tenant is served meanwhile."""
    a, b = cloud.tenant(), cloud.tenant()
    first = 800_000_000_000_000_000
    servers = [
        {
            "id": str(first + n),
            "name": f"golden-{n}",
            "status": "ACTIVE",
            "image_ref": {"id": "da02e5ca-c6ec-4685-8ecb-f116bb5bdd2c", "image_type": "public"},
            "create_time": 1_700_000_000_000,
            "update_time": 1_700_000_000_000,
        }
        for n in range(3)
    ]
    cloud.load({"project_id": a.project_id, "servers": servers, "jobs": []})
    cloud.load(jobs_state(b.project_id, 810_000_000_000_000_000, 2))

    def by_name() -> Any:
        request = ListImageServersRequest(server_name="golden-1")
        return cloud.client(a).list_image_servers(request)

    with ThreadPoolExecutor(2) as pool:
        filtered = pool.submit(by_name)
        assert held.started.wait(WAIT), "the name filter never reached a deep read"
        assert not held.held_on_loop, "a name filter ran on the event loop"
        assert lister(cloud, b)(0).count == 2
        assert not filtered.done(), "tenant B waited for tenant A's name filter"
        held.release.set()
        found = filtered.result(WAIT)
        assert (found.count, [s.id for s in found.items]) == (1, [str(first + 1)])


def test_metrics_counts_are_read_as_a_deep_page(cloud: Cloud, held: HeldDeepReads) -> None:
    """/metrics needs no credentials and its job counts sum the whole counters table (a row
    per project, type and status): that read runs off the loop, and tenants are served
    while it runs."""
    tenant = cloud.tenant()
    cloud.load(jobs_state(tenant.project_id, 820_000_000_000_000_000, 2))
    with ThreadPoolExecutor(1) as pool:
        scrape = pool.submit(httpx.get, f"{cloud.endpoint}/metrics", timeout=WAIT)
        assert held.started.wait(WAIT), "the scrape never reached a deep read"
        assert not held.held_on_loop, "the metrics' counts were read on the event loop"
        assert lister(cloud, tenant)(0).count == 2
        assert held.holding, "the tenant waited for the metrics' counts"
        held.release.set()
        assert scrape.result(WAIT).status_code == 200


def test_a_deep_page_past_the_statement_timeout_is_answered_503_and_others_go_on(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database's statement timeout bounds a deep read on SQLite as on PostgreSQL:
    the documented 503, and the service goes on. Every deep read here is made a statement
    that would run for minutes (SLOW), where the database runs it."""
    from tests.contract.test_deep_read_limit import SLOW

    read_deep = SqliteDatabase._read_deep
    fetch_on = PostgresDatabase._fetch_on

    def sqlite_read_deep(self: SqliteDatabase, statement: Any, args: Any, *rest: Any) -> Any:
        return read_deep(self, SLOW["sqlite"], (), *rest)

    async def postgres_fetch_on(self: PostgresDatabase, connection: Any, *args: Any) -> Any:
        return await fetch_on(self, connection, SLOW["postgresql"], ())

    monkeypatch.setattr(SqliteDatabase, "_read_deep", sqlite_read_deep)
    monkeypatch.setattr(PostgresDatabase, "_fetch_on", postgres_fetch_on)
    with serve(
        database_url=database_url,
        deep_page_offset=DEEP,
        database_statement_timeout_seconds=0.5,
        metrics=False,  # /metrics' counts are deep reads too
    ) as cloud:
        tenant = cloud.tenant()
        cloud.load(jobs_state(tenant.project_id, 830_000_000_000_000_000, 3))
        auth = AkSkAuth(tenant.access_key, tenant.secret_key)
        url = f"{cloud.endpoint}/v1/{tenant.project_id}/image-server-jobs"
        deep = httpx.get(
            url, params={"job_type": "CREATE_SERVER", "offset": str(DEEP)}, auth=auth, timeout=WAIT
        )
        assert deep.status_code == 503
        assert deep.json() == {
            "error_code": "WKS.00050902",
            "error_msg": "The service is now unavailable to process the request.",
        }
        assert deep.headers["X-Request-Id"]
        assert lister(cloud, tenant)(0).count == 3


def test_a_roots_audit_reads_take_turns(cloud: Cloud, held: HeldDeepReads) -> None:
    """A page of the audit trail (up to 1,000 events) is a deep read, and a root asked for
    as many as it liked at once: 64 of them waited for the two deep-read threads, holding
    every place in flight, and 34-47% of another tenant's lists were answered 503. They take
    turns with the account's deep pages now: one read, one waiting, the rest 429."""
    a, b = cloud.tenant(), cloud.tenant()
    url = f"{cloud.endpoint}/_imagejobs/audit"
    auth = AkSkAuth(a.access_key, a.secret_key)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(httpx.get, url, params={"limit": "1000"}, auth=auth, timeout=WAIT)
        assert held.started.wait(WAIT), "the audit page never reached a deep read"
        assert not held.held_on_loop, "the audit page was read on the event loop"
        more = [pool.submit(httpx.get, url, auth=auth, timeout=WAIT) for _ in range(2)]
        queued = one_refused(more, 10)
        # Another account's root reads its own trail meanwhile.
        other = httpx.get(url, auth=AkSkAuth(b.access_key, b.secret_key), timeout=WAIT)
        assert (other.status_code, other.json()) == (200, {"events": []})
        assert not first.done(), "another account waited for the root's audit read"
        assert not queued.done(), "the root's audit reads did not take turns"
        held.release.set()
        assert first.result(WAIT).status_code == 200
        assert queued.result(WAIT).status_code == 200
