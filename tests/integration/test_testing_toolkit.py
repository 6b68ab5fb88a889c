"""imagejobs.testing as a user's test suite uses it: serve(), tenants, the official SDK,
steering, reset, and the operator endpoints behind them."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkworkspaceapp.v1 import (
    CountImageSubJobsRequest,
    ListImageJobsRequest,
    ListImageServersRequest,
    ShowImageJobRequest,
)

import imagejobs.testing
from imagejobs import __version__
from imagejobs.testing import Cloud, OperatorError
from tests.engine_support import counter_mismatches, query, wait_until
from tests.integration.sdk import create_server_request


@pytest.fixture(scope="module")
def cloud() -> Iterator[Cloud]:
    with imagejobs.testing.serve() as running:
        yield running


def test_a_job_finishes_at_once_and_reset_empties_the_project_only(cloud: Cloud) -> None:
    tenant, other = cloud.tenant(), cloud.tenant()
    client, other_client = cloud.client(tenant), cloud.client(other)
    job_id = client.create_image_server(create_server_request()).job_id
    other_client.create_image_server(create_server_request())

    # The test profile: no queue, no duration; the first read already sees it done.
    assert client.show_image_job(ShowImageJobRequest(job_id=job_id)).status == "SUCCESS"

    cloud.reset(tenant)
    listed = client.list_image_jobs(ListImageJobsRequest(job_type="CREATE_SERVER"))
    assert (listed.count, client.list_image_servers(ListImageServersRequest()).count) == (0, 0)
    other_listed = other_client.list_image_jobs(ListImageJobsRequest(job_type="CREATE_SERVER"))
    assert other_listed.count == 1  # another project is untouched
    # The tenant's credentials still work after the reset.
    assert client.create_image_server(create_server_request()).job_id


def test_the_nth_read_is_the_first_to_see_the_job_fail_with_the_steered_error(
    cloud: Cloud,
) -> None:
    tenant = cloud.tenant()
    client = cloud.client(tenant)
    cloud.steer(tenant, completion="reads", reads=3, fail_at=1, code="WKS.0042", message="no")
    job_id = client.create_image_server(create_server_request()).job_id
    first = client.show_image_job(ShowImageJobRequest(job_id=job_id)).status
    listed = client.list_image_jobs(ListImageJobsRequest(job_type="CREATE_SERVER"))
    third = client.show_image_job(ShowImageJobRequest(job_id=job_id))
    assert {first, listed.items[0].status} <= {"WAITING", "RUNNING"}
    assert third.status == "FAILED"
    assert (
        third.sub_jobs[0].job_execute_info.error_code,
        third.sub_jobs[0].job_execute_info.error_message,
    ) == ("WKS.0042", "no")


def _reset_in_the_middle_of_running_jobs(cloud: Cloud) -> None:
    tenant, bystander = cloud.tenant(), cloud.tenant()
    client, bystanding = cloud.client(tenant), cloud.client(bystander)
    bystanding.create_image_server(create_server_request())
    cloud.steer(tenant, completion="duration", duration=0.3)
    for _ in range(5):
        client.create_image_server(create_server_request())
    cloud.reset(tenant)
    # The runner's steps end after the reset: their results must not bring rows back.
    tasks = cloud.operator(
        "GET", "/_imagejobs/engine/tasks", query=f"project_id={tenant.project_id}"
    )
    assert tasks == {"tasks": []}
    with pytest.raises(OperatorError) as forgotten:  # the rule went with the reset
        cloud.operator("GET", f"/_imagejobs/engine/rules/{tenant.project_id}/*")
    assert (forgotten.value.status, forgotten.value.error_msg) == (
        404,
        f"No steering rule is set for {tenant.project_id}/*.",
    )
    cloud.steer(tenant, completion="duration", duration=0.3)  # and then wait past it:
    rule = cloud.operator("GET", f"/_imagejobs/engine/rules/{tenant.project_id}/*")
    assert rule["project_id"] == tenant.project_id  # the path's id, not the storage key
    job_id = client.create_image_server(create_server_request()).job_id
    while client.show_image_job(ShowImageJobRequest(job_id=job_id)).status != "SUCCESS":
        pass
    listed = client.list_image_jobs(ListImageJobsRequest(job_type="CREATE_SERVER"))
    servers = client.list_image_servers(ListImageServersRequest())
    assert (listed.count, [j.id for j in listed.items], servers.count) == (1, [job_id], 1)
    shown = client.show_image_job(ShowImageJobRequest(job_id=job_id))
    assert [s.project_id for s in shown.sub_jobs] == [tenant.project_id]
    # The serving process sweeps the old generation's rows; the other project keeps its own.
    url = cloud.settings.database_url
    assert wait_until(lambda: not query(url, _RETIRED_ROWS), 30)
    other = bystanding.list_image_jobs(ListImageJobsRequest(job_type="CREATE_SERVER"))
    assert (other.count, len(other.items)) == (1, 1)
    assert counter_mismatches(url) == []


# Rows still stored under a retired key (a reset's old generation).
_RETIRED_ROWS = " UNION ALL ".join(
    f"SELECT project_id FROM {table} WHERE project_id IN"
    " (SELECT storage_key FROM retired_project_keys)"
    for table in ("engine_tasks", "sub_jobs", "jobs", "image_servers", "job_counters")
)


def test_reset_in_the_middle_of_running_jobs_leaves_nothing_half_done(cloud: Cloud) -> None:
    _reset_in_the_middle_of_running_jobs(cloud)


@pytest.mark.postgres
def test_reset_in_the_middle_of_running_jobs_leaves_nothing_half_done_on_postgresql(
    postgres_url: str,
) -> None:
    with imagejobs.testing.serve(database_url=postgres_url) as on_postgres:
        _reset_in_the_middle_of_running_jobs(on_postgres)


def test_a_request_during_resets_sees_one_generation_whole(cloud: Cloud) -> None:
    """Lists answered while the project is reset and loaded again and again: each shows
    the jobs of exactly one generation (or none), and counts exactly what it lists."""
    tenant = cloud.tenant()
    generations = [
        fixture_state(tenant.project_id, 770_000_000_000_000_000 + n * 1000) for n in range(8)
    ]
    expected = {frozenset()} | {
        frozenset(j["id"] for j in g["jobs"] if j["job_type"] == "CREATE_SERVER")
        for g in generations
    }
    answers: list[tuple[int, frozenset[str]]] = []
    done = threading.Event()

    def poll() -> None:
        client = cloud.client(tenant)
        while not done.is_set():
            listed = client.list_image_jobs(ListImageJobsRequest(job_type="CREATE_SERVER"))
            answers.append((listed.count, frozenset(j.id for j in listed.items)))

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        for state in generations:
            cloud.reset(tenant)
            cloud.load(state)
    finally:
        done.set()
        poller.join()
    assert answers
    for count, ids in answers:
        assert ids in expected
        assert count == len(ids)


def test_reset_of_the_only_project_with_rows_empties_whole_tables_and_nothing_comes_back() -> None:
    # A cloud of its own: the tenant's rows are the only ones, so SQLite's reset empties
    # each table whole (its fast path) while the runner is in the middle of steps.
    with imagejobs.testing.serve() as own:
        tenant, bystander = own.tenant(), own.tenant()
        client = own.client(tenant)
        own.steer(tenant, completion="duration", duration=0.3)
        own.steer(bystander, completion="immediate")  # a rule of another project stays
        for _ in range(5):
            client.create_image_server(create_server_request())
        own.reset(tenant)
        assert own.dump(tenant) == {"project_id": tenant.project_id, "servers": [], "jobs": []}
        tasks = own.operator(
            "GET", "/_imagejobs/engine/tasks", query=f"project_id={tenant.project_id}"
        )
        assert tasks == {"tasks": []}
        assert own.operator("GET", f"/_imagejobs/engine/rules/{bystander.project_id}/*")
        own.steer(tenant, completion="duration", duration=0.3)
        job_id = client.create_image_server(create_server_request()).job_id
        while client.show_image_job(ShowImageJobRequest(job_id=job_id)).status != "SUCCESS":
            pass
        listed = client.list_image_jobs(ListImageJobsRequest(job_type="CREATE_SERVER"))
        counted = client.count_image_sub_jobs(CountImageSubJobsRequest(job_type="CREATE_SERVER"))
        servers = client.list_image_servers(ListImageServersRequest())
        assert (listed.count, [j.id for j in listed.items], counted.count, servers.count) == (
            1,
            [job_id],
            1,
            1,
        )


def test_operator_endpoints_are_the_operators_and_check_their_input(cloud: Cloud) -> None:
    tenant = cloud.tenant()
    with httpx.Client(base_url=cloud.endpoint) as http:
        health = http.get("/_imagejobs/health")
        assert (health.status_code, health.json()) == (
            200,
            {"status": "ok", "version": __version__},
        )
        assert http.post("/_imagejobs/reset").status_code == 401
        assert http.post("/_imagejobs/tenants", json={}).status_code == 401
        operator = {"X-Imagejobs-Operator-Token": cloud.settings.operator_token}
        created = http.post("/_imagejobs/tenants", headers=operator)  # no body: all generated
        assert created.status_code == 200
        assert set(created.json()) >= {"access_key", "secret_key", "project_id", "password"}
        bad = http.post("/_imagejobs/reset", headers=operator, json={"project": "x"})
        assert bad.status_code == 400
        assert bad.json()["error_code"] == "WKS.00211102"
        # "*" answers for "every project" ({"reset": "*"}), so it names no one project: as
        # a project id it reset nothing but a project called "*", and answered as if all.
        star = http.post("/_imagejobs/reset", headers=operator, json={"project_id": "*"})
        assert star.status_code == 400
        assert "project_id" in star.json()["error_msg"]
        state = {"project_id": "*", "servers": [], "jobs": []}
        assert http.post("/_imagejobs/state", headers=operator, json=state).status_code == 400
    with pytest.raises(OperatorError) as caught:
        cloud.tenant(account=tenant.account)  # taken
    assert caught.value.status == 409
    with pytest.raises(ClientRequestException):  # a reset project keeps enforcing IAM
        cloud.client(tenant).list_image_jobs(ListImageJobsRequest(job_type="BAD"))


def fixture_state(project_id: str, first_id: int) -> dict[str, Any]:
    """A fixture file: a server, the job that created it, and a job still running."""
    server, job, sub, live, live_sub = (str(first_id + n) for n in range(5))
    return {
        "project_id": project_id,
        "servers": [
            {
                "id": server,
                "name": "golden",
                "status": "ACTIVE",
                "image_ref": {"id": "da02e5ca-c6ec-4685-8ecb-f116bb5bdd2c", "image_type": "public"},
                "create_time": 1_700_000_000_000,
                "update_time": 1_700_000_000_000,
            }
        ],
        "jobs": [
            {
                "id": job,
                "job_type": "CREATE_SERVER",
                "status": "SUCCESS",
                "begin_time": 1_700_000_000_000,
                "end_time": 1_700_000_060_000,
                "sub_jobs": [
                    {
                        "id": sub,
                        "status": "SUCCESS",
                        "begin_time": 1_700_000_000_000,
                        "end_time": 1_700_000_060_000,
                        "resource_id": server,
                        "resource_name": "golden",
                    }
                ],
            },
            {
                "id": live,
                "job_type": "DELETE_SERVER",
                "status": "RUNNING",
                "begin_time": 1_700_000_100_000,
                "sub_jobs": [
                    {
                        "id": live_sub,
                        "status": "RUNNING",
                        "begin_time": 1_700_000_100_000,
                        "resource_id": server,
                        "resource_name": "golden",
                    }
                ],
            },
        ],
    }


def test_a_loaded_state_is_consistent_and_its_live_jobs_run(cloud: Cloud) -> None:
    tenant = cloud.tenant()
    client = cloud.client(tenant)
    cloud.steer(tenant, "DELETE_SERVER", completion="reads", reads=2)
    state = fixture_state(tenant.project_id, 710_000_000_000_000_000)
    cloud.load(state)

    dumped = cloud.dump(tenant)
    assert [j["status"] for j in dumped["jobs"]] == ["SUCCESS", "RUNNING"]
    assert dumped["jobs"][1]["sub_jobs"][0]["payload"]["server_id"] == state["servers"][0]["id"]
    counted = client.count_image_sub_jobs(
        CountImageSubJobsRequest(job_type="CREATE_SERVER,DELETE_SERVER")
    )
    assert counted.count == 2
    live_id = state["jobs"][1]["id"]
    assert client.show_image_job(ShowImageJobRequest(job_id=live_id)).status == "RUNNING"
    # The imported job is a real engine task: steered, it ends, and deletes its server.
    assert client.show_image_job(ShowImageJobRequest(job_id=live_id)).status == "SUCCESS"
    assert client.list_image_servers(ListImageServersRequest()).count == 0
    # The imported RUNNING sub-job was never WAITING here: its counters moved only once.
    by_status = {
        status: client.count_image_sub_jobs(CountImageSubJobsRequest(status=status)).count
        for status in ("WAITING", "RUNNING", "SUCCESS")
    }
    assert by_status == {"WAITING": 0, "RUNNING": 0, "SUCCESS": 2}


def test_a_bad_state_is_refused_by_name_and_changes_nothing(cloud: Cloud) -> None:
    tenant = cloud.tenant()
    # The live job stays running: it would otherwise end (and delete its server) at any
    # moment between the two dumps.
    cloud.steer(tenant, completion="reads", reads=1_000)
    good = fixture_state(tenant.project_id, 720_000_000_000_000_000)
    cloud.load(good)
    before = cloud.dump(tenant)

    bad = fixture_state(tenant.project_id, 730_000_000_000_000_000)
    bad["jobs"][0]["sub_jobs"][0]["status"] = "RUNNING"  # under a SUCCESS job
    with pytest.raises(OperatorError) as caught:
        cloud.load(bad)
    assert (caught.value.status, caught.value.error_code) == (400, "WKS.00211102")
    assert "jobs[0].status" in caught.value.error_msg
    duplicate = fixture_state(tenant.project_id, 740_000_000_000_000_000)
    duplicate["jobs"][1]["id"] = duplicate["jobs"][0]["id"]
    with pytest.raises(OperatorError) as caught:
        cloud.load(duplicate)
    assert "jobs[1].id" in caught.value.error_msg
    with pytest.raises(OperatorError) as caught:
        cloud.load({**good, "jobz": []})
    assert caught.value.status == 400
    assert cloud.dump(tenant) == before


@pytest.mark.parametrize(
    ("change", "field"),
    [
        # An id the API cannot find: ShowImageJob and the sub-job filters take 18 digits.
        (lambda s: s["jobs"][0].update(id="1"), "jobs[0].id"),
        (lambda s: s["jobs"][0]["sub_jobs"][0].update(id="12"), "jobs[0].sub_jobs[0].id"),
        (lambda s: s["servers"][0].update(id="7"), "servers[0].id"),
        # A time no database column holds (was a 500), or no answer can show (year > 9999).
        (lambda s: s["jobs"][0].update(begin_time=2**63), "jobs[0].begin_time"),
        (lambda s: s["servers"][0].update(create_time=10**17), "servers[0].create_time"),
        (lambda s: s["jobs"][0].update(end_time=1_600_000_000_000), "jobs[0].end_time"),
        (
            lambda s: s["jobs"][0]["sub_jobs"][0].update(end_time=1),
            "jobs[0].sub_jobs[0].end_time",
        ),
    ],
)
def test_a_state_the_api_could_not_serve_is_refused_by_name(
    cloud: Cloud, change: Any, field: str
) -> None:
    tenant = cloud.tenant()
    state = fixture_state(tenant.project_id, 770_000_000_000_000_000)
    change(state)
    with pytest.raises(OperatorError) as caught:
        cloud.load(state)
    assert (caught.value.status, caught.value.error_code) == (400, "WKS.00211102")
    assert field in caught.value.error_msg
    assert cloud.dump(tenant)["jobs"] == []


def test_init_dir_files_are_loaded_on_start(tmp_path: Path) -> None:
    project_id = "0123456789abcdef0123456789abcdef"
    state = fixture_state(project_id, 750_000_000_000_000_000)
    (tmp_path / "10-project.json").write_text(json.dumps(state))
    rules = [{"project_id": project_id, "job_type": "DELETE_SERVER", "completion": "reads"}]
    (tmp_path / "00-steering.rules.json").write_text(json.dumps(rules))
    with imagejobs.testing.serve(init_dir=tmp_path) as started:
        assert [j["id"] for j in started.dump(project_id)["jobs"]] == [
            j["id"] for j in state["jobs"]
        ]
        rule = started.operator("GET", f"/_imagejobs/engine/rules/{project_id}/DELETE_SERVER")
        assert rule["completion"] == "reads"


@pytest.mark.postgres
def test_load_dump_and_reset_on_postgresql(postgres_url: str) -> None:
    with imagejobs.testing.serve(database_url=postgres_url) as on_postgres:
        tenant = on_postgres.tenant()
        state = fixture_state(tenant.project_id, 760_000_000_000_000_000)
        on_postgres.load(state)
        with pytest.raises(OperatorError) as caught:  # the same ids in another project
            on_postgres.load({**state, "project_id": on_postgres.tenant().project_id})
        assert caught.value.status == 409
        assert [j["id"] for j in on_postgres.dump(tenant)["jobs"]] == [
            j["id"] for j in state["jobs"]
        ]
        on_postgres.reset(tenant)
        assert on_postgres.dump(tenant) == {
            "project_id": tenant.project_id,
            "servers": [],
            "jobs": [],
        }


@pytest.mark.postgres
def test_another_serving_process_sees_a_reset_when_it_sees_identity_changes(
    postgres_url: str,
) -> None:
    """Two services on one database (as two serving processes): a reset through one is
    seen by the other at its next identity check (every request in the test profile)."""
    with imagejobs.testing.serve(database_url=postgres_url) as first:
        settings = first.settings
        with imagejobs.testing.serve(
            database_url=postgres_url, encryption_key=settings.encryption_key
        ) as second:
            tenant = first.tenant()
            client = second.client(tenant)  # requests to the second, reset by the first
            client.create_image_server(create_server_request())
            listed = client.list_image_jobs(ListImageJobsRequest(job_type="CREATE_SERVER"))
            assert listed.count == 1  # the second has resolved (and cached) the project

            first.reset(tenant)

            listed = client.list_image_jobs(ListImageJobsRequest(job_type="CREATE_SERVER"))
            servers = client.list_image_servers(ListImageServersRequest())
            assert (listed.count, listed.items, servers.count) == (0, [], 0)
            job_id = client.create_image_server(create_server_request()).job_id
            assert first.dump(tenant)["jobs"][0]["id"] == job_id  # the same generation


@pytest.mark.parametrize("access_log", [None, True])
def test_a_test_suites_output_gets_no_access_lines_unless_asked(
    access_log: bool | None, capfd: pytest.CaptureFixture[str]
) -> None:
    """serve() wrote a JSON line to stderr for every request a test made: noise in a
    script's output. Quiet by default; access_log=True brings them back."""
    settings = {} if access_log is None else {"access_log": access_log}
    with imagejobs.testing.serve(**settings) as own:
        tenant = own.tenant()
        own.client(tenant).list_image_jobs(ListImageJobsRequest(job_type="CREATE_SERVER"))
    errors = capfd.readouterr().err
    logged = [line for line in errors.splitlines() if "image-server-jobs" in line]
    assert len(logged) == (0 if access_log is None else 1), errors
