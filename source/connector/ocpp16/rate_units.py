"""Pure: how an OCPP 1.6 charger says which charging rate units it takes.

Its configuration key `ChargingScheduleAllowedChargingRateUnit` (OCPP 1.6 9.4, Smart
Charging profile), read with GetConfiguration after each boot. Chargers write it in many
ways: "Current", "Power", "Current,Power", "current, power", "Current;Power".
"""

from __future__ import annotations

from typing import Any

from connector.actuators import GET_CONFIGURATION, OcppCall
from connector.handling import NOT_COVERED, NotCovered, RateUnitRead

RATE_UNIT_KEY = "ChargingScheduleAllowedChargingRateUnit"


def rate_unit_call() -> OcppCall:
    return OcppCall("GetConfiguration", {"key": [RATE_UNIT_KEY]})


def parse_rate_units(text: Any) -> frozenset[str] | None:
    """ChargingScheduleAllowedChargingRateUnit as chargers send it -> {"A", "W"} subset.

    None (unknown: both assumed) when absent or when nothing in it is recognisable.
    """
    if not isinstance(text, str):
        return None
    words = text.replace(";", ",").replace(" ", ",").lower().split(",")
    units = frozenset({"current": "A", "power": "W"}[w] for w in words if w in ("current", "power"))
    return units or None


def _entry(answer: dict[str, Any]) -> dict[str, Any] | None:
    return next((e for e in answer.get("configurationKey", []) if e.get("key") == RATE_UNIT_KEY), None)


def units(call: OcppCall, answer: dict[str, Any]) -> frozenset[str] | NotCovered | None:
    """The units a GetConfiguration answer reports; None where it does not report the key."""
    asked = call.payload.get("key")
    if call.action != "GetConfiguration" or (asked is not None and RATE_UNIT_KEY not in asked):
        return NOT_COVERED  # a read of other keys says nothing about this one
    entry = _entry(answer)
    # Not reported (unknownKey, or missing): unknown now, whatever older firmware said.
    return parse_rate_units(entry.get("value")) if entry else None


def reported(call: OcppCall, answer: dict[str, Any]) -> str:
    entry = _entry(answer)
    return str(entry.get("value")) if entry else "not reported"


RATE_UNITS = RateUnitRead(
    call=rate_unit_call, units=units, actuator=GET_CONFIGURATION, key=RATE_UNIT_KEY, reported=reported
)
