"""Migrations: upgrading an empty database yields exactly the declared schema."""

from __future__ import annotations

import asyncio

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, create_engine, inspect
from sqlalchemy.ext.asyncio import create_async_engine

from imagejobs.storage.database import dialect_of
from imagejobs.storage.migrate import current_revision, head_revision, migrate, sqlalchemy_url
from imagejobs.storage.schema import metadata


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


def _inspect(url: str, fn):  # type: ignore[no-untyped-def]
    if dialect_of(url) == "sqlite":
        engine = create_engine(sqlalchemy_url(url))
        try:
            with engine.connect() as connection:
                return fn(connection)
        finally:
            engine.dispose()

    async def run():  # type: ignore[no-untyped-def]
        engine = create_async_engine(sqlalchemy_url(url))
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(fn)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_migrated_schema_equals_the_declared_schema(database_url: str) -> None:
    assert _inspect(database_url, _differences) == []
    assert {"jobs", "sub_jobs", "job_counters", "alembic_version"} <= _inspect(
        database_url, _tables
    )


def test_migrating_again_changes_nothing(database_url: str) -> None:
    asyncio.run(migrate(database_url))
    assert asyncio.run(current_revision(database_url)) == head_revision()
    assert _inspect(database_url, _differences) == []


def test_an_empty_sqlite_file_is_created_and_upgraded(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'nested' / 'dir' / 'new.db'}"
    assert asyncio.run(current_revision(url)) is None
    asyncio.run(migrate(url))
    assert asyncio.run(current_revision(url)) == head_revision()
    assert _inspect(url, _differences) == []
