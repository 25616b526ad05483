"""Pure: what an OCPP 2.0.1 or 2.1 charging station sends becomes flat sensor datapoints.

The 2.x counterpart of connector/datapoints.py, and built on it: keys come from its `key`
and `meter_prefix`/`meter_suffix`, so a key that means the same thing has the same shape in every version
(INTERFACE.md 8), and `<c>` is the EVSE id. Works on the wire payload (camelCase) as the
schema check passed it; `notes` collects the harmless deviations the session logs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from connector import datapoints as dp
from connector.datapoints import (
    DEFAULT_LOCATION,
    DEFAULT_MEASURAND,
    DEFAULT_STOP_REASON,
    DEFAULT_UNIT,
    Datapoint,
    EvseTransaction,
    Reading,
    Scalar,
    key,
    meter_prefix,
    meter_suffix,
    parse_time,
)
from connector.ocpp201.variables import is_secret_name

# BootNotificationRequest.chargingStation (2.0.1 and 2.1) and its modem, as key names.
STATION_FIELDS = {
    "vendorName": "vendor_name",
    "model": "model",
    "serialNumber": "serial_number",
    "firmwareVersion": "firmware_version",
}
MODEM_FIELDS = {"iccid": "modem_iccid", "imsi": "modem_imsi"}

# UnitOfMeasureType.multiplier is a power of ten; real meters use -3..6. Beyond this a
# value is nonsense, and 10**(10**9) would cost the loop minutes to compute.
MAX_MULTIPLIER = 24
ENERGY_UNITS = {"Wh": 0, "kWh": 3}  # energy register units, as powers of ten of a Wh
ACTUAL = "Actual"  # AttributeEnumType: the value a variable has (others: Target, MinSet, MaxSet)


def boot_notification(cp: str, payload: dict[str, Any], received: int) -> list[Datapoint]:
    """`reason`, the charging station's fields in snake_case, and its modem's as `modem_*`."""
    station = payload["chargingStation"]
    modem = station.get("modem") or {}
    values: dict[str, Any] = {"reason": payload["reason"]}
    values.update((name, station[field]) for field, name in STATION_FIELDS.items() if field in station)
    values.update((name, modem[field]) for field, name in MODEM_FIELDS.items() if field in modem)
    return [Datapoint(key(cp, "BootNotification", name), value, received) for name, value in values.items()]


def status_notification(cp: str, payload: dict[str, Any], received: int, notes: list[str]) -> list[Datapoint]:
    """`<cp>__StatusNotification__<evse>__<connector>__connector_status`, at the charger's timestamp."""
    at = parse_time(payload["timestamp"], received, notes)
    name = key(cp, "StatusNotification", payload["evseId"], payload["connectorId"], "connector_status")
    return [Datapoint(name, payload["connectorStatus"], at)]


# -- sampled values (MeterValues, TransactionEvent) -----------------------------------


def sampled_readings(
    cp: str, evse_id: int, meter_value: Iterable[dict[str, Any]], received: int, notes: list[str]
) -> list[Reading]:
    """Every sampled value of every meterValue element as (sample, datapoint), oldest element first."""
    return dp.sampled_readings(cp, evse_id, meter_value, received, notes, point=sample_point)


def sample_point(prefix: str, sample: dict[str, Any], at: int, notes: list[str]) -> Datapoint | None:
    """A 2.x SampledValue as a datapoint (`prefix`: `<cp>__MeterValues__<evse>`): value x 10^multiplier.

    Runs for every sampled value a fleet sends, mapped or not: `unitOfMeasure` is read once
    for the unit and the multiplier both.
    """
    unit = _unit_of_measure(sample)
    value = _value_in(sample, unit, notes)
    return None if value is None else Datapoint(prefix + _suffix_in(sample, unit), value, at)


def sample_key(cp: str, evse_id: int, sample: dict[str, Any]) -> str:
    """The 1.6 key shape; the unit comes from `unitOfMeasure` (default Wh, as 1.6's)."""
    return meter_prefix(cp, evse_id) + sample_suffix(sample)


def sample_suffix(sample: dict[str, Any]) -> str:
    return _suffix_in(sample, _unit_of_measure(sample))


def sample_value(sample: dict[str, Any], notes: list[str]) -> int | float | None:
    """value x 10^multiplier as a JSON number; None (skipped, noted) where there is none to make."""
    return _value_in(sample, _unit_of_measure(sample), notes)


_NO_UNIT: dict[str, Any] = {}  # read only


def _unit_of_measure(sample: dict[str, Any]) -> dict[str, Any]:
    unit = sample.get("unitOfMeasure")
    return unit if isinstance(unit, dict) else _NO_UNIT


def _suffix_in(sample: dict[str, Any], unit: dict[str, Any]) -> str:
    """The sample's key suffix, `unit` its `unitOfMeasure` as read."""
    return meter_suffix(
        sample.get("measurand", DEFAULT_MEASURAND),
        sample.get("phase"),
        sample.get("location", DEFAULT_LOCATION),
        unit.get("unit", DEFAULT_UNIT),
    )


def _value_in(sample: dict[str, Any], unit: dict[str, Any], notes: list[str]) -> int | float | None:
    """The sample's value x 10^multiplier, `unit` its `unitOfMeasure` as read."""
    value = _number(sample["value"], notes)
    if value is None:
        return None
    multiplier = unit.get("multiplier", 0)
    if multiplier == 0 and type(multiplier) is int:  # the common case: nothing to scale
        result = value
    elif not isinstance(multiplier, int) or isinstance(multiplier, bool) or abs(multiplier) > MAX_MULTIPLIER:
        notes.append(f"multiplier {str(multiplier)[:20]!r} beyond +-{MAX_MULTIPLIER}; skipped the value")
        return None
    else:
        result = scaled(value, multiplier)
    if isinstance(result, float) and not math.isfinite(result):
        notes.append(f"value {value!r} x 10^{multiplier} is out of range; skipped it")
        return None
    return result


def _number(value: Any, notes: list[str]) -> int | float | None:
    # The schema check lets only numbers through (a string is TypeConstraintViolation in 2.x);
    # this guards the mapping should it ever be called with less.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    notes.append(f"value {str(value)[:50]!r} is not a number; skipped it")
    return None


def scaled(value: int | float, multiplier: int) -> int | float:
    """value x 10^multiplier, exactly where it can be: an integer stays one where the result is whole."""
    if multiplier == 0:
        return value
    if isinstance(value, int) and multiplier > 0:
        return value * int(10**multiplier)
    result = _exact(value).scaleb(multiplier)
    return int(result) if isinstance(value, int) and result == result.to_integral_value() else float(result)


def _exact(value: int | float) -> Decimal:
    # repr: the shortest text that reads back as the float, so 0.1 is 0.1, not 0.1000000000000000055...
    return Decimal(repr(value))


def _whole_if_exact(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def voltage_readings(readings: Iterable[Reading]) -> list[Reading]:
    """The Voltage readings, their samples shaped as 1.6's for `datapoints.note_phase_voltages`
    (unit where `unitOfMeasure` names one; absent, a voltage's unit is V)."""
    shaped: list[Reading] = []
    for sample, point in readings:
        if sample.get("measurand") != "Voltage":
            continue
        view: dict[str, Any] = {"measurand": "Voltage"}
        if "phase" in sample:
            view["phase"] = sample["phase"]
        unit = _unit_of_measure(sample).get("unit")
        if unit is not None:
            view["unit"] = unit
        shaped.append((view, point))
    return shaped


def register_wh(readings: list[Reading], context: str) -> int | float | None:
    """The energy register (Energy.Active.Import.Register, overall, at the outlet) in Wh.

    Of the readings with `context` (Transaction.Begin / Transaction.End) where there are
    any, else of all: the first for a beginning, the last for an end. None if there is none
    in an energy unit.
    """
    registers = [(sample, point.value) for sample, point in readings if _is_register(sample)]
    preferred = [r for r in registers if r[0].get("context") == context] or registers
    if context != "Transaction.Begin":
        preferred.reverse()
    for sample, value in preferred:
        exponent = ENERGY_UNITS.get(_unit_of_measure(sample).get("unit", DEFAULT_UNIT))
        if exponent is not None and isinstance(value, int | float) and not isinstance(value, bool):
            return _whole_if_exact(_exact(value).scaleb(exponent))
    return None


def _is_register(sample: dict[str, Any]) -> bool:
    return (
        sample.get("measurand", DEFAULT_MEASURAND) == DEFAULT_MEASURAND
        and "phase" not in sample
        and sample.get("location", DEFAULT_LOCATION) == DEFAULT_LOCATION
    )


def energy_wh(meter_start: int | float, meter_stop: int | float) -> int | float:
    """meter_stop - meter_start without float noise (12345.6 - 12000.1 is 345.5, not 345.50000000000182)."""
    return _whole_if_exact(_exact(meter_stop) - _exact(meter_start))


# -- transactions ---------------------------------------------------------------------


def transaction_points(cp: str, evse_id: int, fields: dict[str, Scalar], at: int) -> list[Datapoint]:
    return dp.grouped(cp, "Transaction", evse_id, fields, at)


def running_fields(record: EvseTransaction, info: dict[str, Any]) -> dict[str, Scalar]:
    """A transaction now running on its EVSE: all its fields; the last one's stop fields cleared."""
    fields: dict[str, Scalar] = {
        "active": True,
        "transaction_id": record.transaction_id,
        "id_tag": record.id_tag or None,
        "meter_start": record.meter_start,
        "meter_stop": None,
        "stop_reason": None,
        "energy": None,
    }
    # Absent: not known yet, and not the last transaction's (a new one starts without it).
    fields["charging_state"] = info.get("chargingState")
    return fields


def updated_fields(before: EvseTransaction, after: EvseTransaction, info: dict[str, Any]) -> dict[str, Scalar]:
    """A running transaction's event: what it changed (an idToken or meter start learnt, a charging state)."""
    fields: dict[str, Scalar] = {}
    if after.id_tag != before.id_tag:
        fields["id_tag"] = after.id_tag
    if after.meter_start != before.meter_start:
        fields["meter_start"] = after.meter_start
    if "chargingState" in info:
        fields["charging_state"] = info["chargingState"]
    return fields


def ended_fields(
    transaction_id: str, meter_start: int | float | None, meter_stop: int | float | None, info: dict[str, Any]
) -> dict[str, Scalar]:
    """The stop fields; meter_stop and energy where the Ended event (and for energy, the Started one) had a register."""
    fields: dict[str, Scalar] = {
        "active": False,
        "transaction_id": transaction_id,
        "stop_reason": info.get("stoppedReason", DEFAULT_STOP_REASON),
    }
    if "chargingState" in info:
        fields["charging_state"] = info["chargingState"]
    if meter_stop is not None:
        fields["meter_stop"] = meter_stop
        fields["energy"] = None if meter_start is None else energy_wh(meter_start, meter_stop)
    return fields


# -- the device model (NotifyReport, NotifyEvent) -------------------------------------


def variable_key(cp: str, component: dict[str, Any], variable: dict[str, Any], attribute: str = ACTUAL) -> str:
    """`<cp>__Variable__<Component>[__<instance>][__<evse>[__<connector>]]__<Variable>[__<instance>][__<attribute>]`.

    The EVSE (and connector) of a component that has one are in the key: without them each
    EVSE's `EVSE.AvailabilityState` would overwrite the other's. The attribute type only
    where it is not Actual.
    """
    parts: list[object] = [cp, "Variable", component["name"]]
    if "instance" in component:
        parts.append(component["instance"])
    evse = component.get("evse")
    if isinstance(evse, dict):
        parts.append(evse["id"])
        if "connectorId" in evse:
            parts.append(evse["connectorId"])
    parts.append(variable["name"])
    if "instance" in variable:
        parts.append(variable["instance"])
    if attribute != ACTUAL:
        parts.append(attribute)
    return key(*parts)


def is_secret(variable: dict[str, Any]) -> bool:
    return is_secret_name(str(variable.get("name", "")))


def report_points(
    cp: str, report_data: Iterable[dict[str, Any]], at: int, notes: list[str], *, limit: int
) -> list[Datapoint]:
    """NotifyReport: each variable's Actual value as text, at most `limit`.

    Only Actual values: a full report holds thousands of variables, and the Target, MinSet
    and MaxSet attributes would mint up to three more keys each for values an operator
    rarely reads (the registry caps the keys of a charge point anyway).
    """
    points: list[Datapoint] = []
    for item in report_data:
        for attribute in item.get("variableAttribute") or []:
            if attribute.get("type", ACTUAL) != ACTUAL or "value" not in attribute:
                continue
            if is_secret(item["variable"]) or attribute.get("mutability") == "WriteOnly":
                continue
            if len(points) >= limit:
                notes.append(f"report with more than {limit} values; the rest skipped")
                return points
            points.append(Datapoint(variable_key(cp, item["component"], item["variable"]), attribute["value"], at))
    return points


def event_points(
    cp: str, event_data: Iterable[dict[str, Any]], received: int, notes: list[str], *, limit: int
) -> list[Datapoint]:
    """NotifyEvent: each event's actualValue as its variable's value, at the event's timestamp."""
    points: list[Datapoint] = []
    for event in event_data:
        if is_secret(event["variable"]):
            continue
        if len(points) >= limit:
            notes.append(f"NotifyEvent with more than {limit} events; the rest skipped")
            break
        at = parse_time(event["timestamp"], received, notes)
        points.append(Datapoint(variable_key(cp, event["component"], event["variable"]), event["actualValue"], at))
    return points
