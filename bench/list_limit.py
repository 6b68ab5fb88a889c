"""ListImageJobs with an AK/SK-signed request against the lean limit (lean_reference.py).

One SQLite file with ``--jobs`` jobs in the demo project; two servers, one Granian worker
each, pinned to CPU 0: ``imagejobs serve`` as shipped but for the embedded runner (the
seeded jobs still WAITING or RUNNING would be run meanwhile), IAM on, every request
carrying the same SDK-HMAC-SHA256 signature of the demo root's AK/SK, verified in full
each time inside its 15-minute window; and ``lean_reference.py``. wrk on CPU 1 loads them
in alternating rounds (AB, BA, ...); the verdict is the median over rounds of each round
pair's ratio, with server CPU microseconds per request as the steadier second measure.

Target (issue 12): imagejobs req/s >= 0.5 x the lean reference at 1M jobs.

    .venv/bin/python bench/list_limit.py [--jobs 1000000] [--rounds 6] [--duration 8]
        [--workdir DIR] [--batch] [--src DIR]

Needs wrk and orjson (the benchmark's own dependency). Prints a table, writes JSON to
bench/results/, exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

import list_jobs as lj
import report
from auth_overhead import signed_headers

TARGET_MIN_RATIO = 0.5
NAMES = ("imagejobs", "lean")
COLUMNS = ("requests_per_s", "p50_ms", "p99_ms", "server_cpu_us_per_request")


def imagejobs_server(url: str, workdir: Path, batch: bool = False) -> lj.Server:
    """``imagejobs serve`` with IAM, without the embedded runner: the seeded jobs still
    WAITING or RUNNING would otherwise be run meanwhile, work the reference does not do.
    ``batch``: with IMAGEJOBS_BATCH_SCHEDULING=true."""
    server = lj.imagejobs_server(url, workdir, 1, "iam")
    server.argv.insert(server.argv.index("serve") + 1, "--no-runner")
    if batch:
        server.env["IMAGEJOBS_BATCH_SCHEDULING"] = "true"
    return server


def batch_server_threads(server: lj.Server) -> None:
    """The same treatment as ``imagejobs serve`` gives its workers with
    IMAGEJOBS_BATCH_SCHEDULING=true: every thread but a worker's main one (its event loop)
    as SCHED_BATCH (threads started later by those inherit it)."""
    for worker in server.workers:
        for tid in map(int, os.listdir(f"/proc/{worker}/task")):
            if tid != worker:
                os.sched_setscheduler(tid, os.SCHED_BATCH, os.sched_param(0))


def lean_server(path: Path, workdir: Path) -> lj.Server:
    """The lean reference under Granian's defaults (``batch_server_threads`` for --batch)."""
    port = lj.free_port()
    argv = [lj.tool("granian"), "--interface", "asgi", "--host", lj.HOST, "--port", str(port)]
    argv += ["--workers", "1", "--working-dir", str(lj.BENCH), "lean_reference:app"]
    env = lj.clean_env(LEAN_DATABASE=str(path))
    return lj.Server("lean", argv, env, port, workdir / "lean.log")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--duration", type=int, default=8, help="seconds of load per round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quiet-wait", type=float, default=60.0)
    parser.add_argument("--workdir", type=Path, help="reuse a seeded data directory")
    parser.add_argument(
        "--batch",
        action="store_true",
        help="both servers' threads but their event loops' as SCHED_BATCH"
        " (IMAGEJOBS_BATCH_SCHEDULING=true; the same done to the lean server's)",
    )
    parser.add_argument(
        "--src", type=Path, help="serve imagejobs from this copy of src/ (list_jobs.py's)"
    )
    return parser.parse_args()


def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    path = workdir / "imagejobs.db"
    url = f"sqlite:///{path}"
    result: dict[str, Any] = {"jobs": args.jobs, "batch": args.batch}
    if not path.exists():
        lj.log(f"seeding {args.jobs} jobs…")
        result["seed_s"] = lj.seed(url, lj.PROJECT, args.jobs, workdir)
    budget = {"quiet_wait_left_s": args.quiet_wait}
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in NAMES}
    with contextlib.ExitStack() as stack:
        # imagejobs starts first: on a new database it bootstraps the demo account.
        servers = {
            "imagejobs": stack.enter_context(imagejobs_server(url, workdir, args.batch)),
            "lean": stack.enter_context(lean_server(path, workdir)),
        }
        if args.batch:
            batch_server_threads(servers["lean"])
        servers["imagejobs"].headers = signed_headers(servers["imagejobs"], workdir)
        bodies = {}
        for name, server in servers.items():
            page = httpx.get(server.url(lj.PROJECT, lj.QUERY), headers=server.headers)
            page.raise_for_status()
            bodies[name] = page.content
        result["bodies_identical"] = len(set(bodies.values())) == 1
        for server in servers.values():
            lj.wrk(
                server.url(lj.PROJECT, lj.QUERY), args.warmup, args.connections, 1, server.headers
            )
        for number in range(args.rounds):
            for name in NAMES if number % 2 == 0 else NAMES[::-1]:
                waited = lj.wait_for_quiet(budget)
                server = servers[name]
                run = lj.measured_wrk(
                    server, server.url(lj.PROJECT, lj.QUERY), args, args.duration, False
                )
                run["waited_for_quiet_s"] = waited
                rounds[name].append(run)
                lj.log(
                    f"{name} round {number + 1}: {run['requests_per_s']:.0f} req/s,"
                    f" {run['server_cpu_us_per_request']} µs CPU/req,"
                    f" other load {run['other_cpu_busy']} CPUs, steal {run['steal_cpu']}"
                )
        for name, server in servers.items():
            result[name] = {**lj.combine(rounds[name]), **server.memory()}
    ratios = report.round_ratios(rounds["imagejobs"], rounds["lean"])["requests_per_s"]
    result["ratio_rounds"] = [round(r, 3) for r in ratios]
    result["ratio"] = round(statistics.median(ratios), 3)
    result["cpu_ratio"] = round(
        result["lean"]["server_cpu_us_per_request"]
        / result["imagejobs"]["server_cpu_us_per_request"],
        3,
    )
    return result


def main() -> int:
    args = parse_args()
    lj.tool("wrk")
    source = lj.given_source(args.src) if args.src else lj.working_tree_source()
    with contextlib.ExitStack() as stack:
        if args.workdir is not None:
            workdir = args.workdir
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="list-limit-")))
        result = measure(args, workdir)
    result["source"] = source
    print()
    print(
        report.markdown_table(
            ["server", "req/s", "p50 ms", "p99 ms", "server CPU µs/req", "max VmRSS MB"],
            (
                [name, *(result[name][key] for key in COLUMNS), result[name]["max_worker_rss_mb"]]
                for name in NAMES
            ),
        )
    )
    ok = result["ratio"] >= TARGET_MIN_RATIO
    print(
        f"\nreq/s imagejobs/lean: {result['ratio']} (rounds {result['ratio_rounds']});"
        f" by CPU/request {result['cpu_ratio']}; bodies identical: {result['bodies_identical']};"
        f" target >= {TARGET_MIN_RATIO}: {report.verdict(ok)}"
    )
    report.save("list_limit", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
