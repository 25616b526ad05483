"""Pure: how an OCPP 2.0.1 or 2.1 charging station says which charging rate units it takes.

Its device model's `SmartChargingCtrlr.RateUnit`, a MemberList such as "A,W" (2.0.1
appendices, SmartChargingCtrlr), read with GetVariables after each boot. The same variable
in 2.1, so both versions use this read. What the read returns is also published, as
`<cp>__Variable__SmartChargingCtrlr__RateUnit`, by execute_get_configuration's answer mapping.
"""

from __future__ import annotations

from typing import Any

from connector.actuators import GET_CONFIGURATION, OcppCall
from connector.handling import NOT_COVERED, NotCovered, RateUnitRead
from connector.ocpp201.variables import asked_variables, result_for, variable_data

COMPONENT = "SmartChargingCtrlr"
VARIABLE = "RateUnit"
UNITS = frozenset({"A", "W"})


def rate_unit_call() -> OcppCall:
    return OcppCall("GetVariables", {"getVariableData": [variable_data(COMPONENT, VARIABLE)]})


def units(call: OcppCall, answer: dict[str, Any]) -> frozenset[str] | NotCovered | None:
    """The units a GetVariables answer reports; None where it does not say (both are then assumed)."""
    wanted = (COMPONENT.lower(), VARIABLE.lower())
    if call.action != "GetVariables" or all((c.lower(), v.lower()) != wanted for c, v in asked_variables(call)):
        return NOT_COVERED  # a read of other variables says nothing about this one
    result = result_for(answer, COMPONENT, VARIABLE)
    if result is None or result.get("attributeStatus") != "Accepted":
        return None  # unknown now, whatever older firmware said
    return parse_rate_units(result.get("attributeValue"))


def parse_rate_units(text: Any) -> frozenset[str] | None:
    """ "A,W", "W", "a, w", "A;W" -> {"A", "W"} subset; None where nothing in it is a unit."""
    if not isinstance(text, str):
        return None
    words = text.replace(";", ",").replace(" ", ",").upper().split(",")
    return frozenset(word for word in words if word in UNITS) or None


RATE_UNITS = RateUnitRead(
    call=rate_unit_call,
    units=units,
    actuator=GET_CONFIGURATION,
    key=f"{COMPONENT}.{VARIABLE}",
)
