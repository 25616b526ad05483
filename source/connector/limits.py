"""Limits that protect the connector from a peer gone wrong; pure apart from `raise_open_files_limit`.

Each default lies far above what real fleets reach: a charger that waits for each answer,
as OCPP-J requires, cannot send 1000 frames a second for 10 s through this connector, and
a cut-off charger that reconnects and floods again is cut off again, while every other
charger is served throughout.
"""

from __future__ import annotations

import logging
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass

LOG = logging.getLogger(__name__)

RATE_WINDOW_S = 10.0  # a burst may use up this many seconds' worth of the rate at once
# Descriptors the process needs besides charger sockets: broker, files, the listener.
SPARE_FILES = 100
REFUSAL_LOG_INTERVAL_S = 10.0


class MessageRate:
    """A token bucket: `rate` frames per second on average, bursts up to RATE_WINDOW_S of it."""

    __slots__ = ("_capacity", "_clock", "_last", "_tokens", "rate")  # one per connection

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._capacity = max(1.0, rate * RATE_WINDOW_S)  # a rate below 0.1/s still allows a frame
        self._tokens = self._capacity
        self._clock = clock
        self._last = clock()

    def allow(self) -> bool:
        """Count one frame; False once the charger is above the rate (rate 0: always True)."""
        if self.rate <= 0:
            return True
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class Throttled:
    """Lets a repeated warning through at most once per `interval` s, counting the rest."""

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._next = 0.0
        self.suppressed = 0

    def ready(self) -> bool:
        """True if the warning may be logged now (then `suppressed` tells how many were not)."""
        now = self._clock()
        if now < self._next:
            self.suppressed += 1
            return False
        self._next = now + self._interval
        return True

    def take_suppressed(self) -> int:
        count, self.suppressed = self.suppressed, 0
        return count


class RefusalLog:
    """WARNINGs about refused peers, at most one per interval per reason, each counting the
    ones held back since the last: a flood of refusals must not become a flood of lines."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = REFUSAL_LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._by_reason: dict[str, Throttled] = {}

    def report(self, reason: str, message: str, *args: object) -> None:
        """Log `message % args` unless a line for `reason` went out less than an interval ago."""
        throttle = self._by_reason.get(reason)
        if throttle is None:
            throttle = self._by_reason[reason] = Throttled(self._interval, self._clock)
        if not throttle.ready():
            return
        held_back = throttle.take_suppressed()
        if held_back:
            self._logger.warning(f"{message} (%d more {reason} since the last report)", *args, held_back, stacklevel=2)
        else:
            self._logger.warning(message, *args, stacklevel=2)


@dataclass(frozen=True)
class FileBudget:
    """How many connections of each kind the open files limit leaves room for."""

    connections: int  # authenticated charger connections
    unauthenticated: int  # connections still before or in their request checks
    soft_limit: int  # the open files limit in force (resource.RLIM_INFINITY: none)


def raise_open_files_limit(connections: int, unauthenticated: int) -> FileBudget:
    """Raise the soft descriptor limit towards what both kinds of connection need, plus spare.

    Where the hard limit is lower, both shrink in proportion: the unauthenticated keep
    their share, so chargers can still get through their handshake at the fleet limit.
    """
    soft = _raise_soft_limit(connections + unauthenticated + SPARE_FILES)
    wanted = connections + unauthenticated
    room = wanted if soft == resource.RLIM_INFINITY else max(2, soft - SPARE_FILES)
    if room >= wanted:
        return FileBudget(connections, unauthenticated, soft)
    pending = max(1, room * unauthenticated // wanted)
    return FileBudget(room - pending, pending, soft)


def _raise_soft_limit(wanted: int) -> int:
    """The soft open files limit after trying to raise it to `wanted` (capped by the hard one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as error:
            LOG.warning("could not raise the open files limit from %d: %s", soft, error)
    return soft
