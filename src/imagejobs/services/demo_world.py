"""The demo project's world: a history of image servers and the jobs that made, imaged and
deleted them, told in order, so that every job names a server that exists (or that a later
DELETE_SERVER removed) and ListImageServers agrees with the jobs. The newest few jobs are
still in progress: loaded as engine tasks, they finish as the steering says.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, replace
from typing import Any

from imagejobs.domain.enums import ImageServerStatus, JobStatus, JobType, SubJobStatus
from imagejobs.domain.ids import IdGenerator
from imagejobs.domain.records import Job, JobDetail, SubJob
from imagejobs.domain.servers import AccountInfo, ImageRef, ImageServer
from imagejobs.services.servers import creation_payload, deletion_payload, image_payload
from imagejobs.services.testkit import ProjectState

LIVE_JOBS = 6  # the newest jobs, still WAITING or RUNNING when the demo starts
LIVE_SPACING_MS = 10_000  # between the live jobs' begin times: all in the last minute
_FAILURES = (
    ("WKS.00211401", "The requested operation failed. Please try again later."),
    ("WKS.00050902", "Insufficient resources in the availability zone."),
)
_IMAGE = ImageRef(id="da02e5ca-c6ec-4685-8ecb-f116bb5bdd2c", image_type="public")
_ACCOUNTS = (AccountInfo(account="administrator", account_type="USER"),)
_IMAGEABLE = (ImageServerStatus.ACTIVE, ImageServerStatus.BUILT)
_DELETABLE = (*_IMAGEABLE, ImageServerStatus.ERROR)


@dataclass
class _World:
    project_id: str
    rng: random.Random
    ids: IdGenerator
    servers: dict[int, ImageServer]
    jobs: list[JobDetail]
    payloads: dict[int, dict[str, Any]]


def demo_state(project_id: str, jobs: int, now: int, seed: int = 7) -> ProjectState:
    """``jobs`` jobs spread over the last 30 days, the last LIVE_JOBS still in progress
    (begun within the last minute: a job does not wait hours in a queue of seconds).

    Times follow the engine's rules: a job begins when it is created; its sub-job, created
    with it, keeps that time while WAITING, and from RUNNING on shows when it started (a
    moment later); an ended sub-job ends before its job does, and nothing ends after
    ``now``."""
    world = _World(project_id, random.Random(seed), IdGenerator(), {}, [], {})  # noqa: S311
    step = 30 * 86_400_000 // max(jobs, 1)
    for n in range(jobs):
        live = n >= jobs - LIVE_JOBS
        begin = now - (jobs - n) * (LIVE_SPACING_MS if live else step)
        candidates = [s for s in world.servers.values() if s.status in _DELETABLE]
        roll = world.rng.random()
        if roll < 0.5 or len(candidates) < 3:
            _create(world, n, begin, live)
        elif roll < 0.8 and (imageable := [s for s in candidates if s.status in _IMAGEABLE]):
            _image(world, world.rng.choice(imageable), n, begin, live)
        else:
            _delete(world, world.rng.choice(candidates), begin, live)
    return ProjectState(project_id, list(world.servers.values()), world.jobs, world.payloads)


def _outcome(world: _World, live: bool) -> SubJobStatus:
    if live:
        return world.rng.choice((SubJobStatus.WAITING, SubJobStatus.RUNNING))
    return SubJobStatus.FAILED if world.rng.random() < 0.08 else SubJobStatus.SUCCESS


def _record(
    world: _World,
    job_type: JobType,
    begin: int,
    status: SubJobStatus,
    resource: tuple[str, str],
    payload: dict[str, Any],
) -> None:
    """One job with one sub-job; an unfinished one keeps its driver payload."""
    job_id, sub_id = world.ids.next_id(), world.ids.next_id()
    ended = status in (SubJobStatus.SUCCESS, SubJobStatus.FAILED)
    end = begin + world.rng.randint(30_000, 900_000) if ended else None
    code, message = world.rng.choice(_FAILURES) if status is SubJobStatus.FAILED else ("", "")
    job_status = JobStatus(status.value)
    job = Job(job_id, world.project_id, job_type, job_status, begin, end, 1)
    # WAITING: its creation time, the job's; started: a moment later (as in the API
    # reference's example, ~1 s); ended: just before the job.
    started = begin if status is SubJobStatus.WAITING else begin + world.rng.randint(200, 1_500)
    sub_end = None if end is None else end - world.rng.randint(5, 50)
    sub = SubJob(
        sub_id,
        job_id,
        world.project_id,
        job_type,
        status,
        started,
        sub_end,
        *resource,
        code,
        message,
    )
    world.jobs.append(JobDetail(job, [sub]))
    if not ended:
        world.payloads[sub_id] = payload


def _create(world: _World, n: int, begin: int, live: bool) -> None:
    status = _outcome(world, live)
    server_id = world.ids.next_id()
    name = f"demo-server-{n}"
    made = status is SubJobStatus.SUCCESS
    server = ImageServer(
        id=server_id,
        project_id=world.project_id,
        name=name,
        description="",
        status={
            SubJobStatus.SUCCESS: ImageServerStatus.ACTIVE,
            SubJobStatus.FAILED: ImageServerStatus.ERROR,
        }.get(status, ImageServerStatus.CREATING),
        image_ref=_IMAGE,
        authorize_accounts=_ACCOUNTS,
        create_time=begin,
        update_time=begin,
        server_group_id=str(uuid.UUID(int=world.rng.getrandbits(128), version=4)),
        server_id=f"wksapp-{uuid.UUID(int=world.rng.getrandbits(128), version=4)}" if made else "",
        instance_id=str(uuid.UUID(int=world.rng.getrandbits(128), version=4)) if made else "",
    )
    world.servers[server_id] = server
    payload = creation_payload(server)
    _record(world, JobType.CREATE_SERVER, begin, status, (str(server_id), name), payload)


def _image(world: _World, server: ImageServer, n: int, begin: int, live: bool) -> None:
    status = _outcome(world, live)
    image_id = str(uuid.UUID(int=world.rng.getrandbits(128), version=4))
    name = f"demo-image-{n}"
    payload = image_payload(server, image_id, name, description="", execute_sysprep=False)
    if status is SubJobStatus.SUCCESS:
        server = replace(server, status=ImageServerStatus.BUILT, image_id=image_id)
    elif status is not SubJobStatus.FAILED:
        server = replace(server, status=ImageServerStatus.BUILDING)
    world.servers[server.id] = replace(server, update_time=begin)
    _record(world, JobType.CREATE_SERVER_IMAGE, begin, status, (image_id, name), payload)


def _delete(world: _World, server: ImageServer, begin: int, live: bool) -> None:
    status = _outcome(world, live)
    payload = deletion_payload(server, recursive=False)
    if status is SubJobStatus.SUCCESS:
        del world.servers[server.id]  # deleted servers are gone from the lists
    elif status is not SubJobStatus.FAILED:
        world.servers[server.id] = replace(server, status=ImageServerStatus.DELETING)
    _record(world, JobType.DELETE_SERVER, begin, status, (str(server.id), server.name), payload)
