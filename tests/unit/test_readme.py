"""The README stays true: it documents every setting and its two commands exist."""

from __future__ import annotations

import os
from pathlib import Path

from imagejobs.settings import setting_help

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [name for name, _, _ in setting_help() if f"`{name}`" not in readme]
    assert missing == []


def test_the_two_commands_exist_and_are_executable() -> None:
    readme = (ROOT / "README.md").read_text()
    for script in ("scripts/demo", "scripts/test"):
        assert f"./{script}" in readme
        assert os.access(ROOT / script, os.X_OK)
    assert "./scripts/test" in (ROOT / ".ci" / "run").read_text()


def test_operations_shows_the_haproxy_config_the_tests_run() -> None:
    """docs/operations.md shows docs/haproxy.cfg as it is: the file tests/ha and
    bench/load.py run (a copy in the text would drift from the tested one)."""
    config = (ROOT / "docs" / "haproxy.cfg").read_text()
    operations = (ROOT / "docs" / "operations.md").read_text()
    assert f"```haproxy\n{config}```" in operations
