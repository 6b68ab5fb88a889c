"""An asyncio event loop on a daemon thread, and ASGI requests made to an app running on
it from ordinary (synchronous) code: the in-process service's engine room."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar, cast

from starlette.types import ASGIApp, Message

T = TypeVar("T")
Headers = list[tuple[bytes, bytes]]


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop where it is installed (a dependency, except on Windows), as Granian
    runs ``imagejobs serve``'s workers on it: the app in a test process runs on the loop
    it runs on in production, and a mocked call's turn of the loop costs less."""
    try:
        import uvloop
    except ImportError:  # Windows
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class LoopThread:
    """Runs coroutines on its own loop, for callers on any other thread."""

    def __init__(self, name: str = "imagejobs") -> None:
        self.loop = new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """``coroutine``'s result (or exception), run as a task on the loop; the caller
        waits. The handoff is one lock the task itself releases as it ends, not
        ``run_coroutine_threadsafe``'s pair of chained futures and condition, nor a
        done-callback (which the loop runs one turn after the task ends: a second
        ``epoll`` round before the caller can wake): a mocked SDK call makes one, so its
        bookkeeping is a share of every call."""
        done = threading.Lock()
        done.acquire()
        outcome: list[Any] = []  # [True, result] or [False, exception]

        async def finishing() -> None:
            try:
                outcome[:] = (True, await coroutine)
            except BaseException as exc:  # the caller's to handle, as from the coroutine
                outcome[:] = (False, exc)
            finally:
                done.release()

        self.loop.call_soon_threadsafe(self.loop.create_task, finishing())
        if not done.acquire(timeout=-1 if timeout is None else timeout):
            raise TimeoutError(f"the coroutine did not end within {timeout} s")
        succeeded, value = outcome
        if not succeeded:
            raise value
        return cast(T, value)

    def close(self, collect: bool = False) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()
        if collect:
            # Granian's embedded server holds native threads until its objects are
            # collected; collecting now lets them end before the interpreter does.
            gc.collect()


async def asgi_request(
    app: ASGIApp,
    method: str,
    path: str,
    *,
    raw_path: bytes | None = None,
    query: bytes = b"",
    headers: Headers | None = None,
    body: bytes = b"",
    scheme: str = "http",
    server: tuple[str, int] = ("imagejobs.test", 80),
) -> tuple[int, Headers, bytes]:
    """One HTTP request to ``app`` without a socket: (status, headers, body). ``path`` is
    decoded; ``raw_path`` as sent (default: ``path``)."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": scheme,
        "path": path,
        "raw_path": path.encode() if raw_path is None else raw_path,
        "query_string": query,
        "root_path": "",
        "headers": headers or [],
        "client": ("127.0.0.1", 0),
        "server": server,
    }
    sent = False
    status = 500
    response_headers: Headers = []
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status, response_headers
        if message["type"] == "http.response.start":
            status = message["status"]
            response_headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, response_headers, b"".join(chunks)
