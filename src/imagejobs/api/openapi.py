"""The OpenAPI 3.1 document, rendered from the route table, the parameter rules and the
msgspec structs that the server itself validates and encodes with."""

from __future__ import annotations

from typing import Any

import msgspec

from imagejobs import __version__
from imagejobs.api.iam_routes import IamRouteDoc
from imagejobs.api.iam_schemas import KeystoneErrorResponse
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
    429: errors.Throttled,
    500: errors.InternalError,
    503: errors.ServiceUnavailable,
}
_STATUS_TEXT = {
    200: "Response to a successful request.",
    201: "Created.",
    204: "Done; no body.",
    400: "The request cannot be understood by the server due to malformed syntax.",
    401: "Authentication failed.",
    403: "Permissions required.",
    404: "No resources found.",
    405: "The request method is not allowed.",
    409: "The request conflicts with the state of a resource.",
    413: "The request body is too large.",
    429: "Too many requests: retry after the Retry-After header's seconds.",
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


def _error_responses(statuses: tuple[int, ...]) -> dict[str, Any]:
    return {
        str(status): {
            "description": _STATUS_TEXT[status],
            "headers": {"X-Request-Id": {"schema": {"type": "string"}}},
            "content": {
                "application/json": {
                    "schema": {"$ref": _REF.format(name="ErrorResponse")},
                    "example": _error_example(status),
                }
            },
        }
        for status in statuses
    }


def _iam_operation(doc: IamRouteDoc) -> dict[str, Any]:
    document: dict[str, Any] = {
        "operationId": doc.operation_id,
        "summary": doc.summary,
        "tags": ["Identity (IAM)"],
    }
    if doc.query:  # the rules read_query parses with
        document["parameters"] = [_parameter(param) for param in doc.query]
    if doc.body is not None:
        document["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": _REF.format(name=doc.body.__name__)}}
            },
        }
    ok: dict[str, Any] = {"description": _STATUS_TEXT[doc.status]}
    if doc.response is not None:
        ok["content"] = {
            "application/json": {"schema": {"$ref": _REF.format(name=doc.response.__name__)}}
        }
    responses = {str(doc.status): ok, **_error_responses(doc.errors)}
    if "400" in responses:  # the identity API's bad input is IAM's code
        example = {
            "error_code": errors.InvalidIamRequest.code,
            "error_msg": "Request body is invalid.",
        }
        responses["400"]["content"]["application/json"]["example"] = example
    if doc.path == "/v3/auth/tokens" and doc.method == "POST":
        # A wrong user name or password answers in Keystone's own error shape.
        responses["401"]["content"] = {
            "application/json": {"schema": {"$ref": _REF.format(name="KeystoneErrorResponse")}}
        }
    document["responses"] = responses
    if doc.path in ("/v3/projects", "/v3/auth/domains"):
        document["security"] = [{"AkSk": []}, {"Token": []}]
    return document


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
    document["responses"] = {"200": ok, **_error_responses(operation.errors)}
    document["security"] = [{"AkSk": []}, {"Token": []}]
    return document


_SECURITY_SCHEMES = {
    "AkSk": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "An SDK-HMAC-SHA256 (or SDK-HMAC-SM3) signature, as the Huawei Cloud "
        "SDKs compute it: 'SDK-HMAC-SHA256 Access=<AK>, SignedHeaders=<…>, Signature=<hex>', "
        "with X-Sdk-Date (and X-Security-Token for temporary keys).",
    },
    "Token": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Auth-Token",
        "description": "An IAM token from POST /v3/auth/tokens (its X-Subject-Token).",
    },
}


def build_openapi(
    operations: tuple[Operation, ...], iam_routes: tuple[IamRouteDoc, ...] = ()
) -> dict[str, Any]:
    types: list[Any] = [ErrorResponse]
    for operation in operations:
        types.extend(t for t in (operation.body, operation.response) if t is not None)
    for doc in iam_routes:
        types.extend(t for t in (doc.body, doc.response) if t is not None)
    if iam_routes:
        types.append(KeystoneErrorResponse)
    _, components = msgspec.json.schema_components(types, ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {}
    for operation in operations:
        paths.setdefault(operation.path, {})[operation.method.lower()] = _operation(operation)
    for doc in iam_routes:
        paths.setdefault(doc.path, {})[doc.method.lower()] = _iam_operation(doc)
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
        "components": {"schemas": components, "securitySchemes": _SECURITY_SCHEMES},
    }
