"""Pure: what the simulated charger says in OCPP 1.6 words, and what it makes of what it hears.

Charging profiles from the wire become the model's `Profile`s (whether to take them is
`station.profile_refusal`'s, for every version), readings become meterValue elements, the
station's state becomes 1.6's status names, and the charger's configuration keys live here
with the rules for changing them. Payloads are in the ocpp library's snake_case: it turns
them into camelCase on the wire.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from connector.simulator.model import Profile, Sample
from connector.simulator.station import MAX_PERIODS, MAX_PROFILES, MAX_STACK_LEVEL, OUTLET, Station
from connector.simulator.words import (
    ENERGY,
    MEASURANDS,
    flag_setting,
    measurands_setting,
    parse_time,
    periods_from_wire,
    readings,
    seconds_setting,
    time_text,
)

CONNECTOR_ID = OUTLET  # the simulated charger has one outlet


# -- charging profiles -----------------------------------------------------------------


def profile_from_wire(connector_id: int, profile: dict[str, Any]) -> Profile:
    """csChargingProfiles (schema-checked, snake_case) as the model's Profile; ValueError for a bad date."""
    schedule = profile["charging_schedule"]
    return Profile(
        profile_id=profile["charging_profile_id"],
        connector_id=connector_id,
        stack_level=profile["stack_level"],
        purpose=profile["charging_profile_purpose"],
        unit=schedule["charging_rate_unit"],
        periods=periods_from_wire(schedule["charging_schedule_period"]),
        kind=profile["charging_profile_kind"],
        start=parse_time(schedule.get("start_schedule")),
        duration_s=schedule.get("duration"),
        valid_from=parse_time(profile.get("valid_from")),
        valid_to=parse_time(profile.get("valid_to")),
        recurrency=profile.get("recurrency_kind"),
        transaction_id=profile.get("transaction_id"),
    )


# -- meter values ----------------------------------------------------------------------


def meter_value(sample: Sample, at: float, context: str, measurands: Collection[str]) -> dict[str, Any]:
    """One meterValue element with the measurands asked for (MeterValuesSampledData)."""
    values = []
    for reading in readings(sample, measurands):
        sampled = {"value": reading.value, "context": context, "measurand": reading.measurand, "unit": reading.unit}
        if reading.phase is not None:
            sampled["phase"] = reading.phase
        if reading.location is not None:
            sampled["location"] = reading.location
        values.append(sampled)
    return {"timestamp": time_text(at), "sampled_value": values}


def energy_reading(sample: Sample, at: float, context: str) -> dict[str, Any]:
    """A meterValue element with the register alone (StopTransaction's transactionData)."""
    return meter_value(sample, at, context, (ENERGY,))


def connector_status(station: Station[Configuration], now: float) -> str:
    """StatusNotification's status of connector 1 as things stand."""
    charging = station.model.charging_state(now)
    if charging is not None:
        return charging
    if not station.operative:
        return "Unavailable"
    return "Reserved" if station.reservation is not None else "Available"


def charge_point_status(station: Station[Configuration]) -> str:
    """Connector 0, the charge point as a whole."""
    return "Available" if station.operative else "Unavailable"


# -- configuration ---------------------------------------------------------------------

HEARTBEAT_INTERVAL = "HeartbeatInterval"
SAMPLE_INTERVAL = "MeterValueSampleInterval"
SAMPLED_DATA = "MeterValuesSampledData"
INTERVALS = (HEARTBEAT_INTERVAL, SAMPLE_INTERVAL, "ClockAlignedDataInterval")
FLAGS = ("AuthorizeRemoteTxRequests", "LocalAuthListEnabled")


@dataclass
class Setting:
    value: str
    readonly: bool = False


def interval_text(seconds: float) -> str:
    return f"{seconds:g}"


class Configuration:
    """The charger's configuration keys (OCPP 1.6 9.1), a small set of what real chargers have."""

    def __init__(self, sample_interval: float) -> None:
        self._settings = {
            "AuthorizeRemoteTxRequests": Setting("false"),
            "ChargeProfileMaxStackLevel": Setting(str(MAX_STACK_LEVEL), readonly=True),
            "ChargingScheduleAllowedChargingRateUnit": Setting("Current,Power", readonly=True),
            "ChargingScheduleMaxPeriods": Setting(str(MAX_PERIODS), readonly=True),
            "ClockAlignedDataInterval": Setting("0"),
            HEARTBEAT_INTERVAL: Setting("300"),
            "LocalAuthListEnabled": Setting("false"),
            "MaxChargingProfilesInstalled": Setting(str(MAX_PROFILES), readonly=True),
            SAMPLE_INTERVAL: Setting(interval_text(sample_interval)),
            SAMPLED_DATA: Setting(",".join(MEASURANDS)),
            "NumberOfConnectors": Setting(str(CONNECTOR_ID), readonly=True),
            "SupportedFeatureProfiles": Setting(
                "Core,SmartCharging,RemoteTrigger,Reservation,LocalAuthListManagement", readonly=True
            ),
        }

    def entries(self, keys: list[str] | None) -> tuple[list[dict[str, Any]], list[str]]:
        """GetConfiguration: (configuration_key entries, unknown keys) for `keys` (None or []: all)."""
        names = keys or list(self._settings)
        known = [
            {"key": name, "readonly": self._settings[name].readonly, "value": self._settings[name].value}
            for name in names
            if name in self._settings
        ]
        return known, [name for name in names if name not in self._settings]

    def change(self, key: str, value: str) -> str:
        """ChangeConfiguration's status; the value is kept only when Accepted."""
        setting = self._settings.get(key)
        if setting is None:
            return "NotSupported"
        if setting.readonly or not _acceptable(key, value):
            return "Rejected"
        setting.value = value.strip()
        return "Accepted"

    def seconds(self, key: str) -> float:
        return float(self._settings[key].value)

    def set_seconds(self, key: str, seconds: float) -> None:
        """What the central system set otherwise (the heartbeat interval of BootNotification's answer)."""
        self._settings[key].value = interval_text(seconds)

    def measurands(self) -> frozenset[str]:
        return frozenset(self._settings[SAMPLED_DATA].value.split(","))

    # station.Settings, what the charger's loop reads
    def heartbeat_s(self) -> float:
        return self.seconds(HEARTBEAT_INTERVAL)

    def set_heartbeat_s(self, seconds: float) -> None:
        self.set_seconds(HEARTBEAT_INTERVAL, seconds)

    def sample_s(self) -> float:
        return self.seconds(SAMPLE_INTERVAL)


def _acceptable(key: str, value: str) -> bool:
    text = value.strip()
    if key in INTERVALS:
        return seconds_setting(text)
    if key in FLAGS:
        return flag_setting(text)
    if key == SAMPLED_DATA:
        return measurands_setting(text)
    return True
