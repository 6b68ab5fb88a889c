"""The ASGI application: the route table mounted on Starlette, plus /openapi.json and /docs."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.staticfiles import StaticFiles

from imagejobs.api.console import console_routes
from imagejobs.api.dispatch import ImageJobsApp
from imagejobs.api.docs import ASSETS_DIRECTORY, docs_page
from imagejobs.api.endpoint import OperationEndpoint
from imagejobs.api.errors import guarded, http_exception_handler, unhandled_exception_handler
from imagejobs.api.iam_routes import IAM_ROUTE_DOCS, IamApi
from imagejobs.api.input_guard import EdgeGuard
from imagejobs.api.openapi import build_openapi
from imagejobs.api.routes import ALL_OPERATIONS
from imagejobs.services import Services
from imagejobs.services.access import AccessControl, OpenAccess


def create_app(
    services: Services,
    *,
    access: AccessControl | None = None,
    iam_api: IamApi | None = None,
    extra_routes: list[BaseRoute] | None = None,
    on_startup: Callable[[], Awaitable[Any]] | None = None,
    on_shutdown: Callable[[], Awaitable[Any]] | None = None,
    body_read_timeout: float = 30.0,
) -> Starlette:
    with_iam = iam_api is not None

    async def openapi(request: Request) -> Response:
        # Built on the first request, not with the app: a test suite's many short-lived
        # apps never ask for it (a third of building one).
        return JSONResponse(_openapi_document(with_iam))

    access = access or OpenAccess()
    operations = [
        Route(
            op.path,
            OperationEndpoint(op, services, access, body_read_timeout),
            methods=[op.method],
        )
        for op in ALL_OPERATIONS
    ]
    routes: list[BaseRoute] = [*operations]
    routes += iam_api.routes() if iam_api else []
    routes += extra_routes or []
    routes += [
        Route("/openapi.json", guarded(openapi), methods=["GET"]),
        Route("/docs", guarded(docs_page), methods=["GET"]),
        Mount("/docs/assets", StaticFiles(directory=ASSETS_DIRECTORY)),
    ]
    routes += console_routes()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if on_startup is not None:
            await on_startup()
        yield
        if on_shutdown is not None:
            await on_shutdown()

    app = ImageJobsApp(
        operations,
        routes=routes,
        exception_handlers={
            HTTPException: http_exception_handler,
            Exception: unhandled_exception_handler,
        },
        lifespan=lifespan,
        middleware=[Middleware(EdgeGuard, body_read_timeout=body_read_timeout)],
    )
    # A trailing-slash redirect would answer without our error body and request id.
    assert isinstance(app.router, Router)
    app.router.redirect_slashes = False
    return app


@functools.cache
def _openapi_document(with_iam: bool) -> dict[str, Any]:
    return build_openapi(ALL_OPERATIONS, IAM_ROUTE_DOCS if with_iam else ())
