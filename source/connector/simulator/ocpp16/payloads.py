"""Pure: what the simulated charger says in OCPP 1.6 words, and what it makes of what it hears.

Charging profiles from the wire become the model's `Profile`s (or a reason to refuse
them), samples become meterValue elements, and the charger's configuration keys live here
with the rules for changing them. Payloads are in the ocpp library's snake_case: it turns
them into camelCase on the wire.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from connector.simulator.model import CHARGE_POINT_MAX, PURPOSES, TX, Car, Period, Profile, Sample

CONNECTOR_ID = 1  # the simulated charger has one outlet
MAX_STACK_LEVEL = 8
MAX_PERIODS = 24
MAX_PROFILES = 10

ENERGY = "Energy.Active.Import.Register"
POWER = "Power.Active.Import"
CURRENT = "Current.Import"
VOLTAGE = "Voltage"
SOC = "SoC"
MEASURANDS = (ENERGY, POWER, CURRENT, VOLTAGE, SOC)


def time_text(at: float) -> str:
    """OCPP's date-time: UTC with a `Z` suffix, to the millisecond."""
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str | None) -> float | None:
    """An OCPP date-time as seconds since 1970; one without an offset is taken as UTC."""
    if text is None:
        return None
    moment = datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


# -- charging profiles -----------------------------------------------------------------


def profile_from_wire(connector_id: int, profile: dict[str, Any]) -> Profile:
    """csChargingProfiles (schema-checked, snake_case) as the model's Profile; ValueError for a bad date."""
    schedule = profile["charging_schedule"]
    periods = sorted(
        (
            Period(float(p["start_period"]), float(p["limit"]), p.get("number_phases"))
            for p in schedule["charging_schedule_period"]
        ),
        key=lambda period: period.start_s,
    )
    return Profile(
        profile_id=profile["charging_profile_id"],
        connector_id=connector_id,
        stack_level=profile["stack_level"],
        purpose=profile["charging_profile_purpose"],
        unit=schedule["charging_rate_unit"],
        periods=tuple(periods),
        kind=profile["charging_profile_kind"],
        start=parse_time(schedule.get("start_schedule")),
        duration_s=schedule.get("duration"),
        valid_from=parse_time(profile.get("valid_from")),
        valid_to=parse_time(profile.get("valid_to")),
        recurrency=profile.get("recurrency_kind"),
        transaction_id=profile.get("transaction_id"),
    )


def profile_refusal(profile: Profile, car: Car | None) -> str | None:
    """Why a charger like this one refuses the profile (SetChargingProfile Rejected), or None."""
    if profile.connector_id not in (0, CONNECTOR_ID):
        return f"there is no connector {profile.connector_id}"
    if profile.purpose == CHARGE_POINT_MAX and profile.connector_id != 0:
        return "a ChargePointMaxProfile belongs on connector 0"
    if profile.purpose == TX and (car is None or car.transaction_id is None):
        return "a TxProfile needs a transaction in progress"
    if profile.purpose == TX and profile.transaction_id not in (None, car and car.transaction_id):
        return f"transaction {profile.transaction_id} is not the one in progress"
    if profile.stack_level > MAX_STACK_LEVEL:
        return f"stack level {profile.stack_level} is above ChargeProfileMaxStackLevel {MAX_STACK_LEVEL}"
    if len(profile.periods) > MAX_PERIODS:
        return f"{len(profile.periods)} periods are more than ChargingScheduleMaxPeriods {MAX_PERIODS}"
    if profile.purpose not in PURPOSES or not all(math.isfinite(p.limit) and p.limit >= 0 for p in profile.periods):
        return "its purpose or a limit makes no sense"
    return None


# -- meter values ----------------------------------------------------------------------


def meter_value(sample: Sample, at: float, context: str, measurands: Collection[str]) -> dict[str, Any]:
    """One meterValue element with the measurands asked for (MeterValuesSampledData)."""
    values: list[dict[str, Any]] = []
    if ENERGY in measurands:
        values.append(_sampled(ENERGY, f"{math.floor(sample.energy_wh)}", "Wh", context))
    if POWER in measurands:
        values.append(_sampled(POWER, f"{sample.power_w:.1f}", "W", context))
    if CURRENT in measurands:
        values += (_sampled(CURRENT, f"{a:.2f}", "A", context, f"L{i}") for i, a in _phases(sample.currents))
    if VOLTAGE in measurands:
        values += (_sampled(VOLTAGE, f"{v:.1f}", "V", context, f"L{i}-N") for i, v in _phases(sample.voltages))
    if SOC in measurands and sample.soc is not None:
        values.append({**_sampled(SOC, f"{math.floor(sample.soc)}", "Percent", context), "location": "EV"})
    return {"timestamp": time_text(at), "sampled_value": values}


def energy_reading(sample: Sample, at: float, context: str) -> dict[str, Any]:
    """A meterValue element with the register alone (StopTransaction's transactionData)."""
    return meter_value(sample, at, context, (ENERGY,))


def _phases(per_phase: Iterable[float]) -> Iterable[tuple[int, float]]:
    return enumerate(per_phase, start=1)


def _sampled(measurand: str, value: str, unit: str, context: str, phase: str | None = None) -> dict[str, Any]:
    sampled = {"value": value, "context": context, "measurand": measurand, "unit": unit}
    return sampled if phase is None else {**sampled, "phase": phase}


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


def _acceptable(key: str, value: str) -> bool:
    text = value.strip()
    if key in INTERVALS:
        try:
            return math.isfinite(float(text)) and float(text) >= 0
        except ValueError:
            return False
    if key in FLAGS:
        return text.lower() in ("true", "false")
    if key == SAMPLED_DATA:
        return all(word in MEASURANDS for word in text.split(","))
    return True
