"""The official Huawei Cloud SDK, configured against a local imagejobs server."""

from __future__ import annotations

import uuid

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkworkspaceapp.v1 import (
    CreateImageServerReq,
    CreateImageServerRequest,
    ImageAccountInfo,
    ImageRef,
    Volume,
    WorkspaceAppClient,
)

from tests.factories import Tenant


def sdk_client(
    base_url: str,
    tenant: Tenant,
    *,
    access_key: str | None = None,
    secret_key: str | None = None,
    project_id: str | None = None,
) -> WorkspaceAppClient:
    credentials = BasicCredentials(
        access_key or tenant.access_key,
        secret_key or tenant.secret_key,
        project_id or tenant.project_id,
    )
    return (
        WorkspaceAppClient.new_builder()
        .with_credentials(credentials)
        .with_endpoints([base_url])
        .build()
    )


def create_server_request(name: str | None = None) -> CreateImageServerRequest:
    """A valid CreateImageServer request (the API reference's example, public image)."""
    body = CreateImageServerReq(
        name=name or f"srv-{uuid.uuid4().hex[:10]}",
        root_volume=Volume(type="SAS", size=80),
        image_ref=ImageRef(id="da02e5ca-c6ec-4685-8ecb-f116bb5bdd2c", image_type="public"),
        vpc_id="59785ba5-e5d5-4836-b9de-19f22ac15175",
        subnet_id="a5842cb4-5718-4b0a-8b27-3a3e9c74f977",
        product_id="workspace.x86.performance.xlarge4",
        authorize_accounts=[ImageAccountInfo(account="administrator", account_type="USER")],
    )
    return CreateImageServerRequest(body=body)
