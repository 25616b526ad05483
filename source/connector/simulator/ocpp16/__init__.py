"""A simulated OCPP 1.6 charge point: the ocpp library's client side over one WebSocket.

Two halves share the connection: `answers.Answers` (the library's ChargePoint) answers the
central system's calls, `behaviour.Behaviour` sends what the charger says of its own
accord. `station.Station` is what outlives a connection; `payloads` the pure message
building. A 2.0.1 charger would be a package like this one beside it, on the same `model`,
its `new_charger` in fleet.NEW_CHARGER and "2.0.1" in options.VERSIONS.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import ClassVar

from websockets.asyncio.client import ClientConnection

from connector.simulator.model import ChargerModel
from connector.simulator.ocpp16.answers import Answers
from connector.simulator.ocpp16.behaviour import Behaviour
from connector.simulator.ocpp16.payloads import Configuration
from connector.simulator.ocpp16.station import Station
from connector.simulator.race import first_to_finish

__all__ = ["Charger16", "new_charger"]


@dataclass
class Charger16:
    """A simulated 1.6 charger as the fleet drives it (fleet.Charger)."""

    station: Station
    subprotocol: ClassVar[str] = "ocpp1.6"

    @property
    def name(self) -> str:
        return self.station.name

    async def serve(self, connection: ClientConnection, stop: asyncio.Event) -> bool:
        """Be the charger on `connection` until it closes or `stop` is set; True when it is to reboot."""
        link = Answers(self.station, connection)
        behaviour = Behaviour(self.station, link)
        await first_to_finish(link.read(), behaviour.run(), stop.wait())
        return behaviour.rebooting


def new_charger(name: str, sample_interval: float) -> Charger16:
    """A charger as it is at power-on; its randomness seeded by its name, so runs repeat."""
    station = Station(name, ChargerModel(random.Random(name)), Configuration(sample_interval))
    return Charger16(station)
