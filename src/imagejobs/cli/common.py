"""What every subcommand shares: reading settings once, and the database options."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from imagejobs.domain.errors import InvalidSettings
from imagejobs.settings import Settings, load_settings, setting_help
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


def load(**overrides: Any) -> Settings:
    """The settings, from flags (``overrides``) over ``IMAGEJOBS_*`` over defaults."""
    try:
        settings = load_settings(os.environ, **overrides)
    except InvalidSettings as exc:
        raise click.BadParameter(exc.message) from None
    close_data_directory(settings.data_dir)
    return settings


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
