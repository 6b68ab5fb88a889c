"""Where a served ListImageJobs request's CPU goes: imagejobs against the lean limit.

Starts both servers as ``list_limit.py`` does (one Granian worker each on CPU 0, the same
SQLite file, the same AK/SK-signed request for imagejobs) and loads each with wrk on
CPU 1. During the load it reads, for the worker process, per request:

- user and system CPU by thread (the event loop thread, Granian's Rust runtime thread,
  Granian's other threads), and each thread's voluntary and involuntary context switches
  (``/proc/PID/task/TID``);
- ``perf stat`` software events (task clock, context switches, system calls): on a VM
  without hardware counters (cycles, instructions, cache misses are "not supported"),
  these are what perf can count;
- with ``--record``, ``perf record -e cpu-clock`` samples by shared object (Python,
  kernel, SQLite, Granian, libc), written to ``WORKDIR/perf-NAME.data`` for
  ``perf report -i ... --sort dso,sym``;
- with ``--syscalls``, system calls by name (``perf trace -s``; it slows the server, so
  counts are per request of that window).

    .venv/bin/python bench/list_probe.py --workdir DIR [--duration 8] [--rounds 1]
        [--connections 32] [--record] [--syscalls] [--only imagejobs|lean]
        [--lean-args "--http 1 ..."] [--lean-spin-us 100] [--imagejobs-env K=V,...]

``--workdir`` is a seeded ``list_limit.py --workdir``. Prints one JSON line per server and
round; writes nothing else. Needs wrk, perf and orjson.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

import list_jobs as lj
from auth_overhead import signed_headers
from list_limit import imagejobs_server, lean_server

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
EVENTS = "task-clock,context-switches,cpu-migrations,page-faults,raw_syscalls:sys_enter"


def thread_stats(pid: int) -> dict[int, tuple[str, int, int, int, int]]:
    """tid -> (name, user ticks, system ticks, voluntary, involuntary switches)."""
    result = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError, AttributeError):
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            voluntary = re.search(r"^voluntary_ctxt_switches:\s+(\d+)", status, re.M)
            involuntary = re.search(r"^nonvoluntary_ctxt_switches:\s+(\d+)", status, re.M)
            result[int(tid)] = (
                stat[stat.index("(") + 1 : stat.rindex(")")],
                int(fields[11]),
                int(fields[12]),
                int(voluntary.group(1)),  # type: ignore[union-attr]
                int(involuntary.group(1)),  # type: ignore[union-attr]
            )
    return result


def wrk_argv(server: lj.Server, connections: int, seconds: int) -> list[str]:
    argv = [*lj.pinned(lj.WRK_CPU), "wrk", "-t1", f"-c{connections}", f"-d{seconds}s"]
    for name, value in server.headers.items():
        argv += ["-H", f"{name}: {value}"]
    return [*argv, server.url(lj.PROJECT, lj.QUERY)]


def under_load(server: lj.Server, connections: int, seconds: int, argv: list[str]) -> str:
    """Run ``argv`` (which must end within ``seconds`` - 2) while wrk loads ``server``."""
    wrk = subprocess.Popen(wrk_argv(server, connections, seconds), stdout=subprocess.PIPE)
    time.sleep(1)
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    wrk.communicate()
    return done.stdout + done.stderr


def probe(server: lj.Server, args: argparse.Namespace) -> dict[str, Any]:
    (worker,) = server.workers
    before = thread_stats(worker)
    wrk = subprocess.Popen(
        wrk_argv(server, args.connections, args.duration), stdout=subprocess.PIPE, text=True
    )
    time.sleep(1)
    window = args.duration - 3
    perf = subprocess.run(
        ["perf", "stat", "-x,", "-e", EVENTS, "-p", str(worker), "--", "sleep", str(window)],
        capture_output=True,
        text=True,
        check=False,
    )
    out = wrk.communicate()[0]
    after = thread_stats(worker)
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    events = {}
    for line in perf.stderr.splitlines():
        parts = line.split(",")
        if len(parts) > 3 and parts[0].replace(".", "").isdigit():
            events[parts[2]] = float(parts[0])
    threads: dict[str, dict[str, float]] = {}
    for tid, (name, user, system, voluntary, involuntary) in after.items():
        old = before.get(tid, (name, 0, 0, 0, 0))
        label = "event loop" if tid == worker else f"{name}:{tid}"
        threads[label] = {
            "user_us": round((user - old[1]) / CLOCK_TICKS / total * 1e6, 1),
            "sys_us": round((system - old[2]) / CLOCK_TICKS / total * 1e6, 1),
            "voluntary_switches": round((voluntary - old[3]) / total, 3),
            "involuntary_switches": round((involuntary - old[4]) / total, 3),
        }
    return {
        "requests_per_s": rps,
        "user_us": round(sum(t["user_us"] for t in threads.values()), 1),
        "sys_us": round(sum(t["sys_us"] for t in threads.values()), 1),
        "threads": threads,
        # perf's window is shorter than wrk's: per request of that window.
        "perf_per_request": {k: round(v / (rps * window), 3) for k, v in events.items()},
    }


def syscalls_by_name(server: lj.Server, connections: int) -> dict[str, float]:
    """System calls per request by name, over 3 s of ``perf trace -s``."""
    (worker,) = server.workers
    argv = ["perf", "trace", "-s", "-p", str(worker), "--", "sleep", "3"]
    text = under_load(server, connections, 6, argv)
    counts: dict[str, int] = {}
    for match in re.finditer(r"^\s+(\w+)\s+(\d+)\s+\d+\s", text, re.M):
        counts[match.group(1)] = counts.get(match.group(1), 0) + int(match.group(2))
    # Requests answered in the window: one writev (Granian's response) each.
    answered = counts.get("writev", 0) or 1
    return {name: round(n / answered, 2) for name, n in sorted(counts.items())}


def record(server: lj.Server, connections: int, path: Path) -> None:
    (worker,) = server.workers
    argv = ["perf", "record", "-q", "-e", "cpu-clock", "-F", "4000", "-o", str(path)]
    under_load(server, connections, 6, [*argv, "-p", str(worker), "--", "sleep", "4"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="a seeded list_limit dir")
    parser.add_argument("--duration", type=int, default=8, help="seconds of load per probe")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--record", action="store_true", help="perf record -e cpu-clock")
    parser.add_argument("--syscalls", action="store_true", help="system calls by name")
    parser.add_argument("--only", choices=("imagejobs", "lean"))
    parser.add_argument("--lean-args", default="", help="more Granian options for lean")
    parser.add_argument(
        "--lean-spin-us", type=int, default=0, help="busy loop per lean request (lean_spin.py)"
    )
    parser.add_argument("--lean-app", default="", help="another app for lean (module:attr)")
    parser.add_argument("--imagejobs-env", default="", help="K=V,... for imagejobs serve")
    args = parser.parse_args()
    path = args.workdir / "imagejobs.db"
    with contextlib.ExitStack() as stack:
        servers: dict[str, lj.Server] = {}
        if args.only != "lean":
            imagejobs = imagejobs_server(f"sqlite:///{path}", args.workdir)
            for pair in filter(None, args.imagejobs_env.split(",")):
                key, _, value = pair.partition("=")
                imagejobs.env[key] = value
            servers["imagejobs"] = stack.enter_context(imagejobs)
            servers["imagejobs"].headers = signed_headers(imagejobs, args.workdir)
        if args.only != "imagejobs":
            lean = lean_server(path, args.workdir)
            lean.argv[-1:-1] = args.lean_args.split()
            if args.lean_app:
                lean.argv[-1] = args.lean_app
            if args.lean_spin_us:
                lean.argv[-1] = "lean_spin:app"
                lean.env["SPIN_US"] = str(args.lean_spin_us)
            servers["lean"] = stack.enter_context(lean)
        for server in servers.values():
            url = server.url(lj.PROJECT, lj.QUERY)
            httpx.get(url, headers=server.headers).raise_for_status()
            lj.wrk(url, 2, args.connections, 1, server.headers)  # warm-up
        for _ in range(args.rounds):
            for name, server in servers.items():
                result = probe(server, args)
                if args.syscalls:
                    result["syscalls_per_request"] = syscalls_by_name(server, args.connections)
                if args.record:
                    record(server, args.connections, args.workdir / f"perf-{name}.data")
                result["load_average"] = os.getloadavg()
                print(name, json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
