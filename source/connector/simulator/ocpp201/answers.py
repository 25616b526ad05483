"""Answers to the CSMS's calls: they change the station's state and queue what must follow.

As for 1.6 (see ocpp16/answers.py): the ocpp library reads one frame at a time, so what a
call sets going (a transaction to start or stop, a message to send, a reboot) goes to
`intents`, which `Behaviour` carries out. A call without a handler here is answered by the
library with the CALLERROR NotImplemented (a 2.0.1 action) or NotSupported (no such action).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from ocpp.v201 import ChargePoint, call_result
from ocpp.v201.enums import Action
from websockets.asyncio.client import ClientConnection

from connector.simulator.behaviour import RESPONSE_TIMEOUT_S, VENDOR, answers
from connector.simulator.ocpp201.payloads import (
    CONNECTOR_ID,
    EVSE_ID,
    EXTERNAL_CONSTRAINTS,
    DeviceModel,
    composite_schedule,
    model_purpose,
    profile_from_wire,
)
from connector.simulator.station import Intent, Reboot, ReportStatus, Send, StartCharging, Station, StopCharging
from connector.simulator.words import parse_time

LOG = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

# TriggerMessage's requestedMessage values the station sends; the certificate ones it cannot.
TRIGGERABLE = (
    "BootNotification",
    "Heartbeat",
    "LogStatusNotification",
    "FirmwareStatusNotification",
    "MeterValues",
    "StatusNotification",
    "TransactionEvent",
)


def answers201(action: Action) -> Callable[[F], F]:
    """`answers`, the handler never seeing customData: any 2.0.1 message may carry a vendor's
    extension there, and a station that does not know it ignores it (OCPP 2.0.1 part 4, 2.1.2)."""

    def decorate(handler: F) -> F:
        @functools.wraps(handler)
        def without_custom_data(self: Answers, custom_data: Any = None, **payload: Any) -> Any:
            return handler(self, **payload)

        return answers(action)(cast(F, without_custom_data))

    return decorate


class Answers(ChargePoint):  # type: ignore[misc]  # untyped library base
    """Answers to the CSMS's calls, as a real 2.0.1 charging station with one EVSE gives them."""

    def __init__(self, station: Station[DeviceModel], connection: ClientConnection) -> None:
        super().__init__(station.name, connection, response_timeout=RESPONSE_TIMEOUT_S)
        self.station = station
        self.model = station.model
        self.intents: asyncio.Queue[Intent] = asyncio.Queue()

    # -- smart charging ----------------------------------------------------------------

    @answers201(Action.set_charging_profile)
    def on_set_charging_profile(self, evse_id: int, charging_profile: dict[str, Any]) -> call_result.SetChargingProfile:
        now = time.time()
        if charging_profile["charging_profile_purpose"] == EXTERNAL_CONSTRAINTS:
            return self._profile_rejected(f"{EXTERNAL_CONSTRAINTS} are not the CSMS's to set")
        try:
            profile = profile_from_wire(evse_id, charging_profile)
        except ValueError as error:
            return self._profile_rejected(f"a date it cannot read ({error})")
        refusal = self.station.install(profile, now, outlet="EVSE")
        if refusal is not None:
            return self._profile_rejected(refusal)
        self.intents.put_nowait(ReportStatus())  # a limit of 0 suspends charging, one above resumes it
        period = profile.period_at(now, self.model.car.plugged_in if self.model.car else None)
        limit = "not in effect now" if period is None else f"{period.limit:g} {profile.unit}"
        LOG.info(
            "%s: limit received: %s %s on EVSE %d -> power now %s",
            self.id,
            charging_profile["charging_profile_purpose"],
            limit,
            evse_id,
            self.station.power_text(now),
        )
        return call_result.SetChargingProfile(status="Accepted")

    def _profile_rejected(self, reason: str) -> call_result.SetChargingProfile:
        LOG.warning("%s: SetChargingProfile rejected: %s", self.id, reason)
        return call_result.SetChargingProfile(status="Rejected")

    @answers201(Action.clear_charging_profile)
    def on_clear_charging_profile(
        self, charging_profile_id: int | None = None, charging_profile_criteria: dict[str, Any] | None = None
    ) -> call_result.ClearChargingProfile:
        now = time.time()
        criteria = charging_profile_criteria or {}
        purpose = criteria.get("charging_profile_purpose")
        self.model.advance(now)
        cleared = self.model.limits.clear(
            charging_profile_id,
            criteria.get("evse_id"),
            None if purpose is None else model_purpose(purpose),
            criteria.get("stack_level"),
        )
        if not cleared:
            return call_result.ClearChargingProfile(status="Unknown")
        self.intents.put_nowait(ReportStatus())
        LOG.info("%s: %d charging profile(s) cleared -> power now %s", self.id, cleared, self.station.power_text(now))
        return call_result.ClearChargingProfile(status="Accepted")

    @answers201(Action.get_composite_schedule)
    def on_get_composite_schedule(
        self, duration: int, evse_id: int, charging_rate_unit: str | None = None
    ) -> call_result.GetCompositeSchedule:
        if evse_id not in (0, EVSE_ID):
            return call_result.GetCompositeSchedule(status="Rejected")
        now = time.time()
        unit, limit = self.station.composite_limit(now, charging_rate_unit)
        schedule = composite_schedule(evse_id, duration, now, unit, limit)
        return call_result.GetCompositeSchedule(status="Accepted", schedule=schedule)

    # -- transactions ------------------------------------------------------------------

    @answers201(Action.request_start_transaction)
    def on_request_start_transaction(
        self,
        id_token: dict[str, Any],
        remote_start_id: int,
        evse_id: int | None = None,
        charging_profile: dict[str, Any] | None = None,
        **_: Any,  # groupIdToken: the station keeps no groups
    ) -> call_result.RequestStartTransaction:
        refusal = self.station.start_refusal(id_token["id_token"], evse_id)
        if refusal is not None:
            LOG.info("%s: RequestStartTransaction rejected: %s", self.id, refusal)
            return call_result.RequestStartTransaction(status="Rejected")
        reservation = self.station.reservation
        self.intents.put_nowait(
            StartCharging(
                id_token["id_token"],
                reservation.reservation_id if reservation else None,
                charging_profile,
                remote_start_id,
                id_token["type"],
            )
        )
        return call_result.RequestStartTransaction(status="Accepted")

    @answers201(Action.request_stop_transaction)
    def on_request_stop_transaction(self, transaction_id: str) -> call_result.RequestStopTransaction:
        car = self.model.car
        if car is None or car.transaction_id != transaction_id:
            LOG.info("%s: RequestStopTransaction rejected: %s is not in progress", self.id, transaction_id)
            return call_result.RequestStopTransaction(status="Rejected")
        self.intents.put_nowait(StopCharging("Remote"))
        return call_result.RequestStopTransaction(status="Accepted")

    @answers201(Action.unlock_connector)
    def on_unlock_connector(self, evse_id: int, connector_id: int) -> call_result.UnlockConnector:
        if (evse_id, connector_id) != (EVSE_ID, CONNECTOR_ID):
            return call_result.UnlockConnector(status="UnknownConnector")
        if self.model.car is not None:  # 2.0.1 F05.FR.02: not while an authorized transaction runs
            return call_result.UnlockConnector(status="OngoingAuthorizedTransaction")
        return call_result.UnlockConnector(status="Unlocked")

    # -- availability, reservations, reset ---------------------------------------------

    @answers201(Action.change_availability)
    def on_change_availability(
        self, operational_status: str, evse: dict[str, Any] | None = None
    ) -> call_result.ChangeAvailability:
        if evse is not None and evse["id"] not in (0, EVSE_ID):
            return call_result.ChangeAvailability(status="Rejected")
        if evse is not None and evse.get("connector_id") not in (None, CONNECTOR_ID):
            return call_result.ChangeAvailability(status="Rejected")
        # The station, its EVSE and its connector are one: each change is the station's.
        status = self.station.change_availability(operational_status == "Operative")
        self.intents.put_nowait(ReportStatus())
        return call_result.ChangeAvailability(status=status)

    @answers201(Action.reserve_now)
    def on_reserve_now(
        self, id: int, expiry_date_time: str, id_token: dict[str, Any], evse_id: int | None = None, **_: Any
    ) -> call_result.ReserveNow:
        if evse_id not in (None, EVSE_ID):
            return call_result.ReserveNow(status="Rejected")
        expires = parse_time(expiry_date_time) or time.time()
        status = self.station.reserve(id, id_token["id_token"], expires)
        self.intents.put_nowait(ReportStatus())
        return call_result.ReserveNow(status=status)

    @answers201(Action.cancel_reservation)
    def on_cancel_reservation(self, reservation_id: int) -> call_result.CancelReservation:
        if not self.station.cancel_reservation(reservation_id):
            return call_result.CancelReservation(status="Rejected")
        self.intents.put_nowait(ReportStatus())
        return call_result.CancelReservation(status="Accepted")

    @answers201(Action.reset)
    def on_reset(self, type: str, evse_id: int | None = None) -> call_result.Reset:  # `type`: Reset's own field name
        if evse_id is not None:
            return call_result.Reset(status="Rejected")  # resetting one EVSE alone: not supported
        if type == "OnIdle" and self.model.car is not None:
            self.station.reset_scheduled = type  # when the transaction ends (2.0.1 B12.FR.01)
            return call_result.Reset(status="Scheduled")
        self.intents.put_nowait(Reboot(type))
        return call_result.Reset(status="Accepted")

    @answers201(Action.trigger_message)
    def on_trigger_message(
        self, requested_message: str, evse: dict[str, Any] | None = None
    ) -> call_result.TriggerMessage:
        if requested_message not in TRIGGERABLE:
            return call_result.TriggerMessage(status="NotImplemented")
        refusal = self._trigger_refusal(requested_message, evse)
        if refusal is not None:
            LOG.info("%s: TriggerMessage %s rejected: %s", self.id, requested_message, refusal)
            return call_result.TriggerMessage(status="Rejected")
        self.intents.put_nowait(Send(requested_message, evse["id"] if evse else None))
        return call_result.TriggerMessage(status="Accepted")

    def _trigger_refusal(self, requested_message: str, evse: dict[str, Any] | None) -> str | None:
        if evse is not None and evse["id"] != EVSE_ID:
            return f"there is no EVSE {evse['id']}"
        if requested_message == "BootNotification" and self.station.booted:
            return "its last BootNotification was accepted (2.0.1 F06.FR.17)"
        if requested_message == "TransactionEvent" and self.model.car is None:
            return "no transaction is in progress"
        return None

    # -- device model and the rest -----------------------------------------------------

    @answers201(Action.get_variables)
    def on_get_variables(self, get_variable_data: list[dict[str, Any]]) -> call_result.GetVariables:
        return call_result.GetVariables(
            get_variable_result=[self.station.configuration.get(entry) for entry in get_variable_data]
        )

    @answers201(Action.set_variables)
    def on_set_variables(self, set_variable_data: list[dict[str, Any]]) -> call_result.SetVariables:
        results = [self.station.configuration.set(entry) for entry in set_variable_data]
        for result in results:  # never the value: it may be a secret
            component, variable = result["component"]["name"], result["variable"]["name"]
            LOG.info("%s: SetVariables of %s.%s: %s", self.id, component, variable, result["attribute_status"])
        return call_result.SetVariables(set_variable_result=results)

    @answers201(Action.data_transfer)
    def on_data_transfer(self, vendor_id: str, **_: Any) -> call_result.DataTransfer:
        # The station has no vendor extensions: its own vendor id knows no message.
        return call_result.DataTransfer(status="Rejected" if vendor_id == VENDOR else "UnknownVendorId")

    @answers201(Action.clear_cache)
    def on_clear_cache(self) -> call_result.ClearCache:
        return call_result.ClearCache(status="Accepted")

    @answers201(Action.get_local_list_version)
    def on_get_local_list_version(self) -> call_result.GetLocalListVersion:
        return call_result.GetLocalListVersion(version_number=self.station.local_list_version)

    @answers201(Action.send_local_list)
    def on_send_local_list(self, version_number: int, **_: Any) -> call_result.SendLocalList:
        self.station.local_list_version = version_number
        return call_result.SendLocalList(status="Accepted")
