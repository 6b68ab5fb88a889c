"""Another tenant's latency while an attacker holds 1,100 connections that never finish a
request: half connect and send nothing, half send their headers and then a body a byte at
a time. The attacker keeps its count up: whenever the server closes one (header or body
timeout), it opens another at once.

One `imagejobs serve` as shipped (default settings, the demo account and its 2,000 jobs on
SQLite), started, as from many shells, with a soft open-file limit of 1,024. A victim
client sends ListImageJobs with the demo root's X-Auth-Token, a new connection per request
(what a fresh client, or a load balancer's health check, does), at a steady pace: first
with no attack (the reference, in the same run), then while the attack holds its 1,100
connections.

Target (issue 8, item 3): the victim's p99 during the attack is at most 2 s.

    .venv/bin/python bench/connections.py [--workers 1] [--held 1100] [--seconds 20]
        [--rate 20]

Prints a table, writes JSON to bench/results/, exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

TARGET_P99_SECONDS = 2.0
SHELL_FILE_LIMIT = 1024
HOST = "127.0.0.1"
PROJECT = "a4da8115c9d8464ead3a38309130523f"  # the demo project
RESULTS = Path(__file__).parent / "results"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def start_server(workdir: Path, port: int, workers: int) -> subprocess.Popen[bytes]:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]

    def shell_limits() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (SHELL_FILE_LIMIT, hard))

    env = {"IMAGEJOBS_LOG_LEVEL": "warning", **os.environ, "IMAGEJOBS_DATA_DIR": str(workdir)}
    command = [sys.executable, "-m", "imagejobs", "serve", "--demo", "--port", str(port)]
    command += ["--workers", str(workers)]
    log = (workdir / "server.log").open("wb")
    server = subprocess.Popen(  # started before any thread of ours: preexec_fn is safe
        command,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=shell_limits,  # noqa: PLW1509
        start_new_session=True,  # its workers too can be killed at the end, whatever happens
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://{HOST}:{port}/openapi.json", timeout=1)
            return server
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit(f"the server did not start: {(workdir / 'server.log').read_text()}")


def demo_token(workdir: Path, port: int) -> str:
    demo = json.loads((workdir / "demo-credentials.json").read_text())
    user = {"name": demo["user"], "password": demo["password"], "domain": {"name": "demo"}}
    body = {
        "auth": {
            "identity": {"methods": ["password"], "password": {"user": user}},
            "scope": {"project": {"id": PROJECT}},
        }
    }
    response = httpx.post(f"http://{HOST}:{port}/v3/auth/tokens?nocatalog=true", json=body)
    response.raise_for_status()
    return response.headers["x-subject-token"]


class Attacker(threading.Thread):
    """Holds ``held`` connections that never complete a request, reopening closed ones."""

    def __init__(self, port: int, held: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.held = held
        self.stopping = threading.Event()
        self.ready = threading.Event()
        self.reopened = 0
        self.slow_head = (
            f"PATCH /v1/{PROJECT}/image-server-sub-jobs/actions/batch-delete HTTP/1.1\r\n"
            f"Host: {HOST}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
        ).encode()

    def _open(self, selector: selectors.BaseSelector, slow: bool) -> None:
        connection = socket.create_connection((HOST, self.port))
        if slow:
            connection.sendall(self.slow_head)
        connection.setblocking(False)
        selector.register(connection, selectors.EVENT_READ, slow)

    def run(self) -> None:
        selector = selectors.DefaultSelector()
        for index in range(self.held):
            self._open(selector, slow=index % 2 == 1)
        self.ready.set()
        next_trickle = time.monotonic()
        while not self.stopping.is_set():
            for key, _ in selector.select(timeout=0.1):
                connection = key.fileobj
                assert isinstance(connection, socket.socket)
                try:
                    if connection.recv(65536):
                        continue  # an answer (a 408): the server closes next
                except OSError:
                    pass
                selector.unregister(connection)
                connection.close()
                self._open(selector, slow=key.data)
                self.reopened += 1
            if time.monotonic() >= next_trickle:  # one more body byte a second
                next_trickle += 1.0
                for key in list(selector.get_map().values()):
                    if key.data:
                        with contextlib.suppress(OSError):
                            key.fileobj.send(b" ")  # type: ignore[union-attr]
        for key in list(selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]


def victim(port: int, token: str, seconds: float, rate: float) -> dict[str, Any]:
    """Requests at a steady pace for ``seconds``; each on a new connection."""
    url = f"http://{HOST}:{port}/v1/{PROJECT}/image-server-jobs"
    params = {"job_type": "CREATE_SERVER", "limit": "10"}
    latencies: list[float] = []
    failures = 0
    started = time.monotonic()
    next_at = started
    # No keep-alive: every request opens a new connection, as a fresh client does.
    no_reuse = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(headers={"X-Auth-Token": token}, limits=no_reuse, timeout=30) as client:
        while time.monotonic() - started < seconds:
            next_at += 1 / rate
            begin = time.perf_counter()
            try:
                ok = client.get(url, params=params).status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - begin)
            failures += not ok
            time.sleep(max(0.0, next_at - time.monotonic()))
    # A server taken off the air answers so few that there may be a single sample.
    samples = latencies if len(latencies) > 1 else latencies * 2
    quantiles = statistics.quantiles(samples, n=100, method="inclusive")
    return {
        "requests": len(latencies),
        "failures": failures,
        "p50_ms": round(quantiles[49] * 1000, 2),
        "p99_ms": round(quantiles[98] * 1000, 2),
        "max_ms": round(max(latencies) * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--held", type=int, default=1100)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=20.0, help="victim requests per second")
    args = parser.parse_args()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # this process holds them all

    with tempfile.TemporaryDirectory(prefix="imagejobs-connections-") as temp:
        workdir = Path(temp)
        port = free_port()
        server = start_server(workdir, port, args.workers)
        try:
            token = demo_token(workdir, port)
            print(f"reference: {args.seconds:g} s at {args.rate:g} req/s, no attack", flush=True)
            reference = victim(port, token, args.seconds, args.rate)
            attacker = Attacker(port, args.held)
            attacker.start()
            attacker.ready.wait()
            print(f"attack: {args.held} connections held", flush=True)
            attacked = victim(port, token, args.seconds, args.rate)
            attacker.stopping.set()
            attacker.join()
        finally:
            stop_started = time.monotonic()
            server.terminate()
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                print("the server did not stop within 60 s of SIGTERM", flush=True)
            stop_seconds = round(time.monotonic() - stop_started, 1)
            with contextlib.suppress(ProcessLookupError):  # a worker left behind, if any
                os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log = (workdir / "server.log").read_text()
        print(log[-3000:] if os.environ.get("IMAGEJOBS_LOG_LEVEL") else "", end="")
        complaints = log.count("Traceback")

    result = {
        "benchmark": "connections",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "workers": args.workers,
        "held": args.held,
        "reopened_by_attacker": attacker.reopened,
        "reference": reference,
        "attacked": attacked,
        "p50_ratio": round(attacked["p50_ms"] / reference["p50_ms"], 2),
        "p99_target_ms": TARGET_P99_SECONDS * 1000,
        "p99_met": attacked["p99_ms"] <= TARGET_P99_SECONDS * 1000 and not attacked["failures"],
        "server_tracebacks": complaints,
        "server_stop_seconds": stop_seconds,
    }
    print(f"{'':10} {'requests':>8} {'failures':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name in ("reference", "attacked"):
        row = result[name]
        print(
            f"{name:10} {row['requests']:>8} {row['failures']:>8} {row['p50_ms']:>8} "
            f"{row['p99_ms']:>8} {row['max_ms']:>8}"
        )
    print(
        f"p50 ratio {result['p50_ratio']}, attacker reopened {attacker.reopened} connections, "
        f"p99 <= {TARGET_P99_SECONDS:g} s: {'met' if result['p99_met'] else 'NOT met'}; "
        f"the server stopped {stop_seconds} s after SIGTERM"
    )
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"connections-{args.workers}w-{stamp}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
