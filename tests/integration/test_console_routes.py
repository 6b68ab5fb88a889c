"""What the server itself promises the console: ``GET /`` leads to it, the page carries the
route table the scripts call operations by, and every asset comes from the package."""

from __future__ import annotations

import json
import re

import httpx

from imagejobs.api.console import ASSETS_DIRECTORY, operations_table
from tests.conftest import ServerProcess


def test_get_slash_leads_to_the_console(live_server: ServerProcess) -> None:
    response = httpx.get(live_server.base_url + "/")
    assert response.status_code == 302
    assert response.headers["location"] == "/console"


def test_the_page_carries_the_route_table_and_forbids_other_hosts(
    live_server: ServerProcess,
) -> None:
    response = httpx.get(live_server.base_url + "/console")
    assert response.status_code == 200
    assert "default-src 'self'" in response.headers["content-security-policy"]
    embedded = re.search(
        r'<script type="application/json" id="operations">(.*?)</script>', response.text
    )
    assert embedded is not None
    table = json.loads(embedded.group(1))
    assert table == operations_table()
    assert table["ListImageJobs"] == {"method": "GET", "path": "/v1/{project_id}/image-server-jobs"}
    assert "//" not in re.sub(r"https?://|\\/", "", response.text.split("<body>")[1])


def test_every_operation_the_scripts_call_is_in_the_table() -> None:
    sources = "".join(p.read_text() for p in ASSETS_DIRECTORY.rglob("*.js"))
    called = set(re.findall(r'(?:call|send)\("(\w+)"', sources))
    assert {"ListImageJobs", "ShowImageJob", "CreateImageServer"} <= called
    assert called <= set(operations_table())
    assert not re.search(r"https?://", sources)  # no other host, not even a CDN


def test_assets_are_served_from_the_package(live_server: ServerProcess) -> None:
    for asset in ("app.js", "api.js", "views/tasks.js", "console.css"):
        response = httpx.get(f"{live_server.base_url}/console/assets/{asset}")
        assert response.status_code == 200, asset
        assert response.text == (ASSETS_DIRECTORY / asset).read_text()
    missing = httpx.get(live_server.base_url + "/console/assets/nothing.js")
    assert missing.status_code == 404
