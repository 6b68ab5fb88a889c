"""Overload: imagejobs driven far past its capacity for a minute stays up, keeps the
latency of what it admits low, sheds the rest fast (503 past the in-flight bound, 429 past
the account's rate), keeps its memory bounded, and its counts stay exact.

1. Capacity: `imagejobs serve` (SQLite, one worker, IAM on, 10k jobs) under wrk with 16
   connections for `--capacity-seconds`: C requests/s of ListImageJobs.
2. Overload: a fresh server, as shipped (IMAGEJOBS_MAX_IN_FLIGHT 64) plus a per-account
   rate limit of `--rate-factor` x C, under wrk with 4 x 64 connections for `--duration`
   seconds, one request in ten a CreateImageServer. Every answer is counted by status;
   the latency of admitted ListImageJobs comes from the server's own histogram
   (/metrics), so that fast refusals do not flatter it.
3. Afterwards: /_imagejobs/ready answers 200, the worker's peak memory, and every count
   in job_counters equals the rows it counts (one SQLite snapshot).

wrk is a closed loop: each connection sends its next request when the last is answered,
so the load offered is set by concurrency, not by a rate. 256 connections are 16 x the
capacity run's and 4 x the in-flight bound: without the bound every one of them would
queue inside the process; the answered rate is reported as a multiple of C.

Targets (issue: operations): admitted p99 < 1 s; the rest shed with 503/429; no other
status, no socket error; still ready; counts consistent.

    .venv/bin/python bench/load.py [--jobs 10000] [--duration 60] [--rate-factor 2]

Prints a table, writes JSON to bench/results/, exits 0.
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

import list_jobs as lj

MAX_IN_FLIGHT = 64
CONNECTIONS = 4 * MAX_IN_FLIGHT
LATENCY_TARGET_S = 1.0

WRK_SCRIPT = r"""
local threads = {}
local next_id = 0
setup = function(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end
init = function(args)
  project, token = args[1], args[2]
  statuses, n = {}, 0
  list_path = "/v1/" .. project
    .. "/image-server-jobs?job_type=CREATE_SERVER&status=SUCCESS&limit=10"
  create_path = "/v1/" .. project .. "/image-servers"
end
request = function()
  n = n + 1
  if n % 10 == 0 then
    local body = string.format([[{"name": "load-%d-%d", "root_volume": {"type": "SAS", "size": 80},
      "image_ref": {"id": "da02e5ca-c6ec-4685-8ecb-f116bb5bdd2c", "image_type": "public"},
      "vpc_id": "59785ba5-e5d5-4836-b9de-19f22ac15175",
      "subnet_id": "a5842cb4-5718-4b0a-8b27-3a3e9c74f977",
      "product_id": "workspace.x86.performance.xlarge4",
      "authorize_accounts": [{"account": "administrator", "account_type": "USER"}]}]], id, n)
    return wrk.format("POST", create_path,
      {["X-Auth-Token"] = token, ["Content-Type"] = "application/json"}, body)
  end
  return wrk.format("GET", list_path, {["X-Auth-Token"] = token})
end
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
done = function(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      total[status] = (total[status] or 0) + count
    end
  end
  for status, count in pairs(total) do io.write(string.format("status %d %d\n", status, count)) end
end
"""

_COUNTS = (
    "SELECT project_id, 'job', job_type, status, COUNT(*) FROM jobs"
    " GROUP BY project_id, job_type, status",
    "SELECT project_id, 'sub_job', job_type, status, COUNT(*) FROM sub_jobs"
    " GROUP BY project_id, job_type, status",
)
_COUNTERS = "SELECT project_id, scope, job_type, status, n FROM job_counters WHERE n <> 0"


def server(url: str, workdir: Path, name: str, **env: str) -> lj.Server:
    port = lj.free_port()
    argv = [lj.tool("imagejobs"), "serve", "--host", lj.HOST, "--port", str(port)]
    argv += ["--database-url", url, "--data-dir", str(workdir)]
    environ = lj.clean_env(IMAGEJOBS_MAX_IN_FLIGHT=str(MAX_IN_FLIGHT), **env)
    return lj.Server(name, argv, environ, port, workdir / f"{name}.log")


def overload(srv: lj.Server, token: str, duration: int, script: Path) -> dict[str, Any]:
    argv = [*lj.pinned(lj.WRK_CPU), "wrk", "-t2", f"-c{CONNECTIONS}", f"-d{duration}s"]
    argv += ["--timeout", "10s", "--latency", "-s", str(script)]
    argv += [f"http://{lj.HOST}:{srv.port}", "--", lj.PROJECT, token]
    out = subprocess.run(
        argv, capture_output=True, text=True, check=True, timeout=duration + 60
    ).stdout
    statuses = {int(m[1]): int(m[2]) for m in re.finditer(r"^status (\d+) (\d+)$", out, re.M)}
    socket_errors = re.search(r"Socket errors: (.*)", out)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    return {
        "statuses": statuses,
        "answered": sum(statuses.values()),
        "socket_errors": socket_errors.group(1) if socket_errors else None,
        "p99_all_ms": round(float(p99.group(1)) * lj._UNITS[p99.group(2)], 2) if p99 else None,
    }


def scrape(srv: lj.Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"http://{lj.HOST}:{srv.port}/metrics", timeout=30).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def admitted_quantile(
    before: dict[Any, float], after: dict[Any, float], operation: str, quantile: float
) -> float | None:
    """The upper bound of the histogram bucket holding ``quantile`` of the requests of
    ``operation`` answered between the two scrapes."""
    name = "imagejobs_request_duration_seconds_bucket"
    buckets = sorted(
        (float("inf") if dict(labels)["le"] == "+Inf" else float(dict(labels)["le"]), value)
        for (metric, labels), value in after.items()
        if metric == name and dict(labels).get("operation") == operation
    )
    grown = [
        (bound, value - before.get((name, _key(operation, bound)), 0)) for bound, value in buckets
    ]
    if not grown or grown[-1][1] == 0:
        return None
    total = grown[-1][1]
    return next(bound for bound, count in grown if count >= quantile * total)


def _key(operation: str, bound: float) -> tuple[tuple[str, str], ...]:
    le = "+Inf" if bound == float("inf") else str(bound)
    return tuple(sorted({"operation": operation, "le": le}.items()))


def counter_mismatches(path: Path) -> list[str]:
    connection = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        connection.execute("BEGIN")
        rows = {tuple(r[:4]): r[4] for sql in _COUNTS for r in connection.execute(sql)}
        counted = {tuple(r[:4]): r[4] for r in connection.execute(_COUNTERS)}
        connection.execute("COMMIT")
    finally:
        connection.close()
    return [
        f"{key}: {counted.get(key, 0)} counted, {rows.get(key, 0)} rows"
        for key in sorted(set(rows) | set(counted))
        if counted.get(key, 0) != rows.get(key, 0)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--duration", type=int, default=60, help="seconds of overload")
    parser.add_argument("--capacity-seconds", type=int, default=10)
    parser.add_argument(
        "--rate-factor", type=float, default=2.0, help="account rate limit, x capacity (0: off)"
    )
    args = parser.parse_args()
    lj.tool("wrk")
    results: dict[str, Any] = {"benchmark": "load", "settings": vars(args).copy()}
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        workdir = Path(tmp)
        database = workdir / "imagejobs.db"
        url = f"sqlite:///{database}"
        with server(url, workdir, "capacity") as srv:
            lj.log(f"seeding {args.jobs} jobs…")
            results["seed_s"] = lj.seed(url, lj.PROJECT, args.jobs, workdir)
            token = lj.demo_token(srv, workdir)
            list_url = srv.url(lj.PROJECT, lj.QUERY)
            lj.wrk(list_url, 2, 16, 1, {"X-Auth-Token": token})  # warm-up
            lj.log(f"capacity: {args.capacity_seconds} s of ListImageJobs, 16 connections…")
            capacity = lj.wrk(list_url, args.capacity_seconds, 16, 1, {"X-Auth-Token": token})
        rate = capacity["requests_per_s"]
        results["capacity"] = capacity
        limit = {"IMAGEJOBS_RATE_LIMIT": str(round(rate * args.rate_factor, 1))}
        script = workdir / "overload.lua"
        script.write_text(WRK_SCRIPT)
        with server(url, workdir, "overload", **(limit if args.rate_factor else {})) as srv:
            token = lj.demo_token(srv, workdir)
            lj.wrk(srv.url(lj.PROJECT, lj.QUERY), 2, 16, 1, {"X-Auth-Token": token})
            warm_rss = max(lj.rss_kb(pid) or 0 for pid in srv.workers)
            before = scrape(srv)
            lj.log(f"overload: {CONNECTIONS} connections for {args.duration} s…")
            run = overload(srv, token, args.duration, script)
            after = scrape(srv)
            ready = httpx.get(f"http://{lj.HOST}:{srv.port}/_imagejobs/ready", timeout=30)
            memory = srv.memory()
        mismatches = counter_mismatches(database)
    offered = run["answered"] / args.duration
    p99 = admitted_quantile(before, after, "ListImageJobs", 0.99)
    p50 = admitted_quantile(before, after, "ListImageJobs", 0.50)
    statuses = run["statuses"]
    results |= {
        "overload": run,
        "offered_per_s": round(offered, 1),
        "offered_x_capacity": round(offered / rate, 2),
        "admitted_list_p50_le_s": p50,
        "admitted_list_p99_le_s": p99,
        "ready_after": ready.status_code,
        "warm_worker_rss_mb": round(warm_rss / 1024, 1),
        "memory": memory,
        "counter_mismatches": mismatches,
    }
    shed = statuses.get(503, 0) + statuses.get(429, 0)
    others = {s: n for s, n in statuses.items() if s not in (200, 429, 503)}
    print(f"\ncapacity (ListImageJobs, 16 connections): {rate:,.0f} req/s")
    print(f"overload: {CONNECTIONS} connections, {args.duration} s, 1 in 10 a create")
    print(f"  answered {run['answered']:,} = {offered:,.0f}/s = {offered / rate:.1f} x capacity")
    print(f"  by status: {dict(sorted(statuses.items()))}; socket errors: {run['socket_errors']}")
    print(f"  admitted: {statuses.get(200, 0) / run['answered']:.1%}; shed 503/429: {shed:,}")
    print(f"  admitted ListImageJobs p50 <= {p50} s, p99 <= {p99} s (server histogram)")
    print(f"  every answer p99 (wrk): {run['p99_all_ms']} ms")
    warm, peak = results["warm_worker_rss_mb"], memory["max_worker_rss_mb"]
    print(f"  worker RSS: {warm} MB warm, peak {peak} MB")
    print(f"  afterwards: ready {ready.status_code}; counter mismatches: {len(mismatches)}")
    checks = {
        f"admitted p99 < {LATENCY_TARGET_S:g} s": p99 is not None and p99 < LATENCY_TARGET_S,
        "only 200/503/429, no socket error": not others and not run["socket_errors"],
        "still ready": ready.status_code == 200,
        "counts consistent": not mismatches,
    }
    for name, ok in checks.items():
        print(f"target: {name}: {lj.verdict(ok)}")
    results["targets"] = checks
    lj.RESULTS.mkdir(exist_ok=True)
    out = lj.RESULTS / f"load-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=1, default=str))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
