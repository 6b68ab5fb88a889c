"""What observability costs ListImageJobs: metrics and the access log on vs. off.

One SQLite database with 100k jobs in the demo project and three imagejobs servers
(`IMAGEJOBS_AUTH=none`, so that the request's own work is smallest and the overhead's
share largest), one Granian worker each, all pinned to CPU 0:

- `off`: `IMAGEJOBS_METRICS=false IMAGEJOBS_ACCESS_LOG=false`: the baseline;
- `metrics`: metrics on (every request counted and timed), access log off;
- `all`: as shipped: metrics and one access line per request (to a file, as JSON).

The three wrk clients run at the same time, in rounds, as in `auth_overhead.py` (whose
docstring explains why simultaneous rounds are the steady way to compare on a shared
machine); each round's ratio is a client's requests/s over the baseline's in that round,
and the verdict uses the median over rounds.

Target (issue: operations): ListImageJobs throughput with metrics on >= 0.95 x off.

    .venv/bin/python bench/ops_overhead.py [--jobs 100000] [--rounds 8] [--duration 6]

Prints a table, writes JSON to bench/results/, exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

import list_jobs as lj
import report
from auth_overhead import simultaneous_round

TARGET_MIN_RATIO = 0.95
VARIANTS = {
    "off": {"IMAGEJOBS_METRICS": "false", "IMAGEJOBS_ACCESS_LOG": "false"},
    "metrics": {"IMAGEJOBS_METRICS": "true", "IMAGEJOBS_ACCESS_LOG": "false"},
    "all": {"IMAGEJOBS_METRICS": "true", "IMAGEJOBS_ACCESS_LOG": "true"},
}


def server(url: str, workdir: Path, name: str, env: dict[str, str]) -> lj.Server:
    port = lj.free_port()
    argv = [lj.tool("imagejobs"), "serve", "--host", lj.HOST, "--port", str(port)]
    argv += ["--database-url", url, "--data-dir", str(workdir)]
    environ = lj.clean_env(IMAGEJOBS_AUTH="none", **env)
    return lj.Server(name, argv, environ, port, workdir / f"{name}.log")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--duration", type=int, default=6, help="wrk seconds per round")
    parser.add_argument("--connections", type=int, default=16, help="per client")
    args = parser.parse_args()
    lj.tool("wrk")
    results: dict[str, Any] = {"benchmark": "ops overhead", "settings": vars(args).copy()}
    with tempfile.TemporaryDirectory(prefix="bench-ops-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        url = f"sqlite:///{workdir / 'imagejobs.db'}"
        servers = {
            name: stack.enter_context(server(url, workdir, name, env))
            for name, env in VARIANTS.items()
        }
        lj.log(f"seeding {args.jobs} jobs…")
        results["seed_s"] = lj.seed(url, lj.PROJECT, args.jobs, workdir)
        clients = {name: (srv, {}) for name, srv in servers.items()}
        for name, srv in servers.items():
            page = httpx.get(srv.url(lj.PROJECT, lj.QUERY), timeout=30)
            if page.status_code != 200:
                raise RuntimeError(f"{name}: {page.status_code} {page.text}")
            lj.wrk(srv.url(lj.PROJECT, lj.QUERY), 2, args.connections, 1, {})  # warm-up
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in clients}
        for round_number in range(args.rounds):
            lj.log(f"round {round_number + 1}/{args.rounds}: all clients at once…")
            for name, run in simultaneous_round(clients, args).items():
                runs[name].append(run)
        log_lines = sum(1 for _ in (workdir / "all.log").open(errors="replace"))
    table = report.compare(runs, "off")
    print()
    print(report.comparison_table("server", table))
    for name in ("metrics", "all"):
        row = table[name]
        ok = row["ratio"] >= TARGET_MIN_RATIO
        target = f"{name} keeps >= {TARGET_MIN_RATIO:.0%} of off"
        print(f"target: {target}: {report.verdict(ok)} ({report.ratio_range(row)})")
    print(f"access lines written by `all`: {log_lines}")
    results["servers"] = table
    results["access_log_lines"] = log_lines
    report.save("ops_overhead", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
