"""The operator API under ``/_imagejobs``: steer the simulated driver at run time and see
the engine's queue, authenticated as the public API is.

Who may call what: the operator (``X-Imagejobs-Operator-Token``, or everyone when
IMAGEJOBS_AUTH=none) may call everything. Anyone else may only steer and inspect projects
they are authorized for with the action ``imagejobs:engine:steer``, which an account's
root user has on the account's own projects: the routes that name a project (a rule, a
behaviour, ``tasks?project_id=``). Routes that span every project are the operator's.

    GET    /_imagejobs/engine                                  the queue at a glance
    GET    /_imagejobs/engine/tasks?project_id=&limit=         live tasks, due first
    GET    /_imagejobs/engine/rules                            defaults and every rule
    DELETE /_imagejobs/engine/rules                            remove every rule
    GET    /_imagejobs/engine/rules/{project_id}/{job_type}    one rule (404 if none)
    PUT    /_imagejobs/engine/rules/{project_id}/{job_type}    set it (JSON RuleBody)
    DELETE /_imagejobs/engine/rules/{project_id}/{job_type}    remove it
    GET    /_imagejobs/engine/behaviour/{project_id}/{job_type}  the effective behaviour
    GET    /_imagejobs/openapi.json                            this API, as OpenAPI 3.1
    GET    /_imagejobs/health                                  liveness (no credentials)
    POST   /_imagejobs/reset      {"project_id"?}              a project (or all) as new
    POST   /_imagejobs/tenants    {"account"?, "region"?, ...} a throwaway account + project
    GET    /_imagejobs/state?project_id=                       a project's servers and jobs
    POST   /_imagejobs/state      (what GET answers)           replace a project's with them

``project_id`` and ``job_type`` may be ``*`` (every project, every type).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from msgspec import Struct
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from imagejobs import __version__
from imagejobs.api.auth import MAX_BODY_BYTES, make_authenticator, read_body, received_request
from imagejobs.api.endpoint import decode_body, parse_query
from imagejobs.api.errors import guarded
from imagejobs.api.openapi import parameter_schema
from imagejobs.api.operator_schemas import (
    BehaviourInfo,
    DeletedResponse,
    EngineStatus,
    HealthResponse,
    ResetBody,
    ResetResponse,
    RuleBody,
    RuleInfo,
    RulesResponse,
    StateDocument,
    StateLoaded,
    TasksResponse,
    TenantBody,
    TenantInfo,
    behaviour_info,
    engine_status,
    project_state,
    rule_info,
    rule_record,
    rules_response,
    state_document,
    tasks_response,
)
from imagejobs.api.schemas import ErrorResponse, encoder
from imagejobs.domain.enums import JobType
from imagejobs.domain.errors import InvalidParameter, PermissionDenied
from imagejobs.domain.params import (
    ONE_PROJECT_ID_PATTERN,
    PROJECT_ID_PATTERN,
    IntegerParam,
    StringParam,
    check_project_id,
)
from imagejobs.domain.steering import ANY, STEERABLE_JOB_TYPES, check_scope
from imagejobs.services import Services
from imagejobs.services.access import OPERATOR_HEADER, AccessControl
from imagejobs.services.authorization import Principal
from imagejobs.services.steering import RuleNotFound
from imagejobs.services.testkit import ProjectState, TestKitService

STEER_ACTION = "imagejobs:engine:steer"

PREFIX = "/_imagejobs"
_RULE = f"{PREFIX}/engine/rules/{{project_id}}/{{job_type}}"
TASK_PROJECT = StringParam("project_id", 1, 128, "Only this project's tasks.")
TASK_LIMIT = IntegerParam("limit", 1, 1000, 100, "At most this many tasks.")
STATE_MAX_BYTES = 256 * 1024 * 1024  # a fixture of a million jobs
STATE_PROJECT = StringParam("project_id", 1, 128, "The project to export.", required=True)


@dataclass(frozen=True, slots=True)
class OperatorCall:
    services: Services
    path: Mapping[str, str]
    query: Mapping[str, str]
    body: Any


# A handler answers a struct, or its JSON already encoded (a big one, on a thread).
Handler = Callable[[OperatorCall], Awaitable[Struct | bytes]]


@dataclass(frozen=True, slots=True)
class OperatorRoute:
    method: str
    path: str
    summary: str
    handler: Handler
    response: type[Struct]
    body: type[Struct] | None = None
    query: tuple[StringParam | IntegerParam, ...] = ()
    # Where the project is named, if anywhere: "path", "query" or None (all projects).
    project_in: str | None = None
    empty_body_is_object: bool = False  # no body at all means {}
    max_body_bytes: int = MAX_BODY_BYTES


def _scope(call: OperatorCall) -> tuple[str, str]:
    project_id, job_type = call.path["project_id"], call.path["job_type"]
    check_scope(project_id, job_type)
    if project_id != ANY:  # a rule under a storage key ("~...") would steer another project
        check_project_id(project_id)
    return project_id, job_type


async def _key(call: OperatorCall, project_id: str) -> str:
    """The project's storage key (what the stores are given; ``*`` stays ``*``)."""
    return await call.services.keys.storage_key(project_id)


async def _keyed_scope(call: OperatorCall) -> tuple[str, str]:
    """The path's scope, its project as its storage key."""
    project_id, job_type = _scope(call)
    return await _key(call, project_id), job_type


def _shown(info: RuleInfo, call: OperatorCall) -> RuleInfo:
    """A rule as the path named its project (its record carries the storage key)."""
    return msgspec.structs.replace(info, project_id=call.path["project_id"])


def operator_routes(
    services: Services,
    access: AccessControl,
    driver: str,
    testkit: TestKitService | None = None,
) -> list[BaseRoute]:
    """The operator API's routes, and its OpenAPI document at /_imagejobs/openapi.json."""

    async def status(call: OperatorCall) -> Struct:
        return engine_status(driver, await call.services.engine.summary())

    async def tasks(call: OperatorCall) -> Struct:
        project_id = TASK_PROJECT.parse(call.query.get("project_id"))
        limit = TASK_LIMIT.parse(call.query.get("limit"))
        if project_id is None:  # every project's, shown by project id
            views = await call.services.engine.tasks(None, limit)
            return tasks_response(views, await call.services.keys.shown_ids())
        views = await call.services.engine.tasks(await _key(call, project_id), limit)
        return tasks_response(views, lambda key: project_id)

    async def rules(call: OperatorCall) -> Struct:
        steering = call.services.steering
        shown = await call.services.keys.shown_ids()
        return rules_response(steering.defaults, await steering.rules(), shown)

    async def clear(call: OperatorCall) -> Struct:
        return DeletedResponse(await call.services.steering.clear())

    async def get_rule(call: OperatorCall) -> Struct:
        key, job_type = await _keyed_scope(call)
        try:
            rule = await call.services.steering.rule(key, job_type)
        except RuleNotFound:  # named as the path names it, not by its storage key
            raise RuleNotFound(
                f"No steering rule is set for {call.path['project_id']}/{job_type}."
            ) from None
        return _shown(rule_info(rule), call)

    async def put_rule(call: OperatorCall) -> Struct:
        rule = rule_record(*await _keyed_scope(call), call.body)
        return _shown(rule_info(await call.services.steering.put_rule(rule)), call)

    async def delete_rule(call: OperatorCall) -> Struct:
        return DeletedResponse(await call.services.steering.delete_rule(*await _keyed_scope(call)))

    async def behaviour(call: OperatorCall) -> Struct:
        project_id, job_type = await _keyed_scope(call)
        if job_type == ANY:  # a behaviour is always that of one job type
            raise InvalidParameter("job_type", "must be a job type, not *")
        return behaviour_info(await call.services.steering.behaviour(project_id, JobType(job_type)))

    table: tuple[OperatorRoute, ...] = (
        OperatorRoute("GET", f"{PREFIX}/engine", "The engine's queue.", status, EngineStatus),
        OperatorRoute(
            "GET",
            f"{PREFIX}/engine/tasks",
            "Live tasks (sub-jobs not ended), due first.",
            tasks,
            TasksResponse,
            query=(TASK_PROJECT, TASK_LIMIT),
            project_in="query",
        ),
        OperatorRoute("GET", f"{PREFIX}/engine/rules", "Defaults and rules.", rules, RulesResponse),
        OperatorRoute(
            "DELETE", f"{PREFIX}/engine/rules", "Remove every rule.", clear, DeletedResponse
        ),
        OperatorRoute("GET", _RULE, "One rule.", get_rule, RuleInfo, project_in="path"),
        OperatorRoute(
            "PUT", _RULE, "Set a rule.", put_rule, RuleInfo, body=RuleBody, project_in="path"
        ),
        OperatorRoute(
            "DELETE", _RULE, "Remove a rule.", delete_rule, DeletedResponse, project_in="path"
        ),
        OperatorRoute(
            "GET",
            f"{PREFIX}/engine/behaviour/{{project_id}}/{{job_type}}",
            "The behaviour in effect for a project and job type.",
            behaviour,
            BehaviourInfo,
            project_in="path",
        ),
    )
    if testkit is not None:
        table += _testkit_routes(testkit)
    document: dict[str, Any] = {}

    async def openapi(request: Request) -> Response:
        if not document:  # built on the first request, not with every app
            document.update(operator_openapi(table))
        return JSONResponse(document)

    health_body = encoder.encode(HealthResponse(version=__version__))

    async def health(request: Request) -> Response:
        # Liveness only: answers as soon as the app serves, with no database round trip.
        return Response(health_body, 200, media_type="application/json")

    routes: list[BaseRoute] = [
        Route(r.path, _endpoint(r, services, access), methods=[r.method]) for r in table
    ]
    # guarded: a request id on these too, as on every answer (the access log shows it).
    routes.append(Route(f"{PREFIX}/openapi.json", guarded(openapi), methods=["GET"]))
    routes.append(Route(f"{PREFIX}/health", guarded(health), methods=["GET"]))
    return routes


def _testkit_routes(testkit: TestKitService) -> tuple[OperatorRoute, ...]:
    """Reset, tenants and states: the operator's alone (they span accounts or name no
    project; a state's export costs in proportion to the whole project)."""

    async def reset(call: OperatorCall) -> Struct:
        project_id = call.body.project_id
        await testkit.reset(project_id)
        return ResetResponse(reset=project_id or ANY)

    async def tenants(call: OperatorCall) -> Struct:
        body: TenantBody = call.body
        created = await testkit.create_tenant(
            body.account, body.region, body.project_id, body.password
        )
        return TenantInfo(**{f: getattr(created, f) for f in TenantInfo.__struct_fields__})

    async def dump(call: OperatorCall) -> bytes:
        project_id = STATE_PROJECT.parse(call.query.get("project_id"))
        assert project_id is not None  # required
        state = await testkit.dump(project_id)
        # A big project's document takes a while to build and encode: off the loop.
        return await asyncio.to_thread(_state_bytes, state)

    async def load(call: OperatorCall) -> Struct:
        state = project_state(call.body)
        tasks = await testkit.load(state)
        return StateLoaded(
            project_id=state.project_id,
            servers=len(state.servers),
            jobs=len(state.jobs),
            sub_jobs=sum(len(d.sub_jobs) for d in state.jobs),
            tasks=tasks,
        )

    return (
        OperatorRoute(
            "GET",
            f"{PREFIX}/state",
            "A project's image servers, jobs and sub-jobs (times in epoch milliseconds).",
            dump,
            StateDocument,
            query=(STATE_PROJECT,),
            # The operator's alone: its cost is the whole project's size (a root exporting
            # 30,000 jobs, before it was read from a snapshot and built on a thread, held
            # other tenants for seconds).
        ),
        OperatorRoute(
            "POST",
            f"{PREFIX}/state",
            "Replace a project's image servers, jobs and sub-jobs (checked first; all or "
            "nothing). Unfinished sub-jobs run as the project's steering says.",
            load,
            StateLoaded,
            body=StateDocument,
            max_body_bytes=STATE_MAX_BYTES,
        ),
        OperatorRoute(
            "POST",
            f"{PREFIX}/reset",
            "Delete a project's (or every project's) jobs, servers, steering rules and "
            "lockouts; accounts and keys stay.",
            reset,
            ResetResponse,
            body=ResetBody,
            empty_body_is_object=True,
        ),
        OperatorRoute(
            "POST",
            f"{PREFIX}/tenants",
            "Create an account with a project and an access key; answer the credentials.",
            tenants,
            TenantInfo,
            body=TenantBody,
            empty_body_is_object=True,
        ),
    )


async def _before_the_body(
    route: OperatorRoute, access: AccessControl, request: Request
) -> Principal:
    """The caller of a route whose body may be far larger than any other's (a state, up to
    STATE_MAX_BYTES), known from the headers alone: reading the body first would let anyone
    make the process hold hundreds of MiB per request. Only the operator may use such a
    route, and the operator's token is a header; a signature, which covers the body, is
    not verified: whatever key made it, it is not the operator's."""
    assert route.project_in is None  # the operator's alone (see _check)
    headers = request.headers
    if OPERATOR_HEADER not in headers and "authorization" in headers:
        raise PermissionDenied(f"Only the operator may use {route.method} {route.path}.")
    client = request.scope.get("client")
    return await access.authenticate(received_request(request, b""), client[0] if client else "")


async def _check(
    route: OperatorRoute,
    principal: Principal,
    access: AccessControl,
    request: Request,
    query: Mapping[str, str],
) -> None:
    """The operator may do anything; others only what names a project they may steer."""
    if principal.is_operator:
        return
    if route.project_in is None:  # reset, tenants, loading a state: the operator's alone
        raise PermissionDenied(f"Only the operator may use {route.method} {route.path}.")
    source = request.path_params if route.project_in == "path" else query
    project_id = source.get("project_id")
    if not project_id or project_id == ANY:
        raise PermissionDenied(
            "Only the operator may act on every project; name one of your projects."
        )
    # Bounded before authorization looks it up: every project id asked about is cached
    # (10,000 of them), and 16 KiB ids kept ~140 MB alive for any tenant who asked.
    check_scope(project_id, ANY)
    await access.authorize(principal, STEER_ACTION, project_id)


def _endpoint(
    route: OperatorRoute, services: Services, access: AccessControl
) -> Callable[[Request], Awaitable[Response]]:
    authenticate = make_authenticator(access, route.max_body_bytes)
    if route.max_body_bytes > MAX_BODY_BYTES:
        authenticate = functools.partial(_before_the_body, route, access)

    async def endpoint(request: Request) -> Response:
        principal = await authenticate(request)
        # Read as the signature covers it, as /v1 queries are (a repeated key refused, "+"
        # a plus sign): Starlette's reading took the last of repeated keys, whose values
        # the signature sorts, so that a replay could choose the project or the limit.
        query = parse_query(request.scope["query_string"])
        await _check(route, principal, access, request, query)
        body = None
        if route.body is not None:
            raw = await read_body(request, route.max_body_bytes)
            if not raw and route.empty_body_is_object:
                raw = b"{}"
            body = decode_body(raw, route.body)
        call = OperatorCall(services, request.path_params, query, body)
        result = await route.handler(call)
        body = result if isinstance(result, bytes) else encoder.encode(result)
        return Response(body, 200, media_type="application/json")

    return guarded(endpoint)


def _state_bytes(state: ProjectState) -> bytes:
    """The export's body (on a thread: its cost is the project's size)."""
    return msgspec.json.encode(state_document(state))


# What check_scope accepts, documented.
_PATH_SCHEMAS: dict[str, dict[str, Any]] = {
    "project_id": {
        "type": "string",
        "minLength": 1,
        "maxLength": 128,
        "pattern": PROJECT_ID_PATTERN,  # or "*": _scope's check_project_id
    },
    "job_type": {"type": "string", "enum": [ANY, *STEERABLE_JOB_TYPES]},
}


def _query_schema(param: StringParam | IntegerParam) -> dict[str, Any]:
    schema = parameter_schema(param)
    if param is STATE_PROJECT:  # the state of one project (TestKitService.dump checks it)
        schema["pattern"] = ONE_PROJECT_ID_PATTERN
    elif param is TASK_PROJECT:  # a project id or "*" (ProjectKeys.storage_key checks it)
        schema["pattern"] = PROJECT_ID_PATTERN
    return schema


def operator_openapi(table: tuple[OperatorRoute, ...]) -> dict[str, Any]:
    ref = "#/components/schemas/{name}"
    types: list[Any] = [ErrorResponse]
    for route in table:
        types.extend(t for t in (route.body, route.response) if t is not None)
    _, components = msgspec.json.schema_components(types, ref_template=ref)
    error = {"application/json": {"schema": {"$ref": ref.format(name="ErrorResponse")}}}
    paths: dict[str, dict[str, Any]] = {}
    for route in table:
        parameters: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": _PATH_SCHEMAS[name]}
            for name in ("project_id", "job_type")
            if "{" + name + "}" in route.path
        ]
        parameters += [
            {"name": q.name, "in": "query", "required": q.required, "description": q.description}
            | {"schema": _query_schema(q)}  # the bounds the parser and handler enforce
            for q in route.query
        ]
        operation: dict[str, Any] = {
            "summary": route.summary,
            "tags": ["Operator"],
            "parameters": parameters,
            "responses": {
                "200": {
                    "description": "OK",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": ref.format(name=route.response.__name__)}
                        }
                    },
                },
                "400": {"description": "Invalid input.", "content": error},
                "401": {"description": "Not authenticated.", "content": error},
                "403": {"description": "Not an operator.", "content": error},
                "503": {"description": "The database is unavailable.", "content": error},
            },
        }
        if route.project_in == "path":
            operation["responses"]["404"] = {"description": "No such rule.", "content": error}
        if route.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": ref.format(name=route.body.__name__)}}
                },
            }
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "imagejobs operator API: engine steering",
            "version": __version__,
            "description": "Steer the simulated driver and inspect the job engine.",
        },
        "paths": paths,
        "components": {"schemas": components},
    }
