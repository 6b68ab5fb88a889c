"""The web console: ``/console`` serves one page whose JavaScript modules (shipped in
``console_assets/``, no build step) call the public API like any other client; ``GET /``
leads there. The page carries the route table, so the console never restates a path."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from imagejobs.api.errors import guarded
from imagejobs.api.iam_routes import IAM_ROUTE_DOCS
from imagejobs.api.routes import ALL_OPERATIONS

ASSETS_DIRECTORY = Path(__file__).parent / "console_assets"
_TEMPLATE = Path(__file__).parent / "console.html"
# Everything from this origin only: the console works offline and talks to no other host.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none';"
        " form-action 'self'; frame-ancestors 'none'"
    ),
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
}


def operations_table() -> dict[str, dict[str, str]]:
    """Method and path of every operation the console may call, by operation id."""
    table = {op.operation_id: {"method": op.method, "path": op.path} for op in ALL_OPERATIONS}
    table |= {doc.operation_id: {"method": doc.method, "path": doc.path} for doc in IAM_ROUTE_DOCS}
    return table


@cache
def _page() -> str:
    # "</" cannot end the inline JSON early: every "/" in it is escaped.
    table = json.dumps(operations_table(), sort_keys=True).replace("/", "\\/")
    return _TEMPLATE.read_text().replace("{{operations}}", table)


async def console_page(request: Request) -> Response:
    return HTMLResponse(_page(), headers=_HEADERS)


async def to_console(request: Request) -> Response:
    return RedirectResponse("/console", status_code=302)


def console_routes() -> list[BaseRoute]:
    return [
        Route("/", guarded(to_console), methods=["GET"]),
        Route("/console", guarded(console_page), methods=["GET"]),
        Mount("/console/assets", StaticFiles(directory=ASSETS_DIRECTORY)),
    ]
