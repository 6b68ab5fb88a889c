"""`imagejobs serve --profile test --port 0 --port-file`, and a second server refused
at once on a port that is taken, before it touches any database or prints credentials."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.factories import TEST_KEY_BASE64


def test_port_zero_then_a_second_server_on_that_port_fails_at_once(tmp_path: Path) -> None:
    env = {**os.environ, "IMAGEJOBS_ENCRYPTION_KEY": TEST_KEY_BASE64}
    port_file = tmp_path / "port"
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    command = [sys.executable, "-m", "imagejobs", "serve", "--profile", "test"]
    first = subprocess.Popen(
        [*command, "--port", "0", "--port-file", str(port_file), "--data-dir", str(first_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() and time.monotonic() < deadline:
            assert first.poll() is None
            time.sleep(0.05)
        port = int(port_file.read_text())
        while time.monotonic() < deadline:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/_imagejobs/health")
                break
            except httpx.TransportError:
                time.sleep(0.05)
        assert health.json()["status"] == "ok"
        assert not (first_dir / "demo-credentials.json").exists()  # the test profile

        second = subprocess.run(
            [*command, "--port", str(port), "--data-dir", str(second_dir)],
            env=env,
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert second.returncode != 0
        assert second.stderr.strip() == (
            f"Error: port {port} is already in use on 127.0.0.1: choose another with --port"
            " (0: any free port), or stop what listens there"
        )
        assert not second_dir.exists()  # nothing bootstrapped
    finally:
        first.terminate()
        _, logged = first.communicate(timeout=30)
    assert f"imagejobs listening on http://127.0.0.1:{port}" in logged.decode()


def test_an_init_dir_that_cannot_be_loaded_stops_serve_with_one_line(tmp_path: Path) -> None:
    """A mistyped IMAGEJOBS_INIT_DIR served an empty service as if all was well; a bad file
    was blamed on the database."""
    env = {**os.environ, "IMAGEJOBS_ENCRYPTION_KEY": TEST_KEY_BASE64}
    command = [sys.executable, "-m", "imagejobs", "serve", "--profile", "test", "--port", "0"]
    command += ["--data-dir", str(tmp_path / "data")]
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "10-project.json").write_text('{"project_id": "p", "jobs": [{"id": "1"}]}')
    # Files that are not JSON at all were "body must be a JSON object" (an HTTP body's words).
    truncated, malformed = tmp_path / "truncated", tmp_path / "malformed"
    truncated.mkdir()
    (truncated / "a.json").write_text('{"project_id":"p","jobs":[')
    malformed.mkdir()
    (malformed / "a.rules.json").write_text('[{"project_id": "p", }]')
    wrong_type = tmp_path / "wrong-type"  # said "The parameter is invalid: job_type ...": which?
    wrong_type.mkdir()
    rules = '[{"project_id": "*", "job_type": "*"}, {"project_id": "*", "job_type": "NOPE"}]'
    (wrong_type / "b.rules.json").write_text(rules)
    for init_dir, expected in (
        (tmp_path / "no-such-dir", "is not a directory"),
        (broken, "10-project.json: "),
        (truncated, "a.json: is not valid JSON: it ends before the JSON document does"),
        (malformed, "a.rules.json: is not valid JSON: trailing comma in object (byte 21)"),
        (wrong_type, "b.rules.json: [1].job_type must be * or one of CREATE_SERVER,"),
    ):
        done = subprocess.run(
            command,
            env={**env, "IMAGEJOBS_INIT_DIR": str(init_dir)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=30,  # before the fix, the first one served on and on
            check=False,
        )
        assert done.returncode == 1
        errors = [line for line in done.stderr.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1, done.stderr
        assert errors[0].startswith(f"Error: cannot load IMAGEJOBS_INIT_DIR {init_dir}: ")
        assert expected in errors[0]
