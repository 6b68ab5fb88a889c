"""An open-loop HTTP/1.1 load generator: requests start on a fixed schedule whatever the
answers, so the offered rate is set by the clock, not by how fast the server answers.

One process; `load.py` runs a few, each with its share of the rate. Request ``i`` is due
at ``start + i / rate``; it goes out on an idle keep-alive connection, on a new one when
none is idle (up to ``--max-connections``), or waits in a backlog until one frees up.
Latency is measured from the time the request was due, not from when it was sent, so a
server (or generator) falling behind is charged for the wait (no coordinated omission).
One request in ``--create-every`` is a CreateImageServer, the rest ListImageJobs.

    python bench/open_loop.py --port P --token T --rate 1000 --duration 60 [--index 0]

Prints one JSON object on stdout: counts by operation, status and error code, latencies (ms) of the
admitted (200) answers, and how late requests went out.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import re
import sys
import time
from typing import Any

PROJECT = "a4da8115c9d8464ead3a38309130523f"
LIST_PATH = f"/v1/{PROJECT}/image-server-jobs?job_type=CREATE_SERVER&status=SUCCESS&limit=10"
CREATE_PATH = f"/v1/{PROJECT}/image-servers"
CREATE_BODY = (
    '{"name": "load-%d-%d", "root_volume": {"type": "SAS", "size": 80},'
    ' "image_ref": {"id": "da02e5ca-c6ec-4685-8ecb-f116bb5bdd2c", "image_type": "public"},'
    ' "vpc_id": "59785ba5-e5d5-4836-b9de-19f22ac15175",'
    ' "subnet_id": "a5842cb4-5718-4b0a-8b27-3a3e9c74f977",'
    ' "product_id": "workspace.x86.performance.xlarge4",'
    ' "authorize_accounts": [{"account": "administrator", "account_type": "USER"}]}'
)
_ERROR_CODE = re.compile(rb'"error_code":\s*"([^"]*)"')
DRAIN_S = 10.0  # how long answers to the last requests are awaited


class Generator:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.host = args.host
        self.port = args.port
        self.idle: list[Connection] = []
        self.open = 0
        self.backlog: collections.deque[tuple[str, bytes, float]] = collections.deque()
        self.outstanding = 0
        self.statuses: collections.Counter[str] = collections.Counter()
        self.admitted_ms: dict[str, list[float]] = {"list": [], "create": []}
        self.shed_ms_max = 0.0
        self.late = 0  # requests sent more than 10 ms after they were due
        self.max_backlog = 0
        self.socket_errors = 0
        head = f"Host: {self.host}:{self.port}\r\nX-Auth-Token: {args.token}\r\n"
        self._list = f"GET {LIST_PATH} HTTP/1.1\r\n{head}\r\n".encode()
        self._create_head = f"POST {CREATE_PATH} HTTP/1.1\r\n{head}"

    def request(self, i: int) -> tuple[str, bytes]:
        if self.args.create_every and i % self.args.create_every == 0:
            body = (CREATE_BODY % (self.args.index, i)).encode()
            head = f"{self._create_head}Content-Type: application/json\r\n"
            head += f"Content-Length: {len(body)}\r\n\r\n"
            return "create", head.encode() + body
        return "list", self._list

    def dispatch(self, kind: str, payload: bytes, due: float) -> None:
        self.outstanding += 1
        if self.idle:
            self.idle.pop().send(kind, payload, due)
        elif self.open < self.args.max_connections:
            self.open += 1
            asyncio.get_running_loop().create_task(self._connect(kind, payload, due))
        else:
            self.backlog.append((kind, payload, due))
            self.max_backlog = max(self.max_backlog, len(self.backlog))

    async def _connect(self, kind: str, payload: bytes, due: float) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await loop.create_connection(
                lambda: Connection(self), self.host, self.port
            )
        except OSError:
            self.open -= 1
            self.failed(kind)
            return
        connection.send(kind, payload, due)

    def answered(
        self, connection: Connection, kind: str, status: int, code: str, due: float
    ) -> None:
        elapsed_ms = (time.monotonic() - due) * 1000
        self.statuses[f"{kind} {status} {code}".rstrip()] += 1
        if status == 200:
            self.admitted_ms[kind].append(round(elapsed_ms, 2))
        else:
            self.shed_ms_max = max(self.shed_ms_max, elapsed_ms)
        self.outstanding -= 1
        if self.backlog:
            connection.send(*self.backlog.popleft())
        else:
            self.idle.append(connection)

    def failed(self, kind: str) -> None:
        self.statuses[f"{kind} socket-error"] += 1
        self.socket_errors += 1
        self.outstanding -= 1

    def lost(self, connection: Connection) -> None:
        self.open -= 1
        if connection in self.idle:
            self.idle.remove(connection)

    async def run(self) -> dict[str, Any]:
        rate, duration = self.args.rate, self.args.duration
        total = int(rate * duration)
        start = time.monotonic() + 0.05
        i = 0
        while i < total:
            now = time.monotonic()
            due_by_now = min(total, int((now - start) * rate) + 1)
            while i < due_by_now:
                due = start + i / rate
                if now - due > 0.010:
                    self.late += 1
                self.dispatch(*self.request(i), due)
                i += 1
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
        sent_s = time.monotonic() - start
        deadline = time.monotonic() + DRAIN_S
        while self.outstanding and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return {
            "offered": total,
            "offered_per_s": round(total / duration, 1),
            "schedule_s": round(sent_s, 3),
            "statuses": dict(self.statuses),
            "unanswered": self.outstanding,
            "socket_errors": self.socket_errors,
            "late_sends": self.late,
            "max_backlog": self.max_backlog,
            "connections": self.open,
            "shed_ms_max": round(self.shed_ms_max, 2),
            "admitted_ms": self.admitted_ms,
        }


class Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self, generator: Generator) -> None:
        self.generator = generator
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiting: tuple[str, float] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self, kind: str, payload: bytes, due: float) -> None:
        assert self.transport is not None
        self.waiting = (kind, due)
        self.transport.write(payload)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiting is None:
            return
        head = bytes(self.buffer[:end]).lower()
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line.startswith(b"content-length:"):
                length = int(line[15:])
        if len(self.buffer) < end + 4 + length:
            return
        status = int(head[9:12])
        code = _ERROR_CODE.search(self.buffer, end + 4, end + 4 + length)
        del self.buffer[: end + 4 + length]
        kind, due = self.waiting
        self.waiting = None
        if b"connection: close" in head:
            assert self.transport is not None
            self.transport.close()
            self.generator.outstanding -= 1
            self.generator.statuses[f"{kind} {status}"] += 1
            return
        self.generator.answered(self, kind, status, code[1].decode() if code else "", due)

    def connection_lost(self, exc: Exception | None) -> None:
        self.generator.lost(self)
        if self.waiting is not None:
            self.generator.failed(self.waiting[0])
            self.waiting = None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, required=True, help="seconds")
    parser.add_argument("--create-every", type=int, default=10, help="0: reads only")
    parser.add_argument("--index", type=int, default=0, help="this generator's number")
    parser.add_argument("--max-connections", type=int, default=512)
    args = parser.parse_args()
    result = asyncio.run(Generator(args).run())
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
