"""Turns one ``Operation`` into a Starlette endpoint: authenticate, authorize, validate,
call the use case, encode. Every failure becomes a documented error response here."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from imagejobs.api.auth import Authenticator, read_body
from imagejobs.api.errors import REQUEST_ID, error_response, internal_error_response
from imagejobs.api.errors import new_request_id as _new_request_id
from imagejobs.api.operations import Call, Operation
from imagejobs.api.schemas import encoder
from imagejobs.domain.errors import AuthenticationFailed, ImageJobsError, InvalidParameter
from imagejobs.domain.params import PROJECT_ID
from imagejobs.services import Services
from imagejobs.services.access import AccessControl

Endpoint = Callable[[Request], Awaitable[Response]]

_JSON_PATH = re.compile(r"at `\$\.?([^`]*)`")
# A \u0000 escape not itself escaped (an odd number of backslashes before the "u").
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def parse_query(raw: bytes) -> dict[str, str]:
    """The query string as a dict (the last of repeated keys wins, as in parse_qsl)."""
    text = raw.decode("latin-1")
    if "%" in text or "+" in text:
        return dict(parse_qsl(text, keep_blank_values=True))
    # What SDKs send is plain: skip parse_qsl's unquoting (a quarter of a fast request).
    query: dict[str, str] = {}
    for part in text.split("&"):
        if part:
            key, _, value = part.partition("=")
            query[key] = value
    return query


def decode_body(
    raw: bytes, body_type: type[Any], error: type[InvalidParameter] = InvalidParameter
) -> Any:
    """The one place a JSON request body becomes a value: whatever the bytes, either a
    ``body_type`` or an ``error`` (400) naming the problem."""
    if b"\\u0000" in raw and _NUL_ESCAPE.search(raw):
        # No stored or compared text may hold NUL (PostgreSQL refuses it in text).
        raise error("body", "must not contain NUL characters (\\u0000)")
    try:
        return msgspec.json.decode(raw, type=body_type)
    except msgspec.ValidationError as exc:
        # "Expected `array` of length >= 1 - at `$.items`" -> parameter "items".
        message = str(exc)
        match = _JSON_PATH.search(message)
        name = (match.group(1) if match else "") or "body"
        reason = message.split(" - at ", maxsplit=1)[0]
        raise error(name, f"is invalid: {reason}") from exc
    except msgspec.DecodeError as exc:
        raise error("body", "must be a JSON object") from exc
    except RecursionError as exc:  # msgspec's own guard against deep nesting
        raise error("body", "is nested too deeply") from exc


def make_endpoint(
    operation: Operation,
    services: Services,
    authenticate: Authenticator,
    access: AccessControl,
) -> Endpoint:
    path_params = tuple(param for param in operation.params if param.location == "path")
    query_params = tuple(param for param in operation.params if param.location == "query")
    handler = operation.handler
    action = operation.action
    body_type = operation.body

    async def endpoint(request: Request) -> Response:
        request_id = _new_request_id()
        try:
            principal = await authenticate(request)
            raw_path = request.path_params
            project_id = PROJECT_ID.parse(raw_path["project_id"])
            assert project_id is not None
            header_project = request.headers.get("x-project-id")
            if header_project is not None and header_project != project_id:
                raise AuthenticationFailed("X-Project-Id does not match the project in the path")
            await access.authorize(principal, action, project_id)
            values: dict[str, Any] = {}
            if query_params:
                query = parse_query(request.scope["query_string"])
                for param in query_params:
                    values[param.name] = param.parse(query.get(param.name))
            for param in path_params:
                values[param.name] = param.parse(raw_path[param.name])
            body = None if body_type is None else decode_body(await read_body(request), body_type)
            result = await handler(Call(services, principal, project_id, values, body))
        except ImageJobsError as error:
            return error_response(error, request_id)
        except Exception as exc:
            return internal_error_response(exc, request_id)
        if result is None:
            return Response(b"", 200, headers={REQUEST_ID: request_id})
        return JsonAnswer(encoder.encode(result), request_id)

    return endpoint


class JsonAnswer(Response):
    """A 200 with a JSON body and its request id: the headers as sent, built directly
    (Starlette's general header assembly was a twentieth of a list request)."""

    media_type = "application/json"

    def __init__(self, body: bytes, request_id: str) -> None:
        self.status_code = 200
        self.body = body
        self.background = None
        self.raw_headers = [
            (b"x-request-id", request_id.encode()),
            (b"content-length", b"%d" % len(body)),
            (b"content-type", b"application/json"),
        ]
