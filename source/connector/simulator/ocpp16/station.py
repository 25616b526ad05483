"""One simulated OCPP 1.6 charger's state across its connections, and the work its answers leave to do."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from connector.simulator.model import ChargerModel
from connector.simulator.ocpp16.payloads import Configuration


@dataclass
class Reservation:
    reservation_id: int
    id_tag: str
    expires: float  # s since 1970


@dataclass
class Station:
    """One simulated charger: what outlives a connection (its meter, car, limits, settings)."""

    name: str
    model: ChargerModel
    configuration: Configuration
    operative: bool = True
    inoperative_scheduled: bool = False  # ChangeAvailability Inoperative during a transaction
    reservation: Reservation | None = None
    booted: bool = False  # since power-on or the last Reset; a reconnect does not reboot it
    local_list_version: int = 0

    def connector_status(self, now: float) -> str:
        """StatusNotification's status of connector 1 as things stand."""
        charging = self.model.charging_state(now)
        if charging is not None:
            return charging
        if not self.operative:
            return "Unavailable"
        return "Reserved" if self.reservation is not None else "Available"

    def charge_point_status(self) -> str:
        """Connector 0, the charge point as a whole."""
        return "Available" if self.operative else "Unavailable"


# -- what the central system's calls leave to do ---------------------------------------


@dataclass(frozen=True)
class StartCharging:
    id_tag: str
    reservation_id: int | None = None
    profile: dict[str, Any] | None = None  # RemoteStartTransaction's TxProfile


@dataclass(frozen=True)
class StopCharging:
    reason: str  # StopTransaction's reason


@dataclass(frozen=True)
class Send:
    message: str  # one of answers.TRIGGERABLE
    connector_id: int | None = None


@dataclass(frozen=True)
class Reboot:
    kind: str  # Soft or Hard


@dataclass(frozen=True)
class ReportStatus:
    """The status may have changed (availability, reservation): say so now, not at the next sample."""


Intent = StartCharging | StopCharging | Send | Reboot | ReportStatus
