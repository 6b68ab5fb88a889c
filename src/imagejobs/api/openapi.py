"""The OpenAPI 3.1 document, rendered from the route table, the parameter rules and the
msgspec structs that the server itself validates and encodes with."""

from __future__ import annotations

from typing import Any

import msgspec

from imagejobs import __version__
from imagejobs.api.operations import Operation
from imagejobs.api.schemas import ErrorResponse
from imagejobs.domain import errors
from imagejobs.domain import params as p

_REF = "#/components/schemas/{name}"

# The error each status is answered with (spec §1.6), as documented examples.
_STATUS_ERRORS: dict[int, type[errors.ImageJobsError]] = {
    400: errors.InvalidParameter,
    401: errors.AuthenticationFailed,
    403: errors.PermissionDenied,
    404: errors.NotFound,
    405: errors.MethodNotAllowed,
    409: errors.Conflict,
    413: errors.RequestTooLarge,
    500: errors.InternalError,
    503: errors.ServiceUnavailable,
}
_STATUS_TEXT = {
    200: "Response to a successful request.",
    400: "The request cannot be understood by the server due to malformed syntax.",
    401: "Authentication failed.",
    403: "Permissions required.",
    404: "No resources found.",
    405: "The request method is not allowed.",
    409: "The request conflicts with the state of a resource.",
    413: "The request body is too large.",
    500: "An internal service error occurred.",
    503: "Service unavailable.",
}


def parameter_schema(param: p.Param) -> dict[str, Any]:
    if isinstance(param, p.IntegerParam):
        return {
            "type": "integer",
            "minimum": param.minimum,
            "maximum": param.maximum,
            "default": param.default,
        }
    if isinstance(param, p.EnumParam):
        return {"type": "string", "enum": list(param.values)}
    if isinstance(param, p.EnumListParam):
        alternatives = "|".join(param.values)
        return {
            "type": "string",
            "maxLength": param.max_length,
            "pattern": f"^(({alternatives})(,({alternatives}))*)?$",
        }
    return {"type": "string", "minLength": param.min_length, "maxLength": param.max_length}


def _parameter(param: p.Param) -> dict[str, Any]:
    return {
        "name": param.name,
        "in": param.location,
        "required": param.required or param.location == "path",
        "description": param.description,
        "schema": parameter_schema(param),
    }


def _error_example(status: int) -> dict[str, str]:
    error_class = _STATUS_ERRORS[status]
    return {"error_code": error_class.code, "error_msg": (error_class.__doc__ or "").strip()}


def _operation(operation: Operation) -> dict[str, Any]:
    document: dict[str, Any] = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "tags": [operation.tag],
        "x-iam-action": operation.action,
        "parameters": [_parameter(p.PROJECT_ID)] + [_parameter(x) for x in operation.params],
    }
    if operation.body is not None:
        document["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": _REF.format(name=operation.body.__name__)}}
            },
        }
    ok: dict[str, Any] = {
        "description": _STATUS_TEXT[200] + ("" if operation.response else " The body is empty.")
    }
    if operation.response is not None:
        ok["content"] = {
            "application/json": {"schema": {"$ref": _REF.format(name=operation.response.__name__)}}
        }
    responses: dict[str, Any] = {"200": ok}
    for status in operation.errors:
        responses[str(status)] = {
            "description": _STATUS_TEXT[status],
            "headers": {"X-Request-Id": {"schema": {"type": "string"}}},
            "content": {
                "application/json": {
                    "schema": {"$ref": _REF.format(name="ErrorResponse")},
                    "example": _error_example(status),
                }
            },
        }
    document["responses"] = responses
    return document


def build_openapi(operations: tuple[Operation, ...]) -> dict[str, Any]:
    types: list[Any] = [ErrorResponse]
    for operation in operations:
        types.extend(t for t in (operation.body, operation.response) if t is not None)
    _, components = msgspec.json.schema_components(types, ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {}
    for operation in operations:
        paths.setdefault(operation.path, {})[operation.method.lower()] = _operation(operation)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "imagejobs: WorkspaceApp image jobs",
            "version": __version__,
            "description": (
                "A self-hostable, wire-compatible implementation of Huawei Cloud "
                "WorkspaceApp's image-server job APIs. Every response carries X-Request-Id."
            ),
        },
        "paths": paths,
        "components": {"schemas": components},
    }
