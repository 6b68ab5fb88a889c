"""imagejobs as the WorkspaceApp fake in your test suite (README: "Testing your
application").

    with imagejobs.testing.serve() as cloud:          # a real HTTP server, port chosen by the OS
        tenant = cloud.tenant()                        # a fresh account and project
        client = cloud.client(tenant)                  # the official SDK, configured
        cloud.steer(tenant, completion="reads", reads=3)
        cloud.reset(tenant)

    @imagejobs.testing.mock_workspaceapp               # the SDK in this process, no socket
    def test_it() -> None:
        cloud = imagejobs.testing.active_cloud()

The pytest plugin (fixtures ``imagejobs_cloud``, ``imagejobs_tenant``,
``workspaceapp_client``, marker ``imagejobs``) is ``imagejobs.testing.plugin``.
Names are imported on first use, so that loading the plugin costs nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imagejobs.testing.cloud import Cloud, OperatorError, Tenant
    from imagejobs.testing.mock import active_cloud, mock_workspaceapp
    from imagejobs.testing.server import serve

__all__ = ["Cloud", "OperatorError", "Tenant", "active_cloud", "mock_workspaceapp", "serve"]
_HOMES = {
    "Cloud": "cloud",
    "OperatorError": "cloud",
    "Tenant": "cloud",
    "active_cloud": "mock",
    "mock_workspaceapp": "mock",
    "serve": "server",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'imagejobs.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(f"imagejobs.testing.{_HOMES[name]}"), name)
