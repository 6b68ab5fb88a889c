"""The image-server row changes a recorded result makes (a server follows its sub-job),
written by the engine's result transaction (engine_store.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from imagejobs.domain.enums import ImageServerStatus
from imagejobs.domain.lifecycle import ServerChange
from imagejobs.storage.database import Transaction
from imagejobs.storage.rows_statement import RowsStatement

CHANGE_SERVERS = RowsStatement(
    "UPDATE image_servers SET status = :status,"
    " aps_server_id = COALESCE(:aps_server_id, aps_server_id),"
    " instance_id = COALESCE(:instance_id, instance_id),"
    " image_id = COALESCE(:image_id, image_id), update_time = :now WHERE id = :id",
    "UPDATE image_servers SET status = v.status,"
    " aps_server_id = COALESCE(v.aps_server_id, image_servers.aps_server_id),"
    " instance_id = COALESCE(v.instance_id, image_servers.instance_id),"
    " image_id = COALESCE(v.image_id, image_servers.image_id), update_time = :now"
    " FROM unnest({id}, {status}, {aps_server_id}, {instance_id}, {image_id})"
    " AS v (id, status, aps_server_id, instance_id, image_id) WHERE image_servers.id = v.id",
    {
        "id": "BIGINT",
        "status": "TEXT",
        "aps_server_id": "TEXT",
        "instance_id": "TEXT",
        "image_id": "TEXT",
    },
)
DELETE_SERVERS = RowsStatement(
    "DELETE FROM image_servers WHERE id = :id",
    "DELETE FROM image_servers WHERE id = ANY({id})",
    {"id": "BIGINT"},
)
_FIELD_COLUMNS = {
    "server_id": "aps_server_id",
    "instance_id": "instance_id",
    "image_id": "image_id",
}


async def apply_server_changes(
    tx: Transaction, changes: Sequence[ServerChange], now: int, dialect: str
) -> None:
    """Make each server follow its sub-job's result (in that result's transaction)."""
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
    await CHANGE_SERVERS.run(tx, dialect, changed)
    await DELETE_SERVERS.run(tx, dialect, deleted)
