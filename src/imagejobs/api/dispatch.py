"""The application: Starlette, with the public operations found by a table lookup ahead of
Starlette's middleware and router (the hot path; everything else takes the general one)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

# A route's path split at "/", a parameter's segment as None: "/v1/{project_id}/x" ->
# ("", "v1", None, "x"), its parameters as (segment index, name).
_Shape = tuple[str | None, ...]
_Candidate = tuple[_Shape, tuple[tuple[int, str], ...], Route]
_MATCHED_MAX = 4096
# Longest path whose match is remembered: a valid one (ids of at most 128 characters) is
# far shorter, and 4,096 remembered 16 KiB paths (the head allows them, before any
# authentication) kept ~120 MB alive in each worker for anyone who can connect.
_MATCHED_PATH_MAX = 512


class OperationTable:
    """Finds the route of a path made of literal segments and whole-segment parameters."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self._by_length: dict[int, list[_Candidate]] = {}
        self._matched: dict[tuple[str, str], tuple[Route, dict[str, Any]]] = {}
        for route in routes:
            segments = route.path.split("/")
            shape = tuple(None if s.startswith("{") else s for s in segments)
            names = tuple((i, s[1:-1]) for i, s in enumerate(segments) if s.startswith("{"))
            self._by_length.setdefault(len(segments), []).append((shape, names, route))

    def match(self, path: str, method: str) -> tuple[Route, dict[str, Any]] | None:
        """The first route, in table order, for this path and method, with its path
        parameters; None otherwise (Starlette then answers: 404, 405, other routes)."""
        # Clients repeat their paths (one project, polling): each is matched once.
        found = self._matched.get((path, method))
        if found is None:
            found = self._match(path, method)
            if found is None:
                return None
            if len(path) > _MATCHED_PATH_MAX:
                return found[0], dict(found[1])
            if len(self._matched) >= _MATCHED_MAX:  # paths are the caller's: keep it small
                self._matched.clear()
            self._matched[(path, method)] = found
        return found[0], dict(found[1])

    def _match(self, path: str, method: str) -> tuple[Route, dict[str, Any]] | None:
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
    an ASGI app that applies the input guard itself and answers every error itself, and
    calls it directly: nothing else runs around it."""

    def __init__(self, operations: Sequence[Route], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.operations = OperationTable(operations)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            found = self.operations.match(scope["path"], scope["method"])
            if found is not None:
                route, scope["path_params"] = found
                scope["app"] = self
                scope["route"] = route  # as Starlette's router sets it
                scope["endpoint"] = endpoint = route.endpoint
                await endpoint(scope, receive, send)
                return
        await super().__call__(scope, receive, send)
