"""Floods a hostile client can send at no cost to itself, against another tenant's small
lists: the code of ``--git-ref`` and the working tree, in alternating rounds of one run.

``--attack audit``: an account root asks ``/_imagejobs/audit?limit=1000`` (pages of 1,000
events; its account holds ``--events`` of them, refused batch deletes) over
``--connections`` connections. ``--attack scrapes``: anyone asks ``/metrics`` over
``--connections`` connections (no credentials).

One SQLite database, one Granian worker (IAM on, no runner, not pinned). Each round starts
the server of one source; wrk (its own process) floods, and meanwhile the victim sends
ListImageJobs (offset 0, limit 10) one after the other for ``--duration`` seconds.

    .venv/bin/python bench/hostile_floods.py [--attack audit|scrapes] [--git-ref main]
        [--rounds 3] [--connections 64] [--duration 6] [--events 1000]

Results are printed and written as JSON to bench/results/; exits 0.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

import list_jobs as lj
import report
from deep_offset import SMALL, summary, token, victim_tenant


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--git-ref", default="main", help="the code to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--attack", choices=["audit", "scrapes"], default="audit")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--events", type=int, default=1000)
    return parser.parse_args()


def server(url: str, workdir: Path, operator_token: str, pythonpath: str | None) -> lj.Server:
    port = lj.free_port()
    argv = [lj.tool("imagejobs"), "serve", "--host", lj.HOST, "--port", str(port), "--no-runner"]
    argv += ["--database-url", url, "--workers", "1", "--data-dir", str(workdir)]
    extra = {"PYTHONPATH": pythonpath} if pythonpath else {}
    env = lj.clean_env(
        IMAGEJOBS_AUTH="iam",
        IMAGEJOBS_OPERATOR_TOKEN=operator_token,
        IMAGEJOBS_ACCESS_LOG="false",
        **extra,
    )
    if not pythonpath:
        env.pop("PYTHONPATH", None)  # the working tree: the venv's editable install
    made = lj.Server("imagejobs", argv, env, port, workdir / "imagejobs.log")
    made.argv = argv
    return made


def login(port: int, tenant: dict[str, Any]) -> dict[str, str]:
    who = (tenant["account"], tenant["user"], tenant["password"], tenant["region"])
    return {"X-Auth-Token": token(port, *who)}


def victim_lists(url: str, headers: dict[str, str], duration: float) -> dict[str, Any]:
    latencies: list[float] = []
    codes: dict[str, int] = {}
    with httpx.Client(headers=headers, timeout=60) as client:
        stop = time.monotonic() + duration
        while time.monotonic() < stop:
            started = time.perf_counter()
            answer = client.get(url)
            latencies.append(time.perf_counter() - started)
            codes[str(answer.status_code)] = codes.get(str(answer.status_code), 0) + 1
    return {**summary(latencies), "codes": codes}


def phase(
    small: str, small_headers: dict[str, str], attack: str, headers: dict[str, str], args: Any
) -> dict[str, Any]:
    """The victim's lists while wrk (its own process) asks ``attack`` over many
    connections; the victim starts once wrk is connected and stops before it."""
    with ThreadPoolExecutor(1) as pool:
        flood = pool.submit(lj.wrk, attack, int(args.duration) + 2, args.connections, 1, headers)
        time.sleep(1.0)
        victim = victim_lists(small, small_headers, args.duration)
        return {"victim": victim, "attacker": flood.result()}


def main() -> int:
    args = parse_args()
    results: dict[str, Any] = {"args": vars(args), "environment": lj.environment(), "rounds": []}
    with tempfile.TemporaryDirectory(prefix="ij-audit-flood-") as directory:
        workdir = Path(directory)
        before = lj.export_source(args.git_ref, workdir / "before")
        os.environ.pop("PYTHONPATH", None)
        results["sources"] = {"before": before, "after": lj.working_tree_source()}
        sources = {"before": str(workdir / "before" / "src"), "after": None}
        url = f"sqlite:///{workdir / 'bench.db'}"
        operator_token = secrets.token_urlsafe(24)
        with server(url, workdir, operator_token, None) as running:
            attacker = victim_tenant(running.port, operator_token)
            target = victim_tenant(running.port, operator_token)
            headers = login(running.port, attacker)
            bad = f"http://{lj.HOST}:{running.port}/v1/{attacker['project_id']}"
            bad += "/image-server-sub-jobs/actions/batch-delete"
            with httpx.Client(headers=headers, timeout=30) as client:
                for _ in range(args.events):
                    client.patch(bad, json={"items": []})
        for number in range(args.rounds):
            for name, pythonpath in sources.items():
                with server(url, workdir, operator_token, pythonpath) as running:
                    base = f"http://{lj.HOST}:{running.port}"
                    small = f"{base}/v1/{target['project_id']}/image-server-jobs?{SMALL}"
                    if args.attack == "audit":
                        attack = f"{base}/_imagejobs/audit?limit=1000"
                        headers = login(running.port, attacker)
                    else:
                        attack, headers = f"{base}/metrics", {}
                    result = phase(small, login(running.port, target), attack, headers, args)
                lj.log(f"round {number} {name}: {result}")
                results["rounds"].append({"round": number, "source": name, **result})
    rows = []
    for r in results["rounds"]:
        codes = r["victim"]["codes"]
        refused = sum(n for code, n in codes.items() if code != "200")
        rows.append(
            [
                r["round"],
                r["source"],
                r["victim"]["requests"],
                f"{100 * refused / max(1, r['victim']['requests']):.1f}%",
                r["victim"]["p50_ms"],
                r["victim"]["p99_ms"],
                r["attacker"]["requests_per_s"],
                r["attacker"]["non_2xx"],
            ]
        )
    header = [
        "round",
        "source",
        "victim lists",
        "not 200",
        "p50 ms",
        "p99 ms",
        "attacker/s",
        "attacker not 2xx",
    ]
    print(report.markdown_table(header, rows))
    report.save(f"{args.attack}_flood", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
