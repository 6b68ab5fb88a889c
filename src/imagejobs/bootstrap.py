"""Composition root: wires settings, database, stores, services and the ASGI app."""

from __future__ import annotations

import logging
import sys

from starlette.applications import Starlette

from imagejobs.api.app import create_app
from imagejobs.domain.enums import JobType
from imagejobs.domain.records import JobFilter, PageRequest
from imagejobs.services import Services
from imagejobs.services.jobs import JobService
from imagejobs.settings import Settings, load_settings
from imagejobs.storage.database import Database, database_for
from imagejobs.storage.job_store import SqlJobStore
from imagejobs.storage.seed import SeedPlan, seed

# The example project of the API reference: copy-pasted examples work against the demo.
DEMO_PROJECT_ID = "a4da8115c9d8464ead3a38309130523f"
DEMO_JOBS = 2_000


def configure_logging(level: str) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


def open_database(settings: Settings) -> Database:
    return database_for(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)


def build_services(database: Database) -> Services:
    return Services(jobs=JobService(SqlJobStore(database)))


def build_app(settings: Settings) -> Starlette:
    database = open_database(settings)
    return create_app(
        build_services(database), on_startup=database.open, on_shutdown=database.close
    )


def asgi_app() -> Starlette:
    """Granian's factory target: each server worker reads the settings once, here."""
    settings = load_settings()
    configure_logging(settings.log_level)
    return build_app(settings)


async def seed_demo(settings: Settings) -> bool:
    """Seed the demo project unless it already has jobs; True when it seeded."""
    database = open_database(settings)
    await database.open()
    try:
        store = SqlJobStore(database)
        for job_type in (JobType.CREATE_SERVER, JobType.CREATE_SERVER_IMAGE, JobType.DELETE_SERVER):
            page = await store.list_jobs(DEMO_PROJECT_ID, JobFilter(job_type), PageRequest(0, 1))
            if page.count:
                return False
        await seed(database, SeedPlan(DEMO_PROJECT_ID, DEMO_JOBS, sub_jobs_per_job=2))
        return True
    finally:
        await database.close()
