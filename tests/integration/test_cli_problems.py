"""Every command meets an expected problem (a database missing, not migrated or not there)
with one line saying what is wrong and what to do, and keeps its help short."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from imagejobs.cli import main
from tests.conftest import POSTGRES_URL


def one_line_error(result: Result, *expected: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    for text in expected:
        assert text in lines[0]


def test_run_from_a_folder_without_a_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for command in (["engine", "status"], ["engine", "tasks"], ["engine", "rules", "list"]):
        result = CliRunner().invoke(main, command, env={"IMAGEJOBS_DATABASE_URL": ""})
        one_line_error(result, "cannot use the database", "--database-url")


def test_a_database_that_was_never_migrated(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    result = CliRunner().invoke(main, ["engine", "status", "--database-url", f"sqlite:///{empty}"])
    one_line_error(result, "no imagejobs schema", "imagejobs migrate")


@pytest.mark.postgres
def test_a_postgresql_database_that_does_not_exist(postgres_template: str) -> None:
    missing = POSTGRES_URL.rsplit("/", 1)[0] + "/imagejobs_no_such_database"
    for command in (["engine", "status"], ["iam", "list-accounts"]):
        result = CliRunner().invoke(main, [*command, "--database-url", missing])
        one_line_error(result, 'database "imagejobs_no_such_database" does not exist')


def test_the_environment_variables_are_listed_in_the_top_level_help_only() -> None:
    runner = CliRunner()
    top = runner.invoke(main, ["--help"]).output
    assert "IMAGEJOBS_SIMULATED_READS" in top
    assert "jobs" in top
    assert "servers" in top
    for command in (["serve"], ["migrate"], ["seed"], ["engine"], ["worker"], ["jobs", "list"]):
        text = runner.invoke(main, [*command, "--help"]).output
        assert "IMAGEJOBS_SIMULATED_READS" not in text, command
        assert "--help" in text
    assert "imagejobs --help" in runner.invoke(main, ["serve", "--help"]).output


def test_iam_errors_exit_with_the_api_clients_codes(tmp_path: Path) -> None:
    # Every refusal exited 1, so a provisioning script could not tell "already exists"
    # (safe to go on) from a typo in a name or an invalid policy file.
    url = f"sqlite:///{tmp_path / 'iam.db'}"
    key = {"IMAGEJOBS_KEY_FILE": str(tmp_path / "secret.key")}

    def iam(*args: str) -> Result:
        return CliRunner().invoke(main, ["iam", *args, "--database-url", url], env=key)

    assert iam("create-account", "acme").exit_code == 0
    exists = iam("create-account", "acme")
    assert (exists.exit_code, exists.stderr.strip()) == (
        1,
        "Error: The account acme already exists.",
    )
    missing = iam("attach-policy", "--account", "acme", "--policy", "nope", "--user", "acme")
    assert (missing.exit_code, missing.stderr.strip()) == (
        4,
        "Error: The policy nope does not exist.",
    )
    policy = tmp_path / "policy.json"
    policy.write_text("{not json")
    invalid = iam("create-policy", "--account", "acme", "--name", "p", "--file", str(policy))
    assert invalid.exit_code == 2
    assert "policy is not valid JSON" in invalid.stderr
