"""A simulated OCPP 2.0.1 charging station: the ocpp library's v201 client side over one WebSocket.

Built like ocpp16/ on the same shared parts: `answers.Answers` (the library's v201
ChargePoint) answers the CSMS's calls, `behaviour.Behaviour` sends what the station says
of its own accord, `payloads` holds the pure 2.0.1 words and the device model.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import ClassVar

from websockets.asyncio.client import ClientConnection

from connector.simulator.behaviour import serve
from connector.simulator.model import ChargerModel
from connector.simulator.ocpp201.answers import Answers
from connector.simulator.ocpp201.behaviour import Behaviour, Memory
from connector.simulator.ocpp201.payloads import DeviceModel
from connector.simulator.station import Station

__all__ = ["Charger201", "new_charger"]


@dataclass
class Charger201:
    """A simulated 2.0.1 charging station as the fleet drives it (fleet.Charger)."""

    station: Station[DeviceModel]
    memory: Memory = field(default_factory=Memory)  # its transaction's seqNo, outliving a connection
    subprotocol: ClassVar[str] = "ocpp2.0.1"

    @property
    def name(self) -> str:
        return self.station.name

    async def serve(self, connection: ClientConnection, stop: asyncio.Event) -> bool:
        """Be the station on `connection` until it closes or `stop` is set; True when it is to reboot."""
        link = Answers(self.station, connection)
        return await serve(link, Behaviour(self.station, link, memory=self.memory), stop)


def new_charger(name: str, sample_interval: float) -> Charger201:
    """A station as it is at power-on; its randomness seeded by its name, so runs repeat."""
    station = Station(name, ChargerModel(random.Random(name)), DeviceModel(sample_interval))
    return Charger201(station)
