"""With IMAGEJOBS_BATCH_SCHEDULING, `imagejobs serve` runs its workers' threads but the
event loop's own as SCHED_BATCH (bench/README.md, list_probe.py, says why); without it,
every thread keeps the default policy."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ServerProcess

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="scheduling policies are Linux's"
)
DEFAULT = os.sched_getscheduler(0)  # what the servers start with: this test's own policy


def _session_threads(leader: int) -> dict[int, dict[int, int]]:
    """Every process in ``leader``'s session -> each of its threads -> its policy."""
    processes: dict[int, dict[int, int]] = {}
    for pid in map(int, filter(str.isdigit, os.listdir("/proc"))):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[3]) != leader:  # the session id
                continue
            processes[pid] = {
                int(tid): os.sched_getscheduler(int(tid)) for tid in os.listdir(f"/proc/{pid}/task")
            }
        except (OSError, ValueError):  # ended meanwhile
            continue
    return processes


def _worker(processes: dict[int, dict[int, int]], leader: int) -> tuple[int, dict[int, int]]:
    (worker,) = (pid for pid in processes if pid != leader)
    return worker, processes[worker]


@pytest.mark.parametrize("setting", [None, "false"])
def test_server_threads_keep_the_default_policy_unless_told(
    tmp_path: Path, setting: str | None
) -> None:
    env = {} if setting is None else {"IMAGEJOBS_BATCH_SCHEDULING": setting}
    server = ServerProcess(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, extra_env=env)
    try:
        processes = _session_threads(server.process.pid)  # serve starts its own session
        _, threads = _worker(processes, server.process.pid)
        assert len(threads) > 1  # the loop's and Granian's
        assert {p for threads in processes.values() for p in threads.values()} == {DEFAULT}
    finally:
        server.stop()


def test_worker_threads_but_the_event_loop_run_as_batch_when_told(tmp_path: Path) -> None:
    env = {"IMAGEJOBS_BATCH_SCHEDULING": "true"}
    server = ServerProcess(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, extra_env=env)
    try:
        leader = server.process.pid
        # The worker switches its threads a moment after its startup: wait for it.
        deadline = time.monotonic() + 10
        while True:
            processes = _session_threads(leader)
            worker, threads = _worker(processes, leader)
            others = {p for tid, p in threads.items() if tid != worker}
            if others == {os.SCHED_BATCH} or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert others == {os.SCHED_BATCH}  # Granian's threads
        assert threads[worker] == DEFAULT  # the event loop's (the worker's main thread)
        assert set(processes[leader].values()) == {DEFAULT}  # the serving process's
    finally:
        server.stop()
