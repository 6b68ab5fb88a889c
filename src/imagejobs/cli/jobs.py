"""``imagejobs jobs``: image jobs of a running service, over its public API."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from imagejobs.cli.client_options import (
    CLIENT_EPILOG,
    EXIT_FAILED,
    ClientExit,
    Context,
    api_command,
    api_list_command,
)
from imagejobs.cli.tables import echo_fields, echo_table, page_footer, progress_bar, short_time
from imagejobs.domain.enums import FINISHED_JOB_STATUSES, QUERYABLE_JOB_TYPES, SubJobStatus

JOB_TYPES = ", ".join(QUERYABLE_JOB_TYPES)
SUB_JOB_STATUSES = ", ".join(SubJobStatus)
FINISHED_SUB_JOBS = {SubJobStatus.SUCCESS, SubJobStatus.FAILED}
FINISHED = {str(s) for s in FINISHED_JOB_STATUSES}

job_type_option = click.option("--job-type", required=True, help=f"One of {JOB_TYPES}.")
offset_option = click.option("--offset", type=int, default=None, help="Items to skip.")
limit_option = click.option("--limit", type=int, default=None, help="Items per page (1-100).")


@click.group(epilog=CLIENT_EPILOG)
def jobs() -> None:
    """List, show, watch and delete image jobs of a running service."""


@jobs.command("list", epilog=CLIENT_EPILOG)
@job_type_option
@click.option("--status", default=None, help="WAITING, RUNNING, SUCCESS or FAILED.")
@offset_option
@limit_option
@api_list_command
def list_jobs(
    ctx: Context, job_type: str, status: str | None, offset: int | None, limit: int | None
) -> None:
    """Image jobs of one type, newest first (ListImageJobs)."""
    query = {"job_type": job_type, "status": status, "offset": offset, "limit": limit}
    page = ctx.client.call("ListImageJobs", query=query)
    if ctx.emitted_page(page):
        return
    echo_table(
        ["ID", "TYPE", "STATUS", "SUB-JOBS", "BEGIN (UTC)", "END (UTC)"],
        [
            [j["id"], j["job_type"], j["status"], j["sub_jobs_total"], *_times(j)]
            for j in page["items"]
        ],
    )
    page_footer(offset, len(page["items"]), page["count"])


def _times(item: dict[str, Any]) -> list[str]:
    return [short_time(item["begin_time"]), short_time(item["end_time"])]


def _sub_job_rows(sub_jobs: list[dict[str, Any]]) -> list[list[object]]:
    return [
        [
            s["id"],
            s["status"],
            s["job_resource_info"]["resource_id"] or "-",
            s["job_resource_info"]["resource_name"] or "-",
            *_times(s),
            " ".join(filter(None, s["job_execute_info"].values())) or "-",
        ]
        for s in sub_jobs
    ]


# Times in UTC, labelled as in `jobs list` and `jobs show`.
_SUB_JOB_HEADERS = [
    "ID",
    "STATUS",
    "RESOURCE ID",
    "RESOURCE NAME",
    "BEGIN (UTC)",
    "END (UTC)",
    "ERROR",
]


def _done(job: dict[str, Any]) -> int:
    return sum(1 for s in job["sub_jobs"] if s["status"] in FINISHED_SUB_JOBS)


@jobs.command("show", epilog=CLIENT_EPILOG)
@click.argument("job_id")
@api_command
def show_job(ctx: Context, job_id: str) -> None:
    """One job with its sub-jobs (ShowImageJob)."""
    job = ctx.client.call("ShowImageJob", path={"job_id": job_id})
    if ctx.as_json:
        ctx.emit_json(job)
        return
    echo_fields(
        [
            ("ID", job["id"]),
            ("Type", job["job_type"]),
            ("Status", job["status"]),
            ("Progress", progress_bar(_done(job), job["sub_jobs_total"])),
            ("Begin (UTC)", short_time(job["begin_time"])),
            ("End (UTC)", short_time(job["end_time"])),
        ]
    )
    click.echo()
    echo_table(_SUB_JOB_HEADERS, _sub_job_rows(job["sub_jobs"]))


@jobs.command("watch", epilog=CLIENT_EPILOG)
@click.argument("job_id")
@click.option(
    "--interval",
    type=click.FloatRange(0.1, 60),
    default=1.0,
    show_default=True,
    help="Seconds between two reads of the job.",
)
@api_command
def watch_job(ctx: Context, job_id: str, interval: float) -> None:
    """Follow a job until it ends; exit 1 if it failed (ShowImageJob, polled).

    Prints a line at each change of status or progress (with --output json, the job as
    one JSON line)."""
    last = None
    while True:
        job = ctx.client.call("ShowImageJob", path={"job_id": job_id})
        state = (job["status"], _done(job))
        if state != last:
            if ctx.as_json:  # one line per change (JSON lines), for scripts that follow
                click.echo(json.dumps(job, ensure_ascii=False))
            else:
                bar = progress_bar(state[1], job["sub_jobs_total"])
                click.echo(f"{job['status']:<8} {bar}")
            last = state
        if job["status"] in FINISHED:
            break
        time.sleep(interval)
    if job["status"] != "SUCCESS":
        failures = [
            f"{s['id']}: " + " ".join(s["job_execute_info"].values())
            for s in job["sub_jobs"]
            if s["status"] == "FAILED"
        ]
        raise ClientExit(f"job {job_id} failed: " + "; ".join(failures), EXIT_FAILED)


@jobs.command("sub-jobs", epilog=CLIENT_EPILOG)
@job_type_option
@click.option("--status", default=None, help=f"One of {SUB_JOB_STATUSES}.")
@click.option("--job-id", default=None, help="Only the sub-jobs of this job.")
@offset_option
@limit_option
@api_list_command
def list_sub_jobs(
    ctx: Context,
    job_type: str,
    status: str | None,
    job_id: str | None,
    offset: int | None,
    limit: int | None,
) -> None:
    """Image sub-jobs, newest first (ListImageSubJobs)."""
    query = {"job_type": job_type, "status": status, "job_id": job_id}
    page = ctx.client.call("ListImageSubJobs", query=query | {"offset": offset, "limit": limit})
    if ctx.emitted_page(page):
        return
    echo_table(
        ["JOB ID", *_SUB_JOB_HEADERS],
        [
            [s["job_id"], *row]
            for s, row in zip(page["items"], _sub_job_rows(page["items"]), strict=True)
        ],
    )
    page_footer(offset, len(page["items"]), page["count"])


@jobs.command("count", epilog=CLIENT_EPILOG)
@click.option("--job-type", required=True, help=f"One or more of {JOB_TYPES}, comma-separated.")
@click.option("--status", default=None, help=f"One of {SUB_JOB_STATUSES}.")
@click.option("--job-id", default=None, help="Only the sub-jobs of this job.")
@api_command
def count_sub_jobs(ctx: Context, job_type: str, status: str | None, job_id: str | None) -> None:
    """Count image sub-jobs (CountImageSubJobs)."""
    query = {"job_type": job_type, "status": status, "job_id": job_id}
    result = ctx.client.call("CountImageSubJobs", query=query)
    if ctx.as_json:
        ctx.emit_json(result)
    else:
        click.echo(result["count"])


@jobs.command("delete", epilog=CLIENT_EPILOG)
@click.argument("sub_job_ids", nargs=-1, required=True)
@api_command
def delete_sub_jobs(ctx: Context, sub_job_ids: tuple[str, ...]) -> None:
    """Delete finished sub-jobs by ID (BatchDeleteImageSubJobs).

    The API deletes only SUCCESS and FAILED sub-jobs and ignores unknown IDs, and answers
    nothing either way: check with `imagejobs jobs sub-jobs` or `count`."""
    ctx.client.call("BatchDeleteImageSubJobs", body={"items": list(sub_job_ids)})
    if ctx.as_json:
        ctx.emit_json({})
    else:
        click.echo(
            f"Asked to delete {len(sub_job_ids)} sub-job(s): the finished ones are gone "
            "(unknown IDs and WAITING or RUNNING sub-jobs are left as they are).",
            err=True,
        )
