"""The edge every HTTP request passes first: it bounds the requests in flight and the size
of request heads, and records each answered request once (metrics, access line, and for
mutating calls the audit trail).

It wraps the whole ASGI app, so routing stays unaware of it. The operation a request ran
is read from the route Starlette matched (``scope["route"]``): names stay bounded.

Under overload most requests are refused, so a refusal must cost next to nothing: it is
decided by the first lines of Python a request reaches, answered from bytes built once
(only the request id is new), counted in a plain int, and logged one line a second for all
of them (bench/README.md, "refusal.py").
"""

from __future__ import annotations

import asyncio
import time

import msgspec
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imagejobs.api.audit_trail import AuditTrail
from imagejobs.api.errors import REQUEST_ID, error_response, new_request_id
from imagejobs.api.routes import ALL_OPERATIONS
from imagejobs.api.schemas import ErrorResponse, encoder
from imagejobs.domain.errors import HeadersTooLarge, ImageJobsError, ServiceUnavailable
from imagejobs.domain.times import format_now, now_ms
from imagejobs.observability import (
    CURRENT_REQUEST,
    AccessLine,
    AccessLog,
    Metrics,
    RefusalLine,
    Refusals,
    RequestNote,
)
from imagejobs.storage.ops_store import AuditEvent

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# The methods an operation's name (a metric label) may hold: any other is "unmatched".
_HTTP_METHODS = frozenset({"GET", "HEAD", "OPTIONS", *MUTATING})
# Probes and scrapes are answered even at the in-flight bound: a saturated process is
# still alive and ready, and its metrics matter most then. They take no place either: they
# need no credentials, and 256 scrapes (or, on PostgreSQL, readiness checks) held at once
# had most of the tenants' requests shed with 503.
UNBOUNDED_PATHS = frozenset({"/_imagejobs/health", "/_imagejobs/ready", "/metrics"})
_REQUEST_ID_HEADER = REQUEST_ID.lower().encode()
_OPERATION_NAMES = {(op.method, op.path): op.operation_id for op in ALL_OPERATIONS}
# A refusal at the in-flight bound, as error_response would build it, built once: the 503
# WKS.00050902 body; its headers with the request id, the one part made per refusal.
_BUSY = ServiceUnavailable()
_BUSY_BODY = encoder.encode(ErrorResponse(error_code=_BUSY.code, error_msg=_BUSY.message))
_BUSY_LENGTH = (b"content-length", str(len(_BUSY_BODY)).encode())
_BUSY_TYPE = (b"content-type", b"application/json")
_BUSY_BODY_MESSAGE: Message = {"type": "http.response.body", "body": _BUSY_BODY}
REFUSAL_LOG_SECONDS = 1.0  # refusals at the bound are logged as one line this often
_NO_PARAMS: dict[str, str] = {}
# What an access line and an audit event keep of a request's method, path and project.
_LOGGED_METHOD, _LOGGED_PATH, _LOGGED_PROJECT = 16, 512, 128


class _ErrorCode(msgspec.Struct):
    error_code: str = ""


_error_code = msgspec.json.Decoder(_ErrorCode)


class Edge:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics | None = None,
        access_log: AccessLog | None = None,
        audit: AuditTrail | None = None,
        max_in_flight: int = 0,
        max_header_bytes: int = 16_384,
    ) -> None:
        self.app = app
        self._metrics = metrics
        self._access_log = access_log
        self._max_in_flight = max_in_flight or 1 << 62
        self._max_header_bytes = max_header_bytes
        self.in_flight = 0
        self.refusals = metrics.refusals if metrics is not None else Refusals()
        self._busy_logged = 0  # refusals at the bound already in a refusal line
        self._busy_log_due = False
        self._names: dict[tuple[int, str], str] = {}
        self._audit_trail = audit
        if metrics is not None:
            metrics.in_flight.set_function(lambda: self.in_flight)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The shed path first, and as short as it can be: one comparison while not full.
        if (
            self.in_flight >= self._max_in_flight
            and scope["type"] == "http"
            and scope["path"] not in UNBOUNDED_PATHS
        ):
            length = _announced_body(scope)
            if not length:
                await self._refuse_busy(send)
                return
            # A body counts once it has fully arrived; if it is all here, refuse now
            # (Granian may give the whole body with more_body set, then an empty end).
            first = await receive()
            if not first.get("more_body", False) or 0 < length <= len(first.get("body", b"")):
                await self._refuse_busy(send)
                return
            receive = _replaying(first, receive)
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        bounded = scope["path"] not in UNBOUNDED_PATHS
        # A request is in flight once it has fully arrived: one still sending its body
        # holds no place (else a few dozen slow bodies would shed everyone else with 503;
        # the input guard's body timeout bounds how long they may take).
        # (One that has arrived and finds the bound reached was refused above.)
        head_bytes, arriving = _read_head(scope)
        if head_bytes > self._max_header_bytes:
            await self._refuse(scope, send, HeadersTooLarge(), started)
            return
        status = 500
        request_id = "-"
        error_body = b""
        audited = scope["method"] in MUTATING

        async def send_and_watch(message: Message) -> None:
            nonlocal status, request_id, error_body
            if message["type"] == "http.response.start":
                status = message["status"]
                # Every response of this app names its headers in lower case (ASGI's form).
                for name, value in message.get("headers", ()):
                    if name == _REQUEST_ID_HEADER:
                        request_id = value.decode("latin-1")
                        break
                else:  # not answered by a route of ours (a static file, Starlette's 404)
                    request_id, message = _with_request_id(message)
            elif audited and status >= 400 and not error_body:
                error_body = message.get("body", b"")
            await send(message)

        note = RequestNote()
        token = CURRENT_REQUEST.set(note)
        place = None
        try:
            if arriving:
                place = _Place(self, bounded)
                receive = place.taken_on_arrival(receive)
            elif bounded:
                # _Place.take inlined (every request without a body comes here): the bound
                # was checked above, with no await since, so the place is free.
                self.in_flight += 1
                await asyncio.sleep(0)  # the turn _Place.take explains
            await self.app(scope, receive, send_and_watch)
        finally:
            if place is None:
                if bounded:
                    self.in_flight -= 1
            else:
                place.release()
            CURRENT_REQUEST.reset(token)
            self._record(scope, status, request_id, note, started, error_body if audited else None)

    async def _refuse_busy(self, send: Send) -> None:
        """503 WKS.00050902 at the in-flight bound: the documented body and a fresh request
        id, sent from bytes built once; counted, and logged once a second with the others."""
        self.refusals.busy += 1
        if not self._busy_log_due and self._access_log is not None:
            self._busy_log_due = True
            asyncio.get_running_loop().call_later(REFUSAL_LOG_SECONDS, self._log_busy)
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (_REQUEST_ID_HEADER, new_request_id().encode()),
                    _BUSY_LENGTH,
                    _BUSY_TYPE,
                ],
            }
        )
        await send(_BUSY_BODY_MESSAGE)

    def _log_busy(self) -> None:
        """One line for the refusals at the bound since the last one."""
        self._busy_log_due = False
        count = self.refusals.busy - self._busy_logged
        if count and self._access_log is not None:
            self._busy_logged += count
            self._access_log.write(
                RefusalLine(
                    format_now(),
                    "refused",
                    _BUSY.status,
                    _BUSY.code,
                    count,
                    REFUSAL_LOG_SECONDS,
                )
            )

    async def _refuse(
        self, scope: Scope, send: Send, error: ImageJobsError, started: float
    ) -> None:
        """Answer at once, before any routing, parsing or database call."""
        request_id = new_request_id()
        response = error_response(error, request_id)
        self.refusals.headers += 1
        await response({"type": "http"}, _no_body, send)
        self._record(scope, error.status, request_id, RequestNote(), started, None, "refused")

    def _operation(self, scope: Scope) -> str:
        route = scope.get("route")
        method: str = scope["method"]
        if route is None:
            return "unmatched"
        key = (id(route), method)
        name = self._names.get(key)
        if name is None:
            methods = getattr(route, "methods", None)
            if method not in _HTTP_METHODS or (methods is not None and method not in methods):
                # Neither remembered nor a metric label of its own: the method is the
                # caller's text (any token, up to the head's size). A name per method kept
                # 14 KiB for each new one, and a mount (no methods: /console/assets) made
                # it the label of 16 new series on /metrics, before any authentication.
                return "unmatched"
            template: str = getattr(route, "path", "")
            name = _OPERATION_NAMES.get((method, template)) or f"{method} {template}"
            self._names[key] = name
        return name

    def _record(
        self,
        scope: Scope,
        status: int,
        request_id: str,
        note: RequestNote,
        started: float,
        error_body: bytes | None,
        operation: str | None = None,
    ) -> None:
        seconds = time.perf_counter() - started
        operation = operation or self._operation(scope)
        project = scope.get("path_params", _NO_PARAMS).get("project_id")
        if self._metrics is not None:
            self._metrics.observe_request(operation, status, seconds)
        if status == 429:
            self.refusals.throttled += 1
        if self._access_log is not None:
            self._access_log.write(
                AccessLine(
                    format_now(),
                    request_id,
                    # As the audit trail keeps them: a head may hold 16 KiB of path and as
                    # much of method, and an outsider's 401s, each logged, made lines ~70
                    # times their usual size (megabytes a second of log from one client).
                    scope["method"][:_LOGGED_METHOD],
                    scope["path"][:_LOGGED_PATH],
                    operation,
                    project if project is None else project[:_LOGGED_PROJECT],
                    note.principal,
                    status,
                    # Milliseconds to two decimals; round(x, 2) goes through a decimal
                    # string conversion, a few times the cost of this.
                    int(seconds * 100_000 + 0.5) / 100,
                )
            )
        if error_body is not None and self._audit_trail is not None:
            event = AuditEvent(
                id=0,
                at=now_ms(),
                request_id=request_id,
                principal=note.principal,
                account_id=note.account_id or "",
                method=scope["method"],
                # A refused request with NUL in its path is still audited: the store
                # keeps every field's NUL as U+FFFD (ops_store._storable).
                path=scope["path"][:_LOGGED_PATH],
                operation=operation,
                project_id=(project or "")[:_LOGGED_PROJECT],
                status=status,
                error_code=_code_of(error_body) if status >= 400 else "",
            )
            # Written beside the answer, not before it: the caller never waits for it.
            self._audit_trail.add(event)

    async def drain(self) -> None:
        """Wait for audit events still being written, flush the access log (at shutdown)."""
        if self._audit_trail is not None:
            await self._audit_trail.drain(timeout=5)
        if self._access_log is not None:
            self._log_busy()
            self._access_log.flush()


def _with_request_id(start: Message) -> tuple[str, Message]:
    """``start`` (an http.response.start) with a new X-Request-Id: every response carries
    one, also those no route of ours answered."""
    request_id = new_request_id()
    header = (_REQUEST_ID_HEADER, request_id.encode())
    return request_id, {**start, "headers": [*start.get("headers", ()), header]}


class _Place:
    """A request's place among those in flight, taken once the request has fully arrived."""

    __slots__ = ("_bounded", "_edge", "_held")

    def __init__(self, edge: Edge, bounded: bool) -> None:
        self._edge = edge
        self._bounded = bounded
        self._held = False

    async def take(self) -> None:
        edge = self._edge
        if not self._bounded:
            return  # a probe or a scrape: answered at the bound, and takes no place
        if edge.in_flight >= edge._max_in_flight:
            edge.refusals.busy_routed += 1
            raise ServiceUnavailable()  # a body's reader answers it: the route maps errors
        edge.in_flight += 1
        self._held = True
        # Let every request that has arrived be counted before this one runs: a request on
        # SQLite never waits for I/O, so without this turn the requests queued behind it
        # would not count as in flight and the bound would not act.
        await asyncio.sleep(0)

    def taken_on_arrival(self, receive: Receive) -> Receive:
        async def receive_and_take() -> Message:
            message = await receive()
            if not self._held and not message.get("more_body", False):
                await self.take()
            return message

        return receive_and_take

    def release(self) -> None:
        if self._held:
            self._edge.in_flight -= 1
            self._held = False


def _read_head(scope: Scope) -> tuple[int, bool]:
    """The request head's size (header names and values), and whether it announces a body
    still to be read: one pass over the headers, as every request pays for it."""
    size = 0
    sized_body = chunked = False
    for name, value in scope["headers"]:
        size += len(name) + len(value)
        if name == b"content-length":
            sized_body = value.strip() not in (b"", b"0")
        elif name == b"transfer-encoding":
            chunked = True
    return size, sized_body or chunked


def _announced_body(scope: Scope) -> int:
    """The body the request announces: its Content-Length, -1 if chunked (or a length that
    is not a number), 0 if none (``_read_head``'s test)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            text = value.strip()
            if text not in (b"", b"0"):
                return int(text) if text.isdigit() else -1
        elif name == b"transfer-encoding":
            return -1
    return 0


def _replaying(first: Message, receive: Receive) -> Receive:
    """``receive`` with ``first``, already received, given back first."""
    pending = [first]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def _code_of(body: bytes) -> str:
    try:
        return _error_code.decode(body).error_code[:32]
    except msgspec.DecodeError:
        return ""
