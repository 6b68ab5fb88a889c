"""Use cases, independent of how they are shown (REST API, console, CLI)."""

from __future__ import annotations

from dataclasses import dataclass

from imagejobs.services.engine import EngineService
from imagejobs.services.jobs import JobService
from imagejobs.services.project_keys import ProjectKeys
from imagejobs.services.protection import DeepReadBudget
from imagejobs.services.servers import ServerService
from imagejobs.services.steering import SteeringService


@dataclass(frozen=True, slots=True)
class Services:
    """Every use case the adapters (API, console, CLI) may call."""

    jobs: JobService
    servers: ServerService
    steering: SteeringService
    engine: EngineService
    # Each project's storage key: what every store is given as the project's id.
    keys: ProjectKeys
    # Deep pages one account may read at once (None: no bound).
    deep_reads: DeepReadBudget | None = None
