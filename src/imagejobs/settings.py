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
    log_level: str = field(default="info", metadata=_doc("debug, info, warning or error."))
    sqlite_synchronous: str = field(
        default="NORMAL",
        metadata=_doc(
            "SQLite PRAGMA synchronous: NORMAL survives any process crash; FULL also "
            "survives power loss, at the cost of an fsync per commit."
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
        if self.sqlite_synchronous not in _SYNCHRONOUS:
            raise InvalidSettings("sqlite_synchronous", f"must be one of {', '.join(_SYNCHRONOUS)}")

    def to_environ(self) -> dict[str, str]:
        """The settings as environment variables, for child processes (server workers)."""
        return {env_name(f.name): str(getattr(self, f.name)) for f in fields(self)}


def env_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


def setting_help() -> list[tuple[str, str, str]]:
    """(environment variable, default, description) for every setting, for --help and docs."""
    return [(env_name(f.name), str(f.default), f.metadata.get("doc", "")) for f in fields(Settings)]


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
    if "data_dir" in values:
        values["data_dir"] = Path(values["data_dir"])
    return Settings(**values)


def _convert(name: str, annotation: Any, raw: str) -> Any:
    if annotation in (int, "int"):
        try:
            return int(raw)
        except ValueError:
            raise InvalidSettings(env_name(name), "must be an integer") from None
    if annotation in ("Path", Path):
        return Path(raw)
    if name == "sqlite_synchronous":
        return raw.upper()
    return raw
