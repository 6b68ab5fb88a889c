"""Project ids that name no project: a reset, an imported or exported state and a steering
rule refuse them with the documented 400, on both databases. A reset project's rows live
under a storage key, "~" and 32 hex digits: a project "named" so would read and write
another project's rows."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from imagejobs.domain.errors import InvalidParameter
from imagejobs.domain.params import ONE_PROJECT_ID_PATTERN, check_project_id
from imagejobs.testing import Cloud, serve
from tests.engine_support import query

KEY_LIKE = "~" + "0123456789abcdef" * 2  # what a reset's storage key looks like
REFUSED = [KEY_LIKE, "a~b", "a/b", "p\x01", "p\x7f", "p\x85"]


@pytest.fixture
def cloud(database_url: str) -> Iterator[Cloud]:
    with serve(database_url=database_url) as cloud:
        yield cloud


def _refused(answer: httpx.Response) -> str:
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["error_code"] == "WKS.00211102"
    assert "project_id" in body["error_msg"]
    message: str = body["error_msg"]
    return message


@pytest.mark.parametrize("project_id", REFUSED)
def test_reset_state_and_rules_refuse_a_project_id_no_project_can_have(
    cloud: Cloud, project_id: str
) -> None:
    tenant = cloud.tenant()
    cloud.reset(tenant)  # the tenant's rows now live under a "~" key
    operator = {"X-Imagejobs-Operator-Token": cloud.settings.operator_token}
    with httpx.Client(base_url=cloud.endpoint, headers=operator) as http:
        message = _refused(http.post("/_imagejobs/reset", json={"project_id": project_id}))
        assert "must not contain" in message
        state: dict[str, Any] = {"project_id": project_id, "servers": [], "jobs": []}
        _refused(http.post("/_imagejobs/state", json=state))
        _refused(http.get("/_imagejobs/state", params={"project_id": project_id}))
        if "/" not in project_id:  # a "/" is another path: no such route
            rule = f"/_imagejobs/engine/rules/{quote(project_id, safe='')}/CREATE_SERVER"
            _refused(http.put(rule, json={"completion": "immediate"}))
        # Nothing was written under the id, and the tenant's generation is untouched.
        assert http.get("/_imagejobs/engine/rules").json()["rules"] == []
        assert http.post("/_imagejobs/reset", json={"project_id": tenant.project_id}).is_success


def test_a_storage_key_cannot_be_reset_or_overwritten_through_its_name(cloud: Cloud) -> None:
    """The real key a reset made: neither exported, overwritten nor reset by naming it."""
    tenant = cloud.tenant()
    cloud.reset(tenant)
    [(key,)] = query(
        cloud.settings.database_url,
        f"SELECT storage_key FROM project_keys WHERE project_id = '{tenant.project_id}'",
    )
    assert key.startswith("~")
    operator = {"X-Imagejobs-Operator-Token": cloud.settings.operator_token}
    with httpx.Client(base_url=cloud.endpoint, headers=operator) as http:
        _refused(http.get("/_imagejobs/state", params={"project_id": key}))
        _refused(http.post("/_imagejobs/state", json={"project_id": key, "jobs": []}))
        _refused(http.post("/_imagejobs/reset", json={"project_id": key}))
        retired = query(cloud.settings.database_url, "SELECT storage_key FROM retired_project_keys")
        assert (key,) not in retired  # the current key was not retired


@pytest.mark.parametrize(
    "project_id", [*REFUSED, "*", "a4da8115c9d8464ead3a38309130523f", "p 1", "项目", "x" * 128]
)
def test_the_documented_pattern_is_the_rule_the_test_kit_checks(project_id: str) -> None:
    """The operator API's OpenAPI document states the rule check_project_id enforces."""
    try:
        check_project_id(project_id)
        accepted = True
    except InvalidParameter:
        accepted = False
    assert accepted == bool(re.fullmatch(ONE_PROJECT_ID_PATTERN, project_id))


def test_a_storage_key_in_a_v1_path_is_refused_without_iam(database_url: str) -> None:
    """Under IMAGEJOBS_AUTH=none no authorization stands between a path's project id and
    its rows: a reset project's storage key named in the path must still read nothing."""
    project_id = "a4da8115c9d8464ead3a38309130523f"
    with serve(database_url=database_url, auth="none") as cloud:
        cloud.reset(project_id)  # the project's rows now live under a "~" key
        [(key,)] = query(
            cloud.settings.database_url,
            f"SELECT storage_key FROM project_keys WHERE project_id = '{project_id}'",
        )
        with httpx.Client(base_url=cloud.endpoint) as http:
            for named in (key, KEY_LIKE):
                path = f"/v1/{quote(named, safe='')}/image-server-jobs"
                message = _refused(http.get(path, params={"job_type": "CREATE_SERVER"}))
                assert "must not contain ~" in message
            listed = http.get(
                f"/v1/{project_id}/image-server-jobs", params={"job_type": "CREATE_SERVER"}
            )
            assert listed.status_code == 200, listed.text
