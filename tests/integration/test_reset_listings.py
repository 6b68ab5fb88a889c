"""Listings of every project (tasks, rules) after a project's reset, over the operator API
and the `imagejobs engine` CLI: each row shows its project's id, never the storage key
the project's rows are kept under now; the old generation's rows (being swept) are hidden."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner

import imagejobs.testing
from imagejobs.api.operator_schemas import RuleBody, rule_record
from imagejobs.cli import main
from imagejobs.domain.times import now_ms
from imagejobs.services.demo_world import demo_state
from imagejobs.services.testkit import TestKitService
from imagejobs.storage.database import Statement, database_for
from imagejobs.storage.state_store import SqlStateStore
from imagejobs.testing import Cloud
from tests.engine_support import services_for, store_of
from tests.integration.sdk import create_server_request

TASKS_BY_KEY = Statement("SELECT project_id, COUNT(*) FROM engine_tasks GROUP BY project_id")


@pytest.fixture(scope="module")
def cloud() -> Iterator[Cloud]:
    with imagejobs.testing.serve() as running:
        yield running


def test_the_operator_api_lists_a_reset_projects_tasks_and_rules_by_its_id(cloud: Cloud) -> None:
    tenant = cloud.tenant()
    client = cloud.client(tenant)
    cloud.steer(tenant, completion="duration", duration=600)
    client.create_image_server(create_server_request())
    cloud.reset(tenant)  # its old task is hidden until swept, then gone
    cloud.steer(tenant, completion="duration", duration=600)
    client.create_image_server(create_server_request())

    tasks = cloud.operator("GET", "/_imagejobs/engine/tasks", query="limit=1000")["tasks"]
    assert [t["project_id"] for t in tasks] == [tenant.project_id]
    rules = cloud.operator("GET", "/_imagejobs/engine/rules")["rules"]
    assert [r["project_id"] for r in rules] == [tenant.project_id]
    cloud.reset(tenant)


async def _reset_between_two_loads(url: str) -> dict[str, int]:
    """``proj`` loaded, reset, loaded again (its old generation not swept) with a rule;
    the live tasks per storage key."""
    database = database_for(url)
    await database.open()
    try:
        services = services_for(database, url)
        state = SqlStateStore(database, store_of(services))
        testkit = TestKitService(state, services.steering, None, services.keys)
        await testkit.load(demo_state("proj", 200, now_ms(), seed=1))
        await testkit.reset("proj")
        await testkit.load(demo_state("proj", 100, now_ms(), seed=2))
        key = await services.keys.storage_key("proj")
        await services.steering.put_rule(rule_record(key, "*", RuleBody(completion="immediate")))
        return {str(k): int(n) for k, n in await database.fetch(TASKS_BY_KEY, {})}
    finally:
        await database.close()


def _cli(*args: str) -> Any:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return msgspec.json.decode(result.output)


def test_the_engine_cli_lists_a_reset_projects_tasks_and_rules_by_its_id(
    database_url: str,
) -> None:
    tasks_by_key = asyncio.run(_reset_between_two_loads(database_url))
    [key] = [k for k in tasks_by_key if k != "proj"]
    assert tasks_by_key["proj"] > 0  # the old generation's, not swept yet

    base = ["--database-url", database_url]
    listed = _cli("engine", "tasks", "--limit", "1000", *base)["tasks"]
    assert [t["project_id"] for t in listed] == ["proj"] * tasks_by_key[key]
    mine = _cli("engine", "tasks", "--project-id", "proj", "--limit", "1000", *base)["tasks"]
    assert mine == listed
    rules = _cli("engine", "rules", "list", *base)["rules"]
    assert [r["project_id"] for r in rules] == ["proj"]
    rule = _cli("engine", "rules", "set", "proj", "DELETE_SERVER", "--reads", "2", *base)
    assert rule["project_id"] == "proj"
