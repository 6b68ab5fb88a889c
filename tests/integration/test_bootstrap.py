"""The README's run command gives a working, authenticated service from nothing."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from click.testing import CliRunner
from huaweicloudsdkworkspaceapp.v1 import ListImageJobsRequest

from imagejobs.cli import main
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
        # Shown on a terminal only: a log (stderr to a file here) is read by more people
        # than the data directory's owner, and kept longer.
        assert saved["secret_key"] not in log
        assert saved["password"] not in log
        assert f"Created the demo account: its credentials are in {credentials_file}" in log
        tenant = _demo_tenant(saved)
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
        # Not created twice; but it names the server now running, on another port: as the
        # CLI's profile it kept naming the first start's port, where nothing answered.
        assert json.loads(credentials_file.read_text()) == saved | {"endpoint": again.base_url}
        assert again.base_url != saved["endpoint"]
        assert stat.S_IMODE(credentials_file.stat().st_mode) == 0o600
        assert saved["secret_key"] not in again.log_path.read_text()
        assert (
            sdk_client(again.base_url, tenant)
            .list_image_jobs(ListImageJobsRequest(job_type="CREATE_SERVER"))
            .count
            > 0
        )
    finally:
        again.stop()


def _demo_tenant(saved: dict[str, str]) -> Tenant:
    return Tenant(
        saved["account"],
        saved["project_id"],
        saved["region"],
        saved["password"],
        saved["access_key"],
        saved["secret_key"],
    )


def test_a_second_database_never_overwrites_the_first_ones_demo_credentials(
    database_url: str, tmp_path: Path
) -> None:
    # The README's path: the SQLite demo, then its PostgreSQL section with the same data
    # directory. Each first start creates a demo account, shown once: the second file used
    # to replace the first, and the SQLite demo's credentials were lost.
    data_dir = tmp_path / "data"
    env = {"IMAGEJOBS_ENCRYPTION_KEY": "", "IMAGEJOBS_BOOTSTRAP_DEMO_ACCOUNT": "true"}
    sqlite_url = f"sqlite:///{tmp_path / 'demo.db'}"  # serve migrates a SQLite database
    first = ServerProcess(sqlite_url, data_dir, "--demo", extra_env=env)
    first.stop()
    first_file = data_dir / "demo-credentials.json"
    saved_first = json.loads(first_file.read_text())

    second = ServerProcess(database_url, data_dir, extra_env=env)
    try:
        second_file = data_dir / "demo-credentials-2.json"
        assert json.loads(first_file.read_text()) == saved_first
        assert stat.S_IMODE(second_file.stat().st_mode) == 0o600
        saved_second = json.loads(second_file.read_text())
        assert saved_second["secret_key"] != saved_first["secret_key"]
        # Each file names the server that wrote it, so that, as the CLI's profile alone, it
        # reaches its own database's account: with no endpoint the CLI asked the default
        # port, another database's server (401 "ak ... not exist") or none.
        assert saved_second["endpoint"] == second.base_url
        assert saved_first["endpoint"] == first.base_url
        listed = CliRunner().invoke(
            main,
            ["jobs", "count", "--job-type", "CREATE_SERVER"],
            env={"IMAGEJOBS_PROFILE": str(second_file), "IMAGEJOBS_ENDPOINT": "",
                 "HUAWEICLOUD_SDK_AK": "", "HUAWEICLOUD_SDK_SK": "",
                 "HUAWEICLOUD_SDK_PROJECT_ID": ""},
        )  # fmt: skip
        assert (listed.exit_code, listed.stdout.strip()) == (0, "0"), listed.stderr
        assert f"its credentials are in {second_file}" in second.log_path.read_text()
        client = sdk_client(second.base_url, _demo_tenant(saved_second))
        assert client.list_image_jobs(ListImageJobsRequest(job_type="CREATE_SERVER")).count == 0
    finally:
        second.stop()
    # Started again with --demo, the second database's banner names its own file: it used
    # to name demo-credentials.json, the first database's.
    second_again = ServerProcess(database_url, data_dir, "--demo", extra_env=env)
    second_again.stop()
    banner = second_again.log_path.read_text()
    assert f"Credentials:   {second_file} " in banner, banner
    saved_second = json.loads(second_file.read_text())
    assert saved_second["endpoint"] == second_again.base_url
    again = ServerProcess(sqlite_url, data_dir, extra_env=env)
    try:
        client = sdk_client(again.base_url, _demo_tenant(saved_first))
        assert client.list_image_jobs(ListImageJobsRequest(job_type="CREATE_SERVER")).count > 0
        # Each file follows its own database's server, never the other's.
        assert json.loads(first_file.read_text())["endpoint"] == again.base_url
        assert json.loads(second_file.read_text()) == saved_second
    finally:
        again.stop()
