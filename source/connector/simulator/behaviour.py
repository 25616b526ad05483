"""What a simulated charger of any OCPP version says of its own accord on one connection, in one loop.

BootNotification (after power-on or a Reset, not after a mere reconnect), its status
whenever it changes, a transaction after each boot, MeterValues every sample interval on
the clock's multiples of it, Heartbeats, and what the central system's calls queued
(`intents`). Each version's `Behaviour` subclass says these in its own messages; the
physics is the pure `model`. Also the few lines that bind a connection to both halves.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar, cast

from ocpp.exceptions import OCPPError
from ocpp.routing import on
from websockets.exceptions import ConnectionClosed

from connector.simulator.race import first_to_finish
from connector.simulator.station import (
    AUTO_ID_TAG,
    Intent,
    Reboot,
    ReportStatus,
    Send,
    StartCharging,
    Station,
    StopCharging,
)

LOG = logging.getLogger(__name__)

MODEL = "Simulated 11 kW"
VENDOR = "connector.simulator"
BOOT_RETRY_S = 10.0  # when BootNotification is not Accepted and names no interval
RESPONSE_TIMEOUT_S = 30.0

F = TypeVar("F", bound=Callable[..., Any])


def answers(action: Any) -> Callable[[F], F]:
    """The ocpp library's `@on`, typed (the library ships no type information)."""
    return cast(Callable[[F], F], on(action))


class Link(Protocol):
    """The answering half (the ocpp library's ChargePoint): its calls out and the intents its answers queued."""

    intents: asyncio.Queue[Intent]

    async def call(self, payload: Any, suppress: bool = True) -> Any: ...

    async def start(self) -> None: ...


async def read(link: Link, name: str) -> None:
    """Answer calls until the central system closes the connection."""
    try:
        await link.start()
    except ConnectionClosed as closed:
        LOG.info("%s: connection closed by the central system (%s)", name, closed)


async def serve(link: Link, behaviour: Behaviour, stop: asyncio.Event) -> bool:
    """Both halves on one connection until it closes or `stop` is set; True when the charger is to reboot."""
    await first_to_finish(read(link, behaviour.name), behaviour.run(), stop.wait())
    return behaviour.rebooting


@dataclass
class Behaviour(ABC):
    """What the charger says of its own accord on one connection, in one loop."""

    AUTO_START: ClassVar[StartCharging] = StartCharging(AUTO_ID_TAG)

    station: Station[Any]
    link: Link
    rebooting: bool = False  # a Reset: the connection is to end and the charger to boot again
    _next_sample: float = 0.0
    _next_heartbeat: float = math.inf
    _reported: str | None = None  # the last status sent for the outlet

    @property
    def name(self) -> str:
        return self.station.name

    async def run(self) -> None:
        """Boot (unless only reconnecting), report, start charging after a boot, then carry on until a Reset."""
        booting = not self.station.booted
        if booting:
            await self._boot()
        else:
            LOG.info("%s: reconnected, carrying on without a reboot", self.name)
        now = time.time()
        self._next_heartbeat = now + self._heartbeat_interval()  # also on a connection without a boot
        await self._report_status(force=True)
        self._next_sample = self._aligned_after(now)
        if booting and self.station.operative and self.station.model.car is None:
            await self._start(self.AUTO_START)
        while not self.rebooting:
            intent = await self._next_intent()
            if intent is not None:
                await self._carry_out(intent)
            await self._on_schedule()
            await self._report_status()

    # -- what each version says in its own messages ------------------------------------

    @abstractmethod
    def _boot_request(self) -> Any:
        """BootNotification as this version words it."""

    @abstractmethod
    def _heartbeat_request(self) -> Any: ...

    @abstractmethod
    def _status_now(self) -> str:
        """The outlet's status as this version names it."""

    @abstractmethod
    async def _send_status(self, status: str) -> None:
        """StatusNotification of the outlet."""

    @abstractmethod
    async def _meter_values(self, at: float, context: str) -> None: ...

    @abstractmethod
    async def _start(self, intent: StartCharging) -> None: ...

    @abstractmethod
    async def _stop(self, reason: str) -> None: ...

    @abstractmethod
    async def _send(self, trigger: Send) -> None:
        """What TriggerMessage asked for."""

    @abstractmethod
    async def _reboot(self, kind: str) -> None:
        """A Reset: end the transaction as this version says, then `_go_down`."""

    # -- the loop ----------------------------------------------------------------------

    async def _next_intent(self) -> Intent | None:
        """The next queued intent, or None when the next sample or heartbeat is due first."""
        due = min(self._next_sample, self._next_heartbeat) - time.time()
        try:
            async with asyncio.timeout(max(0.0, due) if math.isfinite(due) else None):
                return await self.link.intents.get()
        except TimeoutError:
            return None

    async def _carry_out(self, intent: Intent) -> None:
        match intent:
            case StartCharging():
                await self._start(intent)
            case StopCharging(reason=reason):
                await self._stop(reason)
            case Send():
                await self._send(intent)
            case Reboot(kind=kind):
                await self._reboot(kind)
            case ReportStatus():
                pass  # the loop reports after every intent

    async def _on_schedule(self) -> None:
        now = time.time()
        if now >= self._next_sample:
            context = "Sample.Periodic" if self.station.model.car else "Sample.Clock"
            await self._meter_values(self._next_sample, context)
            self._next_sample = self._aligned_after(now)
        if now >= self._next_heartbeat:
            await self._call(self._heartbeat_request())
            self._next_heartbeat = now + self._heartbeat_interval()
        reservation = self.station.reservation
        if reservation is not None and now >= reservation.expires:
            LOG.info("%s: reservation %d expired", self.name, reservation.reservation_id)
            self.station.reservation = None

    def _aligned_after(self, now: float) -> float:
        """The next multiple of the sample interval since 1970 (clock-aligned samples); never if 0."""
        interval = self.station.configuration.sample_s()
        return (math.floor(now / interval) + 1) * interval if interval > 0 else math.inf

    def _heartbeat_interval(self) -> float:
        seconds = self.station.configuration.heartbeat_s()
        return seconds if seconds > 0 else math.inf

    async def _report_status(self, force: bool = False) -> None:
        status = self._status_now()
        if force or status != self._reported:
            await self._send_status(status)
            self._reported = status

    def _go_down(self, kind: str) -> None:
        LOG.info("%s: rebooting (%s reset)", self.name, kind)
        self.station.booted = False
        self.rebooting = True

    # -- messages ----------------------------------------------------------------------

    async def _call(self, request: Any) -> Any:
        """The answer to `request`, or None for a CALLERROR (logged); a timeout ends the connection."""
        try:
            answer = await self.link.call(request, suppress=False)
        except OCPPError as error:
            LOG.warning("%s: %s answered with an error: %s", self.name, type(request).__name__, error)
            return None
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            # The library awaits the answer with asyncio.wait_for, which in Python 3.11
            # returns the answer and drops a cancellation that arrives with it
            # (https://github.com/python/cpython/issues/86296); carrying on would send the
            # next call on a connection nobody reads any more, and wait for its timeout.
            raise asyncio.CancelledError
        return answer

    async def _boot(self) -> None:
        """BootNotification until Accepted (Pending or Rejected: again after the interval it names)."""
        request = self._boot_request()
        while True:
            answer = await self._call(request)
            if answer is not None and answer.status == "Accepted":
                break
            retry = float(answer.interval) if answer is not None and answer.interval > 0 else BOOT_RETRY_S
            LOG.warning("%s: BootNotification not accepted; again in %.0f s", self.name, retry)
            await asyncio.sleep(retry)
        self.station.booted = True
        if answer.interval > 0:
            self.station.configuration.set_heartbeat_s(answer.interval)
        self._next_heartbeat = time.time() + self._heartbeat_interval()
        LOG.info("%s: booted (heartbeat every %s s)", self.name, answer.interval)
