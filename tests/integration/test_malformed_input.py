"""Hostile input on every route, over HTTP against a real server on each database: nested
bodies, NUL and non-UTF-8 text, non-ASCII credentials, bodies cut short. The server answers
in the documented error format, never with a 5xx, and logs nothing above INFO for it."""

from __future__ import annotations

import json
import re
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ServerProcess
from tests.engine_support import server_body
from tests.factories import OPERATOR_HEADERS, Tenant
from tests.integration.http import AkSkAuth, password_token

CREDENTIAL_HEADERS = (
    "Authorization",
    "X-Auth-Token",
    "X-Security-Token",
    "X-Subject-Token",
    "X-Imagejobs-Operator-Token",
)
# Bytes an HTTP client may put in a header value (VCHAR and obs-text): no controls.
HEADER_BYTES = [*range(0x21, 0x7F), *range(0x80, 0x100)]
NASTY_TEXT = ["\x00", "a\x00b", "\x00" * 3, "é", "中文", "\U0001f600", "*", "..", "a" * 300, " "]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    takes_body: bool


def _routes(base_url: str) -> list[Route]:
    """Every documented operation: the public and /v3 APIs, and the operator API."""
    routes = []
    for document in ("/openapi.json", "/_imagejobs/openapi.json"):
        paths = httpx.get(base_url + document).json()["paths"]
        for path, operations in paths.items():
            for method, operation in operations.items():
                routes.append(Route(method.upper(), path, "requestBody" in operation))
    return routes


def _nested(depth: int, opener: str) -> bytes:
    closer = "]" if opener == "[" else "}"
    return (opener * depth + "1" + closer * depth).encode()


def _with_text(text: str) -> list[Any]:
    """Bodies shaped as the routes expect, with ``text`` where a name or id goes."""
    login = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": text, "password": text, "domain": {"name": text}}},
            },
            "scope": {"project": {"name": text}},
        }
    }
    temporary = {"auth": {"identity": {"methods": ["token"], "token": {"id": text}}}}
    return [
        login,
        temporary,
        server_body(text),
        {"name": text, "description": text},
        {"items": [text]},
        {"completion": text, "queue_seconds": 1},
    ]


texts = st.one_of(st.sampled_from(NASTY_TEXT), st.text(max_size=24))
bodies = st.one_of(
    st.builds(_nested, st.integers(100, 100_000), st.sampled_from(["[", '{"a":', '{"items":'])),
    st.builds(
        lambda text, shape: json.dumps(_with_text(text)[shape]).encode(), texts, st.integers(0, 5)
    ),
    st.binary(max_size=64),
    st.recursive(
        st.none() | st.booleans() | st.integers() | texts,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
        max_leaves=8,
    ).map(lambda value: json.dumps(value).encode()),
)
# A path segment or query value as sent: percent-encoded text or arbitrary bytes.
raw_values = st.one_of(
    texts.map(lambda text: quote(text, safe="")),
    st.binary(max_size=16).map(lambda raw: quote(raw, safe="")),
)
bad_credentials = st.tuples(
    st.sampled_from(CREDENTIAL_HEADERS),
    st.lists(st.sampled_from(HEADER_BYTES), min_size=1, max_size=24).map(bytes),
)


@dataclass(frozen=True)
class Probe:
    route: Route
    path_values: dict[str, str]
    query: list[tuple[str, str]]
    auth: str
    bad_header: tuple[str, bytes] | None
    body: bytes | None


@st.composite
def probes(draw: st.DrawFn, routes: list[Route], project_id: str) -> Probe:
    route = draw(st.sampled_from(routes))
    path_values = {}
    for name in re.findall(r"{(\w+)}", route.path):
        valid = {"project_id": project_id, "job_type": "CREATE_SERVER"}.get(name, "1")
        path_values[name] = draw(st.one_of(st.just(valid), raw_values))
    names = st.sampled_from(["job_type", "status", "limit", "offset", "server_name", "project_id"])
    query = draw(st.lists(st.tuples(names, raw_values), max_size=3))
    body = draw(bodies) if route.takes_body or draw(st.booleans()) else None
    return Probe(
        route,
        path_values,
        query,
        auth=draw(st.sampled_from(["token", "operator", "none"])),
        bad_header=draw(st.one_of(st.none(), bad_credentials)),
        body=body if route.method not in ("GET", "HEAD") else None,
    )


def _assert_documented_error(response: httpx.Response, route: Route) -> None:
    assert response.status_code < 500, response.text
    if response.status_code < 400:
        return
    assert len(response.headers["x-request-id"]) == 32
    if route.method == "HEAD":
        return
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    if "error" in body:  # the Keystone-compatible token API's own shape
        assert route.path == "/v3/auth/tokens"
        assert set(body["error"]) == {"code", "message", "title"}
    else:
        assert set(body) == {"error_code", "error_msg"}
        assert "Expected `" not in body["error_msg"], body  # msgspec's wording, not ours


def test_hostile_input_on_every_route_gets_a_documented_4xx(
    live_server: ServerProcess, live_tenant: Tenant
) -> None:
    base = live_server.base_url
    routes = _routes(base)
    assert len(routes) >= 20  # public, /v3 and operator operations
    token = password_token(base, live_tenant)
    credentials = {"token": {"X-Auth-Token": token}, "operator": OPERATOR_HEADERS, "none": {}}

    @settings(
        max_examples=150,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(probe=probes(routes, live_tenant.project_id))
    def check(probe: Probe) -> None:
        path = probe.route.path
        for name, value in probe.path_values.items():
            path = path.replace("{" + name + "}", value)
        query = "&".join(f"{name}={value}" for name, value in probe.query)
        headers: dict[str, str | bytes] = dict(credentials[probe.auth])
        if probe.bad_header is not None:
            headers[probe.bad_header[0]] = probe.bad_header[1]
        if probe.body is not None:
            headers["Content-Type"] = "application/json"
        url = base + path + (f"?{query}" if query else "")
        response = httpx.request(
            probe.route.method, url, headers=headers, content=probe.body, timeout=30
        )
        _assert_documented_error(response, probe.route)

    check()
    live_server.assert_quiet_log()


def _raw_exchange(server: ServerProcess, request: bytes, *, close_early: bool = False) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(request)
        if close_early:
            return b""
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer and answer.endswith(b"}"):
                break
        return answer


@pytest.mark.parametrize(
    "path",
    [
        "/v1/{project}/image-server-sub-jobs/actions/batch-delete",
        "/v3/auth/tokens",
        "/_imagejobs/engine/rules/{project}/CREATE_SERVER",
    ],
)
def test_bodies_cut_short_get_a_400_not_a_500(
    live_server: ServerProcess, live_tenant: Tenant, path: str
) -> None:
    target = path.format(project=live_tenant.project_id)
    method = "POST" if target.startswith("/v3") else "PUT" if "_imagejobs" in target else "PATCH"
    head = (
        f"{method} {target} HTTP/1.1\r\nHost: x\r\nX-Imagejobs-Operator-Token: "
        f"{OPERATOR_HEADERS['X-Imagejobs-Operator-Token']}\r\n"
    ).encode()
    broken_chunks = head + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n"
    answer = _raw_exchange(live_server, broken_chunks)
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert b'"error_code":"WKS.00211102"' in answer or b'"error_code":"IAM.0011"' in answer
    assert b"body was cut short" in answer
    # A client that goes away mid-body: nobody is left to answer; the log stays quiet.
    _raw_exchange(live_server, head + b"Content-Length: 100\r\n\r\n{", close_early=True)
    time.sleep(0.5)  # the server notices the disconnect a moment later
    # The server is still there, and said nothing above INFO about either client.
    assert httpx.get(live_server.base_url + "/openapi.json").status_code == 200
    live_server.assert_quiet_log()


@pytest.mark.parametrize(
    ("method", "path", "body", "message"),
    [
        (
            "PATCH",
            "/v1/{project}/image-server-sub-jobs/actions/batch-delete",
            {},
            "items is required",
        ),
        (
            "PATCH",
            "/v1/{project}/image-server-sub-jobs/actions/batch-delete",
            {"items": [str(i) for i in range(21)]},
            "items must hold at most 20 items",
        ),
        (
            "PATCH",
            "/v1/{project}/image-server-sub-jobs/actions/batch-delete",
            {"items": [1]},
            "items[0] must be a string, not an integer",
        ),
        (
            "PUT",
            "/_imagejobs/engine/rules/{project}/CREATE_SERVER",
            {"completion": "later"},
            "completion must be one of duration, immediate, reads",
        ),
        (
            "PUT",
            "/_imagejobs/engine/rules/{project}/CREATE_SERVER",
            {"faults": [{"effect": "fail", "bogus": 1}]},
            "faults[0].bogus is not a known field",
        ),
        (
            "PUT",
            "/_imagejobs/engine/rules/{project}/CREATE_SERVER",
            {"reads": 0, "completion": "reads"},
            "reads must be at least 1",
        ),
        (
            "PUT",
            "/_imagejobs/engine/rules/{project}/CREATE_SERVER",
            {"queue_seconds": "soon"},
            "queue_seconds must be a number or null, not a string",
        ),
        ("POST", "/v3/auth/tokens", [], "body must be an object, not an array"),
    ],
)
def test_refused_bodies_name_the_field_and_the_limit_in_the_apis_words(
    live_server: ServerProcess,
    live_tenant: Tenant,
    method: str,
    path: str,
    body: Any,
    message: str,
) -> None:
    """A body the validation refuses was answered in msgspec's words ("items is invalid:
    Expected `array` of length <= 20"); every body the API decodes now says which field
    breaks which rule, in the documented error format."""
    url = live_server.base_url + path.format(project=live_tenant.project_id)
    if path.startswith("/v1"):
        auth = AkSkAuth(live_tenant.access_key, live_tenant.secret_key)
        response = httpx.request(method, url, json=body, auth=auth)
    else:
        response = httpx.request(method, url, json=body, headers=OPERATOR_HEADERS)
    assert response.status_code == 400, response.text
    code = "IAM.0011" if path.startswith("/v3") else "WKS.00211102"
    assert response.json() == {
        "error_code": code,
        "error_msg": f"The parameter is invalid: {message}",
    }
    live_server.assert_quiet_log()
