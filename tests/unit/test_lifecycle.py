"""The life of an engine-driven sub-job, as pure rules (no I/O)."""

from __future__ import annotations

import pytest

from imagejobs.domain.enums import ImageServerStatus, JobStatus, JobType, SubJobStatus
from imagejobs.domain.lifecycle import (
    ClaimedTask,
    Done,
    Failed,
    Finish,
    Pending,
    Phase,
    Reschedule,
    StartRollback,
    backoff_seconds,
    decide,
    exhausted,
    job_status_after,
)

NOW = 1_800_000_000_000


def task(
    job_type: JobType = JobType.CREATE_SERVER,
    phase: Phase = Phase.RUN,
    attempts: int = 1,
    **payload: object,
) -> ClaimedTask:
    return ClaimedTask(
        sub_job_id=11,
        job_id=10,
        project_id="p",
        job_type=job_type,
        position=0,
        phase=phase,
        fencing_token=3,
        attempts=attempts,
        started_at=NOW - 5_000,
        reads=0,
        payload={"server_id": "42", "image_id": "img-1", **payload},
        error_code="WKS.1" if phase is Phase.ROLLBACK else "",
        error_message="boom" if phase is Phase.ROLLBACK else "",
    )


def run(claimed: ClaimedTask, outcome: Done | Pending | Failed, max_attempts: int = 5):  # type: ignore[no-untyped-def]
    return decide(claimed, outcome, now=NOW, max_attempts=max_attempts, backoff_base=1.0)


def test_a_created_server_becomes_active_with_its_ids() -> None:
    result = run(task(), Done({"server_id": "wksapp-1", "instance_id": "ecs-1"}))
    assert isinstance(result, Finish)
    assert result.status is SubJobStatus.SUCCESS
    assert result.server is not None
    assert (result.server.server_id, result.server.status) == (42, ImageServerStatus.ACTIVE)
    assert result.server.fields == {"server_id": "wksapp-1", "instance_id": "ecs-1"}


def test_a_built_image_makes_the_server_built_and_names_the_image() -> None:
    result = run(task(JobType.CREATE_SERVER_IMAGE), Done({"image_id": "img-1"}))
    assert isinstance(result, Finish)
    assert result.server is not None
    assert result.server.status is ImageServerStatus.BUILT
    assert result.server.fields == {"image_id": "img-1"}


def test_a_deleted_server_is_gone() -> None:
    result = run(task(JobType.DELETE_SERVER), Done())
    assert isinstance(result, Finish)
    assert result.server is not None
    assert result.server.delete


def test_pending_reschedules_without_counting_an_attempt() -> None:
    result = run(task(), Pending(2.5, until_reads=3, progress="50%"))
    assert isinstance(result, Reschedule)
    assert (result.due_at, result.attempts_delta, result.wait_reads) == (NOW + 2500, -1, 3)
    assert result.progress == "50%"


def test_transient_errors_back_off_exponentially_until_the_attempts_run_out() -> None:
    for attempts, delay in ((1, 1_000), (2, 2_000), (3, 4_000)):
        result = run(task(attempts=attempts), Failed("WKS.9", "busy", transient=True))
        assert isinstance(result, Reschedule)
        assert result.due_at == NOW + delay
        assert result.attempts_delta == 0
        assert (result.error_code, result.error_message) == ("WKS.9", "busy")
    last = run(task(attempts=5), Failed("WKS.9", "busy", transient=True))
    assert isinstance(last, StartRollback)


def test_a_failed_creation_rolls_back_then_fails_with_the_original_error() -> None:
    failed = run(task(), Failed("WKS.7", "no quota"))
    assert isinstance(failed, StartRollback)
    assert (failed.error_code, failed.error_message, failed.due_at) == ("WKS.7", "no quota", NOW)
    rolled_back = run(task(phase=Phase.ROLLBACK), Done())
    assert isinstance(rolled_back, Finish)
    assert rolled_back.status is SubJobStatus.FAILED
    assert (rolled_back.error_code, rolled_back.error_message) == ("WKS.1", "boom")
    assert rolled_back.server is not None
    assert rolled_back.server.status is ImageServerStatus.ERROR


def test_a_failed_image_build_returns_the_server_to_its_previous_status() -> None:
    claimed = task(JobType.CREATE_SERVER_IMAGE, Phase.ROLLBACK, previous_status="BUILT")
    result = run(claimed, Done())
    assert isinstance(result, Finish)
    assert result.server is not None
    assert result.server.status is ImageServerStatus.BUILT


def test_a_failed_rollback_still_ends_the_sub_job_and_says_so() -> None:
    result = run(task(phase=Phase.ROLLBACK), Failed("WKS.8", "stuck"))
    assert isinstance(result, Finish)
    assert result.status is SubJobStatus.FAILED
    assert result.error_code == "WKS.1"
    assert result.error_message == "boom (rollback failed: stuck)"


def test_a_failed_deletion_fails_at_once_and_marks_the_server_in_error() -> None:
    result = run(task(JobType.DELETE_SERVER), Failed("WKS.5", "in use"))
    assert isinstance(result, Finish)
    assert result.status is SubJobStatus.FAILED
    assert result.server is not None
    assert result.server.status is ImageServerStatus.ERROR


def test_a_task_that_used_up_its_attempts_is_abandoned() -> None:
    assert exhausted(task(attempts=5), 5) is None
    abandoned = exhausted(task(attempts=6), 5)
    assert abandoned is not None
    assert not abandoned.transient
    assert "5 attempts" in abandoned.message


def test_backoff_is_capped() -> None:
    assert backoff_seconds(1, 0.5) == 0.5
    assert backoff_seconds(30, 1.0) == 60.0


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ({SubJobStatus.SUCCESS: 3}, JobStatus.SUCCESS),
        ({SubJobStatus.SUCCESS: 2, SubJobStatus.FAILED: 1}, JobStatus.FAILED),
        ({SubJobStatus.FAILED: 1, SubJobStatus.RUNNING: 1}, None),
        ({SubJobStatus.SUCCESS: 1, SubJobStatus.ROLLBACK: 1}, None),
        ({SubJobStatus.WAITING: 1}, None),
        ({}, JobStatus.SUCCESS),
    ],
)
def test_a_job_ends_once_every_sub_job_ended(
    counts: dict[SubJobStatus, int], expected: JobStatus | None
) -> None:
    assert job_status_after(counts) is expected
