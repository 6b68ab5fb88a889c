"""``GET /_imagejobs/audit?limit=&before=``: the audit trail of mutating calls, newest
first. The operator sees every account's events; an account's root user its own; a
root's project-scoped credential (a project-scoped token, a temporary key made from one)
only its project's, none of the account's own (IAM calls, with no project).

A page holds up to 1,000 events: it is read as a deep read (off the event loop on
SQLite, within the deep reads' share of the pool on PostgreSQL) and turned into JSON on a
thread, so other callers are served meanwhile (docs/operations.md). A root's reads take
turns with its account's other deep reads (``DeepReadBudget``): the few deep-read slots
are every tenant's, and 64 reads of one root held every place in flight for the others."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from imagejobs.api.auth import make_authenticator
from imagejobs.api.endpoint import parse_query
from imagejobs.api.errors import guarded
from imagejobs.domain.errors import PermissionDenied
from imagejobs.domain.ids import MAX_ID
from imagejobs.domain.params import IntegerParam
from imagejobs.domain.times import format_time
from imagejobs.services.access import AccessControl
from imagejobs.services.protection import DeepReadBudget
from imagejobs.storage.database import Row
from imagejobs.storage.ops_store import AuditEvent, SqlOpsStore, audit_event

AUDIT_PATH = "/_imagejobs/audit"
# What a temporary key's session policy must allow for it to read its account's trail.
AUDIT_ACTION = "imagejobs:audit:listEvents"
LIMIT = IntegerParam("limit", 1, 1000, 100, "At most this many events.")
BEFORE = IntegerParam("before", 1, MAX_ID, MAX_ID, "Only events older than this event id.")


class AuditEventInfo(msgspec.Struct):
    id: str
    time: str
    request_id: str
    principal: str
    account_id: str
    method: str
    path: str
    operation: str
    project_id: str
    status: int
    error_code: str
    # On a marker (operation AuditEventsDropped): the account's events not stored.
    dropped: int = 0


class AuditResponse(msgspec.Struct):
    events: list[AuditEventInfo]


def audit_info(event: AuditEvent) -> AuditEventInfo:
    return AuditEventInfo(
        id=str(event.id),
        time=format_time(event.at),
        request_id=event.request_id,
        principal=event.principal,
        account_id=event.account_id,
        method=event.method,
        path=event.path,
        operation=event.operation,
        project_id=event.project_id,
        status=event.status,
        error_code=event.error_code,
        dropped=event.dropped,
    )


def audit_page(rows: Sequence[Row]) -> bytes:
    """The answer's body from the events' rows (on a thread: a page of 1,000 events takes
    milliseconds of Python)."""
    return msgspec.json.encode(AuditResponse([audit_info(audit_event(row)) for row in rows]))


def audit_routes(
    ops: SqlOpsStore, access: AccessControl, deep_reads: DeepReadBudget | None = None
) -> list[BaseRoute]:
    authenticate = make_authenticator(access)

    async def audit(request: Request) -> Response:
        principal = await authenticate(request)
        account_id = project_id = None
        if not principal.is_operator:
            if not principal.is_root or principal.account_id is None:
                raise PermissionDenied("Only the operator and account roots may read the audit.")
            account_id = principal.account_id
            # A credential scoped to one project reads that project's trail, no wider: not
            # the other projects' paths, users and request ids, nor the account's IAM calls.
            project_id = principal.project_id
            # Within a temporary key's session policy.
            await access.authorize_account(principal, AUDIT_ACTION)
        query = parse_query(request.scope["query_string"])  # as the signature covers it
        limit, before = LIMIT.parse(query.get("limit")), BEFORE.parse(query.get("before"))
        if account_id is None or deep_reads is None:  # the operator's are not bounded
            rows = await ops.audit_rows(limit, before, account_id, project_id)
        else:
            async with deep_reads.admit(account_id):
                rows = await ops.audit_rows(limit, before, account_id, project_id)
        body = await asyncio.to_thread(audit_page, rows)
        return Response(body, 200, media_type="application/json")

    return [Route(AUDIT_PATH, guarded(audit), methods=["GET"])]
