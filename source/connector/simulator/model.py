"""Pure physics of one simulated charger: what it draws under its limits, what its meter reads.

No I/O and no OCPP framing: a protocol package (ocpp16/, ocpp201/) turns charging
profiles into `Profile`s and `Sample`s into meter values. Time is seconds
since 1970 (UTC), always passed in, so tests step it by hand.

The car: a battery of BATTERY_WH that arrives with 10-50 % and takes the charger's maximum
up to TAPER_FROM_SOC, then less and less (the constant-voltage phase) until it is full.
What flows is the least of the charger's maximum, what the car takes and the limit in effect.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

PHASES = 3
NOMINAL_VOLTAGE = 230.0
VOLTAGE_NOISE_V = 1.5  # standard deviation: a building's grid wanders by a few volts
MAX_VOLTAGE_DEVIATION_V = 6.0
MAX_POWER_W = 11_000.0  # 3 x 16 A x 230 V, the common wallbox
BATTERY_WH = 60_000.0
TAPER_FROM_SOC = 80.0  # %
ARRIVAL_SOC = (10.0, 50.0)  # %, a car's state of charge when it is plugged in
METER_START_WH = (100_000, 5_000_000)  # a meter that has been in service for a while

CHARGE_POINT_MAX = "ChargePointMaxProfile"  # 2.0.1's ChargingStationMaxProfile
TX_DEFAULT = "TxDefaultProfile"
TX = "TxProfile"
PURPOSES = (CHARGE_POINT_MAX, TX_DEFAULT, TX)
RECURRENCY_S = {"Daily": 86_400.0, "Weekly": 604_800.0}

# 1.6: the central system's number; 2.0.1: the charging station's own string (a UUID).
TransactionId = int | str


@dataclass(frozen=True)
class Period:
    start_s: float  # from the start of the schedule
    limit: float  # in the profile's unit
    phases: int | None = None  # None: all three


@dataclass(frozen=True)
class Profile:
    """A charging profile, whatever OCPP version brought it."""

    profile_id: int
    connector_id: int  # 0: the charge point as a whole
    stack_level: int
    purpose: str  # one of PURPOSES
    unit: str  # "W" or "A"
    periods: tuple[Period, ...]  # by start_s, the first at 0 or later
    kind: str = "Relative"  # Absolute, Recurring or Relative
    start: float | None = None  # startSchedule (Absolute, Recurring)
    duration_s: float | None = None
    valid_from: float | None = None
    valid_to: float | None = None
    recurrency: str | None = None  # a key of RECURRENCY_S
    transaction_id: TransactionId | None = None  # TxProfile: the transaction it belongs to

    def period_at(self, now: float, transaction_start: float | None) -> Period | None:
        """The period in effect at `now`, or None (not valid yet, expired, or before the first period)."""
        if (self.valid_from is not None and now < self.valid_from) or (
            self.valid_to is not None and now >= self.valid_to
        ):
            return None
        elapsed = now - self._schedule_start(now, transaction_start)
        if elapsed < 0 or (self.duration_s is not None and elapsed >= self.duration_s):
            return None
        current = None
        for period in self.periods:
            if period.start_s <= elapsed:
                current = period
        return current

    def _schedule_start(self, now: float, transaction_start: float | None) -> float:
        if self.kind == "Relative" or self.start is None:
            # Relative: from the start of the transaction (OCPP 1.6 3.13.1); outside one
            # (a composite schedule asked for while idle) it would start now.
            return now if transaction_start is None else transaction_start
        if self.kind == "Recurring" and self.recurrency in RECURRENCY_S:
            length = RECURRENCY_S[self.recurrency]
            return self.start + (now - self.start) // length * length
        return self.start

    def watts(self, period: Period, voltage: float) -> float:
        """The period's limit in W; a limit in A over the charger's own voltage and its phases."""
        if self.unit == "W":
            return period.limit
        return period.limit * voltage * (period.phases or PHASES)


@dataclass(frozen=True)
class Limit:
    watts: float
    phases: int
    profile: Profile  # the one that sets it


class Limits:
    """The charging profiles installed on a charger and the limit they make.

    Within one purpose on one connector the highest stack level is in effect (OCPP 1.6
    3.13.2); of those, the lowest limit wins: the charger never draws more than any
    profile in effect allows, whatever its purpose, connector (0 or its own) or unit.
    """

    def __init__(self) -> None:
        self._profiles: dict[int, Profile] = {}

    def __len__(self) -> int:
        return len(self._profiles)

    def install(self, profile: Profile) -> None:
        """A profile with the same id, or the same purpose and stack level on the same connector, is replaced."""
        same_slot = (profile.purpose, profile.stack_level, profile.connector_id)
        self._profiles = {
            pid: p
            for pid, p in self._profiles.items()
            if pid != profile.profile_id and (p.purpose, p.stack_level, p.connector_id) != same_slot
        }
        self._profiles[profile.profile_id] = profile

    def clear(
        self,
        profile_id: int | None = None,
        connector_id: int | None = None,
        purpose: str | None = None,
        stack_level: int | None = None,
    ) -> int:
        """Remove the profiles that match every criterion given (none given: all); how many went."""
        given = {"profile_id": profile_id, "connector_id": connector_id, "purpose": purpose, "stack_level": stack_level}
        wanted = {name: value for name, value in given.items() if value is not None}
        gone = [pid for pid, p in self._profiles.items() if all(getattr(p, n) == v for n, v in wanted.items())]
        for pid in gone:
            del self._profiles[pid]
        return len(gone)

    def end_transaction(self) -> None:
        """TxProfiles end with their transaction (OCPP 1.6 3.13.1)."""
        self.clear(purpose=TX)

    def in_effect(self, now: float, transaction_start: float | None, voltage: float) -> Limit | None:
        """The limit in effect at `now`, or None when no profile limits the charger."""
        on_top: dict[tuple[str, int], tuple[int, Limit]] = {}
        for profile in self._profiles.values():
            period = profile.period_at(now, transaction_start)
            if period is None:
                continue
            slot = (profile.purpose, profile.connector_id)
            if slot not in on_top or profile.stack_level > on_top[slot][0]:
                limit = Limit(profile.watts(period, voltage), period.phases or PHASES, profile)
                on_top[slot] = (profile.stack_level, limit)
        return min((limit for _, limit in on_top.values()), key=lambda limit: limit.watts, default=None)


@dataclass
class Car:
    """The car plugged in for the current transaction."""

    plugged_in: float
    meter_start: int  # Wh
    soc: float  # %
    id_tag: str
    transaction_id: TransactionId | None = None  # 1.6: once the central system has given one
    capacity_wh: float = BATTERY_WH

    def takes_w(self, maximum: float) -> float:
        """What the car accepts: everything up to TAPER_FROM_SOC, then linearly less, nothing when full."""
        if self.soc < TAPER_FROM_SOC:
            return maximum
        return maximum * max(0.0, (100.0 - self.soc) / (100.0 - TAPER_FROM_SOC))


@dataclass(frozen=True)
class Sample:
    power_w: float
    energy_wh: float  # the meter register
    voltages: tuple[float, ...]  # per phase, L1-N .. L3-N
    currents: tuple[float, ...]  # per phase, L1 .. L3; 0 on a phase not in use
    soc: float | None  # % of the car plugged in; None without one


@dataclass
class ChargerModel:
    """One charger's meter, limits and car, advanced in time by whoever holds it."""

    rng: random.Random
    max_power_w: float = MAX_POWER_W
    limits: Limits = field(default_factory=Limits)
    car: Car | None = None
    voltages: tuple[float, ...] = (NOMINAL_VOLTAGE,) * PHASES
    energy_wh: float = 0.0
    _advanced_to: float | None = None

    def __post_init__(self) -> None:
        self.energy_wh = float(self.rng.randint(*METER_START_WH))

    def voltage(self) -> float:
        """Its own voltage, as a current limit is converted with: the mean of its last phase readings."""
        return sum(self.voltages) / len(self.voltages)

    def limit(self, now: float) -> Limit | None:
        return self.limits.in_effect(now, self.car.plugged_in if self.car else None, self.voltage())

    def power_w(self, now: float) -> float:
        """What flows at `now`: the least of its maximum, what the car takes and the limit."""
        if self.car is None:
            return 0.0
        limit = self.limit(now)
        ceiling = self.max_power_w if limit is None else min(self.max_power_w, max(0.0, limit.watts))
        return self.car.takes_w(ceiling)

    def advance(self, now: float) -> None:
        """Count the energy delivered since the last call at the power that flowed then.

        Call it before anything that changes the power (a limit, a car arriving or
        leaving), so the energy before the change is counted at the power before it.
        """
        last = self._advanced_to
        if last is not None and now > last and self.car is not None:
            delivered = self.power_w(last) * (now - last) / 3600.0
            self.energy_wh += delivered
            self.car.soc = min(100.0, self.car.soc + delivered / self.car.capacity_wh * 100.0)
        if last is None or now > last:
            self._advanced_to = now

    def plug_in(self, now: float, id_tag: str) -> Car:
        """A car arrives (a transaction is about to start)."""
        self.advance(now)
        self.car = Car(now, int(self.energy_wh), round(self.rng.uniform(*ARRIVAL_SOC), 1), id_tag)
        return self.car

    def unplug(self, now: float) -> Car | None:
        """The car leaves with its transaction, and the transaction's profiles with it."""
        self.advance(now)
        car, self.car = self.car, None
        self.limits.end_transaction()
        return car

    def sample(self, now: float) -> Sample:
        """The meter's readings at `now` (counting the energy up to it)."""
        self.advance(now)
        self.voltages = tuple(self._noisy_voltage() for _ in range(PHASES))
        power = self.power_w(now)
        limit = self.limit(now)
        phases = PHASES if limit is None else max(1, min(PHASES, limit.phases))
        currents = tuple(power / (phases * v) if i < phases else 0.0 for i, v in enumerate(self.voltages))
        return Sample(power, self.energy_wh, self.voltages, currents, self.car.soc if self.car else None)

    def _noisy_voltage(self) -> float:
        deviation = max(-MAX_VOLTAGE_DEVIATION_V, min(MAX_VOLTAGE_DEVIATION_V, self.rng.gauss(0.0, VOLTAGE_NOISE_V)))
        return round(NOMINAL_VOLTAGE + deviation, 1)

    def charging_state(self, now: float) -> str | None:
        """Charging, SuspendedEVSE (the limit is 0), SuspendedEV (the car takes nothing); None without a car."""
        if self.car is None:
            return None
        if self.power_w(now) > 0:
            return "Charging"
        limit = self.limit(now)
        return "SuspendedEVSE" if limit is not None and limit.watts <= 0 else "SuspendedEV"
