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

And glibc's allocator keeps, by default, an arena of its own for each thread that
allocates (up to 8 per core); what a thread frees there mostly stays in the process. The
connector's few threads (the MQTT writer, the worker that joins the listing, the ocpp
library's validation pool) held some 2 KB per connected charger that way (bench.py,
2,000 OCPP 2.0.1 chargers: 31.6 KB RSS each against 29.4 KB with one arena), at no
measurable CPU cost of one arena: these threads allocate little, and under the GIL.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import os
import time
from collections.abc import Callable, Mapping

LOG = logging.getLogger(__name__)

FREEZE_EVERY_S = 10.0
FULL_EVERY_S = 3600.0
MIN_ENDED_FOR_FULL = 100  # ended sessions that justify a full collection early...
ENDED_SHARE_FOR_FULL = 0.25  # ...once they are also this share of the open ones


M_ARENA_MAX = -8  # glibc's malloc.h
MALLOC_ARENAS = 1


def limit_malloc_arenas(environ: Mapping[str, str] = os.environ) -> bool:
    """glibc: every thread allocates from the one main arena (see above); True if set here.

    Called at start, before the threads and before .env is read. An operator's own
    MALLOC_ARENA_MAX or glibc.malloc.arena_max tunable wins (glibc has read it already);
    another C library (musl, macOS) has no such setting, nor has Windows.
    """
    if "MALLOC_ARENA_MAX" in environ or "arena_max" in environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # TypeError: Windows has no CDLL(None)
        return False
    return bool(mallopt(M_ARENA_MAX, MALLOC_ARENAS))


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
