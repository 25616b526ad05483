"""One simulated charger's state across its connections, the decisions every OCPP version makes
alike, and the work its answers leave to do.

Pure (no I/O): the version packages translate their messages into these calls and the
results back into their words. The charger has one outlet, numbered OUTLET: connector 1
in OCPP 1.6, EVSE 1 with connector 1 in 2.0.1; 0 is the charger as a whole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from connector.simulator.model import CHARGE_POINT_MAX, PHASES, PURPOSES, TX, Car, ChargerModel, Profile

OUTLET = 1
MAX_STACK_LEVEL = 8
MAX_PERIODS = 24
MAX_PROFILES = 10
AUTO_ID_TAG = "SIMULATED"  # the id tag of the transaction started after each boot


class Settings(Protocol):
    """What the charger's loop reads from its configuration (1.6) or device model (2.0.1)."""

    def heartbeat_s(self) -> float: ...

    def set_heartbeat_s(self, seconds: float) -> None: ...

    def sample_s(self) -> float: ...

    def measurands(self) -> frozenset[str]: ...


S = TypeVar("S", bound=Settings)


@dataclass
class Reservation:
    reservation_id: int
    id_tag: str
    expires: float  # s since 1970


@dataclass
class Station(Generic[S]):
    """One simulated charger: what outlives a connection (its meter, car, limits, settings)."""

    name: str
    model: ChargerModel
    configuration: S
    operative: bool = True
    inoperative_scheduled: bool = False  # made Inoperative during a transaction: when it ends
    reset_scheduled: str | None = None  # 2.0.1 Reset OnIdle during a transaction: the kind, for when it ends
    reservation: Reservation | None = None
    booted: bool = False  # since power-on or the last Reset; a reconnect does not reboot it
    local_list_version: int = 0

    def install(self, profile: Profile, now: float, outlet: str = "connector") -> str | None:
        """Install a charging profile; why it is refused (SetChargingProfile Rejected), or None."""
        refusal = profile_refusal(profile, self.model.car, outlet)
        if refusal is None and len(self.model.limits) >= MAX_PROFILES:
            refusal = f"{MAX_PROFILES} profiles are installed already"
        if refusal is None:
            self.model.advance(now)  # the energy so far at the power before the limit
            self.model.limits.install(profile)
        return refusal

    def start_refusal(self, id_tag: str, outlet_id: int | None) -> str | None:
        """Why a remote start is refused, or None."""
        if outlet_id not in (None, OUTLET):
            return f"there is no connector {outlet_id}"
        if self.model.car is not None:
            return "a transaction is in progress"
        if not self.operative:
            return "the connector is Unavailable"
        reservation = self.reservation
        if reservation is not None and reservation.id_tag != id_tag:
            return f"the connector is reserved (reservation {reservation.reservation_id})"
        return None

    def change_availability(self, operative: bool) -> str:
        """Accepted, or Scheduled: Inoperative during a transaction takes effect when it ends."""
        if not operative and self.model.car is not None:
            self.inoperative_scheduled = True
            return "Scheduled"
        self.operative, self.inoperative_scheduled = operative, False
        return "Accepted"

    def transaction_ended(self) -> None:
        """What waited for the end of the transaction: a scheduled Inoperative."""
        if self.inoperative_scheduled:
            self.operative, self.inoperative_scheduled = False, False

    def reserve(self, reservation_id: int, id_tag: str, expires: float) -> str:
        """ReserveNow's status for the outlet (reserving it again under the same id updates it)."""
        held = self.reservation
        if not self.operative:
            return "Unavailable"
        if self.model.car is not None or (held is not None and held.reservation_id != reservation_id):
            return "Occupied"
        self.reservation = Reservation(reservation_id, id_tag, expires)
        return "Accepted"

    def cancel_reservation(self, reservation_id: int) -> bool:
        if self.reservation is None or self.reservation.reservation_id != reservation_id:
            return False
        self.reservation = None
        return True

    def composite_limit(self, now: float, unit: str | None) -> tuple[str, float]:
        """GetCompositeSchedule's one period: (unit, limit) of what the charger may draw now, at most its maximum."""
        limit = self.model.limit(now)
        unit = unit or (limit.profile.unit if limit else "W")
        watts = self.model.max_power_w if limit is None else min(self.model.max_power_w, limit.watts)
        value = watts if unit == "W" else watts / (self.model.voltage() * (limit.phases if limit else PHASES))
        return unit, math.floor(value * 10) / 10

    def power_text(self, now: float) -> str:
        """The power now, for a log line."""
        power = f"{self.model.power_w(now):.0f} W"
        return power if self.model.car is not None else f"{power} (no car charging)"


def profile_refusal(profile: Profile, car: Car | None, outlet: str = "connector") -> str | None:
    """Why a charger like this one refuses the profile (SetChargingProfile Rejected), or None."""
    if profile.connector_id not in (0, OUTLET):
        return f"there is no {outlet} {profile.connector_id}"
    if profile.purpose == CHARGE_POINT_MAX and profile.connector_id != 0:
        return f"a charger's maximum profile belongs on {outlet} 0"
    if profile.purpose == TX and (car is None or car.transaction_id is None):
        return "a TxProfile needs a transaction in progress"
    if profile.purpose == TX and profile.transaction_id not in (None, car and car.transaction_id):
        return f"transaction {profile.transaction_id} is not the one in progress"
    if profile.stack_level > MAX_STACK_LEVEL:
        return f"stack level {profile.stack_level} is above the highest it supports, {MAX_STACK_LEVEL}"
    if len(profile.periods) > MAX_PERIODS:
        return f"{len(profile.periods)} periods are more than the {MAX_PERIODS} it supports"
    if profile.purpose not in PURPOSES or not all(math.isfinite(p.limit) and p.limit >= 0 for p in profile.periods):
        return "its purpose or a limit makes no sense"
    return None


# -- what the central system's calls leave to do ---------------------------------------


@dataclass(frozen=True)
class StartCharging:
    id_tag: str
    reservation_id: int | None = None
    profile: dict[str, Any] | None = None  # the remote start's TxProfile, in the version's snake_case
    remote_start_id: int | None = None  # 2.0.1
    token_type: str = "Central"  # 2.0.1's idToken type


@dataclass(frozen=True)
class StopCharging:
    reason: str  # in the version's words: 1.6 StopTransaction's reason, 2.0.1 the trigger reason


@dataclass(frozen=True)
class Send:
    message: str  # a message TriggerMessage asked for, in the version's words
    outlet_id: int | None = None


@dataclass(frozen=True)
class Reboot:
    kind: str  # 1.6 Soft or Hard; 2.0.1 Immediate or OnIdle


@dataclass(frozen=True)
class ReportStatus:
    """The status may have changed (availability, reservation): say so now, not at the next sample."""


Intent = StartCharging | StopCharging | Send | Reboot | ReportStatus
