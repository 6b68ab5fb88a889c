"""Overload: imagejobs offered four times its measured capacity for a minute should stay
up, keep the latency of what it admits low, shed the rest fast (503 past the in-flight
bound, 429 past the account's rate), keep its memory bounded, and its counts exact.

1. Capacity: `imagejobs serve` (SQLite, one worker, IAM on, 10k jobs) under wrk with 16
   connections (a closed loop) for `--capacity-seconds`: C requests/s of ListImageJobs,
   and the server CPU time one of them costs.
2. Overload: a fresh server, as shipped (IMAGEJOBS_MAX_IN_FLIGHT 64) plus a per-account
   rate limit of `--rate-factor` x C, offered `--factor` x C requests/s for `--duration`
   seconds by `--generators` open-loop processes (bench/open_loop.py) on the other CPU:
   requests start on a fixed schedule whatever the answers, one in ten a
   CreateImageServer. Every answer is counted by status and error code; the latency of an
   admitted (200) answer runs from the time its request was due, so time spent queueing
   anywhere (kernel, server, generator) counts. The server's own histogram (/metrics,
   from arrival in the Python process) is printed beside it. Worker RSS is sampled every
   second.
3. Afterwards: /_imagejobs/ready, and every count in job_counters against the rows it
   counts (one SQLite snapshot).

Targets (issue: operations): offered >= 0.95 x factor x C; admitted p99 < 1 s; the rest
shed with 503/429 (or 403 WKS.00081105, the project's quota of jobs in flight); every
request answered; RSS of the second half <= 1.1 x the first half's; still ready; counts
consistent.

    .venv/bin/python bench/load.py [--jobs 10000] [--duration 60] [--factor 4]
        [--generators 1] [--rate-factor 2] [--max-in-flight 64] [--haproxy [--servers 2]]

With --haproxy, C and the overload both go through the documented API tier: HAProxy with
docs/haproxy.cfg as it is (pinned to the load CPU, beside the generator) in front of
`--servers` serve processes (on the server CPU), which holds at most `maxconn` requests
on each and answers the documented 503 itself, at once, to the rest.

Prints a table, writes JSON to bench/results/, exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

import list_jobs as lj
import report

MAX_IN_FLIGHT = 64
LATENCY_TARGET_S = 1.0
MEMORY_GROWTH_LIMIT = 1.10  # peak RSS of the second half over the first half's
GENERATORS = {"c": lj.BENCH / "open_loop.c", "python": lj.BENCH / "open_loop.py"}
QUOTA_CODE = "WKS.00081105"

# --haproxy: the documented API tier, docs/haproxy.cfg as it is: HAProxy holds at most
# `maxconn` requests on each server and answers the documented 503 itself, at once, to any
# request that would have to wait for a place, so that refusals cost no Python.
HAPROXY_CONFIG = lj.ROOT / "docs" / "haproxy.cfg"


@contextlib.contextmanager
def tier(servers: list[lj.Server]) -> Iterator[tuple[int, int]]:
    """HAProxy (docs/haproxy.cfg) on the load CPU in front of ``servers``; yields its
    port and pid once it passes requests."""
    server_ports = [srv.port for srv in servers]
    port = lj.free_port()
    env = {**os.environ, "IMAGEJOBS_LB_BIND": f"{lj.HOST}:{port}"}
    env |= {f"IMAGEJOBS_SERVER_{'AB'[k]}": f"{lj.HOST}:{p}" for k, p in enumerate(server_ports)}
    argv = [*lj.pinned(lj.WRK_CPU), lj.tool("haproxy"), "-db", "-f", str(HAPROXY_CONFIG)]
    proxy = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://{lj.HOST}:{port}/_imagejobs/ready", timeout=1).is_success:
                    break
            time.sleep(0.1)
        yield port, proxy.pid
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)


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
    environ = lj.clean_env(**{"IMAGEJOBS_MAX_IN_FLIGHT": str(MAX_IN_FLIGHT), **env})
    return lj.Server(name, argv, environ, port, workdir / f"{name}.log")


def build_generator(kind: str, workdir: Path) -> list[str]:
    """The open-loop generator's command: bench/open_loop.c compiled with Debian's cc
    (gcc), or bench/open_loop.py run by this Python."""
    if kind == "python":
        return [sys.executable, str(GENERATORS["python"])]
    binary = workdir / "open_loop"
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise SystemExit("cc not found: apt-get install gcc (or use --generator python)")
    subprocess.run([compiler, "-O2", "-o", str(binary), str(GENERATORS["c"])], check=True)
    return [str(binary)]


def overload(
    command: list[str], port: int, token: str, rate: float, duration: int, generators: int
) -> dict[str, Any]:
    """``generators`` open-loop processes on the load CPU, each offering rate/generators;
    their results merged."""
    argv = [*lj.pinned(lj.WRK_CPU), *command, "--port", str(port)]
    argv += ["--token", token, "--rate", str(rate / generators), "--duration", str(duration)]
    procs = [
        subprocess.Popen([*argv, "--index", str(k)], stdout=subprocess.PIPE, text=True)
        for k in range(generators)
    ]
    parts = [json.loads(p.communicate(timeout=duration + 60)[0]) for p in procs]
    statuses: dict[str, int] = {}
    for part in parts:
        for key, n in part["statuses"].items():
            statuses[key] = statuses.get(key, 0) + n
    admitted = {
        kind: sorted(ms for part in parts for ms in part["admitted_ms"][kind])
        for kind in ("list", "create")
    }
    admitted["all"] = sorted(admitted["list"] + admitted["create"])
    total = lambda key: sum(part[key] for part in parts)  # noqa: E731
    return {
        "offered": total("offered"),
        "schedule_s": max(part["schedule_s"] for part in parts),
        "statuses": dict(sorted(statuses.items())),
        "unanswered": total("unanswered"),
        "socket_errors": total("socket_errors"),
        "late_sends": total("late_sends"),
        "max_backlog": max(part["max_backlog"] for part in parts),
        "connections": total("connections"),
        "shed_ms_max": max(part["shed_ms_max"] for part in parts),
        "admitted_ms": {
            kind: {f"p{q}": quantile(values, q / 100) for q in (50, 99, 100)} | {"n": len(values)}
            for kind, values in admitted.items()
        },
    }


def quantile(values: list[float], q: float) -> float | None:
    return values[min(len(values) - 1, int(q * len(values)))] if values else None


class RssTimeline:
    """The server workers' RSS, sampled every second while the overload runs."""

    def __init__(self, servers: list[lj.Server]) -> None:
        self.servers = servers
        self.samples: list[tuple[float, float]] = []  # (seconds since start, MB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> RssTimeline:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        start = time.monotonic()
        while not self._stop.is_set():
            kb = max(lj.rss_kb(pid) or 0 for srv in self.servers for pid in srv.workers)
            self.samples.append((round(time.monotonic() - start, 1), round(kb / 1024, 1)))
            self._stop.wait(1.0)

    def halves(self) -> tuple[float, float]:
        """Peak MB of the first and the second half of the run."""
        middle = len(self.samples) // 2
        first = max(mb for _, mb in self.samples[: max(middle, 1)])
        second = max(mb for _, mb in self.samples[middle:])
        return first, second


def scrape(servers: list[lj.Server]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every server's metrics, summed."""
    metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for srv in servers:
        text = httpx.get(f"http://{lj.HOST}:{srv.port}/metrics", timeout=30).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                metrics[key] = metrics.get(key, 0) + sample.value
    return metrics


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
    parser.add_argument("--factor", type=float, default=4.0, help="offered rate, x capacity")
    parser.add_argument("--generators", type=int, default=1, help="load processes")
    parser.add_argument(
        "--generator", choices=sorted(GENERATORS), default="c", help="open loop in C or Python"
    )
    parser.add_argument(
        "--haproxy", action="store_true", help="through HAProxy (docs/haproxy.cfg), C too"
    )
    parser.add_argument(
        "--servers", type=int, default=1, choices=(1, 2), help="serve processes behind HAProxy"
    )
    parser.add_argument(
        "--max-in-flight", type=int, default=MAX_IN_FLIGHT, help="IMAGEJOBS_MAX_IN_FLIGHT"
    )
    parser.add_argument(
        "--rate-factor", type=float, default=2.0, help="account rate limit, x capacity (0: off)"
    )
    args = parser.parse_args()
    lj.tool("wrk")
    if args.haproxy:
        lj.tool("haproxy")
    results: dict[str, Any] = {"benchmark": "load", "settings": vars(args).copy()}
    count = args.servers if args.haproxy else 1
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        workdir = Path(tmp)
        generator = build_generator(args.generator, workdir)
        database = workdir / "imagejobs.db"
        url = f"sqlite:///{database}"
        with contextlib.ExitStack() as stack:
            servers = [
                stack.enter_context(server(url, workdir, f"capacity-{k}")) for k in range(count)
            ]
            lj.log(f"seeding {args.jobs} jobs…")
            results["seed_s"] = lj.seed(url, lj.PROJECT, args.jobs, workdir)
            token = lj.demo_token(servers[0], workdir)
            port = stack.enter_context(tier(servers))[0] if args.haproxy else servers[0].port
            list_url = f"http://{lj.HOST}:{port}/v1/{lj.PROJECT}/image-server-jobs?{lj.QUERY}"
            lj.wrk(list_url, 2, 16, 1, {"X-Auth-Token": token})  # warm-up
            lj.log(f"capacity: {args.capacity_seconds} s of ListImageJobs, 16 connections…")
            cpu_before = sum(srv.cpu_seconds() for srv in servers)
            capacity = lj.wrk(list_url, args.capacity_seconds, 16, 1, {"X-Auth-Token": token})
            capacity["server_cpu_s"] = sum(srv.cpu_seconds() for srv in servers) - cpu_before
            capacity["server_cpu_share"] = round(
                capacity["server_cpu_s"] / args.capacity_seconds, 2
            )
        rate = capacity["requests_per_s"]
        target = rate * args.factor
        results["capacity"] = capacity
        # The account's rate limit is kept by each process: share it out among them.
        limit = {"IMAGEJOBS_RATE_LIMIT": str(round(rate * args.rate_factor / count, 1))}
        env = {"IMAGEJOBS_MAX_IN_FLIGHT": str(args.max_in_flight)}
        env |= limit if args.rate_factor else {}
        with contextlib.ExitStack() as stack:
            servers = [
                stack.enter_context(server(url, workdir, f"overload-{k}", **env))
                for k in range(count)
            ]
            token = lj.demo_token(servers[0], workdir)
            port, proxy = (
                stack.enter_context(tier(servers)) if args.haproxy else (servers[0].port, 0)
            )
            list_url = f"http://{lj.HOST}:{port}/v1/{lj.PROJECT}/image-server-jobs?{lj.QUERY}"
            lj.wrk(list_url, 2, 16, 1, {"X-Auth-Token": token})  # warm-up
            before = scrape(servers)
            lj.log(f"overload: {target:,.0f} req/s open loop for {args.duration} s…")
            cpu_before = sum(srv.cpu_seconds() for srv in servers)
            proxy_before, generator_before = lj.cpu_seconds([proxy]), lj._children_cpu()
            started = time.monotonic()
            with RssTimeline(servers) as rss:
                run = overload(generator, port, token, target, args.duration, args.generators)
            server_cpu = sum(srv.cpu_seconds() for srv in servers) - cpu_before
            # The load CPU's work: the generator's and HAProxy's CPU seconds.
            load_cpu = {
                "generator_s": round(lj._children_cpu() - generator_before, 1),
                "haproxy_s": round(lj.cpu_seconds([proxy]) - proxy_before, 1) if proxy else 0,
            }
            wall = time.monotonic() - started
            after = scrape(servers)
            ready = httpx.get(f"http://{lj.HOST}:{servers[0].port}/_imagejobs/ready", timeout=30)
        mismatches = counter_mismatches(database)
    statuses = run["statuses"]
    by_status: dict[int, int] = {}
    for key, n in statuses.items():
        status = key.split()[1]
        if status.isdigit():
            by_status[int(status)] = by_status.get(int(status), 0) + n
    answered = sum(by_status.values())
    # A project's quota of jobs in flight (403 WKS.00081105) sheds creates too, by design.
    quota = sum(n for key, n in statuses.items() if key.endswith(f"403 {QUOTA_CODE}"))
    # What one answer costs the server in CPU, whatever share of its core it was given.
    list_cpu_us = capacity["server_cpu_s"] / capacity["requests"] * 1e6
    shed_cpu_us = (
        (server_cpu - by_status.get(200, 0) * list_cpu_us / 1e6)
        / max(answered - by_status.get(200, 0), 1)
        * 1e6
    )
    p50 = admitted_quantile(before, after, "ListImageJobs", 0.50)
    p99 = admitted_quantile(before, after, "ListImageJobs", 0.99)
    # 503s the processes gave themselves at their in-flight bound (the rest: HAProxy's).
    shed_key = ("imagejobs_requests_shed_total", (("reason", "in_flight"),))
    process_503 = round(after.get(shed_key, 0) - before.get(shed_key, 0))
    first_half_mb, second_half_mb = rss.halves()
    admitted = run["admitted_ms"]
    results |= {
        "target_per_s": round(target, 1),
        "overload": run,
        "answered_per_s": round(answered / args.duration, 1),
        "by_status": by_status,
        "server_list_p50_le_s": p50,
        "server_list_p99_le_s": p99,
        "process_503": process_503,
        "server_cpu_share": round(server_cpu / wall, 2),
        "load_cpu": load_cpu,
        "server_cpu_us": {"list": round(list_cpu_us), "refusal": round(shed_cpu_us)},
        "ready_after": ready.status_code,
        "rss_mb": rss.samples,
        "counter_mismatches": mismatches,
    }
    shed = by_status.get(503, 0) + by_status.get(429, 0) + quota
    others = {
        s: n
        for s, n in by_status.items()
        if s not in (200, 429, 503) and not (s == 403 and n == quota)
    }
    on_time = 1 - run["late_sends"] / run["offered"]
    print(f"\ncapacity C (ListImageJobs, 16 connections, closed loop): {rate:,.0f} req/s")
    print(f"  server CPU share during it: {capacity['server_cpu_share']:.0%} of its core")
    print(f"overload: open loop, {args.generators} generators, {args.duration} s, 1 in 10 a create")
    print(
        f"  offered {run['offered']:,} = {run['offered'] / args.duration:,.0f}/s"
        f" = {run['offered'] / args.duration / rate:.1f} x C; sent within 10 ms of due:"
        f" {on_time:.1%} (max backlog {run['max_backlog']}, {run['connections']} connections)"
    )
    print(
        f"  answered {answered:,} = {answered / args.duration:,.0f}/s;"
        f" unanswered {run['unanswered']}; socket errors {run['socket_errors']}"
    )
    print(f"  by status: {dict(sorted(by_status.items()))}; detail: {statuses}")
    print(
        f"  admitted: {by_status.get(200, 0) / max(answered, 1):.1%};"
        f" shed 503/429/403-quota: {shed:,}"
    )
    for kind in ("list", "create", "all"):
        a = admitted[kind]
        print(
            f"  admitted {kind} (from due time): n {a['n']:,} p50 {a['p50']} ms"
            f" p99 {a['p99']} ms max {a['p100']} ms"
        )
    print(f"  admitted ListImageJobs, server histogram: p50 <= {p50} s, p99 <= {p99} s")
    print(
        f"  503s given by the processes at their in-flight bound: {process_503:,}"
        f" (HAProxy's: {by_status.get(503, 0) - process_503:,})"
    )
    print(
        f"  slowest refusal: {run['shed_ms_max']} ms;"
        f" server CPU share during the overload: {server_cpu / wall:.0%} of its core"
    )
    print(
        f"  server CPU per answer: admitted ListImageJobs {list_cpu_us:.0f} us"
        f" (capacity run), refusal at most {shed_cpu_us:.0f} us (every admitted answer"
        " priced as a list: creates cost more; bench/refusal.py prices a refusal alone)"
    )
    print(
        f"  load CPU: generator {load_cpu['generator_s']} s, HAProxy {load_cpu['haproxy_s']} s"
        f" in {wall:.0f} s"
    )
    timeline = [mb for _, mb in rss.samples]
    print(f"  worker RSS (MB, every 10 s): {timeline[::10]}; peak {max(timeline)}")
    print(f"  afterwards: ready {ready.status_code}; counter mismatches: {len(mismatches)}")
    p99_all = admitted["all"]["p99"]
    checks = {
        f"offered >= {args.factor * 0.95:g} x C, sent on time": (
            run["offered"] / args.duration >= 0.95 * target and on_time >= 0.99
        ),
        f"admitted p99 < {LATENCY_TARGET_S:g} s": (
            p99_all is not None and p99_all < LATENCY_TARGET_S * 1000
        ),
        "only 200/503/429 (403 quota), every request answered": (
            not others and not run["socket_errors"] and not run["unanswered"]
        ),
        "memory bounded": second_half_mb <= first_half_mb * MEMORY_GROWTH_LIMIT,
        "still ready": ready.status_code == 200,
        "counts consistent": not mismatches,
    }
    for name, ok in checks.items():
        print(f"target: {name}: {lj.verdict(ok)}")
    results["targets"] = checks
    report.save("load", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
