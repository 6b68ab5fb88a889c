"""10,000,000 jobs across 1,000 projects on PostgreSQL: the seed time, ListImageJobs p50
against the same project in a 10k-job database, the query plans, and bytes per job.

Two databases are built with ``imagejobs seed`` (timed, with its phases): a small one, the
demo project alone with ``--small-jobs`` jobs, and a large one, ``--jobs`` jobs spread
over ``--projects`` projects, the demo project first, so that the demo project holds the
same number of jobs in both and only the tables' size differs. One imagejobs server per
database (as shipped: IAM on, embedded runner, one Granian worker pinned to CPU 0) finishes
the seeded jobs still in progress; every count is then checked against the rows. wrk
(pinned to CPU 1) sends the demo account's X-Auth-Token with a mix of ListImageJobs
requests: the first page of each job type, each type with a status filter, and deep pages
(an offset near the end of the filtered set, within the project's size). The two servers
are driven in alternating rounds (small, large, large, small, ...): one connection at a
time (latency) and 16 at once (load), and each request of the mix alone. Also recorded:
``EXPLAIN (ANALYZE, BUFFERS)`` of the list, count and show queries on the large database,
and each relation's size (heap, indexes, TOAST) per job.

    .venv/bin/python bench/scale_pg.py [--jobs 10000000] [--projects 1000]
        [--small-jobs 10000] [--rounds 6] [--duration 6] [--lock /work/wt/bench.lock]
        [--keep] [--reuse]

``--lock PATH`` holds ``flock PATH`` while seeding and again while measuring (not in
between, nor while waiting for the engine). ``--reuse`` measures databases a previous
``--keep`` run left (no seeding). Results are printed and written as JSON to
bench/results/ (git-ignored); the exit status is 0 whether or not targets are met.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx

import list_jobs as lj
import report

PROJECT = lj.PROJECT
TYPES = ("CREATE_SERVER", "CREATE_SERVER_IMAGE", "DELETE_SERVER")
TARGETS = {"p50_growth_max": 1.3, "seed_10m_s_max": 600.0}
SIZES = ("small", "large")
# The relations whose size is a job's: its row, its sub-jobs', their tasks' and counters'.
JOB_RELATIONS = ("jobs", "sub_jobs", "engine_tasks", "job_counters")


def log(message: str) -> None:
    lj.log(message)


@contextlib.contextmanager
def bench_lock(path: Path | None, what: str) -> Iterator[float]:
    """Hold ``flock path`` (shared benchmark lock); yields the seconds waited for it."""
    if path is None:
        yield 0.0
        return
    start = time.monotonic()
    with path.open("a") as handle:
        log(f"waiting for {path} ({what})…")
        fcntl.flock(handle, fcntl.LOCK_EX)
        waited = time.monotonic() - start
        log(f"holding {path} ({what}) after {waited:.0f} s")
        try:
            yield waited
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- databases ---------------------------------------------------------------------------


def database_url(admin_url: str, name: str) -> str:
    return re.sub(r"/[^/?]*(\?.*)?$", f"/{name}", admin_url, count=1)


async def _connect(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(lj._dsn(url), command_timeout=3600)


async def _execute(url: str, *statements: str) -> None:
    connection = await _connect(url)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


async def _fetch(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    connection = await _connect(url)
    try:
        rows: list[asyncpg.Record] = await connection.fetch(query, *args)
        return rows
    finally:
        await connection.close()


def fetch(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    return asyncio.run(_fetch(url, query, *args))


def create_database(admin_url: str, name: str) -> str:
    asyncio.run(
        _execute(
            admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name}"
        )
    )
    url = database_url(admin_url, name)
    migrate = [lj.tool("imagejobs"), "migrate", "--database-url", url]
    subprocess.run(migrate, check=True, capture_output=True, env=lj.clean_env())
    return url


def drop_database(admin_url: str, name: str) -> None:
    asyncio.run(_execute(admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def seed(url: str, jobs: int, projects: int, workdir: Path) -> dict[str, Any]:
    """``imagejobs seed``, timed: wall and CPU seconds, and each phase it printed."""
    argv = [lj.tool("imagejobs"), "seed", "--database-url", url, "--data-dir", str(workdir)]
    argv += ["--project-id", PROJECT, "--jobs", str(jobs), "--projects", str(projects)]
    argv += ["--sub-jobs", "1", "--random-seed", "1"]
    cpu, busy, stolen = lj._children_cpu(), lj.busy_seconds(), lj.busy_seconds(steal=True)
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=lj.clean_env(), check=False)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"seeding failed:\n{done.stderr[-3000:]}")
    seed_cpu = lj._children_cpu() - cpu
    phases = {
        m.group(1): float(m.group(2))
        for m in re.finditer(r"^(.+?)… ([\d.]+) s$", done.stderr, re.MULTILINE)
    }
    written = re.findall(r"^(\d+) of \d+ jobs written \(([\d.]+) s\)$", done.stderr, re.MULTILINE)
    backends = sum(
        lj.cpu_seconds([pid]) for pid in lj.postgres_backends(url.rsplit("/", 1)[1])
    )  # the seed's backend is gone by now: its CPU is in "other" below
    others = lj.busy_seconds() - busy - seed_cpu - backends
    return {
        "jobs": jobs,
        "projects": projects,
        "wall_s": round(seconds, 1),
        "seed_process_cpu_s": round(seed_cpu, 1),
        "rows_written_s": float(written[-1][1]) if written else None,
        "phases_s": phases,
        "postgres_and_other_cpu_s": round(others, 1),
        "machine_busy_cpus": round((lj.busy_seconds() - busy) / seconds, 2),
        "steal_cpus": round((lj.busy_seconds(steal=True) - stolen) / seconds, 2),
    }


_EXACT = """
WITH actual AS (
  SELECT project_id, 'job' AS scope, job_type, status, COUNT(*) AS n FROM jobs GROUP BY 1, 3, 4
  UNION ALL
  SELECT project_id, 'sub_job', job_type, status, COUNT(*) FROM sub_jobs GROUP BY 1, 3, 4),
counted AS (
  SELECT project_id, scope, job_type, status, SUM(n) AS n FROM job_counters GROUP BY 1, 2, 3, 4)
SELECT COUNT(*) FILTER (WHERE COALESCE(a.n, 0) <> COALESCE(c.n, 0)), COUNT(*),
       COALESCE(SUM(a.n) FILTER (WHERE a.scope = 'job'), 0)
FROM actual AS a FULL JOIN counted AS c USING (project_id, scope, job_type, status)
"""


def counts_check(url: str) -> dict[str, Any]:
    start = time.perf_counter()
    [(wrong, keys, jobs)] = fetch(url, _EXACT)
    [(tasks,)] = fetch(url, "SELECT COUNT(*) FROM engine_tasks")
    [(live,)] = fetch(url, "SELECT COUNT(*) FROM jobs WHERE status IN ('WAITING', 'RUNNING')")
    return {
        "counter_keys": keys,
        "counter_keys_wrong": wrong,
        "exact": wrong == 0,
        "jobs": int(jobs),
        "engine_tasks": tasks,
        "live_jobs": live,
        "checked_in_s": round(time.perf_counter() - start, 1),
    }


def wait_for_engine(url: str, limit_s: float = 600) -> dict[str, Any]:
    """Until the engine has finished every seeded job that was still in progress."""
    start = time.monotonic()
    [(before,)] = fetch(url, "SELECT COUNT(*) FROM engine_tasks")
    left = before
    while left and time.monotonic() - start < limit_s:
        time.sleep(1)
        [(left,)] = fetch(url, "SELECT COUNT(*) FROM engine_tasks")
    return {"tasks_at_start": before, "tasks_left": left, "s": round(time.monotonic() - start, 1)}


_SIZES = """
SELECT c.relname, c.relkind::text, t.relname AS table_name,
       pg_relation_size(c.oid) AS main,
       pg_total_relation_size(c.oid) AS total
FROM pg_class AS c
LEFT JOIN pg_index AS i ON i.indexrelid = c.oid
JOIN pg_class AS t ON t.oid = COALESCE(i.indrelid, c.oid)
WHERE t.relname = ANY($1::text[]) AND c.relkind IN ('r', 'i')
ORDER BY t.relname, c.relkind DESC, c.relname
"""


def relation_sizes(url: str) -> dict[str, Any]:
    """Each relation's bytes, and per job: heap (with its TOAST, free space and visibility
    maps) and each index."""
    [(jobs,)] = fetch(url, "SELECT COUNT(*) FROM jobs")
    [(sub_jobs,)] = fetch(url, "SELECT COUNT(*) FROM sub_jobs")
    relations = []
    for name, kind, table, main, total in fetch(url, _SIZES, list(JOB_RELATIONS)):
        heap = kind == "r"
        relations.append(
            {
                "relation": name,
                "table": table,
                "kind": "table" if heap else "index",
                # A table's own bytes: pg_table_size (heap, TOAST, FSM, VM) without indexes.
                "bytes": main if not heap else None,
                "main_fork_bytes": main,
                "total_bytes": total,
            }
        )
    tables = {r["table"]: r for r in relations if r["kind"] == "table"}
    for row in fetch(
        url,
        "SELECT relname, pg_table_size(oid), pg_indexes_size(oid) FROM pg_class"
        " WHERE relname = ANY($1::text[])",
        list(JOB_RELATIONS),
    ):
        tables[row[0]]["bytes"] = row[1]
        tables[row[0]]["indexes_bytes"] = row[2]
    total = sum(r["total_bytes"] for r in relations if r["kind"] == "table")
    per_job = {r["relation"]: round(r["bytes"] / jobs, 1) for r in relations}
    return {
        "jobs": jobs,
        "sub_jobs": sub_jobs,
        "relations": relations,
        "bytes_per_job": per_job,
        "total_bytes": total,
        "total_bytes_per_job": round(total / jobs, 1),
        "tables_bytes_per_job": round(
            sum(r["bytes"] for r in relations if r["kind"] == "table") / jobs, 1
        ),
        "indexes_bytes_per_job": round(
            sum(r["bytes"] for r in relations if r["kind"] == "index") / jobs, 1
        ),
    }


# --- what halving would take: the same rows in a compact layout, measured ---------------

_COMPACT = [
    # Projects and enum strings as small integer keys; times stay epoch milliseconds (int8:
    # int4 seconds would lose the milliseconds the API shows). Columns ordered widest
    # first, so that no alignment padding is left between them.
    "CREATE TEMP TABLE compact_projects AS SELECT project_id, (ROW_NUMBER() OVER ())::int AS"
    " project_key FROM (SELECT DISTINCT project_id FROM jobs) AS p",
    "CREATE TEMP TABLE compact_jobs AS SELECT j.id, j.begin_time, j.end_time, p.project_key,"
    " j.sub_jobs_total, (CASE j.job_type WHEN 'CREATE_SERVER' THEN 1 WHEN 'CREATE_SERVER_IMAGE'"
    " THEN 2 ELSE 3 END)::int2 AS job_type, (CASE j.status WHEN 'WAITING' THEN 1 WHEN 'RUNNING'"
    " THEN 2 WHEN 'SUCCESS' THEN 3 ELSE 4 END)::int2 AS status"
    " FROM jobs AS j JOIN compact_projects AS p USING (project_id) WHERE j.id >= $1",
    "CREATE TEMP TABLE compact_sub_jobs AS SELECT s.id, s.job_id, s.begin_time, s.end_time,"
    " p.project_key, (CASE s.job_type WHEN 'CREATE_SERVER' THEN 1 WHEN 'CREATE_SERVER_IMAGE'"
    " THEN 2 ELSE 3 END)::int2 AS job_type, (CASE s.status WHEN 'WAITING' THEN 1 WHEN 'RUNNING'"
    " THEN 2 WHEN 'SUCCESS' THEN 3 ELSE 4 END)::int2 AS status, s.resource_id, s.resource_name,"
    " s.error_code, s.error_message"
    " FROM sub_jobs AS s JOIN compact_projects AS p USING (project_id) WHERE s.job_id >= $1",
    "ALTER TABLE compact_jobs ADD PRIMARY KEY (id)",
    "CREATE INDEX compact_jobs_pts ON compact_jobs (project_key, job_type, status, id)",
    "CREATE INDEX compact_jobs_pt ON compact_jobs (project_key, job_type, id)",
    "ALTER TABLE compact_sub_jobs ADD PRIMARY KEY (id)",
    "CREATE INDEX compact_sub_jobs_pts ON compact_sub_jobs (project_key, job_type, status, id)",
    "CREATE INDEX compact_sub_jobs_pt ON compact_sub_jobs (project_key, job_type, id)",
    "CREATE INDEX compact_sub_jobs_job ON compact_sub_jobs (job_id, id)",
    # The same rows as they are: the like-for-like sizes to compare with.
    "CREATE TEMP TABLE sample_jobs AS SELECT * FROM jobs WHERE id >= $1",
    "CREATE TEMP TABLE sample_sub_jobs AS SELECT * FROM sub_jobs WHERE job_id >= $1",
    "ALTER TABLE sample_jobs ADD PRIMARY KEY (id)",
    "CREATE INDEX sample_jobs_pts ON sample_jobs (project_id, job_type, status, id)",
    "CREATE INDEX sample_jobs_pt ON sample_jobs (project_id, job_type, id)",
    "ALTER TABLE sample_sub_jobs ADD PRIMARY KEY (id)",
    "CREATE INDEX sample_sub_jobs_pts ON sample_sub_jobs (project_id, job_type, status, id)",
    "CREATE INDEX sample_sub_jobs_pt ON sample_sub_jobs (project_id, job_type, id)",
    "CREATE INDEX sample_sub_jobs_job ON sample_sub_jobs (job_id, id)",
]


async def _compact_layout(url: str, sample: int) -> dict[str, Any]:
    connection = await _connect(url)
    try:
        await connection.execute("SET maintenance_work_mem = '256MB'")
        # The newest ``sample`` jobs (an id boundary: the sample is the table's tail).
        first = await connection.fetchval(
            "SELECT MIN(id) FROM (SELECT id FROM jobs ORDER BY id DESC LIMIT $1) AS s", sample
        )
        for statement in _COMPACT:
            if "$1" in statement:
                await connection.execute(statement, first)
            else:
                await connection.execute(statement)
        sizes = {}
        for name in ("compact", "sample"):
            rows = await connection.fetch(
                "SELECT relname, pg_table_size(oid), pg_indexes_size(oid) FROM pg_class"
                " WHERE relname = ANY($1::text[])",
                [f"{name}_jobs", f"{name}_sub_jobs"],
            )
            n = await connection.fetchval(f"SELECT COUNT(*) FROM {name}_jobs")
            sizes[name] = {
                "jobs": n,
                "tables_bytes_per_job": round(sum(r[1] for r in rows) / n, 1),
                "indexes_bytes_per_job": round(sum(r[2] for r in rows) / n, 1),
                "per_relation": {r[0]: {"table": r[1], "indexes": r[2]} for r in rows},
            }
            sizes[name]["bytes_per_job"] = round(
                sizes[name]["tables_bytes_per_job"] + sizes[name]["indexes_bytes_per_job"], 1
            )
        sizes["ratio"] = round(
            sizes["compact"]["bytes_per_job"] / sizes["sample"]["bytes_per_job"], 3
        )
        return sizes
    finally:
        await connection.close()


# --- plans -------------------------------------------------------------------------------


def plan_queries(counts: dict[str, int]) -> dict[str, tuple[str, list[Any]]]:
    """The statements imagejobs runs for the mix, as the store builds them."""
    from imagejobs.storage.job_store import (
        GET_JOB_WITH_SUB_JOBS,
        count_sub_jobs_statement,
        list_jobs_statement,
        list_sub_jobs_statement,
    )

    with_status = list_jobs_statement(True, "postgresql")
    without = list_jobs_statement(False, "postgresql")
    deep = max(0, counts["CREATE_SERVER/SUCCESS"] - 10)
    sub_count = count_sub_jobs_statement(3, False, False)
    sub_count_job = count_sub_jobs_statement(3, False, True)
    sub_list = list_sub_jobs_statement(3, True, False, "postgresql")
    args = {"project_id": PROJECT, "job_type": "CREATE_SERVER", "limit": 10}
    sub_args = {"project_id": PROJECT, "job_type0": TYPES[0], "job_type1": TYPES[1]}
    sub_args["job_type2"] = TYPES[2]
    return {
        "list first page, type + status": (
            with_status.postgres,
            list(with_status.args({**args, "status": "SUCCESS", "offset": 0})),
        ),
        "list first page, type": (without.postgres, list(without.args({**args, "offset": 0}))),
        f"list deep page (offset {deep}), type + status": (
            with_status.postgres,
            list(with_status.args({**args, "status": "SUCCESS", "offset": deep})),
        ),
        "count sub-jobs (counters)": (sub_count.postgres, list(sub_count.args(sub_args))),
        "count a job's sub-jobs": (
            sub_count_job.postgres,
            list(sub_count_job.args({**sub_args, "job_id": "<job>"})),
        ),
        "list sub-jobs, status": (
            sub_list.postgres,
            list(sub_list.args({**sub_args, "status": "SUCCESS", "limit": 10, "offset": 0})),
        ),
        "show job": (GET_JOB_WITH_SUB_JOBS.postgres, [PROJECT, "<job>"]),
    }


async def _explain(url: str, queries: dict[str, tuple[str, list[Any]]]) -> dict[str, Any]:
    connection = await _connect(url)
    try:
        job_id = await connection.fetchval(
            "SELECT id FROM jobs WHERE project_id = $1 ORDER BY id DESC OFFSET 100 LIMIT 1", PROJECT
        )
        result = {}
        for name, (sql, given) in queries.items():
            args = [job_id if a == "<job>" else a for a in given]
            for _ in range(3):  # warm: the plan in the cache and the pages in shared buffers
                await connection.fetch(sql, *args)
            lines = [
                r[0]
                for r in await connection.fetch(
                    f"EXPLAIN (ANALYZE, BUFFERS, SETTINGS) {sql}", *args
                )
            ]
            text = "\n".join(lines)
            result[name] = {
                "plan": lines,
                "execution_ms": _number(r"Execution Time: ([\d.]+) ms", text),
                "planning_ms": _number(r"Planning Time: ([\d.]+) ms", text),
                "heap_fetches": [int(v) for v in re.findall(r"Heap Fetches: (\d+)", text)],
                "seq_scans": len(re.findall(r"Seq Scan", text)),
                "shared_hit_read": _buffers(text),
            }
        return result
    finally:
        await connection.close()


def _number(pattern: str, text: str) -> float | None:
    match = re.search(pattern, text)
    return float(match.group(1)) if match else None


def _buffers(text: str) -> list[int]:
    hit = sum(int(v) for v in re.findall(r"shared hit=(\d+)", text.split("\n")[0:1][0]))
    read = sum(int(v) for v in re.findall(r"read=(\d+)", text.split("\n")[0:1][0]))
    return [hit, read]


# --- the request mix ---------------------------------------------------------------------


def project_counts(url: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    rows = fetch(
        url,
        "SELECT job_type, status, SUM(n) FROM job_counters WHERE project_id = $1"
        " AND scope = 'job' GROUP BY job_type, status",
        PROJECT,
    )
    for job_type, status, n in rows:
        counts[f"{job_type}/{status}"] = int(n)
        counts[job_type] = counts.get(job_type, 0) + int(n)
    return counts


def request_mix(small: dict[str, int], large: dict[str, int]) -> dict[str, str]:
    """Paths of the mix, the same for both databases (offsets within both projects)."""
    base = f"/v1/{PROJECT}/image-server-jobs?"
    mix = {}
    for job_type in TYPES:
        mix[f"first page {job_type}"] = f"{base}job_type={job_type}"
        mix[f"first page {job_type} SUCCESS"] = f"{base}job_type={job_type}&status=SUCCESS"
    for key in ("CREATE_SERVER", "CREATE_SERVER/SUCCESS", "DELETE_SERVER/FAILED"):
        size = min(small.get(key, 0), large.get(key, 0))
        offset = max(0, size - 20)  # the filtered set's last pages: the longest index walk
        job_type, _, status = key.partition("/")
        query = f"job_type={job_type}" + (f"&status={status}" if status else "")
        mix[f"deep page {key} offset {offset}"] = f"{base}{query}&offset={offset}"
    return mix


_LUA = """
local paths = {%s}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i %% #paths) + 1])
end
"""


def wrk_run(
    port: int, paths: list[str], token: str, duration: int, connections: int, script_dir: Path
) -> dict[str, Any]:
    script = script_dir / f"mix-{len(paths)}-{abs(hash(tuple(paths)))}.lua"
    script.write_text(_LUA % ", ".join(json.dumps(p) for p in paths))
    argv = [*lj.pinned(lj.WRK_CPU), "wrk", "-t1", f"-c{connections}", f"-d{duration}s"]
    argv += ["-H", f"X-Auth-Token: {token}", "-s", str(script), "--latency"]
    argv += [f"http://{lj.HOST}:{port}"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=duration + 60)
    return lj.parse_wrk(out.stdout)


def measured(server: lj.Server, db: str, *wrk_args: Any) -> dict[str, Any]:
    """``wrk_run(*wrk_args)`` with the CPU the server, its database's backends and others
    used meanwhile."""

    def backends() -> dict[int, float]:
        return {pid: lj.cpu_seconds([pid]) for pid in lj.postgres_backends(db)}

    start = time.monotonic()
    busy, mine, before = lj.busy_seconds(), server.cpu_seconds(), backends()
    stolen, load = lj.busy_seconds(steal=True), lj._children_cpu()
    result: dict[str, Any] = wrk_run(*wrk_args)
    elapsed = time.monotonic() - start
    mine = server.cpu_seconds() - mine
    db_used = sum(cpu - before.get(pid, 0.0) for pid, cpu in backends().items())
    load = lj._children_cpu() - load
    others = lj.busy_seconds() - busy - mine - db_used - load
    result["server_cpu_us_per_request"] = round(mine / result["requests"] * 1e6, 1)
    result["postgres_cpu_us_per_request"] = round(db_used / result["requests"] * 1e6, 1)
    result["other_cpu_busy"] = round(max(others, 0.0) / elapsed, 2)
    result["steal_cpu"] = round((lj.busy_seconds(steal=True) - stolen) / elapsed, 2)
    return result


def median_of(rounds: list[dict[str, Any]], key: str) -> float:
    return round(statistics.median(r[key] for r in rounds), 3)


def disk_free() -> str:
    return subprocess.run(["df", "-h", "/"], capture_output=True, text=True, check=False).stdout


# --- main --------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000_000, help="jobs in the large database")
    parser.add_argument("--projects", type=int, default=1000, help="projects they are spread over")
    parser.add_argument("--small-jobs", type=int, default=10_000, help="jobs in the small one")
    parser.add_argument("--rounds", type=int, default=6, help="alternating rounds")
    parser.add_argument("--duration", type=int, default=6, help="wrk seconds per mix run")
    parser.add_argument("--each", type=int, default=2, help="wrk seconds per single request")
    parser.add_argument("--load-connections", type=int, default=16)
    parser.add_argument("--compact-sample", type=int, default=1_000_000)
    parser.add_argument("--lock", type=Path, default=None, help="flock this file while timing")
    parser.add_argument("--prefix", default="scale_bench", help="database name prefix")
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    parser.add_argument("--reuse", action="store_true", help="measure kept databases")
    parser.add_argument(
        "--postgres-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="an existing database to connect to, to create and drop the benchmark's",
    )
    args = parser.parse_args()
    if args.jobs // args.projects != args.small_jobs:
        log(
            f"note: the large database's demo project gets {args.jobs // args.projects} jobs,"
            f" the small one {args.small_jobs}"
        )
    return args


def main() -> int:
    args = parse_args()
    started = time.perf_counter()
    names = {"small": f"{args.prefix}_small", "large": f"{args.prefix}_large"}
    urls = {size: database_url(args.postgres_url, names[size]) for size in SIZES}
    results: dict[str, Any] = {
        "benchmark": "scale_pg",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "environment": lj.environment(),
        "source": lj.working_tree_source(),
        "targets": TARGETS,
        "database": lj.database_version("postgresql", args.postgres_url),
        "df_before": disk_free(),
    }
    with tempfile.TemporaryDirectory(prefix="scale-pg-") as tmp:
        workdir = Path(tmp)
        try:
            if not args.reuse:
                with bench_lock(args.lock, "seeding") as waited:
                    results["seed"] = {"lock_wait_s": round(waited, 1)}
                    for size, jobs, projects in (
                        ("small", args.small_jobs, 1),
                        ("large", args.jobs, args.projects),
                    ):
                        create_database(args.postgres_url, names[size])
                        log(f"seeding {jobs} jobs over {projects} project(s) into {names[size]}…")
                        results["seed"][size] = seed(urls[size], jobs, projects, workdir)
                        log(f"seeded {size}: {results['seed'][size]}")
            results["sizes"] = {size: relation_sizes(urls[size]) for size in SIZES}
            for size in SIZES:
                log(f"{size}: {results['sizes'][size]['total_bytes_per_job']} bytes per job")
            measure(args, urls, names, workdir, results)
            if args.compact_sample:
                log(f"compact layout of the newest {args.compact_sample} jobs…")
                results["compact_layout"] = asyncio.run(
                    _compact_layout(urls["large"], args.compact_sample)
                )
                log(f"compact layout: {results['compact_layout']['ratio']} of the bytes")
        finally:
            results["df_after"] = disk_free()
            if not args.keep:
                for size in SIZES:
                    drop_database(args.postgres_url, names[size])
    results["checks"] = summarize(results)
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    print_report(results)
    print(f"\nTotal {results['elapsed_s']} s.")
    report.save("scale_pg", results)
    return 0


def measure(
    args: argparse.Namespace,
    urls: dict[str, str],
    names: dict[str, str],
    workdir: Path,
    results: dict[str, Any],
) -> None:
    with contextlib.ExitStack() as stack:
        servers: dict[str, lj.Server] = {}
        tokens: dict[str, str] = {}
        for size in SIZES:
            data = workdir / size
            data.mkdir(exist_ok=True)
            server = stack.enter_context(lj.imagejobs_server(urls[size], data, 1, "iam"))
            servers[size] = server
            tokens[size] = lj.demo_token(server, data)
        results["engine"] = {size: wait_for_engine(urls[size]) for size in SIZES}
        log(f"engine: {results['engine']}")
        results["counts"] = {size: counts_check(urls[size]) for size in SIZES}
        log(f"counts: {results['counts']}")
        counts = {size: project_counts(urls[size]) for size in SIZES}
        results["project_counts"] = counts
        mix = request_mix(counts["small"], counts["large"])
        results["mix"] = mix
        # Every request of the mix answers 200 on both, with the same count.
        for name, path in mix.items():
            answers = {}
            for size in SIZES:
                response = httpx.get(
                    f"http://{lj.HOST}:{servers[size].port}{path}",
                    headers={"X-Auth-Token": tokens[size]},
                    timeout=60,
                )
                response.raise_for_status()
                answers[size] = (response.json()["count"], len(response.json()["items"]))
            log(f"{name}: (count, items) {answers}")
        with bench_lock(args.lock, "measuring") as waited:
            results["measure_lock_wait_s"] = round(waited, 1)
            results["explain"] = {
                size: asyncio.run(_explain(urls[size], plan_queries(counts[size])))
                for size in SIZES
            }
            for name, e in results["explain"]["large"].items():
                log(
                    f"explain large {name}: {e['execution_ms']} ms (planning"
                    f" {e['planning_ms']} ms), heap fetches {e['heap_fetches']},"
                    f" seq scans {e['seq_scans']}"
                )
            paths = list(mix.values())
            rounds: dict[str, dict[str, list[dict[str, Any]]]] = {
                size: {"latency": [], "load": [], **{name: [] for name in mix}} for size in SIZES
            }
            for size in SIZES:  # warm-up: plans cached, pages in memory
                wrk_run(servers[size].port, paths, tokens[size], 3, 4, workdir)
            for number in range(args.rounds):
                order = SIZES if number % 2 == 0 else SIZES[::-1]
                for size in order:
                    server, db, token = servers[size], names[size], tokens[size]
                    port = server.port
                    latency = measured(server, db, port, paths, token, args.duration, 1, workdir)
                    load = measured(
                        server,
                        db,
                        port,
                        paths,
                        token,
                        args.duration,
                        args.load_connections,
                        workdir,
                    )
                    rounds[size]["latency"].append(latency)
                    rounds[size]["load"].append(load)
                    for name, path in mix.items():
                        rounds[size][name].append(
                            wrk_run(port, [path], token, args.each, 1, workdir)
                        )
                    log(
                        f"round {number + 1} {size}: one at a time p50 {latency['p50_ms']} ms"
                        f" ({latency['requests_per_s']:.0f} req/s); {args.load_connections}"
                        f" connections p50 {load['p50_ms']} ms ({load['requests_per_s']:.0f}"
                        f" req/s, server {load['server_cpu_us_per_request']} µs/req, postgres"
                        f" {load['postgres_cpu_us_per_request']} µs/req); other load"
                        f" {latency['other_cpu_busy']}/{load['other_cpu_busy']} CPUs"
                    )
            results["rounds"] = rounds
        results["memory"] = {size: servers[size].memory() for size in SIZES}
        results["counts_after"] = {size: counts_check(urls[size]) for size in SIZES}


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    rounds = results.get("rounds")
    if rounds:
        for mode in ("latency", "load"):
            p50 = {size: median_of(rounds[size][mode], "p50_ms") for size in SIZES}
            checks[f"{mode}_p50_ms"] = p50
            checks[f"{mode}_p50_growth"] = round(p50["large"] / p50["small"], 3)
            checks[f"{mode}_requests_per_s"] = {
                size: median_of(rounds[size][mode], "requests_per_s") for size in SIZES
            }
            for key in ("server_cpu_us_per_request", "postgres_cpu_us_per_request"):
                checks[f"{mode}_{key}"] = {
                    size: median_of(rounds[size][mode], key) for size in SIZES
                }
            checks[f"{mode}_other_cpu_busy_max"] = max(
                r["other_cpu_busy"] for size in SIZES for r in rounds[size][mode]
            )
        checks["p50_growth_met"] = checks["latency_p50_growth"] <= TARGETS["p50_growth_max"]
        checks["load_p50_growth_met"] = checks["load_p50_growth"] <= TARGETS["p50_growth_max"]
        checks["each"] = {
            name: {
                "small_p50_ms": median_of(rounds["small"][name], "p50_ms"),
                "large_p50_ms": median_of(rounds["large"][name], "p50_ms"),
            }
            for name in results["mix"]
        }
        for each in checks["each"].values():
            each["growth"] = round(each["large_p50_ms"] / each["small_p50_ms"], 3)
        checks["failed_requests"] = sum(
            r["non_2xx"] for size in SIZES for runs in rounds[size].values() for r in runs
        )
    if "seed" in results:
        large = results["seed"]["large"]
        checks["seed_large_s"] = large["wall_s"]
        checks["seed_met"] = large["wall_s"] <= TARGETS["seed_10m_s_max"]
    if "counts_after" in results:
        checks["counts_exact"] = all(
            results[key][size]["exact"] for key in ("counts", "counts_after") for size in SIZES
        )
    if "sizes" in results:
        checks["bytes_per_job"] = {
            size: results["sizes"][size]["total_bytes_per_job"] for size in SIZES
        }
    return checks


def print_report(results: dict[str, Any]) -> None:
    c = results["checks"]
    out = print
    out("")
    if "seed" in results:
        for size in SIZES:
            s = results["seed"][size]
            out(
                f"seed {size}: {s['jobs']} jobs over {s['projects']} project(s) in {s['wall_s']} s"
                f" (rows written after {s['rows_written_s']} s; seed process CPU"
                f" {s['seed_process_cpu_s']} s; machine busy {s['machine_busy_cpus']} CPUs)"
            )
            for phase, seconds in s["phases_s"].items():
                out(f"    {phase}: {seconds} s")
        target = TARGETS["seed_10m_s_max"]
        out(
            f"seed large: {c['seed_large_s']} s (target <= {target:g} s)"
            f" {lj.verdict(c['seed_met'])}"
        )
    if "sizes" in results:
        for size in SIZES:
            sizes = results["sizes"][size]
            out(
                f"\n{size}: {sizes['jobs']} jobs, {sizes['sub_jobs']} sub-jobs:"
                f" {sizes['total_bytes_per_job']} bytes per job (tables"
                f" {sizes['tables_bytes_per_job']}, indexes {sizes['indexes_bytes_per_job']})"
            )
            for relation, per_job in sizes["bytes_per_job"].items():
                out(f"    {relation:<40}{per_job:>10.1f}")
    if "compact_layout" in results:
        compact = results["compact_layout"]
        out(
            f"\ncompact layout (newest {compact['sample']['jobs']} jobs): "
            f"{compact['compact']['bytes_per_job']} vs {compact['sample']['bytes_per_job']}"
            f" bytes per job: {compact['ratio']}"
        )
    if "latency_p50_ms" in c:
        out("")
        for mode in ("latency", "load"):
            p50 = c[f"{mode}_p50_ms"]
            rps = c[f"{mode}_requests_per_s"]
            label = "one at a time" if mode == "latency" else "under load"
            out(
                f"{label}: p50 {p50['small']} ms (small) vs {p50['large']} ms (large):"
                f" {c[f'{mode}_p50_growth']} ({rps['small']:.0f} vs {rps['large']:.0f} req/s;"
                f" server µs/req {c[f'{mode}_server_cpu_us_per_request']},"
                f" postgres µs/req {c[f'{mode}_postgres_cpu_us_per_request']};"
                f" other load up to {c[f'{mode}_other_cpu_busy_max']} CPUs)"
            )
        for name, each in c["each"].items():
            out(
                f"    {name:<52}{each['small_p50_ms']:>8.2f}{each['large_p50_ms']:>8.2f}"
                f"{each['growth']:>7.2f}"
            )
        out(
            f"p50 large / p50 small: {c['latency_p50_growth']} one at a time,"
            f" {c['load_p50_growth']} under load (target <= {TARGETS['p50_growth_max']})"
            f" {lj.verdict(c['p50_growth_met'])}"
        )
    if "counts_exact" in c:
        out(f"every count exact (before and after measuring): {c['counts_exact']}")


if __name__ == "__main__":
    sys.exit(main())
