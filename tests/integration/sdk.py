"""The official Huawei Cloud SDK, configured against a local imagejobs server."""

from __future__ import annotations

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkworkspaceapp.v1 import WorkspaceAppClient

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
