"""A pg_auto_failover formation of a test's own: a monitor, a primary and a synchronous
standby on free local ports (notes: /work/shared/notes/pg-auto-failover.md).

Every command runs as the ``postgres`` user (PostgreSQL refuses root), with its XDG
directories inside the formation's directory, so that nothing is left behind elsewhere.
The monitor fails over after about 3 s without a primary's health checks (test values:
production keeps the safer defaults).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import free_port
from tests.pg_cluster import as_postgres, owned_directory, postgres_bin

# Failover in seconds instead of about a minute (set on the monitor, then reloaded).
FAST_MONITOR = {
    "pgautofailover.health_check_period": "1000",
    "pgautofailover.health_check_timeout": "1000",
    "pgautofailover.health_check_max_retries": "1",
    "pgautofailover.health_check_retry_delay": "500",
    "pgautofailover.node_considered_unhealthy_timeout": "3000",
    "pgautofailover.primary_demote_timeout": "5000",
}


class Formation:
    def __init__(self, database: str = "imagejobs") -> None:
        self.root = owned_directory("imagejobs-paf-")
        self.bin = postgres_bin()
        self.database = database
        self.monitor_port = free_port()
        self.ports = {"node1": free_port(), "node2": free_port()}
        self.env = {
            **os.environ,
            "PATH": f"{self.bin}:{os.environ['PATH']}",
            "XDG_CONFIG_HOME": str(self.root / "config"),
            "XDG_DATA_HOME": str(self.root / "share"),
            "XDG_RUNTIME_DIR": str(self.root / "run"),
            "PG_CONFIG": str(self.bin / "pg_config"),
        }
        self.keepers: dict[str, subprocess.Popen[bytes]] = {}
        self.monitor_url = (
            f"postgres://autoctl_node@127.0.0.1:{self.monitor_port}/pg_auto_failover"
            "?sslmode=disable"
        )

    def pgdata(self, name: str) -> Path:
        return self.root / name

    def url(self) -> str:
        """The multi-host URL the service is given (the primary may be either node)."""
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.ports.values())
        return f"postgresql://postgres@{hosts}/{self.database}?target_session_attrs=read-write"

    def node_url(self, name: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.ports[name]}/{self.database}"

    def _autoctl(self, *args: str) -> str:
        return as_postgres(["pg_autoctl", *args], env=self.env).stdout

    def _spawn(self, name: str, *args: str) -> None:
        argv = ["pg_autoctl", *args]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        with (self.root / f"{name}.log").open("ab") as log:
            self.keepers[name] = subprocess.Popen(
                argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def states(self) -> dict[str, str]:
        """Node name -> its current state, as the monitor sees it."""
        out = self._autoctl("show", "state", "--pgdata", str(self.pgdata("monitor")), "--json")
        return {node["nodename"]: node["current_group_state"] for node in json.loads(out)}

    def wait_for(self, wanted: set[str], timeout: float = 90) -> dict[str, str]:
        """Until the monitor reports exactly the states ``wanted`` (one per node)."""
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            with contextlib.suppress(subprocess.CalledProcessError, ValueError, KeyError):
                states = self.states()
                if set(states.values()) == wanted and len(states) == len(wanted):
                    return states
            time.sleep(0.2)
        raise TimeoutError(f"formation states {states}, wanted {wanted}")

    def start(self) -> None:
        monitor = str(self.pgdata("monitor"))
        common = ["--hostname", "127.0.0.1", "--auth", "trust", "--no-ssl"]
        common += ["--pgctl", str(self.bin / "pg_ctl")]
        self._autoctl(
            "create", "monitor", "--pgdata", monitor, "--pgport", str(self.monitor_port), *common
        )
        self._autoctl(
            "config", "set", "--pgdata", monitor, "postgresql.listen_addresses", "127.0.0.1"
        )
        self._spawn("monitor", "run", "--pgdata", monitor)
        for _ in range(300):
            ready = subprocess.run(
                [
                    str(self.bin / "pg_isready"),
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.monitor_port),
                ],
                check=False,
            )
            if ready.returncode == 0:
                break
            time.sleep(0.1)
        settings = "; ".join(f"ALTER SYSTEM SET {k} = {v}" for k, v in FAST_MONITOR.items())
        psql = [str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.monitor_port)]
        psql += ["-U", "postgres", "-d", "pg_auto_failover", "-v", "ON_ERROR_STOP=1"]
        for sql in (*settings.split("; "), "SELECT pg_reload_conf()"):
            as_postgres([*psql, "-c", sql], env=self.env)
        for index, name in enumerate(self.ports):
            self._spawn(
                name,
                "create",
                "postgres",
                "--pgdata",
                str(self.pgdata(name)),
                "--pgport",
                str(self.ports[name]),
                "--listen",
                "127.0.0.1",
                "--name",
                name,
                "--dbname",
                self.database,
                "--monitor",
                self.monitor_url,
                *common,
                "--run",
            )
            if index == 0:
                self.wait_for({"single"})
                # pg_basebackup of the standby would otherwise wait for a spread checkpoint.
                node = ["-h", "127.0.0.1", "-p", str(self.ports[name]), "-U", "postgres"]
                as_postgres([str(self.bin / "psql"), *node, "-c", "CHECKPOINT"], env=self.env)
        self.wait_for({"primary", "secondary"})

    def primary(self) -> str:
        return next(name for name, state in self.states().items() if state == "primary")

    def wait_for_promotion(self, old_primary: str, timeout: float = 60) -> str:
        """The node that took over from ``old_primary`` (it runs without a standby, as
        ``wait_primary``, until the old node rejoins)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(subprocess.CalledProcessError, ValueError, KeyError):
                for name, state in self.states().items():
                    if name != old_primary and state in ("primary", "wait_primary"):
                        return name
            time.sleep(0.2)
        raise TimeoutError(f"no node took over from {old_primary}")

    def kill_machine(self, name: str) -> None:
        """As if the node's machine died: its keeper and its postmaster, with SIGKILL."""
        keeper = self.keepers[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(keeper.pid, signal.SIGKILL)
        keeper.wait()
        _kill_postmaster(self.pgdata(name) / "postmaster.pid")

    def remove(self) -> None:
        for keeper in self.keepers.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(keeper.pid, signal.SIGKILL)
            keeper.wait()
        for name in ("monitor", *self.ports):
            _kill_postmaster(self.pgdata(name) / "postmaster.pid")
        shutil.rmtree(self.root, ignore_errors=True)


def _kill_postmaster(pid_file: Path) -> None:
    """SIGKILL a node's postmaster and its children, as its machine's death would: killed
    alone, the monitor's background workers outlived it (seen: its healthcheck worker and
    logger, orphaned, still running an hour after the test)."""
    try:
        postmaster = int(pid_file.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # pid (comm) state ppid ...: comm may hold spaces, so split after its ')'.
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                children.append(int(stat.parent.name))
    for pid in (postmaster, *children):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
