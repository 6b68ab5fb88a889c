"""``imagejobs engine``: steer the simulated driver and look at the job engine.

It talks to the database directly (like ``imagejobs iam``): whoever may open the
database is an operator, no credentials are needed, and every API and worker process
sees a change at once. The same is available over HTTP under ``/_imagejobs``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import msgspec

from imagejobs.cli.client_options import ClientExit, exit_code_of
from imagejobs.cli.common import (
    SETTINGS_POINTER,
    data_dir_option,
    database_url_option,
    load,
    output_option,
)
from imagejobs.cli.problems import command_problem, database_problem
from imagejobs.domain.errors import ImageJobsError, ServiceUnavailable
from imagejobs.services import Services

T = TypeVar("T")
_COMPLETIONS = click.Choice(["immediate", "duration", "reads"])


def _run(
    database_url: str | None, data_dir: Path | None, action: Callable[[Services], Awaitable[T]]
) -> T:
    from imagejobs.bootstrap import build_services, opened_database

    settings = load(database_url=database_url, data_dir=data_dir)

    async def run() -> T:
        async with opened_database(settings) as database:
            return await action(build_services(database, settings))

    try:
        return asyncio.run(run())
    except ImageJobsError as exc:
        # The exit codes of `iam` and the API client: a mistyped job type is 2 (invalid),
        # an unknown project 4, as a script tells them apart.
        # A database away is named as every command names it, with what to check.
        message = database_problem(exc) if isinstance(exc, ServiceUnavailable) else None
        raise ClientExit(message or exc.message, exit_code_of(exc.status)) from exc
    except OSError as exc:
        raise click.ClickException(command_problem("use the database", exc)) from exc


def _echo(value: Any) -> None:
    click.echo(msgspec.json.format(msgspec.json.encode(value), indent=2))


# What the engine commands show is the operator API's JSON answer: -o json only (for
# scripts that pass it to every command).
json_output = output_option(("json",))


@click.group(epilog=SETTINGS_POINTER)
def engine() -> None:
    """Steer the simulated driver (rules) and look at the job engine's queue."""


@engine.command()
@database_url_option
@data_dir_option
@json_output
def status(database_url: str | None, data_dir: Path | None, output: str) -> None:
    """The queue at a glance: due, scheduled, leased and expired sub-jobs."""
    from imagejobs.api.operator_schemas import engine_status

    settings = load(database_url=database_url, data_dir=data_dir)

    async def action(services: Services) -> Any:
        return engine_status(settings.driver, await services.engine.summary())

    _echo(_run(database_url, data_dir, action))


@engine.command()
@database_url_option
@data_dir_option
@click.option("--project-id", default=None, help="Only this project's tasks.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@json_output
def tasks(
    database_url: str | None,
    data_dir: Path | None,
    project_id: str | None,
    limit: int,
    output: str,
) -> None:
    """Live tasks (sub-jobs not ended yet), due first, with their lease and progress."""
    from imagejobs.api.operator_schemas import tasks_response

    async def action(services: Services) -> Any:
        if project_id is None:  # every project's, shown by project id
            views = await services.engine.tasks(None, limit)
            return tasks_response(views, await services.keys.shown_ids())
        views = await services.engine.tasks(await services.keys.storage_key(project_id), limit)
        return tasks_response(views, lambda key: project_id)

    _echo(_run(database_url, data_dir, action))


@engine.group()
def rules() -> None:
    """Steering rules, per project (or *) and job type (or *)."""


@rules.command("list")
@database_url_option
@data_dir_option
@json_output
def list_rules(database_url: str | None, data_dir: Path | None, output: str) -> None:
    """The process defaults (IMAGEJOBS_SIMULATED_*) and every rule."""
    from imagejobs.api.operator_schemas import rules_response

    async def action(services: Services) -> Any:
        steering = services.steering
        return rules_response(
            steering.defaults, await steering.rules(), await services.keys.shown_ids()
        )

    _echo(_run(database_url, data_dir, action))


def _rule_body(options: dict[str, Any], raw_json: str | None) -> Any:
    from imagejobs.api.endpoint import decode_body, validation_problem
    from imagejobs.api.operator_schemas import RuleBody
    from imagejobs.domain.errors import InvalidParameter

    if raw_json is not None:
        try:  # the API's own decoding: the same errors as PUT /_imagejobs/engine/rules
            return decode_body(raw_json.encode(), RuleBody)
        except InvalidParameter as exc:
            raise click.BadParameter(f"{exc.parameter} {exc.reason}", param_hint="--rule") from exc
    body: dict[str, Any] = {
        k: options[k]
        for k in ("queue_seconds", "completion", "duration_seconds", "reads")
        if options[k] is not None
    }
    faults: list[dict[str, Any]] = []
    where = {} if options["sub_job_index"] is None else {"sub_job_index": options["sub_job_index"]}
    if options["fail_probability"] is not None or options["error_code"] is not None:
        fault: dict[str, Any] = {"effect": "fail", "transient": options["transient"], **where}
        if options["fail_probability"] is not None:
            fault["probability"] = options["fail_probability"]
        if options["error_code"] is not None:
            fault["error_code"] = options["error_code"]
        if options["error_message"] is not None:
            fault["error_message"] = options["error_message"]
        faults.append(fault)
    if options["slow_seconds"] is not None:
        faults.append({"effect": "slow", "slow_seconds": options["slow_seconds"], **where})
    if faults or options["no_faults"]:
        body["faults"] = faults
    try:
        return msgspec.convert(body, RuleBody)
    except msgspec.ValidationError as exc:
        name, reason = validation_problem(exc, RuleBody)
        # Named as the flag that gave it: "faults[0].probability" is no flag of this command.
        flag = _FLAG_OF_FIELD.get(re.sub(r"^faults\[\d+\]\.", "", name))
        if flag is None:
            raise click.BadParameter(f"{name} {reason}") from exc
        raise click.BadParameter(reason, param_hint=f"'{flag}'") from exc


_FLAG_OF_FIELD = {
    "queue_seconds": "--queue-seconds",
    "duration_seconds": "--duration-seconds",
    "reads": "--reads",
    "probability": "--fail-probability",
    "error_code": "--error-code",
    "error_message": "--error-message",
    "slow_seconds": "--slow-seconds",
    "sub_job_index": "--sub-job-index",
}


def _rule_project(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A rule's project: * or a project id (never a storage key, "~...")."""
    from imagejobs.domain.errors import InvalidParameter
    from imagejobs.domain.params import check_project_id

    if value != "*":
        try:
            check_project_id(value)
        except InvalidParameter as exc:
            raise click.BadParameter(f"{exc.parameter} {exc.reason}") from exc
    return value


@rules.command("set")
@database_url_option
@data_dir_option
@click.argument("project_id", callback=_rule_project)
@click.argument("job_type")
@click.option("--queue-seconds", type=float, help="Time a new sub-job stays WAITING.")
@click.option("--completion", type=_COMPLETIONS, help="How a sub-job completes.")
@click.option("--duration-seconds", type=float, help="With --completion duration.")
@click.option("--reads", type=int, help="With --completion reads: reads of the job.")
@click.option("--fail-probability", type=float, help="Add a fault: fail with this probability.")
@click.option("--error-code", help="The failing fault's error code.")
@click.option("--error-message", help="The failing fault's error message.")
@click.option("--transient", is_flag=True, help="The failure is retried with backoff.")
@click.option("--slow-seconds", type=float, help="Add a fault: slow steps down this much.")
@click.option(
    "--sub-job-index",
    type=int,
    help="Faults hit only this sub-job of a job, counted from 0 (the test kit's fail_at: from 1).",
)
@click.option("--no-faults", is_flag=True, help="Set an empty fault list (no inherited faults).")
@click.option(
    "--rule",
    "raw_json",
    metavar="JSON",
    help="The whole rule as JSON (the operator API's body) instead of the options above.",
)
# Its old name: --json, which every other command takes as -o json.
@click.option("--json", "old_raw_json", hidden=True)
@output_option(("json",), json_alias=False)
def set_rule(
    database_url: str | None,
    data_dir: Path | None,
    project_id: str,
    job_type: str,
    raw_json: str | None,
    old_raw_json: str | None,
    output: str,
    **options: Any,
) -> None:
    """Set the rule of PROJECT_ID (or *) and JOB_TYPE (or *); unset fields inherit.

    \b
    Examples:
      imagejobs engine rules set '*' '*' --queue-seconds 0 --completion immediate
      imagejobs engine rules set 0a1b... CREATE_SERVER --fail-probability 1 \\
          --error-code WKS.00211401 --error-message 'quota exceeded'
    """
    from imagejobs.api.operator_schemas import rule_info, rule_record

    body = _rule_body(options, raw_json if raw_json is not None else old_raw_json)

    async def action(services: Services) -> Any:
        key = await services.keys.storage_key(project_id)
        rule = await services.steering.put_rule(rule_record(key, job_type, body))
        # As PROJECT_ID names it: the record carries the storage key.
        return msgspec.structs.replace(rule_info(rule), project_id=project_id)

    _echo(_run(database_url, data_dir, action))


@rules.command("delete")
@database_url_option
@data_dir_option
@click.argument("project_id", callback=_rule_project)
@click.argument("job_type")
@output_option()
def delete_rule(
    database_url: str | None, data_dir: Path | None, project_id: str, job_type: str, output: str
) -> None:
    """Remove the rule of PROJECT_ID and JOB_TYPE."""

    async def action(services: Services) -> int:
        key = await services.keys.storage_key(project_id)
        return await services.steering.delete_rule(key, job_type)

    _removed(_run(database_url, data_dir, action), output)


def _removed(count: int, output: str) -> None:
    if output == "json":
        _echo({"removed": count})
    else:
        click.echo(f"Removed {count} rule(s).")


@rules.command("clear")
@database_url_option
@data_dir_option
@output_option()
def clear_rules(database_url: str | None, data_dir: Path | None, output: str) -> None:
    """Remove every rule: the process defaults apply again."""

    async def action(services: Services) -> int:
        return await services.steering.clear()

    _removed(_run(database_url, data_dir, action), output)


@engine.command()
@database_url_option
@data_dir_option
@click.argument("project_id")
@click.argument(
    "job_type", type=click.Choice(["CREATE_SERVER", "CREATE_SERVER_IMAGE", "DELETE_SERVER"])
)
@json_output
def behaviour(
    database_url: str | None, data_dir: Path | None, project_id: str, job_type: str, output: str
) -> None:
    """The behaviour in effect for PROJECT_ID's JOB_TYPE sub-jobs (defaults + rules)."""
    from imagejobs.api.operator_schemas import behaviour_info
    from imagejobs.domain.enums import JobType

    async def action(services: Services) -> Any:
        key = await services.keys.storage_key(project_id)
        return behaviour_info(await services.steering.behaviour(key, JobType(job_type)))

    _echo(_run(database_url, data_dir, action))
