"""Plain-text tables and times for the client commands' default output."""

from __future__ import annotations

from collections.abc import Sequence

import click


def short_time(value: str | None) -> str:
    """``2022-03-07T10:40:43.858Z`` as ``2022-03-07 10:40:43`` (UTC), ``-`` when absent."""
    return value[:19].replace("T", " ") if value else "-"


def echo_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    for row in [list(headers), *cells]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def echo_fields(fields: Sequence[tuple[str, object]]) -> None:
    width = max(len(name) for name, _ in fields)
    for name, value in fields:
        click.echo(f"{name.ljust(width)}  {value}")


def progress_bar(done: int, total: int, width: int = 20) -> str:
    filled = width * done // total if total else 0
    return "[" + "#" * filled + "." * (width - filled) + f"] {done}/{total}"


def page_footer(offset: int | None, shown: int, count: int) -> None:
    """The range shown, "21-30 of 1009", under a table (on stderr: a pipe gets the table)."""
    start = offset or 0
    if shown:
        click.echo(f"{start + 1}-{start + shown} of {count}", err=True)
    elif start and start >= count:  # a page past the end is not "0-5000 of 1009"
        click.echo(f"none: --offset {start} is past the last of {count}", err=True)
    else:
        click.echo(f"none of {count}", err=True)
