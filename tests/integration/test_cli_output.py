"""What the operator's terminal shows: `imagejobs audit` prints paths any outsider chose
(unauthenticated mutating calls are audited) without letting them forge a line or send
an escape sequence, a reader that stops early (`| head`) is no database error, and
`imagejobs iam` prints tables and fields as the client commands do."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from imagejobs.domain.times import now_ms
from imagejobs.storage.database import database_for
from imagejobs.storage.ops_store import AuditEvent, SqlOpsStore
from tests.factories import TEST_KEY_BASE64

FORGED = "/v1/x\n2026-01-01T00:00:00.000Z 1 acme/root DELETE /v1/p/image-servers/1 \x1b[2J"


def _store(database_url: str, paths: list[str], operation: str = "unmatched") -> None:
    async def store() -> None:
        database = database_for(database_url)
        await database.open()
        try:
            events = [
                AuditEvent(0, now_ms(), f"r{i}", "-", "", "POST", path, operation, "", 401, "")
                for i, path in enumerate(paths)
            ]
            await SqlOpsStore(database).add_audit_events(events)
        finally:
            await database.close()

    asyncio.run(store())


def _imagejobs(*args: str) -> list[str]:
    return [sys.executable, "-m", "imagejobs", *args]


def test_an_audited_path_cannot_forge_a_line_of_the_audit_listing(sqlite_url: str) -> None:
    _store(sqlite_url, [FORGED])
    listed = subprocess.run(
        _imagejobs("audit", "--database-url", sqlite_url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == 1, listed.stdout
    assert all(c.isprintable() for c in lines[0])
    assert '"/v1/x\\n2026-01-01T00:00:00.000Z 1 acme/root DELETE' in lines[0]


def test_a_reader_that_stops_early_is_no_database_problem(sqlite_url: str) -> None:
    _store(sqlite_url, [f"/v1/p/image-servers/{i}" for i in range(2_000)])
    process = subprocess.Popen(
        _imagejobs("audit", "--database-url", sqlite_url, "--limit", "2000"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    process.stdout.readline()
    process.stdout.close()  # as `| head -1` does once it has its line
    _, errors = process.communicate(timeout=60)
    assert "database" not in errors
    assert "Traceback" not in errors


def _iam(database_url: str, *args: str) -> str:
    done = subprocess.run(
        _imagejobs("iam", *args, "--database-url", database_url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "IMAGEJOBS_ENCRYPTION_KEY": TEST_KEY_BASE64},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _columns(table: str) -> list[dict[str, str]]:
    """The rows of a table as `jobs list` prints it: cut where the header's columns start."""
    header, *rows = table.splitlines()
    starts = [0] + [
        i for i in range(2, len(header)) if header[i - 2 : i] == "  " and header[i] != " "
    ]
    bounds = [*starts[1:], None]
    names = [header[a:b].strip() for a, b in zip(starts, bounds, strict=True)]
    return [
        {n: row[a:b].strip() for n, a, b in zip(names, starts, bounds, strict=True)} for row in rows
    ]


def test_iam_prints_tables_and_fields_like_the_client_commands(
    sqlite_url: str, tmp_path: Path
) -> None:
    """`imagejobs iam`'s default output was key=value lines, unlike every other command's
    table: a listing is a table with a header now, a record its fields, and -o json is as
    it was."""
    created = _iam(sqlite_url, "create-account", "acme")
    lines = created.splitlines()
    fields = dict(tuple(part.strip() for part in line.split("  ", 1)) for line in lines[:8])
    assert fields["Account"] == "acme"
    assert fields["Root user"] == "acme"
    assert len(fields["Secret key"]) == 40
    assert lines[-1] == ("The password and secret key are shown only now: keep them safe.")
    _iam(sqlite_url, "create-user", "--account", "acme", "reader")
    policy = tmp_path / "policy.json"
    policy.write_text(
        '{"Version": "1.1", "Statement": [{"Effect": "Deny", "Action": ["workspace:*:delete*"]}]}'
    )
    # A description is free text: a line break in it cannot start a row of its own.
    _iam(
        sqlite_url,
        "create-policy",
        "--account",
        "acme",
        "--name",
        "no-deletes",
        "--file",
        str(policy),
        "--description",
        "no\nDELETE\x1b[2J",
    )
    _iam(
        sqlite_url,
        "attach-policy",
        "--account",
        "acme",
        "--policy",
        "no-deletes",
        "--user",
        "reader",
    )

    users = _iam(sqlite_url, "list-users", "--account", "acme")
    assert users.splitlines()[0].split() == ["NAME", "ID", "ROOT", "ENABLED", "CREATED", "(UTC)"]
    rows = _columns(users)
    assert [(r["NAME"], r["ROOT"], r["ENABLED"]) for r in rows] == [
        ("acme", "yes", "yes"),
        ("reader", "no", "yes"),
    ]
    assert all(len(r["CREATED (UTC)"]) == len("2026-12-01 05:55:16") for r in rows)

    policies = _iam(sqlite_url, "list-policies", "--account", "acme")
    assert all(line.isprintable() for line in policies.splitlines())
    custom = [r for r in _columns(policies) if r["TYPE"] == "custom"]
    assert [(r["NAME"], r["DESCRIPTION"]) for r in custom] == [
        ("no-deletes", json.dumps("no\nDELETE\x1b[2J"))
    ]
    attachments = _columns(_iam(sqlite_url, "list-attachments", "--account", "acme"))
    assert [(r["POLICY"], r["GRANTED TO"], r["NAME"], r["PROJECT"]) for r in attachments] == [
        ("no-deletes", "user", "reader", "* (every project)")
    ]
    assert _iam(sqlite_url, "list-groups", "--account", "acme").splitlines() == [
        "GROUP  ID  MEMBERS"
    ]  # nothing to list: the header alone, as `jobs list` prints it

    listed = json.loads(_iam(sqlite_url, "list-users", "--account", "acme", "-o", "json"))
    assert [u["name"] for u in listed] == ["acme", "reader"]
    assert listed[0]["is_root"] is True
    assert "password_hash" not in listed[0]


def test_a_route_named_by_its_method_and_path_is_not_said_twice(sqlite_url: str) -> None:
    # A login's line read "POST /v3/auth/tokens POST /v3/auth/tokens -> 201".
    _store(sqlite_url, ["/v3/auth/tokens"], operation="POST /v3/auth/tokens")
    listed = subprocess.run(
        _imagejobs("audit", "--database-url", sqlite_url),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert listed.stdout.count("/v3/auth/tokens") == 1, listed.stdout
    assert " - POST /v3/auth/tokens -> 401 (request r0)" in listed.stdout
