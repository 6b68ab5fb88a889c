"""The image-server row changes a recorded result makes (a server follows its sub-job),
written by the engine's result transaction (engine_store.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from imagejobs.domain.enums import ImageServerStatus
from imagejobs.domain.lifecycle import ServerChange
from imagejobs.storage.database import Statement, Transaction

CHANGE_SERVER = Statement(
    "UPDATE image_servers SET status = :status,"
    " aps_server_id = COALESCE(:aps_server_id, aps_server_id),"
    " instance_id = COALESCE(:instance_id, instance_id),"
    " image_id = COALESCE(:image_id, image_id), update_time = :now WHERE id = :id"
)
DELETE_SERVER = Statement("DELETE FROM image_servers WHERE id = :id")
_FIELD_COLUMNS = {
    "server_id": "aps_server_id",
    "instance_id": "instance_id",
    "image_id": "image_id",
}


def server_rows(
    changes: Sequence[ServerChange], now: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The parameters of CHANGE_SERVER and of DELETE_SERVER for these changes, by id."""
    deleted: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    for change in sorted(changes, key=lambda c: c.server_id):
        if change.delete:
            deleted.append({"id": change.server_id})
            continue
        params: dict[str, Any] = dict.fromkeys(_FIELD_COLUMNS.values())
        params.update({_FIELD_COLUMNS[k]: v for k, v in change.fields.items()})
        status = change.status or ImageServerStatus.NULL
        params.update({"id": change.server_id, "status": status.value, "now": now})
        changed.append(params)
    return changed, deleted


async def apply_server_changes(tx: Transaction, changes: Sequence[ServerChange], now: int) -> None:
    """Make each server follow its sub-job's result (in that result's transaction)."""
    changed, deleted = server_rows(changes, now)
    if changed:
        await tx.execute_many(CHANGE_SERVER, changed)
    if deleted:
        await tx.execute_many(DELETE_SERVER, deleted)
