"""One behavioural suite for the job store, run on SQLite and on PostgreSQL."""

from __future__ import annotations

import random

import pytest

from imagejobs.api.schemas import (
    ListImageJobsResponse,
    ListImageSubJobsResponse,
    encoder,
    job_info,
    job_page_json,
    sub_job_info,
    sub_job_page_json,
)
from imagejobs.domain.enums import JobStatus, JobType, SubJobStatus
from imagejobs.domain.records import (
    JobDetail,
    JobFilter,
    PageRequest,
    SubJob,
    SubJobFilter,
    job_of_row,
    sub_job_row,
)
from imagejobs.storage.job_store import SqlJobStore
from tests.factories import make_job, new_project

pytestmark = pytest.mark.anyio

ALL_TYPES = (JobType.CREATE_SERVER, JobType.CREATE_SERVER_IMAGE, JobType.DELETE_SERVER)


async def test_lists_newest_first_with_the_total_count(store: SqlJobStore) -> None:
    project = new_project()
    jobs = [make_job(project) for _ in range(15)]
    await store.insert_jobs(jobs)

    page = await store.list_jobs(project, JobFilter(JobType.CREATE_SERVER), PageRequest(0, 10))

    assert page.count == 15
    assert [j.id for j in page.items] == sorted((d.job.id for d in jobs), reverse=True)[:10]
    assert page.items[0] == jobs[-1].job


async def test_pages_cover_every_row_exactly_once(store: SqlJobStore) -> None:
    project = new_project()
    jobs = [make_job(project, status=random.choice(list(JobStatus))) for _ in range(47)]
    await store.insert_jobs(jobs)

    seen: list[int] = []
    for offset in range(0, 60, 7):
        page = await store.list_jobs(
            project, JobFilter(JobType.CREATE_SERVER), PageRequest(offset, 7)
        )
        assert page.count == 47
        seen.extend(j.id for j in page.items)

    assert seen == sorted((d.job.id for d in jobs), reverse=True)


async def test_filters_by_type_and_status(store: SqlJobStore) -> None:
    project = new_project()
    jobs = [
        make_job(project, job_type, status)
        for job_type in ALL_TYPES
        for status in JobStatus
        for _ in range(2)
    ]
    await store.insert_jobs(jobs)

    for job_type in ALL_TYPES:
        for status in JobStatus:
            page = await store.list_jobs(project, JobFilter(job_type, status), PageRequest())
            assert page.count == 2
            assert all(j.job_type is job_type and j.status is status for j in page.items)
        everything = await store.list_jobs(project, JobFilter(job_type), PageRequest())
        assert everything.count == 8


async def test_offset_past_the_end_is_empty_but_counted(store: SqlJobStore) -> None:
    project = new_project()
    await store.insert_jobs([make_job(project) for _ in range(3)])

    page = await store.list_jobs(
        project, JobFilter(JobType.CREATE_SERVER), PageRequest(2_147_483_647, 100)
    )

    assert page.count == 3
    assert page.items == []


async def test_an_empty_project_lists_nothing(store: SqlJobStore) -> None:
    page = await store.list_jobs(new_project(), JobFilter(JobType.DELETE_SERVER), PageRequest())
    assert (page.count, list(page.items)) == (0, [])


async def test_projects_never_see_each_others_jobs(store: SqlJobStore) -> None:
    mine, theirs = new_project(), new_project()
    my_job = make_job(mine, sub_jobs=2)
    their_job = make_job(theirs, sub_jobs=2)
    await store.insert_jobs([my_job, their_job])

    page = await store.list_jobs(mine, JobFilter(JobType.CREATE_SERVER), PageRequest())
    assert [j.id for j in page.items] == [my_job.job.id]
    assert await store.get_job(mine, their_job.job.id) is None
    subs = await store.list_sub_jobs(mine, SubJobFilter((JobType.CREATE_SERVER,)), PageRequest())
    assert {s.job_id for s in subs.items} == {my_job.job.id}
    assert await store.count_sub_jobs(mine, SubJobFilter(())) == 2
    their_sub_ids = [s.id for s in their_job.sub_jobs]
    assert await store.delete_finished_sub_jobs(mine, their_sub_ids) == 0
    assert await store.count_sub_jobs(theirs, SubJobFilter(())) == 2


async def test_get_job_returns_its_sub_jobs_in_order(store: SqlJobStore) -> None:
    project = new_project()
    detail = make_job(project, JobType.CREATE_SERVER_IMAGE, JobStatus.FAILED, sub_jobs=3)
    await store.insert_jobs([detail])

    found = await store.get_job(project, detail.job.id)

    assert found is not None
    assert found.job == detail.job
    assert list(found.sub_jobs) == list(detail.sub_jobs)


async def test_get_job_without_sub_jobs(store: SqlJobStore) -> None:
    project = new_project()
    detail = make_job(project, sub_jobs=0)
    await store.insert_jobs([detail])

    found = await store.get_job(project, detail.job.id)

    assert found is not None
    assert found.sub_jobs == []
    assert found.job.sub_jobs_total == 0


async def test_sub_jobs_filter_by_job_status_and_type(store: SqlJobStore) -> None:
    project = new_project()
    first = make_job(project, sub_statuses=[SubJobStatus.SUCCESS, SubJobStatus.FAILED])
    second = make_job(project, JobType.DELETE_SERVER, JobStatus.RUNNING, sub_jobs=3)
    await store.insert_jobs([first, second])

    by_job = await store.list_sub_jobs(
        project, SubJobFilter((JobType.CREATE_SERVER,), job_id=first.job.id), PageRequest()
    )
    assert by_job.count == 2
    assert [s.id for s in by_job.items] == [s.id for s in reversed(first.sub_jobs)]

    failed = SubJobFilter((JobType.CREATE_SERVER,), SubJobStatus.FAILED)
    assert (await store.list_sub_jobs(project, failed, PageRequest())).count == 1
    assert await store.count_sub_jobs(project, failed) == 1
    assert await store.count_sub_jobs(project, SubJobFilter((JobType.DELETE_SERVER,))) == 3
    assert await store.count_sub_jobs(project, SubJobFilter(())) == 5
    both = SubJobFilter((JobType.DELETE_SERVER, JobType.CREATE_SERVER), job_id=second.job.id)
    assert await store.count_sub_jobs(project, both) == 3
    impossible = SubJobFilter((JobType.CREATE_SERVER,), impossible=True)
    assert await store.count_sub_jobs(project, impossible) == 0


async def test_only_finished_sub_jobs_are_deleted_and_counts_follow(store: SqlJobStore) -> None:
    project = new_project()
    statuses = [SubJobStatus.SUCCESS, SubJobStatus.FAILED, SubJobStatus.RUNNING]
    detail = make_job(project, status=JobStatus.RUNNING, sub_statuses=statuses)
    await store.insert_jobs([detail])
    ids = [s.id for s in detail.sub_jobs] + [999_999_999_999_999_999]

    deleted = await store.delete_finished_sub_jobs(project, ids)

    assert deleted == 2
    found = await store.get_job(project, detail.job.id)
    assert found is not None
    assert [s.status for s in found.sub_jobs] == [SubJobStatus.RUNNING]
    assert found.job.sub_jobs_total == 1
    assert await store.count_sub_jobs(project, SubJobFilter(())) == 1
    listed = await store.list_sub_jobs(project, SubJobFilter(ALL_TYPES), PageRequest())
    assert listed.count == 1
    assert await store.delete_finished_sub_jobs(project, ids) == 0


async def test_counts_always_match_the_rows(store: SqlJobStore) -> None:
    """A model check: random inserts and deletes; every count equals a brute-force count."""
    rng = random.Random(7)
    project = new_project()
    details: list[JobDetail] = []
    for _ in range(40):
        statuses = [rng.choice(list(SubJobStatus)) for _ in range(rng.randint(0, 3))]
        details.append(
            make_job(
                project,
                rng.choice(ALL_TYPES),
                rng.choice(list(JobStatus)),
                sub_statuses=statuses or None,
                sub_jobs=0 if not statuses else 1,
            )
        )
    await store.insert_jobs(details)
    all_subs = [s for d in details for s in d.sub_jobs]
    doomed = rng.sample([s.id for s in all_subs], k=len(all_subs) // 2)
    await store.delete_finished_sub_jobs(project, doomed)
    remaining = [
        s
        for s in all_subs
        if s.id not in doomed or s.status not in (SubJobStatus.SUCCESS, SubJobStatus.FAILED)
    ]

    for job_type in ALL_TYPES:
        for status in [None, *SubJobStatus]:
            expected = [
                s
                for s in remaining
                if s.job_type is job_type and (status is None or s.status is status)
            ]
            flt = SubJobFilter((job_type,), status)
            page = await store.list_sub_jobs(project, flt, PageRequest(0, 100))
            assert page.count == len(expected) == await store.count_sub_jobs(project, flt)
            assert [s.id for s in page.items] == sorted((s.id for s in expected), reverse=True)
    for detail in details:
        found = await store.get_job(project, detail.job.id)
        assert found is not None
        assert found.job.sub_jobs_total == len(found.sub_jobs)


async def test_the_list_rows_are_the_listed_jobs_in_order(store: SqlJobStore) -> None:
    # list_job_rows (ListImageJobs' path) reads a page as one value on SQLite: rows'
    # texts in no set order, sorted by the reader. Ids of different lengths (the service
    # mints 18 digits; a row written otherwise still lists in id order), NULL end times,
    # statuses filtered or not, empty pages, and whether the page holds an unfinished job.
    project = new_project()
    jobs = [make_job(project, status=random.choice(list(JobStatus))) for _ in range(23)]
    for index, short_id in enumerate((7, 95, 10**17 - 1, 10**18 + 3)):
        detail = make_job(project, status=JobStatus.SUCCESS if index % 2 else JobStatus.RUNNING)
        jobs.append(JobDetail(detail.job._replace(id=short_id), []))
    await store.insert_jobs(jobs)

    for status in (None, *JobStatus):
        for offset, limit in ((0, 10), (10, 10), (20, 10), (0, 100), (40, 5)):
            job_filter = JobFilter(JobType.CREATE_SERVER, status)
            expected = await store.list_jobs(project, job_filter, PageRequest(offset, limit))
            rows = await store.list_job_rows(
                project,
                JobType.CREATE_SERVER.value,
                None if status is None else status.value,
                offset,
                limit,
            )
            assert rows.count == expected.count
            assert [job_of_row(project, row) for row in rows.items] == list(expected.items)
            unfinished = any(
                j.status in (JobStatus.WAITING, JobStatus.RUNNING) for j in expected.items
            )
            assert not (rows.all_finished and unfinished)
            assert job_page_json(rows.count, rows.items) == encoder.encode(
                ListImageJobsResponse(rows.count, [job_info(j) for j in expected.items])
            )


# Names and messages a sub-job can hold: JSON's escapes, the row separator (\x1e), other
# control characters, non-ASCII, and the text the page's JSON is cut at.
AWKWARD_TEXTS = (
    "",
    'quote " and backslash \\',
    "separator \x1e, bell \x07, tab \t, newline \n, del \x7f",
    "镜像测试 é \u2028",
    '"project_id":""',
    ";,",
)


def _sub_job_of_row(project_id: str, listed: object) -> SubJob:
    r = sub_job_row(listed)  # type: ignore[arg-type]
    return SubJob(r[0], r[1], project_id, JobType(r[2]), SubJobStatus(r[3]), *r[4:])


async def test_the_sub_job_rows_are_the_listed_sub_jobs_in_order(store: SqlJobStore) -> None:
    # list_sub_job_rows (ListImageSubJobs' path) reads a page as one value on SQLite: each
    # row a JSON array, in no set order, sorted by the reader. Ids of different lengths,
    # NULL end times, every filter (type, status, parent job), empty pages and pages past
    # the end; the body bytes as the structs encode them, under the request's project id.
    rng = random.Random(12)
    project = new_project()
    jobs = []
    for index in range(30):
        statuses = [rng.choice(list(SubJobStatus)) for _ in range(rng.randint(0, 4))]
        detail = make_job(
            project,
            rng.choice(ALL_TYPES),
            rng.choice(list(JobStatus)),
            sub_jobs=len(statuses),
            sub_statuses=statuses or None,
        )
        subs = [
            s._replace(
                resource_name=rng.choice(AWKWARD_TEXTS),
                error_message=rng.choice(AWKWARD_TEXTS),
                resource_id=rng.choice(AWKWARD_TEXTS),
            )
            for s in detail.sub_jobs
        ]
        if index < 4:  # ids not of the service's 18 digits still list in id order
            subs = [s._replace(id=(7, 95, 10**17 - 1, 10**18 + 3)[index]) for s in subs[:1]]
        jobs.append(JobDetail(detail.job._replace(sub_jobs_total=len(subs)), subs))
    await store.insert_jobs(jobs)
    shown_project = "request-project-ID"
    parents = [None, jobs[5].job.id, jobs[0].job.id, 999_999]

    pages = 0
    for job_type in ALL_TYPES:
        for status in (None, *SubJobStatus):
            for parent in parents:
                flt = SubJobFilter((job_type,), status, parent)
                for offset, limit in ((0, 10), (3, 2), (0, 100), (12, 10), (60, 5)):
                    page = PageRequest(offset, limit)
                    expected = await store.list_sub_jobs(project, flt, page)
                    rows = await store.list_sub_job_rows(project, flt, page)
                    assert rows.count == expected.count
                    listed = [_sub_job_of_row(project, r) for r in rows.items]
                    assert listed == list(expected.items)
                    wire = [sub_job_info(s, shown_project) for s in expected.items]
                    assert sub_job_page_json(
                        rows.count, rows.items, shown_project
                    ) == encoder.encode(ListImageSubJobsResponse(rows.count, wire))
                    pages += bool(expected.items)
    assert pages > 50  # the filters found rows, not only empty pages

    everything = await store.list_sub_job_rows(
        project, SubJobFilter((JobType.CREATE_SERVER,)), PageRequest(0, 100)
    )
    subs = sorted(
        (s for d in jobs for s in d.sub_jobs if s.job_type is JobType.CREATE_SERVER),
        key=lambda s: s.id,
        reverse=True,
    )
    assert [_sub_job_of_row(project, r) for r in everything.items] == subs
    assert everything.count == len(subs)
    impossible = SubJobFilter((JobType.CREATE_SERVER,), None, None, impossible=True)
    nothing = await store.list_sub_job_rows(project, impossible, PageRequest())
    assert (nothing.count, list(nothing.items)) == (0, [])
