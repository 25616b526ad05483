"""Garbage collection for a process holding thousands of long-lived connections.

CPython's full collections scan every tracked object. With 10,000 charge points that is
millions of objects, and the benchmark measured pauses of 0.1 s growing to 1.5 s every
few seconds while a fleet connected and every 8-12 s under steady load, collecting
nothing: the whole loop stood still, and value latency and command latency with it.

So objects that survive are frozen (moved out of the collector's sight, gc.freeze) every
`FREEZE_EVERY_S`; young objects are still collected as usual. What frozen objects can no
longer do is be collected when they become cyclic garbage, which is how a departed
session's objects go. A full collection (unfreeze, collect, freeze) therefore runs when
many sessions have ended since the last one (a fleet that left: the one pause falls
where the load just dropped), and at least every `FULL_EVERY_S` for the trickle of
ordinary reconnects.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable

LOG = logging.getLogger(__name__)

FREEZE_EVERY_S = 10.0
FULL_EVERY_S = 3600.0
MIN_ENDED_FOR_FULL = 100  # ended sessions that justify a full collection early...
ENDED_SHARE_FOR_FULL = 0.25  # ...once they are also this share of the open ones


def full_collection_due(ended: int, open_sessions: int, since_full_s: float) -> bool:
    """Pure: whether to run a full collection now."""
    if since_full_s >= FULL_EVERY_S:
        return True
    return ended >= MIN_ENDED_FOR_FULL and ended >= ENDED_SHARE_FOR_FULL * open_sessions


async def manage_garbage_collection(counts: Callable[[], tuple[int, int]]) -> None:
    """Run forever: freeze survivors, collect fully when due. `counts()` is (sessions
    ended so far, sessions open now)."""
    ended_at_full, last_full = counts()[0], time.monotonic()
    gc.freeze()
    try:
        while True:
            await asyncio.sleep(FREEZE_EVERY_S)
            ended, open_sessions = counts()
            if full_collection_due(ended - ended_at_full, open_sessions, time.monotonic() - last_full):
                started = time.perf_counter()
                gc.unfreeze()
                collected = gc.collect()
                LOG.info(
                    "full garbage collection (%d sessions ended since the last): %d objects freed in %.0f ms",
                    ended - ended_at_full,
                    collected,
                    (time.perf_counter() - started) * 1e3,
                )
                ended_at_full, last_full = ended, time.monotonic()
            gc.freeze()
    finally:
        # Stopped (shutdown, or a test's connector): hand everything back to the collector,
        # or objects frozen meanwhile (sockets' owners among them) would never be freed.
        gc.unfreeze()
