"""Seeded jobs tell time as the engine does: a job begins when it is created; its
sub-jobs begin with it (WAITING: their creation time) or a moment later (once started),
never before it; an ended sub-job ends before its job does; only WAITING and RUNNING
rows have no end; and nothing begins or ends after now. Both seeders: the demo's world
and `imagejobs seed` (several sub-jobs a job, a short --days included)."""

from __future__ import annotations

from typing import Any

import pytest

from imagejobs.domain.times import now_ms
from imagejobs.services.demo_world import LIVE_JOBS, demo_state
from imagejobs.services.seeding import live_payload
from imagejobs.storage.seed import SeedPlan, Tally, generate

LIVE = ("WAITING", "RUNNING")


def _problems(job: dict[str, Any], subs: list[dict[str, Any]], now: int) -> list[str]:
    found = []
    if (job["end"] is None) != (job["status"] in LIVE):
        found.append(f"job {job['status']} with end {job['end']}")
    if job["end"] is not None and not job["begin"] <= job["end"] <= now:
        found.append("job ends before it begins or after now")
    for sub in subs:
        if sub["begin"] < job["begin"]:
            found.append(f"{sub['status']} sub-job begins before its job")
        if sub["begin"] > now:
            found.append("sub-job begins after now")
        if (sub["end"] is None) != (sub["status"] in LIVE):
            found.append(f"{sub['status']} sub-job with end {sub['end']}")
        if sub["end"] is not None and not sub["begin"] <= sub["end"] <= now:
            found.append(f"{sub['status']} sub-job ends before it begins or after now")
        if job["end"] is not None and sub["end"] is not None and sub["end"] > job["end"]:
            found.append("sub-job ends after its job")
        if sub["status"] == "WAITING" and sub["begin"] != job["begin"]:
            found.append("WAITING sub-job's begin is not its creation (its job's)")
    if job["status"] == "WAITING" and {s["status"] for s in subs} != {"WAITING"}:
        found.append("WAITING job with started sub-jobs")
    return found


def test_the_demo_worlds_times_are_consistent() -> None:
    now = now_ms()
    state = demo_state("a" * 32, 2_000, now)
    problems = []
    for detail in state.jobs:
        j = detail.job
        job = {"status": str(j.status), "begin": j.begin_time, "end": j.end_time}
        subs = [
            {"status": str(s.status), "begin": s.begin_time, "end": s.end_time}
            for s in detail.sub_jobs
        ]
        problems += _problems(job, subs, now)
    assert problems == []
    live = [d.job for d in state.jobs if str(d.job.status) in LIVE]
    assert len(live) == LIVE_JOBS
    # In progress means lately: not hours in a queue of seconds.
    assert all(now - job.begin_time <= 60_000 for job in live)


@pytest.mark.parametrize(("sub_jobs", "days"), [(1, 30), (3, 30), (3, 1), (20, 1)])
def test_imagejobs_seeds_times_are_consistent(sub_jobs: int, days: int) -> None:
    plan = SeedPlan("b" * 32, 20_000, sub_jobs_per_job=sub_jobs, random_seed=3, days=days)
    jobs: dict[int, dict[str, Any]] = {}
    subs: dict[int, list[dict[str, Any]]] = {}
    for batch in generate(plan, Tally(plan.project_ids()), live_payload):
        for row in batch.jobs:
            jobs[row[0]] = {"status": row[3], "begin": row[4], "end": row[5]}
        for row in batch.sub_jobs:
            sub = {"status": row[4], "begin": row[5], "end": row[6]}
            subs.setdefault(row[1], []).append(sub)
    now = now_ms()
    assert {j["status"] for j in jobs.values()} == {"SUCCESS", "FAILED", "RUNNING", "WAITING"}
    problems = sorted(
        {p for job_id, job in jobs.items() for p in _problems(job, subs[job_id], now)}
    )
    assert problems == []
