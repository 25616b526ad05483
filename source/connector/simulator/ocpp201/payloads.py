"""Pure: what the simulated charging station says in OCPP 2.0.1 words, and what it makes of what it hears.

Charging profiles from the wire become the model's `Profile`s (whether to take them is
`station.profile_refusal`'s, as for 1.6), readings become meterValue elements with
`unitOfMeasure`, the station's state becomes 2.0.1's connector status, and its device
model (the variables GetVariables and SetVariables reach) lives here with the rules for
changing it. Payloads are in the ocpp library's snake_case: it turns them into camelCase
on the wire.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from connector.simulator.model import CHARGE_POINT_MAX, Profile, Sample
from connector.simulator.station import MAX_PERIODS, MAX_STACK_LEVEL, OUTLET, Station
from connector.simulator.words import (
    ENERGY,
    MEASURANDS,
    Reading,
    flag_setting,
    measurands_setting,
    parse_time,
    periods_from_wire,
    readings,
    seconds_setting,
    time_text,
)

EVSE_ID = OUTLET  # the station has one EVSE with one connector
CONNECTOR_ID = 1
# 2.0.1 names the charger's maximum profile otherwise than 1.6 (the model speaks 1.6's words).
STATION_MAX = "ChargingStationMaxProfile"
EXTERNAL_CONSTRAINTS = "ChargingStationExternalConstraints"  # set by the station's own EMS, never by a CSMS
PURPOSE_IN_MODEL = {STATION_MAX: CHARGE_POINT_MAX}


def evse() -> dict[str, int]:
    """The EVSE and connector everything happens on."""
    return {"id": EVSE_ID, "connector_id": CONNECTOR_ID}


# -- charging profiles -----------------------------------------------------------------


def profile_from_wire(evse_id: int, profile: dict[str, Any], transaction_id: str | None = None) -> Profile:
    """chargingProfile (schema-checked, snake_case) as the model's Profile; ValueError for a bad date.

    Of the up to three schedules (offered to an ISO 15118 car to choose from) the station
    follows the first, as a charger without ISO 15118 does.
    """
    schedule = profile["charging_schedule"][0]
    return Profile(
        profile_id=profile["id"],
        connector_id=evse_id,
        stack_level=profile["stack_level"],
        purpose=model_purpose(profile["charging_profile_purpose"]),
        unit=schedule["charging_rate_unit"],
        periods=periods_from_wire(schedule["charging_schedule_period"]),
        kind=profile["charging_profile_kind"],
        start=parse_time(schedule.get("start_schedule")),
        duration_s=schedule.get("duration"),
        valid_from=parse_time(profile.get("valid_from")),
        valid_to=parse_time(profile.get("valid_to")),
        recurrency=profile.get("recurrency_kind"),
        transaction_id=profile.get("transaction_id", transaction_id),
    )


def model_purpose(purpose: str) -> str:
    return PURPOSE_IN_MODEL.get(purpose, purpose)


def composite_schedule(evse_id: int, duration: int, start: float, unit: str, limit: float) -> dict[str, Any]:
    """GetCompositeSchedule's schedule: one period, the limit in effect now."""
    return {
        "evse_id": evse_id,
        "duration": duration,
        "schedule_start": time_text(start),
        "charging_rate_unit": unit,
        "charging_schedule_period": [{"start_period": 0, "limit": limit}],
    }


# -- meter values ----------------------------------------------------------------------


def meter_value(sample: Sample, at: float, context: str, measurands: Collection[str]) -> dict[str, Any]:
    """One meterValue element with the measurands asked for, each value a number with its unitOfMeasure."""
    return {"timestamp": time_text(at), "sampled_value": [_sampled(r, context) for r in readings(sample, measurands)]}


def energy_reading(sample: Sample, at: float, context: str) -> dict[str, Any]:
    """A meterValue element with the register alone (Started's and Ended's meterValue)."""
    return meter_value(sample, at, context, (ENERGY,))


def _sampled(reading: Reading, context: str) -> dict[str, Any]:
    number = float(reading.value)
    sampled: dict[str, Any] = {
        "value": int(number) if number.is_integer() else number,
        "context": context,
        "measurand": reading.measurand,
        "unit_of_measure": {"unit": reading.unit},
    }
    if reading.phase is not None:
        sampled["phase"] = reading.phase
    if reading.location is not None:
        sampled["location"] = reading.location
    return sampled


def connector_status(station: Station[DeviceModel]) -> str:
    """StatusNotification's connectorStatus of the one connector (how the car charges is the TransactionEvent's)."""
    if station.model.car is not None:
        return "Occupied"
    if not station.operative:
        return "Unavailable"
    return "Reserved" if station.reservation is not None else "Available"


# -- the device model ------------------------------------------------------------------

HEARTBEAT_INTERVAL = ("OCPPCommCtrlr", "HeartbeatInterval")
SAMPLE_INTERVAL = ("AlignedDataCtrlr", "Interval")  # MeterValues on the clock's multiples of it
SAMPLED_DATA = ("AlignedDataCtrlr", "Measurands")
RATE_UNIT = ("SmartChargingCtrlr", "RateUnit")
INTERVALS = (HEARTBEAT_INTERVAL, SAMPLE_INTERVAL)
FLAGS = (("AuthCtrlr", "AuthorizeRemoteStart"),)


@dataclass
class Variable:
    value: str
    readonly: bool = False


def interval_text(seconds: float) -> str:
    return f"{seconds:g}"


class DeviceModel:
    """The station's variables (OCPP 2.0.1 part 2, appendix 3), a small set of what real stations have.

    Only the Actual attribute, and only components without an instance or EVSE: what the
    connector asks for (SmartChargingCtrlr.RateUnit) and what an operator changes first.
    """

    def __init__(self, sample_interval: float) -> None:
        self._variables: dict[tuple[str, str], Variable] = {
            ("AuthCtrlr", "AuthorizeRemoteStart"): Variable("false"),
            HEARTBEAT_INTERVAL: Variable("300"),
            SAMPLE_INTERVAL: Variable(interval_text(sample_interval)),
            SAMPLED_DATA: Variable(",".join(MEASURANDS)),
            ("ReservationCtrlr", "Enabled"): Variable("true", readonly=True),
            ("SmartChargingCtrlr", "Enabled"): Variable("true", readonly=True),
            RATE_UNIT: Variable("A,W", readonly=True),
            ("SmartChargingCtrlr", "ProfileStackLevel"): Variable(str(MAX_STACK_LEVEL), readonly=True),
            ("SmartChargingCtrlr", "PeriodsPerSchedule"): Variable(str(MAX_PERIODS), readonly=True),
        }

    def get(self, request: dict[str, Any]) -> dict[str, Any]:
        """One GetVariableResult for one GetVariableData (snake_case, schema-checked)."""
        found = self._find(request)
        result = {**_echo(request), "attribute_status": found if isinstance(found, str) else "Accepted"}
        if isinstance(found, Variable):
            result["attribute_value"] = found.value
        return result

    def set(self, request: dict[str, Any]) -> dict[str, Any]:
        """One SetVariableResult for one SetVariableData; the value is kept only when Accepted."""
        found = self._find(request)
        status = found if isinstance(found, str) else "Accepted"
        key = (request["component"]["name"], request["variable"]["name"])
        if isinstance(found, Variable):
            if found.readonly or not _acceptable(key, request["attribute_value"]):
                status = "Rejected"
            else:
                found.value = request["attribute_value"].strip()
        return {**_echo(request), "attribute_status": status}

    def _find(self, request: dict[str, Any]) -> Variable | str:
        """The variable asked for, or the status that says why there is none."""
        component, variable = request["component"], request["variable"]
        if "instance" in component or "evse" in component or not self._knows(component["name"]):
            return "UnknownComponent"
        known = self._variables.get((component["name"], variable["name"]))
        if known is None or "instance" in variable:
            return "UnknownVariable"
        if request.get("attribute_type", "Actual") != "Actual":
            return "NotSupportedAttributeType"
        return known

    def _knows(self, component: str) -> bool:
        return any(name == component for name, _ in self._variables)

    def value(self, key: tuple[str, str]) -> str:
        return self._variables[key].value

    # station.Settings, what the charger's loop reads
    def heartbeat_s(self) -> float:
        return float(self.value(HEARTBEAT_INTERVAL))

    def set_heartbeat_s(self, seconds: float) -> None:
        """What the CSMS set otherwise (the interval of BootNotification's answer)."""
        self._variables[HEARTBEAT_INTERVAL].value = interval_text(seconds)

    def sample_s(self) -> float:
        return float(self.value(SAMPLE_INTERVAL))

    def measurands(self) -> frozenset[str]:
        return frozenset(self.value(SAMPLED_DATA).split(","))


def _echo(request: dict[str, Any]) -> dict[str, Any]:
    """The component, variable and attribute type of a request, as its result repeats them."""
    echoed = {"component": request["component"], "variable": request["variable"]}
    if "attribute_type" in request:
        echoed["attribute_type"] = request["attribute_type"]
    return echoed


def _acceptable(key: tuple[str, str], value: str) -> bool:
    text = value.strip()
    if key in INTERVALS:
        return seconds_setting(text)
    if key in FLAGS:
        return flag_setting(text)
    if key == SAMPLED_DATA:
        return measurands_setting(text)
    return True
