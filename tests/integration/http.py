"""httpx clients that authenticate as the official SDK does: AK/SK signatures or a token."""

from __future__ import annotations

from collections.abc import Generator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import httpx

from imagejobs.iam.signing import SigningAlgorithm, sign_request
from tests.factories import Tenant


class AkSkAuth(httpx.Auth):
    """Signs every request with SDK-HMAC-SHA256, like huaweicloudsdkcore's signer."""

    requires_request_body = True

    def __init__(self, access_key: str, secret_key: str, security_token: str | None = None):
        self._ak = access_key
        self._sk = secret_key
        self._token = security_token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._token is not None:
            request.headers["X-Security-Token"] = self._token
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in ("accept", "accept-encoding", "connection", "content-length")
        }
        added = sign_request(
            request.method,
            request.url.raw_path.split(b"?")[0].decode(),
            parse_qsl(request.url.query.decode(), keep_blank_values=True),
            headers,
            request.content,
            ak=self._ak,
            sk=self._sk,
            algorithm=SigningAlgorithm.HMAC_SHA256,
            now=datetime.now(UTC),
        )
        request.headers.update(added)
        yield request


class SignedHttp:
    """One-off signed requests (each opens and closes its own connection)."""

    def __init__(self, base_url: str, auth: httpx.Auth) -> None:
        self._base_url = base_url
        self._auth = auth

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, self._base_url + url, auth=self._auth, **kwargs)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)


def signed_client(base_url: str, tenant: Tenant) -> SignedHttp:
    return SignedHttp(base_url, AkSkAuth(tenant.access_key, tenant.secret_key))


def login_body(
    tenant: Tenant, user: str | None = None, password: str | None = None
) -> dict[str, Any]:
    """A password login of ``user`` (the root by default) of ``tenant``'s account."""
    return {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {
                        "name": user or tenant.account,
                        "password": password or tenant.password,
                        "domain": {"name": tenant.account},
                    }
                },
            }
        }
    }


def password_token(
    base_url: str,
    tenant: Tenant,
    user: str | None = None,
    password: str | None = None,
    project: str | None = None,
) -> str:
    body = login_body(tenant, user, password)
    body["auth"]["scope"] = {"project": {"id": project or tenant.project_id}}
    response = httpx.post(base_url + "/v3/auth/tokens", json=body, params={"nocatalog": "true"})
    assert response.status_code == 201, response.text
    return response.headers["x-subject-token"]
