"""The commands `imagejobs serve --demo` prints work when pasted, the password filled in:
the token command leaves the token in $TOKEN, which the next command sends."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import imagejobs.testing
from imagejobs.cli.server import _demo_instructions
from imagejobs.settings import load_settings


def test_the_demo_banners_token_and_list_commands_run_as_printed() -> None:
    with imagejobs.testing.serve() as cloud:
        tenant = cloud.tenant(account="demo")
        where = urlsplit(cloud.endpoint)
        settings = load_settings(host=where.hostname, port=where.port)
        banner = _demo_instructions(settings, tenant.project_id, Path("demo.json"))
        commands = banner.split("A token:", 1)[1].replace("List jobs:", "")
        script = re.sub(r"^ {2,}", "", commands, flags=re.MULTILINE)
        script = script.replace("<password>", tenant.password)
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert '"count":0' in done.stdout, done.stdout
