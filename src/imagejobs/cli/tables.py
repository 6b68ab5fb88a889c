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
