"""The input guard: one ASGI layer in front of every route that refuses what no route should
see (a NUL or a non-UTF-8 byte in text the service stores or compares, a credential header
that is not ASCII) and bounds how long and how completely a request body arrives."""

from __future__ import annotations

import asyncio
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imagejobs.api.errors import error_response, new_request_id
from imagejobs.domain.errors import (
    AuthenticationFailed,
    ImageJobsError,
    InvalidIamRequest,
    InvalidParameter,
    RequestTimeout,
)

# Tokens, signatures, keys and the operator secret are ASCII by construction; anything else
# in these headers is refused as bad credentials before any lookup or hashing sees it.
CREDENTIAL_HEADERS = {
    b"authorization": "Authorization",
    b"x-auth-token": "X-Auth-Token",
    b"x-security-token": "X-Security-Token",
    b"x-subject-token": "X-Subject-Token",
    b"x-imagejobs-operator-token": "X-Imagejobs-Operator-Token",
}


def request_problem(scope: Scope) -> ImageJobsError | None:
    """Why this request must be refused before routing, or None."""
    path: str = scope["path"]
    # The identity API (/v3) answers bad input in IAM's shape, as its routes do.
    invalid = InvalidIamRequest if path.startswith("/v3") else InvalidParameter
    if "\x00" in path:
        return invalid("path", "must not contain NUL characters")
    if not path.isascii():
        try:
            path.encode()
        except UnicodeEncodeError:
            return invalid("path", "must be valid UTF-8 once percent-decoded")
    query: bytes = scope["query_string"]
    if b"%00" in query or b"\x00" in query:
        return invalid("query", "must not contain NUL characters")
    for name, value in scope["headers"]:
        # The value first: isascii is one C pass, while the name's lookup hashes bytes
        # that are new on every request (the server's), for every header.
        if not value.isascii() and name in CREDENTIAL_HEADERS:
            return AuthenticationFailed(f"the {CREDENTIAL_HEADERS[name]} header is not ASCII")
    return None


class EdgeGuard:
    """Refuses malformed requests at once and guards the body: a body still incomplete
    ``body_read_timeout`` seconds after the headers is a 408, and one cut short (a client
    gone mid-body, a broken chunked encoding) a 400, both raised where the route reads it."""

    def __init__(self, app: ASGIApp, *, body_read_timeout: float) -> None:
        self._app = app
        self._body_read_timeout = body_read_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        problem = request_problem(scope)
        if problem is not None:
            await error_response(problem, new_request_id())(scope, receive, send)
            return
        await self._app(scope, guarded_receive(receive, self._body_read_timeout), send)


def guarded_receive(receive: Receive, body_read_timeout: float) -> Receive:
    """``receive`` for reading a body that must be complete ``body_read_timeout`` seconds
    from now (else RequestTimeout) and must not be cut short (else InvalidParameter)."""
    deadline = time.monotonic() + body_read_timeout
    complete = False

    async def receive_body() -> Message:
        nonlocal complete
        if complete:
            return await receive()
        try:
            async with asyncio.timeout(deadline - time.monotonic()):
                message = await receive()
        except TimeoutError:
            raise RequestTimeout(
                f"Request timeout: the body did not arrive within {body_read_timeout:g} seconds."
            ) from None
        if message["type"] == "http.disconnect":
            raise InvalidParameter(
                "body", "was cut short (the client closed it or its chunked encoding broke)"
            )
        complete = not message.get("more_body", False)
        return message

    return receive_body
