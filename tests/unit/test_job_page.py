"""ListImageJobs' body assembled from rows is the body msgspec encodes from wire structs."""

from __future__ import annotations

import random

import pytest

from imagejobs.api.schemas import ListImageJobsResponse, encoder, job_info, job_page_json
from imagejobs.domain.enums import JobStatus, JobType
from imagejobs.domain.records import JobRow, job_of_row
from imagejobs.storage.job_store import list_jobs_statement


def _expected(count: int, rows: list[JobRow]) -> bytes:
    items = [job_info(job_of_row("p", row)) for row in rows]
    return encoder.encode(ListImageJobsResponse(count=count, items=items))


def test_rows_encode_byte_for_byte_as_the_wire_structs() -> None:
    rng = random.Random(7)
    rows: list[JobRow] = [
        (
            rng.randrange(10**17, 10**18),
            rng.choice(list(JobType)).value,
            rng.choice(list(JobStatus)).value,
            rng.randrange(0, 4_102_444_800_000),
            rng.choice([None, rng.randrange(0, 4_102_444_800_000)]),
            rng.randrange(0, 1000),
        )
        for _ in range(300)
    ]
    for size in (0, 1, 10, 100):
        page = rows[:size]
        assert job_page_json(len(rows), page) == _expected(len(rows), page)
        assert job_page_json(len(rows), page) == _expected(len(rows), page)  # cached rows
    assert job_page_json(0, []) == b'{"count":0,"items":[]}'


def test_a_stored_value_the_wire_does_not_know_is_refused() -> None:
    with pytest.raises(KeyError):
        job_page_json(1, [(1, "NOT_A_TYPE", "SUCCESS", 0, None, 0)])


def test_the_page_statement_takes_its_parameters_in_the_order_the_store_gives() -> None:
    # SqlJobStore.list_job_rows passes them positionally.
    for dialect in ("sqlite", "postgresql"):
        with_status = list_jobs_statement(True, dialect).names
        assert with_status == ("project_id", "job_type", "status", "limit", "offset")
        assert list_jobs_statement(False, dialect).names == (
            "project_id",
            "job_type",
            "limit",
            "offset",
        )
