"""``imagejobs worker``: runners without the API, as many processes as you like."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from imagejobs.cli.common import (
    SETTINGS_POINTER,
    data_dir_option,
    database_url_option,
    load,
    prepare_schema,
)
from imagejobs.cli.problems import command_problem
from imagejobs.domain.errors import ImageJobsError
from imagejobs.settings import Settings


def ensure_schema(settings: Settings) -> None:
    """Migrate a SQLite database; refuse a PostgreSQL one that is not up to date."""
    asyncio.run(prepare_schema(settings.database_url))


@click.command(epilog=SETTINGS_POINTER)
@database_url_option
@data_dir_option
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1024),
    default=None,
    help="Sub-jobs this process works on at once (IMAGEJOBS_RUNNER_CONCURRENCY).",
)
def worker(database_url: str | None, data_dir: Path | None, concurrency: int | None) -> None:
    """Run jobs: claim due sub-jobs, run their driver steps, record the results.

    Stops on SIGTERM or SIGINT (Ctrl-C), after finishing (or releasing to other runners)
    the steps in progress, and exits 0. Start as many workers as you like on PostgreSQL;
    on SQLite they take turns writing.
    """
    from imagejobs.bootstrap import configure_logging, run_worker

    settings = load(
        runs_jobs=True,
        database_url=database_url,
        data_dir=data_dir,
        runner_concurrency=concurrency,
    )
    configure_logging(settings.log_level)
    try:
        ensure_schema(settings)
        asyncio.run(run_worker(settings))
    except (ImageJobsError, OSError) as exc:
        raise click.ClickException(command_problem("run jobs", exc)) from exc
