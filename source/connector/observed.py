"""What the operations server shows of one charge point connection, recorded as it happens.

The status page must not scan the registry's keys (they are looked up, never split), and
must cost the OCPP path nothing it does not already do: a session stores here references
to what it has built anyway (the last MeterValues' datapoints, a status word), one
attribute store per message, and the page reads it only when someone asks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from connector.datapoints import Datapoint


@dataclass(slots=True)
class LastCommand:
    key: str  # the actuator key
    status: str  # what `<key>__status` said: the charger's answer, or `Failed: ...`
    at: int  # ms


# Bounded, whatever a charger sends: connector ids are any integer, and a MeterValues may
# carry 2,000 values; the page shows this much and counts the rest.
STATUSES_KEPT = 16
METER_VALUES_KEPT = 8


@dataclass(slots=True)
class Observed:
    connected_at: float = field(default_factory=time.time)  # s since 1970
    statuses: dict[int, str] = field(default_factory=dict)  # connector id -> last StatusNotification status
    meter: list[Datapoint] = field(default_factory=list)  # the first datapoints of the last MeterValues
    meter_count: int = 0  # how many the last MeterValues had
    command: LastCommand | None = None

    def note_status(self, connector_id: int, status: str) -> None:
        if connector_id in self.statuses or len(self.statuses) < STATUSES_KEPT:
            self.statuses[connector_id] = status

    def note_meter(self, points: list[Datapoint]) -> None:
        self.meter = points if len(points) <= METER_VALUES_KEPT else points[:METER_VALUES_KEPT]
        self.meter_count = len(points)
