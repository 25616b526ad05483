"""What a simulated OCPP 1.6 charger says of its own accord on one connection, in one loop.

BootNotification (after power-on or a Reset, not after a mere reconnect), StatusNotification
whenever the status changes, a transaction after each boot, MeterValues every
MeterValueSampleInterval on the clock's multiples of it, Heartbeats, and what the central
system's calls queued (`intents`). The physics is the pure `model`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from ocpp.exceptions import OCPPError
from ocpp.v16 import call

from connector import __version__
from connector.simulator.ocpp16.answers import VENDOR, Answers
from connector.simulator.ocpp16.payloads import (
    CONNECTOR_ID,
    HEARTBEAT_INTERVAL,
    SAMPLE_INTERVAL,
    energy_reading,
    meter_value,
    profile_from_wire,
    profile_refusal,
    time_text,
)
from connector.simulator.ocpp16.station import (
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
AUTO_ID_TAG = "SIMULATED"  # the id tag of the transaction started after each boot
BOOT_RETRY_S = 10.0  # when BootNotification is not Accepted and names no interval


@dataclass
class Behaviour:
    """What the charger says of its own accord on one connection, in one loop."""

    station: Station
    link: Answers
    rebooting: bool = False  # a Reset: the connection is to end and the charger to boot again
    _next_sample: float = 0.0
    _next_heartbeat: float = math.inf
    _reported: str | None = None  # the last status sent for connector 1

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
            await self._start(StartCharging(AUTO_ID_TAG))
        while not self.rebooting:
            intent = await self._next_intent()
            if intent is not None:
                await self._carry_out(intent)
            await self._on_schedule()
            await self._report_status()

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
            await self._call(call.Heartbeat())
            self._next_heartbeat = now + self._heartbeat_interval()
        reservation = self.station.reservation
        if reservation is not None and now >= reservation.expires:
            LOG.info("%s: reservation %d expired", self.name, reservation.reservation_id)
            self.station.reservation = None

    def _aligned_after(self, now: float) -> float:
        """The next multiple of MeterValueSampleInterval since 1970 (clock-aligned samples); never if 0."""
        interval = self.station.configuration.seconds(SAMPLE_INTERVAL)
        return (math.floor(now / interval) + 1) * interval if interval > 0 else math.inf

    def _heartbeat_interval(self) -> float:
        seconds = self.station.configuration.seconds(HEARTBEAT_INTERVAL)
        return seconds if seconds > 0 else math.inf

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
        request = call.BootNotification(
            charge_point_vendor=VENDOR,
            charge_point_model=MODEL,
            charge_point_serial_number=self.name[:25],
            firmware_version=__version__,
        )
        while True:
            answer = await self._call(request)
            if answer is not None and answer.status == "Accepted":
                break
            retry = float(answer.interval) if answer is not None and answer.interval > 0 else BOOT_RETRY_S
            LOG.warning("%s: BootNotification not accepted; again in %.0f s", self.name, retry)
            await asyncio.sleep(retry)
        self.station.booted = True
        if answer.interval > 0:
            self.station.configuration.set_seconds(HEARTBEAT_INTERVAL, answer.interval)
        self._next_heartbeat = time.time() + self._heartbeat_interval()
        LOG.info("%s: booted (heartbeat every %s s)", self.name, answer.interval)

    async def _report_status(self, force: bool = False) -> None:
        status = self.station.connector_status(time.time())
        if force or status != self._reported:
            await self._status(status)

    async def _status(self, status: str, connector_id: int = CONNECTOR_ID) -> None:
        request = call.StatusNotification(
            connector_id=connector_id, error_code="NoError", status=status, timestamp=time_text(time.time())
        )
        await self._call(request)
        if connector_id == CONNECTOR_ID:
            self._reported = status

    async def _meter_values(self, at: float, context: str) -> None:
        model = self.station.model
        sample = model.sample(time.time())
        reading = meter_value(sample, at, context, self.station.configuration.measurands())
        transaction_id = model.car.transaction_id if model.car else None
        await self._call(call.MeterValues(CONNECTOR_ID, [reading], transaction_id))

    async def _send(self, trigger: Send) -> None:
        """What TriggerMessage asked for."""
        match trigger.message:
            case "BootNotification":
                await self._boot()
            case "Heartbeat":
                await self._call(call.Heartbeat())
            case "MeterValues":
                await self._meter_values(time.time(), "Trigger")
            case "StatusNotification" if trigger.connector_id == 0:
                await self._status(self.station.charge_point_status(), 0)
            case "StatusNotification":
                await self._report_status(force=True)
            case "DiagnosticsStatusNotification":
                await self._call(call.DiagnosticsStatusNotification(status="Idle"))
            case "FirmwareStatusNotification":
                await self._call(call.FirmwareStatusNotification(status="Idle"))

    # -- transactions ------------------------------------------------------------------

    async def _start(self, intent: StartCharging) -> None:
        """A car plugs in: Preparing, StartTransaction, then charging (or stopping if the id tag is refused)."""
        model, now = self.station.model, time.time()
        if model.car is not None or not self.station.operative:
            LOG.info("%s: not starting for %s: busy or unavailable by now", self.name, intent.id_tag)
            return
        car = model.plug_in(now, intent.id_tag)
        await self._status("Preparing")
        request = call.StartTransaction(
            CONNECTOR_ID, intent.id_tag, car.meter_start, time_text(now), reservation_id=intent.reservation_id
        )
        answer = await self._call(request)
        if answer is None:
            model.unplug(time.time())
            return
        car.transaction_id = answer.transaction_id
        self.station.reservation = None
        if answer.id_tag_info.get("status") != "Accepted":
            LOG.info("%s: id tag %s not accepted (%s)", self.name, intent.id_tag, answer.id_tag_info.get("status"))
            await self._stop("DeAuthorized")
            return
        self._install_tx_profile(intent.profile)
        LOG.info(
            "%s: transaction %d started for id tag %s -> power now %.0f W",
            self.name,
            car.transaction_id,
            intent.id_tag,
            model.power_w(time.time()),
        )

    def _install_tx_profile(self, profile: dict[str, Any] | None) -> None:
        """RemoteStartTransaction's chargingProfile, now that the transaction has its id."""
        if profile is None:
            return
        car = self.station.model.car
        try:
            parsed = profile_from_wire(CONNECTOR_ID, {**profile, "transaction_id": car and car.transaction_id})
        except ValueError as error:
            LOG.warning("%s: the remote start's charging profile has a date it cannot read: %s", self.name, error)
            return
        refusal = profile_refusal(parsed, car)
        if refusal is not None:
            LOG.warning("%s: the remote start's charging profile is not used: %s", self.name, refusal)
            return
        self.station.model.limits.install(parsed)

    async def _stop(self, reason: str) -> None:
        """StopTransaction with the register and the reason; Finishing, then the status the loop reports."""
        model, now = self.station.model, time.time()
        if model.car is None:
            return
        sample = model.sample(now)
        car = model.unplug(now)
        assert car is not None
        await self._status("Finishing")
        if car.transaction_id is not None:
            request = call.StopTransaction(
                meter_stop=math.floor(sample.energy_wh),
                timestamp=time_text(now),
                transaction_id=car.transaction_id,
                reason=reason,
                id_tag=car.id_tag,
                transaction_data=[energy_reading(sample, now, "Transaction.End")],
            )
            await self._call(request)
            energy = math.floor(sample.energy_wh) - car.meter_start
            LOG.info("%s: transaction %d stopped (%s): %d Wh", self.name, car.transaction_id, reason, energy)
        if self.station.inoperative_scheduled:
            self.station.operative, self.station.inoperative_scheduled = False, False

    async def _reboot(self, kind: str) -> None:
        await self._stop(f"{kind}Reset")
        LOG.info("%s: rebooting (%s reset)", self.name, kind)
        self.station.booted = False
        self.rebooting = True
