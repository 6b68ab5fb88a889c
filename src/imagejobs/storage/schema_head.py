"""The newest schema revision, read from the migration files' ``revision`` and
``down_revision`` lines without importing Alembic or SQLAlchemy (a third of a second): the
readiness probe compares the database with it in every process, a test session's too."""

from __future__ import annotations

import functools
import re
from pathlib import Path

_VERSIONS = Path(__file__).parent / "migrations" / "versions"
_REVISION = re.compile(r"^(down_revision|revision)\s*=\s*(?:\"([^\"]*)\"|None)", re.MULTILINE)


@functools.cache
def head_revision() -> str:
    """The one revision no other migration revises (what ``alembic upgrade head`` reaches)."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for path in _VERSIONS.glob("*.py"):
        found = {m.group(1): m.group(2) for m in _REVISION.finditer(path.read_text())}
        if found.get("revision"):
            revisions.add(found["revision"])
        if found.get("down_revision"):
            revised.add(found["down_revision"])
    heads = revisions - revised
    if len(heads) != 1:
        raise RuntimeError(f"the migrations have {len(heads)} heads: {sorted(heads)}")
    return heads.pop()
