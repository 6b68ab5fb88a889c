"""Ctrl-C and SIGTERM, as a user sends them to the long-running commands: `jobs watch`
exits 130 (the shell's code for an interrupted program) without a traceback; `serve` and
`worker` stop gracefully and exit 0; and none of them prints Alembic's start-up chatter."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import imagejobs.testing
from tests.conftest import free_port
from tests.integration.sdk import create_server_request


def _start(*args: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "imagejobs", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "IMAGEJOBS_PROFILE": "", **env},
        cwd=cwd,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )


def _interrupt(process: subprocess.Popen[str], signum: int) -> tuple[int, str, str]:
    """Send ``signum`` to the whole process group (what Ctrl-C in a terminal does)."""
    os.killpg(process.pid, signum)
    stdout, stderr = process.communicate(timeout=30)
    return process.returncode, stdout, stderr


def test_ctrl_c_ends_jobs_watch_with_130_and_no_traceback(tmp_path: Path) -> None:
    with imagejobs.testing.serve() as cloud:
        tenant = cloud.tenant()
        cloud.steer(tenant, completion="reads", reads=10_000)  # runs until interrupted
        client = cloud.client(tenant)
        job_id = client.create_image_server(create_server_request()).job_id
        env = {
            "IMAGEJOBS_ENDPOINT": cloud.endpoint,
            "HUAWEICLOUD_SDK_AK": tenant.access_key,
            "HUAWEICLOUD_SDK_SK": tenant.secret_key,
            "HUAWEICLOUD_SDK_PROJECT_ID": tenant.project_id,
        }
        watch = _start("jobs", "watch", job_id, "--interval", "0.1", env=env, cwd=tmp_path)
        assert watch.stdout is not None
        first = watch.stdout.readline()  # it is following the job
        assert first.split()[0] in ("WAITING", "RUNNING"), first
        code, _, stderr = _interrupt(watch, signal.SIGINT)
    assert code == 130, stderr
    assert "Traceback" not in stderr
    assert "Aborted" not in stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_worker_stops_gracefully_with_exit_0_and_no_alembic_noise(
    tmp_path: Path, signum: int
) -> None:
    env = {"IMAGEJOBS_LOG_LEVEL": "info"}
    worker = _start("worker", "--data-dir", str(tmp_path / "data"), env=env, cwd=tmp_path)
    # stderr is a pipe, read in full at the end: the worker is up once it has created
    # its database and leased an id node there (well under a second later).
    deadline = time.monotonic() + 30
    while not (tmp_path / "data" / "imagejobs.db").exists():
        assert worker.poll() is None, worker.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(1.5)
    code, _, stderr = _interrupt(worker, signum)
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert " stopped" in stderr  # "runner ... stopped": its steps finished or released
    # The first start migrates: one line says so; Alembic's own lines stay at debug level.
    assert "migrated the database schema from empty to" in stderr
    assert "alembic" not in stderr


def test_serve_stops_on_ctrl_c_with_exit_0(tmp_path: Path) -> None:
    port = free_port()
    env = {"IMAGEJOBS_LOG_LEVEL": "info", "IMAGEJOBS_ACCESS_LOG": "false"}
    args = ("serve", "--profile", "test", "--port", str(port), "--workers", "2")
    serve = _start(*args, "--data-dir", str(tmp_path / "data"), env=env, cwd=tmp_path)
    deadline = time.monotonic() + 30
    while True:
        assert serve.poll() is None, serve.communicate()
        assert time.monotonic() < deadline
        try:
            if httpx.get(f"http://127.0.0.1:{port}/_imagejobs/ready").status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    code, _, stderr = _interrupt(serve, signal.SIGINT)
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert "alembic" not in stderr
