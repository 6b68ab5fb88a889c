"""``imagejobs serve``, ``migrate`` and ``seed``: running the service and preparing data."""

from __future__ import annotations

import asyncio
import errno
import math
import os
import resource
import socket
import sys
import time
from pathlib import Path
from typing import Any

import click

from imagejobs.cli.common import (
    SETTINGS_POINTER,
    bad_setting,
    data_dir_option,
    database_url_option,
    load,
    prepare_schema,
)
from imagejobs.cli.problems import command_problem
from imagejobs.domain.errors import ImageJobsError, InvalidSettings
from imagejobs.settings import Settings

# File descriptors a worker keeps for itself beyond its connections: database pools, logs,
# the event loop, the runner.
RESERVED_FILES = 256
# Beyond the runner's shutdown grace: for the lifespan shutdown to close the database.
WORKER_STOP_SECONDS = 10


@click.command(epilog=SETTINGS_POINTER)
@click.option("--host", default=None, help="Address to listen on (IMAGEJOBS_HOST).")
@click.option("--port", type=int, default=None, help="TCP port (IMAGEJOBS_PORT); 0: any free port.")
@click.option("--workers", type=int, default=None, help="Worker processes (IMAGEJOBS_WORKERS).")
@database_url_option
@data_dir_option
@click.option("--demo", is_flag=True, help="Seed a demo project first if it has no jobs.")
@click.option(
    "--runner/--no-runner",
    "embedded_runner",
    default=None,
    help="Run jobs in each server worker too (default; IMAGEJOBS_EMBEDDED_RUNNER).",
)
@click.option(
    "--profile", type=click.Choice(["test"]), default=None, help="IMAGEJOBS_SERVE_PROFILE."
)
@click.option(
    "--port-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the port to this file (with --port 0).",
)
def serve(
    host: str | None,
    port: int | None,
    workers: int | None,
    database_url: str | None,
    data_dir: Path | None,
    demo: bool,
    embedded_runner: bool | None,
    profile: str | None,
    port_file: Path | None,
) -> None:
    """Run the API server (migrates a SQLite database first).

    Stops gracefully on SIGTERM or SIGINT (Ctrl-C) and exits 0."""
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings
    from granian.server import Server

    from imagejobs.bootstrap import (
        DEMO_PROJECT_ID,
        configure_logging,
        demo_credentials_path,
        prepare_identity,
        seed_demo,
    )
    from imagejobs.storage.database import dialect_of
    from imagejobs.storage.migrate import current_revision, head_revision, migrate

    settings = load(
        runs_jobs=True,
        host=host,
        port=_free_port(host or load().host, host_given=host) if port == 0 else port,
        workers=workers,
        database_url=database_url,
        data_dir=data_dir,
        embedded_runner=embedded_runner,
        serve_profile=profile,
    )
    # Before anything else: a second server must not silently share the port.
    _check_port_free(settings.host, settings.port, host_given=host, port_given=port)
    configure_logging(settings.log_level)
    try:
        if dialect_of(settings.database_url) == "sqlite":
            asyncio.run(migrate(settings.database_url))
        elif asyncio.run(current_revision(settings.database_url)) != head_revision():
            raise click.ClickException(
                "the database schema is not up to date: run `imagejobs migrate` first"
            )
        created, own_file = None, None
        if settings.auth == "iam":
            created, own_file = asyncio.run(prepare_identity(settings))
        if demo and asyncio.run(seed_demo(settings)):
            click.echo(f"Seeded demo project {DEMO_PROJECT_ID}.", err=True)
    except InvalidSettings as exc:  # the operator key (IMAGEJOBS_ENCRYPTION_KEY, …): no database's
        raise click.BadParameter(exc.message) from None
    except (ImageJobsError, OSError) as exc:
        raise click.ClickException(f"cannot use the database: {exc}") from exc
    _load_init_dir(settings)
    if settings.auth == "none":
        click.echo(
            "WARNING: IMAGEJOBS_AUTH=none: no authentication, any caller sees any project.",
            err=True,
        )
    credentials_file = own_file or demo_credentials_path(settings)
    if created is not None:
        shown = sys.stderr.isatty()  # a person reads it: not a log, kept and shared
        click.echo(_credentials_banner(created, credentials_file, shown), err=True)
    if demo:
        click.echo(_demo_instructions(settings, DEMO_PROJECT_ID, credentials_file), err=True)
    click.echo(f"imagejobs listening on http://{settings.host}:{settings.port}", err=True)
    if port_file is not None:
        port_file.write_text(f"{settings.port}\n")
    os.environ.update(settings.to_environ())
    max_connections = _connection_budget(settings.max_connections, raise_open_file_limit())
    Server(
        "imagejobs.bootstrap:asgi_app",
        address=settings.host,
        port=settings.port,
        interface=Interfaces.ASGI,
        workers=settings.workers,
        factory=True,
        log_level=settings.log_level,  # type: ignore[arg-type]
        # The connection limits, set deliberately (docs/security.md). HTTP/1 only: in "auto"
        # mode a connection that never sends a byte waits forever for the HTTP/2 preface,
        # outside any header timeout, and 1,024 of them took the server off the air.
        http=HTTPModes.http1,
        backlog=settings.listen_backlog,
        backpressure=max_connections,
        http1_settings=HTTP1Settings(
            header_read_timeout=max(1, round(settings.header_read_timeout_seconds * 1000)),
            max_buffer_size=head_buffer_bytes(settings.max_header_bytes),
        ),
        # A worker that has not stopped this long after SIGTERM is killed rather than left
        # behind holding the port: after a flood of connections a worker was seen to miss
        # its SIGTERM (asyncio's wakeup socket full), and its leases are taken over anyway.
        workers_kill_timeout=min(
            1800, math.ceil(settings.shutdown_grace_seconds) + WORKER_STOP_SECONDS
        ),
    ).serve()


def head_buffer_bytes(max_header_bytes: int) -> int:
    """What Granian may buffer of a connection's request head: room for the headers the
    edge accepts (IMAGEJOBS_MAX_HEADER_BYTES) and a request line as long, plus 16 KiB.
    Its default, 408 KiB, let anyone hold that much per connection for the header read
    timeout (300 unfinished heads: +120 MB; 4,096 connections: 1.6 GB per worker); a
    longer head is answered 431 by Granian."""
    return 2 * max_header_bytes + 16_384


def _load_init_dir(settings: Settings) -> None:
    from imagejobs.bootstrap import load_init_dir

    try:
        for name in asyncio.run(load_init_dir(settings)):
            click.echo(f"Loaded {settings.init_dir}/{name}.", err=True)
    except InvalidSettings as exc:  # a file, or the directory itself, named in the reason
        reason = str(exc).removeprefix(f"{exc.name} ")
        raise click.ClickException(f"cannot load IMAGEJOBS_INIT_DIR {reason}") from exc
    except (ImageJobsError, OSError) as exc:
        raise click.ClickException(f"cannot use the database: {exc}") from exc


def raise_open_file_limit() -> int:
    """Raise this process's (and its workers') soft open-file limit to the hard limit.

    Many shells start with a soft limit of 1,024, which would cap the server at about that
    many connections whatever it is told; returns the limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        wanted = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):  # e.g. above the kernel's nr_open: keep what we have
            pass
    return soft


def _connection_budget(wanted: int, open_files: int) -> int:
    """The connections a worker may hold: ``wanted``, unless the open-file limit is lower."""
    affordable = max(16, open_files - RESERVED_FILES)
    if wanted > affordable:
        click.echo(
            f"WARNING: IMAGEJOBS_MAX_CONNECTIONS={wanted} exceeds what the open-file limit "
            f"({open_files}) allows; holding at most {affordable} connections per worker.",
            err=True,
        )
        return affordable
    return wanted


def _free_port(host: str, *, host_given: str | None) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        try:
            probe.bind((host, 0))
        except OSError as exc:
            raise _cannot_listen(host, 0, exc, host_given=host_given, port_given=0) from None
        port: int = probe.getsockname()[1]
        return port


def _check_port_free(
    host: str, port: int, *, host_given: str | None, port_given: int | None
) -> None:
    """Fail at once if any process listens on the port (Granian binds with SO_REUSEPORT,
    so a second server would otherwise share it and split requests between databases),
    or if the address cannot be listened on at all (not this machine's, no such name)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    target = "127.0.0.1" if host == "0.0.0.0" else "::1" if host == "::" else host  # noqa: S104
    in_use = False
    # Bind first: an address that is not this machine's must be named as such, not probed
    # (a connection to it may well succeed, through a proxy, and read as "in use").
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise _cannot_listen(
                    host, port, exc, host_given=host_given, port_given=port_given
                ) from None
            in_use = True
    if not in_use:
        with socket.socket(family) as probe:
            probe.settimeout(0.5)
            in_use = probe.connect_ex((target, port)) == 0
    if in_use:
        raise click.ClickException(
            f"port {port} is already in use on {host}: choose another with --port (0: any free"
            " port), or stop what listens there"
        )


def _cannot_listen(
    host: str, port: int, exc: OSError, *, host_given: str | None, port_given: int | None
) -> click.BadParameter:
    """The listening address refused before anything started, named as the user gave it.
    A host that is no name or not this machine's once read "cannot use the database"."""
    why = exc.strerror or str(exc)
    if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
        reason = f"must be a name or address of this machine, not {host} ({why})"
        return bad_setting("host", reason, host=host_given)
    reason = f"must be a port this process may listen on at {host}, not {port} ({why})"
    return bad_setting("port", reason, port=port_given)


def _credentials_banner(credentials: Any, path: Path, shown: bool) -> str:
    if not shown:
        return (
            f"Created the demo account: its credentials are in {path} (mode 0600; account and"
            f" user {credentials.account}, project {credentials.project_id})."
        )
    return f"""
Created the demo account (shown once; also saved to {path}, mode 0600):
  account / root user:  {credentials.account} / {credentials.user}
  password:             {credentials.password}
  project:              {credentials.project_id} ({credentials.region})
  access key (AK):      {credentials.access_key}
  secret key (SK):      {credentials.secret_key}
"""


def _demo_instructions(settings: Settings, project_id: str, credentials_file: Path) -> str:
    base = f"http://{settings.host}:{settings.port}"
    return f"""
imagejobs is starting on {base}
  API explorer:  {base}/docs
  Web console:   {base}/console (account and user demo, password in the file below)
  Credentials:   {credentials_file} (AK/SK, password)
  Official SDK:  see README.md, "Using the official SDK" (endpoint {base}, project {project_id})
  A token:       TOKEN=$(curl -si {base}/v3/auth/tokens -H 'Content-Type: application/json' -d \\
    '{{"auth":{{"identity":{{"methods":["password"],"password":{{"user":{{"name":"demo",
       "password":"<password>","domain":{{"name":"demo"}}}}}}}},
       "scope":{{"project":{{"name":"cn-north-4"}}}}}}}}' \\
    | sed -n 's/^x-subject-token: //Ip' | tr -d '\\r')
  List jobs:     curl -H "X-Auth-Token: $TOKEN" \\
    '{base}/v1/{project_id}/image-server-jobs?job_type=CREATE_SERVER&limit=3'
"""


@click.command(epilog=SETTINGS_POINTER)
@database_url_option
@data_dir_option
def migrate(database_url: str | None, data_dir: Path | None) -> None:
    """Create or upgrade the database schema (idempotent)."""
    from imagejobs.bootstrap import configure_logging
    from imagejobs.storage.migrate import head_revision
    from imagejobs.storage.migrate import migrate as run_migrations

    settings = load(database_url=database_url, data_dir=data_dir)
    # The one line saying what changed ("migrated the database schema from 0008 to
    # 0009"), as `serve` logs it: without it a first run and a no-op printed the same.
    configure_logging(settings.log_level)
    try:
        asyncio.run(run_migrations(settings.database_url))
    except (ImageJobsError, OSError) as exc:
        raise click.ClickException(command_problem("migrate", exc)) from exc
    click.echo(f"Database is at schema revision {head_revision()}.")


@click.command(epilog=SETTINGS_POINTER)
@database_url_option
@data_dir_option
@click.option("--project-id", required=True, help="Project to fill (1 to 128 characters).")
@click.option(
    "--jobs", "job_count", type=click.IntRange(1, 50_000_000), required=True, help="Jobs in all."
)
@click.option(
    "--sub-jobs", type=click.IntRange(0, 20), default=1, show_default=True, help="Sub-jobs per job."
)
@click.option("--random-seed", type=int, default=None, help="Make the data reproducible.")
@click.option(
    "--days",
    type=click.IntRange(1, 3650),
    default=30,
    show_default=True,
    help="Spread the jobs' begin times over this many days before now.",
)
@click.option(
    "--projects",
    type=click.IntRange(1, 100_000),
    default=1,
    show_default=True,
    help="Spread the jobs evenly over --project-id and this many minus one more projects"
    " (ids derived from it), taking turns.",
)
def seed(
    database_url: str | None,
    data_dir: Path | None,
    project_id: str,
    job_count: int,
    sub_jobs: int,
    random_seed: int | None,
    days: int,
    projects: int,
) -> None:
    """Fill a project with realistic jobs of every type and status, for demos and benchmarks.

    The newest jobs are still in progress: a running engine finishes them. On PostgreSQL a
    seed that at least doubles the jobs table builds its indexes once at the end and holds
    the job tables until it is done.
    """
    from imagejobs.storage.seed import SeedPlan

    if not 1 <= len(project_id) <= 128:
        raise click.BadParameter("must be 1 to 128 characters", param_hint="--project-id")
    settings = load(database_url=database_url, data_dir=data_dir)
    plan = SeedPlan(project_id, job_count, sub_jobs, random_seed, days, projects)
    try:
        asyncio.run(prepare_schema(settings.database_url))
        asyncio.run(_seed(settings, plan))
    except (ImageJobsError, OSError) as exc:
        raise click.ClickException(command_problem("seed", exc)) from exc


async def _seed(settings: Settings, plan: Any) -> None:
    from imagejobs.bootstrap import opened_database
    from imagejobs.services.seeding import seed as run_seed

    async with opened_database(settings) as database:
        start = time.monotonic()  # from the open database to its close (a last checkpoint)
        with _SeedOutput(plan.jobs) as output:
            await run_seed(database, plan, progress=output.rows, phase=output.phase)
    where = f"project {plan.project_id}"
    if plan.projects > 1:
        where = f"{plan.projects} projects ({plan.project_id} first)"
    seconds = time.monotonic() - start
    click.echo(f"Seeded {plan.jobs} jobs into {where} in {seconds:.1f} s.", err=True)


class _SeedOutput:
    """A progress bar while rows are written (into a file or pipe: a line each tenth),
    then a line per phase (index builds, VACUUM) on standard error."""

    def __init__(self, jobs: int) -> None:
        self._bar = click.progressbar(
            length=jobs, label="Seeding jobs", file=sys.stderr, show_pos=True
        )
        self._open = False
        self._jobs = jobs
        self._done = 0
        self._tenths = 0
        self._start = time.monotonic()
        self._lines = not sys.stderr.isatty()

    def __enter__(self) -> _SeedOutput:
        self._bar.__enter__()
        self._open = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._close_bar()

    def rows(self, count: int) -> None:
        self._bar.update(count)
        self._done += count
        tenths = self._done * 10 // self._jobs
        if self._lines and tenths > self._tenths:
            self._tenths = tenths
            seconds = time.monotonic() - self._start
            click.echo(f"{self._done} of {self._jobs} jobs written ({seconds:.1f} s)", err=True)

    def phase(self, label: str, seconds: float | None) -> None:
        self._close_bar()
        if seconds is None:
            click.echo(f"{label}…", err=True, nl=False)
        else:
            click.echo(f" {seconds:.1f} s", err=True)

    def _close_bar(self) -> None:
        if self._open:
            self._open = False
            self._bar.__exit__(None, None, None)
