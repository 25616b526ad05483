"""A simulated OCPP 1.6 charge point: the ocpp library's client side over one WebSocket.

Two halves share the connection: `answers.Answers` (the library's ChargePoint) answers the
central system's calls, `behaviour.Behaviour` sends what the charger says of its own
accord. What they share with 2.0.1 (the station's state and decisions, the loop, the
readings) is one level up; `payloads` holds the pure 1.6 words.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import ClassVar

from websockets.asyncio.client import ClientConnection

from connector.simulator.behaviour import serve
from connector.simulator.model import ChargerModel
from connector.simulator.ocpp16.answers import Answers
from connector.simulator.ocpp16.behaviour import Behaviour
from connector.simulator.ocpp16.payloads import Configuration
from connector.simulator.station import Station

__all__ = ["Charger16", "new_charger"]


@dataclass
class Charger16:
    """A simulated 1.6 charger as the fleet drives it (fleet.Charger)."""

    station: Station[Configuration]
    subprotocol: ClassVar[str] = "ocpp1.6"

    @property
    def name(self) -> str:
        return self.station.name

    async def serve(self, connection: ClientConnection, stop: asyncio.Event) -> bool:
        """Be the charger on `connection` until it closes or `stop` is set; True when it is to reboot."""
        link = Answers(self.station, connection)
        return await serve(link, Behaviour(self.station, link), stop)


def new_charger(name: str, sample_interval: float) -> Charger16:
    """A charger as it is at power-on; its randomness seeded by its name, so runs repeat."""
    station = Station(name, ChargerModel(random.Random(name)), Configuration(sample_interval))
    return Charger16(station)
