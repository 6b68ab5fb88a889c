"""What one refusal costs the server: imagejobs' shed path against the floor under Granian.

Each app is one Granian worker pinned to CPU 0 (HTTP/1 only, as `imagejobs serve` runs
it), driven by wrk (`-t1 -c64`, closed loop) on CPU 1 in alternating rounds; the server's
CPU time per answer (all its threads, from /proc) is what a refusal costs, whatever share
of its core the machine's other work left it. The apps are in bench/shed_apps.py:

- ``floor``: a raw ASGI callable answering a constant 503 body, the least Python can do;
- ``edge``: imagejobs' edge as shipped (metrics and access log on), held at its in-flight
  bound so that it refuses every request.

Each is also run under Granian's other settings given with ``--variants`` (e.g.
``st``: `--runtime-mode st`; ``rust``: `--task-impl rust`; ``uvloop``: `--loop uvloop`).

    .venv/bin/python bench/refusal.py [--rounds 4] [--duration 5] [--variants default,st]

Prints a table, writes JSON to bench/results/, exits 0.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

import list_jobs as lj
import load
import report

APPS = {
    "floor": ["shed_apps:floor"],
    "edge": ["--factory", "shed_apps:edge"],
    "service": ["--factory", "shed_apps:service"],
}
VARIANTS = {
    "default": [],
    "st": ["--runtime-mode", "st"],
    "rust": ["--task-impl", "rust"],
    "uvloop": ["--loop", "uvloop"],
    "st+rust": ["--runtime-mode", "st", "--task-impl", "rust"],
}
PATH = f"/v1/{lj.PROJECT}/image-server-jobs?{lj.QUERY}"


class AnyAnswer(lj.Server):
    """A server that is up once it answers anything (these apps answer only 503)."""

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline and self._process.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"http://{lj.HOST}:{self.port}{PATH}", timeout=2)
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start: {self.log_path.read_text()[-2000:]}")


def server(app: str, variant: str, workdir: Path) -> AnyAnswer:
    if app == "service":
        database = f"sqlite:///{workdir / 'service.db'}"
        subprocess.run(
            [lj.tool("imagejobs"), "migrate", "--database-url", database],
            check=True,
            capture_output=True,
        )
    port = lj.free_port()
    argv = [lj.tool("granian"), "--interface", "asgi", "--http", "1", "--host", lj.HOST]
    argv += ["--port", str(port), "--workers", "1", "--working-dir", str(lj.BENCH)]
    argv += ["--backlog", "2048", "--backpressure", "4096", *VARIANTS[variant], *APPS[app]]
    name = f"{app}-{variant}"
    env = lj.clean_env(
        PYTHONPATH=str(lj.ROOT / "src"),
        IMAGEJOBS_DATABASE_URL=f"sqlite:///{workdir / 'service.db'}",
        IMAGEJOBS_DATA_DIR=str(workdir),
        IMAGEJOBS_MAX_IN_FLIGHT="1",
        IMAGEJOBS_EMBEDDED_RUNNER="false",
        IMAGEJOBS_ENCRYPTION_KEY=base64.b64encode(os.urandom(32)).decode(),
    )
    return AnyAnswer(name, argv, env, port, workdir / f"{name}.log")


def measure(
    srv: AnyAnswer, duration: int, connections: int, generator: list[str] | None, rate: float
) -> dict[str, Any]:
    """wrk's closed loop, or (with ``generator``) an open loop offering ``rate`` per second."""
    cpu = srv.cpu_seconds()
    if generator is None:
        run = lj.wrk(f"http://{lj.HOST}:{srv.port}{PATH}", duration, connections, 1, {})
    else:
        argv = [*lj.pinned(lj.WRK_CPU), *generator, "--port", str(srv.port), "--token", "-"]
        argv += ["--rate", str(rate), "--duration", str(duration), "--create-every", "0"]
        out = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)
        answered = sum(out["statuses"].values())
        run = {
            "requests": answered,
            "requests_per_s": round(answered / duration, 1),
            "non_2xx": answered - sum(n for k, n in out["statuses"].items() if " 200" in k),
            "unanswered": out["unanswered"],
            "late_sends": out["late_sends"],
            "max_backlog": out["max_backlog"],
        }
    run["server_cpu_us"] = round((srv.cpu_seconds() - cpu) / max(run["requests"], 1) * 1e6, 1)
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", type=int, default=5, help="seconds per round")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--apps", default="floor,edge")
    parser.add_argument("--variants", default="default")
    parser.add_argument(
        "--open-loop", type=float, default=0, help="offer this many requests/s (bench/open_loop.c)"
    )
    args = parser.parse_args()
    names = [(a, v) for v in args.variants.split(",") for a in args.apps.split(",")]
    results: dict[str, Any] = {"benchmark": "refusal", "settings": vars(args).copy()}
    rounds: dict[str, list[dict[str, Any]]] = {f"{a}-{v}": [] for a, v in names}
    with (
        tempfile.TemporaryDirectory(prefix="bench-refusal-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        generator = load.build_generator("c", Path(tmp)) if args.open_loop else None
        servers = {f"{a}-{v}": stack.enter_context(server(a, v, Path(tmp))) for a, v in names}
        for srv in servers.values():
            lj.wrk(f"http://{lj.HOST}:{srv.port}{PATH}", 1, args.connections, 1, {})  # warm-up
        for k in range(args.rounds):
            for name, srv in servers.items():
                run = measure(srv, args.duration, args.connections, generator, args.open_loop)
                rounds[name].append(run)
                lj.log(
                    f"round {k}: {name}: {run['requests_per_s']:,.0f} req/s,"
                    f" {run['server_cpu_us']} us/answer, non-2xx {run['non_2xx']}"
                )
    floor_cpu = {
        v: statistics.median(r["server_cpu_us"] for r in rounds[f"floor-{v}"])
        for v in {v for a, v in names if a == "floor"}
    }
    print(f"\n{'app':<16} {'req/s':>8} {'server CPU us/answer':>21} {'x floor':>8}")
    summary = {}
    for name, runs in rounds.items():
        cpu = statistics.median(r["server_cpu_us"] for r in runs)
        rps = statistics.median(r["requests_per_s"] for r in runs)
        variant = name.split("-", 1)[1]
        ratio = cpu / floor_cpu[variant] if variant in floor_cpu else None
        summary[name] = {"requests_per_s": rps, "server_cpu_us": cpu, "x_floor": ratio}
        shown = f"{ratio:.2f}" if ratio else "-"
        print(f"{name:<16} {rps:>8,.0f} {cpu:>21.1f} {shown:>8}")
    results |= {"summary": summary, "rounds": rounds}
    report.save("refusal", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
