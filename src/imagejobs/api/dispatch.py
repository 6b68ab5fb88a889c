"""The application: Starlette, with the public operations found by a table lookup ahead of
Starlette's middleware and router (the hot path; everything else takes the general one)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

# A route's path split at "/", a parameter's segment as None: "/v1/{project_id}/x" ->
# ("", "v1", None, "x"), its parameters as (segment index, name).
_Shape = tuple[str | None, ...]
_Candidate = tuple[_Shape, tuple[tuple[int, str], ...], Route]


class OperationTable:
    """Finds the route of a path made of literal segments and whole-segment parameters."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self._by_length: dict[int, list[_Candidate]] = {}
        for route in routes:
            segments = route.path.split("/")
            shape = tuple(None if s.startswith("{") else s for s in segments)
            names = tuple((i, s[1:-1]) for i, s in enumerate(segments) if s.startswith("{"))
            self._by_length.setdefault(len(segments), []).append((shape, names, route))

    def match(self, path: str, method: str) -> tuple[Route, dict[str, Any]] | None:
        """The first route, in table order, for this path and method, with its path
        parameters; None otherwise (Starlette then answers: 404, 405, other routes)."""
        segments = path.split("/")
        for shape, names, route in self._by_length.get(len(segments), ()):
            if method in (route.methods or ()) and all(
                s is None or s == t for s, t in zip(shape, segments, strict=True)
            ):
                params = {name: segments[i] for i, name in names}
                return (route, params) if all(params.values()) else None
        return None


class ImageJobsApp(Starlette):
    """A /v1 request costs Starlette's own two middlewares, a regex per route and its
    request wrappers about a tenth of its time; ``OperationTable`` finds the same endpoint,
    which answers every error itself, so only the app's own middleware (``middleware=``)
    runs around it."""

    def __init__(self, operations: Sequence[Route], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.operations = OperationTable(operations)
        self._operation_stack: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            found = self.operations.match(scope["path"], scope["method"])
            if found is not None:
                route, scope["path_params"] = found
                scope["app"] = self
                scope["route"] = route  # as Starlette's router sets it
                scope["endpoint"] = route.endpoint
                if self._operation_stack is None:
                    stack: ASGIApp = _run_endpoint
                    for cls, args, kwargs in reversed(self.user_middleware):
                        stack = cls(stack, *args, **kwargs)
                    self._operation_stack = stack
                await self._operation_stack(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


async def _run_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    response = await scope["endpoint"](Request(scope, receive, send))
    await response(scope, receive, send)
