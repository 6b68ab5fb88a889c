"""ListImageJobs under load: imagejobs against its practical limit, on SQLite and PostgreSQL.

For each database this seeds 10k jobs into the demo project and benchmarks three servers
while the jobs table holds only those rows: imagejobs as shipped (IAM on, the demo
account's X-Auth-Token on every request), imagejobs with IMAGEJOBS_AUTH=none, and the
raw-ASGI reference (bench/reference_app.py, the practical limit). Then it seeds 1M more
jobs into the same project and benchmarks all three again. Each server is one Granian
worker pinned to CPU 0, wrk (-t1 -c32, the same request bytes for all three) is pinned to
CPU 1, and the servers are driven in alternating rounds so that drift and background load
hit them alike. Also measured: a page at offset 100,000 (the first request and the median
of sequential ones), the workers' resident memory (VmRSS, sampled from /proc), the server
and database CPU time per request, the CPU other processes and the hypervisor took
meanwhile, and the seed time. See bench/README.md.

    .venv/bin/python bench/list_jobs.py [--jobs 1000000] [--duration 15]
        [--databases sqlite,postgresql]

By default the working tree's imagejobs runs. ``--git-ref REF`` runs ``src/`` of a commit
(exported with ``git archive``), ``--src DIR`` a copy of ``src/`` (a patched one, say); both
are put first on PYTHONPATH of every imagejobs process.

Results are printed and written as JSON to bench/results/ (git-ignored). The exit status
is 0 whether or not targets are met: a benchmark reports, it does not fail.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx

import report
from report import RESULTS, verdict  # noqa: F401 - other benchmarks use them from here

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENV_BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
# The demo project: the demo account imagejobs bootstraps on its first start owns it.
PROJECT = "a4da8115c9d8464ead3a38309130523f"
DEMO_CREDENTIALS = "demo-credentials.json"
QUERY = "job_type=CREATE_SERVER&status=SUCCESS&limit=10"
DEEP_OFFSET = 100_000
PG_DATABASE = "imagejobs_bench"
SERVER_CPU, WRK_CPU = 0, 1
APPS = ("imagejobs", "imagejobs-noauth", "reference")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
TARGETS = {
    "throughput_ratio_min": 0.5,  # imagejobs req/s / reference req/s, per database
    "p50_growth_max": 1.3,  # imagejobs p50 at 1M / p50 at 10k
    "deep_offset_ms_max": 25.0,  # page at offset 100,000 on SQLite at 1M, median
    "worker_rss_mb_max": 150.0,  # VmRSS per Granian worker
    "sqlite_seed_1m_s_max": 120.0,
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def human(n: int) -> str:
    if n >= 1_000_000 and n % 100_000 == 0:
        return f"{n / 1_000_000:g}M"
    if n >= 1_000 and n % 100 == 0:
        return f"{n / 1_000:g}k"
    return str(n)


def tool(name: str) -> str:
    found = VENV_BIN / name
    if found.exists():
        return str(found)
    path = shutil.which(name)
    if path is None:
        raise SystemExit(f"{name} not found (run with the project's .venv/bin/python)")
    return path


def pinned(cpu: int) -> list[str]:
    """``taskset -c CPU`` when taskset exists and the CPU does."""
    if shutil.which("taskset") and cpu < (os.cpu_count() or 1):
        return ["taskset", "-c", str(cpu)]
    return []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


# --- /proc -------------------------------------------------------------------------------


def _stat_fields(pid: int | str) -> list[str] | None:
    """Fields 3.. of /proc/PID/stat (the command name may hold spaces and parentheses)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def descendants(pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for child in _pids():
        fields = _stat_fields(child)
        if fields is not None:
            parents.setdefault(int(fields[1]), []).append(child)
    result, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        result += children
        todo += children
    return result


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of ``pids`` (those still alive)."""
    ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLOCK_TICKS


def postgres_backends(database: str) -> list[int]:
    """PostgreSQL backends serving ``database`` (their title names it; server-wide processes
    and other databases' backends count as other load)."""
    found = []
    for pid in _pids():
        with contextlib.suppress(OSError):
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            if title.startswith("postgres:") and f" {database} " in title:
                found.append(pid)
    return found


def busy_seconds(steal: bool = False) -> float:
    """CPU time all CPUs spent working since boot (or, with ``steal``, lost to the host)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    if steal:
        return values[7] / CLOCK_TICKS
    return (sum(values) - values[3] - values[4] - values[7]) / CLOCK_TICKS


def rss_kb(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) if match else None


def wait_for_quiet(budget: dict[str, float], limit: float = 10.0) -> float:
    """Wait (at most ``limit`` s, from a shared budget) until other work stops using a CPU."""
    start = time.monotonic()
    while time.monotonic() - start < min(limit, budget["quiet_wait_left_s"]):
        before = busy_seconds()
        time.sleep(0.5)
        if busy_seconds() - before < 0.05:  # under 10% of one CPU
            break
    waited = time.monotonic() - start
    budget["quiet_wait_left_s"] -= waited
    return round(waited, 1)


# --- servers -----------------------------------------------------------------------------


class Server:
    """A Granian server in its own process group, with a /proc memory sampler."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], port: int, log_path: Path
    ) -> None:
        self.name = name
        self.argv = pinned(SERVER_CPU) + argv
        self.env = env
        self.port = port
        self.log_path = log_path
        self.workers: list[int] = []
        self.headers: dict[str, str] = {}
        self.ready_timeout = 60.0  # seconds
        self.worker_rss_kb: dict[int, int] = {}
        self.master_rss_kb = 0
        self._stop = threading.Event()
        self._process: subprocess.Popen[bytes] | None = None
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def url(self, project: str, query: str) -> str:
        return f"http://{HOST}:{self.port}/v1/{project}/image-server-jobs?{query}"

    def __enter__(self) -> Server:
        with self.log_path.open("ab") as log_file:
            self._process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            self._wait_ready()
        except BaseException:
            self._terminate()
            raise
        self.workers = descendants(self._process.pid)
        self._sampler.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._sampler.is_alive():
            self._sampler.join()
        self._terminate()

    def cpu_seconds(self) -> float:
        assert self._process is not None
        return cpu_seconds([self._process.pid, *self.workers])

    def _wait_ready(self) -> None:
        assert self._process is not None
        url = self.url(PROJECT, QUERY)
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline and self._process.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2).status_code in (200, 401):  # 401: IAM is on
                    return
            time.sleep(0.1)
        tail = self.log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{self.name} did not start ({' '.join(self.argv)}):\n{tail}")

    def _sample(self) -> None:
        assert self._process is not None
        master = self._process.pid
        while not self._stop.is_set():
            self.master_rss_kb = max(self.master_rss_kb, rss_kb(master) or 0)
            for pid in self.workers:
                rss = rss_kb(pid)
                if rss is not None:
                    self.worker_rss_kb[pid] = max(self.worker_rss_kb.get(pid, 0), rss)
            self._stop.wait(0.25)

    def _terminate(self) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)  # Granian stops its workers, then exits
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the group this script started
            process.wait()

    def memory(self) -> dict[str, Any]:
        workers = sorted(self.worker_rss_kb.values(), reverse=True)
        return {
            "worker_rss_mb": [round(kb / 1024, 1) for kb in workers],
            "max_worker_rss_mb": round(workers[0] / 1024, 1) if workers else None,
            "master_rss_mb": round(self.master_rss_kb / 1024, 1),
        }


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGEJOBS_", "GRANIAN_"))}
    env.update(extra)
    return env


def imagejobs_server(url: str, workdir: Path, workers: int, auth: str) -> Server:
    name = "imagejobs" if auth == "iam" else f"imagejobs-no{auth}"
    port = free_port()
    argv = [tool("imagejobs"), "serve", "--host", HOST, "--port", str(port)]
    argv += ["--database-url", url, "--workers", str(workers), "--data-dir", str(workdir)]
    return Server(name, argv, clean_env(IMAGEJOBS_AUTH=auth), port, workdir / f"{name}.log")


def demo_token(server: Server, workdir: Path, credentials: dict[str, str] | None = None) -> str:
    """An X-Auth-Token of the demo account's root user (or of the holder of
    ``credentials``), scoped to its project."""
    demo = credentials or json.loads((workdir / DEMO_CREDENTIALS).read_text())
    if demo["project_id"] != PROJECT:
        raise RuntimeError(f"the demo project is {demo['project_id']}, not {PROJECT}")
    user = {"name": demo["user"], "password": demo["password"], "domain": {"name": demo["account"]}}
    body = {
        "auth": {
            "identity": {"methods": ["password"], "password": {"user": user}},
            "scope": {"project": {"name": demo["region"]}},
        }
    }
    url = f"http://{HOST}:{server.port}/v3/auth/tokens?nocatalog=true"
    response = httpx.post(url, json=body, timeout=30)
    response.raise_for_status()
    return response.headers["x-subject-token"]


def reference_server(url: str, workdir: Path, workers: int) -> Server:
    port = free_port()
    argv = [tool("granian"), "--interface", "asgi", "--host", HOST, "--port", str(port)]
    argv += ["--workers", str(workers), "--working-dir", str(BENCH), "reference_app:app"]
    env = clean_env(REFERENCE_DATABASE_URL=url)
    return Server("reference", argv, env, port, workdir / "reference.log")


# --- measurements ------------------------------------------------------------------------

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(
    url: str, duration: int, connections: int, threads: int, headers: dict[str, str]
) -> dict[str, Any]:
    argv = [*pinned(WRK_CPU), "wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s"]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    argv += ["--latency", url]
    out = subprocess.run(
        argv, capture_output=True, text=True, check=True, timeout=duration + 60
    ).stdout
    return parse_wrk(out)


def parse_wrk(out: str) -> dict[str, Any]:
    """wrk --latency's report: rate, percentiles, requests, non-2xx answers, socket errors."""
    percentiles = {
        f"p{m.group(1)}_ms": round(float(m.group(2)) * _UNITS[m.group(3)], 3)
        for m in re.finditer(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    }
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    if rps is None or total is None or "p50_ms" not in percentiles:
        raise RuntimeError(f"cannot parse wrk output:\n{out}")
    return {
        "requests_per_s": round(float(rps.group(1)), 1),
        **percentiles,
        "requests": int(total.group(1)),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else None,
    }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measured_wrk(
    server: Server, url: str, args: argparse.Namespace, duration: int, postgres: bool
) -> dict[str, Any]:
    """One wrk run, with the CPU time each party used during it."""

    def backends() -> dict[int, float]:
        if not postgres:
            return {}
        return {pid: cpu_seconds([pid]) for pid in postgres_backends(PG_DATABASE)}

    start = time.monotonic()
    busy, mine, db, load = busy_seconds(), server.cpu_seconds(), backends(), _children_cpu()
    stolen = busy_seconds(steal=True)
    run = wrk(url, duration, args.connections, args.threads, server.headers)
    elapsed = time.monotonic() - start
    mine = server.cpu_seconds() - mine
    # A backend that started during the run counts whole; one that ended is lost (rare).
    db_used = sum(cpu - db.get(pid, 0.0) for pid, cpu in backends().items())
    load = _children_cpu() - load
    others = busy_seconds() - busy - mine - db_used - load
    stolen = busy_seconds(steal=True) - stolen
    run["server_cpu_us_per_request"] = round(mine / run["requests"] * 1e6, 1)
    run["server_cpu_busy"] = round(mine / elapsed, 2)  # CPUs' worth; 1.0 = saturated
    if postgres:
        run["postgres_cpu_us_per_request"] = round(db_used / run["requests"] * 1e6, 1)
    run["wrk_cpu_busy"] = round(load / elapsed, 2)
    run["other_cpu_busy"] = round(max(others, 0.0) / elapsed, 2)
    run["steal_cpu"] = round(stolen / elapsed, 2)  # time the hypervisor gave to others
    return run


def combine(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over rounds; CPU per request over all of them."""
    keys = ("requests_per_s", "p50_ms", "p75_ms", "p90_ms", "p99_ms")
    result: dict[str, Any] = {k: round(statistics.median(r[k] for r in rounds), 3) for k in keys}
    requests = sum(r["requests"] for r in rounds)
    for key in ("server_cpu_us_per_request", "postgres_cpu_us_per_request"):
        if key in rounds[0]:
            result[key] = round(sum(r[key] * r["requests"] for r in rounds) / requests, 1)
    result["other_cpu_busy_max"] = max(r["other_cpu_busy"] for r in rounds)
    result["steal_cpu_max"] = max(r["steal_cpu"] for r in rounds)
    result["requests"] = requests
    result["errors"] = sum(r["non_2xx"] for r in rounds) + sum(
        1 for r in rounds if r["socket_errors"]
    )
    result["rounds"] = rounds
    return result


def sequential(url: str, samples: int, headers: dict[str, str]) -> dict[str, Any]:
    """The first request on a new connection, then ``samples`` more, one at a time."""
    times = []
    with httpx.Client(timeout=30, headers=headers) as client:
        for _ in range(samples + 1):
            start = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - start) * 1000)
            response.raise_for_status()
    first, rest = times[0], sorted(times[1:])
    return {
        "first_ms": round(first, 2),
        "median_ms": round(statistics.median(rest), 2),
        "p90_ms": round(rest[max(int(len(rest) * 0.9) - 1, 0)], 2),
        "min_ms": round(rest[0], 2),
        "samples": samples,
    }


def seed(url: str, project: str, jobs: int, workdir: Path) -> float:
    argv = [tool("imagejobs"), "seed", "--database-url", url, "--data-dir", str(workdir)]
    argv += ["--project-id", project]
    argv += ["--jobs", str(jobs), "--sub-jobs", "1", "--random-seed", "1"]
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=clean_env(), check=False)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"seeding failed:\n{done.stderr[-3000:]}")
    return round(seconds, 1)


# --- databases ---------------------------------------------------------------------------


def _dsn(url: str) -> str:
    return re.sub(r"^postgres\w*(\+\w+)?://", "postgresql://", url)


async def _admin(url: str, *statements: str) -> None:
    connection = await asyncpg.connect(_dsn(url))
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


async def _fetchval(url: str, query: str) -> Any:
    connection = await asyncpg.connect(_dsn(url))
    try:
        return await connection.fetchval(query)
    finally:
        await connection.close()


@contextlib.contextmanager
def database(kind: str, workdir: Path, admin_url: str) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'bench.db'}"
        return
    drop = f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)"
    asyncio.run(_admin(admin_url, drop, f"CREATE DATABASE {PG_DATABASE}"))
    try:
        url = re.sub(r"/[^/?]*(\?.*)?$", f"/{PG_DATABASE}", admin_url, count=1)
        migrate = [tool("imagejobs"), "migrate", "--database-url", url]
        subprocess.run(migrate, check=True, capture_output=True, env=clean_env())
        yield url
    finally:
        asyncio.run(_admin(admin_url, drop))


def table_rows(kind: str, url: str) -> int:
    query = "SELECT count(*) FROM jobs"
    if kind == "sqlite":
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as connection:
            return int(connection.execute(query).fetchone()[0])
    return int(asyncio.run(_fetchval(url, query)))


def database_version(kind: str, admin_url: str) -> str:
    if kind == "sqlite":
        return f"SQLite {sqlite3.sqlite_version}"
    return f"PostgreSQL {asyncio.run(_fetchval(admin_url, 'SHOW server_version'))}"


def postgres_unreachable(admin_url: str) -> str | None:
    try:
        asyncio.run(_admin(admin_url, "SELECT 1"))
    except (OSError, asyncpg.PostgresError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


# --- one database ------------------------------------------------------------------------


def bench_database(
    kind: str, args: argparse.Namespace, workdir: Path, budget: dict[str, float]
) -> dict[str, Any]:
    result: dict[str, Any] = {"database": database_version(kind, args.postgres_url)}
    result["seed_s"], result["sizes"] = {}, {}
    with database(kind, workdir, args.postgres_url) as url:
        for jobs, deep in ((args.small_jobs, False), (args.jobs, True)):
            size = human(jobs)
            log(f"{kind}: seeding {jobs} more jobs into project {PROJECT}…")
            result["seed_s"][size] = seed(url, PROJECT, jobs, workdir)
            log(f"{kind}: seeded {size} jobs in {result['seed_s'][size]} s")
            measured = bench_size(f"{kind} {size}", url, deep, args, workdir, budget)
            measured["jobs_table_rows"] = table_rows(kind, url)
            result["sizes"][size] = measured
    return result


def bench_size(
    label: str,
    url: str,
    deep: bool,
    args: argparse.Namespace,
    workdir: Path,
    budget: dict[str, float],
) -> dict[str, Any]:
    measured: dict[str, Any] = {name: {} for name in APPS}
    postgres = not url.startswith("sqlite:")
    with contextlib.ExitStack() as stack:
        # imagejobs with IAM starts first: on a new database it bootstraps the demo account.
        servers = {
            "imagejobs": stack.enter_context(imagejobs_server(url, workdir, args.workers, "iam")),
            "imagejobs-noauth": stack.enter_context(
                imagejobs_server(url, workdir, args.workers, "none")
            ),
            "reference": stack.enter_context(reference_server(url, workdir, args.workers)),
        }
        headers = {"X-Auth-Token": demo_token(servers["imagejobs"], workdir)}
        bodies = {}
        for name, server in servers.items():
            server.headers = headers  # the same request bytes for every server
            page = httpx.get(server.url(PROJECT, QUERY), headers=headers, timeout=30)
            page.raise_for_status()
            bodies[name], count = page.content, page.json()["count"]
        measured["count"] = count
        measured["bodies_identical"] = len(set(bodies.values())) == 1
        if deep:
            offset = DEEP_OFFSET if count > DEEP_OFFSET + 10 else count // 2
            for name, server in servers.items():
                page_url = server.url(PROJECT, f"{QUERY}&offset={offset}")
                timing = sequential(page_url, args.samples, headers)
                measured[name]["deep_offset"] = {"offset": offset, **timing}
                log(f"{label} {name}: offset {offset}: {timing}")
        for name, server in servers.items():
            list_url = server.url(PROJECT, QUERY)
            measured[name]["unloaded"] = sequential(list_url, args.samples, headers)
            wrk(list_url, args.warmup, args.connections, args.threads, headers)
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in APPS}
        per_round = max(1, round(args.duration / args.rounds))
        for number in range(args.rounds):
            for name in APPS if number % 2 == 0 else APPS[::-1]:
                waited = wait_for_quiet(budget)
                server = servers[name]
                run = measured_wrk(server, server.url(PROJECT, QUERY), args, per_round, postgres)
                run["waited_for_quiet_s"] = waited
                rounds[name].append(run)
                log(
                    f"{label} {name} round {number + 1}: {run['requests_per_s']:.0f} req/s,"
                    f" p50 {run['p50_ms']} ms, {run['server_cpu_us_per_request']} µs CPU/req,"
                    f" other load {run['other_cpu_busy']} CPUs, steal {run['steal_cpu']}"
                )
        for name in APPS:
            measured[name]["wrk"] = combine(rounds[name])
    for name, server in servers.items():
        measured[name].update(server.memory())
    return measured


# --- report ------------------------------------------------------------------------------


def _ratio(measured: dict[str, Any], key: str, app: str = "imagejobs") -> float:
    """``app`` relative to the reference: > 1 is better, for req/s and for CPU per request."""
    mine, ref = measured[app]["wrk"][key], measured["reference"]["wrk"][key]
    return round(ref / mine if key.endswith("per_request") else mine / ref, 3)


def summarize(results: dict[str, Any], small: str, large: str) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    for kind, data in results["databases"].items():
        if "sizes" not in data:
            continue
        sizes = data["sizes"]
        mine = sizes[large]["imagejobs"]
        ratio = _ratio(sizes[large], "requests_per_s")
        growth = round(mine["wrk"]["p50_ms"] / sizes[small]["imagejobs"]["wrk"]["p50_ms"], 3)
        rss = max(
            sizes[size][app]["max_worker_rss_mb"] or 0
            for size in (small, large)
            for app in ("imagejobs", "imagejobs-noauth")
        )
        check: dict[str, Any] = {
            "throughput_ratio": ratio,
            "throughput_ratio_met": ratio >= TARGETS["throughput_ratio_min"],
            "throughput_ratio_small": _ratio(sizes[small], "requests_per_s"),
            "throughput_ratio_noauth": _ratio(sizes[large], "requests_per_s", "imagejobs-noauth"),
            "cpu_ratio": _ratio(sizes[large], "server_cpu_us_per_request"),
            "cpu_ratio_noauth": _ratio(
                sizes[large], "server_cpu_us_per_request", "imagejobs-noauth"
            ),
            "p50_growth": growth,
            "p50_growth_met": growth <= TARGETS["p50_growth_max"],
            "unloaded_median_growth": round(
                mine["unloaded"]["median_ms"] / sizes[small]["imagejobs"]["unloaded"]["median_ms"],
                3,
            ),
            "max_worker_rss_mb": rss,
            "worker_rss_met": rss <= TARGETS["worker_rss_mb_max"],
            "deep_offset": mine["deep_offset"]["offset"],
            "deep_offset_median_ms": mine["deep_offset"]["median_ms"],
            "deep_offset_first_ms": mine["deep_offset"]["first_ms"],
            "deep_offset_reference_median_ms": sizes[large]["reference"]["deep_offset"][
                "median_ms"
            ],
            "deep_offset_met": None,
            "seed_large_s": data["seed_s"][large],
            "seed_met": None,
            "other_cpu_busy_max": max(
                sizes[size][app]["wrk"]["other_cpu_busy_max"] for size in sizes for app in APPS
            ),
            "steal_cpu_max": max(
                sizes[size][app]["wrk"]["steal_cpu_max"] for size in sizes for app in APPS
            ),
            "failed_requests": sum(
                sizes[size][app]["wrk"]["errors"] for size in sizes for app in APPS
            ),
        }
        if kind == "sqlite":
            deep_ok = mine["deep_offset"]["median_ms"] <= TARGETS["deep_offset_ms_max"]
            check["deep_offset_met"] = deep_ok
            check["seed_met"] = data["seed_s"][large] <= TARGETS["sqlite_seed_1m_s_max"]
        checks[kind] = check
    return checks


def print_report(results: dict[str, Any], small: str, large: str) -> None:
    def out(line: str = "") -> None:
        print(line, file=sys.stdout)

    settings = results["settings"]
    out(
        f"\nListImageJobs ?{QUERY}: wrk -t{settings['threads']} -c{settings['connections']},"
        f" {settings['rounds']} alternating rounds of {settings['duration'] // settings['rounds']}"
        f" s per server, {settings['workers']} Granian worker(s); medians over rounds."
        "\nratio: imagejobs / reference (req/s), reference / imagejobs (CPU per request)\n"
    )
    header = f"{'database':<11}{'+jobs':>6}  {'server':<17}{'req/s':>7}{'p50 ms':>8}"
    header += f"{'p99 ms':>8}{'CPU µs/req':>11}{'DB µs/req':>10}{'RSS MB':>8}"
    out(header)
    out("-" * len(header))
    for kind, data in results["databases"].items():
        if "sizes" not in data:
            out(f"{kind:<11}skipped: {data.get('skipped')}")
            continue
        for size, measured in data["sizes"].items():
            lead = f"{kind:<11}{size:>6}  "
            for app in APPS:
                w = measured[app]["wrk"]
                db_cpu = w.get("postgres_cpu_us_per_request")
                out(
                    f"{lead}{app:<17}{w['requests_per_s']:>7.0f}{w['p50_ms']:>8.2f}"
                    f"{w['p99_ms']:>8.2f}{w['server_cpu_us_per_request']:>11.0f}"
                    f"{'-' if db_cpu is None else f'{db_cpu:.0f}':>10}"
                    f"{measured[app]['max_worker_rss_mb']:>8.1f}"
                )
            for app in APPS[:-1]:
                out(
                    f"{lead}{'ratio ' + app.removeprefix('imagejobs'):<17}"
                    f"{_ratio(measured, 'requests_per_s', app):>7.2f}{'':>16}"
                    f"{_ratio(measured, 'server_cpu_us_per_request', app):>11.2f}"
                )
            same = "identical" if measured["bodies_identical"] else "DIFFERENT"
            out(f"{lead}jobs table {measured['jobs_table_rows']} rows, response bodies {same}")
    out("\nTargets (imagejobs as shipped, IAM on)")
    for kind, c in results["checks"].items():
        out(
            f"  {kind}: req/s imagejobs/reference at {large}: {c['throughput_ratio']:.2f}"
            f" (target >= {TARGETS['throughput_ratio_min']}) {verdict(c['throughput_ratio_met'])}"
            f"  [at {small}: {c['throughput_ratio_small']:.2f}; IAM off:"
            f" {c['throughput_ratio_noauth']:.2f}; by server CPU/request: {c['cpu_ratio']:.2f},"
            f" IAM off {c['cpu_ratio_noauth']:.2f}]"
        )
        out(
            f"  {kind}: imagejobs p50 {large} / p50 {small}: {c['p50_growth']:.2f}"
            f" (target <= {TARGETS['p50_growth_max']}) {verdict(c['p50_growth_met'])}"
            f"  [one request at a time, median: {c['unloaded_median_growth']:.2f}]"
        )
        deep = f"{kind}: page at offset {c['deep_offset']} at {large}:"
        deep += f" median {c['deep_offset_median_ms']}"
        deep += f" ms, first request {c['deep_offset_first_ms']} ms"
        if c["deep_offset_met"] is not None:
            deep += f" (target <= {TARGETS['deep_offset_ms_max']:g} ms)"
            deep += f" {verdict(c['deep_offset_met'])}"
        deep += f"  [reference: median {c['deep_offset_reference_median_ms']} ms]"
        out(f"  {deep}")
        out(
            f"  {kind}: max worker RSS {c['max_worker_rss_mb']} MB"
            f" (target <= {TARGETS['worker_rss_mb_max']:g} MB) {verdict(c['worker_rss_met'])}"
        )
        seed_line = f"{kind}: seed {large} jobs: {c['seed_large_s']} s"
        if c["seed_met"] is not None:
            seed_line += f" (target < {TARGETS['sqlite_seed_1m_s_max']:g} s)"
            seed_line += f" {verdict(c['seed_met'])}"
        out(f"  {seed_line}")
        if c["failed_requests"]:
            out(
                f"  {kind}: WARNING {c['failed_requests']} non-2xx answers or rounds with"
                " socket errors: see the JSON and the server logs"
            )
        if c["other_cpu_busy_max"] >= 0.1 or c["steal_cpu_max"] >= 0.1:
            out(
                f"  {kind}: WARNING in some round other processes used up to"
                f" {c['other_cpu_busy_max']} CPUs and the hypervisor took {c['steal_cpu_max']}:"
                " req/s and latencies are disturbed (CPU per request less so)"
            )


# --- source and environment --------------------------------------------------------------


def _first_line(argv: list[str]) -> str | None:
    with contextlib.suppress(OSError, subprocess.CalledProcessError, IndexError):
        done = subprocess.run(argv, capture_output=True, text=True, check=True)
        return (done.stdout or done.stderr).strip().splitlines()[0]
    return None


def _git(*args: str) -> list[str]:
    # Read-only commands only; no optional locks, so not even the index is refreshed.
    return ["git", "--no-optional-locks", "-C", str(ROOT), *args]


def export_source(ref: str, directory: Path) -> dict[str, Any]:
    commit = _first_line(_git("rev-parse", "--verify", f"{ref}^{{commit}}"))
    if commit is None:
        raise SystemExit(f"unknown git ref: {ref}")
    archive = subprocess.run(
        _git("archive", "--format=tar", commit, "src"), capture_output=True, check=True
    )
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(directory, filter="data")
    os.environ["PYTHONPATH"] = str(directory / "src")
    return {"kind": "git", "git_ref": ref, "commit": commit}


def given_source(src: Path) -> dict[str, Any]:
    src = src.resolve()
    if not (src / "imagejobs" / "__init__.py").exists():
        raise SystemExit(f"--src {src}: no imagejobs package in it")
    os.environ["PYTHONPATH"] = str(src)
    return {"kind": "directory", "src": str(src)}


def working_tree_source() -> dict[str, Any]:
    diff = subprocess.run(_git("diff", "--quiet", "HEAD", "--", "src"), check=False)
    untracked = _first_line(_git("ls-files", "--others", "--exclude-standard", "src"))
    return {
        "kind": "working tree",
        "commit": _first_line(_git("rev-parse", "HEAD")),
        "src_differs_from_commit": diff.returncode != 0 or untracked is not None,
    }


def _version(argv: list[str]) -> str | None:
    with contextlib.suppress(OSError):
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        lines = (done.stdout or done.stderr).strip().splitlines()
        return lines[0] if lines else None
    return None


def environment() -> dict[str, Any]:
    cpu = re.search(r"^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu.group(1) if cpu else platform.processor(),
        "pinned": bool(pinned(WRK_CPU)),
        "load_average_at_start": Path("/proc/loadavg").read_text().split()[:3],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "granian": _version([tool("granian"), "--version"]),
        "wrk": _version(["wrk", "-v"]),
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000, help="jobs in the large project")
    parser.add_argument("--small-jobs", type=int, default=10_000, help="jobs in the small one")
    parser.add_argument("--duration", type=int, default=15, help="wrk seconds per server")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds they make up")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of wrk warm-up")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="Granian workers, both servers")
    parser.add_argument("--samples", type=int, default=50, help="sequential requests timed")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=90,
        help="seconds in all to wait, before rounds, for other processes to stop using a CPU",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--git-ref", help="benchmark src/ at this commit")
    source.add_argument("--src", type=Path, help="benchmark this copy of src/")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
        help=f"an existing database to connect to, to create and drop {PG_DATABASE}",
    )
    args = parser.parse_args()
    aliases = {"sqlite": "sqlite", "postgresql": "postgresql", "postgres": "postgresql"}
    names = [name.strip().lower() for name in args.databases.split(",") if name.strip()]
    unknown = sorted(set(names) - set(aliases))
    if unknown:
        parser.error(f"unknown database(s): {', '.join(unknown)}")
    args.kinds = list(dict.fromkeys(aliases[name] for name in names))
    if args.small_jobs >= args.jobs:
        parser.error("--small-jobs must be below --jobs")
    if args.rounds < 1 or args.duration < args.rounds:
        parser.error("--duration must be at least --rounds (whole seconds per round)")
    return args


def main() -> int:
    args = parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    if pinned(WRK_CPU):
        # Keep this driver (memory sampler, httpx timings) off the servers' CPU.
        os.sched_setaffinity(0, {WRK_CPU})
    started = time.perf_counter()
    small, large = human(args.small_jobs), human(args.jobs)
    results: dict[str, Any] = {
        "benchmark": "ListImageJobs",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "query": QUERY,
        "settings": {
            k: str(v) if isinstance(v, Path) else v
            for k, v in vars(args).items()
            if k not in ("kinds", "postgres_url")
        },
        "environment": environment(),
        "targets": TARGETS,
        "databases": {},
    }
    budget = {"quiet_wait_left_s": args.quiet_wait}
    with contextlib.ExitStack() as stack:
        if args.git_ref:
            snapshot = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="imagejobs-")))
            results["source"] = export_source(args.git_ref, snapshot)
        elif args.src:
            results["source"] = given_source(args.src)
        else:
            results["source"] = working_tree_source()
        log(f"imagejobs from: {results['source']}")
        for kind in args.kinds:
            if kind == "postgresql" and (reason := postgres_unreachable(args.postgres_url)):
                log(f"postgresql skipped: {reason}")
                results["databases"][kind] = {"skipped": reason}
                continue
            with tempfile.TemporaryDirectory(prefix=f"imagejobs-bench-{kind}-") as tmp:
                results["databases"][kind] = bench_database(kind, args, Path(tmp), budget)
    results["checks"] = summarize(results, small, large)
    results["quiet_wait_used_s"] = round(args.quiet_wait - budget["quiet_wait_left_s"], 1)
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    print_report(results, small, large)
    print(f"\nTotal {results['elapsed_s']} s.")
    report.save("list_jobs", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
