"""Steering rules: precedence, validation, and what the simulated driver does with them."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import replace
from pathlib import Path

import pytest

from imagejobs.domain.enums import JobType
from imagejobs.domain.errors import InvalidParameter
from imagejobs.domain.lifecycle import Pending, Phase
from imagejobs.domain.steering import Behaviour, Completion, Effect, Fault, Rule, resolve
from imagejobs.drivers.interface import DriverError, ServerCreated, ServerRequest, StepContext
from imagejobs.drivers.simulated import SimulatedDriver

DEFAULTS = Behaviour(queue_seconds=2, completion=Completion.DURATION, duration_seconds=3)


def test_the_most_specific_rule_wins_field_by_field() -> None:
    rules = [
        Rule(queue_seconds=1.0, completion=Completion.IMMEDIATE),
        Rule(job_type="DELETE_SERVER", queue_seconds=5.0),
        Rule(project_id="p", completion=Completion.READS, reads=2),
        Rule(project_id="p", job_type="DELETE_SERVER", faults=(Fault(),)),
        Rule(project_id="other", queue_seconds=99.0),
    ]
    assert resolve(DEFAULTS, rules, "q", "CREATE_SERVER") == Behaviour(
        queue_seconds=1.0, completion=Completion.IMMEDIATE, duration_seconds=3
    )
    assert resolve(DEFAULTS, rules, "p", "DELETE_SERVER") == Behaviour(
        queue_seconds=5.0,
        completion=Completion.READS,
        duration_seconds=3,
        reads=2,
        faults=(Fault(),),
    )
    assert resolve(DEFAULTS, [], "p", "CREATE_SERVER") == DEFAULTS


@pytest.mark.parametrize(
    ("make", "parameter"),
    [
        (lambda: Rule(queue_seconds=-1), "queue_seconds"),
        (lambda: Rule(job_type="BUILD_IMAGE"), "job_type"),
        (lambda: Rule(project_id=""), "project_id"),
        (lambda: Rule(reads=0), "reads"),
        (lambda: Fault(probability=1.5), "probability"),
        (lambda: Fault(sub_job_index=20), "sub_job_index"),
        (lambda: Fault(error_code=""), "error_code"),
    ],
)
def test_invalid_rules_are_refused_with_the_parameter(make, parameter: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidParameter) as caught:
        make()
    assert caught.value.parameter == parameter


def context(behaviour: Behaviour, *, position: int = 0, reads: int = 0, started: int = 0):  # type: ignore[no-untyped-def]
    return StepContext(
        sub_job_id=123,
        job_id=1,
        project_id="p",
        job_type=JobType.CREATE_SERVER,
        phase=Phase.RUN,
        position=position,
        attempt=1,
        started_at=started or time.time_ns() // 1_000_000,
        reads=reads,
        steering=behaviour,
    )


REQUEST = ServerRequest("42", "srv", "group", {})


def test_the_simulated_driver_is_idempotent_by_sub_job_id(tmp_path: Path) -> None:
    log = tmp_path / "executions.log"
    driver = SimulatedDriver(log)
    immediate = Behaviour(completion=Completion.IMMEDIATE)
    first = asyncio.run(driver.create_server(context(immediate), REQUEST))
    second = asyncio.run(driver.create_server(context(immediate), REQUEST))
    assert isinstance(first, ServerCreated)
    assert first == second
    assert first.server_id.startswith("wksapp-")
    assert log.read_text().count("123 create_server run 1") == 2


def test_completion_on_reads_waits_for_them() -> None:
    driver = SimulatedDriver()
    reads = Behaviour(completion=Completion.READS, reads=3)
    waiting = asyncio.run(driver.create_server(context(reads, reads=2), REQUEST))
    assert isinstance(waiting, Pending)
    assert waiting.until_reads == 3
    done = asyncio.run(driver.create_server(context(reads, reads=3), REQUEST))
    assert isinstance(done, ServerCreated)


def test_completion_after_a_duration_counts_from_the_first_start() -> None:
    driver = SimulatedDriver()
    long_ago = time.time_ns() // 1_000_000 - 60_000
    slow = Behaviour(completion=Completion.DURATION, duration_seconds=30)
    # Started a minute ago: a retried step does not wait the duration again.
    assert isinstance(
        asyncio.run(driver.create_server(context(slow, started=long_ago), REQUEST)), ServerCreated
    )


def test_faults_hit_the_chosen_sub_job_with_the_chosen_error() -> None:
    driver = SimulatedDriver(rng=random.Random(1))
    fault = Fault(sub_job_index=1, error_code="WKS.42", error_message="no quota", transient=True)
    failing = Behaviour(completion=Completion.IMMEDIATE, faults=(fault,))
    assert isinstance(
        asyncio.run(driver.create_server(context(failing, position=0), REQUEST)), ServerCreated
    )
    with pytest.raises(DriverError) as caught:
        asyncio.run(driver.create_server(context(failing, position=1), REQUEST))
    assert (caught.value.code, caught.value.message, caught.value.transient) == (
        "WKS.42",
        "no quota",
        True,
    )


def test_fault_probability_is_honoured() -> None:
    driver = SimulatedDriver(rng=random.Random(7))
    half = Behaviour(completion=Completion.IMMEDIATE, faults=(Fault(probability=0.5),))
    failures = 0
    for _ in range(400):
        try:
            asyncio.run(driver.create_server(context(half), REQUEST))
        except DriverError:
            failures += 1
    assert 140 < failures < 260


def test_a_slow_fault_delays_without_failing_and_without_holding_a_slot() -> None:
    driver = SimulatedDriver()
    slow = Fault(effect=Effect.SLOW, slow_seconds=30)
    behaviour = Behaviour(completion=Completion.IMMEDIATE, faults=(slow,))
    first = asyncio.run(driver.create_server(context(behaviour), REQUEST))
    assert isinstance(first, Pending)
    assert first.after_seconds == 30
    again = replace(context(behaviour), previous_progress=first.progress)
    assert isinstance(asyncio.run(driver.create_server(again, REQUEST)), ServerCreated)


def test_a_step_waiting_for_its_duration_is_rescheduled_not_slept() -> None:
    """A waiting step holds no runner slot: it answers Pending for the time left,
    measured on the engine's clock (ctx.now), not this machine's."""
    driver = SimulatedDriver()
    behaviour = Behaviour(completion=Completion.DURATION, duration_seconds=86_400)
    started = 1_000_000
    waiting = replace(context(behaviour, started=started), clock=lambda: started + 400)
    pending = asyncio.run(driver.create_server(waiting, REQUEST))
    assert isinstance(pending, Pending)
    assert pending.after_seconds == 86_399.6
    done = replace(waiting, clock=lambda: started + 86_400_000)
    assert isinstance(asyncio.run(driver.create_server(done, REQUEST)), ServerCreated)


def test_drivers_are_plug_ins_found_by_entry_point() -> None:
    from imagejobs.domain.errors import InvalidSettings
    from imagejobs.drivers.registry import available_drivers, load_driver
    from imagejobs.settings import load_settings

    assert "simulated" in available_drivers()
    assert isinstance(load_driver(load_settings({})), SimulatedDriver)
    with pytest.raises(InvalidSettings) as caught:
        load_driver(load_settings({"IMAGEJOBS_DRIVER": "nope"}))
    assert "simulated" in caught.value.message
