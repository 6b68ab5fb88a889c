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


def test_nothing_installs_imagejobs_from_a_package_index() -> None:
    """imagejobs is not on PyPI, where the name could be anyone's package: the example's
    dependencies must not name it (``pip install '.[test]'`` would fetch that package),
    nor any text tell a newcomer to ``pip install imagejobs``."""
    import re
    import tomllib

    for pyproject in (ROOT / "examples").glob("*/pyproject.toml"):
        project = tomllib.loads(pyproject.read_text())["project"]
        requirements = list(project.get("dependencies", []))
        for extra in project.get("optional-dependencies", {}).values():
            requirements += extra
        named = [r for r in requirements if re.match(r"imagejobs\b", r) and "@" not in r]
        assert named == [], pyproject
    texts = [ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("examples/**/*.*")]
    for path in texts:
        for line in path.read_text().splitlines():
            if "never as `pip install imagejobs`" in line:  # the README's warning
                continue
            assert not re.search(r"pip install (-\S+ )*imagejobs(?![-\w./])", line), (path, line)


def test_every_settings_default_in_the_readme_is_the_codes() -> None:
    import dataclasses
    import re

    from imagejobs.settings import Settings, env_name

    readme = (ROOT / "README.md").read_text()
    documented = dict(re.findall(r"^\| `(IMAGEJOBS_\w+)` \| ([^|]*) \|", readme, re.MULTILINE))
    wrong = {}
    for setting in dataclasses.fields(Settings):
        shown = documented[env_name(setting.name)].strip()
        value = setting.default
        if value in ("", None):  # none, or one derived from DATA_DIR
            ok = shown == "\N{EN DASH}" or ("DATA_DIR" in shown and shown.startswith("`"))
        else:
            text = str(value).lower() if isinstance(value, bool) else str(value)
            ok = shown == f"`{text}`"
        if not ok:
            wrong[setting.name] = (shown, value)
    assert wrong == {}
