"""Settings: one frozen object, read once at the entry point from flags and ``IMAGEJOBS_*``
environment variables (flags win), then passed down."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from imagejobs.domain.errors import InvalidSettings

ENV_PREFIX = "IMAGEJOBS_"
_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
MAX_AUDIT_RETENTION_DAYS = 36_500  # a century: longer is a typo (or 0, keep for good)


def _doc(text: str) -> dict[str, str]:
    return {"doc": text}


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(
        default=Path("data"),
        metadata=_doc("Directory for the SQLite database and generated files."),
    )
    database_url: str = field(
        default="",
        metadata=_doc(
            "sqlite:///PATH or postgresql://USER@HOST:PORT/DB. "
            "Default: sqlite:///DATA_DIR/imagejobs.db."
        ),
    )
    host: str = field(default="127.0.0.1", metadata=_doc("Address to listen on."))
    port: int = field(default=8080, metadata=_doc("TCP port to listen on."))
    workers: int = field(default=1, metadata=_doc("Server worker processes."))
    log_level: str = field(
        default="info",
        metadata=_doc(
            "debug, info, warning or error (debug also shows each Alembic migration step)."
        ),
    )
    sqlite_synchronous: str = field(
        default="NORMAL",
        metadata=_doc(
            "SQLite PRAGMA synchronous: NORMAL survives any process crash; FULL also "
            "survives power loss, at the cost of an fsync per commit."
        ),
    )

    auth: str = field(
        default="iam",
        metadata=_doc(
            "iam: every /v1 call needs an AK/SK signature or X-Auth-Token (the default); "
            "none: no authentication, every caller may use every project (local tests only)."
        ),
    )
    key_file: Path | None = field(
        default=None,
        metadata=_doc(
            "File holding the operator's 32-byte key (base64) that encrypts secret keys at "
            "rest; created with mode 0600 when missing. Default: DATA_DIR/secret.key."
        ),
    )
    encryption_key: str = field(
        default="",
        metadata=_doc(
            "The operator's key itself (base64 of 32 bytes), instead of a key file: give "
            "every process of a multi-machine deployment the same value."
        ),
    )
    operator_token: str = field(
        default="",
        metadata=_doc(
            "A secret that, sent as X-Imagejobs-Operator-Token, makes the caller the operator "
            "of the operator API (/_imagejobs), on every project. Empty: no operator; account "
            "roots still steer their own projects."
        ),
    )
    iam_cache_seconds: float = field(
        default=1.0,
        metadata=_doc(
            "How often a process checks whether identities changed (0: on every request)."
        ),
    )
    bootstrap_demo_account: bool = field(
        default=True,
        metadata=_doc(
            "On the first start with no accounts, create the demo account and write its "
            "credentials to DATA_DIR/demo-credentials.json (mode 0600), or to "
            "demo-credentials-2.json, ... when that file already holds another database's."
        ),
    )
    # --- the job engine (docs/engine.md) ---
    embedded_runner: bool = field(
        default=True,
        metadata=_doc("Run a job runner inside each `serve` worker (`serve --no-runner`: off)."),
    )
    runner_concurrency: int = field(
        default=32, metadata=_doc("Sub-jobs one runner process works on at once.")
    )
    lease_seconds: float = field(
        default=30.0,
        metadata=_doc(
            "How long a runner's claim on a sub-job lasts without a heartbeat; a sub-job "
            "whose runner died is taken over by another runner after this."
        ),
    )
    poll_seconds: float = field(
        default=1.0,
        metadata=_doc(
            "How often an idle runner looks for due work (PostgreSQL also wakes runners "
            "with LISTEN/NOTIFY; SQLite runners also notice commits of other processes)."
        ),
    )
    max_attempts: int = field(
        default=5, metadata=_doc("Attempts of a sub-job step before it fails for good.")
    )
    retry_backoff_seconds: float = field(
        default=1.0,
        metadata=_doc("Delay before the first retry of a transient error; doubles each time."),
    )
    shutdown_grace_seconds: float = field(
        default=10.0,
        metadata=_doc("On SIGTERM, how long running steps may finish before being released."),
    )
    driver: str = field(
        default="simulated",
        metadata=_doc("The driver doing the work: an entry point of group imagejobs.drivers."),
    )
    simulated_queue_seconds: float = field(
        default=2.0, metadata=_doc("simulated driver: seconds a new sub-job stays WAITING.")
    )
    simulated_completion: str = field(
        default="duration",
        metadata=_doc(
            "simulated driver: immediate, duration (after SIMULATED_DURATION_SECONDS of "
            "RUNNING) or reads (on the SIMULATED_READS-th read of the job)."
        ),
    )
    simulated_duration_seconds: float = field(
        default=3.0, metadata=_doc("simulated driver: seconds a sub-job stays RUNNING.")
    )
    simulated_reads: int = field(
        default=3, metadata=_doc("simulated driver: job reads before a sub-job completes.")
    )
    simulated_failure_probability: float = field(
        default=0.0, metadata=_doc("simulated driver: probability (0 to 1) a sub-job fails.")
    )
    simulated_error_code: str = field(
        default="WKS.00211401", metadata=_doc("simulated driver: error code of such failures.")
    )
    simulated_error_message: str = field(
        default="The requested operation failed. Please try again later.",
        metadata=_doc("simulated driver: error message of such failures."),
    )
    simulated_execution_log: Path | None = field(
        default=None,
        metadata=_doc(
            "simulated driver: append one line per executed step to this file (audits, tests)."
        ),
    )
    # --- the engine across machines, and per-project quotas (docs/engine.md) ---
    id_node: int = field(
        default=-1,
        metadata=_doc(
            "The node part (0 to 255) of the ids this process mints. -1: leased from the "
            "database, so that live processes never share one (set it only to pin a node)."
        ),
    )
    quota_servers: int = field(
        default=10_000,
        metadata=_doc("Image servers one project may have (0: no limit)."),
    )
    quota_jobs_in_flight: int = field(
        default=1_000,
        metadata=_doc("Jobs of one project that may be WAITING or RUNNING at once (0: no limit)."),
    )
    quota_creates_per_second: float = field(
        default=50.0,
        metadata=_doc(
            "Job-starting requests (create, batch delete, recreate image) one project may "
            "make per second, in bursts of up to twice as many, at least one (0: no limit)."
        ),
    )

    # --- credential protection (docs/security.md) ---
    password_hash_threads: int = field(
        default=1,
        metadata=_doc(
            "Threads per process that hash passwords (scrypt, 32 MiB each), off the event loop."
        ),
    )
    password_hash_queue: int = field(
        default=8,
        metadata=_doc(
            "Password logins that may wait for a hashing thread; more are answered at once "
            "with 429 APIGW.0308."
        ),
    )
    login_max_failures: int = field(
        default=5,
        metadata=_doc(
            "Failed password logins of one user within LOGIN_FAILURE_WINDOW_SECONDS that lock "
            "the user's password logins (not its AK/SK or tokens), as Huawei IAM does."
        ),
    )
    login_failure_window_seconds: float = field(
        default=900.0, metadata=_doc("The window in which failed logins are counted.")
    )
    login_lockout_seconds: float = field(
        default=900.0,
        metadata=_doc("How long a locked user (or throttled source address) stays locked."),
    )
    login_address_max_failures: int = field(
        default=30,
        metadata=_doc(
            "Failed password logins from one source address within the window after which "
            "that address's logins are answered 429 for LOGIN_LOCKOUT_SECONDS."
        ),
    )
    max_live_tokens_per_user: int = field(
        default=100,
        metadata=_doc("Unexpired, unrevoked tokens a user may hold; more logins are refused."),
    )
    max_live_temporary_keys_per_user: int = field(
        default=100,
        metadata=_doc("Unexpired temporary access keys a user may hold; more are refused."),
    )
    credential_purge_seconds: float = field(
        default=300.0,
        metadata=_doc(
            "How often each serving process deletes expired or revoked tokens, dead "
            "temporary keys and old failure counts."
        ),
    )

    # --- the audit trail's retention (docs/operations.md, Logs) ---
    audit_retention_days: int = field(
        default=90,
        metadata=_doc(
            "Days an audit event is kept; older ones are deleted by every serving process, "
            "in batches (0: keep every event for good)."
        ),
    )
    audit_purge_seconds: float = field(
        default=3600.0,
        metadata=_doc("How often each serving process deletes audit events past retention."),
    )
    audit_purge_batch: int = field(
        default=1000,
        metadata=_doc(
            "Audit events deleted per transaction, so that a purge never holds the "
            "database's write lock for long (SQLite has one writer)."
        ),
    )
    audit_account_rate: float = field(
        default=100.0,
        metadata=_doc(
            "Audit events of one account each serving process stores per second, past "
            "its burst; the rest are counted in a marker event (AuditEventsDropped)."
        ),
    )
    audit_account_burst: int = field(
        default=2000,
        metadata=_doc("Audit events of one account a serving process stores at once."),
    )

    # --- the HTTP edge: what one client may hold (docs/security.md) ---
    max_connections: int = field(
        default=4096,
        metadata=_doc(
            "Connections one server worker holds open at once, idle or busy (Granian's "
            "backpressure); further ones wait in the listen backlog. Capped by the process's "
            "open-file limit, which `serve` raises to its hard limit."
        ),
    )
    listen_backlog: int = field(
        default=2048,
        metadata=_doc(
            "Connections the kernel queues before the server accepts them "
            "(capped by net.core.somaxconn)."
        ),
    )
    batch_scheduling: bool = field(
        default=False,
        metadata=_doc(
            "Linux: each `serve` worker runs Granian's threads (not its event loop's) as "
            "SCHED_BATCH: woken by a response, the I/O thread waits for the loop to yield "
            "instead of preempting it, so at saturation both take their work in batches "
            "(a fifth to a quarter less CPU per ListImageJobs request). A request still wakes "
            "the I/O thread first, so on a CPU busy with other programs single requests may "
            "wait for their time slice (false: the default policy throughout)."
        ),
    )
    header_read_timeout_seconds: float = field(
        default=10.0,
        metadata=_doc(
            "A connection that has not sent a request's complete headers within this time, "
            "from connecting or from its previous response (keep-alive idle), is closed."
        ),
    )
    body_read_timeout_seconds: float = field(
        default=30.0,
        metadata=_doc(
            "A request whose body has not fully arrived this long after its headers is "
            "answered 408 and its connection closed."
        ),
    )

    # --- operations: observability and protection (docs/operations.md) ---
    metrics: bool = field(
        default=True, metadata=_doc("Serve Prometheus metrics at /metrics (false: off).")
    )
    metrics_counts_max_age_seconds: float = field(
        default=5.0,
        metadata=_doc(
            "How old the job and queue counts /metrics shows may be: they sum whole tables "
            "(0.4 s at 20,000 projects on SQLite), so they are read at most this often, "
            "off the event loop, however often /metrics is asked (0: on every scrape)."
        ),
    )
    access_log: bool = field(
        default=True,
        metadata=_doc(
            "One line per request on stderr: JSON when stderr is not a terminal, key=value "
            "when it is."
        ),
    )
    max_in_flight: int = field(
        default=64,
        metadata=_doc(
            "Requests one server worker serves at once; beyond it the answer is an "
            "immediate 503 WKS.00050902 instead of a queue (0: no bound)."
        ),
    )
    rate_limit: float = field(
        default=0.0,
        metadata=_doc(
            "Requests per second each account may make, shared out among the server "
            "workers; beyond it 429 APIGW.0308 with Retry-After (0: no limit)."
        ),
    )
    rate_limit_burst: int = field(
        default=100,
        metadata=_doc("Requests an account may make at once above RATE_LIMIT, per worker."),
    )
    deep_page_offset: int = field(
        default=1_000,
        metadata=_doc(
            "Pages at this offset or deeper are deep reads: their cost grows with the "
            "offset, so they run off the event loop (SQLite) or within a share of the pool "
            "(PostgreSQL), one at a time per account."
        ),
    )
    deep_page_queue: int = field(
        default=4,
        metadata=_doc(
            "Deep pages one account may have waiting, shared out among the server "
            "workers (each worker: one running, QUEUE / workers rounded down waiting); "
            "one more is answered 429 APIGW.0308 with Retry-After."
        ),
    )
    max_header_bytes: int = field(
        default=16_384,
        metadata=_doc("Largest request head (all header names and values) accepted."),
    )
    database_connect_timeout_seconds: float = field(
        default=1.0,
        metadata=_doc("PostgreSQL: how long connecting may take before the call fails (503)."),
    )
    database_statement_timeout_seconds: float = field(
        default=5.0,
        metadata=_doc(
            "How long one database call may take (PostgreSQL statements and pool waits, "
            "SQLite lock waits and deep reads) before it fails with 503."
        ),
    )
    sqlite_max_bytes: int = field(
        default=0,
        metadata=_doc(
            "SQLite: the size the database file may grow to (PRAGMA max_page_count); once "
            "reached, writes fail with 503 and reads go on, as on a full disk (0: no cap)."
        ),
    )

    # --- the test kit (imagejobs.testing, `serve --profile test`) ---
    serve_profile: str = field(
        default="",
        metadata=_doc(
            "test: defaults for test suites (jobs finish at once unless steered, no queue "
            "delay, no shutdown grace, no demo account, IAM changes seen at once, cheap "
            "password hashing, a 0.05 s retry backoff); flags and other IMAGEJOBS_* "
            "variables still win."
        ),
    )
    init_dir: Path | None = field(
        default=None,
        metadata=_doc(
            "On start, apply every *.rules.json file (a list of steering rules) and load every "
            "other *.json file (a project's state, as GET /_imagejobs/state answers) of this "
            "directory, in name order."
        ),
    )
    password_hash_cost: int = field(
        default=15,
        metadata=_doc(
            "log2 of scrypt's N for new password hashes (15: ~32 MiB and 50-100 ms; the test "
            "profile uses 4, fast and weak: never for real passwords)."
        ),
    )

    def __post_init__(self) -> None:
        if not self.database_url:
            url = f"sqlite:///{self.data_dir / 'imagejobs.db'}"
            object.__setattr__(self, "database_url", url)
        if not self.database_url.startswith(("sqlite:///", "postgres")):
            raise InvalidSettings("database_url", "must start with sqlite:/// or postgresql://")
        if not 0 < self.port < 65536:
            raise InvalidSettings("port", "must be from 1 to 65535")
        if not 1 <= self.workers <= 64:
            raise InvalidSettings("workers", "must be from 1 to 64")
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise InvalidSettings("log_level", "must be debug, info, warning or error")
        if self.key_file is None:
            object.__setattr__(self, "key_file", self.data_dir / "secret.key")
        if self.auth not in ("iam", "none"):
            raise InvalidSettings("auth", "must be iam or none")
        if not 0 <= self.iam_cache_seconds <= 3600:
            raise InvalidSettings("iam_cache_seconds", "must be from 0 to 3600")
        if self.sqlite_synchronous not in _SYNCHRONOUS:
            raise InvalidSettings("sqlite_synchronous", f"must be one of {', '.join(_SYNCHRONOUS)}")
        _check_engine(self)
        _check_credentials(self)
        _check_quotas(self)
        _check_edge(self)

    def to_environ(self) -> dict[str, str]:
        """The settings as environment variables, for child processes (server workers)."""
        return {
            env_name(f.name): _text(getattr(self, f.name))
            for f in fields(self)
            if getattr(self, f.name) is not None
        }


def _check_engine(settings: Settings) -> None:
    ranges: tuple[tuple[str, float, float], ...] = (
        ("runner_concurrency", 1, 1024),
        ("lease_seconds", 1, 3600),
        ("poll_seconds", 0.01, 60),
        ("max_attempts", 1, 100),
        ("retry_backoff_seconds", 0, 3600),
        ("shutdown_grace_seconds", 0, 3600),
        ("simulated_queue_seconds", 0, 86_400),
        ("simulated_duration_seconds", 0, 86_400),
        ("simulated_reads", 1, 10_000),
        ("simulated_failure_probability", 0, 1),
        ("max_in_flight", 0, 100_000),
        ("rate_limit", 0, 1_000_000),
        ("rate_limit_burst", 1, 1_000_000),
        ("metrics_counts_max_age_seconds", 0, 3600),
        ("deep_page_offset", 1, 2_147_483_647),
        ("deep_page_queue", 0, 10_000),
        ("max_header_bytes", 1024, 1 << 20),
        ("database_connect_timeout_seconds", 0.05, 600),
        ("database_statement_timeout_seconds", 0.05, 3600),
        ("sqlite_max_bytes", 0, 1 << 50),
    )
    _check_ranges(settings, ranges)
    if settings.simulated_completion not in ("immediate", "duration", "reads"):
        raise InvalidSettings("simulated_completion", "must be immediate, duration or reads")
    if not 1 <= len(settings.simulated_error_code) <= 16:
        raise InvalidSettings("simulated_error_code", "must be 1 to 16 characters long")
    if settings.serve_profile not in ("", *PROFILES):
        raise InvalidSettings("serve_profile", f"must be one of {', '.join(PROFILES)}")
    if not 4 <= settings.password_hash_cost <= 20:
        raise InvalidSettings("password_hash_cost", "must be from 4 to 20")


# A profile's values are defaults: IMAGEJOBS_* variables and flags override them.
PROFILES: dict[str, dict[str, Any]] = {
    "test": {
        "simulated_completion": "immediate",
        "simulated_queue_seconds": 0.0,
        "shutdown_grace_seconds": 0.0,
        "bootstrap_demo_account": False,
        "iam_cache_seconds": 0.0,
        "password_hash_cost": 4,
        "retry_backoff_seconds": 0.05,
    },
}


def _check_credentials(settings: Settings) -> None:
    ranges: tuple[tuple[str, float, float], ...] = (
        ("password_hash_threads", 1, 64),
        ("password_hash_queue", 0, 10_000),
        ("login_max_failures", 1, 100),
        ("login_failure_window_seconds", 1, 86_400),
        ("login_lockout_seconds", 1, 86_400),
        ("login_address_max_failures", 1, 1_000_000),
        ("max_live_tokens_per_user", 1, 1_000_000),
        ("max_live_temporary_keys_per_user", 1, 1_000_000),
        ("credential_purge_seconds", 0.1, 86_400),
    )
    _check_ranges(settings, ranges)
    _check_audit(settings)


def _check_audit(settings: Settings) -> None:
    """Named by their variables: these are set in a deployment's environment, not flags."""
    if not 0 <= settings.audit_retention_days <= MAX_AUDIT_RETENTION_DAYS:
        raise InvalidSettings(
            env_name("audit_retention_days"),
            f"must be a whole number of days from 0 (keep every event) to "
            f"{MAX_AUDIT_RETENTION_DAYS}, not {settings.audit_retention_days}",
        )
    if not 0.1 <= settings.audit_purge_seconds <= 86_400:
        raise InvalidSettings(
            env_name("audit_purge_seconds"),
            f"must be from 0.1 to 86400 seconds, not {settings.audit_purge_seconds:g}",
        )
    if not 1 <= settings.audit_purge_batch <= 100_000:
        raise InvalidSettings(
            env_name("audit_purge_batch"),
            f"must be from 1 to 100000 events, not {settings.audit_purge_batch}",
        )
    if not 0.01 <= settings.audit_account_rate <= 100_000:
        raise InvalidSettings(
            env_name("audit_account_rate"),
            f"must be from 0.01 to 100000 events a second, not {settings.audit_account_rate:g}",
        )
    if not 1 <= settings.audit_account_burst <= 1_000_000:
        raise InvalidSettings(
            env_name("audit_account_burst"),
            f"must be from 1 to 1000000 events, not {settings.audit_account_burst}",
        )


def _check_edge(settings: Settings) -> None:
    ranges: tuple[tuple[str, float, float], ...] = (
        ("max_connections", 16, 1_000_000),
        ("listen_backlog", 128, 65_535),
        # Granian takes whole milliseconds from 1 to 60,000.
        ("header_read_timeout_seconds", 0.001, 60),
        ("body_read_timeout_seconds", 0.01, 3600),
    )
    _check_ranges(settings, ranges)


def _check_ranges(settings: Settings, ranges: tuple[tuple[str, float, float], ...]) -> None:
    for name, low, high in ranges:
        if not low <= getattr(settings, name) <= high:
            raise InvalidSettings(name, f"must be from {_plain(low)} to {_plain(high)}")


def _plain(bound: float) -> str:
    """A bound as an operator types it: ``1048576``, ``0.05``; ``:g`` wrote ``1.04858e+06``,
    a number nobody can set (IMAGEJOBS_MAX_HEADER_BYTES must be from 1024 to 1.04858e+06)."""
    return str(int(bound)) if float(bound).is_integer() else repr(float(bound))


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def env_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


def setting_help() -> list[tuple[str, str, str]]:
    """(environment variable, default, description) for every setting, for --help and docs."""
    return [
        (env_name(f.name), "" if f.default in (None, "") else _text(f.default), f.metadata["doc"])
        for f in fields(Settings)
    ]


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from ``environ`` (``IMAGEJOBS_*``), then ``overrides`` that are not None."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in fields(Settings):
        raw = environ.get(env_name(f.name))
        if raw is None or raw == "":
            continue
        values[f.name] = _convert(f.name, f.type, raw)
    values.update({k: v for k, v in overrides.items() if v is not None})
    values = {**PROFILES.get(values.get("serve_profile", ""), {}), **values}
    for name in ("data_dir", "key_file"):
        if name in values:
            values[name] = Path(values[name])
    return Settings(**values)


def _convert(name: str, annotation: Any, raw: str) -> Any:
    if annotation in (int, "int", float, "float"):
        whole = annotation in (int, "int")
        try:
            return int(raw) if whole else float(raw)
        except ValueError:
            kind = "a whole number" if whole else "a number"
            raise InvalidSettings(env_name(name), f"must be {kind}, not {raw!r}") from None
    if annotation in (bool, "bool"):
        if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise InvalidSettings(env_name(name), "must be true or false")
        return raw.lower() in ("true", "1", "yes")
    if annotation in ("Path", Path, "Path | None"):
        return Path(raw)
    if name == "sqlite_synchronous":
        return raw.upper()
    if name == "log_level":  # Python's own names are upper case: WARNING is as good as warning
        return raw.lower()
    return raw


def _check_quotas(settings: Settings) -> None:
    if not -1 <= settings.id_node <= 255:
        raise InvalidSettings("id_node", "must be from -1 to 255")
    for name in ("quota_servers", "quota_jobs_in_flight", "quota_creates_per_second"):
        if not 0 <= getattr(settings, name) <= 1_000_000_000:
            raise InvalidSettings(name, "must be from 0 to 1000000000")
