"""CreateImageServer on PostgreSQL against a raw asyncpg reference writing the same rows.

One fresh PostgreSQL database (``--database``, dropped at the end), migrated.
``imagejobs serve`` (one Granian worker on CPU 0, no embedded runner, IMAGEJOBS_AUTH=none
so that the load driver need not sign, per-project quotas off so that they do not cap the
rate) takes CreateImageServer requests from ``--clients`` concurrent HTTP clients (raw
keep-alive sockets sending a prepared request: httpx, ``--driver httpx``, costs the
driver's CPU, which the reference shares, several times as much per request); the
reference is those clients' own loop of raw asyncpg transactions, one per create, writing
what a create writes: the name check, the server, the job, its sub-job, the two counters
(same upsert) and the engine task, with the same statements and the same kind of values.
Both run in two shapes, every client in one project and each create in one of 100
projects, in alternating rounds (imagejobs, reference; then reference, imagejobs). The
driver and the reference run on CPU 1; PostgreSQL is not pinned. Recorded per create
beside the rates: the imagejobs worker's CPU, each side's driver CPU (this process), and
the CPU of the PostgreSQL backends serving each side.

Target (issue 12): imagejobs creates/s >= 0.5 x the reference, in both shapes.

    .venv/bin/python bench/create_servers.py [--clients 8] [--rounds 4] [--duration 6]
        [--postgres-url postgresql://postgres@127.0.0.1:5432/test] [--driver raw|httpx]
        [--database imagejobs_create_bench]

Prints a table, writes JSON to bench/results/, exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx

import list_jobs as lj
import report
from imagejobs.domain.ids import IdGenerator
from imagejobs.storage.database import COUNTER_STRIPES
from imagejobs.storage.engine_store import INSERT_TASK
from imagejobs.storage.job_store import ADD_TO_COUNTER, INSERT_JOB, INSERT_SUB_JOB
from imagejobs.storage.server_store import INSERT_SERVER, NAME_TAKEN

TARGET_MIN_RATIO = 0.5
DATABASE = "imagejobs_create_bench"
SHAPES = {"one project": 1, "100 projects": 100}
BODY = {
    "root_volume": {"type": "SAS", "size": 80},
    "image_ref": {"id": "da02e5ca-c6ec-4685-8ecb-f116bb5bdd2c", "image_type": "public"},
    "vpc_id": "59785ba5-e5d5-4836-b9de-19f22ac15175",
    "subnet_id": "a5842cb4-5718-4b0a-8b27-3a3e9c74f977",
    "product_id": "workspace.x86.performance.xlarge4",
    "authorize_accounts": [{"account": "administrator", "account_type": "USER"}],
}


def project(shape_size: int, n: int) -> str:
    return f"{n % shape_size:032x}"


class RawClient:
    """One keep-alive HTTP/1.1 connection that sends a prepared request and reads only what
    it needs of the answer (status, Content-Length, body): a driver that costs the load
    generator ~10x less CPU per request than httpx, so that it never limits imagejobs."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer, self._host = reader, writer, ""

    @classmethod
    async def open(cls, base_url: str) -> RawClient:
        host, port = base_url.removeprefix("http://").split(":")
        client = cls(*await asyncio.open_connection(host, int(port)))
        client._host = f"{host}:{port}"
        return client

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        self._writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {self._host}\r\nContent-Type: application/json"
            f"\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, await self._reader.readexactly(length)

    async def close(self) -> None:
        self._writer.close()
        await self._writer.wait_closed()


async def drive_imagejobs(
    base_url: str, clients: int, seconds: float, projects: int, driver: str = "raw"
) -> int:
    if driver == "httpx":
        return await drive_imagejobs_httpx(base_url, clients, seconds, projects)
    done = 0
    numbers = itertools.count()
    deadline = time.monotonic() + seconds
    body_head = json.dumps(BODY)[:-1].encode()

    async def client() -> None:
        nonlocal done
        http = await RawClient.open(base_url)
        try:
            while time.monotonic() < deadline:
                n = next(numbers)
                body = body_head + f', "name": "s-{uuid.uuid4().hex[:16]}"}}'.encode()
                path = f"/v1/{project(projects, n)}/image-servers"
                status, answer = await http.post(path, body)
                if status != 200:
                    raise RuntimeError(f"create failed: {status} {answer!r}")
                done += 1
        finally:
            await http.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return done


async def drive_imagejobs_httpx(base_url: str, clients: int, seconds: float, projects: int) -> int:
    done = 0
    numbers = itertools.count()
    deadline = time.monotonic() + seconds

    async def client() -> None:
        nonlocal done
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            while time.monotonic() < deadline:
                n = next(numbers)
                body = {**BODY, "name": f"s-{uuid.uuid4().hex[:16]}"}
                answer = await http.post(f"/v1/{project(projects, n)}/image-servers", json=body)
                if answer.status_code != 200:
                    raise RuntimeError(f"create failed: {answer.status_code} {answer.text}")
                done += 1

    await asyncio.gather(*(client() for _ in range(clients)))
    return done


def reference_rows(ids: IdGenerator, project_id: str, now: int) -> list[tuple[str, list[Any]]]:
    """The statements of one create and their arguments: what imagejobs writes."""
    server_id, job_id, sub_job_id = ids.next_id(), ids.next_id(), ids.next_id()
    name = f"s-{uuid.uuid4().hex[:16]}"
    spec = {k: v for k, v in BODY.items() if k not in ("image_ref", "authorize_accounts")}
    server = {
        "id": server_id,
        "project_id": project_id,
        "name": name,
        "description": "",
        "status": "CREATING",
        "image_ref": json.dumps(BODY["image_ref"]),
        "authorize_accounts": json.dumps(BODY["authorize_accounts"]),
        "server_group_id": str(uuid.uuid4()),
        "app_group_id": "",
        "aps_server_id": "",
        "instance_id": "",
        "image_id": "",
        "enterprise_project_id": "0",
        "spec": json.dumps(spec),
        "create_time": now,
        "update_time": now,
    }
    job = {
        "id": job_id,
        "project_id": project_id,
        "job_type": "CREATE_SERVER",
        "status": "WAITING",
        "begin_time": now,
        "end_time": None,
        "sub_jobs_total": 1,
    }
    sub_job = {
        "id": sub_job_id,
        "job_id": job_id,
        "project_id": project_id,
        "job_type": "CREATE_SERVER",
        "status": "WAITING",
        "begin_time": now,
        "end_time": None,
        "resource_id": str(server_id),
        "resource_name": name,
        "error_code": "",
        "error_message": "",
    }
    counter = {"project_id": project_id, "job_type": "CREATE_SERVER", "status": "WAITING"}
    counter["stripe"] = random.randrange(COUNTER_STRIPES)  # as imagejobs spreads them
    payload = {"server_id": str(server_id), "name": name, "spec": spec}
    task = {
        "sub_job_id": sub_job_id,
        "job_id": job_id,
        "project_id": project_id,
        "job_type": "CREATE_SERVER",
        "position": 0,
        "due_at": now,
        "payload": json.dumps(payload),
        "created_at": now,
    }
    return [
        (NAME_TAKEN.postgres, list(NAME_TAKEN.args({"project_id": project_id, "name": name}))),
        (INSERT_SERVER.postgres, list(INSERT_SERVER.args(server))),
        (INSERT_JOB.postgres, list(INSERT_JOB.args(job))),
        (INSERT_SUB_JOB.postgres, list(INSERT_SUB_JOB.args(sub_job))),
        *(
            (
                ADD_TO_COUNTER.postgres,
                list(ADD_TO_COUNTER.args({**counter, "scope": s, "delta": 1})),
            )
            for s in ("job", "sub_job")
        ),
        (INSERT_TASK.postgres, list(INSERT_TASK.args(task))),
    ]


async def backend_cpu(dsn: str) -> dict[int, float]:
    """CPU seconds used so far by each PostgreSQL backend connected to ``dsn``'s database
    (from /proc: the cluster is local)."""
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        )
    finally:
        await connection.close()
    return {row["pid"]: lj.cpu_seconds([row["pid"]]) for row in rows}


def cpu_since(start: dict[int, float], end: dict[int, float]) -> float:
    return sum(used - start.get(pid, 0.0) for pid, used in end.items())


async def drive_reference(
    dsn: str, clients: int, seconds: float, projects: int, cpu: dict[int, float] | None = None
) -> int:
    """The reference's loop; ``cpu`` gets its backends' CPU seconds before they close."""
    done = 0
    numbers = itertools.count()
    ids = IdGenerator(node=255)
    deadline = time.monotonic() + seconds
    pool = await asyncpg.create_pool(dsn, min_size=clients, max_size=clients)

    async def client() -> None:
        nonlocal done
        async with pool.acquire() as connection:
            while time.monotonic() < deadline:
                rows = reference_rows(
                    ids, project(projects, next(numbers)), int(time.time() * 1000)
                )
                async with connection.transaction():
                    for sql, args in rows:
                        if sql.startswith("SELECT"):
                            await connection.fetch(sql, *args)
                        else:
                            await connection.execute(sql, *args)
                done += 1

    try:
        await asyncio.gather(*(client() for _ in range(clients)))
        if cpu is not None:
            cpu.update(await backend_cpu(dsn))
    finally:
        await pool.close()
    return done


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per round")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument(
        "--driver",
        choices=("raw", "httpx"),
        default="raw",
        help="imagejobs' HTTP clients: raw keep-alive sockets, or httpx (4x the client CPU)",
    )
    parser.add_argument("--database", default=DATABASE, help="created and dropped by the run")
    return parser.parse_args()


def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    admin = lj._dsn(args.postgres_url)
    database = args.database
    load = Path("/proc/loadavg").read_text().split()[:3]
    dsn = admin.rsplit("/", 1)[0] + f"/{database}"
    asyncio.run(
        lj._admin(admin, f"DROP DATABASE IF EXISTS {database}", f"CREATE DATABASE {database}")
    )
    try:
        env = lj.clean_env()
        subprocess.run(
            [lj.tool("imagejobs"), "migrate", "--database-url", dsn], env=env, check=True
        )
        port = lj.free_port()
        argv = [lj.tool("imagejobs"), "serve", "--no-runner", "--host", lj.HOST]
        argv += ["--port", str(port), "--database-url", dsn, "--data-dir", str(workdir)]
        quotas_off = {
            "IMAGEJOBS_QUOTA_SERVERS": "0",
            "IMAGEJOBS_QUOTA_JOBS_IN_FLIGHT": "0",
            "IMAGEJOBS_QUOTA_CREATES_PER_SECOND": "0",
        }
        server_env = lj.clean_env(IMAGEJOBS_AUTH="none", **quotas_off)
        server = lj.Server("imagejobs", argv, server_env, port, workdir / "imagejobs.log")
        os.sched_setaffinity(0, {lj.WRK_CPU})  # the driver and the reference on CPU 1
        result: dict[str, Any] = {}
        cpu_ms: dict[str, list[float]] = {shape: [] for shape in SHAPES}
        # The driver's own CPU per create (this process: the HTTP clients, or the
        # reference's whole work), to show which side the load generator limits.
        driver_ms: dict[str, dict[str, list[float]]] = {
            shape: {"imagejobs": [], "reference": []} for shape in SHAPES
        }
        # The CPU of the PostgreSQL backends serving each side, per create.
        postgres_ms: dict[str, dict[str, list[float]]] = {
            shape: {"imagejobs": [], "reference": []} for shape in SHAPES
        }
        with server:
            base_url = f"http://{lj.HOST}:{port}"
            asyncio.run(drive_imagejobs(base_url, args.clients, 1.0, 1, args.driver))  # warm-up
            for shape, size in SHAPES.items():
                rates: dict[str, list[float]] = {"imagejobs": [], "reference": []}
                for number in range(args.rounds):
                    order = (
                        ("imagejobs", "reference")
                        if number % 2 == 0
                        else ("reference", "imagejobs")
                    )
                    for name in order:
                        own_cpu = time.process_time()
                        backends_at_start = asyncio.run(backend_cpu(dsn))
                        backends: dict[int, float] = {}
                        if name == "imagejobs":
                            cpu = server.cpu_seconds()
                            n = asyncio.run(
                                drive_imagejobs(
                                    base_url, args.clients, args.duration, size, args.driver
                                )
                            )
                            used = server.cpu_seconds() - cpu
                            cpu_ms[shape].append(round(used / n * 1000, 2))
                            backends = asyncio.run(backend_cpu(dsn))
                        else:
                            n = asyncio.run(
                                drive_reference(dsn, args.clients, args.duration, size, backends)
                            )
                        own = (time.process_time() - own_cpu) / n * 1000
                        driver_ms[shape][name].append(round(own, 3))
                        pg = cpu_since(backends_at_start, backends) / n * 1000
                        postgres_ms[shape][name].append(round(pg, 3))
                        rates[name].append(round(n / args.duration, 1))
                        lj.log(f"{shape} {name} round {number + 1}: {rates[name][-1]} creates/s")
                ratios = [
                    a / b for a, b in zip(rates["imagejobs"], rates["reference"], strict=True)
                ]
                result[shape] = {
                    **rates,
                    "imagejobs_median": statistics.median(rates["imagejobs"]),
                    "reference_median": statistics.median(rates["reference"]),
                    "ratio_rounds": [round(r, 3) for r in ratios],
                    "ratio": round(statistics.median(ratios), 3),
                    "imagejobs_server_cpu_ms_per_create": cpu_ms[shape],
                    "driver_cpu_ms_per_create": driver_ms[shape],
                    "postgres_backend_cpu_ms_per_create": postgres_ms[shape],
                }
        result["driver"] = args.driver
        result["load_average_at_start"] = load
        return result
    finally:
        asyncio.run(lj._admin(admin, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))


def main() -> int:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="create-bench-") as workdir:
        result = measure(args, Path(workdir))
    result["source"] = lj.working_tree_source()
    print("\n| shape | imagejobs creates/s | reference creates/s | ratio (rounds) |")
    print("| --- | ---: | ---: | --- |")
    for shape in SHAPES:
        m = result[shape]
        print(
            f"| {shape} | {m['imagejobs_median']:,.0f} | {m['reference_median']:,.0f}"
            f" | {m['ratio']} ({', '.join(map(str, m['ratio_rounds']))}) |"
        )
    met = all(result[s]["ratio"] >= TARGET_MIN_RATIO for s in SHAPES)
    print(f"\ntarget >= {TARGET_MIN_RATIO} in both shapes: {'MET' if met else 'MISSED'}")
    report.save("create_servers", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
