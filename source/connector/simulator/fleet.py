"""The simulated fleet: one task per charger, each keeping its connection up until told to stop.

A charger whose connection fails or drops tries again after a back-off that doubles up to
MAX_BACKOFF_S, with jitter, so a fleet does not come back in step when the connector
restarts. On `stop` every charger closes its connection cleanly (1001, going away).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import websockets
from ocpp.exceptions import OCPPError
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import WebSocketException
from websockets.frames import CloseCode
from websockets.typing import Subprotocol

from connector.simulator import ocpp16, ocpp201
from connector.simulator.options import Options
from connector.simulator.race import unless_stopped

LOG = logging.getLogger(__name__)

OPEN_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 5.0
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 60.0
REBOOT_S = 1.0  # how long a Reset keeps the charger off line
STAGGER_S = 0.005  # between the chargers' first connections: 1000 chargers come up within 5 s
# What ends a connection from outside: refused, unreachable, closed, no answer in time, or
# an answer that breaks the schema.
CONNECTION_PROBLEMS = (OSError, WebSocketException, TimeoutError, OCPPError)


class Backoff:
    """Seconds to wait before the next attempt: doubling up to MAX_BACKOFF_S, each between half and all of it."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._failures = 0

    def next(self) -> float:
        delay = min(MAX_BACKOFF_S, FIRST_BACKOFF_S * (1 << self._failures))
        self._failures = min(self._failures + 1, 16)
        return delay * self._rng.uniform(0.5, 1.0)

    def reset(self) -> None:
        self._failures = 0


class Charger(Protocol):
    """One simulated charger of some OCPP version, as the fleet drives it."""

    @property
    def name(self) -> str: ...

    @property
    def subprotocol(self) -> str: ...

    async def serve(self, connection: ClientConnection, stop: asyncio.Event) -> bool:
        """Be the charger on `connection` until it closes or `stop` is set; True when it is to reboot."""
        ...


# Each OCPP version's chargers (name, sample interval -> charger).
NEW_CHARGER: dict[str, Callable[[str, float], Charger]] = {"1.6": ocpp16.new_charger, "2.0.1": ocpp201.new_charger}


async def run(options: Options, stop: asyncio.Event) -> None:
    """Every charger of `options`, until `stop` is set and each has closed its connection."""
    async with asyncio.TaskGroup() as tasks:
        for number, name in enumerate(options.names()):
            charger = NEW_CHARGER[options.ocpp](name, options.interval)
            tasks.create_task(keep_connected(charger, options, stop, first_delay=number * STAGGER_S))


@dataclass(frozen=True)
class Ending:
    """How a connection ended: a Reset (connect again at once), or a problem to report (None: closed)."""

    reboot: bool = False
    problem: str | None = None


async def keep_connected(charger: Charger, options: Options, stop: asyncio.Event, first_delay: float) -> None:
    """Connect, serve, and after each end connect again (at once after a Reset) until `stop`."""
    backoff = Backoff(random.Random(f"{charger.name} backoff"))
    await unless_stopped(asyncio.sleep(first_delay), stop)
    while not stop.is_set():
        ending = await connect_and_serve(charger, options, stop, backoff)
        if stop.is_set():
            break
        pause = REBOOT_S if ending.reboot else backoff.next()
        if ending.problem is not None:
            LOG.warning("%s: %s; connecting again in %.1f s", charger.name, ending.problem, pause)
        elif not ending.reboot:
            LOG.info("%s: connecting again in %.1f s", charger.name, pause)
        await unless_stopped(asyncio.sleep(pause), stop)


async def connect_and_serve(charger: Charger, options: Options, stop: asyncio.Event, backoff: Backoff) -> Ending:
    """One connection, from opening to its clean close."""
    url = options.url_of(charger.name)
    try:
        connection = await unless_stopped(_open(url, charger.subprotocol), stop)
        if connection is None:
            return Ending()
        LOG.info("%s: connected to %s", charger.name, url)
        backoff.reset()
        try:
            return Ending(reboot=await charger.serve(connection, stop))
        finally:
            await _close(connection, stop)
    except CONNECTION_PROBLEMS as problem:
        return Ending(problem=f"connection to {url} failed: {str(problem) or type(problem).__name__}")


async def _open(url: str, subprotocol: str) -> ClientConnection:
    return await websockets.connect(
        url,
        subprotocols=[Subprotocol(subprotocol)],
        open_timeout=OPEN_TIMEOUT_S,
        close_timeout=CLOSE_TIMEOUT_S,
    )


async def _close(connection: ClientConnection, stop: asyncio.Event) -> None:
    if stop.is_set():
        await connection.close(CloseCode.GOING_AWAY, "simulator stopping")
    else:
        await connection.close()
