"""One output convention across the command line: every command that prints data takes
``-o``/``--output`` (``table`` or ``json``; the engine's commands, which print the
operator API's JSON, take ``-o json``), and ``--json``, which ``iam`` and ``audit`` took,
still works as ``-o json`` without being offered in ``--help``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import click
from click.testing import CliRunner, Result

from imagejobs.cli import main

# Commands that print no data of their own (they run, or their output is a file).
NO_DATA = {"serve", "migrate", "seed", "worker", "audit purge"}


def _leaves(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            if getattr(command, "invoke_without_command", False):
                yield path, command  # `imagejobs audit` lists events itself
            yield from _leaves(command, path + " ")
        else:
            yield path, command


def _invoke(tmp_path: Path, *args: str) -> Result:
    env = {"IMAGEJOBS_DATA_DIR": str(tmp_path), "IMAGEJOBS_DATABASE_URL": ""}
    return CliRunner().invoke(main, list(args), env=env)


def test_every_command_that_prints_data_takes_dash_o_and_offers_no_json_flag() -> None:
    for path, command in _leaves(main):
        if path in NO_DATA:
            continue
        options = {o: p for p in command.params for o in p.opts if isinstance(p, click.Option)}
        assert "-o" in options, f"imagejobs {path} has no -o/--output"
        assert options["-o"] is options["--output"]
        assert "json" in options["-o"].type.choices  # type: ignore[attr-defined]
        help_text = command.get_help(click.Context(command, info_name=path))
        assert "--json" not in help_text, f"imagejobs {path} --help still offers --json"


def test_iam_and_audit_print_json_with_dash_o_and_still_with_json(tmp_path: Path) -> None:
    created = _invoke(tmp_path, "iam", "create-account", "acme", "-o", "json")
    assert created.exit_code == 0, created.output
    account = json.loads(created.stdout)
    assert account["account"] == "acme"
    projects = _invoke(tmp_path, "iam", "list-projects", "--account", "acme", "--json")
    assert projects.exit_code == 0, projects.output
    assert isinstance(json.loads(projects.stdout), list)
    table = _invoke(tmp_path, "iam", "list-projects", "--account", "acme")
    assert table.exit_code == 0, table.output
    assert table.stdout.startswith("NAME ")  # the readable form (a table) stays the default

    for spelling in (["-o", "json"], ["--output", "json"], ["--json"]):
        audited = _invoke(tmp_path, "audit", *spelling)
        assert audited.exit_code == 0, audited.output


def test_engine_rules_set_takes_the_rule_as_rule_and_still_as_json(tmp_path: Path) -> None:
    assert _invoke(tmp_path, "migrate").exit_code == 0
    body = '{"queue_seconds": 0, "completion": "immediate"}'
    for flag in ("--rule", "--json"):
        result = _invoke(tmp_path, "engine", "rules", "set", "*", "*", flag, body, "-o", "json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["completion"] == "immediate"
    bad = _invoke(tmp_path, "engine", "rules", "set", "*", "*", "--rule", "{")
    assert bad.exit_code == 2
    assert "--rule" in bad.stderr
    listed = _invoke(tmp_path, "engine", "rules", "list", "-o", "json")
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout)
    cleared = _invoke(tmp_path, "engine", "rules", "clear", "-o", "json")
    assert cleared.exit_code == 0, cleared.output
    assert json.loads(cleared.stdout) == {"removed": 1}
    refused = _invoke(tmp_path, "engine", "status", "-o", "table")
    assert refused.exit_code == 2  # the engine's answers are JSON only, and say so


def test_help_states_each_settings_default_once() -> None:
    shown = CliRunner().invoke(main, ["--help"]).stdout
    database_url = next(line for line in shown.splitlines() if "IMAGEJOBS_DATABASE_URL" in line)
    assert "Default: sqlite:///DATA_DIR/imagejobs.db." in database_url
    assert "[default: -]" not in database_url  # it has one: said just before
    assert "IMAGEJOBS_PORT  TCP port to listen on. [default: 8080]" in shown
