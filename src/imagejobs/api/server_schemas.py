"""Wire bodies of the image-server APIs (spec §3.3, §3.4, §5) as msgspec structs: they
validate requests, encode responses and are the source of the OpenAPI schemas.

The spec's patterns are Java regular expressions. Each is kept verbatim in the schema
(JSON Schema's ECMA-262 reads ``\\w`` as ASCII too) and also checked with Java's
semantics in ``__post_init__``: the whole value must match (``String.matches``), and
``\\w``/``\\S`` are ASCII-only (``re.ASCII``), with the CJK range spelled out (§9.16).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from functools import cache
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from imagejobs.api.schemas import DateTime, PageBodies, encoder, pattern_rule
from imagejobs.domain.enums import ImageServerStatus
from imagejobs.domain.servers import (
    AccountInfo,
    ImageServer,
    ListedServer,
    NewImage,
    NewServer,
    ServerUpdate,
    default_project,
    server_list_row,
)
from imagejobs.domain.servers import ImageRef as ImageRefRecord
from imagejobs.domain.times import format_time

NAME_RULE = "1 to 64 characters: Chinese characters, letters, digits, - and _"
IMAGE_NAME_RULE = (
    "1 to 128 letters, digits, spaces, Chinese characters or -._, not starting or ending with"
    " a space"
)
IMAGE_DESCRIPTION_RULE = "1024 characters or less, without <, >, line breaks or a leading space"
NON_SPACE_RULE = "100 characters or less, no spaces"
SERVER_NAME_PATTERN = pattern_rule(
    r"^(?! +$)[\w\u4e00-\u9fa5\u002d_][\w\u4e00-\u9fa5\u002d_]{0,63}$", NAME_RULE
)
IMAGE_NAME_PATTERN = pattern_rule(
    r"^(?! +)[\ \.\-\w\u4e00-\u9fa5]{0,127}[\.\-\w\u4e00-\u9fa5]$", IMAGE_NAME_RULE
)
IMAGE_DESCRIPTION_PATTERN = pattern_rule(r"^(?! +)[^\r\n<>]{0,1024}$", IMAGE_DESCRIPTION_RULE)
NON_SPACE_PATTERN = pattern_rule(r"^\S{0,100}$", NON_SPACE_RULE)
TAG_KEY_PATTERN = r"^((?!_sys_)[\p{L}\p{Z}\p{N}_.:=+\-@]{1,128})(?<!\s)$"
TAG_VALUE_PATTERN = r"^([\p{L}\p{Z}\p{N}_.:/=+\-@]{0,255})$"


@cache
def _java(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.ASCII)


def _require(field: str, pattern: str, value: str | None, what: str) -> None:
    if value is not None and _java(pattern).fullmatch(value) is None:
        raise ValueError(f"`{field}` must be {what}")


def _length(low: int, high: int, description: str = "") -> Any:
    return Meta(min_length=low, max_length=high, description=description or None)


def _pattern(pattern: str, description: str = "") -> Any:
    return Meta(pattern=pattern, description=description or None)


ServerName = Annotated[
    str,
    _length(1, 64),
    _pattern(SERVER_NAME_PATTERN, "Chinese characters, letters, digits, - and _."),
]
Id128 = Annotated[str, _length(1, 128)]
NonSpace100 = Annotated[str, _pattern(NON_SPACE_PATTERN)]


class ImageRef(Struct, kw_only=True):
    id: Annotated[str, _length(1, 128, "Image ID.")]
    image_type: Literal["gold", "public", "private", "shared", "other"]
    product_id: Annotated[NonSpace100, Meta(description="Required for gold images.")] = ""
    spce_code: Annotated[NonSpace100, Meta(description="Required for gold images.")] = ""

    def __post_init__(self) -> None:
        for name in ("product_id", "spce_code"):
            _require(name, NON_SPACE_PATTERN, getattr(self, name), NON_SPACE_RULE)
            if self.image_type == "gold" and not getattr(self, name):
                raise ValueError(f"`{name}` is required for a gold (KooGallery) image")


class ImageAccountInfo(Struct, kw_only=True):
    account: Annotated[str, _length(1, 128)]
    account_type: Literal["USER", "USER_GROUP"]
    domain: Annotated[str, _length(0, 64)] = ""


class Volume(Struct, kw_only=True):
    type: Literal["ESSD", "SSD", "GPSSD", "SAS", "SATA"]
    size: Annotated[int, Meta(ge=10, le=32768, multiple_of=10, description="GB.")]
    cluster_id: Annotated[str, _length(0, 255)] | None = None


class RoutePolicy(Struct, kw_only=True):
    max_session: Annotated[int, Meta(ge=1, le=1024)] | None = None
    cpu_threshold: Annotated[int, Meta(ge=1, le=100)] | None = None
    mem_threshold: Annotated[int, Meta(ge=1, le=100)] | None = None


class WdhParam(Struct, kw_only=True):
    dedicated_host_id: Annotated[str, _length(0, 255)] | None = None
    tenancy: Annotated[str, _length(1, 255)] | None = None


def _tag_text(text: str, extra: str) -> bool:
    """Letters, separators, numbers (Unicode: \\p{L}, \\p{Z}, \\p{N}) or ``extra``."""
    return all(c in extra or unicodedata.category(c)[0] in "LZN" for c in text)


class TmsTag(Struct, kw_only=True):
    # \p{...} classes are not ECMA-262 (JSON Schema) syntax: the pattern is described.
    key: Annotated[str, Meta(description=f"Java pattern {TAG_KEY_PATTERN}")]
    value: Annotated[str, Meta(description=f"Java pattern {TAG_VALUE_PATTERN}")] = ""

    def __post_init__(self) -> None:
        key_ok = (
            1 <= len(self.key) <= 128
            and _tag_text(self.key, "_.:=+-@")
            and "_sys_" not in self.key
            and not self.key[-1].isspace()
        )
        if not key_ok:
            raise ValueError(
                "`key` must be 1 to 128 letters, digits, spaces or _.:=+-@, not end with a"
                " space and not contain _sys_"
            )
        if not (len(self.value) <= 255 and _tag_text(self.value, "_.:/=+-@")):
            raise ValueError("`value` must be 0 to 255 letters, digits, spaces or _.:/=+-@")


class CreateImageServerReq(Struct, kw_only=True):
    name: ServerName
    description: Annotated[str, _length(0, 255)] = ""
    root_volume: Volume
    image_ref: ImageRef
    vpc_id: Id128
    subnet_id: Id128
    product_id: Annotated[str, _length(1, 128, "Product package, e.g. workspace.x86.a.b.")]
    flavor_id: Annotated[str, _length(1, 255)] | None = None
    availability_zone: Annotated[str, _length(0, 255)] | None = None
    attach_apps: Annotated[list[Id128], Meta(max_length=100)] | None = None
    authorize_accounts: Annotated[list[ImageAccountInfo], Meta(min_length=1, max_length=1)]
    ou_name: Annotated[str, _length(0, 255)] | None = None
    is_vdi: bool | None = None
    scheduler_hints: WdhParam | None = None
    extra_session_type: Literal["GPU", "CPU"] | None = None
    extra_session_size: Annotated[int, Meta(ge=1, le=10000)] | None = None
    route_policy: RoutePolicy | None = None
    tags: Annotated[list[TmsTag], Meta(max_length=20)] | None = None
    enterprise_project_id: Annotated[str, _length(0, 64)] | None = None

    def __post_init__(self) -> None:
        _require("name", SERVER_NAME_PATTERN, self.name, NAME_RULE)
        keys = [tag.key for tag in self.tags or ()]
        if len(keys) != len(set(keys)):
            raise ValueError("`tags` must not repeat a key")


class UpdateImageServerReq(Struct, kw_only=True):
    name: ServerName | None = None
    description: Annotated[str, _length(0, 255)] | None = None

    def __post_init__(self) -> None:
        _require("name", SERVER_NAME_PATTERN, self.name, NAME_RULE)


class BatchDeleteImageServerReq(Struct, kw_only=True):
    items: Annotated[list[Id128], Meta(min_length=1, max_length=20)]
    recursive: bool = False


class CreateServerImageReq(Struct, kw_only=True):
    name: Annotated[str, _pattern(IMAGE_NAME_PATTERN, "1 to 128 characters.")]
    description: Annotated[str, _pattern(IMAGE_DESCRIPTION_PATTERN)] = ""
    enterprise_project_id: Annotated[str, _length(0, 64)] | None = None
    execute_sysprep: bool | None = None

    def __post_init__(self) -> None:
        _require("name", IMAGE_NAME_PATTERN, self.name, IMAGE_NAME_RULE)
        _require("description", IMAGE_DESCRIPTION_PATTERN, self.description, IMAGE_DESCRIPTION_RULE)


class ImageServerInfo(Struct, kw_only=True):
    """An image server (the ListImageServers item and the ShowImageServer body)."""

    id: str
    name: str
    description: str
    image_ref: ImageRef
    server_group_id: str
    app_group_id: str
    server_id: Annotated[str, Meta(description="APS instance ID; empty while creating.")]
    instance_id: Annotated[str, Meta(description="ECS server ID; empty while creating.")]
    image_id: Annotated[str, Meta(description="ID of the last image built; empty if none.")]
    status: ImageServerStatus
    authorize_accounts: list[ImageAccountInfo]
    create_time: DateTime
    update_time: DateTime
    enterprise_project_id: str


class ListImageServersResponse(Struct):
    count: Annotated[int, Meta(description="Total number of image servers matching.")]
    items: list[ImageServerInfo]


class JobIdInfo(Struct):
    job_id: Annotated[str, Meta(description="ID of the job started (18 digits).")]


# --- wire <-> records -----------------------------------------------------------------------


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def new_server(body: CreateImageServerReq) -> NewServer:
    image_ref = body.image_ref
    return NewServer(
        name=body.name,
        description=body.description,
        image_ref=ImageRefRecord(
            image_ref.id, image_ref.image_type, image_ref.product_id, image_ref.spce_code
        ),
        authorize_accounts=tuple(
            AccountInfo(a.account, a.account_type, a.domain) for a in body.authorize_accounts
        ),
        enterprise_project_id=default_project(body.enterprise_project_id),
        spec=_without_nulls(msgspec.to_builtins(body)),
    )


def server_update(body: UpdateImageServerReq) -> ServerUpdate:
    return ServerUpdate(name=body.name, description=body.description)


def new_image(body: CreateServerImageReq) -> NewImage:
    return NewImage(body.name, body.description, bool(body.execute_sysprep))


# Each listed server's JSON, by its row (ListedServer); bounded as schemas._ROW_JSON.
_SERVER_JSON: dict[ListedServer, str] = {}
_SERVER_JSON_MAX = 4096  # rows of ~0.7 kB
_SERVER_PAGES = PageBodies()


def server_page_json(count: int, rows: Sequence[ListedServer]) -> bytes:
    """``encoder.encode(ListImageServersResponse(count, [server_info(...) ...]))``, byte
    for byte, straight from the rows (as schemas.job_page_json): a server's three JSON
    decodes and its wire structs were most of a request."""
    return _SERVER_PAGES.page(count, rows, _SERVER_JSON, _server_row_json)


def _server_row_json(row: ListedServer) -> str:
    r = server_list_row(row)
    server = ImageServer(
        id=r[0],
        project_id="",  # not shown
        name=r[1],
        description=r[2],
        status=ImageServerStatus(r[3]),
        image_ref=msgspec.json.decode(r[4], type=ImageRefRecord),
        authorize_accounts=msgspec.json.decode(r[5], type=tuple[AccountInfo, ...]),
        server_group_id=r[6],
        app_group_id=r[7],
        server_id=r[8],
        instance_id=r[9],
        image_id=r[10],
        enterprise_project_id=r[11],
        create_time=r[12],
        update_time=r[13],
    )
    text = encoder.encode(server_info(server)).decode()
    if len(_SERVER_JSON) >= _SERVER_JSON_MAX:
        _SERVER_JSON.clear()
    _SERVER_JSON[row] = text
    return text


def server_info(server: ImageServer) -> ImageServerInfo:
    # The records keep plain strings; the wire structs type them (enums as Literals).
    ref = msgspec.convert(msgspec.to_builtins(server.image_ref), ImageRef)
    accounts = msgspec.convert(
        msgspec.to_builtins(server.authorize_accounts), list[ImageAccountInfo]
    )
    return ImageServerInfo(
        id=str(server.id),
        name=server.name,
        description=server.description,
        image_ref=ref,
        server_group_id=server.server_group_id,
        app_group_id=server.app_group_id,
        server_id=server.server_id,
        instance_id=server.instance_id,
        image_id=server.image_id,
        status=server.status,
        authorize_accounts=accounts,
        create_time=format_time(server.create_time),
        update_time=format_time(server.update_time),
        enterprise_project_id=server.enterprise_project_id,
    )
