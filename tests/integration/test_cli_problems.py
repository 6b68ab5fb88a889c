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
    # `audit --help` printed all of them (sixty-odd lines) below its own four options.
    commands = (["serve"], ["migrate"], ["seed"], ["engine"], ["worker"], ["jobs", "list"])
    for command in (*commands, ["audit"], ["audit", "purge"], ["iam"]):
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


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        # A variable is named as the user set it, with the value it holds.
        ([], {"IMAGEJOBS_WORKERS": "0"}, "IMAGEJOBS_WORKERS must be from 1 to 64, not 0"),
        (
            [],
            {"IMAGEJOBS_LOG_LEVEL": "verbose"},
            "IMAGEJOBS_LOG_LEVEL must be debug, info, warning or error, not verbose",
        ),
        ([], {"IMAGEJOBS_LEASE_SECONDS": "-1"}, "IMAGEJOBS_LEASE_SECONDS must be from 1 to 3600"),
        # Bounds as one would type them: "from 1024 to 1.04858e+06" named no value one can set.
        (
            [],
            {"IMAGEJOBS_MAX_HEADER_BYTES": "99999999999"},
            "IMAGEJOBS_MAX_HEADER_BYTES must be from 1024 to 1048576, not 99999999999",
        ),
        (
            [],
            {"IMAGEJOBS_DEEP_PAGE_OFFSET": "0"},
            "IMAGEJOBS_DEEP_PAGE_OFFSET must be from 1 to 2147483647, not 0",
        ),
        (
            [],
            {"IMAGEJOBS_DATABASE_CONNECT_TIMEOUT_SECONDS": "0"},
            "IMAGEJOBS_DATABASE_CONNECT_TIMEOUT_SECONDS must be from 0.05 to 600, not 0",
        ),
        # A flag is named as the flag.
        (["--workers", "0"], {}, "Invalid value for '--workers': must be from 1 to 64, not 0"),
        # A driver no package provides: one line, before the server starts (its worker
        # process died with a traceback after the demo account had been created).
        (
            [],
            {"IMAGEJOBS_DRIVER": "nosuch"},
            "IMAGEJOBS_DRIVER must name an installed driver (simulated), not 'nosuch'",
        ),
        # An address to listen on that is not this machine's (TEST-NET-1): named as the
        # flag or variable it came from, before anything starts. A name that did not resolve
        # read "cannot use the database", and this address "port 8080 is already in use"
        # where a proxy answered connections to it.
        (
            ["--host", "192.0.2.1"],
            {},
            "Invalid value for '--host': must be a name or address of this machine, not 192.0.2.1",
        ),
        (
            [],
            {"IMAGEJOBS_HOST": "192.0.2.1"},
            "IMAGEJOBS_HOST must be a name or address of this machine, not 192.0.2.1",
        ),
        # The operator key is no database problem.
        (
            [],
            {"IMAGEJOBS_ENCRYPTION_KEY": "short"},
            "Invalid value: IMAGEJOBS_ENCRYPTION_KEY must be base64 of 32 bytes",
        ),
    ],
)
def test_a_bad_setting_names_the_variable_or_flag_it_came_from(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    data = tmp_path / "data"
    result = CliRunner().invoke(
        main, ["serve", "--port", "0", "--data-dir", str(data), *args], env=env
    )
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (data / "demo-credentials.json").exists()  # refused before anything started


def test_a_worker_refuses_a_driver_that_is_not_installed(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["worker", "--data-dir", str(tmp_path)], env={"IMAGEJOBS_DRIVER": "nosuch"}
    )
    assert result.exit_code == 2
    assert "IMAGEJOBS_DRIVER must name an installed driver" in result.stderr


def test_a_missing_policy_file_is_named_not_blamed_on_the_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'iam.db'}"
    args = ["iam", "create-policy", "--account", "acme", "--name", "p", "--file"]
    result = CliRunner().invoke(main, [*args, str(tmp_path / "policy.json"), "--database-url", url])
    assert result.exit_code == 2
    assert "'--file'" in result.stderr
    assert "does not exist" in result.stderr
    assert "database" not in result.stderr


def test_migrate_says_what_it_changed(tmp_path: Path) -> None:
    """A first run and a run with nothing to do printed the same line."""
    import subprocess
    import sys

    from imagejobs.storage.migrate import head_revision

    url = f"sqlite:///{tmp_path / 'imagejobs.db'}"

    def migrate() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "imagejobs", "migrate", "--database-url", url],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )

    first, again = migrate(), migrate()
    assert f"migrated the database schema from empty to {head_revision()}" in first.stderr
    assert "migrated" not in again.stderr
    assert first.stdout == again.stdout == f"Database is at schema revision {head_revision()}.\n"


def test_a_key_file_that_cannot_be_read_is_named_not_blamed_on_the_database(
    tmp_path: Path,
) -> None:
    """IMAGEJOBS_KEY_FILE naming a directory (or bytes that are no text) said "cannot use
    the database: [Errno 21] Is a directory", after migrating it."""
    (tmp_path / "keys").mkdir()
    (tmp_path / "binary.key").write_bytes(b"\xff\xfe\x00\x81" * 10)
    for key_file, why in (("keys", "Is a directory"), ("binary.key", "not base64 text")):
        data = tmp_path / "data"
        result = CliRunner().invoke(
            main,
            ["serve", "--port", "0", "--data-dir", str(data)],
            env={"IMAGEJOBS_KEY_FILE": str(tmp_path / key_file)},
        )
        assert result.exit_code == 2, result.output
        assert f"IMAGEJOBS_KEY_FILE {tmp_path / key_file} cannot be read ({why})" in result.stderr
        assert "database" not in result.stderr
        assert "Traceback" not in result.stderr


def test_serve_refuses_an_operator_key_that_does_not_open_the_stored_secret_keys(
    database_url: str, tmp_path: Path
) -> None:
    """A second machine started without the first one's key (README, PostgreSQL) made a key
    file of its own, served, and answered every AK/SK request 500 with a traceback: now it
    does not start, and says which setting to fix."""
    import base64
    import os
    import signal
    import subprocess
    import sys

    def key() -> str:
        return base64.b64encode(os.urandom(32)).decode()

    runner = CliRunner()
    env = {"IMAGEJOBS_ENCRYPTION_KEY": key(), "IMAGEJOBS_PASSWORD_HASH_COST": "4"}
    made = runner.invoke(
        main, ["iam", "create-account", "acme", "--database-url", database_url], env=env
    )
    assert made.exit_code == 0, made.output
    serve = ["serve", "--port", "0", "--database-url", database_url, "--data-dir", str(tmp_path)]
    plain = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEJOBS_")}
    for other, named in (
        ({"IMAGEJOBS_ENCRYPTION_KEY": key()}, "IMAGEJOBS_ENCRYPTION_KEY does not decrypt"),
        (
            {"IMAGEJOBS_KEY_FILE": str(tmp_path / "other.key")},  # made now: another key
            f"IMAGEJOBS_KEY_FILE ({tmp_path / 'other.key'}) does not decrypt",
        ),
    ):
        # A real process: one that starts serving is stopped, and fails the test.
        process = subprocess.Popen(
            [sys.executable, "-m", "imagejobs", *serve],
            env=plain | other,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        try:
            _, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            pytest.fail("serve started with a key that opens none of the stored secret keys")
        assert process.returncode == 2, stderr
        assert named in stderr
        assert "the same operator key" in stderr
        assert "Traceback" not in stderr


@pytest.mark.parametrize(
    "command", [["worker"], ["migrate"], ["seed", "--project-id", "p1", "--jobs", "1"]]
)
def test_an_unreachable_database_is_named_as_every_command_names_it(command: list[str]) -> None:
    """`worker`, `migrate` and `seed` said "cannot run jobs: [Errno 111] Connect call
    failed ('127.0.0.1', 1)" (or "cannot migrate: …"), without the hint that the other
    commands give."""
    url = "postgresql://postgres@127.0.0.1:1/imagejobs"
    result = CliRunner().invoke(main, [*command, "--database-url", url])
    one_line_error(result, "cannot use the database (", "check --database-url")
    # The default SQLite file is no lead when a PostgreSQL URL was given.
    assert "data/imagejobs.db" not in result.stderr


def test_an_unopenable_sqlite_file_points_at_the_default_too(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'no-such-folder' / 'imagejobs.db'}"
    result = CliRunner().invoke(main, ["audit", "--database-url", url])
    one_line_error(result, "cannot use the database (", "(by default data/imagejobs.db")


@pytest.mark.postgres
def test_iam_and_seed_leave_migrating_a_postgresql_database_to_migrate(
    postgres_template: str,
) -> None:
    """`imagejobs iam …` and `seed` migrated any database they were given: a newer
    release's CLI, run against production between releases, moved the schema under the
    running servers (README: on PostgreSQL run `imagejobs migrate` first; serve and
    worker refuse). Now they refuse as serve does, and leave the database as it was."""
    import asyncio
    import os

    from imagejobs.storage.migrate import current_revision
    from tests.conftest import _admin, _admin_url

    name = f"imagejobs_unmigrated_{os.getpid()}"
    asyncio.run(_admin(f"CREATE DATABASE {name}"))
    url = _admin_url(name)
    try:
        for command in (
            ["iam", "create-account", "acme"],
            ["seed", "--project-id", "p1", "--jobs", "1"],
        ):
            result = CliRunner().invoke(main, [*command, "--database-url", url])
            one_line_error(result, "run `imagejobs migrate` first")
        assert asyncio.run(current_revision(url)) is None
    finally:
        asyncio.run(_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def test_an_execution_log_that_cannot_be_written_is_refused_at_start(tmp_path: Path) -> None:
    """IMAGEJOBS_SIMULATED_EXECUTION_LOG naming a directory started a server whose every
    step then failed (five attempts each, a traceback per attempt): now serve and worker
    refuse it, naming the variable."""
    (tmp_path / "logs").mkdir()
    env = {"IMAGEJOBS_SIMULATED_EXECUTION_LOG": str(tmp_path / "logs")}
    data = ["--data-dir", str(tmp_path / "data")]
    for command in (["serve", "--port", "0", *data], ["worker", *data]):
        result = CliRunner().invoke(main, command, env=env)
        assert result.exit_code == 2, result.output
        expected = f"IMAGEJOBS_SIMULATED_EXECUTION_LOG {tmp_path / 'logs'} cannot be appended to"
        assert expected in result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "command",
    [["audit"], ["audit", "purge"], ["engine", "status"], ["engine", "rules", "list"]],
)
def test_operator_commands_name_an_unreachable_database(command: list[str]) -> None:
    """`audit` and `engine` said "The service is now unavailable to process the request."
    (the API's 503 message: which service?) when the database was not there."""
    url = "postgresql://postgres@127.0.0.1:1/imagejobs"
    result = CliRunner().invoke(main, [*command, "--database-url", url])
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: cannot use the database (")
    assert "check --database-url" in lines[0]


def test_a_log_level_may_be_written_in_capitals(tmp_path: Path) -> None:
    """IMAGEJOBS_LOG_LEVEL=WARNING (Python's spelling) was refused: "must be debug, info,
    warning or error, not WARNING"."""
    url = f"sqlite:///{tmp_path / 'imagejobs.db'}"
    result = CliRunner().invoke(
        main, ["migrate", "--database-url", url], env={"IMAGEJOBS_LOG_LEVEL": "WARNING"}
    )
    assert result.exit_code == 0, result.output
