"""Pure: an actuator value becomes the OCPP 1.6 call that carries it, or a refusal.

Nothing here does I/O. `build_call` is the single entry: the command runner hands it the
actuator name, the connector id from the key and the value from MQTT, and sends whatever
`OcppCall` comes back. A `Refusal` carries the reason that ends up in `Failed: <reason>`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_DOWN, Context, Decimal
from typing import Any

SEND_CHARGING_PROFILE = "execute_send_charging_profile"
TRIGGER_MESSAGE = "execute_trigger_message"

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
# stacking up. The offset keeps clear of the small ids other back ends tend to use.
CHARGING_PROFILE_ID_BASE = 1000
CHARGING_PROFILE_STACK_LEVEL = 0


@dataclass(frozen=True)
class OcppCall:
    action: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Refusal:
    reason: str


@dataclass(frozen=True)
class Actuator:
    name: str
    per_connector: bool
    example: Any
    build: Callable[[Any, int], OcppCall | Refusal]


def charging_profile_id(connector_id: int) -> int:
    return CHARGING_PROFILE_ID_BASE + connector_id


def _as_limit(value: Any) -> Decimal | Refusal:
    """A non-negative finite number, or a numeric string, rounded down to 0.1."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return Refusal(f"value must be a number >= 0 or null, got {value!r}")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return Refusal(f"value must be a number >= 0 or null, got {value!r}")
    if not math.isfinite(number) or number < 0:
        return Refusal(f"value must be a finite number >= 0 or null, got {value!r}")
    # OCPP 1.6 limits have multipleOf 0.1; rounding down never exceeds the asked limit.
    # 400 digits hold any float to 0.1, so quantize never overflows its context.
    return Decimal(repr(number)).quantize(Decimal("0.1"), rounding=ROUND_DOWN, context=Context(prec=400))


def _set_limit(value: Any, connector_id: int, unit: str) -> OcppCall | Refusal:
    if value is None:
        return clear_limit(connector_id)
    limit = _as_limit(value)
    if isinstance(limit, Refusal):
        return limit
    return set_limit(connector_id, limit, unit)


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


def _trigger_message(value: Any, connector_id: int) -> OcppCall | Refusal:
    del connector_id  # TriggerMessage is addressed to the charge point as a whole.
    by_name = {name.lower(): name for name in TRIGGERABLE_MESSAGES}
    by_number = {str(number): name for number, name in enumerate(TRIGGERABLE_MESSAGES)}
    requested = None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(TRIGGERABLE_MESSAGES):
        requested = TRIGGERABLE_MESSAGES[value]
    elif isinstance(value, str):
        requested = by_number.get(value.strip()) or by_name.get(value.strip().lower())
    if requested is None:
        choices = ", ".join(f"{i} {n}" for i, n in enumerate(TRIGGERABLE_MESSAGES))
        return Refusal(f"value must be one of {choices}; got {value!r}")
    return OcppCall("TriggerMessage", {"requestedMessage": requested})


ACTUATORS: dict[str, Actuator] = {
    a.name: a
    for a in (
        Actuator(
            SEND_CHARGING_PROFILE,
            per_connector=True,
            example=11000,
            build=lambda value, c: _set_limit(value, c, "W"),
        ),
        Actuator(TRIGGER_MESSAGE, per_connector=False, example="MeterValues", build=_trigger_message),
    )
}

ACTUATOR_NAMES = frozenset(ACTUATORS)


def build_call(name: str, connector_id: int, value: Any) -> OcppCall | Refusal:
    """The OCPP call for `value` on actuator `name` (connector `connector_id`)."""
    return ACTUATORS[name].build(value, connector_id)
