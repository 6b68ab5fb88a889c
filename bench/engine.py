"""The job engine end to end: sub-jobs from WAITING to SUCCESS per second, and what the
engine's work costs ListImageJobs.

Two deployments, each on a fresh database:

- ``sqlite``: ``imagejobs serve`` (one Granian worker) with its embedded runner.
- ``postgresql``: ``imagejobs serve --no-runner`` plus two ``imagejobs worker`` processes.

The simulated driver completes at once (``IMAGEJOBS_SIMULATED_COMPLETION=immediate``).
For each deployment:

1. **Throughput.** ``--sub-jobs`` CREATE_SERVER jobs are created through the service layer
   (the API's transaction, without HTTP) with a one-hour queue delay, so nothing runs yet.
   Then every task is made due at one instant T0 (one UPDATE; on PostgreSQL a NOTIFY), and
   the rate is sub-jobs / (last sub-job's end_time - T0), from the database's own times.
2. **ListImageJobs idle vs while the engine runs at 500 sub-jobs/s**, in ``--rounds``
   alternating rounds (so that drift and other load hit both alike), medians reported.
   Idle: ``wrk -t1 -c32`` on ``GET .../image-server-jobs?job_type=CREATE_SERVER&limit=10``
   for ``--duration`` seconds. Loaded: new tasks are made due one every 2 ms (500/s) for
   ``--duration`` + 3 seconds and wrk runs over the middle of that window. Reported: both
   rates, their ratio (target >= 0.70), and the rate the engine sustained meanwhile. The
   ``serve`` process is pinned to CPU 0 and wrk to CPU 1, as in bench/list_jobs.py.

Without wrk, step 2 uses an httpx client (lower absolute numbers, same ratio).
Authentication is off (IMAGEJOBS_AUTH=none): the cost of IAM is not the engine's.

    .venv/bin/python bench/engine.py [--sub-jobs 10000] [--duration 8]
        [--databases sqlite,postgresql] [--postgres-url postgresql://postgres@127.0.0.1/test]

Results are printed and written as JSON to bench/results/ (git-ignored). The exit status is
0 whether or not the targets are met: a benchmark reports, it does not fail.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from report import save as save_results

BENCH = Path(__file__).resolve().parent
PROJECT = "a4da8115c9d8464ead3a38309130523f"
PG_DATABASE = "imagejobs_bench_engine"
TARGETS = {"sub_jobs_per_second_min": 500.0, "list_ratio_min": 0.70}
SERVER_CPU, WRK_CPU = 0, 1
PACED_RATE = 500  # sub-jobs per second while ListImageJobs is measured
ENGINE_ENV = {
    "IMAGEJOBS_AUTH": "none",
    "IMAGEJOBS_LOG_LEVEL": "warning",
    # A step lasts zero seconds: "immediate" would also make every read of a live job wait
    # for it to end (the test profile's deterministic reads), which is not the engine's cost.
    "IMAGEJOBS_SIMULATED_COMPLETION": "duration",
    "IMAGEJOBS_SIMULATED_DURATION_SECONDS": "0",
    "IMAGEJOBS_SIMULATED_QUEUE_SECONDS": "3600",  # nothing runs until the bench says so
    "IMAGEJOBS_POLL_SECONDS": "1",
    # 10,000 jobs created at once in one project: past every per-project quota.
    "IMAGEJOBS_QUOTA_JOBS_IN_FLIGHT": "0",
    "IMAGEJOBS_QUOTA_CREATES_PER_SECOND": "0",
    "IMAGEJOBS_QUOTA_SERVERS": "0",  # 10,000 + the paced windows' servers
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def processes(commands: list[list[str]], env: dict[str, str], logs: Path) -> Iterator[list[int]]:
    """Start ``commands`` (output in ``logs``), yield their pids, stop them on exit."""
    started = [
        subprocess.Popen(
            command,
            stdout=(logs / f"process-{i}.log").open("wb"),
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )
        for i, command in enumerate(commands)
    ]
    try:
        yield [p.pid for p in started]
    finally:
        for process in started:
            process.terminate()
        for process in started:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


def _pinned(cpu: int) -> list[str]:
    """As bench/list_jobs.py does: the API worker on CPU 0, wrk on CPU 1 (when possible)."""
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") and os.cpu_count() else []


def imagejobs(*args: str) -> list[str]:
    return [sys.executable, "-m", "imagejobs", *args]


def wait_ready(base_url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(base_url + "/openapi.json", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("the server did not start")


# --- the database, directly ----------------------------------------------------------------


def sql(url: str, statement: str, *args: Any) -> list[tuple[Any, ...]]:
    if url.startswith("sqlite"):
        connection = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=60)
        try:
            rows = connection.execute(statement.replace("$", "?"), args).fetchall()
            connection.commit()
            return [tuple(r) for r in rows]
        finally:
            connection.close()

    async def run() -> list[tuple[Any, ...]]:
        connection = await asyncpg.connect(url)
        try:
            rows = await connection.fetch(statement, *args)
            if statement.lstrip().upper().startswith("UPDATE"):
                await connection.execute("SELECT pg_notify('imagejobs_engine', '')")
            return [tuple(r) for r in rows]
        finally:
            await connection.close()

    return asyncio.run(run())


def create_jobs(url: str, count: int) -> None:
    """CREATE_SERVER jobs through the service layer, queued for an hour."""
    from imagejobs.bootstrap import build_services
    from imagejobs.domain.servers import AccountInfo, ImageRef, NewServer
    from imagejobs.settings import load_settings
    from imagejobs.storage.database import database_for

    async def run() -> None:
        settings = load_settings({**ENGINE_ENV, "IMAGEJOBS_DATABASE_URL": url})
        database = database_for(url)
        await database.open()
        try:
            services = build_services(database, settings)

            def request(i: int) -> NewServer:
                return NewServer(
                    name=f"bench-{time.time_ns()}-{i}",
                    image_ref=ImageRef("image", "public"),
                    authorize_accounts=(AccountInfo("user", "USER"),),
                )

            for start in range(0, count, 100):
                batch = range(start, min(count, start + 100))
                await asyncio.gather(*(services.servers.create(PROJECT, request(i)) for i in batch))
        finally:
            await database.close()

    asyncio.run(run())


def make_due(url: str, start_ms: int, step_ms: float) -> None:
    """Make every queued task due: the n-th at start + n * step (0: all at once)."""
    sql(
        url,
        "UPDATE engine_tasks SET due_at = r.due FROM (SELECT sub_job_id,"
        " CAST($1 + (ROW_NUMBER() OVER (ORDER BY sub_job_id) - 1) * $2 AS BIGINT) AS due"
        " FROM engine_tasks) AS r WHERE engine_tasks.sub_job_id = r.sub_job_id",
        start_ms,
        step_ms,
    )


def wait_all_done(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sql(url, "SELECT COUNT(*) FROM engine_tasks")[0][0] == 0:
            return True
        time.sleep(0.1)
    return False


def finished_between(url: str, start_ms: int, end_ms: int) -> int:
    rows = sql(
        url,
        "SELECT COUNT(*) FROM sub_jobs WHERE status = 'SUCCESS' AND end_time >= $1"
        " AND end_time < $2",
        start_ms,
        end_ms,
    )
    return int(rows[0][0])


# --- measurements --------------------------------------------------------------------------


def throughput(url: str, count: int) -> dict[str, Any]:
    log(f"creating {count} queued CREATE_SERVER jobs")
    started = time.monotonic()
    create_jobs(url, count)
    created_s = time.monotonic() - started
    t0 = time.time_ns() // 1_000_000
    make_due(url, t0, 0)
    if not wait_all_done(url, 300):
        return {"error": "the engine did not finish in 300 s"}
    last = sql(url, "SELECT MAX(end_time) FROM sub_jobs")[0][0]
    failed = sql(url, "SELECT COUNT(*) FROM jobs WHERE status <> 'SUCCESS'")[0][0]
    seconds = (last - t0) / 1000
    return {
        "sub_jobs": count,
        "create_seconds": round(created_s, 2),
        "engine_seconds": round(seconds, 3),
        "sub_jobs_per_second": round(count / seconds, 1),
        "jobs_not_success": failed,
    }


def list_rate(base_url: str, duration: float) -> float:
    url = f"{base_url}/v1/{PROJECT}/image-server-jobs?job_type=CREATE_SERVER&limit=10"
    if shutil.which("wrk"):
        out = subprocess.run(
            [*_pinned(WRK_CPU), "wrk", "-t1", "-c32", f"-d{duration:g}s", url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        match = re.search(r"Requests/sec:\s+([\d.]+)", out)
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        if non2xx:
            raise RuntimeError(f"ListImageJobs failed {non2xx.group(1)} times")
        return float(match.group(1)) if match else 0.0
    return asyncio.run(_httpx_rate(url, duration))


async def _httpx_rate(url: str, duration: float) -> float:
    done = 0
    deadline = time.monotonic() + duration

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal done
        while time.monotonic() < deadline:
            response = await client.get(url)
            response.raise_for_status()
            done += 1

    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=32)) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(32)))
    return done / duration


def paced_window(url: str, base_url: str, duration: float) -> dict[str, float]:
    """ListImageJobs for ``duration`` seconds while tasks fall due at PACED_RATE per second."""
    window = duration + 3
    create_jobs(url, int(PACED_RATE * window))
    t0 = time.time_ns() // 1_000_000 + 500
    make_due(url, t0, 1000 / PACED_RATE)
    time.sleep(max(0.0, (t0 - time.time_ns() // 1_000_000) / 1000) + 1)
    measured_from = time.time_ns() // 1_000_000
    rate = list_rate(base_url, duration)
    measured_to = time.time_ns() // 1_000_000
    if not wait_all_done(url, 120):
        raise RuntimeError("the engine did not clear its backlog")
    engine = finished_between(url, measured_from, measured_to)
    return {"list": rate, "engine": engine / ((measured_to - measured_from) / 1000)}


def list_comparison(url: str, base_url: str, duration: float, rounds: int) -> dict[str, Any]:
    """Idle and loaded windows in alternating rounds (drift and other load hit both)."""
    idle: list[float] = []
    loaded: list[dict[str, float]] = []
    for number in range(rounds):
        idle.append(list_rate(base_url, duration))
        loaded.append(paced_window(url, base_url, duration))
        log(f"round {number + 1}: idle {idle[-1]:.0f}/s, loaded {loaded[-1]}")
    idle_median = statistics.median(idle)
    loaded_median = statistics.median(w["list"] for w in loaded)
    return {
        "list_idle_per_second": round(idle_median, 1),
        "list_loaded_per_second": round(loaded_median, 1),
        "list_ratio_to_idle": round(loaded_median / idle_median, 3) if idle_median else 0.0,
        "engine_sub_jobs_per_second_meanwhile": round(
            statistics.median(w["engine"] for w in loaded), 1
        ),
        "rounds": {"idle": idle, "loaded": loaded},
    }


# --- deployments ---------------------------------------------------------------------------


def run_deployment(name: str, url: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from imagejobs.storage.migrate import migrate

    asyncio.run(migrate(url))
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    serve = imagejobs(
        "serve", "--port", str(port), "--database-url", url, "--data-dir", str(workdir)
    )
    if name == "sqlite":
        commands = [serve]
    else:
        commands = [[*serve, "--no-runner"]]
        commands += [imagejobs("worker", "--database-url", url) for _ in range(2)]
    result: dict[str, Any] = {"deployment": name, "processes": len(commands)}
    with processes(commands, ENGINE_ENV, workdir):
        wait_ready(base_url)
        time.sleep(1)  # the workers' start-up
        result["throughput"] = throughput(url, args.sub_jobs)
        log(f"{name}: {result['throughput']}")
        result["list"] = list_comparison(url, base_url, args.duration, args.rounds)
        log(f"{name}: {result['list']}")
    result["targets_met"] = {
        "sub_jobs_per_second": result["throughput"].get("sub_jobs_per_second", 0)
        >= TARGETS["sub_jobs_per_second_min"],
        "list_ratio": result["list"]["list_ratio_to_idle"] >= TARGETS["list_ratio_min"],
    }
    return result


def postgres_database(admin_url: str, name: str = PG_DATABASE) -> str:
    async def recreate() -> None:
        connection = await asyncpg.connect(admin_url)
        try:
            await connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            await connection.execute(f"CREATE DATABASE {name}")
        finally:
            await connection.close()

    asyncio.run(recreate())
    return admin_url.rsplit("/", 1)[0] + "/" + name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sub-jobs", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "IMAGEJOBS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--pg-database", default=PG_DATABASE)
    args = parser.parse_args()
    report: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpus": os.cpu_count(),
        "wrk": bool(shutil.which("wrk")),
        "targets": TARGETS,
        "results": [],
    }
    for name in args.databases.split(","):
        with tempfile.TemporaryDirectory(prefix=f"bench-engine-{name}-") as tmp:
            workdir = Path(tmp)
            if name == "sqlite":
                url = f"sqlite:///{workdir / 'imagejobs.db'}"
            else:
                url = postgres_database(args.postgres_url, args.pg_database)
            log(f"{name}: {url}")
            report["results"].append(run_deployment(name, url, args, workdir))
    print(json.dumps(report, indent=2))
    save_results("engine", report)


if __name__ == "__main__":
    main()
