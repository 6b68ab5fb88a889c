"""What authentication costs ListImageJobs: IAM on (AK/SK signatures, tokens) vs. off.

One SQLite database with 100k jobs in the demo project; two imagejobs servers, one
Granian worker each on CPU 0: `imagejobs` as shipped (IAM on) and `imagejobs-noauth`
(`IMAGEJOBS_AUTH=none`: every request runs as one fixed principal). wrk on CPU 1 drives
three clients in alternating rounds:

- `none`: the no-auth server, no credentials: the baseline;
- `token`: the IAM server with the demo root's `X-Auth-Token`;
- `aksk`: the IAM server with an `SDK-HMAC-SHA256` signature of the demo root's AK/SK.
  wrk cannot sign each request, so the same signed request is replayed: inside the
  15-minute window the server verifies it in full every time (parse, key lookup, the
  canonical request, HMAC, constant-time compare) exactly as for a fresh one.

Target (issue: IAM): each authenticated client keeps ≥ 85% of the baseline's requests/s.

    .venv/bin/python bench/auth_overhead.py [--jobs 100000] [--duration 15] [--rounds 5]

Prints a table, writes JSON to bench/results/, exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

import list_jobs as lj
from imagejobs.iam.signing import SigningAlgorithm, sign_request

TARGET_MIN_RATIO = 0.85


def signed_headers(server: lj.Server, workdir: Path) -> dict[str, str]:
    """Headers of one SDK-style signed ListImageJobs request, replayable for 15 minutes."""
    demo = json.loads((workdir / lj.DEMO_CREDENTIALS).read_text())
    path = f"/v1/{lj.PROJECT}/image-server-jobs"
    headers = {"Host": f"{lj.HOST}:{server.port}", "X-Project-Id": lj.PROJECT}
    query = [tuple(pair.split("=", 1)) for pair in lj.QUERY.split("&")]
    headers |= sign_request(
        "GET",
        path,
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--duration", type=int, default=15, help="wrk seconds per client")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    args.threads = 1
    per_round = max(1, args.duration // args.rounds)
    lj.tool("wrk")
    results: dict[str, Any] = {"benchmark": "auth overhead", "settings": vars(args).copy()}
    with tempfile.TemporaryDirectory(prefix="bench-auth-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        url = f"sqlite:///{workdir / 'imagejobs.db'}"
        iam = stack.enter_context(lj.imagejobs_server(url, workdir, 1, "iam"))
        noauth = stack.enter_context(lj.imagejobs_server(url, workdir, 1, "none"))
        lj.log(f"seeding {args.jobs} jobs…")
        results["seed_s"] = lj.seed(url, lj.PROJECT, args.jobs, workdir)
        clients = {
            "none": (noauth, {}),
            "token": (iam, {"X-Auth-Token": lj.demo_token(iam, workdir)}),
            "aksk": (iam, signed_headers(iam, workdir)),
        }
        for name, (server, headers) in clients.items():
            page = httpx.get(server.url(lj.PROJECT, lj.QUERY), headers=headers, timeout=30)
            if page.status_code != 200:
                raise RuntimeError(f"{name}: {page.status_code} {page.text}")
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in clients}
        order = list(clients)
        started = time.monotonic()
        for round_number in range(args.rounds):
            for name in order if round_number % 2 == 0 else reversed(order):
                server, headers = clients[name]
                server.headers = headers
                url_ = server.url(lj.PROJECT, lj.QUERY)
                lj.wrk(url_, 1, args.connections, 1, headers)  # warm-up
                runs[name].append(lj.measured_wrk(server, url_, args, per_round, postgres=False))
        if time.monotonic() - started > 14 * 60:
            lj.log("warning: the run outlived the signature's 15-minute window")
    table: dict[str, Any] = {}
    for name, rounds in runs.items():
        errors = sum(r["non_2xx"] for r in rounds)
        table[name] = {
            "requests_per_s": round(statistics.median(r["requests_per_s"] for r in rounds), 1),
            "p50_ms": round(statistics.median(r["p50_ms"] for r in rounds), 2),
            "server_cpu_us_per_request": round(
                statistics.median(r["server_cpu_us_per_request"] for r in rounds), 1
            ),
            "errors": errors,
            "rounds": rounds,
        }
    baseline = table["none"]
    print(f"\n{'client':<8} {'req/s':>9} {'p50 ms':>8} {'CPU us/req':>11} {'vs none':>8}")
    for name, row in table.items():
        ratio = row["requests_per_s"] / baseline["requests_per_s"]
        cpu_ratio = baseline["server_cpu_us_per_request"] / row["server_cpu_us_per_request"]
        row["ratio"] = round(ratio, 3)
        row["cpu_ratio"] = round(cpu_ratio, 3)
        print(
            f"{name:<8} {row['requests_per_s']:>9} {row['p50_ms']:>8} "
            f"{row['server_cpu_us_per_request']:>11} {ratio:>8.2f}"
        )
    for name in ("token", "aksk"):
        ok = table[name]["ratio"] >= TARGET_MIN_RATIO
        print(f"target: {name} keeps >= {TARGET_MIN_RATIO:.0%} of none: {lj.verdict(ok)}")
    results["clients"] = table
    lj.RESULTS.mkdir(exist_ok=True)
    out = lj.RESULTS / f"auth_overhead-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=1))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
