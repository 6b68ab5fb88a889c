"""``imagejobs audit``: the audit trail of mutating API calls, newest first, and
``imagejobs audit purge``: deleting events past retention now.

Like ``imagejobs engine`` it uses the database directly: whoever may open the database
is an operator. Over HTTP the trail is at ``/_imagejobs/audit``.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import click
import msgspec

from imagejobs.cli.common import (
    SETTINGS_POINTER,
    data_dir_option,
    database_url_option,
    load,
    output_option,
)
from imagejobs.cli.problems import command_problem
from imagejobs.domain.errors import ImageJobsError
from imagejobs.observability import plain
from imagejobs.settings import MAX_AUDIT_RETENTION_DAYS


@click.group(invoke_without_command=True, epilog=SETTINGS_POINTER)
@database_url_option
@data_dir_option
@click.option(
    "--limit",
    type=click.IntRange(1, 100_000),
    default=50,
    show_default=True,
    help="Events to show, newest first.",
)
@click.option("--before", type=int, default=None, help="Only events older than this event id.")
@click.option("--account-id", default=None, help="Only this account's events.")
@output_option()
@click.pass_context
def audit(
    ctx: click.Context,
    database_url: str | None,
    data_dir: Path | None,
    limit: int,
    before: int | None,
    account_id: str | None,
    output: str,
) -> None:
    """Show who called which mutating API, when, and with what result (-o json: one JSON
    object per line).

    `imagejobs audit purge` deletes events past retention now."""
    if ctx.invoked_subcommand is not None:
        return
    from imagejobs.api.audit import audit_info
    from imagejobs.bootstrap import opened_database
    from imagejobs.storage.ops_store import AuditEvent, SqlOpsStore

    settings = load(database_url=database_url, data_dir=data_dir)

    async def read() -> list[AuditEvent]:
        async with opened_database(settings) as database:
            return await SqlOpsStore(database).audit_events(limit, before, account_id)

    try:
        events = asyncio.run(read())
    except (ImageJobsError, OSError) as exc:
        raise click.ClickException(command_problem("read the audit trail", exc)) from exc
    for event in events:
        info = audit_info(event)
        if output == "json":
            click.echo(msgspec.json.encode(info).decode())
        else:
            error = f" {info.error_code}" if info.error_code else ""
            error += f" ({info.dropped} events not stored)" if info.dropped else ""
            # A route without an operation name is named "METHOD /path": said once.
            same = info.operation == f"{info.method} {info.path}"
            operation = "" if same else f" {info.operation}"
            click.echo(
                # The path is any caller's (unauthenticated calls are audited too).
                f"{info.time} {info.id} {plain(info.principal)} {info.method} {plain(info.path)}"
                f"{operation} -> {info.status}{error} (request {info.request_id})"
            )


@audit.command()
@database_url_option
@data_dir_option
@click.option(
    "--older-than-days",
    type=click.IntRange(1, MAX_AUDIT_RETENTION_DAYS),
    default=None,
    help="Delete events older than this many days. Default: IMAGEJOBS_AUDIT_RETENTION_DAYS.",
)
def purge(database_url: str | None, data_dir: Path | None, older_than_days: int | None) -> None:
    """Delete audit events past retention now, in batches of IMAGEJOBS_AUDIT_PURGE_BATCH
    (serving processes also do it every IMAGEJOBS_AUDIT_PURGE_SECONDS)."""
    from imagejobs.bootstrap import audit_retention, opened_database
    from imagejobs.storage.ops_store import SqlOpsStore

    settings = load(database_url=database_url, data_dir=data_dir)
    if older_than_days is not None:
        settings = replace(settings, audit_retention_days=older_than_days)
    if settings.audit_retention_days == 0:
        click.echo(
            "IMAGEJOBS_AUDIT_RETENTION_DAYS is 0 (keep every event): nothing deleted; "
            "--older-than-days N deletes events older than N days."
        )
        return

    async def run() -> int:
        async with opened_database(settings) as database:
            return await audit_retention(settings, SqlOpsStore(database)).purge()

    try:
        deleted = asyncio.run(run())
    except (ImageJobsError, OSError) as exc:
        raise click.ClickException(command_problem("purge the audit trail", exc)) from exc
    click.echo(f"deleted {deleted} audit events older than {settings.audit_retention_days} days")
