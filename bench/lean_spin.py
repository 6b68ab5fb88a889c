"""The lean reference with ``SPIN_US`` microseconds of busy loop before each request: the
same server made as slow per request as a heavier app, to see how Granian's I/O thread
and the event loop then share the CPU (``list_probe.py --lean-spin-us``)."""

import os
import time

import lean_reference

SPIN_SECONDS = float(os.environ.get("SPIN_US", "0")) / 1e6


async def app(scope, receive, send):
    if scope["type"] == "http" and SPIN_SECONDS:
        end = time.perf_counter() + SPIN_SECONDS
        while time.perf_counter() < end:
            pass
    return await lean_reference.app(scope, receive, send)
