"""Metrics exposition, access lines and the rate limiter, without I/O."""

from __future__ import annotations

import io

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from imagejobs.domain.errors import AuthenticationFailed, SignatureMismatch, Throttled
from imagejobs.observability import (
    AccessLine,
    AccessLog,
    EngineCounts,
    Metrics,
    RefusalLine,
    counter,
)
from imagejobs.services.protection import RateLimiter, failure_reason


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.render().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_request_latency_is_a_cumulative_histogram_per_operation() -> None:
    metrics = Metrics()
    for seconds in (0.0005, 0.003, 0.003, 2.0, 60.0):
        metrics.observe_request("ListImageJobs", 200, seconds)
    metrics.observe_request("ListImageJobs", 503, 0.0001)
    got = samples(metrics)

    def bucket(le: str) -> float:
        return got[
            (
                "imagejobs_request_duration_seconds_bucket",
                (("le", le), ("operation", "ListImageJobs")),
            )
        ]

    assert bucket("0.001") == 2
    assert bucket("0.005") == 4
    assert bucket("2.5") == 5
    assert bucket("+Inf") == 6
    assert got[("imagejobs_request_duration_seconds_sum", (("operation", "ListImageJobs"),))] == (
        pytest.approx(62.0066)
    )
    ok = (("operation", "ListImageJobs"), ("status", "200"))
    assert got[("imagejobs_requests_total", ok)] == 5


def _busy_metrics() -> Metrics:
    metrics = Metrics()
    names = ["ListImageJobs", "GET /_imagejobs/audit", 'odd "name" \\ with\na newline']
    for i, seconds in enumerate((0.0004, 0.001, 0.003, 0.07, 0.3, 2.0, 7.0, 1e-9)):
        for name in names:
            metrics.observe_request(name, (200, 400, 401, 503)[i % 4], seconds)
    metrics.requests.counts[("ListImageJobs", 200)] = 1_234_567  # written 1.234567e+06
    metrics.refusals.busy, metrics.refusals.throttled = 3, 2_000_000
    metrics.auth_failed("signature")
    metrics.auth_failed("nonsense")
    metrics.in_flight.inc(4)
    metrics.sample(lambda: [counter("imagejobs_sub_job_retries", "Retried.", 3)])
    return metrics


def _engine_counts(jobs: int) -> EngineCounts:
    return EngineCounts(
        {("CREATE_SERVER", "SUCCESS"): jobs, ("DELETE_SERVER", "FAILED"): 1},
        {("CREATE_SERVER", "RUNNING"): 2},
        queue_due=7,
        oldest_due_age_seconds=1.25,
        leased=3,
        expired_leases=0,
    )


def test_the_fast_render_writes_what_prometheus_client_writes() -> None:
    """/metrics' text is written directly (its label strings kept between scrapes, the
    engine's gauges once per read of their counts): it must stay line for line what
    prometheus_client's own writer makes of the same metrics, and parse as one family per
    name, whatever the counts (a large one is written as a Go float) and before or after
    the engine's counts are read."""
    metrics = _busy_metrics()
    for step in ("no counts yet", "counts", "the same counts", "new counts"):
        if step == "counts":
            metrics.set_engine_counts(_engine_counts(5))
        elif step == "new counts":
            metrics.set_engine_counts(_engine_counts(6))
            metrics.observe_request("ShowImageJob", 200, 0.002)
        fast = metrics.render().decode()
        reference = generate_latest(metrics.registry).decode()
        assert sorted(fast.splitlines()) == sorted(reference.splitlines()), step
        assert fast.endswith("\n")
        names = [family.name for family in text_string_to_metric_families(fast)]
        assert len(names) == len(set(names)), step  # each family's lines together
    text = metrics.render().decode()
    assert 'imagejobs_requests_total{operation="ListImageJobs",status="200"} 1.234567e+06' in (text)
    assert 'imagejobs_jobs{job_type="CREATE_SERVER",status="SUCCESS"} 6.0' in text
    assert 'imagejobs_requests_shed_total{reason="rate_limit"} 2e+06' in text


def test_two_apps_never_share_counts() -> None:
    first, second = Metrics(), Metrics()
    first.observe_request("ListImageJobs", 200, 0.01)
    assert not any(name == "imagejobs_requests_total" for name, _ in samples(second))


def test_access_lines_as_key_value_for_a_person() -> None:
    stream = io.StringIO()
    log = AccessLog(stream, as_json=False)
    log.write(AccessLine("t", "abc", "GET", "/v1/p/x y", "Op", None, "acme/bob", 200, 1.5))
    assert stream.getvalue() == (
        'time=t request_id=abc method=GET path="/v1/p/x y" operation=Op project=- '
        "principal=acme/bob status=200 duration_ms=1.5\n"
    )


def test_a_key_value_line_cannot_be_forged_from_the_path() -> None:
    """The path is the client's (percent-decoded): a newline in it must not start a line
    of its own, nor an escape sequence reach the operator's terminal."""
    stream = io.StringIO()
    log = AccessLog(stream, as_json=False)
    path = '/v1/a\ntime=t request_id=forged status=200\x1b[2J\x9b\x7f"\\'
    log.write(AccessLine("t", "abc", "GET", path, "unmatched", None, "-", 404, 0.1))
    line = stream.getvalue()
    assert line.endswith("\n")
    assert line.count("\n") == 1
    assert line.isascii()
    assert all(c.isprintable() for c in line[:-1])
    assert (
        'path="/v1/a\\ntime=t request_id=forged status=200\\u001b[2J\\u009b\\u007f\\"\\\\"' in line
    )


def test_refusals_are_counted_in_plain_ints_and_exposed_when_scraped() -> None:
    metrics = Metrics()
    metrics.refusals.busy += 3  # refused at the edge: no operation, not timed
    metrics.refusals.busy_routed += 1  # refused by its route: also counted under it
    metrics.observe_request("CreateImageServer", 503, 0.001)
    metrics.refusals.throttled += 2
    got = samples(metrics)
    assert got[("imagejobs_requests_total", (("operation", "refused"), ("status", "503")))] == 3
    shed = {labels[0][1]: n for (name, labels), n in got.items() if name.endswith("shed_total")}
    assert shed == {"in_flight": 4, "rate_limit": 2, "headers": 0}
    assert not any("refused" in str(labels) for name, labels in got if "duration" in name)


def test_refusal_lines_as_key_value_for_a_person() -> None:
    stream = io.StringIO()
    AccessLog(stream, as_json=False).write(
        RefusalLine("t", "refused", 503, "WKS.00050902", 1200, 1.0)
    )
    assert stream.getvalue() == (
        "time=t operation=refused status=503 error_code=WKS.00050902 count=1200 seconds=1.0\n"
    )


def test_the_rate_limiter_admits_a_burst_then_the_rate() -> None:
    now = [100.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    for _ in range(3):
        limiter.admit("acme")
    with pytest.raises(Throttled) as refused:
        limiter.admit("acme")
    assert refused.value.retry_after == 1
    assert refused.value.code == "APIGW.0308"
    limiter.admit("other")  # every account has its own bucket
    now[0] += 0.5  # one token back at 2 per second
    limiter.admit("acme")
    with pytest.raises(Throttled):
        limiter.admit("acme")


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (SignatureMismatch(), "signature"),
        (AuthenticationFailed("x-auth-token not found"), "missing"),
        (AuthenticationFailed("ak AKXX not exist"), "unknown_key"),
        (AuthenticationFailed("AK access failed to reach the limit,forbidden."), "locked"),
        (AuthenticationFailed("invalid operator token"), "operator"),
        (AuthenticationFailed("token expires, expires_at: 2026"), "token"),
        (AuthenticationFailed(), "other"),
    ],
)
def test_authentication_failures_have_a_bounded_reason(
    error: AuthenticationFailed, reason: str
) -> None:
    assert failure_reason(error) == reason
