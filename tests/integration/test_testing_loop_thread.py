"""The cloud's event loop shared with the threads that call it: a call runs on the
caller's thread (every step of its task), background work on the loop's own thread, and
calls from several threads at once are each answered, through the official SDK too."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from huaweicloudsdkworkspaceapp.v1 import ListImageJobsRequest, ShowImageJobRequest

import imagejobs.testing
from imagejobs.testing.loop_thread import LoopThread
from tests.integration.sdk import create_server_request


@pytest.fixture
def runner() -> Any:
    running = LoopThread()
    yield running
    running.close()


def test_a_call_runs_on_the_callers_thread_and_background_work_on_the_loops(
    runner: LoopThread,
) -> None:
    steps: list[int] = []
    background: list[int] = []
    ran = threading.Event()

    def later() -> None:
        background.append(threading.get_ident())
        ran.set()

    async def call() -> str:
        loop = asyncio.get_running_loop()
        assert loop is runner.loop
        assert asyncio.current_task() is not None
        steps.append(threading.get_ident())
        await asyncio.sleep(0.01)  # a timer: this thread polls for it
        steps.append(threading.get_ident())
        await loop.run_in_executor(None, time.sleep, 0.01)  # another thread's answer
        steps.append(threading.get_ident())
        loop.call_later(0.05, later)  # due after the call: the loop's thread is woken for it
        return "answered"

    assert runner.run(call()) == "answered"
    assert steps == [threading.get_ident()] * 3
    assert asyncio.events._get_running_loop() is None  # the caller's thread as it was
    assert ran.wait(10)
    assert background == [runner._thread.ident]


def test_calls_from_several_threads_at_once_each_get_their_own_answer(
    runner: LoopThread,
) -> None:
    in_call: list[int] = []
    overlaps: list[int] = []
    answers: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    async def call(value: int, waits: bool) -> int:
        in_call.append(value)
        if len(in_call) > 1:
            overlaps.append(value)
        if waits:
            await asyncio.sleep(0.001)
        else:
            await asyncio.sleep(0)
        in_call.remove(value)
        return value

    def caller(number: int) -> None:
        try:
            answers[number] = [runner.run(call(number * 100 + i, i % 3 == 0)) for i in range(30)]
        except BaseException as exc:  # pragma: no cover - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert answers == {n: [n * 100 + i for i in range(30)] for n in range(4)}
    assert overlaps == []  # one caller runs the loop at a time


def test_a_coroutine_of_the_loop_cannot_wait_for_it_and_a_timeout_is_raised(
    runner: LoopThread,
) -> None:
    async def nested() -> None:
        runner.run(asyncio.sleep(0))

    with pytest.raises(RuntimeError, match="cannot wait for the loop"):
        runner.run(nested())
    with pytest.raises(TimeoutError):  # the coroutine goes on, on the loop
        runner.run(asyncio.sleep(0.2), timeout=0.05)
    assert runner.run(asyncio.sleep(0.3, result="still serving")) == "still serving"
    assert {task.get_coro().__name__ for task in asyncio.all_tasks(runner.loop)} == set()


def test_in_asyncios_debug_mode_a_call_hops_to_the_loops_thread(runner: LoopThread) -> None:
    # Debug mode checks that only the loop's thread schedules callbacks.
    runner.loop.set_debug(True)

    async def where() -> int:
        await asyncio.sleep(0)
        return threading.get_ident()

    assert runner.run(where()) == runner._thread.ident


def test_the_mock_answers_sdk_calls_from_several_threads_at_once() -> None:
    with imagejobs.testing.mock_workspaceapp() as cloud:
        tenant = cloud.tenant()
        job_ids: list[str] = []
        errors: list[BaseException] = []

        def create_and_read() -> None:
            client = cloud.client(tenant)
            try:
                for _ in range(8):
                    job_id = client.create_image_server(create_server_request()).job_id
                    # A read of a live job waits for the engine: the caller runs the loop
                    # (the engine's work included) until the job has ended.
                    job = client.show_image_job(ShowImageJobRequest(job_id=job_id))
                    assert job.status == "SUCCESS"
                    job_ids.append(job_id)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        def make_tenants() -> None:  # each waits for the password hashing thread
            try:
                for _ in range(4):
                    cloud.tenant()
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=create_and_read) for _ in range(4)]
        threads.append(threading.Thread(target=make_tenants))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        listed = cloud.client(tenant).list_image_jobs(
            ListImageJobsRequest(job_type="CREATE_SERVER", limit=100)
        )
        assert listed.count == 32
        assert sorted(job.id for job in listed.items) == sorted(job_ids)
