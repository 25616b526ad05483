"""Pure: how OCPP 2.0.1 carries each actuator (INTERFACE.md 8): value -> call, answer -> datapoints.

The actuators themselves (names, examples, where they are offered) are the catalogue's,
`actuators.ACTUATORS`, the same in every version; `TRANSLATIONS` is the 2.0.1 column of it.
`<c>` in a key is the EVSE id here, 0 the charging station as a whole. Values are read with
the shared parsers and limits go through the shared rules (`actuators.limit_to_send`), so a
value means the same to a 1.6 and a 2.0.1 charger.

Builders whose message differs in 2.1 (id token length, trigger names, the schemas an
operator's text is checked against) are made by small factories that ocpp21/actuators.py
calls with 2.1's values; everything else 2.1 takes from here as it is.

Choices a reader may wonder about:
- Remote starts and reservations send the id tag as an IdToken of type `Central` ("generated
  in the CSMS", no format defined): the interface gives a bare id tag, not its kind. A start
  or reservation for a card of another type goes through execute_ocpp_call.
- UnlockConnector names a connector within an EVSE; the actuator key names the EVSE only, so
  the EVSE's connector 1 is unlocked (one connector per EVSE is what real chargers have).
- Configuration is the device model, read and written by variables.py's builders.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from ocpp.v201.enums import MessageTriggerEnumType

from connector.actuators import (
    CHARGING_PROFILE_STACK_LEVEL,
    GET_CONFIGURATION,
    MAX_INT32,
    SEND_CHARGING_PROFILE,
    SEND_CHARGING_PROFILE_CURRENT,
    TRIGGER_MESSAGE,
    Build,
    ChargerFacts,
    OcppCall,
    Refusal,
    Translation,
    accepted,
    charging_profile_id,
    data_transfer_payload,
    limit_to_send,
    ocpp_call,
    parse_choice,
    parse_number,
    parse_text,
    quote,
    schema_checked,
    status_of,
)
from connector.datapoints import Datapoint, Scalar, grouped, key
from connector.ocpp201.variables import get_variables, set_variables, variables_answer, variables_status

OCPP_VERSION = "2.0.1"
ID_TOKEN_LENGTH = 36  # IdTokenType.idToken, 2.0.1
ID_TOKEN_TYPE = "Central"

# TriggerMessage's numbers keep their 1.6 meaning (INTERFACE.md 8); 2.x reports logs and
# diagnostics alike with LogStatusNotification, so it takes DiagnosticsStatusNotification's place.
NUMBERED_TRIGGERS = (
    "BootNotification",
    "LogStatusNotification",
    "FirmwareStatusNotification",
    "Heartbeat",
    "MeterValues",
    "StatusNotification",
)
TRIGGER_NAMES = tuple(str(name) for name in MessageTriggerEnumType)

# The messages a CSMS sends (OCPP 2.0.1 Part 2, every CSMS -> Charging Station message,
# DataTransfer going both ways): what execute_ocpp_call may send.
CENTRAL_ACTIONS = frozenset(
    {
        "CancelReservation",
        "CertificateSigned",
        "ChangeAvailability",
        "ClearCache",
        "ClearChargingProfile",
        "ClearDisplayMessage",
        "ClearVariableMonitoring",
        "CostUpdated",
        "CustomerInformation",
        "DataTransfer",
        "DeleteCertificate",
        "GetBaseReport",
        "GetChargingProfiles",
        "GetCompositeSchedule",
        "GetDisplayMessages",
        "GetInstalledCertificateIds",
        "GetLocalListVersion",
        "GetLog",
        "GetMonitoringReport",
        "GetReport",
        "GetTransactionStatus",
        "GetVariables",
        "InstallCertificate",
        "PublishFirmware",
        "RequestStartTransaction",
        "RequestStopTransaction",
        "ReserveNow",
        "Reset",
        "SendLocalList",
        "SetChargingProfile",
        "SetDisplayMessage",
        "SetMonitoringBase",
        "SetMonitoringLevel",
        "SetNetworkProfile",
        "SetVariableMonitoring",
        "SetVariables",
        "TriggerMessage",
        "UnlockConnector",
        "UnpublishFirmware",
        "UpdateFirmware",
    }
)

UNLOCKED_CONNECTOR = 1  # of the EVSE the key names
# Soft waits for the EVSEs to be idle, Hard does not: 2.x's words for the same two resets.
RESET_TYPES = {"Soft": "OnIdle", "Hard": "Immediate", "OnIdle": "OnIdle", "Immediate": "Immediate"}


def utc_text(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


# -- charging limits -------------------------------------------------------------------


def send_limit(unit: str) -> Build:
    """The SetChargingProfile (a number) or ClearChargingProfile (null) for a limit asked in `unit`."""

    def build(value: Any, evse_id: int, facts: ChargerFacts) -> OcppCall | Refusal:
        if value is None:
            return clear_limit(evse_id)
        checked = limit_to_send(value, unit, facts)
        return checked if isinstance(checked, Refusal) else set_limit(evse_id, *checked)

    return build


def set_limit(evse_id: int, limit: Decimal, unit: str) -> OcppCall:
    """SetChargingProfile with this EVSE's one TxDefaultProfile (EVSE 0: every EVSE's default).

    As in 1.6: Relative, so no startSchedule (a Relative schedule starts with each
    transaction), with a single open-ended period: the limit applies to every transaction
    from now on, whatever the charger's clock; a profile with an installed profile's id
    replaces it, so the fixed id makes each new limit replace the last.
    """
    profile_id = charging_profile_id(evse_id)
    schedule = {
        "id": profile_id,
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": float(limit)}],
    }
    profile = {
        "id": profile_id,
        "stackLevel": CHARGING_PROFILE_STACK_LEVEL,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": [schedule],
    }
    return OcppCall("SetChargingProfile", {"evseId": evse_id, "chargingProfile": profile})


def clear_limit(evse_id: int) -> OcppCall:
    return OcppCall("ClearChargingProfile", {"chargingProfileId": charging_profile_id(evse_id)})


def _clear_profiles(value: Any, evse_id: int, facts: ChargerFacts) -> OcppCall | Refusal:
    return OcppCall("ClearChargingProfile", {"chargingProfileCriteria": {"evseId": evse_id}})


def _composite_schedule(value: Any, evse_id: int, facts: ChargerFacts) -> OcppCall | Refusal:
    duration = parse_number(value, "a duration in whole seconds > 0")
    if isinstance(duration, Refusal) or duration != int(duration) or not 0 < duration <= MAX_INT32:
        return Refusal(f"value must be a duration in whole seconds, 1..{MAX_INT32}, got {quote(value)}")
    return OcppCall("GetCompositeSchedule", {"duration": int(duration), "evseId": evse_id})


def composite_answer(cp: str, evse_id: int, call: OcppCall, payload: dict[str, Any], at: int) -> list[Datapoint]:
    """The keys of 1.6's answer; 2.x's composite schedule has no minChargingRate, so that one is left out."""
    schedule = payload.get("schedule") or {}
    periods = schedule.get("chargingSchedulePeriod") or []
    first = periods[0] if periods and isinstance(periods[0], dict) else {}
    fields: dict[str, Scalar] = {
        "status": payload.get("status"),
        "schedule_start": schedule.get("scheduleStart"),
        "duration": schedule.get("duration"),
        "charging_rate_unit": schedule.get("chargingRateUnit"),
        "limit": first.get("limit"),  # the limit in effect at the start
        "periods": json.dumps(periods),
    }
    return grouped(cp, "CompositeSchedule", evse_id, fields, at)


# -- transactions and reservations -----------------------------------------------------


def id_token(value: Any, facts: ChargerFacts, max_length: int) -> dict[str, str] | Refusal:
    """An id tag the id-tag policy allows, as the IdToken a CSMS sends for it."""
    token = parse_text(value, "an id tag", max_length)
    if isinstance(token, Refusal):
        return token
    return policy_refusal(token, facts) or {"idToken": token, "type": ID_TOKEN_TYPE}


def policy_refusal(token: str, facts: ChargerFacts) -> Refusal | None:
    return None if facts.id_tag_allowed(token) else Refusal(f"id tag {token!r} is not allowed (OCPP_ALLOWED_ID_TAGS)")


def remote_start(max_length: int) -> Build:
    """RequestStartTransaction for an id tag of at most `max_length` characters."""

    def build(value: Any, evse_id: int, facts: ChargerFacts) -> OcppCall | Refusal:
        token = id_token(value, facts, max_length)
        if isinstance(token, Refusal):
            return token
        payload: dict[str, Any] = {"idToken": token, "remoteStartId": facts.new_remote_start_id()}
        if evse_id:  # EVSE 0 is no EVSE (evseId > 0): left out, the charging station chooses
            payload["evseId"] = evse_id
        return OcppCall("RequestStartTransaction", payload)

    return build


def _remote_stop(value: Any, evse_id: int, facts: ChargerFacts) -> OcppCall | Refusal:
    if facts.transaction_id is None:
        return Refusal(f"no transaction is active on EVSE {evse_id}")
    # Not schema-checked: the id is the station's own, as it sent it; one longer than the
    # schema's 36 characters (tolerated on the way in) must still be stoppable.
    return OcppCall("RequestStopTransaction", {"transactionId": str(facts.transaction_id)})


def reserve_now(max_length: int) -> Build:
    """ReserveNow for an id tag of at most `max_length` characters, expiring after the configured time."""

    def build(value: Any, evse_id: int, facts: ChargerFacts) -> OcppCall | Refusal:
        token = id_token(value, facts, max_length)
        if isinstance(token, Refusal):
            return token
        expiry = facts.now + timedelta(seconds=facts.reservation_expiry_s)
        payload: dict[str, Any] = {
            "id": facts.new_reservation_id(),
            "expiryDateTime": utc_text(expiry),
            "idToken": token,
        }
        if evse_id:  # left out: a reservation for any EVSE of the charging station
            payload["evseId"] = evse_id
        return OcppCall("ReserveNow", payload)

    return build


def reservation_answer(cp: str, evse_id: int, call: OcppCall, payload: dict[str, Any], at: int) -> list[Datapoint]:
    """The reservation under 1.6's keys: `<cp>__Reservation__<c>__...`."""
    fields: dict[str, Scalar] = {
        "reservation_id": call.payload["id"],
        "id_tag": call.payload["idToken"]["idToken"],
        "expiry_date": call.payload["expiryDateTime"],
        "status": status_of(payload),
    }
    return grouped(cp, "Reservation", evse_id, fields, at)


def _cancel_reservation(value: Any, evse_id: int, facts: ChargerFacts) -> OcppCall | Refusal:
    if facts.reservation_id is None:
        return Refusal(f"no reservation is open on EVSE {evse_id}")
    return OcppCall("CancelReservation", {"reservationId": facts.reservation_id})


def _cancel_answer(cp: str, evse_id: int, call: OcppCall, payload: dict[str, Any], at: int) -> list[Datapoint]:
    return grouped(cp, "Reservation", evse_id, {"status": "Cancelled"}, at) if accepted(payload) else []


# -- the charging station --------------------------------------------------------------

_BY_NUMBER = {str(number): name for number, name in enumerate(NUMBERED_TRIGGERS)}


def numbered_trigger(value: Any) -> str | None:
    """0..5 (a JSON number, 3.0 included, or digits) as the message it stands for."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return _BY_NUMBER.get(str(value))
    return _BY_NUMBER.get(value.strip()) if isinstance(value, str) else None


def trigger_message(names: tuple[str, ...]) -> Build:
    """TriggerMessage for 0..5 or one of `names` (the version's requestedMessage values), in any case."""
    by_name = {name.lower(): name for name in names}
    numbered = ", ".join(f"{number} {name}" for number, name in enumerate(NUMBERED_TRIGGERS))
    choices = f"{numbered}, or a name: {', '.join(n for n in names if n not in NUMBERED_TRIGGERS)}"

    def build(value: Any, evse_id: int, facts: ChargerFacts) -> OcppCall | Refusal:
        requested = numbered_trigger(value)
        if requested is None and isinstance(value, str):
            requested = by_name.get(value.strip().lower())
        if requested is None:
            return Refusal(f"value must be one of {choices}; got {quote(value)}")
        return OcppCall("TriggerMessage", {"requestedMessage": requested})

    return build


def _change_availability(value: Any, evse_id: int, facts: ChargerFacts) -> OcppCall | Refusal:
    status = parse_choice(value, ("Operative", "Inoperative"))
    if isinstance(status, Refusal):
        return status
    payload: dict[str, Any] = {"operationalStatus": status}
    if evse_id:  # no evse: the charging station as a whole
        payload["evse"] = {"id": evse_id}
    return OcppCall("ChangeAvailability", payload)


def _reset(value: Any, evse_id: int, facts: ChargerFacts) -> OcppCall | Refusal:
    kind = parse_choice(value, tuple(RESET_TYPES))
    return kind if isinstance(kind, Refusal) else OcppCall("Reset", {"type": RESET_TYPES[kind]})


def _unlock(value: Any, evse_id: int, facts: ChargerFacts) -> OcppCall | Refusal:
    if evse_id == 0:
        return Refusal("UnlockConnector needs an EVSE id > 0")
    return OcppCall("UnlockConnector", {"evseId": evse_id, "connectorId": UNLOCKED_CONNECTOR})


# -- free-form calls -------------------------------------------------------------------


def _data_transfer(value: Any, evse_id: int, facts: ChargerFacts) -> OcppCall | Refusal:
    payload = data_transfer_payload(value, data_as_text=False)  # 2.x: `data` is any JSON, sent as it is
    if isinstance(payload, Refusal):
        return payload
    # The same DataTransfer request schema in 2.0.1 and 2.1: one check serves both.
    return schema_checked(OcppCall("DataTransfer", payload), OCPP_VERSION)


def data_transfer_answer(cp: str, evse_id: int, call: OcppCall, payload: dict[str, Any], at: int) -> list[Datapoint]:
    """The answer's data as a value: a JSON scalar as it is, anything else as JSON text."""
    data = payload.get("data")
    value = data if data is None or isinstance(data, str | int | float | bool) else json.dumps(data)
    return [Datapoint(key(cp, "execute_data_transfer", "data"), value, at)]


def id_token_of(action: str, payload: dict[str, Any]) -> Any:
    """The idToken text a 2.x call starts or reserves for (execute_ocpp_call), or None."""
    token = payload.get("idToken") if action in ("RequestStartTransaction", "ReserveNow") else None
    return token.get("idToken") if isinstance(token, dict) else None


def ocpp_call_answer(cp: str, evse_id: int, call: OcppCall, payload: dict[str, Any], at: int) -> list[Datapoint]:
    return [Datapoint(key(cp, "execute_ocpp_call", "response"), json.dumps(payload), at)]


# Examples for the listing where the catalogue's (1.6's) would be refused here.
EXAMPLES = {
    "execute_change_configuration": "OCPPCommCtrlr.HeartbeatInterval=300",
    GET_CONFIGURATION: "SmartChargingCtrlr.RateUnit",
}

TRANSLATIONS: dict[str, Translation] = {
    SEND_CHARGING_PROFILE: Translation(send_limit("W")),
    SEND_CHARGING_PROFILE_CURRENT: Translation(send_limit("A")),
    TRIGGER_MESSAGE: Translation(trigger_message(TRIGGER_NAMES)),
    "execute_remote_start_transaction": Translation(remote_start(ID_TOKEN_LENGTH)),
    "execute_remote_stop_transaction": Translation(_remote_stop),
    "execute_change_availability": Translation(_change_availability),
    "execute_reset": Translation(_reset),
    "execute_unlock_connector": Translation(_unlock),
    "execute_change_configuration": Translation(
        set_variables(OCPP_VERSION), status=variables_status("setVariableResult")
    ),
    GET_CONFIGURATION: Translation(get_variables, variables_answer, variables_status("getVariableResult")),
    "execute_clear_charging_profile": Translation(_clear_profiles),
    "execute_get_composite_schedule": Translation(_composite_schedule, composite_answer),
    "execute_reserve_now": Translation(reserve_now(ID_TOKEN_LENGTH), reservation_answer),
    "execute_cancel_reservation": Translation(_cancel_reservation, _cancel_answer),
    "execute_data_transfer": Translation(_data_transfer, data_transfer_answer),
    "execute_ocpp_call": Translation(ocpp_call(OCPP_VERSION, CENTRAL_ACTIONS, id_token_of), ocpp_call_answer),
}
