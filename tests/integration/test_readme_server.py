"""README's "As a separate server" block, run as a newcomer pastes it: it must start a
server another language can use, and leave that user with a tenant's credentials."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _separate_server_block() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("**As a separate server**", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None
    return block.group(1)


def test_the_separate_server_block_works_as_pasted(tmp_path: Path) -> None:
    port_file = tmp_path / "imagejobs.port"
    block = _separate_server_block().replace("/tmp/imagejobs.port", str(port_file))
    script = "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + block
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEJOBS_")}
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,  # serve's data directory: ./data
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # Granian's own lines share stdout with curl's answer (which ends in no newline).
    tenant, _ = json.JSONDecoder().raw_decode(done.stdout[done.stdout.index('{"account"') :])
    assert {"access_key", "secret_key", "project_id", "password"} <= tenant.keys()


def test_the_iam_block_runs_in_order_on_a_fresh_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each `imagejobs iam` line of the README, in order (the AK placeholder replaced by
    the key the block created): a newcomer following it meets no error."""
    import shlex

    from click.testing import CliRunner

    from imagejobs.cli import main

    readme = (ROOT / "README.md").read_text()
    section = readme.split("Operators manage identities with `imagejobs iam`", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None
    policy = re.search(r"```json\n(.*?)```", section, re.DOTALL)  # the README's policy.json
    assert policy is not None
    assert policy.start() < block.start()
    (tmp_path / "policy.json").write_text(policy.group(1))
    env = {"IMAGEJOBS_DATA_DIR": str(tmp_path / "data"), "IMAGEJOBS_PASSWORD_HASH_COST": "4"}
    runner = CliRunner()
    url = f"sqlite:///{tmp_path / 'data' / 'imagejobs.db'}"
    assert runner.invoke(main, ["migrate", "--database-url", url], env=env).exit_code == 0
    keys: list[str] = []
    monkeypatch.chdir(tmp_path)  # --file policy.json
    for line in block.group(1).splitlines():
        args = shlex.split(line, comments=True)
        assert args[:2] == ["imagejobs", "iam"]
        args = [keys[-1] if a == "AKXXXXXXXXXXXXXXXXXX" else a for a in args[1:]]
        result = runner.invoke(main, args, env=env)
        assert result.exit_code == 0, (line, result.output, result.stderr)
        keys += re.findall(r"^Access key +(\w+)$", result.output, re.MULTILINE)
    assert len(keys) == 2  # create-account's and create-access-key's, as they print them
    assert result.output.startswith("POLICY ")  # list-attachments, a table


def _python_blocks(heading: str) -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split(heading, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


@contextlib.contextmanager
def _demo(tmp_path: Path, env: dict[str, str]) -> Iterator[None]:
    """`./scripts/demo`'s server (`serve --demo`) in ``tmp_path``, on a free port: its
    credentials file, data/demo-credentials.json, says where it listens."""
    port_file = tmp_path / "port"
    args = ["serve", "--demo", "--port", "0", "--port-file", str(port_file)]
    serve = subprocess.Popen(
        [sys.executable, "-m", "imagejobs", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert serve.poll() is None, serve.communicate()
            assert time.monotonic() < deadline, "the demo did not start"
            try:
                port = port_file.read_text().strip()
                if httpx.get(f"http://127.0.0.1:{port}/_imagejobs/ready").status_code == 200:
                    break
            except (OSError, httpx.TransportError):
                pass
            time.sleep(0.2)
        yield
    finally:
        os.killpg(serve.pid, 15)
        serve.communicate(timeout=30)


def _plain_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEJOBS_")}
    env["IMAGEJOBS_ACCESS_LOG"] = "false"
    return env


def test_the_sdk_example_runs_as_pasted_against_the_demo(tmp_path: Path) -> None:
    """`./scripts/demo`, then README's "Using the official SDK" blocks, unchanged (on
    another port than 8080: the credentials file says where the server listens)."""
    env = _plain_env()
    with _demo(tmp_path, env):
        first, discovery = _python_blocks("## Using the official SDK")
        listing = (
            "print(client.list_image_jobs(ListImageJobsRequest(job_type='DELETE_SERVER')).count)"
        )
        for script in (first, first + discovery + listing):
            ran = subprocess.run(
                [sys.executable, "-c", script],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert ran.returncode == 0, ran.stderr
        assert ran.stdout.splitlines()[1].startswith("SUCCESS ")  # job.status, a server id
        assert int(ran.stdout.splitlines()[-1]) > 0  # the project found through IAM


def test_the_command_line_block_runs_as_pasted_against_the_demo(tmp_path: Path) -> None:
    """README's command-line block, line after line in one shell, against the demo: every
    ID it uses comes from the demo itself (the block once named job IDs that no demo
    has, so its second command answered 404)."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("**Command line.**", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None
    env = _plain_env()
    # The demo's engine, quicker: the block watches two jobs to their end.
    env |= {"IMAGEJOBS_SIMULATED_QUEUE_SECONDS": "0", "IMAGEJOBS_SIMULATED_DURATION_SECONDS": "0"}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    with _demo(tmp_path, env):
        ran = subprocess.run(
            ["bash", "-c", "set -euo pipefail\n" + block.group(1)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "Error" not in ran.stderr, ran.stderr
    assert "Traceback" not in ran.stderr, ran.stderr
    assert ran.stdout.count("SUCCESS  [####################] 1/1") == 2  # both watches
    assert '"job_id"' in ran.stdout  # the last line's JSON


def test_the_test_kit_example_runs_in_the_example_project(tmp_path: Path) -> None:
    """README's complete test file, saved in examples/image_builder (whose application it
    imports) and run by pytest there: the plugin alone, no conftest.py. The file once
    imported a make_client that the example did not have."""
    import shutil

    [example] = _python_blocks("## Testing your application")
    project = tmp_path / "image_builder"
    shutil.copytree(ROOT / "examples" / "image_builder", project)
    (project / "tests" / "test_readme_example.py").write_text(example)
    env = _plain_env()
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_readme_example.py"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "4 passed" in ran.stdout


@pytest.mark.postgres
def test_the_postgresql_block_runs_as_pasted_on_a_fresh_machine(
    tmp_path: Path, postgres_template: str
) -> None:
    """README's PostgreSQL block in an empty folder (no SQLite demo run before), in one
    shell: its database renamed, `serve` on a free port in the background. The block read
    the operator key from data/secret.key, which only a SQLite start leaves behind: on a
    fresh machine `cat` failed ("No such file or directory") and the server made a key of
    its own, one the operator never handed to the other machines."""
    from tests.conftest import require_programs

    require_programs("createdb", "openssl")
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### PostgreSQL", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None
    name = f"imagejobs_readme_{os.getpid()}"
    script = block.group(1).replace("5432/imagejobs", f"5432/{name}")
    script = script.replace("-U postgres imagejobs", f"-U postgres {name}")
    script = script.replace("--workers 4", "--port 0 --port-file port &")
    assert name in script
    assert "--port-file" in script
    script += (
        "for _ in $(seq 300); do\n"
        '  [ -s port ] && curl -sf "http://127.0.0.1:$(cat port)/_imagejobs/ready" && break\n'
        "  sleep 0.2\ndone\n"
        "kill %1 && wait %1\n"
    )
    env = _plain_env()
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    try:
        ran = subprocess.run(
            ["bash", "-c", "set -euo pipefail\n" + script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        subprocess.run(
            ["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", "--force", name],
            check=False,
        )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert '"status":"ready"' in ran.stdout, ran.stdout + ran.stderr
    assert "No such file" not in ran.stderr, ran.stderr
    assert "Traceback" not in ran.stderr, ran.stderr
    # The server used the key the block gave it, not one of its own making.
    assert not (tmp_path / "data" / "secret.key").exists()
