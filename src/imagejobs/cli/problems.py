"""Expected problems of any command (a database that is missing, not migrated or not
reachable) as one line saying what is wrong and what to do, never a traceback; and Ctrl-C
as the shell's 130 (128 + SIGINT), silently."""

from __future__ import annotations

import os
import re
import sqlite3
import sys
from typing import Any

import asyncpg
import click
import sqlalchemy.exc

from imagejobs.domain.errors import ServiceUnavailable

# What a shell reports for a program that Ctrl-C (SIGINT, 2) ended: 128 + 2.
EXIT_INTERRUPTED = 130

_DATABASE_HINT = "check --database-url or IMAGEJOBS_DATABASE_URL"
# Only a SQLite problem may come from the default URL: a PostgreSQL one was given.
_SQLITE_HINT = f"{_DATABASE_HINT} (by default data/imagejobs.db under the current folder)"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    # SQLAlchemy's asyncpg adapter prefixes the driver's class: keep the message only.
    return re.sub(r"^<class '[^']+'>: ", "", text)


def database_problem(exc: BaseException) -> str | None:
    """The line to print for ``exc`` if it is an expected database problem, else None."""
    if isinstance(exc, ServiceUnavailable) and exc.__cause__ is not None:
        exc = exc.__cause__  # the store's 503, raised from what the driver said
    cause = exc
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.orig is not None:
        cause = exc.orig
    reason = _reason(cause)
    undefined = isinstance(cause, asyncpg.UndefinedTableError) or "no such table" in reason
    if undefined or re.search(r'relation ".*" does not exist', reason):
        return (
            f"the database has no imagejobs schema ({reason}): run `imagejobs migrate` with"
            " the same --database-url first"
        )
    expected = (sqlite3.Error, asyncpg.PostgresError, asyncpg.InterfaceError, OSError)
    if isinstance(cause, expected) or isinstance(exc, sqlalchemy.exc.DBAPIError):
        hint = _SQLITE_HINT if isinstance(cause, sqlite3.Error) else _DATABASE_HINT
        return f"cannot use the database ({reason}): {hint}"
    return None


def command_problem(doing: str, exc: BaseException) -> str:
    """The line for a command's expected failure: an unreachable database as every command
    names it (with what to check), anything else as ``cannot DOING: reason``."""
    problem = database_problem(exc) if isinstance(exc, (OSError, ServiceUnavailable)) else None
    return problem or f"cannot {doing}: {exc}"


class GuardedGroup(click.Group):
    """The top-level group: turns expected problems of every subcommand into one line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            # Ctrl-C: the user knows; click would print "Aborted!" and exit 1, which a
            # script cannot tell from a failure. (`serve` and `worker` handle SIGINT
            # themselves, as SIGTERM: a graceful stop, exit 0.)
            if sys.stderr.isatty():
                click.echo(err=True)  # end the line the terminal echoed ^C on
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
        except BrokenPipeError:
            # The reader stopped early (`| head`): nothing is wrong, and nothing more can be
            # written; stdout goes to /dev/null so that its flush at exit fails no more.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise click.exceptions.Exit(1) from None
        except Exception as exc:
            message = database_problem(exc)
            if message is None:
                raise
            raise click.ClickException(message) from None
