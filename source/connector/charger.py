"""What the connector knows of a charge point beyond one connection.

Kept per identity by the dispatcher, so a charger that reconnects without a new
BootNotification keeps its allowed rate units, last voltage and open reservations.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ChargerState:
    allowed_rate_units: frozenset[str] | None = None  # {"W", "A"} subset; None: not known
    rate_units_asked: bool = False  # asked since start (an answer of None stays unknown)
    voltage: float | None = None  # last measured phase voltage
    reservations: dict[int, int] = field(default_factory=dict)  # connector id -> reservation id
