"""A list API in-process (ListImageJobs unless ``--api``, as ``list_limit.py``'s):
imagejobs' ASGI app and the lean reference called directly, no HTTP server, CPU time per
request (and, with --profile, where it goes).

The same SDK-HMAC-SHA256-signed request as ``list_limit.py`` (verified in full every
time), the app built as ``imagejobs serve`` builds each worker's (IAM, metrics and the
access log on, no embedded runner), on a seeded SQLite file (``list_limit.py --workdir``'s
or ``imagejobs seed``'s). Rounds alternate between the two apps; medians over rounds.
It leaves out Granian and concurrency, so it ranks designs rather than predicting the
served ratio (see bench/README.md, list_limit.py).

    .venv/bin/python bench/list_inprocess.py --workdir DIR [--requests 3000] [--rounds 5]
        [--profile imagejobs|lean] [--api jobs|sub-jobs|servers] [--query QUERY]

Instructions per request (immune to the machine's other load), each app counted from
zero over ``--instructions N`` calls:

    CALLGRIND_OUT_DIR=DIR/cg valgrind --tool=callgrind --instr-atstart=no \
        --callgrind-out-file=DIR/cg/cg.%p .venv/bin/python bench/list_inprocess.py \
        --workdir DIR --requests 50 --rounds 1 --instructions 300

Needs orjson (the lean reference's encoder).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import importlib
import io
import json
import os
import pstats
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import list_jobs as lj
from imagejobs.iam.signing import SigningAlgorithm, sign_request
from list_limit import APIS

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
HOST = "127.0.0.1:20080"


def scope(path: str, query: str, headers: dict[str, str]) -> dict[str, Any]:
    """An ASGI scope as Granian hands it over."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 20080),
        "client": ("127.0.0.1", 40000),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "state": {},
    }


async def _no_body() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


class Answer:
    def __init__(self) -> None:
        self.status = 0
        self.body = b""

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        else:
            self.body += message.get("body", b"")


async def lifespan(app: App) -> Callable[[], Awaitable[None]]:
    """Start ``app`` through the ASGI lifespan protocol; return what shuts it down."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    task = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put)
    )
    await inbox.put({"type": "lifespan.startup"})
    started = await outbox.get()
    assert started["type"] == "lifespan.startup.complete", started

    async def stop() -> None:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task

    return stop


def signed(workdir: Path, path: str, query: str) -> dict[str, str]:
    demo = json.loads((workdir / lj.DEMO_CREDENTIALS).read_text())
    headers = {"Host": HOST, "X-Project-Id": lj.PROJECT}
    pairs = [tuple(pair.split("=", 1)) for pair in query.split("&")]
    headers |= sign_request(
        "GET",
        path,
        pairs,
        headers,
        b"",
        ak=demo["access_key"],
        sk=demo["secret_key"],
        algorithm=SigningAlgorithm.HMAC_SHA256,
        now=datetime.now(UTC),
    )
    return headers


async def imagejobs_app(workdir: Path, counting: bool) -> App:
    if counting:  # identity changes checked hourly: only the requests' own work counted
        os.environ["IMAGEJOBS_IAM_CACHE_SECONDS"] = "3600"
    os.environ.update(
        IMAGEJOBS_DATABASE_URL=f"sqlite:///{workdir / 'imagejobs.db'}",
        IMAGEJOBS_DATA_DIR=str(workdir),
        IMAGEJOBS_AUTH="iam",
        IMAGEJOBS_EMBEDDED_RUNNER="false",
    )
    from imagejobs.bootstrap import build_app, prepare_identity
    from imagejobs.settings import load_settings
    from imagejobs.storage.migrate import migrate

    settings = load_settings()
    await migrate(settings.database_url)
    await prepare_identity(settings)
    return build_app(settings)


def lean_app(workdir: Path, name: str = "lean_reference:app") -> App:
    os.environ["LEAN_DATABASE"] = str(workdir / "imagejobs.db")
    sys.path.insert(0, str(lj.BENCH))
    module, attribute = name.split(":")
    return getattr(importlib.import_module(module), attribute)  # type: ignore[no-any-return]


async def timed(app: App, request: dict[str, Any], requests: int) -> tuple[float, Answer]:
    """CPU microseconds per request over ``requests`` sequential calls."""
    answer = Answer()
    started = time.process_time()
    for _ in range(requests):
        answer = Answer()
        await app(dict(request), _no_body, answer.send)
    return (time.process_time() - started) / requests * 1e6, answer


async def count_instructions(name: str, app: App, request: dict[str, Any], requests: int) -> float:
    """Instructions per request, when this process runs under valgrind's callgrind:
    counters zeroed, ``requests`` calls, counters dumped (callgrind_control)."""
    out = Path(os.environ["CALLGRIND_OUT_DIR"])
    before = set(out.iterdir())
    control = ["callgrind_control", str(os.getpid())]
    # Started with --instr-atstart=no (imports run uninstrumented, 4x faster): on for the
    # calls, a warm-up under instrumentation, then counted from zero.
    subprocess.run([*control[:1], "--instr=on", *control[1:]], check=True, capture_output=True)
    await timed(app, request, 20)
    gc.collect()  # a full collection left for later would fall into some window, not all
    subprocess.run([*control[:1], "--zero", *control[1:]], check=True, capture_output=True)
    await timed(app, request, requests)
    subprocess.run(
        ["callgrind_control", "--dump", str(os.getpid())], check=True, capture_output=True
    )
    (dump,) = set(out.iterdir()) - before
    totals = re.search(r"^totals: (\d+)", dump.read_text(), re.MULTILINE)
    assert totals is not None, dump
    dump.rename(out / f"{name}.callgrind")  # for callgrind_annotate
    return int(totals.group(1)) / requests


async def run(args: argparse.Namespace) -> dict[str, Any]:
    api = APIS[args.api]
    path = f"/v1/{lj.PROJECT}/{api.path}"
    args.query = args.query or api.query
    apps: dict[str, App] = {"imagejobs": await imagejobs_app(args.workdir, bool(args.instructions))}
    apps["lean"] = lean_app(args.workdir, api.lean_app)
    stops = [await lifespan(app) for app in apps.values()]
    requests = {
        "imagejobs": scope(path, args.query, signed(args.workdir, path, args.query)),
        "lean": scope(path, args.query, {"Host": HOST}),
    }
    bodies = {}
    for name, app in apps.items():
        _, answer = await timed(app, requests[name], 200)  # warm-up
        if answer.status != 200:
            raise RuntimeError(f"{name}: {answer.status} {answer.body[:300]!r}")
        bodies[name] = answer.body
    samples: dict[str, list[float]] = {name: [] for name in apps}
    result_instructions: dict[str, float] = {}
    names = list(apps)
    for number in range(args.rounds):
        for name in names if number % 2 == 0 else names[::-1]:
            us, _ = await timed(apps[name], requests[name], args.requests)
            samples[name].append(us)
    if args.instructions:
        for name in names:
            result_instructions[name] = await count_instructions(
                name, apps[name], requests[name], args.instructions
            )
    if args.profile:
        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
        await timed(apps[args.profile], requests[args.profile], args.requests)
        profiler.disable()
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text).sort_stats("tottime")
        stats.print_stats(45)
        stats.sort_stats("cumulative").print_stats(60)
        print(text.getvalue())
    for stop in stops:
        await stop()
    result = {
        name: {"cpu_us_per_request": round(statistics.median(s), 1), "rounds": s}
        for name, s in samples.items()
    }
    if result_instructions:
        for name, count in result_instructions.items():
            result[name]["instructions_per_request"] = round(count)
    result["bodies_identical"] = bodies["imagejobs"] == bodies["lean"]
    result["ratio"] = round(
        result["lean"]["cpu_us_per_request"] / result["imagejobs"]["cpu_us_per_request"], 3
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="holds imagejobs.db")
    parser.add_argument("--requests", type=int, default=3000, help="per round and app")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--api", choices=sorted(APIS), default="jobs")
    parser.add_argument("--query", help="the API's own (list_limit.APIS) unless given")
    parser.add_argument(
        "--instructions", type=int, default=0, help="requests counted under callgrind (0: none)"
    )
    parser.add_argument("--profile", choices=("imagejobs", "lean"))
    args = parser.parse_args()
    result = asyncio.run(run(args))
    for name in ("imagejobs", "lean"):
        rounds = ", ".join(f"{us:.0f}" for us in result[name]["rounds"])
        print(f"{name:<10} {result[name]['cpu_us_per_request']:>7} µs/request  (rounds {rounds})")
    for name in ("imagejobs", "lean"):
        if "instructions_per_request" in result[name]:
            print(
                f"{name:<10} {result[name]['instructions_per_request']:>10,} instructions/request"
            )
    same = result["bodies_identical"]
    print(f"CPU ratio lean/imagejobs: {result['ratio']}; bodies identical: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
