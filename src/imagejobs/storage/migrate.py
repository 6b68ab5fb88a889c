"""Schema migrations: Alembic run programmatically on either dialect."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from imagejobs.storage.database import dialect_of, postgres_dsn, sqlite_path
from imagejobs.storage.private_files import private_sqlite_database

_SCRIPTS = Path(__file__).parent / "migrations"
# Any fixed number: concurrent `migrate` runs on one PostgreSQL database take turns.
_PG_MIGRATION_LOCK = 7_296_240_001
logger = logging.getLogger("imagejobs.storage")


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})"))
    before = _current(connection)
    command.upgrade(_config(connection), "head")
    after = _current(connection)
    if after != before:  # one line (Alembic's own, one per revision, show at debug level)
        logger.info("migrated the database schema from %s to %s", before or "empty", after)


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def sqlalchemy_url(url: str) -> str:
    if dialect_of(url) == "sqlite":
        return f"sqlite:///{sqlite_path(url)}"
    return postgres_dsn(url).replace("postgresql://", "postgresql+asyncpg://", 1)


def _async_engine(url: str) -> AsyncEngine:
    """An engine on PostgreSQL whose connections asyncpg makes from ``url`` itself: it
    understands what SQLAlchemy's URL parser does not, such as several hosts
    (``postgresql://h1:5432,h2:5433/db?target_session_attrs=read-write``)."""
    dsn = postgres_dsn(url)

    async def connect() -> Any:
        return await asyncpg.connect(dsn)

    return create_async_engine("postgresql+asyncpg://", async_creator=connect)


async def migrate(url: str) -> None:
    """Bring the database at ``url`` to the newest schema (idempotent)."""
    if dialect_of(url) == "sqlite":
        private_sqlite_database(sqlite_path(url))
        engine = create_engine(sqlalchemy_url(url))
        try:
            with engine.begin() as connection:
                _upgrade(connection)
        finally:
            engine.dispose()
        return
    async_engine = _async_engine(url)
    try:
        async with async_engine.begin() as connection:
            await connection.run_sync(_upgrade)
    finally:
        await async_engine.dispose()


async def current_revision(url: str) -> str | None:
    """The schema revision the database is at, or None for an empty database."""
    if dialect_of(url) == "sqlite":
        if not sqlite_path(url).exists():
            return None
        engine = create_engine(sqlalchemy_url(url))
        try:
            with engine.connect() as connection:
                return _current(connection)
        finally:
            engine.dispose()
    async_engine = _async_engine(url)
    try:
        async with async_engine.connect() as connection:
            return await connection.run_sync(_current)
    finally:
        await async_engine.dispose()
