"""Tenant isolation as a property: random calls with random credentials against many
accounts and projects; no response ever shows or changes another project's data."""

from __future__ import annotations

import random
from dataclasses import dataclass

import httpx

from imagejobs.domain.enums import JobStatus, JobType
from imagejobs.services.identity import IdentityService
from tests.conftest import ServerProcess
from tests.factories import Tenant, make_job, new_tenant, with_identity, write_jobs
from tests.integration.http import AkSkAuth, password_token

CALLS = 300


@dataclass(frozen=True)
class Credential:
    label: str
    account: str
    headers: dict[str, str]
    auth: httpx.Auth | None
    # The projects on which this credential may read: its grants.
    readable: frozenset[str]


def test_no_response_crosses_a_tenant_boundary(
    live_server: ServerProcess, live_database_url: str
) -> None:
    rng = random.Random(20261128)
    tenants = [new_tenant(live_database_url) for _ in range(3)]
    projects: dict[str, str] = {}  # project id -> account
    job_ids: dict[str, set[str]] = {}
    sub_job_ids: dict[str, set[str]] = {}
    for tenant in tenants:
        extra = with_identity(
            live_database_url, lambda i, t=tenant: i.create_project(t.account, "la-south-2")
        )
        for project_id in (tenant.project_id, extra.id):
            projects[project_id] = tenant.account
            jobs = [
                make_job(
                    project_id,
                    rng.choice(list(JobType)[:3]),
                    rng.choice(list(JobStatus)),
                    sub_jobs=2,
                )
                for _ in range(6)
            ]
            write_jobs(live_database_url, jobs)
            job_ids[project_id] = {str(d.job.id) for d in jobs}
            sub_job_ids[project_id] = {str(s.id) for d in jobs for s in d.sub_jobs}

    credentials = _credentials(live_server.base_url, live_database_url, tenants, projects)
    all_jobs = [j for ids in job_ids.values() for j in ids]
    all_subs = [s for ids in sub_job_ids.values() for s in ids]
    for _ in range(CALLS):
        credential = rng.choice(credentials)
        project = rng.choice(list(projects))
        call = rng.choice(["list", "show", "subs", "count", "delete"])
        base = f"{live_server.base_url}/v1/{project}"
        asked = ""
        if call == "list":
            response = _send(
                credential,
                "GET",
                f"{base}/image-server-jobs",
                params={"job_type": rng.choice(["CREATE_SERVER", "DELETE_SERVER"])},
            )
        elif call == "show":
            asked = rng.choice(all_jobs)
            response = _send(credential, "GET", f"{base}/image-server-jobs/{asked}")
        elif call == "subs":
            response = _send(
                credential,
                "GET",
                f"{base}/image-server-sub-jobs",
                params={"job_type": "CREATE_SERVER", "limit": "100"},
            )
        elif call == "count":
            response = _send(credential, "GET", f"{base}/image-server-sub-jobs/actions/count")
        else:
            response = _send(
                credential,
                "PATCH",
                f"{base}/image-server-sub-jobs/actions/batch-delete",
                json={"items": rng.sample(all_subs, 5)},
            )
        if project not in credential.readable:
            assert response.status_code in (403,), (credential.label, call, response.text)
            continue
        if call == "delete" and credential.label.startswith("reader"):
            assert response.status_code == 403
            continue
        assert response.status_code in (200, 404), (credential.label, call, response.text)
        # A 404 may echo the id that was asked for; everything else must be the project's own.
        text = response.text.replace(asked, "") if asked else response.text
        for other, ids in job_ids.items():
            if other != project:
                assert other not in text
                assert not any(i in text for i in ids), (credential.label, call)
        for other, ids in sub_job_ids.items():
            if other != project:
                assert not any(i in text for i in ids)

    # Deletes only ever reached sub-jobs of projects their caller could write.
    for project_id, ids in sub_job_ids.items():
        owner = next(c for c in credentials if c.label == f"root:{projects[project_id]}")
        count = _send(
            owner,
            "GET",
            f"{live_server.base_url}/v1/{project_id}/image-server-sub-jobs/actions/count",
        )
        assert count.status_code == 200
        assert count.json()["count"] <= len(ids)


def _send(credential: Credential, method: str, url: str, **kwargs: object) -> httpx.Response:
    return httpx.request(method, url, headers=credential.headers, auth=credential.auth, **kwargs)  # type: ignore[arg-type]


def _credentials(
    base_url: str, database_url: str, tenants: list[Tenant], projects: dict[str, str]
) -> list[Credential]:
    result: list[Credential] = []
    for tenant in tenants:
        own = frozenset(p for p, account in projects.items() if account == tenant.account)
        result.append(
            Credential(
                f"root:{tenant.account}",
                tenant.account,
                {},
                AkSkAuth(tenant.access_key, tenant.secret_key),
                own,
            )
        )
        token = password_token(base_url, tenant)
        result.append(
            Credential(
                f"token:{tenant.account}",
                tenant.account,
                {"X-Auth-Token": token},
                None,
                frozenset({tenant.project_id}),
            )
        )

        async def reader(identity: IdentityService, t: Tenant = tenant) -> tuple[str, str]:
            await identity.create_user(t.account, "reader")
            await identity.attach_policy(
                t.account, "Workspace ReadOnlyAccess", user_name="reader", project=t.project_id
            )
            key = await identity.create_access_key(t.account, "reader")
            return key.key.access_key, key.secret_key

        ak, sk = with_identity(database_url, reader)
        result.append(
            Credential(
                f"reader:{tenant.account}",
                tenant.account,
                {},
                AkSkAuth(ak, sk),
                frozenset({tenant.project_id}),
            )
        )
    return result
