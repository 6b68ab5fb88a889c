"""The official Huawei Cloud SDK, configured against a local imagejobs server."""

from __future__ import annotations

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkworkspaceapp.v1 import WorkspaceAppClient


def sdk_client(
    base_url: str, project_id: str, ak: str = "LOCALAK", sk: str = "LOCALSK"
) -> WorkspaceAppClient:
    credentials = BasicCredentials(ak, sk, project_id)
    return (
        WorkspaceAppClient.new_builder()
        .with_credentials(credentials)
        .with_endpoints([base_url])
        .build()
    )
