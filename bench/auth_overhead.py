"""What authentication costs ListImageJobs: IAM on (AK/SK signatures, tokens) vs. off.

One SQLite database with 100k jobs in the demo project and three imagejobs servers, one
Granian worker each, all pinned to CPU 0: `imagejobs-noauth` (`IMAGEJOBS_AUTH=none`: every
request runs as one fixed principal) and two servers as shipped (IAM on). Three wrk
processes on CPU 1 drive one client each:

- `none`: the no-auth server, no credentials: the baseline;
- `token`: an IAM server with the demo root's `X-Auth-Token`;
- `aksk`: the other IAM server with an `SDK-HMAC-SHA256` signature of the demo root's
  AK/SK. wrk cannot sign each request, so the same signed request is replayed: inside the
  15-minute window the server verifies it in full every time (parse, key lookup, the
  canonical request, HMAC, constant-time compare) exactly as for a fresh one.

**Simultaneous rounds.** This machine's speed drifts by up to 2x within seconds (other
tenants), far more than the difference to measure, and clients measured one after the
other see different machines. So the three run at the same time: the servers share CPU 0,
each in its own session, and the kernel gives each session an equal share of it
(autogroup), so every server gets the same third of the same CPU at the same moments and
its requests/s is inversely proportional to its cost per request. Each round's ratio is a
client's requests/s over the baseline's in that round; the verdict uses the median over
rounds. CPU time per request (from /proc) gives a second, share-independent ratio.

**Instructions.** The same comparison in a unit that does not drift: CPU instructions per
request of each server's worker process (Granian, Starlette and imagejobs together),
counted by valgrind's callgrind over the same sequential requests (`--instructions N`, 0 to
skip; needs valgrind). Those servers run without the embedded engine runner and check for
IAM changes hourly, so that only the requests' own work is counted. It leaves out what
instructions do not show (cache misses, contention), so it complements the timed rounds.

Target (issue: IAM): each authenticated client keeps ≥ 85% of the baseline's requests/s.

    .venv/bin/python bench/auth_overhead.py [--jobs 100000] [--rounds 10] [--duration 6]
        [--instructions 1000] [--src DIR]

``--src DIR`` runs the servers on the imagejobs package in DIR (``PYTHONPATH``), e.g. another
commit's ``src`` from ``git archive``, for an A/B of the product code alone.
``--variant NAME=DIR[,VAR=VALUE...]`` (repeatable) adds an AK/SK client `aksk-NAME` with a
server of its own on that code (and environment), driven in the same rounds: its ratio to
`aksk` compares two versions of the signed path at the same moments, which runs one after
the other cannot on a busy machine (each server then gets a smaller share of CPU 0).

``--user``: the token and AK/SK clients (and variants) are an IAM user of the demo account
with Workspace FullAccess instead of its root, whose requests skip policy evaluation.

Prints a table, writes JSON to bench/results/, exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

import list_jobs as lj
import report
from imagejobs.iam.signing import SigningAlgorithm, sign_request

TARGET_MIN_RATIO = 0.85


def iam_user(url: str, workdir: Path) -> dict[str, str]:
    """The credentials of a new IAM user of the demo account, ``bench-user``, with Workspace
    FullAccess in every project: made with `imagejobs iam` as an operator would."""
    demo = json.loads((workdir / lj.DEMO_CREDENTIALS).read_text())
    where = ["--database-url", url, "--data-dir", str(workdir), "-o", "json"]
    account = ["--account", demo["account"]]

    def iam(*args: str) -> Any:
        done = subprocess.run(
            [lj.tool("imagejobs"), "iam", *args, *where, *account],
            check=True,
            capture_output=True,
            text=True,
            env=lj.clean_env(),
        )
        return json.loads(done.stdout) if done.stdout.strip() else None

    user = iam("create-user", "bench-user")
    iam("attach-policy", "--policy", "Workspace FullAccess", "--user", "bench-user")
    key = iam("create-access-key", "--user", "bench-user")
    return {
        **demo,
        "user": "bench-user",
        "password": user["password"],
        "access_key": key["access_key"],
        "secret_key": key["secret_key"],
    }


def signed_headers(
    server: lj.Server, workdir: Path, credentials: dict[str, str] | None = None
) -> dict[str, str]:
    """Headers of one SDK-style signed ListImageJobs request, replayable for 15 minutes,
    by the demo root or the holder of ``credentials``."""
    demo = credentials or json.loads((workdir / lj.DEMO_CREDENTIALS).read_text())
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


def callgrind_server(url: str, workdir: Path, auth: str, out: Path, name: str) -> lj.Server:
    """`imagejobs serve` under callgrind for one client: requests only (no engine runner,
    hourly IAM check)."""
    port = lj.free_port()
    argv = ["valgrind", "--tool=callgrind", "--trace-children=yes"]
    argv += [f"--callgrind-out-file={out}/{name}.%p", lj.tool("imagejobs"), "serve", "--no-runner"]
    argv += ["--host", lj.HOST, "--port", str(port), "--database-url", url]
    argv += ["--data-dir", str(workdir)]
    env = lj.clean_env(IMAGEJOBS_AUTH=auth, IMAGEJOBS_IAM_CACHE_SECONDS="3600")
    server = lj.Server(f"{name} (callgrind)", argv, env, port, workdir / f"callgrind-{name}.log")
    server.ready_timeout = 600  # valgrind runs Python some 50 times slower
    return server


def instructions_per_request(
    server: lj.Server, headers: dict[str, str], requests: int, out: Path
) -> float:
    """Zero the worker's counters, send ``requests`` requests one at a time, dump, divide."""
    (worker,) = server.workers
    url = server.url(lj.PROJECT, lj.QUERY)
    with httpx.Client(headers=headers, timeout=120) as client:
        for _ in range(20):  # warm-up: caches filled, code paths taken once
            client.get(url).raise_for_status()
        before = set(out.iterdir())
        subprocess.run(
            ["callgrind_control", "--zero", str(worker)], check=True, capture_output=True
        )
        for _ in range(requests):
            client.get(url).raise_for_status()
        subprocess.run(
            ["callgrind_control", "--dump", str(worker)], check=True, capture_output=True
        )
    (dump,) = (path for path in set(out.iterdir()) - before if path.suffix != f".{worker}")
    # All the worker's threads: Granian's Rust I/O threads and the Python one.
    totals = re.search(r"^totals: (\d+)", dump.read_text(), re.MULTILINE)
    if totals is None:
        raise RuntimeError(f"no instruction total in {dump}")
    return int(totals.group(1)) / requests


def count_instructions(
    url: str, workdir: Path, clients: dict[str, dict[str, str]], requests: int
) -> dict[str, float]:
    out = workdir / "callgrind"
    out.mkdir()
    counted: dict[str, float] = {}
    # Each client on a fresh server of its own: AK/SK counted on the server the token had
    # just warmed read 13.5k instructions over none, against 86.7k counted first.
    for name, headers in clients.items():
        auth = "none" if name == "none" else "iam"
        with callgrind_server(url, workdir, auth, out, name) as server:
            # A signature covers Host: sign again for this server.
            sent = signed_headers(server, workdir) if name == "aksk" else headers
            lj.log(f"counting instructions: {name}, {requests} requests…")
            counted[name] = instructions_per_request(server, sent, requests, out)
    return counted


def simultaneous_round(
    clients: dict[str, tuple[lj.Server, dict[str, str]]], args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    """All clients' wrk at once, each against its own server; CPU each server used meanwhile."""
    cpu_before = {name: server.cpu_seconds() for name, (server, _) in clients.items()}
    with ThreadPoolExecutor(len(clients)) as pool:
        futures = {
            name: pool.submit(
                lj.wrk,
                server.url(lj.PROJECT, lj.QUERY),
                args.duration,
                args.connections,
                1,
                headers,
            )
            for name, (server, headers) in clients.items()
        }
        runs = {name: future.result() for name, future in futures.items()}
    for name, (server, _) in clients.items():
        used = server.cpu_seconds() - cpu_before[name]
        runs[name]["server_cpu_us_per_request"] = round(used / runs[name]["requests"] * 1e6, 1)
        runs[name]["server_cpu_share"] = round(used / args.duration, 3)
    return runs


def ratios_text(ratios: list[float]) -> str:
    return ", ".join(f"{r:.3f}" for r in ratios)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--duration", type=int, default=6, help="wrk seconds per round")
    parser.add_argument("--connections", type=int, default=16, help="per client")
    parser.add_argument(
        "--instructions", type=int, default=1000, help="requests counted per client (0: skip)"
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=DIR[,VAR=VALUE...]",
        help="an extra AK/SK client on its own server running the imagejobs package in DIR",
    )
    parser.add_argument(
        "--src", type=Path, help="run the servers on the imagejobs package in this directory"
    )
    parser.add_argument(
        "--user",
        action="store_true",
        help="token and AK/SK of an IAM user with Workspace FullAccess, not the demo root",
    )
    parser.add_argument(
        "--batch",
        action="store_true",
        help="the servers with IMAGEJOBS_BATCH_SCHEDULING=true",
    )
    args = parser.parse_args()
    lj.tool("wrk")
    results: dict[str, Any] = {"benchmark": "auth overhead", "settings": vars(args).copy()}
    with tempfile.TemporaryDirectory(prefix="bench-auth-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        url = f"sqlite:///{workdir / 'imagejobs.db'}"
        servers = [lj.imagejobs_server(url, workdir, 1, auth) for auth in ("none", "iam", "iam")]
        for server in servers:
            if args.src is not None:
                server.env["PYTHONPATH"] = str(args.src.resolve())
            if args.batch:
                server.env["IMAGEJOBS_BATCH_SCHEDULING"] = "true"
        variants = []
        for spec in args.variant:
            name, _, rest = spec.partition("=")
            path, *assignments = rest.split(",")
            server = lj.imagejobs_server(url, workdir, 1, "iam")
            server.name = f"imagejobs-{name}"
            server.log_path = workdir / f"imagejobs-{name}.log"
            server.env["PYTHONPATH"] = str(Path(path).resolve())
            server.env.update(a.split("=", 1) for a in assignments)
            if args.batch:
                server.env["IMAGEJOBS_BATCH_SCHEDULING"] = "true"
            variants.append((f"aksk-{name}", server))
        noauth, iam_token, iam_aksk = map(stack.enter_context, servers)
        for _, server in variants:
            stack.enter_context(server)
        lj.log(f"seeding {args.jobs} jobs…")
        results["seed_s"] = lj.seed(url, lj.PROJECT, args.jobs, workdir)
        user = iam_user(url, workdir) if args.user else None
        clients = {
            "none": (noauth, {}),
            "token": (iam_token, {"X-Auth-Token": lj.demo_token(iam_token, workdir, user)}),
            "aksk": (iam_aksk, signed_headers(iam_aksk, workdir, user)),
        }
        for name, server in variants:
            clients[name] = (server, signed_headers(server, workdir, user))
        for name, (server, headers) in clients.items():
            page = httpx.get(server.url(lj.PROJECT, lj.QUERY), headers=headers, timeout=30)
            if page.status_code != 200:
                raise RuntimeError(f"{name}: {page.status_code} {page.text}")
            lj.wrk(server.url(lj.PROJECT, lj.QUERY), 2, args.connections, 1, headers)  # warm-up
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in clients}
        started = time.monotonic()
        for round_number in range(args.rounds):
            lj.log(f"round {round_number + 1}/{args.rounds}: all clients at once…")
            for name, run in simultaneous_round(clients, args).items():
                runs[name].append(run)
        if time.monotonic() - started > 14 * 60:
            lj.log("warning: the run outlived the signature's 15-minute window")
        stack.close()  # the measured servers stop; the counted ones use the same database
        counted: dict[str, float] = {}
        if args.instructions:
            lj.tool("valgrind")
            lj.tool("callgrind_control")
            client_headers = {name: headers for name, (_, headers) in clients.items()}
            counted = count_instructions(url, workdir, client_headers, args.instructions)
    table = report.compare(runs, "none")
    print()
    print(report.comparison_table("client", table))
    for name, row in table.items():
        if counted:
            row["instructions_per_request"] = round(counted[name])
            row["instruction_ratio"] = round(counted["none"] / counted[name], 4)
            print(
                f"{name}: {row['instructions_per_request']:,} instructions/request,"
                f" ratio {row['instruction_ratio']}"
            )
    for name in table:
        if name.startswith("aksk-"):
            ratios = [
                b["requests_per_s"] / a["requests_per_s"]
                for a, b in zip(runs["aksk"], runs[name], strict=True)
            ]
            table[name]["vs_aksk_rounds"] = [round(r, 3) for r in ratios]
            table[name]["vs_aksk"] = round(statistics.median(ratios), 3)
            print(f"{name} / aksk req/s: {table[name]['vs_aksk']} (rounds {ratios_text(ratios)})")
    for name in ("token", "aksk"):
        row = table[name]
        verdicts = f"req/s {report.verdict(row['ratio'] >= TARGET_MIN_RATIO)}"
        verdicts += f" ({report.ratio_range(row)})"
        if counted:
            ok = row["instruction_ratio"] >= TARGET_MIN_RATIO
            verdicts += f", instructions {report.verdict(ok)}"
        print(f"target: {name} keeps >= {TARGET_MIN_RATIO:.0%} of none: {verdicts}")
    results["clients"] = table
    report.save("auth_overhead", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
