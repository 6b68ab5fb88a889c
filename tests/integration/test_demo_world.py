"""The demo project is a consistent world: its jobs name servers that exist (or that a
later deletion removed), the server APIs agree, and its live jobs finish."""

from __future__ import annotations

from huaweicloudsdkworkspaceapp.v1 import (
    ListImageServersRequest,
    ShowImageJobRequest,
    ShowImageServerRequest,
)

import imagejobs.testing
from imagejobs.bootstrap import DEMO_PROJECT_ID, seed_demo


def test_the_demo_world_is_consistent_and_its_live_jobs_finish() -> None:
    with imagejobs.testing.serve() as cloud:
        # Live until read (a dump is no read): the runner, however soon it gets to the
        # seeded tasks, cannot end them before the dump below sees them.
        cloud.steer(DEMO_PROJECT_ID, completion="reads", reads=1)
        assert cloud.run(seed_demo(cloud.settings))
        client = cloud.client(cloud.tenant(project_id=DEMO_PROJECT_ID))
        world = cloud.dump(DEMO_PROJECT_ID)
        live = [j["id"] for j in world["jobs"] if j["status"] in ("WAITING", "RUNNING")]
        assert live  # the newest jobs are in progress, as real engine tasks
        for job_id in live:
            status = client.show_image_job(ShowImageJobRequest(job_id=job_id)).status
            assert status in ("SUCCESS", "FAILED")  # immediate in the test profile

        world = cloud.dump(DEMO_PROJECT_ID)
        servers = {s["id"] for s in world["servers"]}
        named = {
            job["job_type"]: {
                (j["status"], j["sub_jobs"][0]["resource_id"])
                for j in world["jobs"]
                if j["job_type"] == job["job_type"]
            }
            for job in world["jobs"]
        }
        created = {server for _, server in named["CREATE_SERVER"]}
        deleted = {server for status, server in named["DELETE_SERVER"] if status == "SUCCESS"}
        assert servers == created - deleted
        # A deletion names a server that was made (an image job names its image).
        assert {server for _, server in named["DELETE_SERVER"]} <= created
        listed = client.list_image_servers(ListImageServersRequest(limit=1))
        assert listed.count == len(servers)
        shown = client.show_image_server(ShowImageServerRequest(server_id=sorted(servers)[0]))
        assert shown.id == sorted(servers)[0]
