"""What one account's flood of refused calls costs the audit store and other tenants,
with the code before the per-account audit bound and after it, in the same run.

Each round starts, per code, a fresh imagejobs server as shipped (one Granian worker
pinned to CPU 0, SQLite, creation quotas off so that only the audit differs) and runs, on
CPU 1:

- the measured tenant (the demo root, `X-Auth-Token`): CreateImageServer one at a time
  (a write: on SQLite it waits for the one write lock the audit writer also takes), for
  `--duration` seconds quiet, then as long again during the flood;
- the attacker (another account, a process of its own at nice 19): `--connections`
  kept-alive connections sending `PATCH .../image-servers/actions/batch-delete` with
  `{"items": []}` as fast as they are answered (400 before any work, but audited).

Reported per code: the tenant's create p50/p99 quiet and under flood (their ratio is what
the flood costs it), the attacker's calls per second, and the audit rows stored per second
of flood. Codes alternate (before, after, after, before, ...) so that both see the same
machine as closely as this shared VM allows.

    .venv/bin/python bench/audit_flood.py [--before main] [--rounds 2] [--duration 6]
        [--connections 8]

Prints a table, writes JSON to bench/results/, exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import sqlite3
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

import deep_offset
import list_jobs as lj
import report
from create_servers import BODY

OPERATOR_TOKEN = "bench-operator-token-0123456789abcdef"
TIMEOUT_S = 10.0


def server_body() -> dict[str, Any]:
    return {"name": f"srv-{uuid.uuid4().hex[:12]}", **BODY}


def creates(url: str, headers: dict[str, str], seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds
    with httpx.Client(headers=headers, timeout=TIMEOUT_S) as client:
        while time.monotonic() < deadline:
            start = time.perf_counter()
            try:
                status = client.post(url, json=server_body()).status_code
            except httpx.TimeoutException:
                status = 0
            latencies.append(time.perf_counter() - start)
            errors += status != 200
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000, 2),
    }


async def _flood(port: int, target: str, token: str, connections: int, stop: Any) -> int:
    body = b'{"items": []}'
    head = (
        f"PATCH {target} HTTP/1.1\r\nHost: {lj.HOST}:{port}\r\nX-Auth-Token: {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    sent = 0

    async def connection() -> None:
        nonlocal sent
        reader, writer = await asyncio.open_connection(lj.HOST, port)
        with contextlib.suppress(OSError, ValueError, asyncio.IncompleteReadError):
            while not stop.is_set():
                writer.write(head + body)
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                sent += 1
        writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    return sent


def _flood_process(port: int, target: str, token: str, n: int, stop: Any, out: Any) -> None:
    os.nice(19)  # the measuring client shares this CPU and must not wait for it
    out.put(asyncio.run(_flood(port, target, token, n, stop)))


def audit_rows(database: Path, account_id: str) -> int:
    """The account's audit rows (markers included)."""
    with contextlib.closing(sqlite3.connect(database)) as connection:
        query = "SELECT count(*) FROM audit_events WHERE account_id = ?"
        return int(connection.execute(query, (account_id,)).fetchone()[0])


def one_round(code: str, src: Path | None, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        workdir = Path(tmp)
        database = workdir / "imagejobs.db"
        server = lj.imagejobs_server(f"sqlite:///{database}", workdir, 1, "iam")
        server.env.update(
            IMAGEJOBS_OPERATOR_TOKEN=OPERATOR_TOKEN,
            IMAGEJOBS_QUOTA_CREATES_PER_SECOND="0",
            IMAGEJOBS_QUOTA_JOBS_IN_FLIGHT="0",
            IMAGEJOBS_QUOTA_SERVERS="0",
        )
        if src is not None:
            server.env["PYTHONPATH"] = str(src)
        with server:
            base = f"http://{lj.HOST}:{server.port}"
            victim = {"X-Auth-Token": lj.demo_token(server, workdir)}
            created = httpx.post(
                base + "/_imagejobs/tenants",
                json={},
                headers={"X-Imagejobs-Operator-Token": OPERATOR_TOKEN},
            )
            created.raise_for_status()
            t = created.json()
            token = deep_offset.token(
                server.port, t["account"], t["user"], t["password"], t["region"]
            )
            create_url = f"{base}/v1/{lj.PROJECT}/image-servers"
            creates(create_url, victim, 1.0)  # warm-up
            quiet = creates(create_url, victim, args.duration)
            context = multiprocessing.get_context("spawn")
            stop, out = context.Event(), context.Queue()
            target = f"/v1/{t['project_id']}/image-servers/actions/batch-delete"
            attacker = context.Process(
                target=_flood_process,
                args=(server.port, target, token, args.connections, stop, out),
            )
            attacker.start()
            started = time.monotonic()
            time.sleep(1.0)  # the attacker connects and reaches its pace
            flood = creates(create_url, victim, args.duration)
            stop.set()
            sent: int = out.get(timeout=60)
            attacker.join()
            seconds = time.monotonic() - started
            time.sleep(1.5)  # the events answered last are written
            stored = audit_rows(database, t["domain_id"])
    return {
        "code": code,
        "quiet": quiet,
        "flood": flood,
        "ratio": round(flood["p50_ms"] / quiet["p50_ms"], 3),
        "attacker_calls_per_s": round(sent / seconds, 1),
        "audit_rows_per_s": round(stored / seconds, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="main", help="git ref of the code before")
    parser.add_argument("--rounds", type=int, default=2, help="pairs of rounds (ABBA …)")
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {lj.WRK_CPU})
    results: dict[str, Any] = {"benchmark": "audit flood", "settings": vars(args).copy()}
    with tempfile.TemporaryDirectory(prefix="bench-audit-src-") as tmp:
        before_src = Path(tmp)
        saved = os.environ.get("PYTHONPATH")
        results["before"] = lj.export_source(args.before, before_src)
        if saved is None:  # export_source sets it for the whole process: only "before" uses it
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
        results["after"] = lj.working_tree_source()
        rounds: list[dict[str, Any]] = []
        for n in range(args.rounds):
            order = [("before", before_src / "src"), ("after", None)]
            for code, src in order if n % 2 == 0 else reversed(order):
                lj.log(f"pair {n + 1}/{args.rounds}: {code}")
                rounds.append(one_round(code, src, args))
    results["rounds"] = rounds
    results["environment"] = lj.environment()
    print(
        "| code | create p50 quiet → flood ms | ratio | p99 flood ms | attacker calls/s"
        " | audit rows/s |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for r in rounds:
        print(
            f"| {r['code']} | {r['quiet']['p50_ms']} → {r['flood']['p50_ms']} | {r['ratio']} "
            f"| {r['flood']['p99_ms']} | {r['attacker_calls_per_s']} | {r['audit_rows_per_s']} |"
        )
    for code in ("before", "after"):
        mine = [r for r in rounds if r["code"] == code]
        print(
            f"{code}: median ratio {statistics.median(r['ratio'] for r in mine):.2f}, "
            f"audit rows/s {statistics.median(r['audit_rows_per_s'] for r in mine):.1f}"
        )
    report.save("audit_flood", results)
    print(json.dumps({"saved": True}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
