"""Errors to HTTP, in one place: ``{"error_code", "error_msg"}`` plus ``X-Request-Id``."""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from imagejobs.api.schemas import ErrorResponse, encoder
from imagejobs.domain.errors import (
    ImageJobsError,
    InternalError,
    MethodNotAllowed,
    RequestTooLarge,
    RouteNotFound,
)

logger = logging.getLogger("imagejobs.api")
REQUEST_ID = "X-Request-Id"


_ids = random.Random()  # noqa: S311 - request ids are unique, not secret


def new_request_id() -> str:
    """32 hex digits; unique, not secret (a CSPRNG call cost more than the rest of a 404)."""
    # As bytes to hex: half the cost of formatting the int with f"{n:032x}".
    return _ids.getrandbits(128).to_bytes(16, "big").hex()


def error_response(
    error: ImageJobsError, request_id: str, headers: dict[str, str] | None = None
) -> Response:
    title = getattr(error, "keystone_title", None)
    if title is not None:  # the Keystone-compatible token API's own error shape
        body = encoder.encode(
            {"error": {"code": error.status, "message": error.message, "title": title}}
        )
    else:
        body = encoder.encode(ErrorResponse(error_code=error.code, error_msg=error.message))
    all_headers = {REQUEST_ID: request_id, **(headers or {})}
    if error.retry_after is not None:
        all_headers["Retry-After"] = str(error.retry_after)
    return Response(body, error.status, headers=all_headers, media_type="application/json")


def internal_error_response(exc: BaseException, request_id: str) -> Response:
    """A 500 that says nothing about the cause; the log keeps it, under the request id."""
    logger.error("request %s failed", request_id, exc_info=exc)
    return error_response(InternalError(), request_id)


Handler = Callable[[Request], Awaitable[Response]]


def guarded(handler: Handler) -> Handler:
    """Request id on every answer; errors in the documented shape, never a stack trace.

    (The /v1 endpoints inline the same steps: they are the hot path.)
    """

    async def endpoint(request: Request) -> Response:
        request_id = new_request_id()
        try:
            response = await handler(request)
        except ImageJobsError as error:
            return error_response(error, request_id)
        except Exception as exc:
            return internal_error_response(exc, request_id)
        response.headers[REQUEST_ID] = request_id
        return response

    return endpoint


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 / 405 (no route matched), answered in the service's format."""
    request_id = new_request_id()
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        allow = (exc.headers or {}).get("Allow", "")
        return error_response(MethodNotAllowed(), request_id, {"Allow": allow})
    if exc.status_code == 413:
        return error_response(RequestTooLarge(), request_id)
    return error_response(RouteNotFound(), request_id)


async def unhandled_exception_handler(request: Request, exc: Exception) -> Response:
    return internal_error_response(exc, new_request_id())
