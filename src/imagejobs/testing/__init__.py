"""imagejobs as the WorkspaceApp fake in your test suite (docs: README, "Testing your
application").

    with imagejobs.testing.serve() as cloud:          # a real HTTP server, port chosen by the OS
        client = cloud.client(cloud.tenant())          # the official SDK, a fresh project
        cloud.steer(tenant, completion="reads", reads=3)
        cloud.reset(tenant)

    @imagejobs.testing.mock_workspaceapp               # the SDK in this process, no socket
    def test_it(): ...

The pytest plugin (fixtures ``imagejobs_cloud``, ``imagejobs_tenant``,
``workspaceapp_client``, marker ``imagejobs``) is ``imagejobs.testing.plugin``.
"""

from __future__ import annotations

from imagejobs.testing.cloud import Cloud, OperatorError, Tenant
from imagejobs.testing.server import serve

__all__ = ["Cloud", "OperatorError", "Tenant", "serve"]
