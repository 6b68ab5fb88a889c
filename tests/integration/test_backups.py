"""docs/operations.md's "Backups" blocks, run as an operator pastes them: a copy taken
while `serve` runs, restored, serves the same jobs to the same credentials. (The
operations guide said nothing about backups; a `cp` of a live SQLite database in WAL mode
may miss recent commits.)"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from pathlib import Path

import httpx
import pytest

from imagejobs.storage.migrate import migrate
from tests.conftest import POSTGRES_URL, ServerProcess, require_programs
from tests.factories import TEST_KEY_BASE64, Tenant, new_tenant
from tests.integration.http import signed_client
from tests.integration.sdk import create_server_request, sdk_client

ROOT = Path(__file__).resolve().parents[2]


def _blocks() -> list[str]:
    guide = (ROOT / "docs" / "operations.md").read_text()
    section = guide.split("\n## Backups\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.DOTALL)


def _run(block: str, cwd: Path) -> None:
    ran = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + block],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr


def _create_a_job(server: ServerProcess, url: str) -> tuple[Tenant, str]:
    tenant = new_tenant(url)
    client = sdk_client(server.base_url, tenant)
    job_id = client.create_image_server(create_server_request()).job_id
    assert isinstance(job_id, str)
    return tenant, job_id


def _job_status(server: ServerProcess, tenant: Tenant, job_id: str) -> int:
    answer = signed_client(server.base_url, tenant).get(
        f"/v1/{tenant.project_id}/image-server-jobs/{job_id}"
    )
    return answer.status_code


def test_the_sqlite_backup_and_restore_blocks(tmp_path: Path) -> None:
    require_programs("sqlite3")
    backup, restore, _ = _blocks()
    data = tmp_path / "data"
    url = f"sqlite:///{data / 'imagejobs.db'}"
    asyncio.run(migrate(url))
    (data / "secret.key").write_text(TEST_KEY_BASE64 + "\n")
    os.chmod(data / "secret.key", 0o600)
    # The key from the data directory, as a default deployment has it.
    key_file = {"IMAGEJOBS_ENCRYPTION_KEY": ""}
    server = ServerProcess(url, data, extra_env=key_file)
    try:
        tenant, job_id = _create_a_job(server, url)
        _run(backup, tmp_path)  # while it serves
    finally:
        server.stop()
    data.rename(tmp_path / "lost")
    _run(restore, tmp_path)
    server = ServerProcess(url, data, extra_env=key_file)
    try:
        assert httpx.get(server.base_url + "/_imagejobs/ready").status_code == 200
        assert _job_status(server, tenant, job_id) == 200  # the job, and the tenant's SK
    finally:
        server.stop()
    assert (data / "imagejobs.db").stat().st_mode & 0o777 == 0o600  # closed again on start


@pytest.mark.postgres
def test_the_postgresql_backup_and_restore_block(postgres_url: str, tmp_path: Path) -> None:
    require_programs("pg_dump", "pg_restore", "createdb")
    *_, block = _blocks()
    source = postgres_url.rsplit("/", 1)[1]
    restored = f"{source}_restored"
    script = block.replace("-f imagejobs.dump imagejobs\n", f"-f imagejobs.dump {source}\n")
    script = script.replace("imagejobs_restored", restored)
    assert source in script
    server = ServerProcess(postgres_url, tmp_path / "first")
    try:
        tenant, job_id = _create_a_job(server, postgres_url)
        try:
            _run(script, tmp_path)  # while it serves
        finally:
            server.stop()
        restored_url = POSTGRES_URL.rsplit("/", 1)[0] + "/" + restored
        server = ServerProcess(restored_url, tmp_path / "second")
        try:
            assert httpx.get(server.base_url + "/_imagejobs/ready").status_code == 200
            assert _job_status(server, tenant, job_id) == 200
        finally:
            server.stop()
    finally:
        subprocess.run(
            ["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", "--force", restored],
            check=False,
        )
