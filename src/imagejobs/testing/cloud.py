"""``Cloud``: an imagejobs service running inside the test process (a background event
loop with the whole app, runner included), driven through its operator API.

``serve()`` puts an HTTP listener in front of it; ``mock_workspaceapp`` routes the official
SDK's requests to it without a socket. Both hand out the same ``Cloud``.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import hashlib
import json
import os
import secrets
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette

from imagejobs import storage as storage_package
from imagejobs.api.edge import Edge
from imagejobs.bootstrap import build_app, load_init_dir, prepare_identity
from imagejobs.domain.steering import MAX_READS, MAX_SECONDS, MAX_SUB_JOB_INDEX
from imagejobs.settings import Settings, load_settings
from imagejobs.testing.loop_thread import LoopThread, asgi_request

if TYPE_CHECKING:
    from huaweicloudsdkworkspaceapp.v1 import WorkspaceAppClient

OPERATOR_HEADER = "X-Imagejobs-Operator-Token"
MIGRATIONS = Path(storage_package.__file__).parent / "migrations"
JOB_TYPES = ("CREATE_SERVER", "DELETE_SERVER", "CREATE_SERVER_IMAGE")
_template_lock = threading.Lock()
_templates: dict[str, Path] = {}


class OperatorError(Exception):
    """The operator API refused a call: ``status``, ``error_code`` and ``error_msg``."""

    def __init__(self, status: int, error_code: str, error_msg: str) -> None:
        super().__init__(f"{status} {error_code}: {error_msg}")
        self.status = status
        self.error_code = error_code
        self.error_msg = error_msg


@dataclass(frozen=True)
class Tenant:
    """A fresh account: its root user's password and AK/SK, and its one project."""

    account: str
    user: str
    password: str
    domain_id: str
    project_id: str
    region: str
    access_key: str
    secret_key: str


ProjectRef = Tenant | str


def _project_id(project: ProjectRef) -> str:
    return project.project_id if isinstance(project, Tenant) else project


class Cloud:
    """A running imagejobs: make tenants and SDK clients, steer jobs, reset state."""

    def __init__(self, settings: Settings, endpoint: str) -> None:
        self.settings = settings
        self.endpoint = endpoint
        self._loop = LoopThread()
        self._app: Edge | None = None
        self._lifespan: AbstractAsyncContextManager[Any] | None = None

    # --- life -----------------------------------------------------------------------------

    def start(self) -> None:
        self._loop.run(self._start())

    async def _start(self) -> None:
        await _prepare_database(self.settings)
        await load_init_dir(self.settings)
        app = build_app(self.settings)
        inner = app.app  # the Starlette app inside the edge runs the lifespan
        assert isinstance(inner, Starlette)
        lifespan = inner.router.lifespan_context(inner)
        await lifespan.__aenter__()
        self._app, self._lifespan = app, lifespan

    @property
    def app(self) -> Edge:
        """The ASGI application (started)."""
        assert self._app is not None, "the cloud is not started"
        return self._app

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop.loop

    def run(self, coroutine: Any, timeout: float | None = None) -> Any:
        """Run a coroutine on the service's event loop (for servers and transports)."""
        return self._loop.run(coroutine, timeout)

    def close(self, collect: bool = False) -> None:
        """Stop the runner (no grace for simulated work) and the loop; delete temp files.
        ``collect``: collect garbage once stopped (after an embedded HTTP server)."""
        try:
            if self._lifespan is not None:
                self._loop.run(self._lifespan.__aexit__(None, None, None))
                self._lifespan = None
        finally:
            self._loop.close(collect)
            if self.settings.data_dir.name.startswith("imagejobs-test-"):
                shutil.rmtree(self.settings.data_dir, ignore_errors=True)

    # --- the operator API -------------------------------------------------------------------

    def operator(self, method: str, path: str, body: Any = None, query: str = "") -> Any:
        """Call ``/_imagejobs/...`` as the operator; the decoded JSON answer."""
        headers = [(OPERATOR_HEADER.lower().encode(), self.settings.operator_token.encode())]
        raw = b""
        if body is not None:
            raw = json.dumps(body).encode()
            headers.append((b"content-type", b"application/json"))
        status, _, answer = self._loop.run(
            asgi_request(self.app, method, path, query=query.encode(), headers=headers, body=raw)
        )
        decoded = json.loads(answer) if answer else None
        if status >= 400:
            error = decoded if isinstance(decoded, dict) else {}
            raise OperatorError(status, error.get("error_code", ""), error.get("error_msg", ""))
        return decoded

    def tenant(
        self,
        *,
        region: str = "cn-north-4",
        account: str | None = None,
        project_id: str | None = None,
        password: str | None = None,
    ) -> Tenant:
        """A new account with one project (named ``region``) and an access key."""
        body = {"region": region, "account": account, "project_id": project_id}
        body["password"] = password
        created = self.operator(
            "POST", "/_imagejobs/tenants", {k: v for k, v in body.items() if v is not None}
        )
        return Tenant(**{f.name: created[f.name] for f in fields(Tenant)})

    def client(self, tenant: Tenant | None = None) -> WorkspaceAppClient:
        """An official SDK client for ``tenant`` (a new one if None), on this endpoint."""
        from huaweicloudsdkcore.auth.credentials import BasicCredentials
        from huaweicloudsdkworkspaceapp.v1 import WorkspaceAppClient

        tenant = tenant or self.tenant()
        credentials = BasicCredentials(tenant.access_key, tenant.secret_key, tenant.project_id)
        builder = WorkspaceAppClient.new_builder().with_credentials(credentials)
        client: WorkspaceAppClient = builder.with_endpoints([self.endpoint]).build()
        return client

    def steer(
        self,
        project: ProjectRef,
        job_type: str | None = None,
        *,
        completion: str | None = None,
        reads: int | None = None,
        duration: float | None = None,
        queue: float | None = None,
        fail_at: int | None = None,
        code: str | None = None,
        message: str | None = None,
        probability: float = 1.0,
    ) -> None:
        """Set how the project's jobs (of ``job_type``, or every type) behave.

        ``completion``: ``immediate``, ``duration`` (after ``duration`` seconds RUNNING) or
        ``reads`` (the ``reads``-th ShowImageJob or ListImageJobs that sees the job is the
        first to see it ended). ``fail_at=N`` makes the N-th sub-job of each job fail (1:
        the first) with ``code`` and ``message``; ``code`` alone fails every sub-job.
        A value out of range raises ``ValueError`` naming the parameter and what it allows.
        """
        check_steering(
            job_type=job_type,
            completion=completion,
            reads=reads,
            duration=duration,
            queue=queue,
            fail_at=fail_at,
            code=code,
            message=message,
            probability=probability,
        )
        rule: dict[str, Any] = {
            "completion": completion,
            "reads": reads,
            "duration_seconds": duration,
            "queue_seconds": queue,
        }
        if completion is None and reads is not None:
            rule["completion"] = "reads"
        if fail_at is not None or code is not None or message is not None:
            fault: dict[str, Any] = {"effect": "fail", "probability": probability}
            if fail_at is not None:
                fault["sub_job_index"] = fail_at - 1
            fault.update(error_code=code, error_message=message)
            rule["faults"] = [{k: v for k, v in fault.items() if v is not None}]
        body = {k: v for k, v in rule.items() if v is not None}
        scope = f"{_project_id(project)}/{job_type or '*'}"
        self.operator("PUT", f"/_imagejobs/engine/rules/{scope}", body)

    def dump(self, project: ProjectRef) -> dict[str, Any]:
        """The project's servers, jobs and sub-jobs (``POST /_imagejobs/state``'s input)."""
        state: dict[str, Any] = self.operator(
            "GET", "/_imagejobs/state", query=f"project_id={_project_id(project)}"
        )
        return state

    def load(self, state: Mapping[str, Any] | str | Path) -> None:
        """Replace a project's servers, jobs and sub-jobs with ``state`` (a dump, or the
        path of a JSON file holding one); unfinished jobs then run as steered."""
        document = json.loads(Path(state).read_text()) if isinstance(state, str | Path) else state
        self.operator("POST", "/_imagejobs/state", dict(document))

    def reset(self, project: ProjectRef | None = None) -> None:
        """Delete a project's jobs, servers, steering and lockouts (None: every project's).
        Accounts and their keys stay valid."""
        body = {} if project is None else {"project_id": _project_id(project)}
        self.operator("POST", "/_imagejobs/reset", body)


STEERING_PARAMETERS = (
    "job_type",
    "completion",
    "reads",
    "duration",
    "queue",
    "fail_at",
    "code",
    "message",
    "probability",
)
_JOB_TYPES = ("CREATE_SERVER", "CREATE_SERVER_IMAGE", "DELETE_SERVER")
_COMPLETIONS = ("immediate", "duration", "reads")


def check_steering(**values: Any) -> None:
    """``ValueError`` naming the first steering parameter whose value the engine would
    refuse, with the values it allows (the operator API's message names its own fields,
    ``faults[0].sub_job_index`` for ``fail_at``, which a test never wrote)."""
    unknown = sorted(set(values) - set(STEERING_PARAMETERS))
    if unknown:
        raise ValueError(
            f"unknown steering parameter {', '.join(unknown)}: "
            f"allowed are {', '.join(STEERING_PARAMETERS)}"
        )

    def choice(name: str, allowed: tuple[str, ...]) -> None:
        value = values.get(name)
        if value is not None and value not in allowed:
            listed = ", ".join(repr(a) for a in allowed)
            raise ValueError(f"{name} must be one of {listed} (or None), not {value!r}")

    def number(name: str, low: float, high: float, integer: bool = False) -> None:
        value = values.get(name)
        if value is None:
            return
        kind = "an integer" if integer else "a number"
        numeric = isinstance(value, int) if integer else isinstance(value, int | float)
        if isinstance(value, bool) or not numeric or not low <= value <= high:
            raise ValueError(f"{name} must be {kind} from {low:g} to {high:g}, not {value!r}")

    def text(name: str, longest: int) -> None:
        value = values.get(name)
        if value is not None and not (isinstance(value, str) and 1 <= len(value) <= longest):
            raise ValueError(f"{name} must be a string of 1 to {longest} characters, not {value!r}")

    choice("job_type", (*_JOB_TYPES, "*"))
    choice("completion", _COMPLETIONS)
    number("reads", 1, MAX_READS, integer=True)
    number("duration", 0, MAX_SECONDS)
    number("queue", 0, MAX_SECONDS)
    number("fail_at", 1, MAX_SUB_JOB_INDEX + 1, integer=True)  # 1: the first sub-job
    number("probability", 0, 1)
    text("code", 16)
    text("message", 255)


def cloud_settings(overrides: Mapping[str, Any]) -> Settings:
    """The test profile in a new temporary directory, with its own keys, then overrides.

    In the temporary directory (deleted when the cloud stops), SQLite writes without fsync
    (``synchronous=OFF``: a commit still survives the test process crashing, not the
    machine): the disk's flushes stay out of every checkpoint a test's writes trigger (the
    5 MB a 10,000-job reset writes, one). A ``data_dir`` of the caller's keeps NORMAL."""
    values: dict[str, Any] = {
        "serve_profile": "test",
        "log_level": "warning",
        # A test suite's output is its own: no access line per request (access_log=True
        # to see them), as warnings and errors still are.
        "access_log": False,
        "encryption_key": base64.b64encode(secrets.token_bytes(32)).decode(),
        "operator_token": secrets.token_urlsafe(24),
        **overrides,
    }
    if "data_dir" not in values:
        values["data_dir"] = Path(tempfile.mkdtemp(prefix="imagejobs-test-"))
        values.setdefault("sqlite_synchronous", "OFF")
    # Not the process environment: a test suite's cloud is the same on every machine.
    return load_settings({}, **values)


async def _prepare_database(settings: Settings) -> None:
    """A migrated database with the system policies. A new SQLite file is a copy of one
    prepared once per process, itself a copy of the migrated schema cached on disk: most
    test sessions neither import Alembic nor run a migration."""
    url = settings.database_url
    if not url.startswith("sqlite:///"):
        from imagejobs.storage.migrate import migrate

        await migrate(url)
        await prepare_identity(settings)
        return
    with _template_lock:  # one preparation per process, whichever cloud asks first
        template = _templates.get("sqlite")
        if template is None or not template.exists():
            directory = Path(tempfile.mkdtemp(prefix="imagejobs-template-"))
            atexit.register(shutil.rmtree, directory, ignore_errors=True)
            template = directory / "template.db"
            _copy_sqlite(await _migrated_schema(), template)
            prepared = Settings(
                data_dir=directory,
                database_url=f"sqlite:///{template}",
                encryption_key=settings.encryption_key,
                bootstrap_demo_account=False,
            )
            await prepare_identity(prepared)
            _templates["sqlite"] = template
    _copy_sqlite(template, Path(url.removeprefix("sqlite:///")))


async def _migrated_schema() -> Path:
    """An empty SQLite database at the newest schema, cached per set of migrations (in
    ~/.cache/imagejobs, else the temporary directory)."""
    digest = hashlib.sha256()
    for path in sorted(MIGRATIONS.rglob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    user_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    for directory in (user_cache / "imagejobs", Path(tempfile.gettempdir()) / "imagejobs-cache"):
        schema = directory / f"schema-{digest.hexdigest()[:16]}.db"
        if schema.exists():
            return schema
        try:
            directory.mkdir(parents=True, exist_ok=True)
            await _migrate_into(schema)
        except OSError:
            continue  # not writable: the next place
        return schema
    raise RuntimeError("no writable cache directory for the migrated schema")


async def _migrate_into(schema: Path) -> None:
    """Migrate a scratch database, then publish it atomically (parallel sessions)."""
    from imagejobs.storage.migrate import migrate

    with tempfile.TemporaryDirectory(dir=schema.parent) as scratch:
        migrated, published = Path(scratch) / "migrated.db", Path(scratch) / "published.db"
        await migrate(f"sqlite:///{migrated}")
        _copy_sqlite(migrated, published)  # one self-contained file, no WAL beside it
        os.replace(published, schema)


def _copy_sqlite(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()
