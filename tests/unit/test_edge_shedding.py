"""The edge's admission by queueing delay, called as Granian calls it (ASGI), no server."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from imagejobs.api.edge import QUEUE_TARGET_SECONDS, Edge
from imagejobs.observability import Metrics


async def ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def call(edge: Edge, path: str = "/v1/p/image-server-jobs") -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "headers": [], "query_string": b""}
    await edge(scope, receive, send)
    return sent


def test_after_a_long_wait_on_the_loop_new_requests_are_refused_for_a_while() -> None:
    async def scenario() -> None:
        metrics = Metrics()
        edge = Edge(ok, metrics=metrics, max_in_flight=64)
        assert (await call(edge))[0]["status"] == 200

        # An admitted request whose turn on the loop comes late: the loop is busy.
        async def hog() -> None:
            time.sleep(QUEUE_TARGET_SECONDS * 2)

        admitted = asyncio.ensure_future(call(edge))
        await asyncio.sleep(0)  # it takes its place and yields its turn
        await hog()
        assert (await admitted)[0]["status"] == 200  # admitted requests are still served
        refused = await call(edge)
        assert refused[0]["status"] == 503
        assert refused[1]["body"].startswith(b'{"error_code":"WKS.00050902"')
        assert metrics.refusals.busy == 1
        # Probes are answered all the same.
        assert (await call(edge, "/_imagejobs/ready"))[0]["status"] == 200
        await asyncio.sleep(0.15)  # the shedding lasts a while, then admission resumes
        assert (await call(edge))[0]["status"] == 200

    asyncio.run(scenario())
