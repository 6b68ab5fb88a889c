"""Connections that hold on without finishing a request (idle sockets, bodies sent a byte at
a time) neither take the server off the air for others nor stay forever."""

from __future__ import annotations

import asyncio
import resource
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from imagejobs.storage.migrate import migrate
from tests.conftest import ServerProcess
from tests.factories import new_tenant
from tests.integration.http import signed_client

HELD_CONNECTIONS = 1_100  # past the 1,024 that used to take the server down
SHELL_FILE_LIMIT = 1_024  # the soft open-file limit many shells start servers with


@contextmanager
def _open_file_limit(soft: int) -> Iterator[None]:
    """Processes started inside inherit this soft open-file limit."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, before[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)


def _hold(server: ServerProcess, count: int, stack: ExitStack, first_bytes: bytes = b"") -> None:
    for _ in range(count):
        connection = stack.enter_context(socket.create_connection(("127.0.0.1", server.port)))
        if first_bytes:
            connection.sendall(first_bytes)


@pytest.fixture
def server_from_a_shell(sqlite_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    """A server with default settings, started where the soft open-file limit is 1,024."""
    with _open_file_limit(SHELL_FILE_LIMIT):
        server = ServerProcess(sqlite_url, tmp_path)
    yield server
    server.stop()


def test_others_are_served_while_1100_connections_hang(
    server_from_a_shell: ServerProcess, sqlite_url: str
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2 * HELD_CONNECTIONS + 100:  # this test holds both ends of its connections
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server = server_from_a_shell
    tenant = new_tenant(sqlite_url)
    slow_body = (
        f"PATCH /v1/{tenant.project_id}/image-servers/actions/batch-delete HTTP/1.1\r\n"
        "Host: x\r\nContent-Length: 1000\r\n\r\n{"
    ).encode()
    with ExitStack() as held:
        _hold(server, HELD_CONNECTIONS // 2, held)  # connect, then send nothing
        _hold(server, HELD_CONNECTIONS - HELD_CONNECTIONS // 2, held, slow_body)
        client = signed_client(server.base_url, tenant)
        response = client.get(
            f"/v1/{tenant.project_id}/image-server-jobs",
            params={"job_type": "CREATE_SERVER"},
            timeout=httpx.Timeout(30),
        )
        assert response.status_code == 200


@pytest.fixture(scope="module")
def impatient_database(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('impatient') / 'imagejobs.db'}"
    asyncio.run(migrate(url))
    return url


@pytest.fixture(scope="module")
def impatient_server(
    impatient_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server with short header and body timeouts."""
    server = ServerProcess(
        impatient_database,
        tmp_path_factory.mktemp("impatient-server"),
        extra_env={
            "IMAGEJOBS_HEADER_READ_TIMEOUT_SECONDS": "0.5",
            "IMAGEJOBS_BODY_READ_TIMEOUT_SECONDS": "1",
        },
    )
    yield server
    server.stop()


def _read_until_closed(connection: socket.socket, trickle: bytes = b"") -> bytes:
    """Everything the server sends until it closes the connection; ``trickle`` is sent a
    byte every 0.1 s meanwhile, as a slow client does."""
    connection.settimeout(0.1)
    answer = b""
    for _ in range(300):  # 30 s at most: far beyond any timeout set here
        if trickle:
            try:
                connection.sendall(trickle[:1])
                trickle = trickle[1:]
            except OSError:
                trickle = b""
        try:
            chunk = connection.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return answer
        if not chunk:
            return answer
        answer += chunk
    raise AssertionError(f"the server kept the connection open; it sent {answer!r}")


def test_a_body_sent_a_byte_at_a_time_is_cut_off_with_408(
    impatient_server: ServerProcess, impatient_database: str
) -> None:
    tenant = new_tenant(impatient_database)
    body = b'{"items": ["' + b"1" * 500 + b'"]}'
    head = (
        f"PATCH /v1/{tenant.project_id}/image-server-sub-jobs/actions/batch-delete HTTP/1.1\r\n"
        f"Host: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", impatient_server.port)) as connection:
        connection.sendall(head)
        answer = _read_until_closed(connection, trickle=body)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b'{"error_code":"APIGW.0201","error_msg":"Request timeout: ' in answer
    impatient_server.assert_quiet_log()


def test_idle_connections_are_closed_after_the_header_read_timeout(
    impatient_server: ServerProcess,
) -> None:
    with socket.create_connection(("127.0.0.1", impatient_server.port)) as idle:
        assert _read_until_closed(idle) == b""
    # Keep-alive: after an answer, an idle connection is closed after the same timeout.
    with socket.create_connection(("127.0.0.1", impatient_server.port)) as kept:
        kept.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = _read_until_closed(kept)
    assert answer.startswith(b"HTTP/1.1 200 ")
    impatient_server.assert_quiet_log()
