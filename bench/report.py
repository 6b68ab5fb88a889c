"""What a benchmark reports: ratios against a baseline measured in the same rounds, their
medians, a markdown table, a verdict per target, and the JSON results file.

Shared by the benchmark scripts, so that every one computes a ratio, a median over rounds
and a table the same way.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("MET" if ok else "MISSED")


def round_ratios(
    rounds: Sequence[Mapping[str, Any]], baseline: Sequence[Mapping[str, Any]]
) -> dict[str, list[float]]:
    """Each round against the baseline's round run at the same time (or next to it):
    ``requests_per_s`` as rounds / baseline, ``server_cpu_us_per_request`` as baseline /
    rounds, so that above 1 is better for both."""
    pairs = list(zip(rounds, baseline, strict=True))
    return {
        "requests_per_s": [r["requests_per_s"] / b["requests_per_s"] for r, b in pairs],
        "server_cpu_us_per_request": [
            b["server_cpu_us_per_request"] / r["server_cpu_us_per_request"] for r, b in pairs
        ],
    }


def compare(
    runs: Mapping[str, Sequence[Mapping[str, Any]]], baseline: str
) -> dict[str, dict[str, Any]]:
    """Per server (or client): medians over its rounds, and the medians of its per-round
    ratios to ``baseline`` (``ratio`` by req/s, ``cpu_ratio`` by CPU per request)."""
    table: dict[str, dict[str, Any]] = {}
    for name, rounds in runs.items():
        ratios = round_ratios(rounds, runs[baseline])
        table[name] = {
            "requests_per_s": round(statistics.median(r["requests_per_s"] for r in rounds), 1),
            "p50_ms": round(statistics.median(r["p50_ms"] for r in rounds), 2),
            "server_cpu_us_per_request": round(
                statistics.median(r["server_cpu_us_per_request"] for r in rounds), 1
            ),
            "errors": sum(r["non_2xx"] for r in rounds),
            "ratio": round(statistics.median(ratios["requests_per_s"]), 3),
            "cpu_ratio": round(statistics.median(ratios["server_cpu_us_per_request"]), 3),
            "round_ratios": [round(ratio, 3) for ratio in ratios["requests_per_s"]],
            "rounds": list(rounds),
        }
    return table


COMPARED = ("requests_per_s", "p50_ms", "server_cpu_us_per_request", "ratio", "cpu_ratio")
COMPARED_HEADER = ("req/s", "p50 ms", "server CPU µs/req", "ratio (median of rounds)", "by CPU")


def comparison_table(first_column: str, table: Mapping[str, Mapping[str, Any]]) -> str:
    """``compare``'s result as a markdown table."""
    return markdown_table(
        (first_column, *COMPARED_HEADER),
        ([name, *(row[key] for key in COMPARED)] for name, row in table.items()),
    )


def ratio_range(row: Mapping[str, Any]) -> str:
    """``rounds 0.85-0.91``: the spread of a row's per-round ratios."""
    return f"rounds {min(row['round_ratios'])}-{max(row['round_ratios'])}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A table to paste into bench/README.md: numbers right-aligned, with thousands
    separators for large ones."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:,.0f}" if value >= 1000 else f"{value:g}"
        if isinstance(value, int) and not isinstance(value, bool):
            return f"{value:,}"
        return "-" if value is None else str(value)

    lines = [
        "| " + " | ".join(header) + " |",
        "| --- |" + " ---: |" * (len(header) - 1),
    ]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def save(name: str, results: Mapping[str, Any]) -> Path:
    """Write ``results`` to bench/results/NAME-YYYYmmdd-HHMMSS.json and say where."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(f"results: {path}")
    return path
