"""One small HTTP client for the public API: paths come from ``api``'s route table, requests
are signed with ``iam``'s own signer (or carry a token), errors come back as
:class:`ApiError` with the API's code, message and request id.

It uses the standard library's ``urllib``: a command makes a few sequential calls, so a
connection pool or async client would buy nothing.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from functools import cache
from typing import Any
from urllib.parse import quote, urlsplit

from imagejobs.client.credentials import Credentials, CredentialsProblem
from imagejobs.iam.signing import SigningAlgorithm, canonical_query_string, sign_request

QueryValue = str | int | None


class ApiError(Exception):
    """The API answered an error body: ``{"error_code", "error_msg"}`` and X-Request-Id."""

    def __init__(self, status: int, code: str, message: str, request_id: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id


class Unreachable(Exception):
    """No HTTP answer from the endpoint (refused, timed out, bad address)."""


class BadEndpoint(ValueError):
    """The endpoint is not an http:// or https:// URL: a usage error, not an outage."""


@cache
def _operations() -> dict[str, tuple[str, str]]:
    from imagejobs.api.routes import ALL_OPERATIONS

    return {op.operation_id: (op.method, op.path) for op in ALL_OPERATIONS}


def _error_of(status: int, raw: bytes, request_id: str) -> ApiError:
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict) and "error_code" in body:
        return ApiError(status, str(body["error_code"]), str(body.get("error_msg", "")), request_id)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):  # Keystone shape
        error = body["error"]
        return ApiError(
            status, str(error.get("title", status)), str(error.get("message")), request_id
        )
    text = raw.decode("utf-8", "replace").strip()[:200] or "no error body"
    return ApiError(status, f"HTTP {status}", text, request_id)


class ApiClient:
    """Calls operations of the public API by their id (``ListImageJobs``, …)."""

    def __init__(self, credentials: Credentials, timeout: float = 30.0) -> None:
        self._credentials = credentials
        self._timeout = timeout
        parts = urlsplit(credentials.endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            # "host:port" without a scheme (urlsplit reads "localhost:8080" as one).
            bare = "://" not in credentials.endpoint
            hint = f"; did you mean http://{credentials.endpoint}?" if bare else ""
            raise BadEndpoint(
                f"the endpoint {credentials.endpoint!r} is not an http:// or https:// URL{hint}"
            )
        self._host = parts.netloc
        self._base_path = parts.path.rstrip("/")

    @property
    def project_id(self) -> str:
        if not self._credentials.project_id:
            self._credentials = replace(self._credentials, project_id=self._token_project())
        return self._credentials.project_id

    def _token_project(self) -> str:
        """The project a token is scoped to (IAM's token validation), so that a token from
        `POST /v3/auth/tokens` is enough without also looking up its project's id."""
        token = self._credentials.token
        answer = self._send(
            "GET", self._base_path + "/v3/auth/tokens", [("nocatalog", "true")], None,
            extra={"X-Subject-Token": token},
        )  # fmt: skip
        project = (answer or {}).get("token", {}).get("project") or {}
        if not project.get("id"):
            raise CredentialsProblem(
                "the token is not scoped to a project: pass --project-id, or sign in with a"
                " project scope"
            )
        return str(project["id"])

    def call(
        self,
        operation_id: str,
        *,
        path: Mapping[str, str] | None = None,
        query: Mapping[str, QueryValue] | None = None,
        body: Any = None,
    ) -> Any:
        """The decoded JSON answer of one operation (None for an empty body)."""
        method, template = _operations()[operation_id]
        values = {"project_id": self.project_id, **(path or {})}
        url_path = self._base_path + template.format(
            **{name: quote(value, safe="") for name, value in values.items()}
        )
        pairs = [(k, str(v)) for k, v in (query or {}).items() if v is not None]
        return self._send(method, url_path, pairs, body)

    def _send(
        self,
        method: str,
        url_path: str,
        pairs: list[tuple[str, str]],
        body: Any,
        extra: Mapping[str, str] | None = None,
    ) -> Any:
        data = b"" if body is None else json.dumps(body).encode()
        headers = {"Host": self._host, **(extra or {})}
        if body is not None:
            headers["Content-Type"] = "application/json;charset=UTF-8"
        query = canonical_query_string(pairs)
        if self._credentials.token:
            headers["X-Auth-Token"] = self._credentials.token
        else:
            headers.update(
                sign_request(
                    method,
                    url_path,
                    pairs,
                    headers,
                    data,
                    ak=self._credentials.access_key,
                    sk=self._credentials.secret_key,
                    algorithm=SigningAlgorithm.HMAC_SHA256,
                    now=datetime.now(UTC),
                )
            )
        scheme = urlsplit(self._credentials.endpoint).scheme
        url = f"{scheme}://{self._host}{url_path}" + (f"?{query}" if query else "")
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in __init__
            url, data=data if body is not None else None, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise _error_of(exc.code, exc.read(), exc.headers.get("X-Request-Id", "")) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Unreachable(f"cannot reach {self._credentials.endpoint}: {reason}") from None
        return json.loads(raw) if raw else None
