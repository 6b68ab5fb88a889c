"""IMAGEJOBS_AUTH=none trusts every caller, so it must not trust a web page: any site the
developer visits can make the browser send a "simple" request (POST with a text/plain
body, no preflight) to http://127.0.0.1:8080, whose body the API reads as JSON. Such a
request is refused; the service's own pages (same origin) and non-browser clients are not."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

import imagejobs.testing
from imagejobs.testing import Cloud

PROJECT = "0123456789abcdef0123456789abcdef"
SERVER = {
    "name": "from-a-page",
    "image_id": "img-1",
    "image_type": "public",
    "product_id": "workspace.x86.a.b",
    "subnet_id": "subnet-1",
    "vpc_id": "vpc-1",
    "authorize_accounts": [{"account": "alice", "account_type": "USER"}],
}


@pytest.fixture(scope="module")
def open_cloud() -> Iterator[Cloud]:
    with imagejobs.testing.serve(auth="none") as running:
        yield running


def _post(cloud: Cloud, path: str, body: str, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{cloud.endpoint}{path}",
        content=body,
        headers={"Content-Type": "text/plain;charset=UTF-8", **headers},
    )


@pytest.mark.parametrize(
    "browser",
    [
        {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
        {"Sec-Fetch-Site": "same-site", "Origin": "http://localhost:3000"},
        {"Origin": "https://evil.example"},  # a browser without Fetch Metadata
        {"Origin": "null"},  # a sandboxed frame or a file:// page
    ],
)
def test_a_page_of_another_site_can_neither_reset_nor_create(
    open_cloud: Cloud, browser: dict[str, str]
) -> None:
    reset = _post(open_cloud, "/_imagejobs/reset", "{}", **browser)
    assert reset.status_code == 403
    assert reset.json()["error_code"] == "WKS.00081102"
    created = _post(open_cloud, f"/v1/{PROJECT}/image-servers", json.dumps(SERVER), **browser)
    assert created.status_code == 403
    assert httpx.get(f"{open_cloud.endpoint}/v1/{PROJECT}/image-servers").json()["count"] == 0


def test_the_services_own_pages_and_other_clients_still_may(open_cloud: Cloud) -> None:
    host = open_cloud.endpoint.removeprefix("http://")
    same_origin = {"Sec-Fetch-Site": "same-origin", "Origin": open_cloud.endpoint, "Host": host}
    assert _post(open_cloud, "/_imagejobs/reset", "{}", **same_origin).status_code == 200
    assert _post(open_cloud, "/_imagejobs/reset", "{}").status_code == 200  # curl, an SDK
    typed = {"Sec-Fetch-Site": "none"}  # typed into the address bar, a bookmark
    answer = httpx.get(f"{open_cloud.endpoint}/v1/{PROJECT}/image-servers", headers=typed)
    assert answer.status_code == 200


def test_a_page_of_another_site_cannot_lock_a_user_out() -> None:
    """Five wrong passwords lock a user's password logins for 15 minutes; a page must not
    be able to spend them from its visitor's browser (a service on 127.0.0.1 is otherwise
    out of an outsider's reach)."""
    with imagejobs.testing.serve() as cloud:
        tenant = cloud.tenant()

        def login(password: str, **headers: str) -> httpx.Response:
            user = {"name": tenant.user, "password": password, "domain": {"name": tenant.account}}
            body = {"auth": {"identity": {"methods": ["password"], "password": {"user": user}}}}
            return _post(cloud, "/v3/auth/tokens", json.dumps(body), **headers)

        for _ in range(6):
            refused = login("wrong-password", **{"Sec-Fetch-Site": "cross-site"})
            assert refused.status_code == 403
            assert "another site" in refused.text
        assert login(tenant.password).status_code == 201
