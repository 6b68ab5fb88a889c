"""An asyncio event loop on a daemon thread, and ASGI requests made to an app running on
it from ordinary (synchronous) code: the in-process service's engine room."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import selectors
import sys
import threading
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, TypeVarTuple, cast

from starlette.types import ASGIApp, Message

T = TypeVar("T")
_Ts = TypeVarTuple("_Ts")
Headers = list[tuple[bytes, bytes]]


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop where it is installed (a dependency, except on Windows), as Granian
    runs ``imagejobs serve``'s workers on it."""
    try:
        import uvloop
    except ImportError:  # Windows
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class _GatedPoller:
    """A selector's poller (``epoll``, ``poll``) with which the loop's own thread releases
    the loop's gate while it waits for I/O, and takes it back before anything sees the
    events. Another thread holding the gate polls with it held."""

    __slots__ = ("_gate", "_poller", "owner")

    def __init__(self, poller: Any, gate: threading.Lock) -> None:
        self._poller = poller
        self._gate = gate
        self.owner: int | None = None  # the loop's thread, once it runs

    def poll(self, *args: Any) -> Any:
        if threading.get_ident() != self.owner:
            return self._poller.poll(*args)
        self._gate.release()
        try:
            return self._poller.poll(*args)
        finally:
            self._gate.acquire()

    def __getattr__(self, name: str) -> Any:  # register, modify, unregister, close, fileno
        return getattr(self._poller, name)


class _SharedLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose thread holds ``gate`` except while it waits for I/O, so
    another thread that takes the gate may run the loop's callbacks itself (as if it were
    the loop's thread) while the loop's thread sleeps; and which notes the timers that
    thread schedules, so it can wake the loop when one is due sooner than it will wake."""

    def __init__(self, selector: selectors.BaseSelector, gate: threading.Lock) -> None:
        self.poller = _GatedPoller(selector._selector, gate)  # type: ignore[attr-defined]
        selector._selector = self.poller  # type: ignore[attr-defined]
        super().__init__(selector)
        self.timers_noted: list[asyncio.TimerHandle] | None = None

    def call_at(
        self,
        when: float,
        callback: Callable[[*_Ts], object],
        *args: *_Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        timer = super().call_at(when, callback, *args, context=context)
        if self.timers_noted is not None:
            self.timers_noted.append(timer)
        return timer


def _gated_loop(gate: threading.Lock) -> _SharedLoop | None:
    """A ``_SharedLoop`` where the platform's selector polls (Linux: ``epoll``); None
    elsewhere (kqueue, Windows), where calls hop to the loop's thread."""
    selector = selectors.DefaultSelector()
    if not hasattr(getattr(selector, "_selector", None), "poll"):
        selector.close()
        return None
    return _SharedLoop(selector, gate)


# Callbacks a caller's thread runs at most before it polls for I/O as the loop would.
_MOST_HANDLES_HERE = 1000


def _nothing() -> None:
    return None


class LoopThread:
    """Runs coroutines on its own loop, for callers on any other thread.

    A mocked SDK call is short and, on SQLite, never waits for I/O, so a hop to the
    loop's thread and back (two wake-ups, each with its cache refill) was most of what it
    cost beyond the SDK itself. The loop's thread therefore holds a gate (a lock) whenever
    it is not waiting for I/O, and a caller's thread takes the gate and runs the loop
    itself for the length of its call: the call's task and whatever else the loop has to
    do meanwhile, and, should the task wait (for I/O, a timer, a thread), the loop's
    polling too, until the task ends. The loop's own thread is asleep meanwhile (in
    ``epoll``, or on the gate): nothing of the loop's is used by two threads at once, and
    every step of the call's task runs on the caller's thread (libraries that tie a
    coroutine to a thread, such as SQLAlchemy's greenlets, need that). Calls from several
    threads take turns: a call that waits holds the loop until it ends (the engine and
    any other task still run, on its thread), so a coroutine given to ``run`` must not
    wait for one another thread gives to ``run``. Where the platform's selector cannot
    be shared this way (kqueue, Windows), or in asyncio's debug mode (which checks the
    thread that schedules), the loop is uvloop's where installed and every call hops to
    its thread.
    """

    def __init__(self, name: str = "imagejobs") -> None:
        self._gate = threading.Lock()
        shared = _gated_loop(self._gate)
        self._shared = shared
        self.loop: asyncio.AbstractEventLoop = shared or new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        with self._gate:
            if self._shared is not None:
                self._shared.poller.owner = threading.get_ident()
            self.loop.run_forever()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """``coroutine``'s result (or exception), run as a task of the loop; the caller
        waits. Where the loop is shared (see the class), the caller's thread runs it; else
        the task runs on the loop's thread and the caller waits on one lock the task
        itself releases as it ends (not ``run_coroutine_threadsafe``'s chained futures,
        nor a done-callback one loop turn later)."""
        if asyncio.events._get_running_loop() is self.loop:
            coroutine.close()
            raise RuntimeError("a coroutine of the loop cannot wait for the loop")
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

        shared = self._shared
        if shared is None or shared.get_debug():  # debug mode checks which thread schedules
            self.loop.call_soon_threadsafe(self.loop.create_task, finishing())
            done.acquire(timeout=-1 if timeout is None else timeout)
        else:
            self._run_here(shared, finishing(), outcome, timeout)
        if not outcome:
            raise TimeoutError(f"the coroutine did not end within {timeout} s")
        succeeded, value = outcome
        if not succeeded:
            raise value
        return cast(T, value)

    def _run_here(
        self,
        loop: _SharedLoop,
        finishing: Coroutine[Any, Any, None],
        outcome: list[Any],
        timeout: float | None,
    ) -> None:
        """Take the gate and run ``loop`` on this thread until ``finishing``, a task of its
        own, has ended (or ``timeout`` seconds have passed: the task then stays with the
        loop's thread); then wake the loop's thread if there is work for it sooner than
        it would wake by itself."""
        with self._gate:
            if loop.is_closed():
                finishing.close()
                raise RuntimeError("the loop is closed")
            ready: deque[asyncio.Handle] = loop._ready  # type: ignore[attr-defined]
            scheduled: list[asyncio.TimerHandle] = loop._scheduled  # type: ignore[attr-defined]
            wakes_at = scheduled[0].when() if scheduled else None
            previous_loop = asyncio.events._get_running_loop()
            hooks = sys.get_asyncgen_hooks()
            asyncio.events._set_running_loop(loop)
            sys.set_asyncgen_hooks(
                firstiter=loop._asyncgen_firstiter_hook,  # type: ignore[attr-defined]
                finalizer=loop._asyncgen_finalizer_hook,  # type: ignore[attr-defined]
            )
            noted: list[asyncio.TimerHandle] = []
            loop.timers_noted = noted
            try:
                # A task of its own, in a context of its own, as on the loop's thread.
                loop.create_task(finishing, context=contextvars.Context())
                # The usual call waits for nothing: what is ready runs, with no poll.
                for _ in range(_MOST_HANDLES_HERE):
                    if outcome or not ready:
                        break
                    handle = ready.popleft()
                    if not handle.cancelled():
                        handle._run()
                if not outcome:  # it waits: the loop's whole turns, polling included
                    self._turn_until(loop, outcome, timeout)
            finally:
                loop.timers_noted = None
                sys.set_asyncgen_hooks(*hooks)
                asyncio.events._set_running_loop(previous_loop)
            wake = bool(ready) or any(
                not timer.cancelled() and (wakes_at is None or timer.when() < wakes_at)
                for timer in noted
            )
        if wake:
            loop._write_to_self()  # type: ignore[attr-defined]

    @staticmethod
    def _turn_until(loop: _SharedLoop, outcome: list[Any], timeout: float | None) -> None:
        alarm = None if timeout is None else loop.call_later(timeout, _nothing)
        try:
            while not outcome:
                if alarm is not None and loop.time() >= alarm.when():
                    return  # the caller raises TimeoutError
                loop._run_once()  # type: ignore[attr-defined]
        finally:
            if alarm is not None:
                alarm.cancel()

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
