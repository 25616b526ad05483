"""A simulated OCPP 1.6 charge point: the ocpp library's client side over one WebSocket.

Two halves share the connection: `answers.Answers` (the library's ChargePoint) answers the
central system's calls, `behaviour.Behaviour` sends what the charger says of its own
accord. `station.Station` is what outlives a connection; `payloads` the pure message
building. A 2.0.1 charger would be a package like this one beside it, on the same `model`.
"""

from __future__ import annotations

import asyncio

from websockets.asyncio.client import ClientConnection

from connector.simulator.ocpp16.answers import Answers
from connector.simulator.ocpp16.behaviour import Behaviour
from connector.simulator.ocpp16.station import Station
from connector.simulator.race import first_to_finish

SUBPROTOCOL = "ocpp1.6"

__all__ = ["SUBPROTOCOL", "Station", "serve"]


async def serve(station: Station, connection: ClientConnection, stop: asyncio.Event) -> bool:
    """Be the charger on `connection` until it closes or `stop` is set; True when it is to reboot."""
    link = Answers(station, connection)
    behaviour = Behaviour(station, link)
    await first_to_finish(link.read(), behaviour.run(), stop.wait())
    return behaviour.rebooting
