"""The identity API the SDK and other tools call: tokens, temporary keys, project lookup.

Paths and bodies follow Huawei Cloud IAM (shared/spec/huaweicloud-auth.md §4): the SDK's
own project discovery (``GET /v3/projects?name=<region>``), Keystone-style password
tokens, and temporary AK/SK from a token.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from msgspec import Struct
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from imagejobs.api import iam_schemas as s
from imagejobs.api.auth import make_authenticator, read_body
from imagejobs.api.endpoint import decode_body, parse_query
from imagejobs.api.errors import guarded
from imagejobs.api.schemas import encoder
from imagejobs.domain.errors import (
    InvalidIamRequest,
    InvalidParameter,
    LoginFailed,
    PermissionDenied,
)
from imagejobs.domain.params import EnumParam, IntegerParam, Param, StringParam
from imagejobs.observability import CURRENT_REQUEST
from imagejobs.services.access import AccessControl, from_another_site
from imagejobs.services.identity import IdentityService, IssuedToken, keystone_time
from imagejobs.services.protection import caller_name

SUBJECT_TOKEN = "X-Subject-Token"  # noqa: S105 - a header name

# The /v3 query parameters (spec huaweicloud-auth.md §4.1-4.3), read with the /v1 parser.
NOCATALOG = StringParam(
    "nocatalog", 0, 255, "Any non-empty value leaves the catalog out of the token body."
)
_BOOLEAN = ("true", "false")
# IAMSDK KeystoneListProjectsRequest's query set. Every project here is an enabled region
# project whose domain and parent are its account, so each filter is answered exactly.
PROJECT_QUERY: tuple[Param, ...] = (
    StringParam("name", 0, 255, "Only the project of this name (the SDK sends its region)."),
    StringParam("domain_id", 0, 255, "Only projects of this account (domain)."),
    StringParam("parent_id", 0, 255, "Only projects whose parent is this id (the account)."),
    EnumParam("enabled", _BOOLEAN, "Only enabled (true) or disabled (false) projects."),
    EnumParam("is_domain", _BOOLEAN, "Only domains (true) or projects (false)."),
    IntegerParam("page", 1, 2_147_483_647, 1, "Page number, from 1."),
    IntegerParam("per_page", 1, 5000, 5000, "Projects per page, 1 to 5000."),
)


@dataclass(frozen=True)
class IamRouteDoc:
    """What the OpenAPI document says of one /v3 route."""

    operation_id: str
    method: str
    path: str
    summary: str
    status: int
    body: type[Struct] | None
    response: type[Struct] | None
    errors: tuple[int, ...]
    query: tuple[Param, ...] = ()


IAM_ROUTE_DOCS: tuple[IamRouteDoc, ...] = (
    IamRouteDoc(
        "KeystoneCreateUserTokenByPassword",
        "POST",
        "/v3/auth/tokens",
        "Log in with a password; the token comes in X-Subject-Token.",
        201,
        s.AuthRequest,
        s.TokenResponse,
        (400, 401, 409, 429),
        (NOCATALOG,),
    ),
    IamRouteDoc(
        "KeystoneValidateToken",
        "GET",
        "/v3/auth/tokens",
        "Check the token in X-Subject-Token (X-Auth-Token: the caller's).",
        200,
        None,
        s.TokenResponse,
        (400, 401, 403),
        (NOCATALOG,),
    ),
    IamRouteDoc(
        "KeystoneCheckToken",
        "HEAD",
        "/v3/auth/tokens",
        "Check a token without a body.",
        200,
        None,
        None,
        (400, 401, 403),
    ),
    IamRouteDoc(
        "KeystoneRevokeToken",
        "DELETE",
        "/v3/auth/tokens",
        "Revoke the token in X-Subject-Token.",
        204,
        None,
        None,
        (400, 401, 403),
    ),
    IamRouteDoc(
        "KeystoneListProjects",
        "GET",
        "/v3/projects",
        "The caller's projects, optionally by name (the SDK's project discovery).",
        200,
        None,
        s.ProjectsResponse,
        (400, 401, 403),
        PROJECT_QUERY,
    ),
    IamRouteDoc(
        "KeystoneListAuthDomains",
        "GET",
        "/v3/auth/domains",
        "The caller's account (domain).",
        200,
        None,
        s.DomainsResponse,
        (400, 401),
    ),
    IamRouteDoc(
        "CreateTemporaryAccessKeyByToken",
        "POST",
        "/v3.0/OS-CREDENTIAL/securitytokens",
        "Temporary AK/SK and security token from a token (X-Auth-Token or body).",
        201,
        s.AuthRequest,
        s.CredentialResponse,
        (400, 401, 409),
    ),
)


def read_query(request: Request, params: tuple[Param, ...] = ()) -> dict[str, Any]:
    """``params`` as the query gives them, read as /v1 reads its query (as the signature
    covers it: a repeated key refused, "+" a plus sign); other keys are ignored, as /v1
    ignores them. A bad query is a 400 in IAM's shape (``IAM.0011``), naming the key."""
    try:
        query = parse_query(request.scope["query_string"])
        return {param.name: param.parse(query.get(param.name)) for param in params}
    except InvalidParameter as exc:
        raise InvalidIamRequest(exc.parameter, exc.reason) from None


def _decode(raw: bytes) -> s.AuthRequest:
    request: s.AuthRequest = decode_body(raw, s.AuthRequest, InvalidIamRequest)
    return request


def _json(body: Struct, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(encoder.encode(body), status, headers=headers, media_type="application/json")


def _base_url(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host', 'localhost')}"


def token_body(issued: IssuedToken, base_url: str, *, catalog: bool) -> s.TokenResponse:
    domain = s.Domain(issued.account.id, issued.account.name)
    project = issued.project
    role = "te_admin" if issued.user.is_root else "op_fine_grained"
    region = project.name if project else ""
    endpoints = [s.CatalogEndpoint(base_url, region, region, "public", "workspaceapp-public")]
    return s.TokenResponse(
        s.TokenInfo(
            methods=issued.record.methods.split(","),
            issued_at=keystone_time(issued.record.issued_at),
            expires_at=keystone_time(issued.record.expires_at),
            user=s.TokenUser(issued.user.id, issued.user.name, "", domain),
            roles=[s.Role(role, "0")],
            project=None if project is None else s.TokenProject(project.id, project.name, domain),
            domain=domain if project is None else None,
            catalog=[s.CatalogEntry("workspace", "workspaceapp", "workspace", endpoints)]
            if catalog
            else None,
        )
    )


def _page_link(base: str, query: dict[str, Any], page: int) -> str:
    """``GET /v3/projects`` with the same filters and page size, at ``page``."""
    given = {k: v for k, v in query.items() if v is not None} | {"page": page}
    text = "&".join(f"{quote(k, safe='')}={quote(str(v), safe='')}" for k, v in given.items())
    return f"{base}/v3/projects?{text}"


# Huawei IAM's action for KeystoneListProjects (GET /v3/projects).
LIST_PROJECTS_ACTION = "iam:projects:listProjects"


class IamApi:
    """The /v3 handlers, over the identity service."""

    def __init__(
        self,
        identity: IdentityService,
        access: AccessControl,
        revoked: Callable[[], None] = lambda: None,
    ) -> None:
        self.identity = identity  # bootstrap also runs its periodic purge
        self._access = access
        self._authenticate = make_authenticator(access)
        # Tells this process's access control at once (others within their cache time).
        self._revoked = revoked

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v3/auth/tokens", guarded(self.create_token), methods=["POST"]),
            Route("/v3/auth/tokens", guarded(self.check_token), methods=["GET", "HEAD", "DELETE"]),
            Route("/v3/projects", guarded(self.list_projects), methods=["GET"]),
            Route("/v3/auth/domains", guarded(self.list_domains), methods=["GET"]),
            Route(
                "/v3.0/OS-CREDENTIAL/securitytokens",
                guarded(self.create_security_token),
                methods=["POST"],
            ),
        ]

    async def create_token(self, request: Request) -> Response:
        if from_another_site(request.headers):
            # No page may log in from its visitor's browser (a text/plain POST needs no
            # preflight): it could only spend the user's failed-login budget and lock them out.
            raise PermissionDenied(
                "POST /v3/auth/tokens answers no browser request sent by a page of another site"
            )
        auth = _decode(await read_body(request)).auth
        # Read before the login: a bad query must not spend the user's failed-login budget.
        catalog = not read_query(request, (NOCATALOG,))["nocatalog"]
        if "password" not in auth.identity.methods or auth.identity.password is None:
            raise InvalidIamRequest("auth.identity", "must use the password method")
        user = auth.identity.password.user
        account_name = user.domain.name
        if account_name is None and user.domain.id is not None:
            account = await self.identity.account_by_id(user.domain.id)
            # An unknown account id goes through the login like a wrong password: same
            # answer, same time (and it counts towards the lockout).
            account_name = account.name if account else ""
        if account_name is None:
            raise LoginFailed()
        client = request.client
        source = client.host if client else ""
        scope = auth.scope or s.Scope(domain=user.domain)
        if scope.project is not None:
            issued = await self.identity.login(
                account_name,
                user.name,
                user.password,
                project_id=scope.project.id,
                project_name=scope.project.name,
                source=source,
            )
        else:
            issued = await self.identity.login(
                account_name, user.name, user.password, domain_scope=True, source=source
            )
            wanted = scope.domain or s.DomainRef()
            if wanted.id not in (None, issued.account.id) or wanted.name not in (
                None,
                issued.account.name,
            ):
                raise LoginFailed("The domain in the scope is not the user's account.")
        note = CURRENT_REQUEST.get()
        if note is not None:
            # The access line and the audit trail name who logged in (as they name a signed
            # caller), and the event is the account's own: its root reads its logins. A
            # failed login keeps "-": its names are whatever the sender typed.
            note.principal = caller_name(issued.account.name, issued.user.name)
            note.account_id = issued.account.id
        body = token_body(issued, _base_url(request), catalog=catalog)
        return _json(body, 201, {SUBJECT_TOKEN: issued.token})

    async def check_token(self, request: Request) -> Response:
        caller = await self.identity.validate_token(request.headers.get("x-auth-token") or "")
        catalog = not read_query(request, (NOCATALOG,))["nocatalog"]
        subject_token = request.headers.get(SUBJECT_TOKEN)
        if not subject_token:
            raise InvalidIamRequest(SUBJECT_TOKEN, "is required")
        subject = await self.identity.validate_token(subject_token)
        same_user = subject.user.id == caller.user.id
        account_root = caller.user.is_root and caller.account.id == subject.account.id
        if not (same_user or account_root):
            raise PermissionDenied("Only the token's user or the account root may check it.")
        if request.method == "DELETE":
            await self.identity.revoke_token(subject_token)
            self._revoked()
            return Response(status_code=204)
        headers = {SUBJECT_TOKEN: subject_token}
        if request.method == "HEAD":
            return Response(status_code=200, headers=headers)
        return _json(token_body(subject, _base_url(request), catalog=catalog), 200, headers)

    async def list_projects(self, request: Request) -> Response:
        principal = await self._authenticate(request)
        if principal.account_id is None:
            raise PermissionDenied("Only an account's users may list its projects.")
        # A temporary key is no wider than its session policy here either: one made to
        # list jobs does not list the account's projects unless the policy allows it.
        await self._access.authorize_account(principal, LIST_PROJECTS_ACTION)
        query = read_query(request, PROJECT_QUERY)
        base = _base_url(request)
        account_id = principal.account_id
        matching = [
            s.ProjectInfo(
                id=p.id,
                name=p.name,
                domain_id=account_id,
                parent_id=account_id,
                enabled=True,
                is_domain=False,
                description="",
                links=s.SelfLink(f"{base}/v3/projects/{p.id}"),
            )
            for p in await self.identity.projects_of(account_id)
            if query["name"] in (None, p.name)
            and query["domain_id"] in (None, account_id)
            and query["parent_id"] in (None, account_id)
            and query["enabled"] in (None, "true")
            and query["is_domain"] in (None, "false")
        ]
        page, per_page = query["page"], query["per_page"]
        start = (page - 1) * per_page
        links = s.ListLinks(
            f"{base}/v3/projects",
            _page_link(base, query, page - 1) if page > 1 else None,
            _page_link(base, query, page + 1) if start + per_page < len(matching) else None,
        )
        return _json(s.ProjectsResponse(links, matching[start : start + per_page]))

    async def list_domains(self, request: Request) -> Response:
        principal = await self._authenticate(request)
        read_query(request)  # no parameters, but a repeated key is refused as on /v1
        account = None
        if principal.account_id is not None:
            account = await self.identity.account_by_id(principal.account_id)
        base = _base_url(request)
        domains = [
            s.DomainInfo(a.id, a.name, a.enabled, "", s.SelfLink(f"{base}/v3/domains/{a.id}"))
            for a in ([account] if account else [])
        ]
        return _json(s.DomainsResponse(domains, s.SelfLink(f"{base}/v3/auth/domains")))

    async def create_security_token(self, request: Request) -> Response:
        auth = _decode(await read_body(request)).auth
        read_query(request)  # no parameters, but a repeated key is refused as on /v1
        if "token" not in auth.identity.methods:
            raise InvalidIamRequest("auth.identity.methods", "must contain token")
        ref = auth.identity.token or s.TokenRef()
        token = request.headers.get("x-auth-token") or ref.id
        if not token:
            raise InvalidIamRequest("auth.identity.token.id", "or X-Auth-Token is required")
        policy = None if auth.identity.policy is None else json.dumps(auth.identity.policy)
        credential = await self.identity.create_temporary_credential(
            token, ref.duration_seconds, policy
        )
        body = s.CredentialResponse(
            s.Credential(
                credential.access,
                credential.secret,
                credential.security_token,
                keystone_time(credential.expires_at),
            )
        )
        return _json(body, 201)
