"""Wire bodies of the /v3 identity API (Keystone-compatible shapes, Huawei Cloud IAM
fields). They encode the responses and are the OpenAPI schemas of those routes."""

from __future__ import annotations

from typing import Any

from msgspec import Struct, field


class DomainRef(Struct):
    id: str | None = None
    name: str | None = None


class PasswordUser(Struct):
    name: str
    password: str
    domain: DomainRef


class PasswordIdentity(Struct):
    user: PasswordUser


class TokenRef(Struct):
    id: str | None = None
    duration_seconds: int = 900


class Identity(Struct):
    methods: list[str]
    password: PasswordIdentity | None = None
    token: TokenRef | None = None
    policy: dict[str, Any] | None = None


class ProjectScope(Struct):
    id: str | None = None
    name: str | None = None
    domain: DomainRef | None = None


class Scope(Struct):
    project: ProjectScope | None = None
    domain: DomainRef | None = None


class Auth(Struct):
    identity: Identity
    scope: Scope | None = None


class AuthRequest(Struct):
    """Body of POST /v3/auth/tokens and POST /v3.0/OS-CREDENTIAL/securitytokens."""

    auth: Auth


class Domain(Struct):
    id: str
    name: str


class TokenUser(Struct):
    id: str
    name: str
    password_expires_at: str
    domain: Domain


class TokenProject(Struct):
    id: str
    name: str
    domain: Domain


class Role(Struct):
    name: str
    id: str


class CatalogEndpoint(Struct):
    url: str
    region: str
    region_id: str
    interface: str
    id: str


class CatalogEntry(Struct):
    type: str
    id: str
    name: str
    endpoints: list[CatalogEndpoint]


class TokenInfo(Struct, omit_defaults=True, kw_only=True):
    methods: list[str]
    issued_at: str
    expires_at: str
    user: TokenUser
    roles: list[Role]
    project: TokenProject | None = None
    domain: Domain | None = None
    catalog: list[CatalogEntry] | None = None


class TokenResponse(Struct):
    token: TokenInfo


class Credential(Struct):
    access: str
    secret: str
    securitytoken: str
    expires_at: str  # %Y-%m-%dT%H:%M:%S.%fZ, the format the SDK parses


class CredentialResponse(Struct):
    credential: Credential


class SelfLink(Struct):
    self_: str = field(name="self")


class ListLinks(Struct):
    self_: str = field(name="self")
    previous: str | None = None
    next: str | None = None


class ProjectInfo(Struct):
    id: str
    name: str
    domain_id: str
    parent_id: str
    enabled: bool
    is_domain: bool
    description: str
    links: SelfLink


class ProjectsResponse(Struct):
    links: ListLinks
    projects: list[ProjectInfo]


class DomainInfo(Struct):
    id: str
    name: str
    enabled: bool
    description: str
    links: SelfLink


class DomainsResponse(Struct):
    domains: list[DomainInfo]
    links: SelfLink


class KeystoneError(Struct):
    code: int
    message: str
    title: str


class KeystoneErrorResponse(Struct):
    error: KeystoneError
