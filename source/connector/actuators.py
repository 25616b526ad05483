"""Pure: what every version's actuators share; the actuator catalogue.

An actuator value becomes an OCPP call that carries it, or a refusal; the charger's answer
becomes a status and, for some actuators, sensor datapoints. The catalogue (`ACTUATORS`)
names each actuator, its example and where it is offered, the same in every version; each
version's table (ocpp16/actuators.py, ocpp201/actuators.py, ...) maps the names to a
`Translation` in that version's messages, built from the parsers and limit rules here.

Nothing here does I/O. The command runner hands a translation's `build` the connector id
from the key, the value from MQTT and a snapshot of what the connector knows about the
charger (`ChargerFacts`); it sends whatever `OcppCall` comes back. A `Refusal` carries the
reason that ends up in `Failed: <reason>`.
"""

from __future__ import annotations

import json
import math
import reprlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Context, Decimal
from typing import Any

from ocpp.messages import MessageType

from connector.datapoints import NUMBER, Datapoint
from connector.protocol import check_payload, load_json

SEND_CHARGING_PROFILE = "execute_send_charging_profile"
SEND_CHARGING_PROFILE_CURRENT = "execute_send_charging_profile_current"
TRIGGER_MESSAGE = "execute_trigger_message"
GET_CONFIGURATION = "execute_get_configuration"

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


def allowed_id_tag(value: Any, facts: ChargerFacts) -> str | Refusal:
    """An id tag (OCPP 1.6 IdToken: at most 20 characters) that the id-tag policy allows."""
    id_tag = parse_text(value, "an id tag", 20)
    if isinstance(id_tag, Refusal) or facts.id_tag_allowed(id_tag):
        return id_tag
    return Refusal(f"id tag {id_tag!r} is not allowed (OCPP_ALLOWED_ID_TAGS)")


# -- the catalogue ---------------------------------------------------------------------


@dataclass(frozen=True)
class Actuator:
    """An actuator as MQTT sees it, the same in every version: its name, example and where it is offered.

    How a version carries it (value -> call, answer -> datapoints) is that version's
    `Translation`, in its actuator table (ocpp16/actuators.py, ...).
    """

    name: str
    per_connector: bool
    example: Any
    needs_rate_units: bool = False
    # Acts on one connector (unlock, stop its transaction): meaningless on connector 0, the
    # charge point as a whole, so not offered there.
    needs_connector: bool = False


ACTUATORS: dict[str, Actuator] = {
    a.name: a
    for a in (
        Actuator(SEND_CHARGING_PROFILE, True, 11000, needs_rate_units=True),
        Actuator(SEND_CHARGING_PROFILE_CURRENT, True, 16, needs_rate_units=True),
        Actuator(TRIGGER_MESSAGE, False, "MeterValues"),
        Actuator("execute_remote_start_transaction", True, "04A2B3C4D5E6F7"),
        Actuator("execute_remote_stop_transaction", True, True, needs_connector=True),
        Actuator("execute_change_availability", True, "Operative"),
        Actuator("execute_reset", False, "Soft"),
        Actuator("execute_unlock_connector", True, True, needs_connector=True),
        Actuator("execute_change_configuration", False, "HeartbeatInterval=300"),
        Actuator(GET_CONFIGURATION, False, ""),
        Actuator("execute_clear_charging_profile", True, True),
        Actuator("execute_get_composite_schedule", True, 3600),
        Actuator("execute_reserve_now", True, "04A2B3C4D5E6F7"),
        Actuator("execute_cancel_reservation", True, True),
        Actuator("execute_data_transfer", False, '{"vendor_id": "com.example", "message_id": "Hello", "data": ""}'),
        Actuator("execute_ocpp_call", False, '{"action": "GetLocalListVersion", "payload": {}}'),
    )
}

ACTUATOR_NAMES = frozenset(ACTUATORS)


def build_call(name: str, connector_id: int, value: Any, facts: ChargerFacts | None = None) -> OcppCall | Refusal:
    """The OCPP 1.6 call for `value` on actuator `name` (connector `connector_id`): ocpp16.actuators.build_call."""
    from connector.ocpp16 import actuators as v16  # imported here: the 1.6 table imports this module

    return v16.build_call(name, connector_id, value, facts)


def ocpp_call(version: str, actions: frozenset[str], id_tag_of: Callable[[str, dict[str, Any]], Any]) -> Build:
    """execute_ocpp_call in `version`: any call a central system sends (one of `actions`), checked
    against that version's schema; the id tag it starts or reserves for (`id_tag_of(action,
    payload)`, None where it has none) is left to the id-tag policy like a remote start's."""
    what = f'{{"action": "<OCPP {version} action>", "payload": {{...}}}}'

    def build(value: Any, where: int, facts: ChargerFacts) -> OcppCall | Refusal:
        request = json_object(value, what)
        if isinstance(request, Refusal):
            return request
        action, payload = request.get("action"), request.get("payload", {})
        if not isinstance(action, str) or action not in actions:
            return Refusal(f"action must be one a central system sends in OCPP {version}, got {quote(action)}")
        if not isinstance(payload, dict):
            return Refusal(f"payload must be a JSON object, got {quote(payload)}")
        id_tag = id_tag_of(action, payload)
        if isinstance(id_tag, str) and not facts.id_tag_allowed(id_tag):
            return Refusal(f"id tag {quote(id_tag)} is not allowed (OCPP_ALLOWED_ID_TAGS)")
        return schema_checked(OcppCall(action, payload), version)

    return build


def data_transfer_payload(value: Any, data_as_text: bool) -> dict[str, Any] | Refusal:
    """execute_data_transfer's value, JSON text of `{"vendor_id", "message_id", "data"}`, as a
    DataTransfer payload; 1.6 wants `data` as text (`data_as_text`: other JSON is encoded), 2.x any JSON."""
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
        payload["data"] = json.dumps(data) if data_as_text and not isinstance(data, str) else data
    return payload


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
