"""What every subcommand shares: reading settings once, and the database options."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from imagejobs.domain.errors import InvalidSettings
from imagejobs.settings import Settings, load_settings, setting_help
from imagejobs.storage.private_files import close_data_directory


def settings_epilog() -> str:
    lines = ["\b", "Environment variables (flags take precedence):"]
    for name, default, doc in setting_help():
        lines.append(f"  {name}  {doc} [default: {default or '-'}]")
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
