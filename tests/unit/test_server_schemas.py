"""Image-server request bodies: every rule of spec §3.4 and §5, with Java regex semantics."""

from __future__ import annotations

import copy
from typing import Any

import msgspec
import pytest

from imagejobs.api.endpoint import decode_body
from imagejobs.api.server_schemas import (
    CreateImageServerReq,
    CreateServerImageReq,
    UpdateImageServerReq,
    new_server,
)
from imagejobs.domain.errors import InvalidParameter

VALID: dict[str, Any] = {
    "name": "镜像任务0508",
    "description": "测试镜像创建。",
    "root_volume": {"size": 60, "type": "SATA"},
    "image_ref": {
        "id": "da02e5ca-c6ec-4685-8ecb-f116bb5bdd2c",
        "image_type": "gold",
        "product_id": "OFFI874943784560095232",
        "spce_code": "90a6e84bb3e822fe54999b6be5bbae1e",
    },
    "vpc_id": "59785ba5-e5d5-4836-b9de-19f22ac15175",
    "subnet_id": "a5842cb4-5718-4b0a-8b27-3a3e9c74f977",
    "product_id": "workspace.x86.performance.xlarge4",
    "authorize_accounts": [
        {"account": "administrator", "account_type": "USER", "domain": "wksapp.huawei.com"}
    ],
    "attach_apps": [],
    "availability_zone": "",
    "is_vdi": True,
}


def decode(body: dict[str, Any]) -> CreateImageServerReq:
    result: CreateImageServerReq = decode_body(msgspec.json.encode(body), CreateImageServerReq)
    return result


def with_change(path: str, value: Any) -> dict[str, Any]:
    body = copy.deepcopy(VALID)
    target = body
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if value is _DELETE:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return body


_DELETE = object()


def test_the_documented_example_is_valid() -> None:
    request = new_server(decode(VALID))
    assert request.name == "镜像任务0508"
    assert request.image_ref.spce_code == "90a6e84bb3e822fe54999b6be5bbae1e"
    assert request.enterprise_project_id == "0"
    assert request.spec["root_volume"] == {"type": "SATA", "size": 60}
    assert "flavor_id" not in request.spec  # unset fields are not invented


@pytest.mark.parametrize(
    ("path", "value", "parameter"),
    [
        ("name", "", "name"),
        ("name", "a" * 65, "name"),
        ("name", "has space", "name"),
        ("name", "café", "name must be"),  # Java's \w is ASCII-only
        ("name", "trailing\n", "name must be"),  # Java's matches() needs the whole value
        ("name", 5, "name"),
        ("name", _DELETE, "name is required"),
        ("description", "d" * 256, "description"),
        ("root_volume.size", 65, "root_volume.size"),
        ("root_volume.size", 0, "root_volume.size"),
        ("root_volume.size", 40_000, "root_volume.size"),
        ("root_volume.type", "NVME", "root_volume.type"),
        ("image_ref.image_type", "market", "image_ref.image_type"),
        ("image_ref.spce_code", "", "image_ref"),  # required for gold
        ("image_ref.product_id", "has space", "image_ref"),
        ("image_ref.id", "", "image_ref.id"),
        ("vpc_id", "v" * 129, "vpc_id"),
        ("subnet_id", "", "subnet_id"),
        ("product_id", _DELETE, "product_id is required"),
        ("authorize_accounts", [], "authorize_accounts"),
        ("authorize_accounts.0.account_type", "ADMIN", "authorize_accounts[0].account_type"),
        ("authorize_accounts.0.domain", "d" * 65, "authorize_accounts[0].domain"),
        ("attach_apps", ["a"] * 101, "attach_apps"),
        ("extra_session_type", "TPU", "extra_session_type"),
        ("extra_session_size", 0, "extra_session_size"),
        ("route_policy", {"cpu_threshold": 101}, "route_policy.cpu_threshold"),
        ("scheduler_hints", {"tenancy": ""}, "scheduler_hints.tenancy"),
        ("tags", [{"key": "a_sys_b", "value": "x"}], "tags[0]"),
        ("tags", [{"key": "ends ", "value": "x"}], "tags[0]"),
        ("tags", [{"key": "k", "value": "v<script>"}], "tags[0]"),
        ("tags", [{"key": "k"}, {"key": "k"}], "tags must not repeat a key"),
        ("is_vdi", "yes", "is_vdi"),
    ],
)
def test_invalid_bodies_are_refused_naming_the_field(path: str, value: Any, parameter: str) -> None:
    with pytest.raises(InvalidParameter) as caught:
        decode(with_change(path, value))
    # Checks across fields (Java patterns, gold images, unique tag keys) name the field
    # in the message; msgspec's own checks also give it as the parameter.
    assert parameter in caught.value.message


@pytest.mark.parametrize(
    ("body_type", "body", "message"),
    [
        # msgspec's own pattern check and the Java-semantics one say the same, in words.
        (
            UpdateImageServerReq,
            {"name": "my server!"},
            "name must be 1 to 64 characters: Chinese characters, letters, digits, - and _",
        ),
        (
            UpdateImageServerReq,
            {"name": "café"},
            "name must be 1 to 64 characters: Chinese characters, letters, digits, - and _",
        ),
        (
            CreateServerImageReq,
            {"name": " leading"},
            "name must be 1 to 128 letters, digits, spaces, Chinese characters or -._,",
        ),
        (
            CreateImageServerReq,
            with_change("image_ref.spce_code", ""),
            "image_ref.spce_code is required for a gold (KooGallery) image",
        ),
    ],
)
def test_a_value_breaking_a_pattern_is_refused_with_the_rule_in_words(
    body_type: type[Any], body: dict[str, Any], message: str
) -> None:
    """A person reads these (the console's form, the CLI's flags): the rule in words, with
    the field named once, never the regular expression nor the field in backquotes."""
    with pytest.raises(InvalidParameter) as caught:
        decode_body(msgspec.json.encode(body), body_type)
    assert message in caught.value.message
    assert "^" not in caught.value.message
    assert "`" not in caught.value.message


def test_java_word_characters_and_cjk_are_accepted() -> None:
    for name in ("a", "A-b_9", "中文名称", "x" * 64):
        assert decode(with_change("name", name)).name == name
    tags = [{"key": "项目 1", "value": "值:/=+-@"}, {"key": "env"}]
    assert decode(with_change("tags", tags)).tags is not None


def test_update_and_recreate_bodies() -> None:
    assert decode_body(b"{}", UpdateImageServerReq) == UpdateImageServerReq()
    with pytest.raises(InvalidParameter):
        decode_body(b'{"name": "bad name"}', UpdateImageServerReq)
    ok = decode_body(b'{"name": "image 0508.v-1", "description": "x"}', CreateServerImageReq)
    assert ok.name == "image 0508.v-1"
    for bad in (
        b'{"name": " leading"}',
        b'{"name": "trailing "}',
        b'{"name": ""}',
        b'{"name": "' + b"n" * 129 + b'"}',
        b'{"name": "ok", "description": "<b>"}',
        b'{"name": "ok", "description": "two\\nlines"}',
        b"{}",
    ):
        with pytest.raises(InvalidParameter):
            decode_body(bad, CreateServerImageReq)
