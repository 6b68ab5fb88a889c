"""High availability of the database: a pg_auto_failover formation (monitor, primary,
synchronous standby) on local ports, the service given both nodes in one URL, 8 clients
creating image servers, and the primary's machine killed (keeper and postmaster, -9).

The standby is promoted and the service goes on without a restart; every job whose create
was answered exists afterwards and runs to its end with one result, and counts stay
exact. The time from the kill to the first successful create is printed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from imagejobs.storage.migrate import migrate
from tests.conftest import ServerProcess, require_programs
from tests.engine_support import FAST
from tests.factories import new_tenant
from tests.integration.test_database_faults import Load, assert_every_answered_job_ran_once
from tests.integration.test_engine_processes import wait_for
from tests.pg_formation import Formation

pytestmark = pytest.mark.postgres


@pytest.fixture
def formation() -> Iterator[Formation]:
    require_programs("pg_autoctl")
    formation = Formation()
    try:
        formation.start()
        yield formation
    finally:
        formation.remove()


def test_primary_killed_under_load_fails_over_without_a_restart(
    formation: Formation, tmp_path: Path
) -> None:
    url = formation.url()
    asyncio.run(migrate(url))  # through the multi-host URL, as an operator would
    tenant = new_tenant(url)
    env = {**FAST, "IMAGEJOBS_LEASE_SECONDS": "2", "IMAGEJOBS_MAX_ATTEMPTS": "100"}
    server = ServerProcess(url, tmp_path, extra_env=env)
    try:
        with Load(server.base_url, tenant, clients=8, reads=False) as load:
            assert wait_for(lambda: len(load.created) >= 40, 60)
            primary = formation.primary()
            killed_at = time.monotonic()
            formation.kill_machine(primary)
            assert wait_for(lambda: load.first_success_after(killed_at) is not None, 120)
            recovered_at = load.first_success_after(killed_at)
            assert recovered_at is not None
            took = recovered_at - killed_at
            print(f"\nkill -9 of the primary -> first successful create: {took:.1f} s")
            assert formation.wait_for_promotion(primary) != primary
            created_then = len(load.created)
            assert wait_for(lambda: len(load.created) >= created_then + 40, 60)
        statuses = {status for _, _, status, _ in load.answers}
        assert statuses <= {200, 503}, statuses  # the outage is answered as documented
        assert wait_for(
            lambda: httpx.get(server.base_url + "/_imagejobs/ready").status_code == 200, 30
        )
        assert_every_answered_job_ran_once(url, load.created)
    finally:
        server.stop()
