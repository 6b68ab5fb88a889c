"""README's "As a separate server" block, run as a newcomer pastes it: it must start a
server another language can use, and leave that user with a tenant's credentials."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

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
    (tmp_path / "policy.json").write_text(
        json.dumps(
            {
                "Version": "1.1",
                "Statement": [{"Effect": "Deny", "Action": ["workspace:imageServer:batchDelete*"]}],
            }
        )
    )
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
        keys += re.findall(r"access_key=(\w+)", result.output)
