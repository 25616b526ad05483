"""What the connector knows of a charge point beyond one connection.

Kept per identity by the dispatcher, so a charger that reconnects without a new
BootNotification keeps its allowed rate units. (Reservations, which must also survive a
restart of the connector, live in the TransactionStore; measured voltages live in the
session, see ChargePointSession.voltages.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

RateUnits = frozenset[str] | None  # {"W", "A"} subset; None: not known


@dataclass(slots=True)  # one per charge point
class ChargerState:
    allowed_rate_units: RateUnits = None
    # Read (or tried: once per boot, whatever the outcome) since the connector started; an
    # answer that does not name the units, or none, leaves allowed_rate_units None.
    rate_units_asked: bool = False
    # Several instances: where what is learnt goes, so the instance that takes the charger
    # over knows it too (handover.SharedOwnership).
    share: Callable[[RateUnits], None] | None = None

    def learnt(self, units: RateUnits) -> None:
        self.allowed_rate_units = units
        if self.share is not None:
            self.share(units)
