"""/metrics asked over and over (it needs no credentials) against a tenant's small lists.

Each scrape reports the job counts summed over the whole counters table (a row per
project, type, status and stripe). One SQLite database seeded with ``--jobs`` jobs over
``--projects`` projects; one Granian worker (IAM on, no embedded runner, not pinned); a
tenant with 20 jobs sends ListImageJobs (offset 0, limit 10) one after the other, alone
for ``--duration`` seconds, then while ``--scrapers`` clients ask /metrics back to back.
Run it once as is and once with ``--git-ref main`` to compare the code before.

    .venv/bin/python bench/metrics_flood.py [--jobs 400000] [--projects 20000]
        [--duration 8] [--scrapers 2] [--git-ref REF]

Results are printed and written as JSON to bench/results/; exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

import list_jobs as lj
import report
from deep_offset import SMALL, summary, token, victim, victim_tenant


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=400_000)
    parser.add_argument("--projects", type=int, default=20_000)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--scrapers", type=int, default=2)
    parser.add_argument("--git-ref", help="run src/ of this commit")
    return parser.parse_args()


def server(url: str, workdir: Path, operator_token: str) -> lj.Server:
    port = lj.free_port()
    argv = [lj.tool("imagejobs"), "serve", "--host", lj.HOST, "--port", str(port), "--no-runner"]
    argv += ["--database-url", url, "--workers", "1", "--data-dir", str(workdir)]
    env = lj.clean_env(
        IMAGEJOBS_AUTH="iam", IMAGEJOBS_OPERATOR_TOKEN=operator_token, IMAGEJOBS_ACCESS_LOG="false"
    )
    made = lj.Server("imagejobs", argv, env, port, workdir / "imagejobs.log")
    made.argv = argv  # not pinned: as deployed
    return made


async def scraper(url: str, stop: asyncio.Event, tally: dict[str, int]) -> None:
    async with httpx.AsyncClient(timeout=60) as client:
        while not stop.is_set():
            answer = await client.get(url)
            tally[str(answer.status_code)] = tally.get(str(answer.status_code), 0) + 1


async def phase(
    small_url: str, headers: dict[str, str], metrics_url: str, scrapers: int, duration: float
) -> dict[str, Any]:
    stop = asyncio.Event()
    tally: dict[str, int] = {}
    tasks = [asyncio.create_task(scraper(metrics_url, stop, tally)) for _ in range(scrapers)]
    measured = asyncio.create_task(victim(small_url, headers, stop))
    await asyncio.sleep(duration)
    stop.set()
    latencies = await measured
    await asyncio.gather(*tasks)
    result: dict[str, Any] = {"victim": summary(latencies)}
    if scrapers:
        result["scrapes"] = tally
        result["scrapes_per_s"] = round(sum(tally.values()) / duration, 1)
    return result


def main() -> int:
    args = parse_args()
    results: dict[str, Any] = {"args": vars(args), "environment": lj.environment()}
    with tempfile.TemporaryDirectory(prefix="ij-metrics-flood-") as directory:
        workdir = Path(directory)
        if args.git_ref:
            results["source"] = lj.export_source(args.git_ref, workdir / "source")
        else:
            results["source"] = lj.working_tree_source()
        url = f"sqlite:///{workdir / 'bench.db'}"
        operator_token = secrets.token_urlsafe(24)
        with server(url, workdir, operator_token):
            pass  # the first start migrates and makes the demo account
        lj.log(f"seeding {args.jobs} jobs over {args.projects} projects…")
        argv = [lj.tool("imagejobs"), "seed", "--database-url", url, "--data-dir", directory]
        argv += ["--project-id", lj.PROJECT, "--jobs", str(args.jobs)]
        argv += ["--projects", str(args.projects), "--random-seed", "1"]
        lj.subprocess.run(argv, check=True, capture_output=True, env=lj.clean_env())
        with server(url, workdir, operator_token) as running:
            tenant = victim_tenant(running.port, operator_token)
            login = (tenant["account"], tenant["user"], tenant["password"], tenant["region"])
            headers = {"X-Auth-Token": token(running.port, *login)}
            base = f"http://{lj.HOST}:{running.port}"
            small_url = f"{base}/v1/{tenant['project_id']}/image-server-jobs?{SMALL}"
            metrics_url = f"{base}/metrics"
            alone = asyncio.run(phase(small_url, headers, metrics_url, 0, args.duration))
            flood = asyncio.run(
                phase(small_url, headers, metrics_url, args.scrapers, args.duration)
            )
        results["alone"], results["under_scrapes"] = alone, flood
    lj.log(json.dumps({"alone": alone, "under_scrapes": flood}))
    v0, v1 = alone["victim"], flood["victim"]
    print(
        report.markdown_table(
            [
                "source",
                "p50 alone ms",
                "p99 alone",
                "p50 under scrapes",
                "p99 under",
                "max under",
                "scrapes/s",
            ],
            [
                [
                    args.git_ref or "working tree",
                    v0["p50_ms"],
                    v0["p99_ms"],
                    v1["p50_ms"],
                    v1["p99_ms"],
                    v1["max_ms"],
                    flood["scrapes_per_s"],
                ]
            ],
        )
    )
    report.save("metrics_flood", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
