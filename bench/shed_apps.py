"""The ASGI apps bench/refusal.py serves with Granian to price a refusal.

``floor``: the cheapest refusal Python can give under Granian, a raw ASGI callable that
answers every request with a constant 503 body (two ``send`` calls, nothing else).
``edge``: imagejobs' own edge (``imagejobs.api.edge.Edge``, metrics and access log on, as
shipped) held at its in-flight bound, so that it refuses every request as it would under
overload; the app behind it is never reached.
``service``: the whole service as `imagejobs serve` builds it (settings from the
environment, its database opened, its heap as large), held at its in-flight bound.

    granian --interface asgi --working-dir bench shed_apps:floor
    granian --interface asgi --factory --working-dir bench shed_apps:edge
    IMAGEJOBS_DATABASE_URL=... granian --interface asgi --factory --working-dir bench \
        shed_apps:service
"""

from __future__ import annotations

from typing import Any

BODY = (
    b'{"error_code":"WKS.00050902",'
    b'"error_msg":"The service is now unavailable to process the request."}'
)
_START = {
    "type": "http.response.start",
    "status": 503,
    "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(BODY)).encode()),
    ],
}
_BODY = {"type": "http.response.body", "body": BODY}


async def floor(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await send(_START)
        await send(_BODY)
        return
    if scope["type"] == "lifespan":
        while (await receive())["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})


def edge() -> Any:
    """The shipped edge, full: every request finds the in-flight bound reached."""
    from imagejobs.api.edge import Edge
    from imagejobs.observability import AccessLog, Metrics

    async def never(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await floor(scope, receive, send)
            return
        raise AssertionError("the edge admitted a request")

    app = Edge(never, metrics=Metrics(), access_log=AccessLog(), max_in_flight=1)
    app.in_flight = 1
    return app


def service() -> Any:
    """The service as served, its edge full (``IMAGEJOBS_MAX_IN_FLIGHT`` requests held)."""
    from imagejobs.bootstrap import asgi_app
    from imagejobs.settings import load_settings

    app = asgi_app()
    app.in_flight = load_settings().max_in_flight
    return app
