"""Pure: what every OCPP version of the simulator says alike: date-times, schedule periods, readings,
and which setting values it takes.

Each version wraps a `Reading` in its own sampledValue (1.6 a flat `unit`, 2.0.1 a
`unitOfMeasure` object), so the values, their rounding and their names cannot drift apart.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any, NamedTuple

from connector.simulator.model import Period, Sample

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


def periods_from_wire(periods: list[dict[str, Any]]) -> tuple[Period, ...]:
    """chargingSchedulePeriod (schema-checked, snake_case; the same in 1.6 and 2.0.1) by start."""
    parsed = (Period(float(p["start_period"]), float(p["limit"]), p.get("number_phases")) for p in periods)
    return tuple(sorted(parsed, key=lambda period: period.start_s))


class Reading(NamedTuple):
    """One sampled value, before a version gives it its shape."""

    measurand: str
    value: str  # OCPP 1.6 carries it as text; 2.0.1 as a number (float(value))
    unit: str
    phase: str | None = None
    location: str | None = None


def readings(sample: Sample, measurands: Collection[str]) -> list[Reading]:
    """The sample's readings of the measurands asked for, in MEASURANDS order."""
    found: list[Reading] = []
    if ENERGY in measurands:
        found.append(Reading(ENERGY, f"{math.floor(sample.energy_wh)}", "Wh"))
    if POWER in measurands:
        found.append(Reading(POWER, f"{sample.power_w:.1f}", "W"))
    if CURRENT in measurands:
        found += (Reading(CURRENT, f"{a:.2f}", "A", f"L{i}") for i, a in enumerate(sample.currents, start=1))
    if VOLTAGE in measurands:
        found += (Reading(VOLTAGE, f"{v:.1f}", "V", f"L{i}-N") for i, v in enumerate(sample.voltages, start=1))
    if SOC in measurands and sample.soc is not None:
        found.append(Reading(SOC, f"{math.floor(sample.soc)}", "Percent", location="EV"))
    return found


def seconds_setting(text: str) -> bool:
    """A value an interval setting takes: a number of seconds >= 0 (0: off)."""
    try:
        return math.isfinite(float(text)) and float(text) >= 0
    except ValueError:
        return False


def flag_setting(text: str) -> bool:
    return text.lower() in ("true", "false")


def measurands_setting(text: str) -> bool:
    """A comma-separated list of the measurands the meter has."""
    return all(word in MEASURANDS for word in text.split(","))
