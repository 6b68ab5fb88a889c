"""Deep offsets of one tenant against another tenant's small lists, on one shared loop.

One database (SQLite, then PostgreSQL) with ``--jobs`` jobs in the demo project (the
"heavy" tenant) and a second account with a handful of jobs (the "victim"). One Granian
worker serves both (IAM on, X-Auth-Token, no embedded runner). For each of two servers
on the same database:

- ``inline``: IMAGEJOBS_DEEP_PAGE_OFFSET=2147483647, so no page is ever deep: every read
  runs as main's code runs it (SQLite inline on the event loop, PostgreSQL anywhere in
  the pool) and no account's deep pages take turns;
- ``deep``: the default (1,000): deep pages on a reader thread (SQLite) or within two
  pooled connections (PostgreSQL), one account's deep pages one at a time.

the victim sends small ListImageJobs (offset 0, limit 10) one after the other, first
alone, then while the heavy tenant keeps ``--heavy`` requests for page ``--offset`` in
flight. Reported: the victim's p50/p99/max latency in each phase, and the heavy tenant's
answered pages per second and its 429s. Then, on the ``deep`` server alone, the latency
of a single deep page (sequential, no other load), against ``inline``: what a thread hop
adds to the deep caller.

    .venv/bin/python bench/deep_offset.py [--jobs 1000000] [--offset 450000]
        [--duration 8] [--heavy 4] [--databases sqlite,postgresql] [--pg-database NAME]

Results are printed and written as JSON to bench/results/; exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

import list_jobs as lj
import report

SMALL = "job_type=CREATE_SERVER&limit=10&offset=0"
MODES = {"inline": "2147483647", "deep": "1000"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--offset", type=int, default=450_000)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--heavy", type=int, default=4, help="heavy requests kept in flight")
    parser.add_argument("--deep-samples", type=int, default=20)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--postgres-admin-url", default="postgresql://postgres@127.0.0.1/postgres")
    parser.add_argument("--pg-database", default="imagejobs_bench_deep_offset")
    return parser.parse_args()


def server(url: str, workdir: Path, mode: str, operator_token: str) -> lj.Server:
    port = lj.free_port()
    argv = [lj.tool("imagejobs"), "serve", "--host", lj.HOST, "--port", str(port), "--no-runner"]
    argv += ["--database-url", url, "--workers", "1", "--data-dir", str(workdir)]
    env = lj.clean_env(
        IMAGEJOBS_AUTH="iam",
        IMAGEJOBS_DEEP_PAGE_OFFSET=MODES[mode],
        IMAGEJOBS_OPERATOR_TOKEN=operator_token,
        IMAGEJOBS_ACCESS_LOG="false",
    )
    made = lj.Server(f"imagejobs-{mode}", argv, env, port, workdir / f"{mode}.log")
    made.argv = argv  # both cores: the deep reader thread is the point (no CPU pinning)
    return made


def token(port: int, account: str, user: str, password: str, region: str) -> str:
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": user, "password": password, "domain": {"name": account}}
                },
            },
            "scope": {"project": {"name": region}},
        }
    }
    url = f"http://{lj.HOST}:{port}/v3/auth/tokens?nocatalog=true"
    answer = httpx.post(url, json=body, timeout=30)
    answer.raise_for_status()
    return answer.headers["x-subject-token"]


def victim_tenant(port: int, operator_token: str) -> dict[str, Any]:
    headers = {"X-Imagejobs-Operator-Token": operator_token}
    base = f"http://{lj.HOST}:{port}/_imagejobs"
    tenant = httpx.post(f"{base}/tenants", json={}, headers=headers, timeout=30).json()
    first = 790_000_000_000_000_000 + secrets.randbelow(10**12) * 100
    jobs = [
        {
            "id": str(first + n),
            "job_type": "CREATE_SERVER",
            "status": "SUCCESS",
            "begin_time": 1_700_000_000_000 + n,
            "end_time": 1_700_000_060_000 + n,
        }
        for n in range(20)
    ]
    state = {"project_id": tenant["project_id"], "servers": [], "jobs": jobs}
    httpx.post(f"{base}/state", json=state, headers=headers, timeout=30).raise_for_status()
    return dict(tenant)


async def victim(url: str, headers: dict[str, str], stop: asyncio.Event) -> list[float]:
    latencies = []
    async with httpx.AsyncClient(headers=headers, timeout=60) as client:
        while not stop.is_set():
            started = time.perf_counter()
            answer = await client.get(url)
            latencies.append(time.perf_counter() - started)
            answer.raise_for_status()
    return latencies


async def heavy(
    url: str, headers: dict[str, str], stop: asyncio.Event, tally: dict[str, int]
) -> None:
    async with httpx.AsyncClient(headers=headers, timeout=60) as client:
        while not stop.is_set():
            answer = await client.get(url)
            key = str(answer.status_code)
            tally[key] = tally.get(key, 0) + 1
            if answer.status_code == 429:
                await asyncio.sleep(0.05)  # a client that backs off a little, not Retry-After's 1 s


def summary(latencies: list[float]) -> dict[str, Any]:
    ms = sorted(x * 1000 for x in latencies)
    return {
        "requests": len(ms),
        "p50_ms": round(statistics.median(ms), 2),
        "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 2),
        "max_ms": round(ms[-1], 2),
    }


async def phase(
    small_url: str,
    small_headers: dict[str, str],
    deep_url: str,
    deep_headers: dict[str, str],
    heavy_count: int,
    duration: float,
) -> dict[str, Any]:
    stop = asyncio.Event()
    tally: dict[str, int] = {}
    heavies = [
        asyncio.create_task(heavy(deep_url, deep_headers, stop, tally)) for _ in range(heavy_count)
    ]
    victim_task = asyncio.create_task(victim(small_url, small_headers, stop))
    await asyncio.sleep(duration)
    stop.set()
    latencies = await victim_task
    await asyncio.gather(*heavies)
    result = {"victim": summary(latencies)}
    if heavy_count:
        result["heavy_answers"] = tally
        result["heavy_pages_per_s"] = round(tally.get("200", 0) / duration, 1)
    return result


def deep_latency(url: str, headers: dict[str, str], samples: int) -> dict[str, Any]:
    times = []
    with httpx.Client(headers=headers, timeout=60) as client:
        client.get(url).raise_for_status()
        for _ in range(samples):
            started = time.perf_counter()
            client.get(url).raise_for_status()
            times.append(time.perf_counter() - started)
    return {"deep_page_p50_ms": round(statistics.median(times) * 1000, 2)}


def bench_database(kind: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    result: dict[str, Any] = {}
    with lj.database(kind, workdir, args.postgres_admin_url) as url:
        operator_token = secrets.token_urlsafe(24)
        # The first start bootstraps the demo account; then the seed fills its project.
        with server(url, workdir, "deep", operator_token):
            pass
        lj.log(f"{kind}: seeding {args.jobs} jobs…")
        result["seed_s"] = lj.seed(url, lj.PROJECT, args.jobs, workdir)
        demo = json.loads((workdir / lj.DEMO_CREDENTIALS).read_text())
        for mode in MODES:
            with server(url, workdir, mode, operator_token) as running:
                tenant = victim_tenant(running.port, operator_token)
                heavy_headers = {
                    "X-Auth-Token": token(
                        running.port,
                        demo["account"],
                        demo["user"],
                        demo["password"],
                        demo["region"],
                    )
                }
                victim_headers = {
                    "X-Auth-Token": token(
                        running.port,
                        tenant["account"],
                        tenant["user"],
                        tenant["password"],
                        tenant["region"],
                    )
                }
                base = f"http://{lj.HOST}:{running.port}/v1"
                small_url = f"{base}/{tenant['project_id']}/image-server-jobs?{SMALL}"
                deep_query = f"job_type=CREATE_SERVER&limit=10&offset={args.offset}"
                deep_url = f"{base}/{lj.PROJECT}/image-server-jobs?{deep_query}"
                measured = deep_latency(deep_url, heavy_headers, args.deep_samples)
                alone = asyncio.run(
                    phase(small_url, victim_headers, deep_url, heavy_headers, 0, args.duration)
                )
                loaded = asyncio.run(
                    phase(
                        small_url,
                        victim_headers,
                        deep_url,
                        heavy_headers,
                        args.heavy,
                        args.duration,
                    )
                )
                result[mode] = {**measured, "alone": alone, "under_deep_pages": loaded}
                lj.log(f"{kind} {mode}: {json.dumps(result[mode])}")
    return result


def main() -> int:
    args = parse_args()
    lj.PG_DATABASE = args.pg_database
    results: dict[str, Any] = {
        "args": vars(args),
        "environment": lj.environment(),
    }
    for kind in args.databases.split(","):
        with tempfile.TemporaryDirectory(prefix="ij-deep-offset-") as directory:
            results[kind] = bench_database(kind, args, Path(directory))
    rows = []
    for kind in args.databases.split(","):
        for mode in MODES:
            r = results[kind][mode]
            v0, v1 = r["alone"]["victim"], r["under_deep_pages"]["victim"]
            rows.append(
                [
                    kind,
                    mode,
                    r["deep_page_p50_ms"],
                    v0["p50_ms"],
                    v0["p99_ms"],
                    v1["p50_ms"],
                    v1["p99_ms"],
                    v1["max_ms"],
                    r["under_deep_pages"]["heavy_pages_per_s"],
                    r["under_deep_pages"]["heavy_answers"].get("429", 0),
                ]
            )
    print(
        report.markdown_table(
            [
                "database",
                "mode",
                "deep page p50 ms (alone)",
                "victim p50 alone",
                "victim p99 alone",
                "victim p50 under deep pages",
                "victim p99 under",
                "victim max under",
                "heavy pages/s",
                "heavy 429s",
            ],
            rows,
        )
    )
    report.save("deep_offset", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
