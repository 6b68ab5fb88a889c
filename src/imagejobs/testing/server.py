"""``serve()``: a real imagejobs HTTP server inside the test process, on a port the OS
picks, ready when it returns and gone (runner included, no grace wait) when it exits."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from imagejobs.testing.cloud import Cloud, cloud_settings

_READY_TIMEOUT_SECONDS = 30.0


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the OS's choice)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def serve(*, host: str = "127.0.0.1", port: int = 0, **settings: Any) -> Iterator[Cloud]:
    """Run imagejobs (the test profile, a fresh SQLite database, unless ``settings`` say
    otherwise: any ``Settings`` field by name) and yield its ``Cloud``; ``cloud.endpoint``
    is its URL."""
    from granian.constants import Interfaces
    from granian.server.embed import Server

    port = port or free_port(host)
    cloud = Cloud(cloud_settings({"host": host, "port": port, **settings}), f"http://{host}:{port}")
    try:
        cloud.start()
        server = Server(
            cloud.app,
            address=host,
            port=port,
            interface=Interfaces.ASGINL,  # the cloud already ran the app's lifespan
            log_enabled=False,
            websockets=False,
        )
        serving = asyncio.run_coroutine_threadsafe(server.serve(), cloud.loop)
        try:
            _wait_listening(host, port, serving)
            yield cloud
        finally:
            cloud.loop.call_soon_threadsafe(server.stop)
            serving.result(_READY_TIMEOUT_SECONDS)
    finally:
        cloud.close(collect=True)


def _wait_listening(host: str, port: int, serving: Any) -> None:
    deadline = time.monotonic() + _READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if serving.done():
            serving.result()  # raises the server's error
            raise RuntimeError(f"imagejobs stopped before listening on {host}:{port}")
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.002)
    raise TimeoutError(f"imagejobs did not listen on {host}:{port} within {deadline}s")
