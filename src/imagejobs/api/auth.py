"""The HTTP side of authentication: the raw request, as signed, handed to AccessControl."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import ClientDisconnect, Request
from starlette.types import Receive, Scope

from imagejobs.domain.errors import RequestTooLarge
from imagejobs.iam.signing import ReceivedRequest
from imagejobs.services.access import AccessControl
from imagejobs.services.authorization import Principal

Authenticator = Callable[[Request], Awaitable[Principal]]
MAX_BODY_BYTES = 1 << 20


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refusing more than ``limit`` bytes without reading them all."""
    body: bytes | None = getattr(request, "_body", None)  # read before (authentication)
    if body is not None:
        if len(body) > limit:
            raise RequestTooLarge()
        return body
    body = await read_asgi_body(request.scope, request.receive, limit)
    request._body = body  # later readers (request.body()) get the same bytes
    return body


async def read_asgi_body(scope: Scope, receive: Receive, limit: int = MAX_BODY_BYTES) -> bytes:
    """``read_body`` from the ASGI scope and receive channel."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise RequestTooLarge()
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # a disconnect: nothing more will come
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge()
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def received_request(request: Request, body: bytes) -> ReceivedRequest:
    return received_asgi_request(request.scope, body)


def received_asgi_request(scope: Scope, body: bytes) -> ReceivedRequest:
    # The path exactly as sent (percent-encoding intact), without any query string.
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    raw_path = raw_path.split(b"?", 1)[0]
    return ReceivedRequest.from_raw(
        scope["method"], raw_path, scope["query_string"], scope["headers"], body
    )


def make_authenticator(access: AccessControl, max_body: int = MAX_BODY_BYTES) -> Authenticator:
    async def authenticate(request: Request) -> Principal:
        body = await read_body(request, max_body) if request.method not in ("GET", "HEAD") else b""
        client = request.scope.get("client")  # signature failures count per address
        return await access.authenticate(
            received_request(request, body), client[0] if client else ""
        )

    return authenticate
