"""``mock_workspaceapp``: the official SDK talks to an imagejobs inside this process, with
no socket and no subprocess, as moto's ``mock_aws`` does for botocore.

The SDK sends every request through the ``requests.Session`` of its ``HttpClient``. While
a mock is active, that session (of any client, made before or inside the mock) gets a
transport adapter that hands the prepared request to the in-process ASGI app: the
request is signed by the SDK and verified by imagejobs exactly as over the network.
"""

from __future__ import annotations

import functools
import io
import threading
from collections.abc import Callable
from concurrent.futures import Future
from datetime import timedelta
from http import HTTPStatus
from types import TracebackType
from typing import Any, TypeVar, cast
from urllib.parse import SplitResult, unquote, urlsplit

from requests import PreparedRequest, Response
from requests.adapters import BaseAdapter
from requests.cookies import RequestsCookieJar, cookiejar_from_dict
from requests.structures import CaseInsensitiveDict
from requests.utils import requote_uri

from imagejobs.testing.cloud import Cloud, cloud_settings
from imagejobs.testing.loop_thread import Headers, asgi_request

F = TypeVar("F", bound=Callable[..., Any])
# The endpoint mocked clients are given: the real one of cn-north-4 (every endpoint
# routes to the mock anyway, so production code building its own client works too).
MOCK_ENDPOINT = "https://workspaceapp.cn-north-4.myhuaweicloud.com"


class InProcessAdapter(BaseAdapter):
    """A ``requests`` transport that answers from an ASGI app on the cloud's loop."""

    def __init__(self, cloud: Cloud) -> None:
        super().__init__()
        self.cloud = cloud

    def send(  # type: ignore[override]
        self, request: PreparedRequest, stream: bool = False, timeout: Any = None, **_: Any
    ) -> Response:
        url = urlsplit(request.url or "")
        headers = [(k.lower().encode("latin-1"), _latin1(v)) for k, v in request.headers.items()]
        if "host" not in request.headers:
            headers.append((b"host", url.netloc.encode()))
        body = request.body or b""
        return self.answer(
            request,
            url,
            headers,
            body.encode() if isinstance(body, str) else bytes(body),  # type: ignore[arg-type]
        )

    def answer(
        self, request: PreparedRequest, url: SplitResult, headers: Headers, body: bytes
    ) -> Response:
        """``request`` (``url``, ``headers`` and ``body`` as sent) answered by the app."""
        status, answer_headers, content = self.cloud.run(
            asgi_request(
                self.cloud.app,
                request.method or "GET",
                unquote(url.path) or "/",
                raw_path=(url.path or "/").encode(),
                query=url.query.encode(),
                headers=headers,
                body=body,
                scheme=url.scheme or "https",
                server=_server(url),
            )
        )
        response = _Answer(
            _case_insensitive(
                {
                    (name := k.decode("latin-1")): (name, v.decode("latin-1"))
                    for k, v in answer_headers
                }
            )
        )
        response.status_code = status
        response.reason = _REASONS.get(status, "")
        response._content = content
        response.raw = io.BytesIO(content)
        response.url = request.url or ""
        response.request = request
        response.encoding = "utf-8"
        return response

    def close(self) -> None:
        return None


_REASONS = {status.value: status.phrase for status in HTTPStatus}
_NO_ELAPSED = timedelta(0)


class _Answer(Response):
    """A ``requests`` response whose cookie jar is made when first asked for: no
    ``Session`` extracts cookies from an in-process answer, and the empty jar
    ``Response()`` makes (a lock and a policy object) was a tenth of the transport's own
    work per call."""

    def __init__(self, headers: CaseInsensitiveDict[str]) -> None:  # Response's, but the jar
        self._content = False
        self._content_consumed = False
        self._next = None
        self.status_code = 0
        self.headers = headers
        self.raw = None
        self.url = ""
        self.encoding = None
        self.history = []
        self.reason = ""
        self._cookies: RequestsCookieJar | None = None
        self.elapsed = _NO_ELAPSED
        self.request = None  # type: ignore[assignment]  # set by the adapter

    @property
    def cookies(self) -> RequestsCookieJar:
        if self._cookies is None:
            self._cookies = cookiejar_from_dict({})
        return self._cookies

    @cookies.setter
    def cookies(self, jar: RequestsCookieJar) -> None:
        self._cookies = jar


def _case_insensitive(store: dict[str, tuple[str, Any]]) -> CaseInsensitiveDict[Any]:
    """A ``CaseInsensitiveDict`` of ``store``, which is already its inner form (lower-case
    name: (name, value)): filling one item by item lower-cases every name again, ~4 µs
    for a request's or an answer's headers, twice per call."""
    headers: CaseInsensitiveDict[Any] = CaseInsensitiveDict()
    headers._store = store  # type: ignore[assignment]  # its inner form, as said
    return headers


# requests requotes every URL it sends; a test polling one URL asks for the same answer.
_requoted = functools.lru_cache(maxsize=1024)(requote_uri)


@functools.lru_cache(maxsize=64)
def _server(url: SplitResult) -> tuple[str, int]:
    """The ASGI ``server`` of ``url``: its host and port (``SplitResult`` parses both
    again on every access, and a test talks to one or two endpoints)."""
    return (url.hostname or "localhost", url.port or 443)


def _latin1(value: str | bytes) -> bytes:
    return value.encode("latin-1") if isinstance(value, str) else value


class _Patch:
    """Routes every SDK session to the innermost active mock while any is active, and
    gives each session its own transports back when the last mock ends."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active: list[InProcessAdapter] = []
        self._originals: dict[str, Any] = {}
        self._sessions: list[tuple[Any, dict[str, Any], bool]] = []

    def push(self, adapter: InProcessAdapter) -> None:
        from huaweicloudsdkcore.auth.credentials import Credentials
        from huaweicloudsdkcore.http.http_client import HttpClient

        with self.lock:
            if not self.active:
                for name in ("do_request_sync", "do_request_async"):
                    original = getattr(HttpClient, name)
                    self._originals[name] = original
                    setattr(HttpClient, name, self._routed(original, name == "do_request_sync"))
                self._originals["process_auth_request"] = Credentials.process_auth_request
                Credentials.process_auth_request = _signed_here
            self.active.append(adapter)

    def pop(self, adapter: InProcessAdapter) -> None:
        from huaweicloudsdkcore.auth.credentials import Credentials
        from huaweicloudsdkcore.http.http_client import HttpClient

        with self.lock:
            self.active.remove(adapter)
            if self.active:
                return
            for name, original in self._originals.items():
                owner = Credentials if name == "process_auth_request" else HttpClient
                setattr(owner, name, original)
            self._originals.clear()
            for session, adapters, trust_env in self._sessions:
                session.adapters.clear()
                session.adapters.update(adapters)
                session.trust_env = trust_env
            self._sessions.clear()

    def _routed(self, original: Callable[..., Any], sync: bool) -> Callable[..., Any]:
        patch = self

        @functools.wraps(original)
        def routed(client: Any, *args: Any, **kwargs: Any) -> Any:
            session = client._session
            adapter = patch.active[-1]
            if session.adapters.get("https://") is not adapter:
                with patch.lock:
                    if not any(known is session for known, _, _ in patch._sessions):
                        saved = (session, dict(session.adapters), session.trust_env)
                        patch._sessions.append(saved)
                session.mount("https://", adapter)
                session.mount("http://", adapter)
                # No proxies to look up in the environment: nothing leaves the process.
                session.trust_env = False
            if sync:
                return _send_sync(client, adapter, *args, **kwargs)
            return original(client, *args, **kwargs)

        return routed


def _signed_here(credentials: Any, request: Any, http_client: Any) -> Future[Any]:
    """``Credentials.process_auth_request`` with the signature computed on the calling
    thread: the SDK's own ``sign_request``, the same signature, handed back as the
    finished future the SDK waits on at once. The SDK submits it to its thread pool, a
    round trip between threads (two wake-ups) per call that a request which never leaves
    the process need not make."""
    credentials.process_sts(http_client)
    try:
        return _Finished(credentials.sign_request(request), None)
    except Exception as exc:  # raised by ``result()``, where the SDK's caller waits
        return _Finished(None, exc)


_FINISHED_CONDITION = threading.Condition()


class _Finished(Future[Any]):
    """A future finished as it is made: ``Future()`` makes a condition (and its lock) of
    its own that a finished future never waits on, a tenth of the transport's own work
    per call. Every finished future shares one (``result()`` holds it for an instant)."""

    def __init__(self, result: Any, exception: BaseException | None) -> None:  # no super()
        self._condition = _FINISHED_CONDITION
        self._state = "FINISHED"
        self._result = result
        self._exception = exception
        self._waiters: list[Any] = []
        self._done_callbacks: list[Any] = []


def _send_sync(client: Any, adapter: InProcessAdapter, request: Any) -> Response:
    """``HttpClient.do_request_sync`` without ``Session.request``. The session's merging
    of proxies, environment, cookies and hooks, which a mocked session has none of, cost
    twice the SDK's own work per call; preparing the request with ``requests`` as well.
    The usual request, a text body (JSON) or none, is prepared here as ``requests``
    would send it: the URL requoted, the session's headers under the SDK's, the body's
    length; any other body (a form, a stream) goes through ``PreparedRequest``."""
    if client._http_handler is not None:
        client._http_handler.process_request(request=request, logger=client._logger)
    session = client._session
    body = request.body
    if isinstance(body, str | bytes | None) and not session.cookies:
        response = _send_text(adapter, session, request, body)
    else:
        prepared = PreparedRequest()
        prepared.prepare(
            method=request.method.upper(),
            url=request.url,
            headers={**session.headers, **request.header_params},
            data=body,
        )
        response = adapter.send(prepared)
    client.response_error_hook_factory()(response)
    return response


def _send_text(
    adapter: InProcessAdapter, session: Any, request: Any, body: str | bytes | None
) -> Response:
    method = request.method.upper()
    merged: dict[str, tuple[str, Any]] = {}  # by lower-case name: the SDK's over the session's
    for given in (session.headers, request.header_params):
        for name, value in given.items():
            merged[name.lower()] = (name, value)
    encoded = body.encode() if isinstance(body, str) else body
    if encoded:
        merged["content-length"] = ("Content-Length", str(len(encoded)))
    elif method not in ("GET", "HEAD") and "content-length" not in merged:
        merged["content-length"] = ("Content-Length", "0")
    merged.setdefault("host", ("Host", request.host))
    sent: dict[str, tuple[str, Any]] = {}
    headers: Headers = []
    for lower, (name, value) in merged.items():
        if value is not None:
            sent[lower] = (name, value)
            encoded_value = value.encode("latin-1") if isinstance(value, str) else value
            headers.append((lower.encode("latin-1"), encoded_value))
    url = f"{request.schema}://{request.host}{_requoted(request.uri)}"
    prepared = PreparedRequest()  # what the SDK's error handling reads: not prepared again
    prepared.method, prepared.url, prepared.body = method, url, body
    prepared.headers = _case_insensitive(sent)
    return adapter.answer(prepared, urlsplit(url), headers, encoded or b"")


def active_cloud() -> Cloud:
    """The innermost active mock's ``Cloud`` (in a test decorated with the mock)."""
    if not _patch.active:
        raise RuntimeError("no mock_workspaceapp is active")
    return _patch.active[-1].cloud


_patch = _Patch()


class mock_workspaceapp:  # named as moto's mock_aws: a decorator first
    """Decorator or context manager: inside, the official SDK talks to a fresh in-process
    imagejobs (test profile, its own SQLite database). As a context manager it yields the
    ``Cloud`` (``tenant()``, ``client()``, ``steer()``, ``reset()``)."""

    def __init__(self, **settings: Any) -> None:
        self._settings = settings
        self._cloud: Cloud | None = None
        self._adapter: InProcessAdapter | None = None

    def __enter__(self) -> Cloud:
        cloud = Cloud(cloud_settings(self._settings), MOCK_ENDPOINT)
        try:
            cloud.start()
        except BaseException:
            cloud.close()
            raise
        self._cloud, self._adapter = cloud, InProcessAdapter(cloud)
        _patch.push(self._adapter)
        return cloud

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._cloud is not None
        assert self._adapter is not None
        _patch.pop(self._adapter)
        self._cloud.close()
        self._cloud = self._adapter = None

    def __call__(self, function: F) -> F:
        settings = self._settings

        @functools.wraps(function)
        def mocked(*args: Any, **kwargs: Any) -> Any:
            with mock_workspaceapp(**settings):
                return function(*args, **kwargs)

        return cast(F, mocked)
