"""The served OpenAPI document and the server's behaviour agree, operation by operation."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource

from imagejobs.api.iam_routes import IAM_ROUTE_DOCS
from imagejobs.api.routes import ALL_OPERATIONS as OPERATIONS
from tests.conftest import ServerProcess
from tests.factories import Tenant, make_job, new_tenant, write_jobs
from tests.integration.http import signed_client


@pytest.fixture(scope="module")
def document(live_server: ServerProcess) -> dict[str, Any]:
    response = httpx.get(live_server.base_url + "/openapi.json")
    assert response.status_code == 200
    doc: dict[str, Any] = response.json()
    return doc


def _operations(
    document: dict[str, Any], prefix: str = "/"
) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method.upper(), op)
        for path, item in document["paths"].items()
        for method, op in item.items()
        if path.startswith(prefix)
    ]


_DRAFT = "https://json-schema.org/draft/2020-12/schema"
JOB_APIS = "/v1/{project_id}/image-server-"


def _validator(document: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """A validator for ``schema`` whose ``#/components/...`` refs resolve in ``document``."""
    registry: Registry = Registry().with_resource(
        "urn:doc", Resource.from_contents({**document, "$schema": _DRAFT})
    )
    return Draft202012Validator(_rebase(schema), registry=registry)


def _rebase(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: ("urn:doc" + v if k == "$ref" else _rebase(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_rebase(v) for v in node]
    return node


def test_document_is_valid_openapi_31(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_document_lists_exactly_the_served_operations(document: dict[str, Any]) -> None:
    documented = {(path, method) for path, method, _ in _operations(document)}
    served = {(op.path, op.method) for op in OPERATIONS}
    served |= {(doc.path, doc.method) for doc in IAM_ROUTE_DOCS}
    assert documented == served
    assert {
        "ListImageJobs",
        "ShowImageJob",
        "ListImageSubJobs",
        "CountImageSubJobs",
        "BatchDeleteImageSubJobs",
        "KeystoneCreateUserTokenByPassword",
        "KeystoneListProjects",
    } <= {op["operationId"] for _, _, op in _operations(document)}


def _schema_of(document: dict[str, Any], path: str, method: str, status: int) -> dict[str, Any]:
    response = document["paths"][path][method]["responses"][str(status)]
    schema: dict[str, Any] = response["content"]["application/json"]["schema"]
    return schema


def test_identity_routes_answer_their_documented_bodies(
    live_server: ServerProcess, live_database_url: str, document: dict[str, Any]
) -> None:
    tenant = new_tenant(live_database_url)
    base = live_server.base_url
    login = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {
                        "name": tenant.account,
                        "password": tenant.password,
                        "domain": {"name": tenant.account},
                    }
                },
            },
            "scope": {"project": {"name": tenant.region}},
        }
    }
    created = httpx.post(base + "/v3/auth/tokens", json=login)
    _validator(document, _schema_of(document, "/v3/auth/tokens", "post", 201)).validate(
        created.json()
    )
    token = created.headers["x-subject-token"]
    both = {"X-Auth-Token": token, "X-Subject-Token": token}
    checked = httpx.get(base + "/v3/auth/tokens", headers=both)
    _validator(document, _schema_of(document, "/v3/auth/tokens", "get", 200)).validate(
        checked.json()
    )
    signed = signed_client(base, tenant)
    for path in ("/v3/projects", "/v3/auth/domains"):
        response = signed.get(path)
        assert response.status_code == 200
        _validator(document, _schema_of(document, path, "get", 200)).validate(response.json())
    credential = httpx.post(
        base + "/v3.0/OS-CREDENTIAL/securitytokens",
        headers={"X-Auth-Token": token},
        json={"auth": {"identity": {"methods": ["token"]}}},
    )
    schema = _schema_of(document, "/v3.0/OS-CREDENTIAL/securitytokens", "post", 201)
    _validator(document, schema).validate(credential.json())
    login["auth"]["identity"]["password"]["user"]["password"] = "Wrong-passw0rd"  # type: ignore[index]
    refused = httpx.post(base + "/v3/auth/tokens", json=login)
    assert refused.status_code == 401
    _validator(document, _schema_of(document, "/v3/auth/tokens", "post", 401)).validate(
        refused.json()
    )


def _valid_value(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return str(schema["enum"][0])
    if schema["type"] == "integer":
        return str(schema["minimum"])
    return "CREATE_SERVER" if "pattern" in schema else "x"


def _url(base: str, path: str, project: str, job_id: str) -> str:
    return base + path.replace("{project_id}", project).replace("{job_id}", job_id)


def test_valid_requests_answer_the_documented_200_body(
    live_server: ServerProcess, live_database_url: str, document: dict[str, Any]
) -> None:
    tenant = new_tenant(live_database_url)
    project = tenant.project_id
    client = signed_client(live_server.base_url, tenant)
    detail = make_job(project, sub_jobs=2)
    write_jobs(live_database_url, [detail])
    # The job APIs; the image-server APIs are checked in test_server_openapi.py.
    for path, method, op in _operations(document, JOB_APIS):
        query = {
            p["name"]: _valid_value(p["schema"])
            for p in op["parameters"]
            if p["in"] == "query" and p["required"]
        }
        body = {"items": [str(detail.sub_jobs[0].id)]} if "requestBody" in op else None
        response = client.request(
            method,
            _url("", path, project, str(detail.job.id)),
            params=query,
            json=body,
        )
        assert response.status_code == 200, (op["operationId"], response.text)
        ok = op["responses"]["200"]
        if "content" in ok:
            schema = ok["content"]["application/json"]["schema"]
            _validator(document, schema).validate(response.json())
        else:
            assert response.content == b""


def _invalid_values(schema: dict[str, Any]) -> list[str]:
    if "enum" in schema:
        return [schema["enum"][0].lower() + "_NOT"]
    if schema["type"] == "integer":
        return [str(schema["minimum"] - 1), str(schema["maximum"] + 1), "abc", "1.5"]
    if "pattern" in schema:
        return ["NOT_A_TYPE"]
    if schema.get("maxLength") is not None and schema["maxLength"] < 1000:
        return ["x" * (schema["maxLength"] + 1)]
    return []


def test_every_documented_constraint_is_enforced(
    live_server: ServerProcess, live_tenant: Tenant, document: dict[str, Any]
) -> None:
    project = live_tenant.project_id
    client = signed_client(live_server.base_url, live_tenant)
    checked = 0
    # The job APIs; the image-server APIs are checked in test_server_openapi.py.
    for path, method, op in _operations(document, JOB_APIS):
        base_query = {
            p["name"]: _valid_value(p["schema"])
            for p in op["parameters"]
            if p["in"] == "query" and p["required"]
        }
        body = {"items": ["702364883651395584"]} if "requestBody" in op else None
        for param in op["parameters"]:
            if param["in"] != "query":
                continue
            for bad in _invalid_values(param["schema"]):
                response = client.request(
                    method,
                    _url("", path, project, "1"),
                    params={**base_query, param["name"]: bad},
                    json=body,
                )
                assert response.status_code == 400, (op["operationId"], param["name"], bad)
                assert param["name"] in response.json()["error_msg"]
                assert "400" in op["responses"]
                checked += 1
            if param["required"]:
                query = {k: v for k, v in base_query.items() if k != param["name"]}
                response = client.request(method, _url("", path, project, "1"), params=query)
                assert response.status_code == 400
                checked += 1
    assert checked >= 20


def test_error_examples_match_what_the_server_sends(
    live_server: ServerProcess, live_tenant: Tenant, document: dict[str, Any]
) -> None:
    op = document["paths"]["/v1/{project_id}/image-server-jobs"]["get"]
    client = signed_client(live_server.base_url, live_tenant)
    response = client.get(f"/v1/{live_tenant.project_id}/image-server-jobs")
    example = op["responses"]["400"]["content"]["application/json"]["example"]
    assert response.json()["error_code"] == example["error_code"]
    error_schema = op["responses"]["400"]["content"]["application/json"]["schema"]
    _validator(document, error_schema).validate(response.json())


def test_docs_page_and_its_assets_are_served_locally(live_server: ServerProcess) -> None:
    page = httpx.get(live_server.base_url + "/docs")
    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)="(/docs/assets/[^"]+)"', page.text)
    assert len(assets) == 2
    assert "http" not in "".join(re.findall(r'(?:src|href)="([^"]+)"', page.text))
    # Not framable (clickjacking of "Try it out"), and no script runs but the bundle and the
    # page's own inline one, allowed by its hash.
    policy = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    [inline] = re.findall(r"<script>(.*?)</script>", page.text, re.S)
    digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
    assert f"script-src 'self' 'sha256-{digest}';" in policy
    for asset in assets:
        response = httpx.get(live_server.base_url + asset)
        assert response.status_code == 200
        assert len(response.content) > 10_000
