"""What every subcommand shares: reading settings once, and the database options."""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from imagejobs.domain.errors import InvalidSettings
from imagejobs.settings import ENV_PREFIX, Settings, env_name, load_settings, setting_help
from imagejobs.storage.private_files import close_data_directory

R = TypeVar("R")


def settings_epilog() -> str:
    lines = ["\b", "Environment variables (flags take precedence):"]
    for name, default, doc in setting_help():
        # A computed default is in the description already ("Default: DATA_DIR/…").
        shown = "" if not default and "Default:" in doc else f" [default: {default or '-'}]"
        lines.append(f"  {name}  {doc}{shown}")
    return "\n".join(lines)


# Subcommands point at the list instead of repeating it (it is long).
SETTINGS_POINTER = "Settings: IMAGEJOBS_* environment variables, listed by `imagejobs --help`."


def load(*, runs_jobs: bool = False, **overrides: Any) -> Settings:
    """The settings, from flags (``overrides``) over ``IMAGEJOBS_*`` over defaults.
    ``runs_jobs``: the command runs the driver (``serve``, ``worker``), which must exist."""
    try:
        settings = load_settings(os.environ, **overrides)
        if runs_jobs:
            from imagejobs.drivers.registry import check_driver

            check_driver(settings)
    except InvalidSettings as exc:
        raise _settings_problem(exc, overrides) from None
    close_data_directory(settings.data_dir)
    return settings


def bad_setting(name: str, reason: str, **overrides: Any) -> click.BadParameter:
    """A setting found bad after loading (the host cannot be listened on): named as the user
    gave it, flag or variable, as ``load`` names the ones it refuses."""
    return _settings_problem(InvalidSettings(name, reason), overrides)


def _settings_problem(exc: InvalidSettings, overrides: dict[str, Any]) -> click.BadParameter:
    """The bad setting named as the user gave it, with the value given: the flag if one
    was passed (``Invalid value for '--workers': must be from 1 to 64, not 0``), else its
    variable (``IMAGEJOBS_WORKERS must be …``), never the field name alone."""
    field = exc.name.removeprefix(ENV_PREFIX).lower()
    if field not in {f.name for f in dataclasses.fields(Settings)}:
        return click.BadParameter(exc.message)
    reason = exc.message.removeprefix(f"{exc.name} ")
    given = overrides.get(field)
    context = click.get_current_context(silent=True)
    params = {p.name: p for p in context.command.params} if context else {}
    if given is not None and field in params:
        if ", not " not in reason:
            reason += f", not {given}"
        return click.BadParameter(reason, param=params[field])
    raw = os.environ.get(env_name(field))
    if raw and ", not " not in reason:
        reason += f", not {raw}"
    return click.BadParameter(f"{env_name(field)} {reason}")


async def prepare_schema(database_url: str) -> None:
    """Before a command uses the database: SQLite is migrated (as ``serve`` does); a
    PostgreSQL schema that is not this release's is refused. Migrating a shared database is
    ``imagejobs migrate``'s, once per release before new processes start: an ``iam`` or
    ``seed`` of a newer release migrated it under the running servers, whose readiness
    would then all say ``schema: outdated`` at once (docs/operations.md, Deployment)."""
    from imagejobs.storage.database import dialect_of
    from imagejobs.storage.migrate import current_revision, head_revision, migrate

    if dialect_of(database_url) == "sqlite":
        await migrate(database_url)
    elif await current_revision(database_url) != head_revision():
        raise click.ClickException(
            "the database schema is not up to date: run `imagejobs migrate` first"
        )


database_url_option = click.option(
    "--database-url", help="Database URL (IMAGEJOBS_DATABASE_URL).", default=None
)
data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Data directory (IMAGEJOBS_DATA_DIR).",
)


_OUTPUT_HELP = {
    ("table", "json"): "table: for people; json: for scripts.",
    ("table", "json", "id"): "table: for people; json: for scripts; id: the IDs alone, one a"
    " line (JOB=$(... -o id)).",
    ("json",): "Always JSON (the operator API's answer).",
}


def output_option(
    choices: tuple[str, ...] = ("table", "json"), *, json_alias: bool = True
) -> Callable[..., Any]:
    """``--output/-o`` (``table`` for people, ``json`` for scripts): every command that
    prints data takes it, passed to the command as ``output``. ``--json``, which some
    commands took before, stays as a hidden spelling of ``-o json`` (not where ``--json``
    was an input: ``engine rules set``)."""

    def decorate(function: Callable[..., R]) -> Callable[..., R]:
        @functools.wraps(function)
        def command(*args: Any, output: str, json_flag: bool = False, **kwargs: Any) -> R:
            return function(*args, output="json" if json_flag else output, **kwargs)

        if json_alias:
            command = click.option("--json", "json_flag", is_flag=True, hidden=True)(command)
        return click.option(
            "--output",
            "-o",
            type=click.Choice(choices),
            default=choices[0],
            show_default=True,
            help=_OUTPUT_HELP[choices],
        )(command)

    return decorate
