"""``imagejobs seed``: realistic jobs in bulk (storage/seed.py), whose unfinished sub-jobs
carry the same driver payloads as the image-server service writes, so that the engine
finishes them like any other job."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from imagejobs.domain.enums import ImageServerStatus, JobType
from imagejobs.domain.servers import AccountInfo, ImageRef, ImageServer
from imagejobs.services.servers import creation_payload, deletion_payload, image_payload
from imagejobs.storage.database import Database
from imagejobs.storage.seed import LiveSubJob, Phase, SeedPlan
from imagejobs.storage.seed import seed as seed_rows

_IMAGE = ImageRef(id="da02e5ca-c6ec-4685-8ecb-f116bb5bdd2c", image_type="public")
_ACCOUNTS = (AccountInfo(account="administrator", account_type="USER"),)


def live_payload(sub: LiveSubJob) -> dict[str, Any]:
    """The payload the image-server service would have given this sub-job's task."""
    creating = sub.job_type is JobType.CREATE_SERVER
    server = ImageServer(
        id=sub.server_id,
        project_id=sub.project_id,
        name=sub.server_name,
        description="",
        status=ImageServerStatus.CREATING if creating else ImageServerStatus.ACTIVE,
        image_ref=_IMAGE,
        authorize_accounts=_ACCOUNTS,
        create_time=sub.begin_time,
        update_time=sub.begin_time,
    )
    if creating:
        return creation_payload(server)
    if sub.job_type is JobType.CREATE_SERVER_IMAGE:
        return image_payload(
            server, sub.resource_id, sub.resource_name, description="", execute_sysprep=False
        )
    return deletion_payload(server, recursive=False)


async def seed(
    database: Database,
    plan: SeedPlan,
    progress: Callable[[int], None] | None = None,
    phase: Phase | None = None,
) -> None:
    """Fill ``plan``'s projects with jobs (storage/seed.py says how)."""
    await seed_rows(database, plan, live_payload, progress, phase)
