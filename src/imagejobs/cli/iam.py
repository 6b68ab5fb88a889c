"""``imagejobs iam``: identity administration for operators and scripts.

Every command works directly on the database (like ``migrate``), prints a table (a list)
or its fields (one record) as the client commands do, or JSON with ``-o json``. Secrets
(passwords, secret keys) are printed once, when they are created, and never again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ParamSpec

import click

from imagejobs.cli.client_options import ClientExit, exit_code_of
from imagejobs.cli.common import (
    data_dir_option,
    database_url_option,
    load,
    output_option,
    prepare_schema,
)
from imagejobs.cli.problems import command_problem, database_problem
from imagejobs.cli.tables import echo_fields, echo_table, short_time
from imagejobs.domain.errors import ImageJobsError, ServiceUnavailable
from imagejobs.domain.times import format_time
from imagejobs.services.identity import IdentityService

P = ParamSpec("P")
Action = Callable[[IdentityService], Awaitable[Any]]


def _public(value: Any) -> Any:
    """A record as JSON-ready data, without hashes or ciphertexts."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        data = {f.name: _public(getattr(value, f.name)) for f in dataclasses.fields(value)}
        for secret in ("password_hash", "secret_ciphertext", "security_token_hash", "token_hash"):
            data.pop(secret, None)
        for name in ("created_at", "expires_at"):
            if isinstance(data.get(name), int):
                data[name] = format_time(data[name])
        return data
    if isinstance(value, list | tuple):
        return [_public(v) for v in value]
    return value


# The columns of each listing's table: (header, field of its JSON). Other fields, such as
# a policy's document or a project's account id, are in its -o json.
_CREATED = ("CREATED (UTC)", "created_at")
TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    "list-accounts": (("NAME", "name"), ("ID", "id"), ("ENABLED", "enabled"), _CREATED),
    "list-projects": (("NAME", "name"), ("ID", "id"), _CREATED),
    "list-users": (
        ("NAME", "name"),
        ("ID", "id"),
        ("ROOT", "is_root"),
        ("ENABLED", "enabled"),
        _CREATED,
    ),
    "list-groups": (("GROUP", "group"), ("ID", "id"), ("MEMBERS", "members")),
    "list-access-keys": (
        ("ACCESS KEY", "access_key"),
        ("USER", "user"),
        ("STATUS", "status"),
        ("DESCRIPTION", "description"),
        _CREATED,
    ),
    "list-policies": (
        ("NAME", "name"),
        ("TYPE", "type"),
        ("ID", "id"),
        ("DESCRIPTION", "description"),
    ),
    "list-attachments": (
        ("POLICY", "policy_name"),
        ("GRANTED TO", "principal_type"),
        ("NAME", "principal_name"),
        ("PROJECT", "project_id"),
    ),
}
_SECRETS = ("password", "secret_key")


def _cell(name: str, value: Any) -> str:
    """One value as a person reads it in a table; never a line break or an escape
    sequence (a description is free text)."""
    if name in ("created_at", "expires_at") and isinstance(value, str):
        return short_time(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if name == "project_id" and value == "*":  # an attachment to every project
        return "* (every project)"
    if isinstance(value, list):
        text = ", ".join(str(v) for v in value)
    elif isinstance(value, dict):
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    else:
        text = str(value)
    if not text:
        return "-"
    return text if text.isprintable() else json.dumps(text)


def _label(name: str) -> str:
    """``account_id`` as ``Account ID``, ``created_at`` as ``Created (UTC)``."""
    if name.endswith("_at"):
        return name[:-3].capitalize() + " (UTC)"
    if name == "id":
        return "ID"
    if name.endswith("_id"):
        return name[:-3].replace("_", " ").capitalize() + " ID"
    return name.replace("_", " ").capitalize()


def _emit(result: Any, output: str, columns: tuple[tuple[str, str], ...] | None) -> None:
    data = _public(result)
    if output == "json":
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    if isinstance(data, list):  # a listing: a table, as `jobs list` prints one
        headers = [header for header, _ in columns] if columns else sorted(data[0] if data else {})
        fields = [field for _, field in columns] if columns else headers
        echo_table(headers, [[_cell(f, row.get(f, "")) for f in fields] for row in data])
        return
    if not isinstance(data, dict):
        click.echo(_cell("", data))
        return
    # One record (what a create made): its fields, as `jobs show` prints a job's.
    echo_fields([(_label(name), _cell(name, value)) for name, value in data.items()])
    shown = [name.replace("_", " ") for name in _SECRETS if name in data]
    if shown:
        verb, them = ("is", "it") if len(shown) == 1 else ("are", "them")
        click.echo(f"\nThe {' and '.join(shown)} {verb} shown only now: keep {them} safe.")


def _run(
    action: Action,
    database_url: str | None,
    data_dir: Path | None,
    output: str,
    columns: tuple[tuple[str, str], ...] | None = None,
) -> None:
    from imagejobs.bootstrap import opened_database
    from imagejobs.keys import load_secret_box
    from imagejobs.storage.iam_store import SqlIamStore

    settings = load(database_url=database_url, data_dir=data_dir)

    async def run() -> Any:
        await prepare_schema(settings.database_url)
        box = load_secret_box(settings, create=True)
        async with opened_database(settings) as database:
            identity = IdentityService(SqlIamStore(database), box)
            await identity.ensure_system_policies()
            return await action(identity)

    try:
        result = asyncio.run(run())
    except ImageJobsError as exc:
        # The API client's exit codes (README): a script can tell "already exists" (1)
        # from "no such user" (4) and "invalid policy" (2), which all exited 1.
        # A database away is named as every command names it, with what to check.
        message = database_problem(exc) if isinstance(exc, ServiceUnavailable) else None
        raise ClientExit(message or exc.message, exit_code_of(exc.status)) from exc
    except OSError as exc:
        raise click.ClickException(command_problem("use the database", exc)) from exc
    if result is not None:
        _emit(result, output, columns)


def iam_command(fn: Callable[P, Action]) -> click.Command:
    """A subcommand whose function returns the action to run on the identity service."""
    name = fn.__name__.replace("_", "-")

    @database_url_option
    @data_dir_option
    @output_option()
    @functools.wraps(fn)
    def command(
        *args: Any, database_url: str | None, data_dir: Path | None, output: str, **kwargs: Any
    ) -> None:
        _run(fn(*args, **kwargs), database_url, data_dir, output, TABLES.get(name))

    # Named explicitly: click would strip a "_group" suffix (create_group -> "create").
    return iam.command(name=name)(command)


@click.group()
def iam() -> None:
    """Accounts, projects, users, groups, access keys and policies."""


_account = click.option("--account", required=True, help="Account (domain) name.")
_user = click.option("--user", "user_name", required=True, help="IAM user name.")


@iam_command
@click.argument("name")
@click.option(
    "--project-name",
    default="cn-north-4",
    show_default=True,
    help="Region name of the account's first project.",
)
def create_account(name: str, project_name: str) -> Action:
    """Create an account with its root user, a project and a first AK/SK (printed once)."""

    async def action(identity: IdentityService) -> Any:
        created = await identity.create_account(name, project_name=project_name)
        return {
            "account": created.account.name,
            "account_id": created.account.id,
            "root_user": created.root.name,
            "password": created.password,
            "project_id": created.project.id,
            "project_name": created.project.name,
            "access_key": created.access_key,
            "secret_key": created.secret_key,
        }

    return action


@iam_command
@_account
@click.argument("name")
def create_project(account: str, name: str) -> Action:
    """Add a project (a region, such as ap-southeast-1) to an account."""
    return lambda identity: identity.create_project(account, name)


@iam_command
@_account
@click.argument("name")
@click.option("--password", default=None, help="Default: a generated one, printed once.")
def create_user(account: str, name: str, password: str | None) -> Action:
    """Create an IAM user (no permissions until a policy is attached)."""

    async def action(identity: IdentityService) -> Any:
        user, chosen = await identity.create_user(account, name, password)
        result = {"user": user.name, "user_id": user.id, "account": account}
        if password is None:
            result["password"] = chosen
        return result

    return action


@iam_command
@_account
@_user
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
def set_password(account: str, user_name: str, password: str) -> Action:
    """Change a user's password (their tokens stop working)."""
    return lambda identity: identity.set_password(account, user_name, password)


@iam_command
@_account
@_user
def disable_user(account: str, user_name: str) -> Action:
    """Disable a user: their keys and tokens stop working."""
    return lambda identity: identity.set_user_enabled(account, user_name, False)


@iam_command
@_account
@_user
def enable_user(account: str, user_name: str) -> Action:
    """Enable a disabled user again."""
    return lambda identity: identity.set_user_enabled(account, user_name, True)


@iam_command
@_account
@_user
def delete_user(account: str, user_name: str) -> Action:
    """Delete a user with their keys, tokens and group memberships."""
    return lambda identity: identity.delete_user(account, user_name)


@iam_command
@_account
@_user
def revoke_tokens(account: str, user_name: str) -> Action:
    """Revoke every token of a user."""
    return lambda identity: identity.revoke_user_tokens(account, user_name)


@iam_command
@_account
@click.argument("name")
def create_group(account: str, name: str) -> Action:
    """Create a user group."""
    return lambda identity: identity.create_group(account, name)


@iam_command
@_account
@click.option("--group", required=True)
@_user
def add_to_group(account: str, group: str, user_name: str) -> Action:
    """Add a user to a group."""
    return lambda identity: identity.add_user_to_group(account, group, user_name)


@iam_command
@_account
@click.option("--group", required=True)
@_user
def remove_from_group(account: str, group: str, user_name: str) -> Action:
    """Remove a user from a group."""
    return lambda identity: identity.remove_user_from_group(account, group, user_name)


@iam_command
@_account
@_user
@click.option("--description", default="", help="Up to 255 characters.")
def create_access_key(account: str, user_name: str, description: str) -> Action:
    """Create an AK/SK pair for a user (the SK is printed once)."""

    async def action(identity: IdentityService) -> Any:
        created = await identity.create_access_key(account, user_name, description)
        return {
            "access_key": created.key.access_key,
            "secret_key": created.secret_key,
            "user": user_name,
            "account": account,
        }

    return action


@iam_command
@_account
@click.argument("access_key")
def disable_access_key(account: str, access_key: str) -> Action:
    """Disable an access key (requests signed with it fail)."""
    return lambda identity: identity.set_access_key_enabled(account, access_key, False)


@iam_command
@_account
@click.argument("access_key")
def enable_access_key(account: str, access_key: str) -> Action:
    """Enable an access key again (also lifts a lockout)."""
    return lambda identity: identity.set_access_key_enabled(account, access_key, True)


@iam_command
@_account
@click.argument("access_key")
def delete_access_key(account: str, access_key: str) -> Action:
    """Delete an access key."""
    return lambda identity: identity.delete_access_key(account, access_key)


@iam_command
@_account
@click.option("--name", required=True, help="The policy's name, unique in the account.")
@click.option(
    "--file",
    "path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, allow_dash=True),
    help="The policy document (JSON, Version 1.1); - reads standard input.",
)
@click.option("--description", default="", help="What the policy is for (free text).")
def create_policy(account: str, name: str, path: str, description: str) -> Action:
    """Create a custom policy from a JSON document."""
    document = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    return lambda identity: identity.create_policy(account, name, document, description)


def _attachment(fn: Callable[..., Action]) -> Callable[..., Action]:
    for option in reversed(
        (
            _account,
            click.option(
                "--policy", required=True, help="Policy name, e.g. 'Workspace ReadOnlyAccess'."
            ),
            click.option("--user", "user_name", default=None, help="The user it applies to."),
            click.option("--group", default=None, help="Or the group it applies to."),
            click.option(
                "--project",
                default=None,
                help="Project id or name; default: every project of the account.",
            ),
        )
    ):
        fn = option(fn)
    return fn


@iam_command
@_attachment
def attach_policy(
    account: str, policy: str, user_name: str | None, group: str | None, project: str | None
) -> Action:
    """Grant a policy to a user or a group, in one project or in all."""
    return lambda identity: identity.attach_policy(
        account, policy, user_name=user_name, group_name=group, project=project
    )


@iam_command
@_attachment
def detach_policy(
    account: str, policy: str, user_name: str | None, group: str | None, project: str | None
) -> Action:
    """Take a policy back from a user or a group."""
    return lambda identity: identity.detach_policy(
        account, policy, user_name=user_name, group_name=group, project=project
    )


@iam_command
def list_accounts() -> Action:
    """List accounts."""
    return lambda identity: identity.accounts()


@iam_command
@_account
def list_projects(account: str) -> Action:
    """List an account's projects."""
    return lambda identity: identity.projects(account)


@iam_command
@_account
def list_users(account: str) -> Action:
    """List an account's users."""
    return lambda identity: identity.users(account)


@iam_command
@_account
def list_groups(account: str) -> Action:
    """List an account's groups with their members."""

    async def action(identity: IdentityService) -> Any:
        return [
            {"group": g.name, "id": g.id, "members": [u.name for u in members]}
            for g, members in await identity.groups(account)
        ]

    return action


@iam_command
@_account
def list_access_keys(account: str) -> Action:
    """List an account's permanent access keys (never their secrets)."""

    async def action(identity: IdentityService) -> Any:
        return [
            {
                "access_key": key.access_key,
                "user": owner,
                "status": key.status,
                "description": key.description,
                "created_at": format_time(key.created_at),
            }
            for key, owner in await identity.access_keys(account)
        ]

    return action


@iam_command
@_account
def list_policies(account: str) -> Action:
    """List the system policies and the account's own (their documents with -o json)."""

    async def action(identity: IdentityService) -> Any:
        return [
            {
                "name": p.name,
                "id": p.id,
                "type": "system" if p.account_id is None else "custom",
                "description": p.description,
                "document": json.loads(p.document),
            }
            for p in await identity.policies(account)
        ]

    return action


@iam_command
@_account
def list_attachments(account: str) -> Action:
    """List which policies are granted to whom, and where."""
    return lambda identity: identity.attachments(account)
