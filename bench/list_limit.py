"""A list API with an AK/SK-signed request against its lean limit (lean_reference.py &c.).

One SQLite file with ``--jobs`` jobs in the demo project; two servers, one Granian worker
each, pinned to CPU 0: ``imagejobs serve`` as shipped but for the embedded runner (the
seeded jobs still WAITING or RUNNING would be run meanwhile), IAM on, every request
carrying the same SDK-HMAC-SHA256 signature of the demo root's AK/SK, verified in full
each time inside its 15-minute window; and ``lean_reference.py``. wrk on CPU 1 loads them
in alternating rounds (AB, BA, ...); the verdict is the median over rounds of each round
pair's ratio, with server CPU microseconds per request as the steadier second measure.

``--api`` picks the list (issue 12 item 1: "ListImageJobs and the other list APIs"):
``jobs`` (ListImageJobs, ``lean_reference.py``), ``sub-jobs`` (ListImageSubJobs over the
seed's 1M sub-jobs, one a job, ``lean_sub_jobs.py``) or ``servers`` (ListImageServers,
``--servers`` image servers added to the demo project with imagejobs' own row form, once,
``lean_servers.py``); ``--query`` replaces the API's query (e.g. a sub-job page of one job).

``--simultaneous`` loads both servers at once instead, each with its own wrk, as
auth_overhead.py does: the two servers share CPU 0, each in its own session, and the
kernel's autogroup gives each half of it at the same moments, so a drift of the machine's
speed (seen here: the same server's CPU per request 113-187 µs from one 6 s round to the
next, nothing else running) hits both alike, and the req/s ratio is the ratio of their
costs per request. The alternating rounds measure each at a whole CPU, but their ratio
moves with the drift.

Target (issue 12): imagejobs req/s >= 0.5 x the lean reference at 1M jobs.

    .venv/bin/python bench/list_limit.py [--api jobs|sub-jobs|servers] [--query Q]
        [--jobs 1000000] [--servers 10000] [--rounds 6] [--duration 8]
        [--workdir DIR] [--batch] [--src DIR] [--simultaneous]

Needs wrk and orjson (the benchmark's own dependency). Prints a table, writes JSON to
bench/results/, exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import statistics
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import httpx

import list_jobs as lj
import report
from imagejobs.iam.signing import SigningAlgorithm, sign_request

TARGET_MIN_RATIO = 0.5
NAMES = ("imagejobs", "lean")
COLUMNS = ("requests_per_s", "p50_ms", "p99_ms", "server_cpu_us_per_request")


class Api(NamedTuple):
    path: str  # after /v1/{project_id}/
    query: str
    lean_app: str  # module:callable in bench/


APIS = {
    "jobs": Api("image-server-jobs", lj.QUERY, "lean_reference:app"),
    "sub-jobs": Api(
        "image-server-sub-jobs", "job_type=CREATE_SERVER&limit=10", "lean_sub_jobs:app"
    ),
    "servers": Api("image-servers", "limit=10", "lean_servers:app"),
}


def api_url(server: lj.Server, api: Api) -> str:
    return f"http://{lj.HOST}:{server.port}/v1/{lj.PROJECT}/{api.path}?{api.query}"


def signed_headers(server: lj.Server, workdir: Path, api: Api) -> dict[str, str]:
    """Headers of one SDK-style signed request of ``api``, replayable for 15 minutes."""
    demo = json.loads((workdir / lj.DEMO_CREDENTIALS).read_text())
    headers = {"Host": f"{lj.HOST}:{server.port}", "X-Project-Id": lj.PROJECT}
    query = [tuple(pair.split("=", 1)) for pair in api.query.split("&")]
    headers |= sign_request(
        "GET",
        f"/v1/{lj.PROJECT}/{api.path}",
        query,
        headers,
        b"",
        ak=demo["access_key"],
        sk=demo["secret_key"],
        algorithm=SigningAlgorithm.HMAC_SHA256,
        now=datetime.now(UTC),
    )
    del headers["Host"]  # wrk sends the same Host itself
    return headers


def seed_servers(path: Path, count: int) -> int:
    """Top the demo project up to ``count`` image servers, written as imagejobs writes them
    (``server_row``, ``INSERT_SERVER``): mostly ACTIVE gold-image servers with one account,
    a creation spec of the usual size, ids and times as the service gives them."""
    from imagejobs.domain.enums import ImageServerStatus
    from imagejobs.domain.servers import AccountInfo, ImageRef, ImageServer
    from imagejobs.storage.server_store import INSERT_SERVER, server_row

    with contextlib.closing(sqlite3.connect(path)) as conn:
        have = conn.execute(
            "SELECT COUNT(*) FROM image_servers WHERE project_id = ?", (lj.PROJECT,)
        ).fetchone()[0]
        spec = {
            "flavor": {"id": "workspace.appstream.general.xlarge.4"},
            "vpc_id": "6c3a7e5f-02b1-4a4c-9f55-9d3c3a8b1e20",
            "subnet_ids": ["0a5c7a3e-1f3d-4c55-8e0a-2f6b5a9d7c11"],
            "root_volume": {"type": "SAS", "size": 80},
            "availability_zone": "cn-north-4a",
            "ou_name": "",
            "is_vdi": False,
            "route_policy": {"max_session": 1},
        }
        rows = []
        for n in range(have, count):
            created = 1_764_000_000_000 + n * 61_013
            server = ImageServer(
                id=697_612_196_993_040_384 + n * 262_145,
                project_id=lj.PROJECT,
                name=f"image-server-{n:05d}",
                description="A test of creating an image instance.",
                status=ImageServerStatus.ACTIVE if n % 10 else ImageServerStatus.CREATING,
                image_ref=ImageRef(
                    id="da02e5ca-c6ec-4685-8ecb-f116bb5bdd2c",
                    image_type="gold",
                    product_id="00301-xxxx-0--0",
                    spce_code="90a6e84bb3e822fe54999b6be5bbae1e",
                ),
                authorize_accounts=(AccountInfo(f"user{n % 100:04d}", "USER"),),
                create_time=created,
                update_time=created + 1_320,
                server_group_id="dae99966-76c4-4995-adaf-e8e2ab36869a",
                server_id=f"wksapp-08722b58-{n:012d}" if n % 10 else "",
                instance_id=f"4f0c0f3c-9d5e-4d3b-8a55-{n:012d}" if n % 10 else "",
                spec=spec,
            )
            rows.append(server_row(server))
        with conn:
            conn.executemany(INSERT_SERVER.text, rows)
        return count - have


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


def lean_server(path: Path, workdir: Path, lean_app: str = "lean_reference:app") -> lj.Server:
    """The lean reference under Granian's defaults (``batch_server_threads`` for --batch)."""
    port = lj.free_port()
    argv = [lj.tool("granian"), "--interface", "asgi", "--host", lj.HOST, "--port", str(port)]
    argv += ["--workers", "1", "--working-dir", str(lj.BENCH), lean_app]
    env = lj.clean_env(LEAN_DATABASE=str(path))
    return lj.Server("lean", argv, env, port, workdir / "lean.log")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", choices=sorted(APIS), default="jobs")
    parser.add_argument("--query", help="the request's query instead of the API's own")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--servers", type=int, default=10_000, help="for --api servers")
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
    parser.add_argument(
        "--simultaneous",
        action="store_true",
        help="load both servers at once, sharing CPU 0 (drift-free ratio), not in turns",
    )
    return parser.parse_args()


def simultaneous_round(
    servers: dict[str, lj.Server], api: Api, args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    """Both servers' wrk at once; the CPU each server used meanwhile."""
    before = {name: server.cpu_seconds() for name, server in servers.items()}
    with ThreadPoolExecutor(len(servers)) as pool:
        futures = {
            name: pool.submit(
                lj.wrk,
                api_url(server, api),
                args.duration,
                args.connections,
                args.threads,
                server.headers,
            )
            for name, server in servers.items()
        }
        runs = {name: future.result() for name, future in futures.items()}
    for name, server in servers.items():
        used = server.cpu_seconds() - before[name]
        runs[name]["server_cpu_us_per_request"] = round(used / runs[name]["requests"] * 1e6, 1)
        runs[name]["server_cpu_busy"] = round(used / args.duration, 3)
        runs[name]["other_cpu_busy"] = runs[name]["steal_cpu"] = 0.0  # not read at once
    return runs


def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    path = workdir / "imagejobs.db"
    url = f"sqlite:///{path}"
    api = APIS[args.api]
    if args.query:
        api = api._replace(query=args.query)
    result: dict[str, Any] = {"jobs": args.jobs, "batch": args.batch, "api": args.api}
    result["simultaneous"] = args.simultaneous
    result["query"] = api.query
    if not path.exists():
        lj.log(f"seeding {args.jobs} jobs…")
        result["seed_s"] = lj.seed(url, lj.PROJECT, args.jobs, workdir)
    budget = {"quiet_wait_left_s": args.quiet_wait}
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in NAMES}
    with contextlib.ExitStack() as stack:
        # imagejobs starts first: on a new database it bootstraps the demo account.
        servers = {
            "imagejobs": stack.enter_context(imagejobs_server(url, workdir, args.batch)),
            "lean": stack.enter_context(lean_server(path, workdir, api.lean_app)),
        }
        if args.api == "servers":
            # After imagejobs' start, which migrates a new database first.
            result["servers"] = args.servers
            result["servers_added"] = seed_servers(path, args.servers)
        if args.batch:
            batch_server_threads(servers["lean"])
        servers["imagejobs"].headers = signed_headers(servers["imagejobs"], workdir, api)
        bodies = {}
        for name, server in servers.items():
            page = httpx.get(api_url(server, api), headers=server.headers)
            page.raise_for_status()
            bodies[name] = page.content
        result["bodies_identical"] = len(set(bodies.values())) == 1
        result["body_bytes"] = len(bodies["imagejobs"])
        if not result["bodies_identical"]:
            for name, body in bodies.items():
                (workdir / f"body-{args.api}-{name}.json").write_bytes(body)
            lj.log(f"bodies differ: see {workdir}/body-{args.api}-*.json")
        for server in servers.values():
            lj.wrk(api_url(server, api), args.warmup, args.connections, 1, server.headers)
        for number in range(args.rounds if args.simultaneous else 0):
            runs = simultaneous_round(servers, api, args)
            for name in NAMES:
                rounds[name].append(runs[name])
            lj.log(
                f"round {number + 1}, at once: "
                + ", ".join(
                    f"{name} {run['requests_per_s']:.0f} req/s"
                    f" ({run['server_cpu_us_per_request']} µs CPU/req,"
                    f" {run['server_cpu_busy']} CPU)"
                    for name, run in runs.items()
                )
            )
        for number in range(0 if args.simultaneous else args.rounds):
            for name in NAMES if number % 2 == 0 else NAMES[::-1]:
                waited = lj.wait_for_quiet(budget)
                server = servers[name]
                run = lj.measured_wrk(server, api_url(server, api), args, args.duration, False)
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
    print(f"\n--api {args.api}: {result['query']}")
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
    report.save("list_limit" if args.api == "jobs" else f"list_limit-{args.api}", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
