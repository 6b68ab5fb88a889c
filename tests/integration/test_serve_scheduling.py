"""`imagejobs serve` runs its workers' threads as SCHED_BATCH when told to
(IMAGEJOBS_BATCH_SCHEDULING; bench/README.md, list_probe.py, says why), else with the
default policy."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.conftest import ServerProcess

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="scheduling policies are Linux's"
)


def _session_threads(leader: int) -> dict[int, int]:
    """Every thread of every process in ``leader``'s session -> its scheduling policy."""
    policies = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[3]) != leader:  # the session id
                continue
            for tid in os.listdir(f"/proc/{pid}/task"):
                policies[int(tid)] = os.sched_getscheduler(int(tid))
        except (OSError, ValueError):  # ended meanwhile
            continue
    return policies


@pytest.mark.parametrize(
    ("setting", "policy"),
    # Off, the workers keep the policy they were started with: this test's own.
    [
        (None, os.sched_getscheduler(0)),
        ("false", os.sched_getscheduler(0)),
        ("true", os.SCHED_BATCH),
    ],
)
def test_server_workers_run_as_batch_threads_when_told_to(
    tmp_path: Path, setting: str | None, policy: int
) -> None:
    env = {} if setting is None else {"IMAGEJOBS_BATCH_SCHEDULING": setting}
    server = ServerProcess(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, extra_env=env)
    try:
        threads = _session_threads(server.process.pid)  # serve starts its own session
        # The serving process, its worker, and their threads (Granian's, the loop's).
        assert len(threads) > 2
        assert set(threads.values()) == {policy}
    finally:
        server.stop()
