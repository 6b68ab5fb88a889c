"""The engine against pgqueuer 1.6 running empty jobs with its defaults (issue 12, item 3):
side by side on one PostgreSQL, two worker processes each, alternating rounds.

- **imagejobs**: ``--jobs`` CREATE_SERVER jobs (one sub-job each) are created through the
  service layer (the API's transaction, without HTTP) with a one-hour queue delay, then
  two ``imagejobs worker`` processes (32 slots each, the `simulated` driver completing
  at once) run them with every guarantee on: fair claims across projects, leases,
  fencing tokens, one result per sub-job written with its job, server and counters.
- **pgqueuer**: ``--jobs`` jobs of an entrypoint that does nothing are enqueued with a
  one-hour ``execute_after``, then two workers (bench/pgqueuer_worker.py,
  ``QueueManager.run()`` with its defaults) run them.

Each side gets a fresh database per round. Once its workers are up, every job is made
runnable at one instant by one UPDATE (imagejobs: ``due_at``, plus its NOTIFY;
pgqueuer: ``execute_after``, whose trigger notifies), and the rate is jobs / (the last
completion - the release's commit), both from the database's own clock (imagejobs:
the last sub-job's ``end_time``; pgqueuer: the last ``successful`` row of its log).
Rounds alternate which side goes first; medians and the ratio of medians are reported,
with each side's CPU seconds split between its worker processes and their PostgreSQL
backends (from /proc).

pgqueuer lives only in the benchmark's environment, ``bench/.venv-pgqueuer``, which this
script creates when it is missing (or by hand)::

    python3 -m venv bench/.venv-pgqueuer
    bench/.venv-pgqueuer/bin/pip install 'pgqueuer==1.6.0' asyncpg

    flock /work/wt/bench.lock .venv/bin/python bench/engine_vs_pgqueuer.py [--jobs 10000]
        [--rounds 3] [--postgres-url postgresql://postgres@127.0.0.1:5432/postgres]
        [--database-prefix imagejobs_bench_vs]

Results are printed and written as JSON to bench/results/ (git-ignored).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

BENCH = Path(__file__).resolve().parent
PGQ_VENV = BENCH / ".venv-pgqueuer"
PGQ_PYTHON = PGQ_VENV / "bin" / "python"
PGQ_REQUIREMENTS = ["pgqueuer==1.6.0", "asyncpg"]
WORKERS = 2
PGQ_NOTIFY = (
    "SELECT pg_notify('ch_pgqueuer', json_build_object('channel', 'ch_pgqueuer',"
    " 'operation', 'update', 'sent_at', NOW(), 'table', 'pgqueuer',"
    " 'type', 'table_changed_event')::text)"
)
TARGET_RATIO = 0.75
TICKS = os.sysconf("SC_CLK_TCK")

sys.path.insert(0, str(BENCH))
from engine import ENGINE_ENV, PROJECT, processes  # noqa: E402
from report import save as save_results  # noqa: E402


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def ensure_pgqueuer() -> str:
    if not PGQ_PYTHON.exists():
        log(f"creating {PGQ_VENV} with {' '.join(PGQ_REQUIREMENTS)}")
        subprocess.run([sys.executable, "-m", "venv", str(PGQ_VENV)], check=True)
        subprocess.run(
            [str(PGQ_PYTHON), "-m", "pip", "install", "--quiet", *PGQ_REQUIREMENTS], check=True
        )
    return subprocess.run(
        [str(PGQ_PYTHON), "-c", "import pgqueuer; print(pgqueuer.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


# --- the database, directly ------------------------------------------------------------


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def _fetch(url: str, statement: str, *args: Any) -> list[Any]:
    connection = await asyncpg.connect(url)
    try:
        return list(await connection.fetch(statement, *args))
    finally:
        await connection.close()


def fetch(url: str, statement: str, *args: Any) -> list[Any]:
    rows: list[Any] = run(_fetch(url, statement, *args))
    return rows


def fresh_database(admin_url: str, name: str) -> str:
    async def recreate() -> None:
        connection = await asyncpg.connect(admin_url)
        try:
            await connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            await connection.execute(f"CREATE DATABASE {name}")
        finally:
            await connection.close()

    run(recreate())
    return admin_url.rsplit("/", 1)[0] + "/" + name


def drop_database(admin_url: str, name: str) -> None:
    fetch(admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def release(url: str, update: str, notify: str | None) -> datetime:
    """Make every job runnable (``update`` with $1 = the database's clock now) and answer
    the commit's time, from the database's clock."""

    async def go() -> datetime:
        connection = await asyncpg.connect(url)
        try:
            now: datetime = await connection.fetchval("SELECT clock_timestamp()")
            await connection.execute(update, now)  # autocommit: committed on return
            committed: datetime = await connection.fetchval("SELECT clock_timestamp()")
            if notify:
                await connection.execute(notify)
            return committed
        finally:
            await connection.close()

    result: datetime = run(go())
    return result


def wait_until(url: str, query: str, expected: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fetch(url, query)[0][0] == expected:
            return
        time.sleep(0.05)
    raise RuntimeError(f"not done after {timeout} s: {query}")


# --- CPU time, from /proc ----------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def backend_pids(url: str, database: str) -> list[int]:
    rows = fetch(
        url,
        "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        database,
    )
    return [row[0] for row in rows]


def settled_backends(url: str, database: str) -> list[int]:
    """The workers' backends, once the workers have started up (connected, listening,
    idle): no new backend for two seconds in a row, and at least one per worker."""
    seen: list[int] = []
    stable_since = time.monotonic()
    deadline = stable_since + 60
    while time.monotonic() < deadline:
        now = sorted(backend_pids(url, database))
        if now != seen:
            seen, stable_since = now, time.monotonic()
        elif len(seen) >= WORKERS and time.monotonic() - stable_since >= 2:
            return seen
        time.sleep(0.2)
    raise RuntimeError("the workers did not start")


def measure(
    url: str,
    database: str,
    commands: list[list[str]],
    env: dict[str, str],
    release_args: tuple[str, str | None],
    done_query: str,
    last_query: str,
    jobs: int,
) -> dict[str, Any]:
    """Start the workers, release the jobs, wait for the last; rate and CPU split."""
    with (
        tempfile.TemporaryDirectory(prefix="bench-vs-") as tmp,
        processes(commands, env, Path(tmp)) as pids,
    ):
        backends = settled_backends(url, database)
        before = {pid: cpu_seconds(pid) for pid in [*pids, *backends]}
        t0 = release(url, *release_args)
        wait_until(url, done_query, jobs, 300)
        after = {pid: cpu_seconds(pid) for pid in [*pids, *backends]}
        last: datetime = fetch(url, last_query)[0][0]
        logs = {p.name: p.read_text()[-2000:] for p in Path(tmp).iterdir()}
    seconds = (last - t0).total_seconds()
    errors = [text for text in logs.values() if "Traceback" in text]
    return {
        "jobs": jobs,
        "seconds": round(seconds, 3),
        "jobs_per_second": round(jobs / seconds, 1),
        "cpu_workers_s": round(sum(after[p] - before[p] for p in pids), 2),
        "cpu_backends_s": round(sum(after[p] - before[p] for p in backends), 2),
        "worker_errors": errors[:1],
    }


def create_jobs(url: str, count: int) -> None:
    """CREATE_SERVER jobs through the service layer (the API's transaction, without
    HTTP), queued for an hour; a few at a time, so a busy machine does not time out the
    pool."""
    from imagejobs.bootstrap import build_services
    from imagejobs.domain.servers import AccountInfo, ImageRef, NewServer
    from imagejobs.settings import load_settings
    from imagejobs.storage.database import database_for

    async def go() -> None:
        settings = load_settings({**ENGINE_ENV, "IMAGEJOBS_DATABASE_URL": url})
        database = database_for(url, statement_timeout=60)
        await database.open()
        try:
            services = build_services(database, settings)

            async def create(i: int) -> None:
                server = NewServer(
                    name=f"bench-{i}",
                    image_ref=ImageRef("image", "public"),
                    authorize_accounts=(AccountInfo("user", "USER"),),
                )
                await services.servers.create(PROJECT, server)

            for start in range(0, count, 8):
                await asyncio.gather(*(create(i) for i in range(start, min(count, start + 8))))
        finally:
            await database.close()

    run(go())


def imagejobs_round(admin_url: str, prefix: str, jobs: int) -> dict[str, Any]:
    from imagejobs.storage.migrate import migrate

    name = f"{prefix}_imagejobs"
    url = fresh_database(admin_url, name)
    run(migrate(url))
    create_jobs(url, jobs)
    command = [sys.executable, "-m", "imagejobs", "worker", "--database-url", url]
    result = measure(
        url,
        name,
        [command] * WORKERS,
        ENGINE_ENV,
        (
            "UPDATE engine_tasks SET due_at ="
            " CAST(EXTRACT(EPOCH FROM $1::timestamptz) * 1000 AS BIGINT)",
            "NOTIFY imagejobs_engine",
        ),
        "SELECT COUNT(*) FROM sub_jobs WHERE status = 'SUCCESS'",
        "SELECT to_timestamp(MAX(end_time) / 1000.0) FROM sub_jobs",
        jobs,
    )
    failed = fetch(url, "SELECT COUNT(*) FROM jobs WHERE status <> 'SUCCESS'")[0][0]
    result["jobs_not_success"] = failed
    drop_database(admin_url, name)
    return result


def pgqueuer_round(admin_url: str, prefix: str, jobs: int) -> dict[str, Any]:
    name = f"{prefix}_pgqueuer"
    url = fresh_database(admin_url, name)
    subprocess.run(
        [
            str(PGQ_PYTHON),
            "-c",
            "import asyncio, sys, asyncpg\n"
            "from datetime import timedelta\n"
            "from pgqueuer import AsyncpgDriver, Queries\n"
            "async def main(dsn, n):\n"
            "    q = Queries(AsyncpgDriver(await asyncpg.connect(dsn)))\n"
            "    await q.install()\n"
            "    for start in range(0, n, 1000):\n"
            "        k = min(n, start + 1000) - start\n"
            "        await q.enqueue(['noop'] * k, [None] * k, [0] * k,"
            " [timedelta(hours=1)] * k)\n"
            "asyncio.run(main(sys.argv[1], int(sys.argv[2])))\n",
            url,
            str(jobs),
        ],
        check=True,
    )
    command = [str(PGQ_PYTHON), str(BENCH / "pgqueuer_worker.py"), url]
    result = measure(
        url,
        name,
        [command] * WORKERS,
        {},
        # pgqueuer's trigger is statement-level: an UPDATE does not notify (OLD and NEW
        # are NULL there), so the release sends the event its INSERTs would.
        ("UPDATE pgqueuer SET execute_after = $1", PGQ_NOTIFY),
        "SELECT COUNT(*) FROM pgqueuer_log WHERE status = 'successful'",
        "SELECT MAX(created) FROM pgqueuer_log WHERE status = 'successful'",
        jobs,
    )
    drop_database(admin_url, name)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sides", default="imagejobs,pgqueuer")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "IMAGEJOBS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--database-prefix", default="imagejobs_bench_vs")
    args = parser.parse_args()
    version = ensure_pgqueuer()
    sides = {"imagejobs": imagejobs_round, "pgqueuer": pgqueuer_round}
    order = [s for s in args.sides.split(",") if s in sides]
    rounds: dict[str, list[dict[str, Any]]] = {side: [] for side in order}
    for number in range(args.rounds):
        for side in order if number % 2 == 0 else order[::-1]:
            result = sides[side](args.postgres_url, args.database_prefix, args.jobs)
            rounds[side].append(result)
            log(f"round {number + 1} {side}: {result}")
    medians = {
        side: statistics.median(r["jobs_per_second"] for r in results)
        for side, results in rounds.items()
    }
    report: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpus": os.cpu_count(),
        "pgqueuer": version,
        "workers_per_side": WORKERS,
        "jobs": args.jobs,
        "median_jobs_per_second": medians,
        "rounds": rounds,
    }
    if "imagejobs" in medians and "pgqueuer" in medians:
        ratio = medians["imagejobs"] / medians["pgqueuer"]
        report["ratio"] = round(ratio, 3)
        # Each round's two runs back to back met about the same load: their ratios.
        paired = [
            i["jobs_per_second"] / p["jobs_per_second"]
            for i, p in zip(rounds["imagejobs"], rounds["pgqueuer"], strict=True)
        ]
        report["round_ratios"] = [round(r, 3) for r in paired]
        report["median_round_ratio"] = round(statistics.median(paired), 3)
        report["target_ratio"] = TARGET_RATIO
        report["target_met"] = ratio >= TARGET_RATIO
    print(json.dumps({k: v for k, v in report.items() if k != "rounds"}, indent=2))
    save_results("engine-vs-pgqueuer", report)


if __name__ == "__main__":
    main()
