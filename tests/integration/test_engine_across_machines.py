"""The engine as a multi-machine deployment runs it, with real processes: workers whose
clocks are minutes apart (libfaketime), processes that share an id node, a LISTEN
connection that drops, and a tenant that tries to starve everyone's jobs."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import asyncpg
import httpx
import pytest

from imagejobs.storage.database import postgres_dsn
from tests.conftest import ServerProcess, require_programs
from tests.engine_support import FAST, query, server_body
from tests.factories import OPERATOR_HEADERS, new_project
from tests.integration.test_engine_processes import (
    WorkerProcess,
    assert_all_succeeded_once,
    create_servers,
    engine_env,
    job_statuses,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[2]


# libfaketime (Debian package faketime), preloaded: the process sees a shifted clock.
LIBFAKETIME = next(iter(sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))), None)


@pytest.mark.postgres
def test_workers_with_clocks_minutes_apart_run_each_step_exactly_once(
    postgres_url: str, tmp_path: Path
) -> None:
    require_programs(LIBFAKETIME or Path("/usr/lib/<arch>/faketime/libfaketime.so.1"))
    assert LIBFAKETIME is not None
    executions = tmp_path / "executions.log"
    env = engine_env(
        executions,
        IMAGEJOBS_SIMULATED_COMPLETION="duration",
        IMAGEJOBS_SIMULATED_DURATION_SECONDS="0.5",  # steps in flight while both claim
        LD_PRELOAD=str(LIBFAKETIME),
        FAKETIME_DONT_FAKE_MONOTONIC="1",
    )
    job_ids = create_servers(postgres_url, new_project(), 300)
    workers = [
        WorkerProcess(postgres_url, tmp_path / f"w{i}.log", {**env, "FAKETIME": skew}, 16)
        for i, skew in enumerate(("+0", "+3m"))  # the second sees the first's leases expire
    ]
    try:
        assert wait_for(lambda: job_statuses(postgres_url)["SUCCESS"] == 300, 120)
    finally:
        codes = [w.terminate() for w in workers]
    assert codes == [0, 0]
    assert_all_succeeded_once(postgres_url, job_ids)
    lines = executions.read_text().splitlines()
    ran = Counter(line.split()[0] for line in lines)
    assert len(ran) == 300
    assert set(ran.values()) == {1}  # no lease taken over from a live runner
    assert len({line.split()[4] for line in lines}) == 2  # both did work


_MINT = """
import asyncio, json, sys, time
from imagejobs.bootstrap import build_services
from imagejobs.domain.ids import IdGenerator
from imagejobs.services.servers import ServerService
from imagejobs.settings import load_settings
from imagejobs.storage.database import database_for
from imagejobs.storage.engine_store import SqlEngineStore
from imagejobs.storage.server_store import SqlServerStore
from tests.engine_support import FAST, new_server

async def main(url, project, count, start_at):
    database = database_for(url)
    await database.open()
    services = build_services(database, load_settings({**FAST, "IMAGEJOBS_DATABASE_URL": url}))
    # Forced onto one node, as processes that drew the same random node once were.
    servers = ServerService(
        SqlServerStore(database, SqlEngineStore(database)), services.steering, IdGenerator(7)
    )
    time.sleep(max(0.0, start_at - time.time()))
    outcomes = []
    for start in range(0, count, 25):
        batch = [servers.create(project, new_server()) for _ in range(25)]
        outcomes += await asyncio.gather(*batch, return_exceptions=True)
    await database.close()
    print(json.dumps([o if isinstance(o, str) else repr(o) for o in outcomes]))

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
"""


def test_processes_forced_onto_one_id_node_mint_no_duplicate(database_url: str) -> None:
    project = new_project()
    start_at = time.time() + 2  # all at once: same milliseconds, same node
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _MINT, database_url, project, "200", str(start_at)],
            stdout=subprocess.PIPE,
            cwd=ROOT,
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join([os.environ.get("PYTHONPATH", ""), str(ROOT)]),
            },
        )
        for _ in range(4)
    ]
    outcomes = [json.loads(p.communicate(timeout=120)[0]) for p in processes]
    job_ids = [o for outcome in outcomes for o in outcome]
    assert [o for o in job_ids if not o.isdigit()] == []  # no 409, no 500
    assert len(set(job_ids)) == 800
    assert query(database_url, f"SELECT COUNT(*) FROM jobs WHERE project_id = '{project}'") == [
        (800,)
    ]


async def _listener_pids(url: str) -> set[int]:
    connection = await asyncpg.connect(postgres_dsn(url))
    try:
        rows = await connection.fetch(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND query LIKE 'LISTEN%'"
        )
        return {row[0] for row in rows}
    finally:
        await connection.close()


async def _terminate(url: str, pids: set[int]) -> None:
    connection = await asyncpg.connect(postgres_dsn(url))
    try:
        for pid in pids:
            await connection.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await connection.close()


@pytest.mark.postgres
def test_a_runner_listens_again_after_its_listen_connection_drops(
    postgres_url: str, tmp_path: Path
) -> None:
    env = engine_env(tmp_path / "executions.log", IMAGEJOBS_POLL_SECONDS="60")
    worker = WorkerProcess(postgres_url, tmp_path / "worker.log", env, 4)
    try:
        assert wait_for(lambda: bool(asyncio.run(_listener_pids(postgres_url))), 30)
        first = asyncio.run(_listener_pids(postgres_url))
        asyncio.run(_terminate(postgres_url, first))
        # A new LISTEN connection, well before the next poll (60 s).
        assert wait_for(lambda: bool(asyncio.run(_listener_pids(postgres_url)) - first), 20)
        [job_id] = create_servers(postgres_url, new_project(), 1)
        # Woken by NOTIFY on the new connection, not by the 60 s poll.
        assert wait_for(lambda: job_statuses(postgres_url)["SUCCESS"] == 1, 20)
    finally:
        assert worker.terminate() == 0
    assert_all_succeeded_once(postgres_url, [job_id])


ATTACK_CREATES = 1000


async def _flood(base_url: str, project: str, count: int) -> Counter[int]:
    """``count`` CreateImageServer requests, 50 at a time; their status codes."""
    statuses: Counter[int] = Counter()
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:

        async def create(i: int) -> None:
            response = await client.post(f"/v1/{project}/image-servers", json=server_body())
            statuses[response.status_code] += 1

        for start in range(0, count, 50):
            await asyncio.gather(*(create(i) for i in range(start, min(count, start + 50))))
    return statuses


def test_one_tenant_cannot_starve_another_tenants_jobs(database_url: str, tmp_path: Path) -> None:
    """An attacker steers its project to 86,400-second jobs and creates them by the
    thousand (quotas off, to attack the engine itself): another tenant's job still
    reaches SUCCESS in its normal time, while every attacker job is still pending."""
    env = {
        **FAST,
        "IMAGEJOBS_AUTH": "none",
        "IMAGEJOBS_SIMULATED_QUEUE_SECONDS": "0.5",
        "IMAGEJOBS_SIMULATED_COMPLETION": "duration",
        "IMAGEJOBS_SIMULATED_DURATION_SECONDS": "2",
    }
    server = ServerProcess(database_url, tmp_path, extra_env=env)
    try:
        attacker, victim = new_project(), new_project()
        rule = httpx.put(
            f"{server.base_url}/_imagejobs/engine/rules/{attacker}/*",
            json={"duration_seconds": 86_400},
            headers=OPERATOR_HEADERS,
        )
        assert rule.status_code == 200, rule.text
        assert asyncio.run(_flood(server.base_url, attacker, ATTACK_CREATES)) == {
            200: ATTACK_CREATES
        }

        created = httpx.post(f"{server.base_url}/v1/{victim}/image-servers", json=server_body())
        job = f"{server.base_url}/v1/{victim}/image-server-jobs/{created.json()['job_id']}"
        assert wait_for(lambda: httpx.get(job).json()["status"] == "SUCCESS", 60)

        pending = query(
            database_url,
            f"SELECT COUNT(*) FROM jobs WHERE project_id = '{attacker}'"
            " AND status IN ('WAITING', 'RUNNING')",
        )
        assert pending == [(ATTACK_CREATES,)]
    finally:
        server.stop()
