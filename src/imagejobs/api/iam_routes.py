"""The identity API the SDK and other tools call: tokens, temporary keys, project lookup.

Paths and bodies follow Huawei Cloud IAM (shared/spec/huaweicloud-auth.md §4): the SDK's
own project discovery (``GET /v3/projects?name=<region>``), Keystone-style password
tokens, and temporary AK/SK from a token.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from msgspec import Struct
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from imagejobs.api.auth import Authenticator, read_body
from imagejobs.api.errors import REQUEST_ID, error_response, internal_error_response, new_request_id
from imagejobs.api.schemas import encoder
from imagejobs.domain.errors import ImageJobsError, InvalidIamRequest, LoginFailed, PermissionDenied
from imagejobs.services.identity import IdentityService, IssuedToken, keystone_time

SUBJECT_TOKEN = "X-Subject-Token"  # noqa: S105 - a header name


class _Domain(Struct):
    id: str | None = None
    name: str | None = None


class _PasswordUser(Struct):
    name: str
    password: str
    domain: _Domain


class _Password(Struct):
    user: _PasswordUser


class _TokenRef(Struct):
    id: str | None = None
    duration_seconds: int = 900


class _Identity(Struct):
    methods: list[str]
    password: _Password | None = None
    token: _TokenRef | None = None
    policy: dict[str, Any] | None = None


class _ProjectScope(Struct):
    id: str | None = None
    name: str | None = None
    domain: _Domain | None = None


class _Scope(Struct):
    project: _ProjectScope | None = None
    domain: _Domain | None = None


class _Auth(Struct):
    identity: _Identity
    scope: _Scope | None = None


class AuthRequest(Struct):
    auth: _Auth


def _decode(raw: bytes) -> AuthRequest:
    try:
        return msgspec.json.decode(raw, type=AuthRequest)
    except msgspec.MsgspecError as exc:
        raise InvalidIamRequest("auth", f"is invalid: {str(exc)[:200]}") from exc


Handler = Callable[[Request], Awaitable[Response]]


def _guarded(handler: Handler) -> Handler:
    """Request id on every answer; errors in the documented shape, never a stack trace."""

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


def _json(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(encoder.encode(body), status, headers=headers, media_type="application/json")


def _base_url(request: Request) -> str:
    host = request.headers.get("host", "localhost")
    return f"{request.url.scheme}://{host}"


def token_body(issued: IssuedToken, base_url: str, *, catalog: bool) -> dict[str, Any]:
    domain = {"id": issued.account.id, "name": issued.account.name}
    token: dict[str, Any] = {
        "methods": issued.record.methods.split(","),
        "issued_at": keystone_time(issued.record.issued_at),
        "expires_at": keystone_time(issued.record.expires_at),
        "user": {
            "id": issued.user.id,
            "name": issued.user.name,
            "password_expires_at": "",
            "domain": domain,
        },
        "roles": [{"name": "te_admin" if issued.user.is_root else "op_fine_grained", "id": "0"}],
    }
    if issued.project is not None:
        token["project"] = {"id": issued.project.id, "name": issued.project.name, "domain": domain}
    else:
        token["domain"] = domain
    if catalog:
        region = issued.project.name if issued.project else ""
        token["catalog"] = [
            {
                "type": "workspace",
                "id": "workspaceapp",
                "name": "workspace",
                "endpoints": [
                    {
                        "url": base_url,
                        "region": region,
                        "region_id": region,
                        "interface": "public",
                        "id": "workspaceapp-public",
                    }
                ],
            }
        ]
    return {"token": token}


class IamApi:
    """The /v3 handlers, over the identity service."""

    def __init__(self, identity: IdentityService, authenticate: Authenticator) -> None:
        self._identity = identity
        self._authenticate = authenticate

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v3/auth/tokens", _guarded(self.create_token), methods=["POST"]),
            Route("/v3/auth/tokens", _guarded(self.check_token), methods=["GET", "HEAD", "DELETE"]),
            Route("/v3/projects", _guarded(self.list_projects), methods=["GET"]),
            Route("/v3/auth/domains", _guarded(self.list_domains), methods=["GET"]),
            Route(
                "/v3.0/OS-CREDENTIAL/securitytokens",
                _guarded(self.create_security_token),
                methods=["POST"],
            ),
        ]

    async def create_token(self, request: Request) -> Response:
        auth = _decode(await read_body(request)).auth
        if "password" not in auth.identity.methods or auth.identity.password is None:
            raise InvalidIamRequest("auth.identity", "must use the password method")
        user = auth.identity.password.user
        account_name = user.domain.name
        if account_name is None and user.domain.id is not None:
            account = await self._identity.account_by_id(user.domain.id)
            account_name = account.name if account else None
        if account_name is None:
            raise LoginFailed()
        scope = auth.scope or _Scope(domain=user.domain)
        if scope.project is not None:
            issued = await self._identity.login(
                account_name,
                user.name,
                user.password,
                project_id=scope.project.id,
                project_name=scope.project.name,
            )
        else:
            issued = await self._identity.login(
                account_name, user.name, user.password, domain_scope=True
            )
            wanted = scope.domain or _Domain()
            if wanted.id not in (None, issued.account.id) or wanted.name not in (
                None,
                issued.account.name,
            ):
                raise LoginFailed("The domain in the scope is not the user's account.")
        body = token_body(
            issued, _base_url(request), catalog=not request.query_params.get("nocatalog")
        )
        return _json(body, 201, {SUBJECT_TOKEN: issued.token})

    async def check_token(self, request: Request) -> Response:
        caller = await self._identity.validate_token(request.headers.get("x-auth-token") or "")
        subject_token = request.headers.get(SUBJECT_TOKEN)
        if not subject_token:
            raise InvalidIamRequest(SUBJECT_TOKEN, "is required")
        subject = await self._identity.validate_token(subject_token)
        same_user = subject.user.id == caller.user.id
        account_root = caller.user.is_root and caller.account.id == subject.account.id
        if not (same_user or account_root):
            raise PermissionDenied("Only the token's user or the account root may check it.")
        if request.method == "DELETE":
            await self._identity.revoke_token(subject_token)
            return Response(status_code=204)
        headers = {SUBJECT_TOKEN: subject_token}
        if request.method == "HEAD":
            return Response(status_code=200, headers=headers)
        body = token_body(
            subject, _base_url(request), catalog=not request.query_params.get("nocatalog")
        )
        return _json(body, 200, headers)

    async def list_projects(self, request: Request) -> Response:
        principal = await self._authenticate(request)
        if principal.account_id is None:
            raise PermissionDenied("Only an account's users may list its projects.")
        name = request.query_params.get("name")
        base = _base_url(request)
        projects = [
            {
                "id": p.id,
                "name": p.name,
                "domain_id": p.account_id,
                "parent_id": p.account_id,
                "enabled": True,
                "is_domain": False,
                "description": "",
                "links": {"self": f"{base}/v3/projects/{p.id}"},
            }
            for p in await self._identity.projects_of(principal.account_id)
            if name is None or p.name == name
        ]
        links = {"self": f"{base}/v3/projects", "previous": None, "next": None}
        return _json({"links": links, "projects": projects})

    async def list_domains(self, request: Request) -> Response:
        principal = await self._authenticate(request)
        account = (
            None
            if principal.account_id is None
            else await self._identity.account_by_id(principal.account_id)
        )
        base = _base_url(request)
        domains = (
            []
            if account is None
            else [
                {
                    "id": account.id,
                    "name": account.name,
                    "enabled": account.enabled,
                    "description": "",
                    "links": {"self": f"{base}/v3/domains/{account.id}"},
                }
            ]
        )
        return _json({"domains": domains, "links": {"self": f"{base}/v3/auth/domains"}})

    async def create_security_token(self, request: Request) -> Response:
        auth = _decode(await read_body(request)).auth
        if "token" not in auth.identity.methods:
            raise InvalidIamRequest("auth.identity.methods", "must contain token")
        ref = auth.identity.token or _TokenRef()
        token = request.headers.get("x-auth-token") or ref.id
        if not token:
            raise InvalidIamRequest("auth.identity.token.id", "or X-Auth-Token is required")
        policy = None if auth.identity.policy is None else json.dumps(auth.identity.policy)
        credential = await self._identity.create_temporary_credential(
            token, ref.duration_seconds, policy
        )
        body = {
            "credential": {
                "access": credential.access,
                "secret": credential.secret,
                "securitytoken": credential.security_token,
                # The SDK parses exactly %Y-%m-%dT%H:%M:%S.%fZ.
                "expires_at": keystone_time(credential.expires_at),
            }
        }
        return _json(body, 201)
