"""``imagejobs jobs`` and ``imagejobs servers`` against a real server over HTTP: every
command, as a table and as JSON, with credentials from flags, environment or a profile,
and the exit code of each kind of failure."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from imagejobs.cli import main
from imagejobs.domain.enums import JobStatus, JobType, SubJobStatus
from imagejobs.services.identity import IdentityService
from imagejobs.storage.migrate import migrate
from tests.conftest import ServerProcess, _admin
from tests.factories import (
    OPERATOR_HEADERS,
    Tenant,
    make_job,
    new_tenant,
    with_identity,
    write_jobs,
)
from tests.integration.http import login_body, password_token

FAILED_JOBS = 2


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("cli")
    url = f"sqlite:///{directory / 'imagejobs.db'}"
    asyncio.run(migrate(url))
    fast = {
        "IMAGEJOBS_SIMULATED_QUEUE_SECONDS": "0.1",
        "IMAGEJOBS_SIMULATED_DURATION_SECONDS": "0.3",
    }
    process = ServerProcess(url, directory / "server", extra_env=fast)
    process.database_url = url  # type: ignore[attr-defined]
    yield process
    process.stop()


@pytest.fixture(scope="module")
def tenant(server: ServerProcess) -> Tenant:
    tenant = new_tenant(server.database_url)  # type: ignore[attr-defined]
    jobs = [make_job(tenant.project_id) for _ in range(5)]
    jobs += [make_job(tenant.project_id, status=JobStatus.FAILED) for _ in range(FAILED_JOBS)]
    jobs += [make_job(tenant.project_id, JobType.DELETE_SERVER)]
    write_jobs(server.database_url, jobs)  # type: ignore[attr-defined]
    return tenant


def run(server: ServerProcess, tenant: Tenant | None, *args: str, **env: str) -> Result:
    """The command with the tenant's AK/SK in the SDK's environment variables."""
    environment = {"IMAGEJOBS_ENDPOINT": server.base_url, "IMAGEJOBS_PROFILE": ""}
    if tenant is not None:
        environment |= {
            "HUAWEICLOUD_SDK_AK": tenant.access_key,
            "HUAWEICLOUD_SDK_SK": tenant.secret_key,
            "HUAWEICLOUD_SDK_PROJECT_ID": tenant.project_id,
        }
    return CliRunner().invoke(main, list(args), env=environment | env)


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output + result.stderr
    assert "Traceback" not in result.output + result.stderr
    return result.stdout


def failed(result: Result, exit_code: int, *expected: str) -> str:
    """The one-line error a failure prints: no traceback, the given exit code."""
    assert result.exit_code == exit_code, (result.exit_code, result.output, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for text in expected:
        assert text in lines[0]
    return lines[0]


def test_jobs_list_as_a_table_and_as_json(server: ServerProcess, tenant: Tenant) -> None:
    table = ok(run(server, tenant, "jobs", "list", "--job-type", "CREATE_SERVER", "--limit", "3"))
    lines = table.splitlines()
    assert lines[0].split() == [
        "ID",
        "TYPE",
        "STATUS",
        "SUB-JOBS",
        "BEGIN",
        "(UTC)",
        "END",
        "(UTC)",
    ]
    assert len(lines) == 4
    result = run(server, tenant, "jobs", "list", "--job-type", "CREATE_SERVER", "--limit", "3")
    assert "1-3 of 7" in result.stderr

    data = json.loads(
        ok(run(server, tenant, "jobs", "list", "--job-type", "CREATE_SERVER", "--status",
               "FAILED", "--offset", "1", "-o", "json"))
    )  # fmt: skip
    assert data["count"] == FAILED_JOBS
    assert [j["status"] for j in data["items"]] == ["FAILED"]


def test_lists_give_their_ids_alone_for_scripts(server: ServerProcess, tenant: Tenant) -> None:
    """`-o id`: what README's `JOB=$(imagejobs jobs list ... --limit 1 -o id)` relies on."""
    listed = json.loads(
        ok(run(server, tenant, "jobs", "list", "--job-type", "CREATE_SERVER", "-o", "json"))
    )
    ids = run(server, tenant, "jobs", "list", "--job-type", "CREATE_SERVER", "-o", "id")
    assert ok(ids).splitlines() == [job["id"] for job in listed["items"]]
    assert ids.stderr == ""  # no footer: the output is the IDs and nothing else
    job_id = listed["items"][0]["id"]
    sub_jobs = run(server, tenant, "jobs", "sub-jobs", "--job-type", "CREATE_SERVER",
                   "--job-id", job_id, "-o", "id")  # fmt: skip
    detail = json.loads(ok(run(server, tenant, "jobs", "show", job_id, "-o", "json")))
    assert ok(sub_jobs).splitlines() == [s["id"] for s in detail["sub_jobs"]]
    servers = json.loads(ok(run(server, tenant, "servers", "list", "-o", "json")))
    server_ids = ok(run(server, tenant, "servers", "list", "-o", "id")).splitlines()
    assert server_ids == [s["id"] for s in servers["items"]]
    shown = run(server, tenant, "jobs", "show", job_id, "-o", "id")  # not a list: no `id`
    assert shown.exit_code == 2


def test_a_page_past_the_end_says_so(server: ServerProcess, tenant: Tenant) -> None:
    past = run(server, tenant, "jobs", "list", "--job-type", "CREATE_SERVER", "--offset", "500")
    assert ok(past).splitlines()[1:] == []
    assert past.stderr.strip() == "none: --offset 500 is past the last of 7"
    fresh = new_tenant(server.database_url)  # type: ignore[attr-defined]
    empty = run(server, fresh, "jobs", "list", "--job-type", "CREATE_SERVER_IMAGE")
    assert empty.stderr.strip() == "none of 0"


def test_jobs_show_sub_jobs_and_count(server: ServerProcess, tenant: Tenant) -> None:
    listed = json.loads(
        ok(run(server, tenant, "jobs", "list", "--job-type", "CREATE_SERVER", "--status",
               "FAILED", "-o", "json"))
    )  # fmt: skip
    job_id = listed["items"][0]["id"]
    shown = ok(run(server, tenant, "jobs", "show", job_id))
    assert f"ID           {job_id}" in shown
    assert "FAILED" in shown
    assert "WKS.00211401 The requested operation failed." in shown
    detail = json.loads(ok(run(server, tenant, "jobs", "show", job_id, "--output", "json")))
    assert detail["sub_jobs"][0]["job_execute_info"]["error_code"] == "WKS.00211401"

    sub_jobs = ok(run(server, tenant, "jobs", "sub-jobs", "--job-type", "CREATE_SERVER",
                      "--job-id", job_id))  # fmt: skip
    assert sub_jobs.splitlines()[0].startswith("JOB ID")
    assert "BEGIN (UTC)" in sub_jobs.splitlines()[0]  # labelled as in `jobs list`
    assert job_id in sub_jobs.splitlines()[1]
    page = json.loads(ok(run(server, tenant, "jobs", "sub-jobs", "--job-type", "CREATE_SERVER",
                             "--status", "FAILED", "-o", "json")))  # fmt: skip
    assert page["count"] == FAILED_JOBS

    count = run(server, tenant, "jobs", "count", "--job-type", "CREATE_SERVER,DELETE_SERVER")
    assert ok(count).strip() == "8"
    counted = run(server, tenant, "jobs", "count", "--job-type", "DELETE_SERVER", "-o", "json")
    assert json.loads(ok(counted)) == {"count": 1}


def test_servers_create_list_show_recreate_and_delete(
    server: ServerProcess, tenant: Tenant
) -> None:
    created = run(server, tenant, "servers", "create", "--name", "build-01", "--image-id", "img-1",
                  "--product-id", "workspace.x86.a.b", "--vpc-id", "vpc", "--subnet-id", "subnet",
                  "--account", "alice")  # fmt: skip
    job_id = ok(created).strip()
    assert "imagejobs jobs watch" in created.stderr
    watched = ok(run(server, tenant, "jobs", "watch", job_id, "--interval", "0.1"))
    assert watched.splitlines()[-1].startswith("SUCCESS  [####################] 1/1")

    table = ok(run(server, tenant, "servers", "list"))
    assert table.splitlines()[0].split() == ["ID", "NAME", "STATUS", "IMAGE", "CREATED", "(UTC)"]
    assert "build-01" in table
    assert "ACTIVE" in table
    listed = json.loads(ok(run(server, tenant, "servers", "list", "--server-name", "build-01",
                               "-o", "json")))  # fmt: skip
    server_id = listed["items"][0]["id"]
    assert listed["count"] == 1
    assert "build-01" in ok(run(server, tenant, "servers", "show", server_id))
    shown = json.loads(ok(run(server, tenant, "servers", "show", server_id, "-o", "json")))
    assert shown["status"] == "ACTIVE"
    # UpdateImageServer had no command.
    updated = run(server, tenant, "servers", "update", server_id, "--description", "golden base")
    assert f"Updated {server_id}." in ok(updated) + updated.stderr
    renamed = run(
        server, tenant, "servers", "update", server_id, "--name", "build-02", "-o", "json"
    )
    assert {k: json.loads(ok(renamed))[k] for k in ("name", "description")} == {
        "name": "build-02",
        "description": "golden base",
    }
    failed(run(server, tenant, "servers", "update", server_id), 2, "nothing to update")
    failed(run(server, tenant, "servers", "update", server_id, "--name", "bad name!"), 2,
           "WKS.00211102", "name")  # fmt: skip
    failed(run(server, tenant, "servers", "update", "nope", "--name", "x"), 4, "nope")

    image = run(server, tenant, "servers", "recreate-image", server_id, "--name", "golden",
                "-o", "json")  # fmt: skip
    image_job = json.loads(ok(image))["job_id"]
    followed = ok(
        run(server, tenant, "jobs", "watch", image_job, "--interval", "0.1", "-o", "json")
    )
    states = [json.loads(line) for line in followed.splitlines()]  # one JSON line per change
    assert states[-1]["status"] == "SUCCESS"
    assert states[-1]["sub_jobs"][0]["job_resource_info"]["resource_name"] == "golden"

    deleted = run(server, tenant, "servers", "delete", server_id)
    assert "Warning" not in deleted.stderr
    ok(run(server, tenant, "jobs", "watch", ok(deleted).strip(), "--interval", "0.1"))
    gone = run(server, tenant, "servers", "show", server_id)
    failed(gone, 4, "(HTTP 404, request id ")
    # The API ignores an unknown ID and still answers a job: the command says so.
    mistyped = run(server, tenant, "servers", "delete", server_id + "9")
    assert ok(mistyped).strip()  # the job's id, as the API answered
    assert "Warning: 1 of the 1 server IDs matched no server that could be deleted" in (
        mistyped.stderr
    )


def test_servers_create_names_the_missing_flags(server: ServerProcess, tenant: Tenant) -> None:
    # The API's words would be "image_ref is required": no flag is called that.
    missing = run(server, tenant, "servers", "create", "--name", "x", "--image-id", "i")
    failed(missing, 2, "missing --product-id, --vpc-id, --subnet-id, --account (or give")


def test_watching_a_job_that_fails_exits_1_with_its_error(
    server: ServerProcess, tenant: Tenant
) -> None:
    rule = {"queue_seconds": 0, "faults": [{"error_code": "WKS.00211401",
                                            "error_message": "Quota exceeded."}]}  # fmt: skip
    steered = httpx.put(
        f"{server.base_url}/_imagejobs/engine/rules/{tenant.project_id}/CREATE_SERVER",
        json=rule,
        headers=OPERATOR_HEADERS,
    )
    assert steered.status_code == 200, steered.text
    created = run(server, tenant, "servers", "create", "--name", "doomed", "--image-id", "i",
                  "--product-id", "p", "--vpc-id", "v", "--subnet-id", "s",
                  "--account", "a")  # fmt: skip
    job_id = ok(created).strip()
    watched = run(server, tenant, "jobs", "watch", job_id, "--interval", "0.1")
    line = failed(watched, 1, f"job {job_id} failed:", "WKS.00211401 Quota exceeded.")
    assert line.startswith("Error: ")
    assert watched.stdout.splitlines()[-1].startswith("FAILED")


def test_an_invalid_parameter_is_a_usage_error_with_the_apis_words(
    server: ServerProcess, tenant: Tenant
) -> None:
    result = run(server, tenant, "jobs", "list", "--job-type", "createServer")
    line = failed(result, 2, "WKS.00211102", "job_type", "request id ")
    assert len(line.rsplit("request id ", 1)[1].rstrip(")")) == 32
    flags = ["--image-id", "i", "--product-id", "p", "--vpc-id", "v", "--subnet-id", "s"]
    bad_name = run(server, tenant, "servers", "create", "--name", "bad name!", *flags,
                   "--account", "a")  # fmt: skip
    failed(bad_name, 2, "WKS.00211102", "name must be 1 to 64 characters")
    missing = run(server, tenant, "jobs", "list")  # click's own usage error
    assert missing.exit_code == 2
    assert "--job-type" in missing.stderr


def test_unknown_job_is_not_found(server: ServerProcess, tenant: Tenant) -> None:
    failed(run(server, tenant, "jobs", "show", "123456789012345678"), 4, "WKS.00211902")


def test_credentials_from_flags_a_token_and_a_profile(
    server: ServerProcess, tenant: Tenant, tmp_path: Path
) -> None:
    flags = ["--endpoint", server.base_url, "--ak", tenant.access_key, "--sk", tenant.secret_key]
    flags += ["--project-id", tenant.project_id]
    ok(run(server, None, "jobs", "count", "--job-type", "DELETE_SERVER", *flags))

    token = password_token(server.base_url, tenant)
    by_token = run(server, None, "jobs", "count", "--job-type", "DELETE_SERVER", "--token", token,
                   "--project-id", tenant.project_id)  # fmt: skip
    assert int(ok(by_token)) >= 1
    # A project-scoped token names its project: the README's curl login is enough. Without
    # --project-id this said "no project id" and exited 3, as if the token were bad.
    alone = run(server, None, "jobs", "count", "--job-type", "DELETE_SERVER", IMAGEJOBS_TOKEN=token)
    assert ok(alone) == ok(by_token)
    domain_scoped = login_body(tenant)
    domain_scoped["auth"]["scope"] = {"domain": {"name": tenant.account}}
    answer = httpx.post(server.base_url + "/v3/auth/tokens", json=domain_scoped)
    assert answer.status_code == 201, answer.text
    failed(run(server, None, "jobs", "count", "--job-type", "DELETE_SERVER", "--token",
               answer.headers["x-subject-token"]), 3, "not scoped to a project")  # fmt: skip
    failed(run(server, None, "jobs", "count", "--job-type", "DELETE_SERVER", "--token", "bogus"),
           3, "(HTTP 401")  # fmt: skip

    # The demo's credentials file is a profile as it is.
    profile = tmp_path / "demo-credentials.json"
    demo = {"account": tenant.account, "password": tenant.password, "region": tenant.region}
    demo |= {"project_id": tenant.project_id, "access_key": tenant.access_key}
    profile.write_text(json.dumps(demo | {"secret_key": tenant.secret_key}))
    by_profile = run(server, None, "jobs", "count", "--job-type", "DELETE_SERVER", "--profile",
                     str(profile))  # fmt: skip
    assert int(ok(by_profile)) >= 1
    by_environment = run(server, None, "jobs", "count", "--job-type", "DELETE_SERVER",
                         IMAGEJOBS_PROFILE=str(profile))  # fmt: skip
    assert int(ok(by_environment)) >= 1


def test_credential_problems_exit_3(server: ServerProcess, tenant: Tenant, tmp_path: Path) -> None:
    wrong = run(server, tenant, "jobs", "list", "--job-type", "CREATE_SERVER", "--sk", "wrong")
    failed(wrong, 3, "APIGW.0301", "(HTTP 401, request id ")
    nothing = run(server, None, "jobs", "count", "--job-type", "CREATE_SERVER")
    failed(nothing, 3, "no credentials: pass --profile (after ./scripts/demo: data/demo-cred")
    only_key = run(server, None, "jobs", "count", "--job-type", "CREATE_SERVER", "--ak", "AK")
    failed(only_key, 3, "no project id")
    no_key = run(server, None, "jobs", "count", "--job-type", "CREATE_SERVER", "--project-id", "p")
    failed(no_key, 3, "no credentials", "--ak")
    broken = tmp_path / "profile.json"
    broken.write_text("[1, 2")
    failed(run(server, None, "jobs", "count", "--job-type", "CREATE_SERVER", "--profile",
               str(broken)), 3, "is not valid JSON: Expecting ',' delimiter: line 1")  # fmt: skip
    broken.write_text("[1, 2]")
    failed(run(server, None, "jobs", "count", "--job-type", "CREATE_SERVER", "--profile",
               str(broken)), 3, "is not a JSON object")  # fmt: skip


def test_a_read_only_user_is_refused_with_exit_3(server: ServerProcess, tenant: Tenant) -> None:
    async def reader(identity: IdentityService) -> tuple[str, str]:
        await identity.create_user(tenant.account, "cli-reader")
        await identity.attach_policy(
            tenant.account, "Workspace ReadOnlyAccess", user_name="cli-reader"
        )
        key = await identity.create_access_key(tenant.account, "cli-reader")
        return key.key.access_key, key.secret_key

    ak, sk = with_identity(server.database_url, reader)  # type: ignore[attr-defined]
    env = {"HUAWEICLOUD_SDK_AK": ak, "HUAWEICLOUD_SDK_SK": sk}
    ok(run(server, tenant, "jobs", "list", "--job-type", "CREATE_SERVER", **env))
    refused = run(server, tenant, "servers", "delete", "123", **env)
    failed(refused, 3, "WKS.00081102", "(HTTP 403, request id ")


def test_an_unreachable_server_exits_6_in_one_line(tenant: Tenant) -> None:
    result = CliRunner().invoke(
        main,
        ["jobs", "list", "--job-type", "CREATE_SERVER", "--endpoint", "http://127.0.0.1:9"],
        env={
            "HUAWEICLOUD_SDK_AK": tenant.access_key,
            "HUAWEICLOUD_SDK_SK": tenant.secret_key,
            "HUAWEICLOUD_SDK_PROJECT_ID": tenant.project_id,
        },
    )
    failed(result, 6, "cannot reach http://127.0.0.1:9", "imagejobs serve")


def test_an_endpoint_without_a_scheme_is_a_usage_error(tenant: Tenant) -> None:
    """Not "is `imagejobs serve` running there?" and exit 6: nothing was tried."""
    env = {
        "HUAWEICLOUD_SDK_AK": tenant.access_key,
        "HUAWEICLOUD_SDK_SK": tenant.secret_key,
        "HUAWEICLOUD_SDK_PROJECT_ID": tenant.project_id,
    }
    for endpoint in ("127.0.0.1:8080", "localhost:8080"):
        args = ["jobs", "list", "--job-type", "CREATE_SERVER", "--endpoint", endpoint]
        line = failed(CliRunner().invoke(main, args, env=env), 2, "not an http:// or https://")
        assert f"did you mean http://{endpoint}?" in line
        assert "running" not in line


@pytest.mark.postgres
def test_a_server_error_exits_5_with_its_request_id(postgres_url: str, tmp_path: Path) -> None:
    tenant = new_tenant(postgres_url)
    server = ServerProcess(postgres_url, tmp_path)
    try:
        # The database disappears under the running server: every call now fails inside.
        dropped = postgres_url.rsplit("/", 1)[1]
        asyncio.run(_admin(f"DROP DATABASE {dropped} WITH (FORCE)"))
        result = run(server, tenant, "jobs", "list", "--job-type", "CREATE_SERVER")
        line = failed(result, 5, "WKS.00211401", "(HTTP 500, request id ")
        assert "Traceback" not in line
    finally:
        server.stop()


def test_a_profile_others_may_read_is_used_with_a_warning(
    server: ServerProcess, tenant: Tenant, tmp_path: Path
) -> None:
    """Like ssh with a private key: a secret key in a file other local users can read is
    no longer secret. The command still runs (the warning names the fix)."""
    profile = tmp_path / "profile.json"
    keys = {"project_id": tenant.project_id, "access_key": tenant.access_key}
    profile.write_text(json.dumps(keys | {"secret_key": tenant.secret_key}))
    args = ("jobs", "count", "--job-type", "DELETE_SERVER", "--profile", str(profile))
    profile.chmod(0o644)
    shared = run(server, None, *args)
    ok(shared)
    assert shared.stderr.splitlines() == [
        f"Warning: {profile} holds a secret and is readable by other users (mode 644):"
        f" chmod 600 {profile}"
    ]
    profile.chmod(0o600)
    assert run(server, None, *args).stderr == ""


def test_jobs_delete_removes_the_finished_sub_jobs_only(server: ServerProcess) -> None:
    # BatchDeleteImageSubJobs had no command: the README's "delete jobs" needed curl and a
    # signature by hand.
    tenant = new_tenant(server.database_url)  # type: ignore[attr-defined]
    job = make_job(
        tenant.project_id,
        status=JobStatus.RUNNING,
        sub_statuses=[SubJobStatus.SUCCESS, SubJobStatus.RUNNING],
    )
    write_jobs(server.database_url, [job])  # type: ignore[attr-defined]
    done, running = (str(s.id) for s in job.sub_jobs)

    result = run(server, tenant, "jobs", "delete", done, running, "999999999999999999")
    ok(result)
    assert "Asked to delete 3 sub-job(s)" in result.stderr
    page = json.loads(ok(run(server, tenant, "jobs", "sub-jobs", "--job-type", "CREATE_SERVER",
                             "--job-id", str(job.job.id), "-o", "json")))  # fmt: skip
    assert [s["id"] for s in page["items"]] == [running]
    assert json.loads(ok(run(server, tenant, "jobs", "delete", running, "-o", "json"))) == {}
    usage = run(server, tenant, "jobs", "delete")
    assert usage.exit_code == 2
    assert "Missing argument 'SUB_JOB_IDS...'" in usage.stderr
