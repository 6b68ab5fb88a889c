"""Composition root: wires settings, database, stores, services and the ASGI app."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import sys
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec

from imagejobs import __version__
from imagejobs.api.app import create_app
from imagejobs.api.audit import audit_routes
from imagejobs.api.audit_trail import AuditTrail
from imagejobs.api.edge import Edge
from imagejobs.api.endpoint import decode_body
from imagejobs.api.iam_routes import IamApi
from imagejobs.api.operator import operator_routes
from imagejobs.api.operator_schemas import (
    RuleFileEntry,
    StateDocument,
    project_state,
    rule_record,
)
from imagejobs.api.probes import probe_routes, runner_state
from imagejobs.domain.enums import JobType
from imagejobs.domain.errors import Conflict, ImageJobsError, InvalidParameter, InvalidSettings
from imagejobs.domain.ids import IdGenerator
from imagejobs.domain.records import JobFilter, PageRequest
from imagejobs.domain.times import now_ms
from imagejobs.drivers.registry import load_driver
from imagejobs.iam.credentials import SecretBox
from imagejobs.keys import load_secret_box
from imagejobs.observability import (
    AccessLog,
    Metrics,
    audit_drop_metrics,
    audit_retention_metrics,
    database_metrics,
    reset_sweep_metrics,
    runner_metrics,
)
from imagejobs.runner.process import EmbeddedRunner, run_until_signalled
from imagejobs.runner.runner import Runner
from imagejobs.services import Services
from imagejobs.services.access import AccessControl, IamAccess, OpenAccess
from imagejobs.services.accounts import CredentialLimits
from imagejobs.services.audit_retention import AuditRetention
from imagejobs.services.credential_purge import CredentialPurge
from imagejobs.services.demo_world import demo_state
from imagejobs.services.engine import EngineService
from imagejobs.services.identity import IdentityService, NewAccount
from imagejobs.services.password_hashing import PasswordHashing
from imagejobs.services.project_keys import ProjectKeys
from imagejobs.services.protection import DeepReadBudget, GuardedAccess, RateLimiter
from imagejobs.services.servers import Quotas, ServerService
from imagejobs.services.steering import SteeredJobService, SteeringService, defaults_from
from imagejobs.services.testkit import TestKitService
from imagejobs.settings import Settings, load_settings
from imagejobs.storage.database import Database, database_for
from imagejobs.storage.engine_clock import DatabaseClock
from imagejobs.storage.engine_store import SqlEngineStore
from imagejobs.storage.iam_store import SqlIamStore
from imagejobs.storage.job_store import SqlJobStore
from imagejobs.storage.node_store import SqlNodeStore
from imagejobs.storage.ops_store import SqlOpsStore
from imagejobs.storage.private_files import private_directory
from imagejobs.storage.quota_store import SqlQuotaStore
from imagejobs.storage.schema_head import head_revision
from imagejobs.storage.server_store import SqlServerStore
from imagejobs.storage.state_store import SqlStateStore
from imagejobs.storage.steering_store import SqlSteeringStore

# The example project of the API reference: copy-pasted examples work against the demo.
DEMO_PROJECT_ID = "a4da8115c9d8464ead3a38309130523f"
DEMO_JOBS = 2_000
DEMO_ACCOUNT = "demo"
DEMO_REGION = "cn-north-4"
DEMO_CREDENTIALS_FILE = "demo-credentials.json"
logger = logging.getLogger("imagejobs")
SERVER_THREADS_DELAY = 0.2  # seconds from the end of a worker's startup


def configure_logging(level: str) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # Alembic says at INFO, on every start, which dialect it uses and each revision it
    # applies (several lines each): noise in `serve` and `worker` output. migrate() logs
    # one line of its own when it changed the schema; IMAGEJOBS_LOG_LEVEL=debug shows
    # Alembic's too.
    logging.getLogger("alembic").setLevel(
        logging.DEBUG if level.lower() == "debug" else logging.WARNING
    )


def open_database(settings: Settings) -> Database:
    database = database_for(
        settings.database_url,
        sqlite_synchronous=settings.sqlite_synchronous,
        connect_timeout=settings.database_connect_timeout_seconds,
        statement_timeout=settings.database_statement_timeout_seconds,
        sqlite_max_bytes=settings.sqlite_max_bytes,
    )
    database.deep_offset = settings.deep_page_offset
    return database


@contextlib.asynccontextmanager
async def opened_database(settings: Settings) -> AsyncIterator[Database]:
    """The settings' database, open for the block and closed after it (the CLI's commands)."""
    database = open_database(settings)
    await database.open()
    try:
        yield database
    finally:
        await database.close()


def build_services(
    database: Database, settings: Settings, *, runner_here: bool = False
) -> Services:
    """``runner_here``: a runner of this process works on the queue, so the read that
    ends a job may wait for it (SteeredJobService)."""
    database.deep_offset = settings.deep_page_offset  # the pages DeepReadBudget bounds
    engine_store = SqlEngineStore(database)
    clock = DatabaseClock(database)  # the engine's one clock (docs/engine.md)
    steering = SteeringService(SqlSteeringStore(database), defaults_from(settings), clock)
    keys = ProjectKeys(database, settings.iam_cache_seconds)
    engine = EngineService(
        engine_store,
        steering,
        load_driver(settings),
        max_attempts=settings.max_attempts,
        backoff_base=settings.retry_backoff_seconds,
        clock=clock,
        project_of=keys.project_id,
    )
    return Services(
        jobs=SteeredJobService(
            SqlJobStore(database), steering, engine_store, clock, settle=runner_here
        ),
        servers=ServerService(
            SqlServerStore(database, engine_store),
            steering,
            IdGenerator(None if settings.id_node < 0 else settings.id_node),
            clock,
            nodes=SqlNodeStore(database) if settings.id_node < 0 else None,
            quota_store=SqlQuotaStore(database),
            quotas=Quotas(
                settings.quota_servers,
                settings.quota_jobs_in_flight,
                settings.quota_creates_per_second,
            ),
        ),
        steering=steering,
        engine=engine,
        keys=keys,
        deep_reads=deep_read_budget(settings),
    )


def deep_read_budget(settings: Settings) -> DeepReadBudget:
    """This worker's share of an account's deep reads: IMAGEJOBS_DEEP_PAGE_QUEUE is shared
    out among the server workers, as IMAGEJOBS_RATE_LIMIT is, so that an account holds at
    most ``workers`` deep reads running and about DEEP_PAGE_QUEUE waiting, whatever the
    worker count (docs/operations.md). The one running read per worker cannot be shared
    out without a lock across processes: a database write per deep read."""
    return DeepReadBudget(settings.deep_page_offset, settings.deep_page_queue // settings.workers)


def build_runner(settings: Settings, services: Services, concurrency: int | None = None) -> Runner:
    return Runner(
        services.engine,
        concurrency=concurrency or settings.runner_concurrency,
        lease_seconds=settings.lease_seconds,
        poll_seconds=settings.poll_seconds,
        shutdown_grace_seconds=settings.shutdown_grace_seconds,
    )


async def run_worker(settings: Settings, concurrency: int | None = None) -> None:
    """``imagejobs worker``: runners alone, until SIGTERM or SIGINT."""
    async with opened_database(settings) as database:
        services = build_services(database, settings)
        await run_until_signalled(build_runner(settings, services, concurrency))
        await services.engine.driver.close()


def build_access(
    settings: Settings,
    database: Database,
    guard: Callable[[AccessControl], AccessControl] = lambda access: access,
    keys: ProjectKeys | None = None,
) -> tuple[AccessControl | None, IamApi | None]:
    """IAM in front of the API, and the /v3 identity routes (none with IMAGEJOBS_AUTH=none);
    ``guard`` wraps the access control (rate limits, metrics). ``keys``: the project keys
    the API resolves, forgotten when the identity cache notices a change (a reset)."""
    if settings.auth == "none":
        return None, None
    store = SqlIamStore(database)
    box = load_secret_box(settings)
    identity = IdentityService(
        store,
        box,
        limits=credential_limits(settings),
        hashing=password_hashing(settings),
    )
    iam_access = IamAccess(
        store,
        identity,
        box,
        cache_seconds=settings.iam_cache_seconds,
        operator_token=settings.operator_token or None,
        on_change=(lambda: None) if keys is None else keys.forget,
    )
    access = guard(iam_access)
    if keys is not None:  # every request is authenticated before its project is resolved
        keys.checks_generation = False
    return access, IamApi(identity, access, iam_access.invalidate)


def password_hashing(settings: Settings) -> PasswordHashing:
    return PasswordHashing(
        settings.password_hash_threads,
        settings.password_hash_queue,
        cost=settings.password_hash_cost,
    )


def credential_limits(settings: Settings) -> CredentialLimits:
    return CredentialLimits(
        login_max_failures=settings.login_max_failures,
        login_failure_window_ms=int(settings.login_failure_window_seconds * 1000),
        login_lockout_ms=int(settings.login_lockout_seconds * 1000),
        login_address_max_failures=settings.login_address_max_failures,
        max_live_tokens=settings.max_live_tokens_per_user,
        max_live_temporary_keys=settings.max_live_temporary_keys_per_user,
    )


def build_guard(
    settings: Settings, metrics: Metrics | None
) -> Callable[[AccessControl], AccessControl]:
    """What wraps the access control: the per-account rate limit, the failure metrics."""
    limiter = None
    if settings.rate_limit > 0:  # each worker admits its share of an account's rate
        limiter = RateLimiter(settings.rate_limit / settings.workers, settings.rate_limit_burst)
    return lambda access: GuardedAccess(access, metrics, limiter)


def batch_server_threads() -> None:
    """Run this worker's threads but the calling one (the event loop's) as SCHED_BATCH,
    where the OS has it (IMAGEJOBS_BATCH_SCHEDULING).

    The event loop and Granian's I/O thread share the CPUs. With the default policy each
    response the loop hands over wakes the I/O thread, which preempts the loop at once: at
    ListImageJobs' cost per request that is a context switch per request, and caches
    refilled after each (bench/README.md, list_probe.py). A SCHED_BATCH thread woken does
    not preempt: it runs when the loop blocks or its time slice ends, and takes every
    response and request waiting then. The loop itself keeps the default policy, so a
    request it is woken for still preempts other programs, as without the setting.
    """
    set_policy = getattr(os, "sched_setscheduler", None)
    if set_policy is None:
        return
    loop_thread = threading.get_native_id()
    for tid in map(int, os.listdir("/proc/self/task")):
        if tid != loop_thread:
            # Refused, or ended meanwhile: that thread keeps the default policy.
            with contextlib.suppress(OSError):
                set_policy(tid, os.SCHED_BATCH, os.sched_param(0))


def build_app(settings: Settings, *, serve_worker: bool = False) -> Edge:
    """The whole app; ``serve_worker``: for a Granian worker of ``imagejobs serve``, which
    owns its process's threads (the batch-scheduling setting applies to them)."""
    database = open_database(settings)
    metrics = Metrics() if settings.metrics else None
    guard = build_guard(settings, metrics)
    services = build_services(database, settings, runner_here=settings.embedded_runner)
    iam_access, iam_api = build_access(settings, database, guard, services.keys)
    access = iam_access or guard(OpenAccess())
    embedded = (
        EmbeddedRunner(build_runner(settings, services)) if settings.embedded_runner else None
    )
    # Every serving process purges dead credentials (docs/security.md).
    purge = (
        None
        if iam_api is None
        else CredentialPurge(iam_api.identity, settings.credential_purge_seconds)
    )
    ops = SqlOpsStore(database)
    # Every serving process deletes audit events past retention (docs/operations.md, Logs).
    retention = audit_retention(settings, ops)
    audit = AuditTrail(ops, settings.audit_account_rate, settings.audit_account_burst)
    runner = None
    if embedded is not None:
        runner = runner_state(embedded.heartbeat_at, settings.lease_seconds)
    if metrics is not None:  # counters other objects keep, read when scraped
        metrics.sample(lambda: database_metrics(database))
        if embedded is not None:
            metrics.sample(lambda: runner_metrics(embedded.runner))
        metrics.sample(lambda: audit_retention_metrics(retention))
        metrics.sample(lambda: reset_sweep_metrics(services.keys.sweeper))
        metrics.sample(lambda: audit_drop_metrics(audit))

    async def startup() -> None:
        await database.open()
        with contextlib.suppress(Exception):  # unreachable now: it anchors when it can
            await services.engine.sync_clock()
        if embedded is not None:
            embedded.start()
        if purge is not None:
            purge.start()
        retention.start(settings.audit_purge_seconds)
        services.keys.sweeper.start(RESET_SWEEP_SECONDS)
        if serve_worker and settings.batch_scheduling:
            # Granian starts its threads once this startup is over, and the loop runs again
            # only after that: by then they exist.
            asyncio.get_running_loop().call_later(SERVER_THREADS_DELAY, batch_server_threads)
        logger.info(
            "imagejobs %s ready on http://%s:%d (pid %d)",
            __version__,
            settings.host,
            settings.port,
            os.getpid(),
        )

    async def shutdown() -> None:
        await edge.drain()
        if purge is not None:
            await purge.stop()
        await retention.stop()
        await services.keys.sweeper.stop()
        if embedded is not None:
            await embedded.stop()
        await services.engine.driver.close()
        await database.close()

    app = create_app(
        services,
        access=access,
        iam_api=iam_api,
        # The operator API (/_imagejobs), authenticated as the public API is.
        extra_routes=operator_routes(
            services,
            access,
            settings.driver,
            build_testkit(settings, database, services),
        )
        + probe_routes(
            ops, head_revision(), runner, metrics, settings.metrics_counts_max_age_seconds
        )
        + audit_routes(ops, access, services.deep_reads),
        on_startup=startup,
        on_shutdown=shutdown,
        body_read_timeout=settings.body_read_timeout_seconds,
    )
    edge = Edge(
        app,
        metrics=metrics,
        access_log=AccessLog() if settings.access_log else None,
        audit=audit,
        max_in_flight=settings.max_in_flight,
        max_header_bytes=settings.max_header_bytes,
    )
    return edge


# How often each serving process looks for other processes' resets to sweep (its own
# wake its sweeper at once).
RESET_SWEEP_SECONDS = 10.0


def audit_retention(settings: Settings, ops: SqlOpsStore) -> AuditRetention:
    return AuditRetention(ops, settings.audit_retention_days, settings.audit_purge_batch)


def build_testkit(settings: Settings, database: Database, services: Services) -> TestKitService:
    """Reset and throwaway tenants for test suites (the operator API)."""
    identity = None
    if settings.auth == "iam":
        box = load_secret_box(settings)
        identity = IdentityService(SqlIamStore(database), box, hashing=password_hashing(settings))
    engine_store = services.engine.store
    assert isinstance(engine_store, SqlEngineStore)
    return TestKitService(
        SqlStateStore(database, engine_store), services.steering, identity, services.keys
    )


async def load_init_dir(settings: Settings) -> list[str]:
    """Apply IMAGEJOBS_INIT_DIR's rule and state files (in name order); their names.
    InvalidSettings names the file (or the directory) that could not be loaded."""
    if settings.init_dir is None:
        return []
    if not settings.init_dir.is_dir():  # a typo would otherwise serve an empty service
        raise InvalidSettings("init_dir", f"{settings.init_dir}: is not a directory")
    files = sorted(settings.init_dir.glob("*.json"))
    async with opened_database(settings) as database:
        services = build_services(database, settings)
        testkit = build_testkit(settings, database, services)
        for path in files:
            try:
                raw = path.read_bytes()
                if path.name.endswith(".rules.json"):
                    for index, entry in enumerate(decode_body(raw, list[RuleFileEntry])):
                        try:
                            key = await services.keys.storage_key(entry.project_id)
                            rule = rule_record(key, entry.job_type, entry)
                            await services.steering.put_rule(rule)
                        except InvalidParameter as exc:  # which rule of the file: "[2].job_type"
                            raise InvalidParameter(
                                f"[{index}].{exc.parameter}", exc.reason
                            ) from exc
                else:
                    await testkit.load(project_state(decode_body(raw, StateDocument)))
            except (ImageJobsError, OSError) as exc:
                raise InvalidSettings(
                    "init_dir", f"{settings.init_dir}: {path.name}: {_init_file_problem(exc)}"
                ) from exc
    return [path.name for path in files]


def _init_file_problem(exc: ImageJobsError | OSError) -> str:
    """Why an init file could not be loaded. A file that is not JSON at all says so, with
    where the decoder stopped if it tells (decode_body's words are for HTTP bodies)."""
    if isinstance(exc, OSError):
        return str(exc.strerror)
    cause = exc.__cause__
    if isinstance(cause, msgspec.DecodeError) and not isinstance(cause, msgspec.ValidationError):
        detail = str(cause).removeprefix("JSON is malformed: ")  # "... (byte 29)"
        if detail == "Input data was truncated":
            detail = "it ends before the JSON document does (truncated)"
        return f"is not valid JSON: {detail}"
    if isinstance(exc, InvalidParameter):  # the field and its rule; "The parameter is
        return f"{exc.parameter} {exc.reason}"  # invalid" is an HTTP answer's opening
    return str(exc)


def asgi_app() -> Edge:
    """Granian's factory target: each server worker reads the settings once, here."""
    settings = load_settings()
    configure_logging(settings.log_level)
    app = build_app(settings, serve_worker=True)
    # What startup built lives as long as the worker: out of the collector's sight, so that
    # its full collections stop walking it (a refusal at the in-flight bound cost 5 % less
    # in bench/refusal.py). Collected first, so that no garbage is kept for ever.
    gc.collect()
    gc.freeze()
    return app


async def seed_demo(settings: Settings) -> bool:
    """Seed the demo project unless it already has jobs; True when it seeded."""
    async with opened_database(settings) as database:
        store = SqlJobStore(database)
        services = build_services(database, settings)
        key = await services.keys.storage_key(DEMO_PROJECT_ID)
        for job_type in (JobType.CREATE_SERVER, JobType.CREATE_SERVER_IMAGE, JobType.DELETE_SERVER):
            page = await store.list_jobs(key, JobFilter(job_type), PageRequest(0, 1))
            if page.count:
                return False
        # A consistent world (services/demo_world.py): its live jobs are engine tasks.
        testkit = build_testkit(settings, database, services)
        await testkit.load(demo_state(DEMO_PROJECT_ID, DEMO_JOBS, now_ms()))
        return True


@dataclass(frozen=True)
class DemoCredentials:
    account: str
    user: str
    password: str
    project_id: str
    region: str
    access_key: str
    secret_key: str
    # Where this database is served: the file is also the CLI's profile (IMAGEJOBS_PROFILE),
    # and without it the CLI would ask the default port, which may be another database's.
    endpoint: str


async def prepare_identity(settings: Settings) -> tuple[DemoCredentials | None, Path | None]:
    """Before serving: the operator key, the system policies and, on the very first start
    of an empty identity store, the demo account (returned once, 0600). Also answers this
    database's demo credentials file, on every start: with several databases in one data
    directory it may be demo-credentials-2.json, and the banner must name the right one."""
    box = load_secret_box(settings, create=True)
    async with opened_database(settings) as database:
        store = SqlIamStore(database)
        identity = IdentityService(store, box)
        await identity.ensure_system_policies()
        await _check_operator_key(settings, store, box)
        if not settings.bootstrap_demo_account or await store.has_accounts():
            return None, await _point_demo_credentials_here(settings, store)
        try:
            created = await identity.create_account(
                DEMO_ACCOUNT, project_name=DEMO_REGION, project_id=DEMO_PROJECT_ID
            )
        except Conflict:  # another process bootstrapped it a moment ago
            return None, None
    credentials = _demo_credentials(created, local_endpoint(settings))
    path = _unused_credentials_path(settings)
    write_private_json(path, credentials.__dict__)
    return credentials, path


async def _check_operator_key(settings: Settings, store: SqlIamStore, box: SecretBox) -> None:
    """Refuse to serve with an operator key that does not open the database's secret keys.
    A process given another key (a second machine without IMAGEJOBS_ENCRYPTION_KEY makes a
    key file of its own) answered every AK/SK request 500, with a traceback in its log."""
    key = await store.some_access_key()
    if key is None:
        return
    try:
        box.decrypt(key.secret_ciphertext, bound_to=key.access_key)
    except ValueError:
        given = "IMAGEJOBS_ENCRYPTION_KEY" if settings.encryption_key else "IMAGEJOBS_KEY_FILE"
        where = "" if settings.encryption_key else f"({settings.key_file}) "
        raise InvalidSettings(
            given,
            f"{where}does not decrypt the secret keys stored in this database: give every"
            " process that serves it the same operator key (docs/operations.md, Deployment)",
        ) from None


async def _point_demo_credentials_here(settings: Settings, store: SqlIamStore) -> Path | None:
    """This database's demo credentials file, its ``endpoint`` set to where this server
    listens. The file is written on the first start only, and is the CLI's profile: a
    later start on another port (``./scripts/demo --port 9000``) left it naming the old
    one, where nothing, or another database's server, answered."""
    endpoint = local_endpoint(settings)
    for path in sorted(settings.data_dir.glob(f"{Path(DEMO_CREDENTIALS_FILE).stem}*.json")):
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        access_key = content.get("access_key") if isinstance(content, dict) else None
        if not isinstance(access_key, str) or await store.access_key(access_key) is None:
            continue  # another database's demo (README's SQLite, then PostgreSQL)
        if content.get("endpoint") != endpoint:
            write_private_json(path, content | {"endpoint": endpoint})
            logger.info("%s now names this server: endpoint %s", path, endpoint)
        return path
    return None


def _unused_credentials_path(settings: Settings) -> Path:
    """DATA_DIR/demo-credentials.json, or, when that file exists (another database's demo
    account, bootstrapped with the same data directory: README's SQLite demo, then its
    PostgreSQL section), the first free demo-credentials-N.json: credentials are shown
    once, so a file holding some is never overwritten."""
    path = demo_credentials_path(settings)
    number = 1
    while path.exists():
        number += 1
        path = path.with_name(f"{Path(DEMO_CREDENTIALS_FILE).stem}-{number}.json")
    return path


def local_endpoint(settings: Settings) -> str:
    """The URL a client on this machine reaches ``serve`` at (a wildcard address: loopback)."""
    wildcard = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104
    host = wildcard.get(settings.host, settings.host)
    return f"http://[{host}]:{settings.port}" if ":" in host else f"http://{host}:{settings.port}"


def _demo_credentials(created: NewAccount, endpoint: str) -> DemoCredentials:
    return DemoCredentials(
        account=created.account.name,
        user=created.root.name,
        password=created.password,
        project_id=created.project.id,
        region=created.project.name,
        access_key=created.access_key,
        secret_key=created.secret_key,
        endpoint=endpoint,
    )


def demo_credentials_path(settings: Settings) -> Path:
    return settings.data_dir / DEMO_CREDENTIALS_FILE


def write_private_json(path: Path, content: object) -> None:
    """Write ``content`` readable by the owner only (mode 0600 from the start)."""
    private_directory(path.parent)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # a file that was already there keeps its mode otherwise
    with os.fdopen(descriptor, "w") as handle:
        json.dump(content, handle, indent=2)
        handle.write("\n")
