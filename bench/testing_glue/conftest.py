"""The glue a user writes today to test against imagejobs without imagejobs.testing (the
reference bench/testing.py compares with): a free port, `imagejobs serve` as a child
process polled until it answers, an account per test through the CLI, steering with raw
HTTP and an operator token. Run the example's tests with it: `-p no:imagejobs`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkworkspaceapp.v1 import WorkspaceAppClient

OPERATOR_TOKEN = "glue-operator-token"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "imagejobs(**steering): steer the test's project")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def glue_server() -> Iterator[tuple[str, dict[str, str]]]:
    port, data = free_port(), tempfile.mkdtemp(prefix="glue-")
    env = {
        **os.environ,
        "IMAGEJOBS_DATA_DIR": data,
        "IMAGEJOBS_OPERATOR_TOKEN": OPERATOR_TOKEN,
        "IMAGEJOBS_BOOTSTRAP_DEMO_ACCOUNT": "false",
        "IMAGEJOBS_SIMULATED_QUEUE_SECONDS": "0",
        "IMAGEJOBS_SIMULATED_DURATION_SECONDS": "0.2",
        "IMAGEJOBS_LOG_LEVEL": "warning",
    }
    command = [sys.executable, "-m", "imagejobs", "serve", "--port", str(port)]
    server = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(base + "/openapi.json", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.1)
    yield base, env
    server.terminate()
    server.wait(60)


@pytest.fixture
def workspaceapp_client(
    glue_server: tuple[str, dict[str, str]], request: pytest.FixtureRequest
) -> WorkspaceAppClient:
    base, env = glue_server
    name = f"t{uuid.uuid4().hex[:12]}"
    created = subprocess.run(
        [sys.executable, "-m", "imagejobs", "iam", "create-account", name, "--json"],
        env=env,
        capture_output=True,
        check=True,
    )
    account: dict[str, Any] = json.loads(created.stdout)
    marker = request.node.get_closest_marker("imagejobs")
    if marker is not None:
        rule: dict[str, Any] = {
            k: v for k, v in marker.kwargs.items() if k in ("completion", "reads")
        }
        if "fail_at" in marker.kwargs:
            rule["faults"] = [
                {
                    "sub_job_index": marker.kwargs["fail_at"] - 1,
                    "error_code": marker.kwargs["code"],
                    "error_message": marker.kwargs["message"],
                }
            ]
        httpx.put(
            f"{base}/_imagejobs/engine/rules/{account['project_id']}/*",
            json=rule,
            headers={"X-Imagejobs-Operator-Token": OPERATOR_TOKEN},
        ).raise_for_status()
    credentials = BasicCredentials(
        account["access_key"], account["secret_key"], account["project_id"]
    )
    return (
        WorkspaceAppClient.new_builder()
        .with_credentials(credentials)
        .with_endpoints([base])
        .build()
    )
