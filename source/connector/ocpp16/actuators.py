"""Pure: the OCPP 1.6 actuator table: each actuator's value becomes the 1.6 call that carries
it, or a refusal; the charger's answer becomes a status and, for some actuators, sensors.

`TRANSLATIONS` maps every actuator name of the catalogue (`actuators.ACTUATORS`: name,
example, where it is offered) to its 1.6 `Translation`. The value parsers, the limit rules
and the call and refusal types are version-agnostic and live in actuators.py.
"""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

from connector.actuators import (
    CHARGING_PROFILE_STACK_LEVEL,
    GET_CONFIGURATION,
    MAX_INT32,
    SEND_CHARGING_PROFILE,
    SEND_CHARGING_PROFILE_CURRENT,
    TRIGGER_MESSAGE,
    TRIGGERABLE_MESSAGES,
    Build,
    ChargerFacts,
    OcppCall,
    Refusal,
    Translation,
    accepted,
    allowed_id_tag,
    charging_profile_id,
    data_transfer_payload,
    limit_to_send,
    ocpp_call,
    parse_choice,
    parse_number,
    quote,
    schema_checked,
    status_of,
)
from connector.datapoints import Datapoint, Scalar, grouped, key
from connector.protocol import CHARGER_ACTIONS, KNOWN_ACTIONS

# Calls an operator may send with execute_ocpp_call: what a central system sends.
CENTRAL_ACTIONS = frozenset(KNOWN_ACTIONS - CHARGER_ACTIONS | {"DataTransfer"})


# -- charging limits -------------------------------------------------------------------


def _limit(unit: str) -> Build:
    def build(value: Any, connector_id: int, facts: ChargerFacts) -> OcppCall | Refusal:
        if value is None:
            return clear_limit(connector_id)
        limit = limit_to_send(value, unit, facts)
        if isinstance(limit, Refusal):
            return limit
        return set_limit(connector_id, *limit)

    return build


def set_limit(connector_id: int, limit: Decimal, unit: str) -> OcppCall:
    """SetChargingProfile.req with this connector's one TxDefaultProfile."""
    # Relative + TxDefaultProfile + a single open-ended period: the limit applies to
    # every transaction from now on, independent of the charger's clock.
    profile = {
        "chargingProfileId": charging_profile_id(connector_id),
        "stackLevel": CHARGING_PROFILE_STACK_LEVEL,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": {
            "chargingRateUnit": unit,
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": float(limit)}],
        },
    }
    return OcppCall("SetChargingProfile", {"connectorId": connector_id, "csChargingProfiles": profile})


def clear_limit(connector_id: int) -> OcppCall:
    payload = {"id": charging_profile_id(connector_id), "connectorId": connector_id}
    return OcppCall("ClearChargingProfile", payload)


# -- the other calls -------------------------------------------------------------------


def _trigger_message(value: Any, connector_id: int, facts: ChargerFacts) -> OcppCall | Refusal:
    by_name = {name.lower(): name for name in TRIGGERABLE_MESSAGES}
    by_number = {str(number): name for number, name in enumerate(TRIGGERABLE_MESSAGES)}
    requested = None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 3.0 is the JSON number 3
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(TRIGGERABLE_MESSAGES):
        requested = TRIGGERABLE_MESSAGES[value]
    elif isinstance(value, str):
        requested = by_number.get(value.strip()) or by_name.get(value.strip().lower())
    if requested is None:
        choices = ", ".join(f"{i} {n}" for i, n in enumerate(TRIGGERABLE_MESSAGES))
        return Refusal(f"value must be one of {choices}; got {quote(value)}")
    return OcppCall("TriggerMessage", {"requestedMessage": requested})


def _remote_start(value: Any, connector_id: int, facts: ChargerFacts) -> OcppCall | Refusal:
    id_tag = allowed_id_tag(value, facts)
    if isinstance(id_tag, Refusal):
        return id_tag
    payload: dict[str, Any] = {"idTag": id_tag}
    if connector_id:  # connector 0: the charger chooses (OCPP 1.6 5.11)
        payload["connectorId"] = connector_id
    return OcppCall("RemoteStartTransaction", payload)


def _remote_stop(value: Any, connector_id: int, facts: ChargerFacts) -> OcppCall | Refusal:
    if facts.transaction_id is None:
        return Refusal(f"no transaction is active on connector {connector_id}")
    return OcppCall("RemoteStopTransaction", {"transactionId": facts.transaction_id})


def _change_availability(value: Any, connector_id: int, facts: ChargerFacts) -> OcppCall | Refusal:
    kind = parse_choice(value, ("Operative", "Inoperative"))
    if isinstance(kind, Refusal):
        return kind
    return OcppCall("ChangeAvailability", {"connectorId": connector_id, "type": kind})


def _reset(value: Any, connector_id: int, facts: ChargerFacts) -> OcppCall | Refusal:
    kind = parse_choice(value, ("Soft", "Hard"))
    return kind if isinstance(kind, Refusal) else OcppCall("Reset", {"type": kind})


def _unlock(value: Any, connector_id: int, facts: ChargerFacts) -> OcppCall | Refusal:
    if connector_id == 0:
        return Refusal("UnlockConnector needs a connector id > 0")
    return OcppCall("UnlockConnector", {"connectorId": connector_id})


def _change_configuration(value: Any, connector_id: int, facts: ChargerFacts) -> OcppCall | Refusal:
    # Never quoted: "AuthorizationKey 1234", a mistyped secret, has no "=" to tell where it starts.
    if not isinstance(value, str):
        return Refusal(f'value must be "Key=Value" text, got {type(value).__name__}')
    if "=" not in value or not value.split("=", 1)[0].strip():
        return Refusal(f'value must be "Key=Value" (a key, "=", the value; {len(value)} characters given, not shown)')
    name, setting = value.split("=", 1)
    return schema_checked(OcppCall("ChangeConfiguration", {"key": name.strip(), "value": setting}))


def _get_configuration(value: Any, connector_id: int, facts: ChargerFacts) -> OcppCall | Refusal:
    if not isinstance(value, str):
        return Refusal(f'value must be a configuration key, or "" for all; got {quote(value)}')
    name = value.strip()
    return schema_checked(OcppCall("GetConfiguration", {"key": [name]} if name else {}))


def _configuration_answer(
    cp: str, connector_id: int, call: OcppCall, payload: dict[str, Any], at: int
) -> list[Datapoint]:
    return [
        Datapoint(key(cp, "Configuration", entry["key"]), entry.get("value"), at)
        for entry in payload.get("configurationKey", [])
    ]


MAX_KEYS_NAMED = 5


def _configuration_status(payload: dict[str, Any]) -> tuple[str, str | None]:
    """NotSupported, OCPP's word for a key the charger does not know (ChangeConfiguration), where one is."""
    unknown = payload.get("unknownKey") or []
    if not unknown:
        return "Accepted", None
    named = ", ".join(quote(name) for name in unknown[:MAX_KEYS_NAMED])
    more = f" and {len(unknown) - MAX_KEYS_NAMED} more" if len(unknown) > MAX_KEYS_NAMED else ""
    return "NotSupported", f"the charger does not know the configuration key {named}{more}"


def _clear_profiles(value: Any, connector_id: int, facts: ChargerFacts) -> OcppCall | Refusal:
    return OcppCall("ClearChargingProfile", {"connectorId": connector_id})


def _composite_schedule(value: Any, connector_id: int, facts: ChargerFacts) -> OcppCall | Refusal:
    duration = parse_number(value, "a duration in whole seconds > 0")
    if isinstance(duration, Refusal) or duration != int(duration) or not 0 < duration <= MAX_INT32:
        return Refusal(f"value must be a duration in whole seconds, 1..{MAX_INT32}, got {quote(value)}")
    return OcppCall("GetCompositeSchedule", {"connectorId": connector_id, "duration": int(duration)})


def _composite_answer(cp: str, connector_id: int, call: OcppCall, payload: dict[str, Any], at: int) -> list[Datapoint]:
    schedule = payload.get("chargingSchedule") or {}
    periods = schedule.get("chargingSchedulePeriod") or []
    fields: dict[str, Scalar] = {
        "status": payload.get("status"),
        "schedule_start": payload.get("scheduleStart"),
        "duration": schedule.get("duration"),
        "charging_rate_unit": schedule.get("chargingRateUnit"),
        "min_charging_rate": schedule.get("minChargingRate"),
        "limit": periods[0].get("limit") if periods else None,  # the limit in effect at the start
        "periods": json.dumps(periods),
    }
    return grouped(cp, "CompositeSchedule", connector_id, fields, at)


def _reserve_now(value: Any, connector_id: int, facts: ChargerFacts) -> OcppCall | Refusal:
    id_tag = allowed_id_tag(value, facts)
    if isinstance(id_tag, Refusal):
        return id_tag
    expiry = facts.now + timedelta(seconds=facts.reservation_expiry_s)
    payload = {
        "connectorId": connector_id,
        "expiryDate": expiry.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "idTag": id_tag,
        "reservationId": facts.new_reservation_id(),
    }
    return OcppCall("ReserveNow", payload)


def reservation_datapoints(cp: str, connector_id: int, fields: dict[str, Scalar], at: int) -> list[Datapoint]:
    return grouped(cp, "Reservation", connector_id, fields, at)


def _reservation_answer(
    cp: str, connector_id: int, call: OcppCall, payload: dict[str, Any], at: int
) -> list[Datapoint]:
    fields: dict[str, Scalar] = {
        "reservation_id": call.payload["reservationId"],
        "id_tag": call.payload["idTag"],
        "expiry_date": call.payload["expiryDate"],
        "status": status_of(payload),
    }
    return reservation_datapoints(cp, connector_id, fields, at)


def _cancel_reservation(value: Any, connector_id: int, facts: ChargerFacts) -> OcppCall | Refusal:
    if facts.reservation_id is None:
        return Refusal(f"no reservation is open on connector {connector_id}")
    return OcppCall("CancelReservation", {"reservationId": facts.reservation_id})


def _cancel_answer(cp: str, connector_id: int, call: OcppCall, payload: dict[str, Any], at: int) -> list[Datapoint]:
    return reservation_datapoints(cp, connector_id, {"status": "Cancelled"}, at) if accepted(payload) else []


def _data_transfer(value: Any, connector_id: int, facts: ChargerFacts) -> OcppCall | Refusal:
    payload = data_transfer_payload(value, data_as_text=True)  # 1.6: `data` is a string
    return payload if isinstance(payload, Refusal) else schema_checked(OcppCall("DataTransfer", payload))


def _data_transfer_answer(
    cp: str, connector_id: int, call: OcppCall, payload: dict[str, Any], at: int
) -> list[Datapoint]:
    return [Datapoint(key(cp, "execute_data_transfer", "data"), payload.get("data"), at)]


def _id_tag_of(action: str, payload: dict[str, Any]) -> Any:
    """The id tag a 1.6 call starts or reserves for (execute_ocpp_call), or None."""
    return payload.get("idTag") if action in ("RemoteStartTransaction", "ReserveNow") else None


def _ocpp_call_answer(cp: str, connector_id: int, call: OcppCall, payload: dict[str, Any], at: int) -> list[Datapoint]:
    return [Datapoint(key(cp, "execute_ocpp_call", "response"), json.dumps(payload), at)]


TRANSLATIONS: dict[str, Translation] = {
    SEND_CHARGING_PROFILE: Translation(_limit("W")),
    SEND_CHARGING_PROFILE_CURRENT: Translation(_limit("A")),
    TRIGGER_MESSAGE: Translation(_trigger_message),
    "execute_remote_start_transaction": Translation(_remote_start),
    "execute_remote_stop_transaction": Translation(_remote_stop),
    "execute_change_availability": Translation(_change_availability),
    "execute_reset": Translation(_reset),
    "execute_unlock_connector": Translation(_unlock),
    "execute_change_configuration": Translation(_change_configuration),
    GET_CONFIGURATION: Translation(_get_configuration, _configuration_answer, _configuration_status),
    "execute_clear_charging_profile": Translation(_clear_profiles),
    "execute_get_composite_schedule": Translation(_composite_schedule, _composite_answer),
    "execute_reserve_now": Translation(_reserve_now, _reservation_answer),
    "execute_cancel_reservation": Translation(_cancel_reservation, _cancel_answer),
    "execute_data_transfer": Translation(_data_transfer, _data_transfer_answer),
    "execute_ocpp_call": Translation(ocpp_call("1.6", CENTRAL_ACTIONS, _id_tag_of), _ocpp_call_answer),
}


def build_call(name: str, connector_id: int, value: Any, facts: ChargerFacts | None = None) -> OcppCall | Refusal:
    """The OCPP 1.6 call for `value` on actuator `name` (connector `connector_id`)."""
    return TRANSLATIONS[name].build(value, connector_id, facts or ChargerFacts())
