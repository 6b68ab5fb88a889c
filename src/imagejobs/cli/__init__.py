"""The ``imagejobs`` command. Settings are read here, once, and passed down."""

from __future__ import annotations

import click

from imagejobs import __version__
from imagejobs.cli.audit import audit
from imagejobs.cli.common import settings_epilog
from imagejobs.cli.engine import engine
from imagejobs.cli.iam import iam
from imagejobs.cli.jobs import jobs
from imagejobs.cli.problems import GuardedGroup
from imagejobs.cli.server import migrate, seed, serve
from imagejobs.cli.servers import servers
from imagejobs.cli.worker import worker


@click.group(cls=GuardedGroup, epilog=settings_epilog())
@click.version_option(__version__, prog_name="imagejobs")
def main() -> None:
    """imagejobs: a self-hostable Huawei Cloud WorkspaceApp image-job service.

    Every command that prints data takes -o/--output table|json. Ctrl-C ends a command
    with exit code 130; `serve` and `worker` stop gracefully on it (or SIGTERM), exit 0.
    """


main.add_command(serve)
main.add_command(migrate)
main.add_command(seed)
main.add_command(iam)
main.add_command(worker)
main.add_command(engine)
# The API client commands (over HTTP, like any client).
main.add_command(jobs)
main.add_command(servers)
main.add_command(audit)
