"""Pure: the OCPP 2.x device model as configuration actuators read and write it (INTERFACE.md 8).

`"Component.Variable"` reads (GetVariables, several comma-separated), one
`"Component.Variable=Value"` writes (SetVariables: a value may hold commas, "A,W"). Each
variable read becomes `<cp>__Variable__<Component>__<Variable>`; the actuator's status is
Accepted if every variable was, else the first other status, with a WARNING naming each
one that was not. 2.x has no "read everything": GetBaseReport does that, through
execute_ocpp_call, and its answer comes as NotifyReport messages. The same in 2.1, where
only SetVariables' longest value differs (so it takes the version to check against).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from connector.actuators import Build, ChargerFacts, OcppCall, Refusal, quote, schema_checked
from connector.datapoints import Datapoint, key

OCPP_VERSION = "2.0.1"
# Variables one GetVariables may ask for: each answered one becomes a key of this charger.
MAX_VARIABLES = 50
MAX_NAMED = 5  # variables a WARNING names

Variable = tuple[str, str]  # (component name, variable name)


def variable_data(component: str, variable: str) -> dict[str, Any]:
    """A GetVariableData entry: the Actual value, the one in effect."""
    return {"attributeType": "Actual", "component": {"name": component}, "variable": {"name": variable}}


def parse_variable(text: str) -> Variable | None:
    """`"Component.Variable"` as its two names; None where one is missing."""
    component, dot, variable = text.partition(".")
    if not dot or not component.strip() or not variable.strip():
        return None
    return component.strip(), variable.strip()


def get_variables(value: Any, evse_id: int, facts: ChargerFacts) -> OcppCall | Refusal:
    wanted = '"Component.Variable" (several comma-separated)'
    if not isinstance(value, str):
        return Refusal(f"value must be {wanted}, got {quote(value)}")
    if not value.strip():
        return Refusal(f'value must be {wanted}; OCPP 2.x has no "read all" (GetBaseReport, via execute_ocpp_call)')
    parts = value.split(",")
    if len(parts) > MAX_VARIABLES:
        return Refusal(f"value names {len(parts)} variables; at most {MAX_VARIABLES} at a time")
    variables = [parse_variable(part) for part in parts]
    bad = next((part for part, variable in zip(parts, variables, strict=True) if variable is None), None)
    if bad is not None:
        return Refusal(f"value must be {wanted}; {quote(bad.strip())} is not")
    data = [variable_data(*variable) for variable in variables if variable is not None]
    return schema_checked(OcppCall("GetVariables", {"getVariableData": data}), OCPP_VERSION)


# Variables whose value must never reach MQTT, should a station report it (OCPP 2.0.1
# reports a WriteOnly variable without its value, but a station may not).
SECRET_WORDS = ("password", "secret", "authorizationkey", "privatekey")


def is_secret_name(variable: str) -> bool:
    name = variable.lower()
    return any(word in name for word in SECRET_WORDS)


def asked_variables(call: OcppCall) -> list[Variable]:
    """The station-wide Actual values a GetVariables call asked for (the call schema-checked).

    What `<cp>__Variable__<Component>__<Variable>` and the rate-unit read mean: an operator's
    read of a Target or MaxSet value, or of an EVSE's instance of a component, is neither.
    """
    return [
        (d["component"]["name"], d["variable"]["name"])
        for d in call.payload.get("getVariableData", [])
        if _station_actual(d)
    ]


def _station_actual(entry: dict[str, Any]) -> bool:
    """A GetVariables entry (asked or answered) about the Actual value of a station-wide component."""
    component = entry.get("component")
    return entry.get("attributeType", "Actual") == "Actual" and isinstance(component, dict) and "evse" not in component


def _named(result: Any) -> Variable | None:
    """A result's (component, variable), lower-cased for matching; None where the charger left them out."""
    try:
        return str(result["component"]["name"]).lower(), str(result["variable"]["name"]).lower()
    except (KeyError, TypeError):
        return None


def results_by_name(answer: dict[str, Any]) -> dict[Variable, dict[str, Any]]:
    """A GetVariables answer's results by lower-cased (component, variable): 2.0.1 compares names
    case-insensitively. Only station-wide Actual values; the first result for a name counts; one
    pass, however many a charger sends.
    """
    found: dict[Variable, dict[str, Any]] = {}
    for result in answer.get("getVariableResult") or []:
        named = _named(result) if isinstance(result, dict) and _station_actual(result) else None
        if named is not None:
            found.setdefault(named, result)
    return found


def result_for(answer: dict[str, Any], component: str, variable: str) -> dict[str, Any] | None:
    """The charger's result for one variable."""
    return results_by_name(answer).get((component.lower(), variable.lower()))


def variables_answer(cp: str, evse_id: int, call: OcppCall, payload: dict[str, Any], at: int) -> list[Datapoint]:
    """`<cp>__Variable__<Component>__<Variable>` = its Actual value, for each variable asked and read.

    Only the variables the call asked for, under the names it asked with: a charger's answer
    mints no keys of its own choosing, and its spelling of a name does not change the key.
    """
    points, results = [], results_by_name(payload)
    for component, variable in asked_variables(call):
        result = results.get((component.lower(), variable.lower()))
        # A secret (a password, a key) never reaches MQTT, as in NotifyReport (is_secret).
        if result is not None and result.get("attributeStatus") == "Accepted" and not is_secret_name(variable):
            points.append(Datapoint(key(cp, "Variable", component, variable), result.get("attributeValue"), at))
    return points


def variables_status(results_field: str) -> Callable[[dict[str, Any]], tuple[str, str | None]]:
    """Accepted if every variable was; else the first other status, with a WARNING naming each variable not Accepted."""

    def status(payload: dict[str, Any]) -> tuple[str, str | None]:
        results = [r for r in payload.get(results_field) or [] if isinstance(r, dict)]
        refused = [r for r in results if r.get("attributeStatus") != "Accepted"]
        if not refused:
            return "Accepted", None
        named = ", ".join(_result_words(r) for r in refused[:MAX_NAMED])
        more = f" and {len(refused) - MAX_NAMED} more" if len(refused) > MAX_NAMED else ""
        return str(refused[0].get("attributeStatus")), f"variables not Accepted: {named}{more}"

    return status


def _result_words(result: dict[str, Any]) -> str:
    try:
        name = f"{result['component']['name']}.{result['variable']['name']}"
    except (KeyError, TypeError):
        name = "?"
    return f"{quote(name)} {quote(result.get('attributeStatus'))}"


def set_variables(version: str) -> Build:
    """SetVariables for `"Component.Variable=Value"`, checked against `version`'s schema.

    Refusals never quote the text: the value may be a secret (SecurityCtrlr's
    BasicAuthPassword), and a mistyped one need not contain the "=" that would tell where.
    """

    def build(value: Any, evse_id: int, facts: ChargerFacts) -> OcppCall | Refusal:
        wanted = '"Component.Variable=Value"'
        if not isinstance(value, str):
            return Refusal(f"value must be {wanted} text, got {type(value).__name__}")
        name, equals, setting = value.partition("=")
        variable = parse_variable(name)
        if not equals or variable is None:
            return Refusal(f"value must be {wanted} ({len(value)} characters given, not shown)")
        data = {**variable_data(*variable), "attributeValue": setting}
        return schema_checked(OcppCall("SetVariables", {"setVariableData": [data]}), version)

    return build
