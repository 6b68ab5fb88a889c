"""The image-server operations (spec §5): each request that changes a server answers
with the ``job_id`` of the job the engine then runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from msgspec import Struct

from imagejobs.api.operations import LIST_ERRORS, Call, Operation
from imagejobs.api.server_schemas import (
    BatchDeleteImageServerReq,
    CreateImageServerReq,
    CreateServerImageReq,
    ImageServerInfo,
    JobIdInfo,
    ListImageServersResponse,
    UpdateImageServerReq,
    new_image,
    new_server,
    server_info,
    server_page_json,
    server_update,
)
from imagejobs.domain import params as p
from imagejobs.domain import server_params as sp
from imagejobs.domain.records import PageRequest
from imagejobs.domain.servers import ServerFilter


async def _create_image_server(call: Call) -> Struct:
    body: CreateImageServerReq = call.body
    return JobIdInfo(await call.services.servers.create(call.key, new_server(body)))


async def _list_image_servers(call: Call) -> bytes:
    server_filter = ServerFilter(
        server_name=call.params["server_name"] or None,
        server_id=call.params["server_id"] or None,
        enterprise_project_id=call.params["enterprise_project_id"],
    )
    page = PageRequest(offset=call.params["offset"], limit=call.params["limit"])
    result = await call.services.servers.list(call.key, server_filter, page)
    return server_page_json(result.count, result.items)


def _filters_every_server(params: Mapping[str, Any]) -> bool:
    """A name or enterprise project filter tests every server of the project (no index
    serves a substring; at the 10,000-server quota a miss read ~11 ms on SQLite), unless
    the server id picks one."""
    by_filter = bool(params["server_name"]) or params["enterprise_project_id"] is not None
    return by_filter and not params["server_id"]


async def _show_image_server(call: Call) -> Struct:
    server = await call.services.servers.show(call.key, call.params["server_id"])
    return server_info(server)


async def _update_image_server(call: Call) -> None:
    body: UpdateImageServerReq = call.body
    await call.services.servers.update(call.key, call.params["server_id"], server_update(body))


async def _batch_delete_image_server(call: Call) -> Struct:
    body: BatchDeleteImageServerReq = call.body
    job_id = await call.services.servers.batch_delete(call.key, body.items, body.recursive)
    return JobIdInfo(job_id)


async def _recreate_server_image(call: Call) -> Struct:
    body: CreateServerImageReq = call.body
    job_id = await call.services.servers.recreate_image(
        call.key, call.params["server_id"], new_image(body)
    )
    return JobIdInfo(job_id)


_SERVERS = "/v1/{project_id}/image-servers"
SERVERS_TAG = "Image servers"
_ALL_ERRORS = (400, 401, 403, 404, 405, 409, 500, 503)

# BatchDeleteImageServer comes before the PATCH of /image-servers/{server_id}: routes
# match in order, and "actions" would otherwise be taken for a server id.
SERVER_OPERATIONS: tuple[Operation, ...] = (
    Operation(
        operation_id="CreateImageServer",
        method="POST",
        path=_SERVERS,
        action="workspace:imageServer:create",
        summary="Create an image server; answers the ID of its CREATE_SERVER job.",
        tag=SERVERS_TAG,
        handler=_create_image_server,
        body=CreateImageServerReq,
        response=JobIdInfo,
        errors=_ALL_ERRORS,
    ),
    Operation(
        operation_id="ListImageServers",
        method="GET",
        path=_SERVERS,
        action="workspace:imageServer:list",
        summary="Query image servers, newest first.",
        tag=SERVERS_TAG,
        handler=_list_image_servers,
        params=(p.OFFSET, p.LIMIT, sp.SERVER_NAME, sp.SERVER_ID, sp.ENTERPRISE_PROJECT_ID),
        response=ListImageServersResponse,
        errors=LIST_ERRORS,
        scans=_filters_every_server,
    ),
    Operation(
        operation_id="BatchDeleteImageServer",
        method="PATCH",
        path=f"{_SERVERS}/actions/batch-delete",
        action="workspace:imageServer:batchDelete",
        summary=(
            "Delete image servers; answers the ID of a DELETE_SERVER job with one sub-job"
            " per existing server. Unknown IDs are ignored; servers being created or built"
            " are refused."
        ),
        tag=SERVERS_TAG,
        handler=_batch_delete_image_server,
        body=BatchDeleteImageServerReq,
        response=JobIdInfo,
    ),
    Operation(
        operation_id="ShowImageServer",
        method="GET",
        path=f"{_SERVERS}/{{server_id}}",
        action="workspace:imageServer:get",
        summary="Show one image server.",
        tag=SERVERS_TAG,
        handler=_show_image_server,
        params=(sp.SERVER_ID_PATH,),
        response=ImageServerInfo,
    ),
    Operation(
        operation_id="UpdateImageServer",
        method="PATCH",
        path=f"{_SERVERS}/{{server_id}}",
        # No action is published for this API (spec §7.1); chosen in the same family.
        action="workspace:imageServer:update",
        summary="Change an image server's name or description.",
        tag=SERVERS_TAG,
        handler=_update_image_server,
        params=(sp.SERVER_ID_PATH,),
        body=UpdateImageServerReq,
        errors=_ALL_ERRORS,
    ),
    Operation(
        operation_id="RecreateServerImage",
        method="POST",
        path=f"{_SERVERS}/{{server_id}}/actions/recreate-image",
        action="workspace:imageServer:recreate",
        summary=(
            "Build an image from an ACTIVE or BUILT image server; answers the ID of a"
            " CREATE_SERVER_IMAGE job whose sub-job names the new image."
        ),
        tag=SERVERS_TAG,
        handler=_recreate_server_image,
        params=(sp.SERVER_ID_PATH,),
        body=CreateServerImageReq,
        response=JobIdInfo,
        errors=_ALL_ERRORS,
    ),
)
