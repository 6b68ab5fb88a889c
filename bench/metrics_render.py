"""What rendering /metrics costs, in process: prometheus_client's writer over the registry
(``generate_latest``, what /metrics ran until session 9) against ``Metrics.render``, on
the same metrics, alternating in rounds so that both see the same machine.

The metrics are a busy process's: every /v1 and /v3 operation and 20 other routes seen with
``--statuses`` status codes each (each operation: 15 histogram lines, one count line per
status), the job and sub-job gauges of every type and status, and a few requests observed
between two renders (as traffic does between two scrapes). A render holds the GIL from
start to end, so its time is what every scrape takes from the requests being served.

    .venv/bin/python bench/metrics_render.py [--rounds 7] [--renders 200] [--statuses 4]

Results are printed and written as JSON to bench/results/; exits 0.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import generate_latest

import list_jobs as lj
import report
from imagejobs.api.iam_routes import IAM_ROUTE_DOCS
from imagejobs.api.routes import ALL_OPERATIONS
from imagejobs.domain.enums import JobStatus, JobType, SubJobStatus
from imagejobs.observability import EngineCounts, Metrics, counter

STATUSES = (200, 400, 403, 404, 401, 429, 503)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--renders", type=int, default=200, help="renders per way per round")
    parser.add_argument("--statuses", type=int, default=4, choices=range(1, len(STATUSES) + 1))
    return parser.parse_args()


def busy_metrics(statuses: int) -> tuple[Metrics, list[str]]:
    metrics = Metrics()
    operations = [o.operation_id for o in ALL_OPERATIONS]
    operations += [d.operation_id for d in IAM_ROUTE_DOCS]
    # The operator and console routes are named "METHOD /route" (about 20 of them).
    operations += [f"GET /_imagejobs/route-{i}" for i in range(20)]
    operations += ["GET /metrics", "GET /_imagejobs/ready", "unmatched"]
    chosen = random.Random(1)
    for operation in operations:
        for status in STATUSES[:statuses]:
            for _ in range(20):
                metrics.observe_request(operation, status, chosen.expovariate(200))
    for reason in ("missing", "signature", "token"):
        metrics.auth_failed(reason)
    metrics.set_engine_counts(
        EngineCounts(
            {(t.value, s.value): 100 for t in JobType for s in JobStatus},
            {(t.value, s.value): 300 for t in JobType for s in SubJobStatus},
            queue_due=12,
            oldest_due_age_seconds=0.8,
            leased=4,
            expired_leases=0,
        )
    )
    metrics.sample(lambda: [counter("imagejobs_database_errors", "Database errors.", 0)])
    metrics.sample(lambda: [counter("imagejobs_sub_job_retries", "Retries.", 2)])
    return metrics, operations


def timed(render: Callable[[], bytes], metrics: Metrics, operations: list[str], n: int) -> float:
    """Median milliseconds of ``n`` renders, three requests observed before each."""
    times = []
    for i in range(n):
        for j in range(3):
            metrics.observe_request(operations[(i + j) % len(operations)], 200, 0.002)
        started = time.perf_counter()
        render()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> int:
    args = parse_args()
    metrics, operations = busy_metrics(args.statuses)
    text = metrics.render()
    reference = generate_latest(metrics.registry)
    assert sorted(text.splitlines()) == sorted(reference.splitlines())
    ways: dict[str, Callable[[], bytes]] = {
        "generate_latest": lambda: generate_latest(metrics.registry),
        "Metrics.render": metrics.render,
    }
    rounds: list[dict[str, float]] = []
    for number in range(args.rounds):
        order = list(ways) if number % 2 == 0 else list(reversed(ways))
        rounds.append(
            {name: timed(ways[name], metrics, operations, args.renders) for name in order}
        )
        lj.log(
            f"round {number + 1}: " + ", ".join(f"{k} {v:.3f} ms" for k, v in rounds[-1].items())
        )
    ratios = [r["generate_latest"] / r["Metrics.render"] for r in rounds]
    results: dict[str, Any] = {
        "args": vars(args),
        "environment": lj.environment(),
        "source": lj.working_tree_source(),
        "operations": len(operations),
        "lines": text.count(b"\n"),
        "bytes": len(text),
        "rounds": rounds,
        "speedup_per_round": [round(r, 2) for r in ratios],
    }
    print(
        report.markdown_table(
            ["way", "median ms per render (median of rounds)", "lines", "speed-up"],
            [
                [
                    name,
                    round(statistics.median(r[name] for r in rounds), 3),
                    results["lines"],
                    "1.00"
                    if name == "generate_latest"
                    else f"{statistics.median(ratios):.1f}x ({min(ratios):.1f}-{max(ratios):.1f})",
                ]
                for name in ways
            ],
        )
    )
    report.save("metrics_render", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
