"""Turns one ``Operation`` into an ASGI endpoint: authenticate, authorize, validate, call
the use case, encode. Every failure becomes a documented error response here."""

from __future__ import annotations

import ast
import re
from typing import Any
from urllib.parse import unquote_to_bytes

import msgspec
from msgspec import Struct
from starlette.types import Receive, Scope, Send

from imagejobs.api.auth import read_asgi_body, received_asgi_request
from imagejobs.api.errors import error_response, internal_error_response
from imagejobs.api.errors import new_request_id as _new_request_id
from imagejobs.api.input_guard import guarded_receive, request_problem
from imagejobs.api.operations import Call, Operation
from imagejobs.api.schemas import PATTERN_RULES, encoder
from imagejobs.domain.errors import AuthenticationFailed, ImageJobsError, InvalidParameter
from imagejobs.domain.params import PROJECT_ID
from imagejobs.services import Services
from imagejobs.services.access import AccessControl

_PARSED_QUERIES_MAX = 1024
# Longest query whose parse is remembered: any tenant may add unknown parameters, and
# 1,024 remembered 16 KiB queries per operation kept ~15 MB alive in a worker for each.
_PARSED_QUERY_CACHED_MAX = 512
_JSON_PATH = re.compile(r"at `\$\.?([^`]*)`")
# A \u0000 escape not itself escaped (an odd number of backslashes before the "u").
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def parse_query(raw: bytes) -> dict[str, str]:
    """The query string as a dict, read exactly as the signature canonicalizes it: split on
    ``&`` and the first ``=``, percent-decoded once as UTF-8, ``+`` left a plus sign. So no
    query signed like another means something else: a repeated key (whose values the
    signature sorts) is refused, and so is a key or value that is not UTF-8."""
    query: dict[str, str] = {}
    plain = b"%" not in raw and raw.isascii()  # what SDKs send: nothing to decode
    for part in raw.split(b"&"):
        if part:
            key_bytes, _, value_bytes = part.partition(b"=")
            try:
                if plain:
                    key, value = key_bytes.decode("ascii"), value_bytes.decode("ascii")
                else:
                    key = unquote_to_bytes(key_bytes).decode("utf-8")
                    value = unquote_to_bytes(value_bytes).decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidParameter("query", "must be UTF-8 once percent-decoded") from None
            if key in query:
                name = key if len(key) <= 64 else "query"
                raise InvalidParameter(name, "must not be given more than once")
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
        raise error(*validation_problem(exc, body_type)) from exc
    except msgspec.DecodeError as exc:
        raise error("body", "must be a JSON object") from exc
    except RecursionError as exc:  # msgspec's own guard against deep nesting
        raise error("body", "is nested too deeply") from exc


_TYPE_NAMES = {
    "array": "an array",
    "object": "an object",
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "null": "null",
}
_LENGTH = re.compile(r"Expected `(\w+)` of length (>=|<=) (\d+)")
_BOUND = re.compile(r"Expected `(?:int|float)` (>=|<=|>|<) (\S+)")
_TYPE = re.compile(r"Expected `([^`]+)`, got `(\w+)`")
_FIELD = re.compile(r"Object (missing required|contains unknown) field `([^`]*)`")
# A struct's own check (``__post_init__``): "`name` must be …", the field in backquotes.
_OWN_CHECK = re.compile(r"`([\w.\[\]]+)` (.+)", re.DOTALL)
_BOUND_WORDS = {">=": "at least", "<=": "at most", ">": "greater than", "<": "less than"}
_LENGTH_UNITS = {"array": "items", "object": "entries", "str": "characters"}


def validation_problem(exc: msgspec.ValidationError, body_type: Any) -> tuple[str, str]:
    """msgspec's wording ("Expected `array` of length <= 20 - at `$.items`") as the
    parameter it names and a reason in the API's words ("items", "must hold at most 20
    items"): the one translation, for every body the API and the CLI decode."""
    message = str(exc)
    match = _JSON_PATH.search(message)
    name = match.group(1) if match else ""
    text = message.split(" - at ", maxsplit=1)[0]
    reason = f"is invalid: {text}"  # a wording not known below: still named, still clear
    if m := _FIELD.fullmatch(text):
        name = f"{name}.{m.group(2)}" if name else m.group(2)
        reason = "is required" if m.group(1) == "missing required" else "is not a known field"
    elif m := _LENGTH.fullmatch(text):
        kind, op, number = m.groups()
        if kind == "str":
            unit = "character" if number == "1" else "characters"
            reason = f"must be {_BOUND_WORDS[op]} {number} {unit} long"
        else:
            unit = _LENGTH_UNITS.get(kind, "items")
            reason = f"must hold {_BOUND_WORDS[op]} {number} {unit[:-1] if number == '1' else unit}"
    elif m := _BOUND.fullmatch(text):
        reason = f"must be {_BOUND_WORDS[m.group(1)]} {m.group(2).removesuffix('.0')}"
    elif m := _TYPE.fullmatch(text):
        wanted = [_TYPE_NAMES.get(t, t) for t in m.group(1).split(" | ")]
        got = _TYPE_NAMES.get(m.group(2), m.group(2))
        reason = f"must be {' or '.join(wanted)}, not {got}"
    elif text.startswith("Invalid enum value"):
        allowed = _allowed_values(body_type, name)
        reason = "must be one of " + ", ".join(allowed) if allowed else "is not an allowed value"
    elif text.startswith("Expected `str` matching regex"):
        reason = _pattern_reason(text.split("regex ", 1)[1] if "regex " in text else "")
    elif text == "Number out of range":
        reason = "is out of range"
    elif m := _OWN_CHECK.fullmatch(text):
        name = f"{name}.{m.group(1)}" if name else m.group(1)
        reason = m.group(2)
    return name or "body", reason


def _pattern_reason(quoted: str) -> str:
    """What a pattern msgspec names (``'^…$'``, as Python quotes it) asks for, in words,
    where the schema recorded them; else the pattern itself, the one thing known."""
    try:
        pattern = ast.literal_eval(quoted)
    except (ValueError, SyntaxError):
        pattern = None
    rule = PATTERN_RULES.get(pattern) if isinstance(pattern, str) else None
    if rule is not None:
        return f"must be {rule}"
    return "is not in the expected format" + (f" ({quoted})" if quoted else "")


def _allowed_values(body_type: Any, path: str) -> list[str]:
    """The values a Literal or Enum at ``path`` ("faults[0].effect") of ``body_type``
    allows, from msgspec's own description of the type; [] if it cannot be found."""
    from msgspec import inspect as mi

    node: Any = _unwrapped(mi.type_info(body_type))
    for part in re.findall(r"[^.\[\]]+", path):
        if isinstance(node, (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType)):
            node = _unwrapped(node.item_type)
        elif isinstance(node, (mi.StructType, mi.DataclassType)):
            fields = {f.encode_name: f.type for f in node.fields}
            node = _unwrapped(fields.get(part))
        else:
            return []
    if isinstance(node, mi.LiteralType):
        return [str(v) for v in node.values]
    if isinstance(node, mi.EnumType):
        return [str(member.value) for member in node.cls]
    return []


def _unwrapped(node: Any) -> Any:
    """``node`` without its constraints (Meta) and its ``| None``; None when it is a
    union of several types (which one was meant is unknown)."""
    from msgspec import inspect as mi

    while isinstance(node, (mi.Metadata, mi.UnionType)):
        if isinstance(node, mi.Metadata):
            node = node.type
            continue
        inner = [t for t in node.types if not isinstance(t, mi.NoneType)]
        node = inner[0] if len(inner) == 1 else None
    return node


class OperationEndpoint:
    """One ``Operation`` as an ASGI app: input guard, authenticate, authorize, validate,
    call the use case, encode. Every failure becomes a documented error response here.

    ASGI rather than a Starlette request handler: the /v1 operations are the hot path, and
    the ``Request`` and ``Response`` objects with their header wrappers were a tenth of a
    list request. The operation table calls it directly; it applies the input guard
    itself, so it is the same endpoint behind Starlette's router (which runs the guard as
    middleware too)."""

    def __init__(
        self,
        operation: Operation,
        services: Services,
        access: AccessControl,
        body_read_timeout: float = 30.0,
    ) -> None:
        self.operation = operation
        self._services = services
        self._access = access
        self._body_read_timeout = body_read_timeout
        self._path_params = tuple(p for p in operation.params if p.location == "path")
        self._query_params = tuple(p for p in operation.params if p.location == "query")
        self._parsed_queries: dict[bytes, dict[str, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = _new_request_id()
        try:
            result = await self._run(scope, receive)
        except ImageJobsError as error:
            await error_response(error, request_id)(scope, receive, send)
            return
        except Exception as exc:
            await internal_error_response(exc, request_id)(scope, receive, send)
            return
        body = (
            b"" if result is None else result if type(result) is bytes else encoder.encode(result)
        )
        headers = [(b"x-request-id", request_id.encode()), (b"content-length", b"%d" % len(body))]
        if result is not None:
            headers.append((b"content-type", b"application/json"))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _query_values(self, raw: bytes) -> dict[str, Any]:
        """The validated query parameters. A pure function of the query string, and
        clients repeat theirs (polling, paging): each distinct one is parsed once."""
        values = self._parsed_queries.get(raw)
        if values is None:
            query = parse_query(raw)
            # An invalid value raises here: errors are never remembered.
            values = {
                param.name: param.parse(query.get(param.name)) for param in self._query_params
            }
            if len(raw) > _PARSED_QUERY_CACHED_MAX:
                return values  # fresh: nothing else holds it
            if len(self._parsed_queries) >= _PARSED_QUERIES_MAX:  # the caller's text
                self._parsed_queries.clear()
            self._parsed_queries[raw] = values
        return dict(values)

    async def _run(self, scope: Scope, receive: Receive) -> Struct | bytes | None:
        problem = request_problem(scope)
        if problem is not None:
            raise problem
        operation = self.operation
        body = b""
        if scope["method"] not in ("GET", "HEAD"):  # a signature covers the body
            receive = guarded_receive(receive, self._body_read_timeout)
            body = await read_asgi_body(scope, receive)
        client = scope.get("client")  # signature failures count per address
        received = received_asgi_request(scope, body)
        principal = await self._access.authenticate(received, client[0] if client else "")
        raw_path = scope["path_params"]
        project_id = PROJECT_ID.parse(raw_path["project_id"])
        assert project_id is not None
        # From the header map already built (no second walk of the headers); a repeated
        # X-Project-Id is joined with "," there, so it never matches either.
        named = received.header_map.get("x-project-id")
        if named is not None and named != project_id:
            raise AuthenticationFailed("X-Project-Id does not match the project in the path")
        await self._access.authorize(principal, operation.action, project_id)
        # The one place a request's project becomes the key its rows are stored under:
        # resolved once, so the whole request sees one generation of a project that is
        # being reset (the old one, or the new one).
        key = await self._services.keys.storage_key(project_id)
        values = self._query_values(scope["query_string"])
        for param in self._path_params:
            values[param.name] = param.parse(raw_path[param.name])
        decoded = None if operation.body is None else decode_body(body, operation.body)
        call = Call(self._services, principal, project_id, values, decoded, key)
        deep_reads = self._services.deep_reads
        if deep_reads is None or (
            values.get("offset", 0) < deep_reads.threshold
            and (operation.scans is None or not operation.scans(values))
        ):
            return await operation.handler(call)
        # A deep page or a scan: its cost grows with the rows; one at a time per account.
        async with deep_reads.admit(principal.account_id or principal.name):
            return await operation.handler(call)
