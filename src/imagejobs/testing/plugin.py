"""The pytest plugin (entry point ``pytest11``: active wherever imagejobs is installed).

Fixtures: ``imagejobs_cloud`` (one ``serve()`` per session, started only when a test asks
for it), ``imagejobs_tenant`` (a fresh account and project per test), and
``workspaceapp_client`` (an official SDK client for that tenant). The marker
``@pytest.mark.imagejobs(completion="reads", reads=3, fail_at=1, code=..., message=...,
job_type=...)`` steers the test's project (the arguments of ``Cloud.steer``).

In a session that uses imagejobs (a fixture, the marker or the mock), once the tests are
collected (the SDK's hundreds of model classes and imagejobs imported) the plugin moves
everything alive into the collector's permanent generation (``gc.freeze()``): the full
collections during the session, and pytest's own at its end, then skip that heap instead
of traversing it again (a third of the example project's session CPU). Only objects that
were garbage already at that moment stay uncollected. Sessions that do not use imagejobs
are left alone.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from imagejobs.testing.cloud import Cloud, Tenant


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "imagejobs(**steering): steer the test's imagejobs project "
        "(job_type=, completion=, reads=, duration=, queue=, fail_at=, code=, message=, "
        "probability=: the arguments of imagejobs.testing.Cloud.steer)",
    )


def pytest_collection_finish(session: pytest.Session) -> None:
    if "imagejobs.testing.cloud" in sys.modules or any(
        "imagejobs_cloud" in getattr(item, "fixturenames", ())
        or item.get_closest_marker("imagejobs") is not None
        for item in session.items
    ):
        gc.freeze()


@pytest.fixture(scope="session")
def imagejobs_cloud() -> Iterator[Cloud]:
    """A running imagejobs (test profile) for the whole session; ``.endpoint`` is its URL."""
    from imagejobs.testing.server import serve  # imported only when a test asks

    with serve() as cloud:
        yield cloud


@pytest.fixture
def imagejobs_tenant(imagejobs_cloud: Cloud, request: pytest.FixtureRequest) -> Tenant:
    """A new account and project for this test, steered by its ``imagejobs`` marker."""
    tenant = imagejobs_cloud.tenant()
    marker = request.node.get_closest_marker("imagejobs")
    if marker is not None:
        from imagejobs.testing.cloud import check_steering

        # Checked before steering, and reported as the marker's mistake (no traceback
        # through the fixture): which parameter, and what it allows.
        try:
            if marker.args:
                raise ValueError(
                    f"takes keyword arguments only (job_type=..., completion=...), "
                    f"not {', '.join(repr(a) for a in marker.args)}"
                )
            check_steering(**marker.kwargs)
        except ValueError as exc:
            pytest.fail(f"@pytest.mark.imagejobs: {exc}", pytrace=False)
        imagejobs_cloud.steer(tenant, **marker.kwargs)
    return tenant


@pytest.fixture
def workspaceapp_client(imagejobs_cloud: Cloud, imagejobs_tenant: Tenant) -> Any:
    """An official ``WorkspaceAppClient`` for ``imagejobs_tenant``."""
    return imagejobs_cloud.client(imagejobs_tenant)
