"""Pure: an actuator value becomes the OCPP 1.6 call that carries it, or a refusal; the
charger's answer becomes a status and, for some actuators, sensor datapoints.

Nothing here does I/O. The command runner hands `build_call` the actuator name, the
connector id from the key, the value from MQTT and a snapshot of what the connector knows
about the charger (`ChargerFacts`); it sends whatever `OcppCall` comes back. A `Refusal`
carries the reason that ends up in `Failed: <reason>`.
"""

from __future__ import annotations

import json
import math
import reprlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Context, Decimal
from typing import Any

from ocpp.messages import MessageType

from connector.datapoints import NUMBER, Datapoint, Scalar, key
from connector.protocol import CHARGER_ACTIONS, KNOWN_ACTIONS, check_payload, load_json

SEND_CHARGING_PROFILE = "execute_send_charging_profile"
SEND_CHARGING_PROFILE_CURRENT = "execute_send_charging_profile_current"
TRIGGER_MESSAGE = "execute_trigger_message"
GET_CONFIGURATION = "execute_get_configuration"

RATE_UNIT_KEY = "ChargingScheduleAllowedChargingRateUnit"

# OCPP 1.6 TriggerMessage.req requestedMessage, numbered as the interface numbers them.
TRIGGERABLE_MESSAGES = (
    "BootNotification",
    "DiagnosticsStatusNotification",
    "FirmwareStatusNotification",
    "Heartbeat",
    "MeterValues",
    "StatusNotification",
)

# One fixed TxDefaultProfile id per connector: OCPP 1.6 3.13.2 says a profile with the
# same id replaces the installed one, so each new limit supersedes the last instead of
# stacking up. W and A limits share it: the newest limit wins, whatever its unit. The
# offset keeps clear of the small ids other back ends tend to use.
CHARGING_PROFILE_ID_BASE = 1000
CHARGING_PROFILE_STACK_LEVEL = 0
DEFAULT_VOLTAGE = 230.0
# The largest limits sent: beyond any charger (the largest chargers draw ~1 MW, ~3 kA), so a
# value above is a mistake, not a limit (1e308 W would lift every limit in effect).
MAX_LIMIT = {"W": 10_000_000.0, "A": 10_000.0}
MAX_INT32 = 2**31 - 1  # chargers store OCPP integers in 32 bits
# Calls an operator may send with execute_ocpp_call: what a central system sends.
CENTRAL_SYSTEM_ACTIONS = frozenset(KNOWN_ACTIONS - CHARGER_ACTIONS | {"DataTransfer"})


@dataclass(frozen=True)
class ChargerFacts:
    """What a command may need to know about the charger, as of now."""

    transaction_id: int | str | None = None  # active on the addressed connector (2.x: the charger's string id)
    reservation_id: int | None = None  # open on the addressed connector
    new_reservation_id: Callable[[], int] = field(default=lambda: 1)  # called only to reserve
    new_remote_start_id: Callable[[], int] = field(default=lambda: 1)  # 2.x: called only to start
    allowed_rate_units: frozenset[str] | None = None  # {"W", "A"} subset; None: not known
    voltages: tuple[float, ...] = ()  # plausible phase voltages measured in this session, latest per phase
    phases: int = 3
    reservation_expiry_s: int = 3600
    id_tag_allowed: Callable[[str], bool] = field(default=lambda tag: True)
    now: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True)
class OcppCall:
    action: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Refusal:
    reason: str


Build = Callable[[Any, int, ChargerFacts], "OcppCall | Refusal"]
Answer = Callable[[str, int, "OcppCall", dict[str, Any], int], list[Datapoint]]  # (cp, c, call, answer, ms)


def no_datapoints(cp: str, connector_id: int, call: OcppCall, payload: dict[str, Any], at: int) -> list[Datapoint]:
    return []


def charger_status(payload: dict[str, Any]) -> tuple[str, str | None]:
    """(status, nothing to warn of): the charger's answer as it is."""
    return status_of(payload), None


@dataclass(frozen=True)
class Actuator:
    name: str
    per_connector: bool
    example: Any
    build: Build
    answer: Answer = no_datapoints
    needs_rate_units: bool = False
    # Acts on one connector (unlock, stop its transaction): meaningless on connector 0, the
    # charge point as a whole, so not offered there.
    needs_connector: bool = False
    # The answer as (status, WARNING to log or None), where the answer alone does not say.
    status: Callable[[dict[str, Any]], tuple[str, str | None]] = charger_status


@dataclass(frozen=True)
class Translation:
    """One version's way of carrying an actuator: value -> call, answer -> datapoints and status.

    The actuator's name, example and where it is offered (`Actuator`) are the same in every
    version; a version table (ocpp16/, ocpp201/, ocpp21/) maps each name to a Translation.
    """

    build: Build
    answer: Answer = no_datapoints
    status: Callable[[dict[str, Any]], tuple[str, str | None]] = charger_status


def charging_profile_id(connector_id: int) -> int:
    return CHARGING_PROFILE_ID_BASE + connector_id


def status_of(payload: dict[str, Any]) -> str:
    """The charger's answer as a status: its `status`, or Accepted for answers without one."""
    return str(payload.get("status", "Accepted"))


def accepted(payload: dict[str, Any]) -> bool:
    """For the connector's own book-keeping; some chargers answer "accepted"."""
    return status_of(payload).lower() == "accepted"


# -- value parsing ---------------------------------------------------------------------

QUOTED_CHARS = 40  # of a refused value: enough to recognise it, never a whole 20 MB value


def _short_repr() -> reprlib.Repr:
    """repr for JSON values cut short at every level, at a cost bounded whatever their size."""
    short = reprlib.Repr()
    short.maxlevel, short.maxdict, short.maxlist = 2, 4, 4
    short.maxstring = short.maxlong = short.maxother = QUOTED_CHARS
    return short


_SHORT = _short_repr()


def quote(value: Any) -> str:
    """A refused value as a refusal quotes it: a short prefix, with the length of a cut string.

    Not for values that may be secrets (ChangeConfiguration's): those are never quoted.
    """
    if isinstance(value, str) and len(value) > QUOTED_CHARS:
        return f"{value[:QUOTED_CHARS]!r}... ({len(value)} characters)"
    return _SHORT.repr(value)


def parse_number(value: Any, what: str) -> float | Refusal:
    """A finite number >= 0 from a JSON number or a numeric string."""
    refusal = Refusal(f"value must be {what}, got {quote(value)}")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return refusal
    if isinstance(value, str) and not NUMBER.fullmatch(value.strip()):
        return refusal  # JSON's number grammar: no "1_000", "inf" or non-ASCII digits
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return refusal
    if not math.isfinite(number) or number < 0:
        return refusal
    return number


def tenths(number: float) -> Decimal:
    # OCPP 1.6 limits have multipleOf 0.1; rounding down never exceeds the asked limit.
    # 400 digits hold any float to 0.1, so quantize never overflows its context.
    return Decimal(repr(number)).quantize(Decimal("0.1"), rounding=ROUND_DOWN, context=Context(prec=400))


def parse_text(value: Any, what: str, max_length: int | None = None) -> str | Refusal:
    if not isinstance(value, str) or not value.strip():
        return Refusal(f"value must be {what}, got {quote(value)}")
    text = value.strip()
    if max_length is not None and len(text) > max_length:
        return Refusal(f"value must be {what} of at most {max_length} characters, got {len(text)}")
    return text


def parse_choice(value: Any, options: tuple[str, ...]) -> str | Refusal:
    by_lower = {option.lower(): option for option in options}
    if isinstance(value, str) and value.strip().lower() in by_lower:
        return by_lower[value.strip().lower()]
    return Refusal(f"value must be one of {', '.join(options)}; got {quote(value)}")


def json_object(value: Any, what: str) -> dict[str, Any] | Refusal:
    """A JSON object given as JSON text (the interface's form) or as an object already."""
    if isinstance(value, str):
        try:
            value = load_json(value)  # NaN, Infinity and deep nesting are not JSON here either
        except ValueError:
            return Refusal(f"value must be JSON text of {what}")
    if not isinstance(value, dict):
        return Refusal(f"value must be JSON text of {what}")
    return value


def schema_checked(call: OcppCall, version: str = "1.6") -> OcppCall | Refusal:
    """Refuse a call OCPP `version`'s schema refuses: an operator's typo must not reach a charger.

    The reason names the path and the rule, never the value: it may be a secret
    (AuthorizationKey, a password in a DataTransfer) or megabytes long.
    """
    verdict = check_payload(call.action, call.payload, MessageType.Call, version)
    if verdict.refusal is None and not verdict.tolerated:
        return call
    return Refusal(f"{call.action} payload breaks the OCPP {version} schema: {verdict.unquoted[0]}")


# -- charging limits -------------------------------------------------------------------


def limit_in(limit: float, unit: str, facts: ChargerFacts) -> tuple[float, str]:
    """The limit in a unit the charger allows, never weaker than asked.

    W -> A divides by volts x phases, so it takes the highest voltage measured (the smallest
    current); A -> W multiplies, so it takes the lowest (the smallest power). 230 V where the
    session measured none.
    """
    allowed = facts.allowed_rate_units
    if allowed is None or unit in allowed or not allowed:
        return limit, unit
    if unit == "W":
        return limit / (max(facts.voltages, default=DEFAULT_VOLTAGE) * facts.phases), "A"
    return limit * min(facts.voltages, default=DEFAULT_VOLTAGE) * facts.phases, "W"


def _limit(unit: str) -> Build:
    def build(value: Any, connector_id: int, facts: ChargerFacts) -> OcppCall | Refusal:
        if value is None:
            return clear_limit(connector_id)
        number = parse_number(value, f"a number >= 0 ({unit}) or null")
        if isinstance(number, Refusal):
            return number
        if number > MAX_LIMIT[unit]:
            return Refusal(f"value must be at most {MAX_LIMIT[unit]:.0f} {unit}, got {quote(value)}")
        sent, sent_unit = limit_in(number, unit, facts)
        if sent > MAX_LIMIT[sent_unit]:
            beyond = f"beyond {MAX_LIMIT[sent_unit]:.0f} {sent_unit}"
            return Refusal(f"value {quote(value)} {unit} is {sent:.0f} {sent_unit} for this charger, {beyond}")
        return set_limit(connector_id, tenths(sent), sent_unit)

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


def parse_rate_units(text: Any) -> frozenset[str] | None:
    """ChargingScheduleAllowedChargingRateUnit as chargers send it -> {"A", "W"} subset.

    Seen: "Current", "Power", "Current,Power", "current, power", "Current;Power". None
    (unknown: both assumed) when absent or when nothing in it is recognisable.
    """
    if not isinstance(text, str):
        return None
    words = text.replace(";", ",").replace(" ", ",").lower().split(",")
    units = frozenset({"current": "A", "power": "W"}[w] for w in words if w in ("current", "power"))
    return units or None


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


def allowed_id_tag(value: Any, facts: ChargerFacts) -> str | Refusal:
    """An id tag (OCPP 1.6 IdToken: at most 20 characters) that the id-tag policy allows."""
    id_tag = parse_text(value, "an id tag", 20)
    if isinstance(id_tag, Refusal) or facts.id_tag_allowed(id_tag):
        return id_tag
    return Refusal(f"id tag {id_tag!r} is not allowed (OCPP_ALLOWED_ID_TAGS)")


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
    return [Datapoint(key(cp, "CompositeSchedule", connector_id, name), v, at) for name, v in fields.items()]


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
    return [Datapoint(key(cp, "Reservation", connector_id, name), v, at) for name, v in fields.items()]


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
    what = '{"vendor_id": ..., "message_id": ..., "data": ...}'
    request = json_object(value, what)
    if isinstance(request, Refusal):
        return request
    if not isinstance(request.get("vendor_id"), str):
        return Refusal(f"value must be JSON text of {what} with a vendor_id string")
    payload: dict[str, Any] = {"vendorId": request["vendor_id"]}
    if "message_id" in request:
        payload["messageId"] = request["message_id"]
    if "data" in request:
        data = request["data"]
        payload["data"] = data if isinstance(data, str) else json.dumps(data)
    return schema_checked(OcppCall("DataTransfer", payload))


def _data_transfer_answer(
    cp: str, connector_id: int, call: OcppCall, payload: dict[str, Any], at: int
) -> list[Datapoint]:
    return [Datapoint(key(cp, "execute_data_transfer", "data"), payload.get("data"), at)]


def _ocpp_call(value: Any, connector_id: int, facts: ChargerFacts) -> OcppCall | Refusal:
    what = '{"action": "<OCPP 1.6 action>", "payload": {...}}'
    request = json_object(value, what)
    if isinstance(request, Refusal):
        return request
    action, payload = request.get("action"), request.get("payload", {})
    if not isinstance(action, str) or action not in CENTRAL_SYSTEM_ACTIONS:
        return Refusal(f"action must be one a central system sends in OCPP 1.6, got {quote(action)}")
    if not isinstance(payload, dict):
        return Refusal(f"payload must be a JSON object, got {quote(payload)}")
    if action in ("RemoteStartTransaction", "ReserveNow") and isinstance(payload.get("idTag"), str):
        id_tag = allowed_id_tag(payload["idTag"], facts)
        if isinstance(id_tag, Refusal):
            return id_tag
    return schema_checked(OcppCall(action, payload))


def _ocpp_call_answer(cp: str, connector_id: int, call: OcppCall, payload: dict[str, Any], at: int) -> list[Datapoint]:
    return [Datapoint(key(cp, "execute_ocpp_call", "response"), json.dumps(payload), at)]


ACTUATORS: dict[str, Actuator] = {
    a.name: a
    for a in (
        Actuator(SEND_CHARGING_PROFILE, True, 11000, _limit("W"), needs_rate_units=True),
        Actuator(SEND_CHARGING_PROFILE_CURRENT, True, 16, _limit("A"), needs_rate_units=True),
        Actuator(TRIGGER_MESSAGE, False, "MeterValues", _trigger_message),
        Actuator("execute_remote_start_transaction", True, "04A2B3C4D5E6F7", _remote_start),
        Actuator("execute_remote_stop_transaction", True, True, _remote_stop, needs_connector=True),
        Actuator("execute_change_availability", True, "Operative", _change_availability),
        Actuator("execute_reset", False, "Soft", _reset),
        Actuator("execute_unlock_connector", True, True, _unlock, needs_connector=True),
        Actuator("execute_change_configuration", False, "HeartbeatInterval=300", _change_configuration),
        Actuator(GET_CONFIGURATION, False, "", _get_configuration, _configuration_answer, status=_configuration_status),
        Actuator("execute_clear_charging_profile", True, True, _clear_profiles),
        Actuator("execute_get_composite_schedule", True, 3600, _composite_schedule, _composite_answer),
        Actuator("execute_reserve_now", True, "04A2B3C4D5E6F7", _reserve_now, _reservation_answer),
        Actuator("execute_cancel_reservation", True, True, _cancel_reservation, _cancel_answer),
        Actuator(
            "execute_data_transfer",
            False,
            '{"vendor_id": "com.example", "message_id": "Hello", "data": ""}',
            _data_transfer,
            _data_transfer_answer,
        ),
        Actuator(
            "execute_ocpp_call",
            False,
            '{"action": "GetLocalListVersion", "payload": {}}',
            _ocpp_call,
            _ocpp_call_answer,
        ),
    )
}

ACTUATOR_NAMES = frozenset(ACTUATORS)


def build_call(name: str, connector_id: int, value: Any, facts: ChargerFacts | None = None) -> OcppCall | Refusal:
    """The OCPP call for `value` on actuator `name` (connector `connector_id`)."""
    return ACTUATORS[name].build(value, connector_id, facts or ChargerFacts())


def limit_to_send(value: Any, unit: str, facts: ChargerFacts) -> tuple[Decimal, str] | Refusal:
    """A limit asked in `unit` as it goes out: in a unit the charger allows, rounded down to 0.1.

    The rules of every version's SetChargingProfile in one place, so they cannot drift: at
    most MAX_LIMIT as asked and as converted (1e308 W would lift every limit in effect), never
    weaker than asked (`limit_in`, `tenths`).
    """
    number = parse_number(value, f"a number >= 0 ({unit}) or null")
    if isinstance(number, Refusal):
        return number
    if number > MAX_LIMIT[unit]:
        return Refusal(f"value must be at most {MAX_LIMIT[unit]:.0f} {unit}, got {quote(value)}")
    sent, sent_unit = limit_in(number, unit, facts)
    if sent > MAX_LIMIT[sent_unit]:
        beyond = f"beyond {MAX_LIMIT[sent_unit]:.0f} {sent_unit}"
        return Refusal(f"value {quote(value)} {unit} is {sent:.0f} {sent_unit} for this charger, {beyond}")
    return tenths(sent), sent_unit
