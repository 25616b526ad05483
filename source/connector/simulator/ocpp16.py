"""A simulated OCPP 1.6 charge point: the ocpp library's client side over one WebSocket.

Two halves share one connection. `Answers` (the library's ChargePoint) answers the central
system's calls; it only changes the charger's state and queues what must follow (a
transaction to start, a message to send): the library reads one frame at a time, so a
handler that awaited a call of its own would wait for an answer it cannot read. `Behaviour`
sends everything the charger says of its own accord, in one loop: BootNotification,
StatusNotification, the transactions, MeterValues every MeterValueSampleInterval
(clock-aligned), Heartbeats, and the queued consequences of the central system's calls.
The physics (power under limits, energy, SoC, currents) is the pure `model`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from ocpp.exceptions import OCPPError
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from connector import __version__
from connector.simulator.model import PHASES, ChargerModel
from connector.simulator.ocpp16_payloads import (
    CONNECTOR_ID,
    HEARTBEAT_INTERVAL,
    MAX_PROFILES,
    SAMPLE_INTERVAL,
    Configuration,
    energy_reading,
    meter_value,
    parse_time,
    profile_from_wire,
    profile_refusal,
    time_text,
)
from connector.simulator.race import first_to_finish

LOG = logging.getLogger(__name__)

SUBPROTOCOL = "ocpp1.6"
VENDOR = "connector.simulator"  # DataTransfer with this vendor id is echoed; others are unknown
MODEL = "Simulated 11 kW"
AUTO_ID_TAG = "SIMULATED"  # the id tag of the transaction started after each boot
RESPONSE_TIMEOUT_S = 30.0
BOOT_RETRY_S = 10.0  # when BootNotification is not Accepted and names no interval
TRIGGERABLE = (
    "BootNotification",
    "DiagnosticsStatusNotification",
    "FirmwareStatusNotification",
    "Heartbeat",
    "MeterValues",
    "StatusNotification",
)

F = TypeVar("F", bound=Callable[..., Any])


def answers(action: Action) -> Callable[[F], F]:
    """The ocpp library's `@on`, typed (the library ships no type information)."""
    return cast(Callable[[F], F], on(action))


# -- what the charger is, across connections -------------------------------------------


@dataclass
class Reservation:
    reservation_id: int
    id_tag: str
    expires: float  # s since 1970


@dataclass
class Station:
    """One simulated charger: what outlives a connection (its meter, car, limits, settings)."""

    name: str
    model: ChargerModel
    configuration: Configuration
    operative: bool = True
    inoperative_scheduled: bool = False  # ChangeAvailability Inoperative during a transaction
    reservation: Reservation | None = None
    booted: bool = False  # since power-on or the last Reset; a reconnect does not reboot it
    local_list_version: int = 0

    def connector_status(self, now: float) -> str:
        """StatusNotification's status of connector 1 as things stand."""
        charging = self.model.charging_state(now)
        if charging is not None:
            return charging
        if not self.operative:
            return "Unavailable"
        return "Reserved" if self.reservation is not None else "Available"

    def charge_point_status(self) -> str:
        """Connector 0, the charge point as a whole."""
        return "Available" if self.operative else "Unavailable"


# -- what the central system's calls leave to do ---------------------------------------


@dataclass(frozen=True)
class StartCharging:
    id_tag: str
    reservation_id: int | None = None
    profile: dict[str, Any] | None = None  # RemoteStartTransaction's TxProfile


@dataclass(frozen=True)
class StopCharging:
    reason: str  # StopTransaction's reason


@dataclass(frozen=True)
class Send:
    message: str  # one of TRIGGERABLE
    connector_id: int | None = None


@dataclass(frozen=True)
class Reboot:
    kind: str  # Soft or Hard


@dataclass(frozen=True)
class ReportStatus:
    """The status may have changed (availability, reservation): say so now, not at the next sample."""


Intent = StartCharging | StopCharging | Send | Reboot | ReportStatus


class Answers(ChargePoint):  # type: ignore[misc]  # untyped library base
    """Answers to the central system's calls, as a real 1.6 charger with one connector gives them."""

    def __init__(self, station: Station, connection: ClientConnection) -> None:
        super().__init__(station.name, connection, response_timeout=RESPONSE_TIMEOUT_S)
        self.station = station
        self.model = station.model
        self.intents: asyncio.Queue[Intent] = asyncio.Queue()

    async def read(self) -> None:
        """Answer calls until the central system closes the connection."""
        try:
            await self.start()
        except ConnectionClosed as closed:
            LOG.info("%s: connection closed by the central system (%s)", self.id, closed)

    # -- smart charging ----------------------------------------------------------------

    @answers(Action.set_charging_profile)
    def on_set_charging_profile(
        self, connector_id: int, cs_charging_profiles: dict[str, Any]
    ) -> call_result.SetChargingProfile:
        now = time.time()
        try:
            profile = profile_from_wire(connector_id, cs_charging_profiles)
        except ValueError as error:
            return self._profile_rejected(f"a date it cannot read ({error})")
        refusal = profile_refusal(profile, self.model.car)
        if refusal is None and len(self.model.limits) >= MAX_PROFILES:
            refusal = f"{MAX_PROFILES} profiles are installed already (MaxChargingProfilesInstalled)"
        if refusal is not None:
            return self._profile_rejected(refusal)
        self.model.advance(now)  # the energy so far at the power before the limit
        self.model.limits.install(profile)
        period = profile.period_at(now, self.model.car.plugged_in if self.model.car else None)
        limit = "not in effect now" if period is None else f"{period.limit:g} {profile.unit}"
        LOG.info(
            "%s: limit received: %s %s on connector %d -> power now %s",
            self.id, profile.purpose, limit, connector_id, self._power_text(now),
        )  # fmt: skip
        return call_result.SetChargingProfile(status="Accepted")

    def _profile_rejected(self, reason: str) -> call_result.SetChargingProfile:
        LOG.warning("%s: SetChargingProfile rejected: %s", self.id, reason)
        return call_result.SetChargingProfile(status="Rejected")

    def _power_text(self, now: float) -> str:
        power = f"{self.model.power_w(now):.0f} W"
        return power if self.model.car is not None else f"{power} (no car charging)"

    @answers(Action.clear_charging_profile)
    def on_clear_charging_profile(self, **criteria: Any) -> call_result.ClearChargingProfile:
        now = time.time()
        self.model.advance(now)
        cleared = self.model.limits.clear(
            criteria.get("id"),
            criteria.get("connector_id"),
            criteria.get("charging_profile_purpose"),
            criteria.get("stack_level"),
        )
        if not cleared:
            return call_result.ClearChargingProfile(status="Unknown")
        LOG.info("%s: %d charging profile(s) cleared -> power now %s", self.id, cleared, self._power_text(now))
        return call_result.ClearChargingProfile(status="Accepted")

    @answers(Action.get_composite_schedule)
    def on_get_composite_schedule(
        self, connector_id: int, duration: int, charging_rate_unit: str | None = None
    ) -> call_result.GetCompositeSchedule:
        if connector_id not in (0, CONNECTOR_ID):
            return call_result.GetCompositeSchedule(status="Rejected")
        now = time.time()
        limit = self.model.limit(now)
        unit = charging_rate_unit or (limit.profile.unit if limit else "W")
        watts = self.model.max_power_w if limit is None else min(self.model.max_power_w, limit.watts)
        value = watts if unit == "W" else watts / (self.model.voltage() * (limit.phases if limit else PHASES))
        period = {"start_period": 0, "limit": math.floor(value * 10) / 10}
        schedule = {"duration": duration, "charging_rate_unit": unit, "charging_schedule_period": [period]}
        return call_result.GetCompositeSchedule(
            status="Accepted", connector_id=connector_id, schedule_start=time_text(now), charging_schedule=schedule
        )

    # -- transactions ------------------------------------------------------------------

    @answers(Action.remote_start_transaction)
    def on_remote_start_transaction(
        self, id_tag: str, connector_id: int | None = None, charging_profile: dict[str, Any] | None = None
    ) -> call_result.RemoteStartTransaction:
        refusal = self._start_refusal(id_tag, connector_id)
        if refusal is not None:
            LOG.info("%s: RemoteStartTransaction rejected: %s", self.id, refusal)
            return call_result.RemoteStartTransaction(status="Rejected")
        reservation = self.station.reservation
        reservation_id = reservation.reservation_id if reservation else None
        self.intents.put_nowait(StartCharging(id_tag, reservation_id, charging_profile))
        return call_result.RemoteStartTransaction(status="Accepted")

    def _start_refusal(self, id_tag: str, connector_id: int | None) -> str | None:
        if connector_id not in (None, CONNECTOR_ID):
            return f"there is no connector {connector_id}"
        if self.model.car is not None:
            return "a transaction is in progress"
        if not self.station.operative:
            return "the connector is Unavailable"
        reservation = self.station.reservation
        if reservation is not None and reservation.id_tag != id_tag:
            return f"the connector is reserved (reservation {reservation.reservation_id})"
        return None

    @answers(Action.remote_stop_transaction)
    def on_remote_stop_transaction(self, transaction_id: int) -> call_result.RemoteStopTransaction:
        car = self.model.car
        if car is None or car.transaction_id != transaction_id:
            LOG.info("%s: RemoteStopTransaction rejected: transaction %d is not in progress", self.id, transaction_id)
            return call_result.RemoteStopTransaction(status="Rejected")
        self.intents.put_nowait(StopCharging("Remote"))
        return call_result.RemoteStopTransaction(status="Accepted")

    @answers(Action.unlock_connector)
    def on_unlock_connector(self, connector_id: int) -> call_result.UnlockConnector:
        if connector_id != CONNECTOR_ID:
            return call_result.UnlockConnector(status="NotSupported")
        if self.model.car is not None:  # unlocking ends the transaction (OCPP 1.6 5.17)
            self.intents.put_nowait(StopCharging("UnlockCommand"))
        return call_result.UnlockConnector(status="Unlocked")

    # -- availability, reservations, reset ---------------------------------------------

    @answers(Action.change_availability)
    def on_change_availability(self, **request: Any) -> call_result.ChangeAvailability:
        if request["connector_id"] not in (0, CONNECTOR_ID):
            return call_result.ChangeAvailability(status="Rejected")
        operative = request["type"] == "Operative"
        if not operative and self.model.car is not None:
            self.station.inoperative_scheduled = True  # after the transaction (OCPP 1.6 5.2)
            return call_result.ChangeAvailability(status="Scheduled")
        self.station.operative, self.station.inoperative_scheduled = operative, False
        self.intents.put_nowait(ReportStatus())
        return call_result.ChangeAvailability(status="Accepted")

    @answers(Action.reserve_now)
    def on_reserve_now(self, **request: Any) -> call_result.ReserveNow:
        reservation = self.station.reservation
        if request["connector_id"] != CONNECTOR_ID:
            status = "Rejected"  # ReserveConnectorZeroSupported is false
        elif not self.station.operative:
            status = "Unavailable"
        elif self.model.car is not None or (reservation and reservation.reservation_id != request["reservation_id"]):
            status = "Occupied"
        else:
            expires = parse_time(request["expiry_date"]) or time.time()
            self.station.reservation = Reservation(request["reservation_id"], request["id_tag"], expires)
            self.intents.put_nowait(ReportStatus())
            status = "Accepted"
        return call_result.ReserveNow(status=status)

    @answers(Action.cancel_reservation)
    def on_cancel_reservation(self, reservation_id: int) -> call_result.CancelReservation:
        reservation = self.station.reservation
        if reservation is None or reservation.reservation_id != reservation_id:
            return call_result.CancelReservation(status="Rejected")
        self.station.reservation = None
        self.intents.put_nowait(ReportStatus())
        return call_result.CancelReservation(status="Accepted")

    @answers(Action.reset)
    def on_reset(self, **request: Any) -> call_result.Reset:
        self.intents.put_nowait(Reboot(request["type"]))
        return call_result.Reset(status="Accepted")

    @answers(Action.trigger_message)
    def on_trigger_message(self, requested_message: str, connector_id: int | None = None) -> call_result.TriggerMessage:
        if requested_message not in TRIGGERABLE:
            return call_result.TriggerMessage(status="NotImplemented")
        if connector_id not in (None, 0, CONNECTOR_ID):
            return call_result.TriggerMessage(status="Rejected")
        self.intents.put_nowait(Send(requested_message, connector_id))
        return call_result.TriggerMessage(status="Accepted")

    # -- configuration and the rest ----------------------------------------------------

    @answers(Action.change_configuration)
    def on_change_configuration(self, key: str, value: str) -> call_result.ChangeConfiguration:
        status = self.station.configuration.change(key, value)
        LOG.info("%s: ChangeConfiguration of %s: %s", self.id, key, status)  # never the value: it may be a secret
        return call_result.ChangeConfiguration(status=status)

    @answers(Action.get_configuration)
    def on_get_configuration(self, key: list[str] | None = None) -> call_result.GetConfiguration:
        known, unknown = self.station.configuration.entries(key)
        return call_result.GetConfiguration(configuration_key=known, unknown_key=unknown or None)

    @answers(Action.data_transfer)
    def on_data_transfer(
        self, vendor_id: str, message_id: str | None = None, data: str | None = None
    ) -> call_result.DataTransfer:
        if vendor_id != VENDOR:
            return call_result.DataTransfer(status="UnknownVendorId")
        return call_result.DataTransfer(status="Accepted", data=data)

    @answers(Action.clear_cache)
    def on_clear_cache(self) -> call_result.ClearCache:
        return call_result.ClearCache(status="Accepted")

    @answers(Action.get_local_list_version)
    def on_get_local_list_version(self) -> call_result.GetLocalListVersion:
        return call_result.GetLocalListVersion(list_version=self.station.local_list_version)

    @answers(Action.send_local_list)
    def on_send_local_list(self, list_version: int, **request: Any) -> call_result.SendLocalList:
        self.station.local_list_version = list_version
        return call_result.SendLocalList(status="Accepted")


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
            charge_point_vendor=VENDOR, charge_point_model=MODEL,
            charge_point_serial_number=self.name[:25], firmware_version=__version__,
        )  # fmt: skip
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
            self.name, car.transaction_id, intent.id_tag, model.power_w(time.time()),
        )  # fmt: skip

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
                meter_stop=math.floor(sample.energy_wh), timestamp=time_text(now), transaction_id=car.transaction_id,
                reason=reason, id_tag=car.id_tag, transaction_data=[energy_reading(sample, now, "Transaction.End")],
            )  # fmt: skip
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


async def serve(station: Station, connection: ClientConnection, stop: asyncio.Event) -> bool:
    """Be the charger on `connection` until it closes or `stop` is set; True when it is to reboot."""
    link = Answers(station, connection)
    behaviour = Behaviour(station, link)
    await first_to_finish(link.read(), behaviour.run(), stop.wait())
    return behaviour.rebooting
