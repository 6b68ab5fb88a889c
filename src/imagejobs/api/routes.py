"""Every public operation the API serves, gathered from the per-area route tables."""

from __future__ import annotations

from imagejobs.api.operations import OPERATIONS as JOB_OPERATIONS
from imagejobs.api.operations import Operation
from imagejobs.api.server_operations import SERVER_OPERATIONS

ALL_OPERATIONS: tuple[Operation, ...] = JOB_OPERATIONS + SERVER_OPERATIONS
