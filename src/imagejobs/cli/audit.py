"""``imagejobs audit``: the audit trail of mutating API calls, newest first.

Like ``imagejobs engine`` it reads the database directly: whoever may open the database
is an operator. Over HTTP the same is at ``/_imagejobs/audit``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import click
import msgspec

from imagejobs.cli.common import data_dir_option, database_url_option, load, settings_epilog
from imagejobs.domain.errors import ImageJobsError


@click.command(epilog=settings_epilog())
@database_url_option
@data_dir_option
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--before", type=int, default=None, help="Only events older than this event id.")
@click.option("--account-id", default=None, help="Only this account's events.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def audit(
    database_url: str | None,
    data_dir: Path | None,
    limit: int,
    before: int | None,
    account_id: str | None,
    as_json: bool,
) -> None:
    """Show who called which mutating API, when, and with what result."""
    from imagejobs.api.audit import audit_info
    from imagejobs.bootstrap import open_database
    from imagejobs.storage.ops_store import AuditEvent, SqlOpsStore

    settings = load(database_url=database_url, data_dir=data_dir)

    async def read() -> list[AuditEvent]:
        database = open_database(settings)
        await database.open()
        try:
            return await SqlOpsStore(database).audit_events(limit, before, account_id)
        finally:
            await database.close()

    try:
        events = asyncio.run(read())
    except (ImageJobsError, OSError) as exc:
        raise click.ClickException(f"cannot read the audit trail: {exc}") from exc
    for event in events:
        info = audit_info(event)
        if as_json:
            click.echo(msgspec.json.encode(info).decode())
        else:
            error = f" {info.error_code}" if info.error_code else ""
            click.echo(
                f"{info.time} {info.id} {info.principal} {info.method} {info.path} "
                f"{info.operation} -> {info.status}{error} (request {info.request_id})"
            )
