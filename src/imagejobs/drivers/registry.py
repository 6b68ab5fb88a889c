"""Finding the configured driver among the ``imagejobs.drivers`` entry points."""

from __future__ import annotations

import functools
import os
from importlib.metadata import EntryPoint, entry_points

from imagejobs.domain.errors import InvalidSettings
from imagejobs.drivers.interface import Driver, DriverFactory
from imagejobs.drivers.simulated import create_simulated_driver
from imagejobs.settings import Settings

ENTRY_POINT_GROUP = "imagejobs.drivers"
# Built in, so that it works even from a source tree whose metadata was never installed.
_BUILT_IN: dict[str, DriverFactory] = {"simulated": create_simulated_driver}


@functools.cache
def _installed() -> dict[str, EntryPoint]:
    """The group's entry points, read once per process: scanning every installed
    distribution's metadata is a fifth of building an app."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_drivers() -> list[str]:
    return sorted(set(_installed()) | set(_BUILT_IN))


def check_driver(settings: Settings) -> None:
    """Refuse a driver name that no installed package provides, before a process starts
    anything (a server worker that found out itself died with a traceback)."""
    if settings.driver not in _installed() and settings.driver not in _BUILT_IN:
        raise InvalidSettings(
            "IMAGEJOBS_DRIVER",
            f"must name an installed driver ({', '.join(available_drivers())}),"
            f" not {settings.driver!r}",
        )
    log = settings.simulated_execution_log
    if settings.driver == "simulated" and log is not None:
        # Every step appends to it: one that cannot (a directory, no such folder) failed
        # every step of every job, five attempts each, with a traceback per attempt.
        try:
            os.close(os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))
        except OSError as exc:
            raise InvalidSettings(
                "IMAGEJOBS_SIMULATED_EXECUTION_LOG",
                f"{log} cannot be appended to ({exc.strerror or exc})",
            ) from None


def load_driver(settings: Settings) -> Driver:
    """The driver named by ``settings.driver``, built by its factory."""
    check_driver(settings)
    ep = _installed().get(settings.driver)
    if ep is not None:
        factory: DriverFactory = ep.load()
        return factory(settings)
    return _BUILT_IN[settings.driver](settings)
