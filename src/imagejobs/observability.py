"""Every metric and every access-log field, defined once: the request edge, the runner and
the stores feed these, so names stay consistent and nothing is measured twice.

Each app builds its own ``Metrics`` on its own registry (no process-wide default registry),
so that two apps in one process, such as tests, never share counts.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from bisect import bisect_left
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from itertools import accumulate
from typing import IO, Any, Protocol

import msgspec
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString as _untyped_go_float

# Latency buckets (seconds): an indexed read takes about a millisecond, a create ten.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

# Why an authentication failed: a fixed set, so the label cannot grow with input.
AUTH_FAILURE_REASONS = (
    "missing",
    "unknown_key",
    "signature",
    "locked",
    "token",
    "operator",
    "other",
)


@dataclass(slots=True)
class RequestNote:
    """What the edge learns about a request while it runs, for its access line."""

    principal: str = "-"
    account_id: str | None = None


class Refusals:
    """Requests refused to protect the service, counted in plain ints by the edge and read
    when scraped: a refusal under overload must cost next to nothing, so it updates no
    metric object (a prometheus ``Counter`` takes a lock and a label lookup)."""

    __slots__ = ("busy", "busy_routed", "headers", "throttled")

    def __init__(self) -> None:
        self.busy = 0  # 503 at the in-flight bound, answered before any routing
        self.busy_routed = 0  # 503 at the bound once a body had arrived (its route answered)
        self.headers = 0  # 431, a request head over the limit
        self.throttled = 0  # 429, an account over its rate limit

    def by_reason(self) -> dict[str, int]:
        return {
            "in_flight": self.busy + self.busy_routed,
            "rate_limit": self.throttled,
            "headers": self.headers,
        }


# The note of the request being served (set by the edge, filled by authentication).
CURRENT_REQUEST: ContextVar[RequestNote | None] = ContextVar("imagejobs_request", default=None)


@dataclass(frozen=True, slots=True)
class EngineCounts:
    """Numbers read from the database at scrape time: they are the same for every process."""

    jobs: dict[tuple[str, str], int]  # (job_type, status) -> jobs
    sub_jobs: dict[tuple[str, str], int]
    queue_due: int
    oldest_due_age_seconds: float
    leased: int
    expired_leases: int


def _label_value(value: str) -> str:
    """A label value escaped as the text format wants it (as prometheus_client does)."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _go_float(value: float) -> str:
    """prometheus_client's own number format (its function is not annotated)."""
    return str(_untyped_go_float(value))  # type: ignore[no-untyped-call]


def _number(value: float) -> str:
    """``value`` as prometheus_client writes it (``floatToGoString``: ``3`` is ``3.0``,
    ``1234567`` is ``1.234567e+06``), the common small count without its float round trip."""
    if type(value) is int and 0 <= value < 1_000_000:
        return f"{value}.0"
    return _go_float(value)


def _header(name: str, documentation: str, kind: str) -> str:
    return f"# HELP {name} {documentation}\n# TYPE {name} {kind}\n"


_REQUESTS_HELP = "HTTP requests answered, by operation and status code."
_SHED_HELP = "Requests refused to protect the service (in_flight, rate_limit, headers)."
_LATENCY_HELP = "Time to answer a request, by operation."
_LATENCY = "imagejobs_request_duration_seconds"
_BOUNDS = [*(str(b) for b in LATENCY_BUCKETS), "+Inf"]


class _Sampled(Collector):
    """Counters owned by other objects (the runner, the database), read when scraped."""

    def __init__(self) -> None:
        self.sources: list[Callable[[], Iterable[Metric]]] = []

    def collect(self) -> Iterable[Metric]:
        for source in self.sources:
            yield from source()


class _RequestCounts(Collector):
    """Requests by operation and status, and their latency histogram, kept in plain dicts
    and turned into metric families only when scraped: counting a request is then two
    dict updates, not two lock round-trips (this runs on every request)."""

    def __init__(self, refusals: Refusals) -> None:
        self.counts: dict[tuple[str, int], int] = {}
        # operation -> [count per bucket (the last: above every bound), sum of seconds]
        self.latency: dict[str, tuple[list[int], list[float]]] = {}
        # Refused at the in-flight bound before any routing: counted here as operation
        # "refused", status 503, but not timed (they take microseconds in the process).
        self.refusals = refusals
        self._count_prefixes: dict[tuple[str, int], str] = {}
        self._histogram_prefixes: dict[str, list[str]] = {}

    def observe(self, operation: str, status: int, seconds: float) -> None:
        key = (operation, status)
        self.counts[key] = self.counts.get(key, 0) + 1
        histogram = self.latency.get(operation)
        if histogram is None:
            histogram = self.latency[operation] = ([0] * (len(LATENCY_BUCKETS) + 1), [0.0])
        histogram[0][bisect_left(LATENCY_BUCKETS, seconds)] += 1
        histogram[1][0] += seconds

    def _answered(self) -> dict[tuple[str, int], int]:
        answered = dict(self.counts)
        if self.refusals.busy:
            key = ("refused", 503)
            answered[key] = answered.get(key, 0) + self.refusals.busy
        return answered

    def collect(self) -> Iterable[Metric]:
        """The families as prometheus_client objects: what ``render`` writes, the slow way
        (the reference its test compares with)."""
        requests = CounterMetricFamily(
            "imagejobs_requests", _REQUESTS_HELP, labels=["operation", "status"]
        )
        for (operation, status), n in sorted(self._answered().items()):
            requests.add_metric([operation, str(status)], n)
        yield requests
        shed = CounterMetricFamily("imagejobs_requests_shed", _SHED_HELP, labels=["reason"])
        for reason, n in self.refusals.by_reason().items():
            shed.add_metric([reason], n)
        yield shed
        latency = HistogramMetricFamily(_LATENCY, _LATENCY_HELP, labels=["operation"])
        for operation, (counts, total) in sorted(self.latency.items()):
            cumulative = list(accumulate(counts))
            latency.add_metric(
                [operation], list(zip(_BOUNDS, cumulative, strict=True)), sum_value=total[0]
            )
        yield latency

    def render(self) -> str:
        """The text ``collect`` gives once exposed, written directly: the label part of
        each line is made once per operation and status and kept. These lines are most of
        a scrape (15 per operation seen), and prometheus_client's writer sorted, checked
        and escaped every line's labels each time (bench/README.md, metrics_render.py)."""
        out = [_header("imagejobs_requests_total", _REQUESTS_HELP, "counter")]
        prefixes = self._count_prefixes
        for key, n in sorted(self._answered().items()):
            prefix = prefixes.get(key)
            if prefix is None:
                labels = f'operation="{_label_value(key[0])}",status="{key[1]}"'
                prefix = prefixes[key] = f"imagejobs_requests_total{{{labels}}} "
            out.append(f"{prefix}{_number(n)}\n")
        out.append(_header("imagejobs_requests_shed_total", _SHED_HELP, "counter"))
        for reason, n in self.refusals.by_reason().items():
            out.append(f'imagejobs_requests_shed_total{{reason="{reason}"}} {_number(n)}\n')
        out.append(_header(_LATENCY, _LATENCY_HELP, "histogram"))
        for operation, (counts, total) in sorted(self.latency.items()):
            lines = self._histogram_prefixes.get(operation)
            if lines is None:
                lines = self._histogram_prefixes[operation] = _histogram_prefixes(operation)
            cumulative = list(accumulate(list(counts)))
            out += [f"{p}{_number(n)}\n" for p, n in zip(lines, cumulative, strict=False)]
            out.append(f"{lines[-2]}{_number(cumulative[-1])}\n")  # _count
            out.append(f"{lines[-1]}{_go_float(total[0])}\n")  # _sum
        return "".join(out)


def _histogram_prefixes(operation: str) -> list[str]:
    """Each bucket line's text up to its value, then the _count's and the _sum's."""
    label = f'operation="{_label_value(operation)}"'
    return [f'{_LATENCY}_bucket{{le="{bound}",{label}}} ' for bound in _BOUNDS] + [
        f"{_LATENCY}_count{{{label}}} ",
        f"{_LATENCY}_sum{{{label}}} ",
    ]


class _EngineGauges(Collector):
    """The job, queue and lease gauges, from the counts last read (EngineCounts): they
    change at most once per IMAGEJOBS_METRICS_COUNTS_MAX_AGE_SECONDS, so their text is
    written once per read, not once per scrape."""

    def __init__(self) -> None:
        self.counts: EngineCounts | None = None
        self._text: tuple[EngineCounts | None, str] | None = None

    def collect(self) -> Iterable[Metric]:
        counts = self.counts
        families = (
            ("imagejobs_jobs", "Jobs, by type and status.", counts and counts.jobs),
            ("imagejobs_sub_jobs", "Sub-jobs, by type and status.", counts and counts.sub_jobs),
        )
        for name, documentation, values in families:
            family = GaugeMetricFamily(name, documentation, labels=["job_type", "status"])
            for (job_type, status), n in sorted((values or {}).items()):
                family.add_metric([job_type, status], n)
            yield family
        yield GaugeMetricFamily(
            "imagejobs_queue_due",
            "Engine tasks due now and not claimed.",
            counts.queue_due if counts else 0,
        )
        yield GaugeMetricFamily(
            "imagejobs_queue_oldest_due_age_seconds",
            "How long the oldest due, unclaimed task has waited (0: none).",
            counts.oldest_due_age_seconds if counts else 0,
        )
        leases = GaugeMetricFamily(
            "imagejobs_leases",
            "Engine tasks under a lease (live: held; expired: its runner is gone).",
            labels=["state"],
        )
        if counts is not None:
            leases.add_metric(["live"], counts.leased)
            leases.add_metric(["expired"], counts.expired_leases)
        yield leases

    def render(self) -> str:
        counts, cached = self.counts, self._text
        if cached is None or cached[0] is not counts:
            cached = self._text = (counts, _exposed(self))
        return cached[1]


def _exposed(collector: Collector) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry).decode()


class Metrics:
    """The service's Prometheus metrics (``/metrics``, ``render``)."""

    def __init__(self) -> None:
        # Every collector, for prometheus_client's own writer (``generate_latest``)...
        self.registry = CollectorRegistry(auto_describe=False)
        # ...and those ``render`` leaves to it: a few lines each.
        self._others = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.refusals = Refusals()
        self.requests = _RequestCounts(self.refusals)
        r.register(self.requests)
        self.in_flight = Gauge(
            "imagejobs_requests_in_flight",
            "Requests holding a place in flight (IMAGEJOBS_MAX_IN_FLIGHT): not probes or scrapes.",
            registry=r,
        )
        self.auth_failures = Counter(
            "imagejobs_auth_failures",
            "Failed authentications, by reason.",
            ["reason"],
            registry=r,
        )
        self.engine = _EngineGauges()
        r.register(self.engine)
        self.sampled = _Sampled()
        r.register(self.sampled)
        for collector in (self.in_flight, self.auth_failures, self.sampled):
            self._others.register(collector)
        self.observe_request = self.requests.observe

    def auth_failed(self, reason: str) -> None:
        self.auth_failures.labels(reason if reason in AUTH_FAILURE_REASONS else "other").inc()

    def set_engine_counts(self, counts: EngineCounts) -> None:
        self.engine.counts = counts

    def sample(self, source: Callable[[], Iterable[Metric]]) -> None:
        """Read ``source``'s metrics at every scrape (counters kept by another object)."""
        self.sampled.sources.append(source)

    def render(self) -> bytes:
        """The text exposition of every metric: the same lines as ``generate_latest(
        self.registry)`` (a test compares them), at a fraction of its cost."""
        written = self.requests.render() + self.engine.render()
        return written.encode() + generate_latest(self._others)


def counter(name: str, documentation: str, value: float) -> Metric:
    metric = CounterMetricFamily(name, documentation)
    metric.add_metric([], value)
    return metric


def gauge(name: str, documentation: str, samples: dict[str, float], label: str) -> Metric:
    metric = GaugeMetricFamily(name, documentation, labels=[label])
    for label_value, value in samples.items():
        metric.add_metric([label_value], value)
    return metric


class _Database(Protocol):
    unavailable_errors: int

    def pool_usage(self) -> dict[str, int]: ...


class _Runner(Protocol):
    retries: int
    taken_over: int


def database_metrics(database: _Database) -> Iterable[Metric]:
    yield counter(
        "imagejobs_database_errors",
        "Database calls that failed because it was unreachable, full or too slow (503).",
        database.unavailable_errors,
    )
    usage = database.pool_usage()
    if usage:
        yield gauge(
            "imagejobs_database_pool_connections",
            "PostgreSQL connections of this process, by state (in_use, idle, max).",
            {state: float(n) for state, n in usage.items()},
            "state",
        )


def runner_metrics(runner: _Runner) -> Iterable[Metric]:
    yield counter(
        "imagejobs_sub_job_retries",
        "Steps rescheduled after a transient failure, by this process's runner.",
        runner.retries,
    )
    yield counter(
        "imagejobs_lease_takeovers",
        "Results this process's runner dropped because another runner had taken the "
        "lease over (see imagejobs_leases{state=expired} for leases awaiting take-over).",
        runner.taken_over,
    )


class _AuditRetention(Protocol):
    purged: int


def audit_retention_metrics(retention: _AuditRetention) -> Iterable[Metric]:
    yield counter(
        "imagejobs_audit_events_purged",
        "Audit events this process deleted because they were older than the retention.",
        retention.purged,
    )


class _AuditTrail(Protocol):
    dropped_by_reason: dict[str, int]


def audit_drop_metrics(trail: _AuditTrail) -> Iterable[Metric]:
    metric = CounterMetricFamily(
        "imagejobs_audit_events_dropped",
        "Audit events this process did not store, by reason (account_rate, "
        "unauthenticated_rate: over their budget; database: it refused or was away).",
        labels=["reason"],
    )
    for reason, n in trail.dropped_by_reason.items():
        metric.add_metric([reason], n)
    yield metric


class _Sweeper(Protocol):
    swept: int


def reset_sweep_metrics(sweeper: _Sweeper) -> Iterable[Metric]:
    yield counter(
        "imagejobs_reset_rows_swept",
        "Rows of reset projects' old generations this process deleted in the background.",
        sweeper.swept,
    )


# --- the access log -------------------------------------------------------------------------


class AccessLine(msgspec.Struct):
    """Every field of an access line, in order. Nothing else is ever written: no header,
    no query string, no body, so no secret (a signature, a token, a password) can appear."""

    time: str
    request_id: str
    method: str
    path: str
    operation: str
    project: str | None
    principal: str
    status: int
    duration_ms: float


ACCESS_FIELDS = AccessLine.__struct_fields__


class RefusalLine(msgspec.Struct):
    """Requests refused at the in-flight bound are logged together, one line a second
    while it lasts, not one access line each (under overload a line per refusal would cost
    more than the refusal): how many, in how long. Their request ids are not logged."""

    time: str
    operation: str  # "refused"
    status: int
    error_code: str
    count: int
    seconds: float


# Lines wait at most this long in the buffer (one write per batch, not per request).
FLUSH_SECONDS = 0.2
_FLUSH_BYTES = 64 * 1024


class AccessLog:
    """One line per request on ``stream``: JSON when it is not a terminal (for log
    collectors), ``key=value`` when a person reads it (then written at once)."""

    def __init__(self, stream: IO[str] | None = None, *, as_json: bool | None = None) -> None:
        self._stream = stream or sys.stderr
        self._json = not _is_terminal(self._stream) if as_json is None else as_json
        self._encode = msgspec.json.Encoder().encode
        self._buffer = bytearray()
        self._flush_pending = False

    def write(self, line: AccessLine | RefusalLine) -> None:
        if not self._json:
            fields = line.__struct_fields__
            text = " ".join(f"{key}={plain(getattr(line, key))}" for key in fields)
            self._stream.write(text + "\n")
            return
        self._buffer += self._encode(line)
        self._buffer += b"\n"
        if len(self._buffer) >= _FLUSH_BYTES:
            self.flush()
        elif not self._flush_pending:
            self._flush_pending = True
            try:
                asyncio.get_running_loop().call_later(FLUSH_SECONDS, self.flush)
            except RuntimeError:  # no event loop: write at once
                self.flush()

    def flush(self) -> None:
        self._flush_pending = False
        if self._buffer:
            self._stream.write(self._buffer.decode("utf-8", "replace"))
            self._stream.flush()
            self._buffer.clear()


def plain(value: Any) -> str:
    """``value`` as one word of a line a person reads: as it is when that is safe, else
    quoted and escaped as JSON."""
    text = "-" if value is None else str(value)
    if text and text.isprintable() and not any(c in text for c in ' "\\='):
        return text
    # Quoted and escaped as JSON (ASCII only): a client's path can start no line of its
    # own, nor send an escape sequence (C0, C1, DEL) to the terminal that shows the log.
    return json.dumps(text).replace("\x7f", "\\u007f")


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return os.isatty(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
