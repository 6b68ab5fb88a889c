"""The README's run command gives a working, authenticated service from nothing."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from huaweicloudsdkworkspaceapp.v1 import ListImageJobsRequest

from tests.conftest import ServerProcess
from tests.factories import Tenant
from tests.integration.sdk import sdk_client


def test_first_start_bootstraps_a_demo_account(sqlite_url: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = ServerProcess(
        sqlite_url,
        data_dir,
        "--demo",
        extra_env={"IMAGEJOBS_ENCRYPTION_KEY": "", "IMAGEJOBS_BOOTSTRAP_DEMO_ACCOUNT": "true"},
    )
    try:
        credentials_file = data_dir / "demo-credentials.json"
        key_file = data_dir / "secret.key"
        for private in (credentials_file, key_file):
            assert stat.S_IMODE(private.stat().st_mode) == 0o600
        saved = json.loads(credentials_file.read_text())
        assert saved["project_id"] == "a4da8115c9d8464ead3a38309130523f"
        log = server.log_path.read_text()
        assert saved["secret_key"] in log  # printed once, at creation
        tenant = Tenant(
            saved["account"],
            saved["project_id"],
            saved["region"],
            saved["password"],
            saved["access_key"],
            saved["secret_key"],
        )
        response = sdk_client(server.base_url, tenant).list_image_jobs(
            ListImageJobsRequest(job_type="CREATE_SERVER")
        )
        assert response.count > 0  # --demo seeded the demo project
    finally:
        server.stop()

    again = ServerProcess(
        sqlite_url,
        data_dir,
        extra_env={"IMAGEJOBS_ENCRYPTION_KEY": "", "IMAGEJOBS_BOOTSTRAP_DEMO_ACCOUNT": "true"},
    )
    try:
        assert json.loads(credentials_file.read_text()) == saved  # not created twice
        assert saved["secret_key"] not in again.log_path.read_text()
        assert (
            sdk_client(again.base_url, tenant)
            .list_image_jobs(ListImageJobsRequest(job_type="CREATE_SERVER"))
            .count
            > 0
        )
    finally:
        again.stop()
