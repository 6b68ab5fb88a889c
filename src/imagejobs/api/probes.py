"""What load balancers and monitoring ask, without credentials:

    GET /_imagejobs/ready   ready to serve? database reachable, schema current, runner
                            heartbeating: 200, or 503 naming the part that is not
    GET /metrics            Prometheus metrics (observability.py)

Neither says anything about a tenant: counts are summed over every project.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from imagejobs import __version__
from imagejobs.api.errors import guarded
from imagejobs.domain.errors import ImageJobsError
from imagejobs.domain.times import now_ms
from imagejobs.observability import EngineCounts, Metrics
from imagejobs.storage.ops_store import SqlOpsStore

READY_PATH = "/_imagejobs/ready"
METRICS_PATH = "/metrics"
# A probe must answer quickly even when the database does not.
_PROBE_TIMEOUT_SECONDS = 1.0
# The engine's counts sum whole tables (~0.4 s at 20,000 projects on SQLite) and /metrics
# needs no credentials: they are read at most this often (IMAGEJOBS_METRICS_COUNTS_MAX_AGE_
# SECONDS), by one scrape at a time.
COUNTS_MAX_AGE_SECONDS = 5.0


class Check(msgspec.Struct, omit_defaults=True):
    status: str  # "ok", or what is wrong
    detail: str | None = None


class Readiness(msgspec.Struct):
    status: str  # "ready" or "not ready"
    version: str
    checks: dict[str, Check]


@dataclass(frozen=True, slots=True)
class RunnerState:
    """How readiness sees the embedded runner: seconds since its last heartbeat, or None
    when it has stopped."""

    since_heartbeat: Callable[[], float | None]
    stale_after_seconds: float


_encode = msgspec.json.Encoder().encode


class SharedCounts:
    """The engine's counts, read again only once ``max_age`` seconds old; scrapes that
    arrive while a read runs wait for that read instead of starting another, so however
    often /metrics is asked, the database sums its tables at most once per ``max_age``."""

    def __init__(
        self,
        read: Callable[[], Awaitable[EngineCounts]],
        max_age: float = COUNTS_MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._max_age = max_age
        self._clock = clock
        self._counts: EngineCounts | None = None
        self._at = 0.0
        self._reading: asyncio.Task[None] | None = None

    async def get(self) -> EngineCounts:
        if self._counts is not None and self._clock() - self._at < self._max_age:
            return self._counts
        if self._reading is None:
            self._reading = asyncio.ensure_future(self._refresh())
        # A scrape that times out leaves the read running for the next one.
        await asyncio.shield(self._reading)
        assert self._counts is not None
        return self._counts

    async def _refresh(self) -> None:
        try:
            counts = await self._read()
            self._counts, self._at = counts, self._clock()
        finally:
            self._reading = None


class SharedRender:
    """The Prometheus text, rendered on a thread (milliseconds of Python: as
    prometheus_client's own server renders, so the loop serves others meanwhile). Scrapes
    that arrive while a render runs share it instead of starting another: /metrics needs
    no credentials, and 256 connections scraping back to back each rendered on their own,
    holding the GIL most of the time (bench/README.md, hostile_floods.py)."""

    def __init__(self, render: Callable[[], bytes]) -> None:
        self._render = render
        self._running: asyncio.Future[bytes] | None = None

    async def get(self) -> bytes:
        if self._running is None:
            running = asyncio.ensure_future(asyncio.to_thread(self._render))
            self._running = running
            running.add_done_callback(self._done)
        # A scrape that goes away leaves the render running for the others.
        return await asyncio.shield(self._running)

    def _done(self, finished: asyncio.Future[bytes]) -> None:
        if self._running is finished:
            self._running = None


def probe_routes(
    ops: SqlOpsStore,
    head_revision: str,
    runner: RunnerState | None,
    metrics: Metrics | None,
    counts_max_age: float = COUNTS_MAX_AGE_SECONDS,
) -> list[BaseRoute]:
    async def ready(request: Request) -> Response:
        checks = {"database": Check("ok"), "schema": Check("ok")}
        try:
            async with asyncio.timeout(_PROBE_TIMEOUT_SECONDS):
                revision = await ops.schema_revision()
            if revision != head_revision:
                checks["schema"] = Check("outdated", f"at {revision}, expected {head_revision}")
        except (ImageJobsError, TimeoutError, OSError) as exc:
            checks["database"] = Check("unreachable", type(exc).__name__)
            checks["schema"] = Check("unknown")
        if runner is None:
            checks["runner"] = Check("ok", "no embedded runner")
        else:
            since = runner.since_heartbeat()
            if since is None:
                checks["runner"] = Check("stopped")
            elif since > runner.stale_after_seconds:
                checks["runner"] = Check("stale", f"last heartbeat {since:.1f} s ago")
            else:
                checks["runner"] = Check("ok")
        ok = all(check.status == "ok" for check in checks.values())
        body = Readiness("ready" if ok else "not ready", __version__, checks)
        return Response(_encode(body), 200 if ok else 503, media_type="application/json")

    routes: list[BaseRoute] = [Route(READY_PATH, guarded(ready), methods=["GET"])]
    if metrics is not None:
        counts = SharedCounts(lambda: ops.engine_counts(now_ms()), counts_max_age)
        render = SharedRender(lambda: render_metrics(metrics))

        async def scrape(request: Request) -> Response:
            try:
                async with asyncio.timeout(_PROBE_TIMEOUT_SECONDS):
                    metrics.set_engine_counts(await counts.get())
            except (ImageJobsError, TimeoutError, OSError):
                pass  # the database is away: the other metrics are what matters now
            return Response(await render.get(), media_type=CONTENT_TYPE_LATEST)

        routes.append(Route(METRICS_PATH, guarded(scrape), methods=["GET"]))
    return routes


def render_metrics(metrics: Metrics) -> bytes:
    """/metrics' body (a name of its own: a test holds it where it runs)."""
    return metrics.render()


def runner_state(heartbeat_at: Callable[[], float | None], lease_seconds: float) -> RunnerState:
    """Readiness of a runner whose last heartbeat (monotonic) ``heartbeat_at`` gives."""

    def since() -> float | None:
        at = heartbeat_at()
        return None if at is None else time.monotonic() - at

    # A heartbeat is due every third of a lease: a whole lease without one is a problem.
    return RunnerState(since, lease_seconds)
