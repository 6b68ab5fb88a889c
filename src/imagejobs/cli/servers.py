"""``imagejobs servers``: image servers of a running service, over its public API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from imagejobs.cli.client_options import (
    CLIENT_EPILOG,
    EXIT_USAGE,
    ClientExit,
    Context,
    api_command,
    api_list_command,
)
from imagejobs.cli.tables import echo_fields, echo_table, page_footer, short_time


@click.group(epilog=CLIENT_EPILOG)
def servers() -> None:
    """Create, list, show, update, delete image servers and build images from them."""


def _started(ctx: Context, answer: dict[str, Any], what: str) -> None:
    if ctx.as_json:
        ctx.emit_json(answer)
    else:
        click.echo(answer["job_id"])
        click.echo(f"{what}: follow it with `imagejobs jobs watch {answer['job_id']}`", err=True)


def _body_from_file(path: Path) -> dict[str, Any]:
    try:
        body = json.loads(click.open_file(str(path)).read())
    except (OSError, ValueError) as exc:
        raise ClientExit(f"cannot read a JSON body from {path}: {exc}", EXIT_USAGE) from None
    if not isinstance(body, dict):
        raise ClientExit(f"{path} must hold a JSON object", EXIT_USAGE)
    return body


@servers.command("create", epilog=CLIENT_EPILOG)
@click.option("--name", help="Server name (1-64 letters, digits, - and _).")
@click.option("--description", default=None, help="Up to 255 characters.")
@click.option("--image-id", help="Image to start from.")
@click.option(
    "--image-type",
    default="public",
    show_default=True,
    help="gold, public, private, shared or other.",
)
@click.option("--product-id", help="Product package, e.g. workspace.x86.a.b.")
@click.option("--vpc-id", help="VPC the server is in.")
@click.option("--subnet-id", help="Subnet of that VPC.")
@click.option(
    "--volume-type",
    default="SSD",
    show_default=True,
    help="System disk: ESSD, SSD, GPSSD, SAS or SATA.",
)
@click.option(
    "--volume-size",
    type=int,
    default=80,
    show_default=True,
    help="System disk size in GB (10 to 32768, a multiple of 10).",
)
@click.option("--account", help="The account the server is authorized to (USER).")
@click.option(
    "--body",
    type=click.Path(dir_okay=False, path_type=Path, allow_dash=True),
    help="A CreateImageServer JSON body ('-': stdin); the flags above override its fields.",
)
@api_command
def create_server(
    ctx: Context,
    name: str | None,
    description: str | None,
    image_id: str | None,
    image_type: str,
    product_id: str | None,
    vpc_id: str | None,
    subnet_id: str | None,
    volume_type: str,
    volume_size: int,
    account: str | None,
    body: Path | None,
) -> None:
    """Create an image server; prints the ID of its CREATE_SERVER job (CreateImageServer)."""
    request = _body_from_file(body) if body else {}
    fields = {
        "name": name,
        "description": description,
        "product_id": product_id,
        "vpc_id": vpc_id,
        "subnet_id": subnet_id,
    }
    request |= {k: v for k, v in fields.items() if v is not None}
    if image_id is not None:
        request["image_ref"] = {"id": image_id, "image_type": image_type}
    request.setdefault("root_volume", {"type": volume_type, "size": volume_size})
    if account is not None:
        request["authorize_accounts"] = [{"account": account, "account_type": "USER"}]
    missing = [flag for field, flag in _REQUIRED_FLAGS.items() if field not in request]
    if missing:  # named as flags: the API would say "image_ref is required"
        also = " (or give those fields in --body)" if body is None else ""
        raise ClientExit(f"missing {', '.join(missing)}{also}", EXIT_USAGE)
    _started(ctx, ctx.client.call("CreateImageServer", body=request), "Creating the server")


# CreateImageServer's required fields, and the flag that gives each.
_REQUIRED_FLAGS = {
    "name": "--name",
    "image_ref": "--image-id",
    "product_id": "--product-id",
    "vpc_id": "--vpc-id",
    "subnet_id": "--subnet-id",
    "authorize_accounts": "--account",
}


@servers.command("list", epilog=CLIENT_EPILOG)
@click.option("--server-name", default=None, help="Servers whose name contains this.")
@click.option("--server-id", default=None, help="The server with this ID.")
@click.option("--offset", type=int, default=None, help="Items to skip.")
@click.option("--limit", type=int, default=None, help="Items per page (1-100).")
@api_list_command
def list_servers(
    ctx: Context,
    server_name: str | None,
    server_id: str | None,
    offset: int | None,
    limit: int | None,
) -> None:
    """Image servers, newest first (ListImageServers)."""
    query = {"server_name": server_name, "server_id": server_id, "offset": offset, "limit": limit}
    page = ctx.client.call("ListImageServers", query=query)
    if ctx.emitted_page(page):
        return
    echo_table(
        ["ID", "NAME", "STATUS", "IMAGE", "CREATED (UTC)"],
        [
            [s["id"], s["name"], s["status"], _image_of(s), short_time(s.get("create_time"))]
            for s in page["items"]
        ],
    )
    page_footer(offset, len(page["items"]), page["count"])


def _image_of(server: dict[str, Any]) -> str:
    image = server.get("image_ref") or {}
    return str(image.get("id") or "-")


@servers.command("show", epilog=CLIENT_EPILOG)
@click.argument("server_id")
@api_command
def show_server(ctx: Context, server_id: str) -> None:
    """One image server (ShowImageServer)."""
    server = ctx.client.call("ShowImageServer", path={"server_id": server_id})
    if ctx.as_json:
        ctx.emit_json(server)
        return
    echo_fields(
        [
            (key, json.dumps(value) if isinstance(value, dict | list) else value)
            for key, value in server.items()
        ]
    )


@servers.command("delete", epilog=CLIENT_EPILOG)
@click.argument("server_ids", nargs=-1, required=True)
@click.option("--recursive", is_flag=True, help="Also delete the images built from them.")
@api_command
def delete_servers(ctx: Context, server_ids: tuple[str, ...], recursive: bool) -> None:
    """Delete image servers; prints the ID of the DELETE_SERVER job (BatchDeleteImageServer)."""
    body = {"items": list(server_ids), "recursive": recursive}
    answer = ctx.client.call("BatchDeleteImageServer", body=body)
    _started(ctx, answer, "Deleting")
    # The API ignores unknown IDs (and servers already DELETING) and still answers a job:
    # say so, or a mistyped ID looks deleted.
    job = ctx.client.call("ShowImageJob", path={"job_id": answer["job_id"]})
    skipped = len(set(server_ids)) - job["sub_jobs_total"]
    if skipped > 0:
        click.echo(
            f"Warning: {skipped} of the {len(set(server_ids))} server IDs matched no server"
            " that could be deleted (unknown, or already being deleted): nothing done for"
            " them.",
            err=True,
        )


@servers.command("update", epilog=CLIENT_EPILOG)
@click.argument("server_id")
@click.option("--name", default=None, help="New name (1-64 letters, digits, - and _).")
@click.option("--description", default=None, help="New description (up to 255 characters).")
@api_command
def update_server(ctx: Context, server_id: str, name: str | None, description: str | None) -> None:
    """Rename an image server or change its description (UpdateImageServer)."""
    body = {k: v for k, v in {"name": name, "description": description}.items() if v is not None}
    if not body:
        raise ClientExit("nothing to update: pass --name, --description or both", EXIT_USAGE)
    ctx.client.call("UpdateImageServer", path={"server_id": server_id}, body=body)
    if ctx.as_json:
        ctx.emit_json(ctx.client.call("ShowImageServer", path={"server_id": server_id}))
    else:
        click.echo(f"Updated {server_id}.", err=True)


@servers.command("recreate-image", epilog=CLIENT_EPILOG)
@click.argument("server_id")
@click.option("--name", required=True, help="Name of the new image (1 to 128 characters).")
@click.option("--description", default=None, help="Up to 1024 characters.")
@api_command
def recreate_image(ctx: Context, server_id: str, name: str, description: str | None) -> None:
    """Build an image from a server; prints the CREATE_SERVER_IMAGE job ID (RecreateServerImage)."""
    body = {"name": name} | ({"description": description} if description is not None else {})
    answer = ctx.client.call("RecreateServerImage", path={"server_id": server_id}, body=body)
    _started(ctx, answer, "Building the image")
