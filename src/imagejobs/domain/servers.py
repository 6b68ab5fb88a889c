"""Image servers: the records, the statuses they may be acted on from, and their filters.

An image server's status follows its jobs (spec §2.4, §5): CREATING until its
CREATE_SERVER job ends (then ACTIVE, or ERROR), BUILDING while an image is made (then
BUILT), DELETING until its DELETE_SERVER sub-job succeeds (then the row is gone).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from imagejobs.domain.enums import ImageServerStatus
from imagejobs.domain.errors import Conflict, NotFound
from imagejobs.domain.records import RowText, row_of_text

# An image server as the list path reads it: (id, name, description, status, image_ref,
# authorize_accounts, server_group_id, app_group_id, server_id (APS), instance_id,
# image_id, enterprise_project_id, create_time, update_time), the status as stored and
# image_ref and authorize_accounts as their stored JSON. ListImageServers turns these rows
# straight into its body (bench/README.md, Session 8); SQLite hands them over as their
# text (records.RowText).
ServerListRow = tuple[int, str, str, str, str, str, str, str, str, str, str, str, int, int]
ListedServer = ServerListRow | RowText


def server_list_row(row: ListedServer) -> ServerListRow:
    """``row`` as a tuple (a row's text parsed)."""
    return row_of_text(row) if isinstance(row, str) else row


# BatchDeleteImageServer refuses servers with a job in progress (spec §5.5).
UNDELETABLE_STATUSES = frozenset({ImageServerStatus.CREATING, ImageServerStatus.BUILDING})
# A server already being deleted is skipped by a new batch delete, like an unknown id.
SKIPPED_BY_DELETE = frozenset({ImageServerStatus.DELETING})
# RecreateServerImage needs an instance that runs (spec §5.6).
IMAGE_SOURCE_STATUSES = frozenset({ImageServerStatus.ACTIVE, ImageServerStatus.BUILT})


@dataclass(frozen=True, slots=True)
class ImageRef:
    id: str
    image_type: str
    product_id: str = ""
    spce_code: str = ""  # sic: the wire name (spec §3.4)


@dataclass(frozen=True, slots=True)
class AccountInfo:
    account: str
    account_type: str
    domain: str = ""


@dataclass(frozen=True, slots=True)
class ImageServer:
    id: int
    project_id: str
    name: str
    description: str
    status: ImageServerStatus
    image_ref: ImageRef
    authorize_accounts: tuple[AccountInfo, ...]
    create_time: int  # epoch milliseconds
    update_time: int
    server_group_id: str = ""
    app_group_id: str = ""
    server_id: str = ""  # the APS instance id, known once created
    instance_id: str = ""  # the ECS server id, known once created
    image_id: str = ""  # the last image built from this server
    enterprise_project_id: str = "0"
    # The rest of the creation request (network, volume, flavor...), for drivers.
    spec: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ServerFilter:
    server_name: str | None = None  # substring of the name
    server_id: str | None = None  # exact image-server id
    enterprise_project_id: str | None = None


@dataclass(frozen=True, slots=True)
class ServerUpdate:
    name: str | None = None
    description: str | None = None


def default_project(enterprise_project_id: str | None) -> str:
    """Empty or absent means the default enterprise project, ``"0"`` (spec §3.3)."""
    return enterprise_project_id or "0"


class ServerNotFound(NotFound):
    """The image server does not exist."""


class ServerNameTaken(Conflict):
    """An image server of this name already exists in the project."""


class ServerBusy(Conflict):
    """The image server's status does not allow this operation now."""


@dataclass(frozen=True, slots=True)
class NewServer:
    """A validated CreateImageServer request."""

    name: str
    image_ref: ImageRef
    authorize_accounts: tuple[AccountInfo, ...]
    description: str = ""
    enterprise_project_id: str = "0"
    spec: Mapping[str, Any] = field(default_factory=dict)  # the whole request, as sent


@dataclass(frozen=True, slots=True)
class NewImage:
    """A validated RecreateServerImage request."""

    name: str
    description: str = ""
    execute_sysprep: bool = False
