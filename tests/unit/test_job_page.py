"""ListImageJobs' body assembled from rows is the body msgspec encodes from wire structs."""

from __future__ import annotations

import random

import pytest

from imagejobs.api.schemas import (
    ListImageJobsResponse,
    encoder,
    job_info,
    job_page_json,
    sub_job_page_json,
)
from imagejobs.domain.enums import JobStatus, JobType, SubJobStatus
from imagejobs.domain.records import JobRow, PageRequest, SubJobFilter, job_of_row, job_row
from imagejobs.storage.job_store import (
    PageRows,
    SqlJobStore,
    list_jobs_statement,
    list_sub_job_texts_statement,
)


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


def test_a_page_of_the_same_rows_is_the_same_body_and_another_page_its_own() -> None:
    # The store hands a repeated SQLite page on as the same tuple (PageRows): its body is
    # remembered by (count, rows), which is all the body is made of.
    rows = (
        "0000000000000000042,CREATE_SERVER,SUCCESS,1646649643858,1646649644858,1",
        "0000000000000000041,CREATE_SERVER,FAILED,1646649643000,,0",
    )
    first = job_page_json(2, rows)
    assert first == _expected(2, [job_row(row) for row in rows])
    assert job_page_json(2, rows) is first
    assert job_page_json(3, rows) == _expected(3, [job_row(row) for row in rows])
    assert job_page_json(2, rows[:1]) == _expected(2, [job_row(rows[0])])
    # A list (PostgreSQL's rows, deep pages) is encoded each time, the same bytes.
    assert job_page_json(2, list(rows)) == first


def test_page_rows_are_newest_first_and_remembered_by_the_page_text() -> None:
    pages = PageRows(";")
    text = "0000000000000000002,b;0000000000000000010,a;0000000000000000001,c"
    rows = pages.rows(text)
    assert rows == (
        "0000000000000000010,a",
        "0000000000000000002,b",
        "0000000000000000001,c",
    )
    assert pages.rows(text) is rows
    assert pages.rows("0000000000000000007,x") == ("0000000000000000007,x",)
    big = ";".join(f"{n:019d},x" for n in range(1000))  # over the kept size: split anew
    assert pages.rows(big) == pages.rows(big)
    assert pages.rows(big) is not pages.rows(big)


def test_a_remembered_sub_job_page_is_the_requests_project_s() -> None:
    # A sub-job's body shows the request's project id (the row holds its storage key).
    row = '["0000000000000000007",3,"CREATE_SERVER","SUCCESS",1646649643858,null,"r","n","",""]'
    rows = (row,)
    first = sub_job_page_json(1, rows, "project-a")
    assert b'"project_id":"project-a"' in first
    assert sub_job_page_json(1, rows, "project-a") is first
    other = sub_job_page_json(1, rows, "project-b")
    assert other == first.replace(b"project-a", b"project-b")
    assert sub_job_page_json(1, [row], "project-a") == first


def test_the_sub_job_list_takes_its_parameters_in_the_order_the_store_gives() -> None:
    # SqlJobStore.list_sub_job_rows passes them positionally (_sub_job_args) on SQLite.
    page = PageRequest(offset=20, limit=10)
    for types in ((JobType.CREATE_SERVER,), ()):
        for status in (None, SubJobStatus.FAILED):
            for job_id in (None, 42):
                flt = SubJobFilter(types, status, job_id)
                params = SqlJobStore._sub_job_params("p", flt)
                params |= {"limit": 10, "offset": 20}
                statement = list_sub_job_texts_statement(*SqlJobStore._shape(flt))
                assert SqlJobStore._sub_job_args("p", flt, page) == list(statement.args(params))
