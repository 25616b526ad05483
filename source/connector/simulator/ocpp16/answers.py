"""Answers to the central system's calls: they change the charger's state and queue what must follow.

The ocpp library reads one frame at a time, so a handler that awaited a call of its own
would wait for an answer it cannot read; what a call sets going (a transaction to start or
stop, a message to send, a reboot) goes to `intents`, which `Behaviour` carries out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.enums import Action
from websockets.asyncio.client import ClientConnection

from connector.actuators import TRIGGERABLE_MESSAGES
from connector.simulator.behaviour import RESPONSE_TIMEOUT_S, VENDOR, answers
from connector.simulator.ocpp16.payloads import CONNECTOR_ID, Configuration, profile_from_wire
from connector.simulator.station import Intent, Reboot, ReportStatus, Send, StartCharging, Station, StopCharging
from connector.simulator.words import parse_time, time_text

LOG = logging.getLogger(__name__)

# The messages of OCPP 1.6's core that a trigger asks for: the ones the simulator can send.
TRIGGERABLE = TRIGGERABLE_MESSAGES


class Answers(ChargePoint):  # type: ignore[misc]  # untyped library base
    """Answers to the central system's calls, as a real 1.6 charger with one connector gives them."""

    def __init__(self, station: Station[Configuration], connection: ClientConnection) -> None:
        super().__init__(station.name, connection, response_timeout=RESPONSE_TIMEOUT_S)
        self.station = station
        self.model = station.model
        self.intents: asyncio.Queue[Intent] = asyncio.Queue()

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
        refusal = self.station.install(profile, now)
        if refusal is not None:
            return self._profile_rejected(refusal)
        self.intents.put_nowait(ReportStatus())  # a limit of 0 suspends charging, one above resumes it
        period = profile.period_at(now, self.model.car.plugged_in if self.model.car else None)
        limit = "not in effect now" if period is None else f"{period.limit:g} {profile.unit}"
        LOG.info(
            "%s: limit received: %s %s on connector %d -> power now %s",
            self.id,
            profile.purpose,
            limit,
            connector_id,
            self.station.power_text(now),
        )
        return call_result.SetChargingProfile(status="Accepted")

    def _profile_rejected(self, reason: str) -> call_result.SetChargingProfile:
        LOG.warning("%s: SetChargingProfile rejected: %s", self.id, reason)
        return call_result.SetChargingProfile(status="Rejected")

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
        self.intents.put_nowait(ReportStatus())
        LOG.info("%s: %d charging profile(s) cleared -> power now %s", self.id, cleared, self.station.power_text(now))
        return call_result.ClearChargingProfile(status="Accepted")

    @answers(Action.get_composite_schedule)
    def on_get_composite_schedule(
        self, connector_id: int, duration: int, charging_rate_unit: str | None = None
    ) -> call_result.GetCompositeSchedule:
        if connector_id not in (0, CONNECTOR_ID):
            return call_result.GetCompositeSchedule(status="Rejected")
        now = time.time()
        unit, limit = self.station.composite_limit(now, charging_rate_unit)
        period = {"start_period": 0, "limit": limit}
        schedule = {"duration": duration, "charging_rate_unit": unit, "charging_schedule_period": [period]}
        return call_result.GetCompositeSchedule(
            status="Accepted", connector_id=connector_id, schedule_start=time_text(now), charging_schedule=schedule
        )

    # -- transactions ------------------------------------------------------------------

    @answers(Action.remote_start_transaction)
    def on_remote_start_transaction(
        self, id_tag: str, connector_id: int | None = None, charging_profile: dict[str, Any] | None = None
    ) -> call_result.RemoteStartTransaction:
        refusal = self.station.start_refusal(id_tag, connector_id)
        if refusal is not None:
            LOG.info("%s: RemoteStartTransaction rejected: %s", self.id, refusal)
            return call_result.RemoteStartTransaction(status="Rejected")
        reservation = self.station.reservation
        reservation_id = reservation.reservation_id if reservation else None
        self.intents.put_nowait(StartCharging(id_tag, reservation_id, charging_profile))
        return call_result.RemoteStartTransaction(status="Accepted")

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
        status = self.station.change_availability(request["type"] == "Operative")
        self.intents.put_nowait(ReportStatus())
        return call_result.ChangeAvailability(status=status)

    @answers(Action.reserve_now)
    def on_reserve_now(self, **request: Any) -> call_result.ReserveNow:
        if request["connector_id"] != CONNECTOR_ID:
            return call_result.ReserveNow(status="Rejected")  # ReserveConnectorZeroSupported is false
        expires = parse_time(request["expiry_date"]) or time.time()
        status = self.station.reserve(request["reservation_id"], request["id_tag"], expires)
        self.intents.put_nowait(ReportStatus())
        return call_result.ReserveNow(status=status)

    @answers(Action.cancel_reservation)
    def on_cancel_reservation(self, reservation_id: int) -> call_result.CancelReservation:
        if not self.station.cancel_reservation(reservation_id):
            return call_result.CancelReservation(status="Rejected")
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
