"""A charge point simulator: `python -m connector.simulator --url ws://HOST:PORT [--chargers N] ...`.

Simulated chargers that boot, report their status, run transactions, send realistic meter
values and obey charging limits and the connector's other commands, for trying the
connector (and a BEMS on top of it) without a charger on the desk.

Layout: `options` (the command line), `fleet` (one task per charger, reconnecting),
`ocpp16/` and `ocpp201/` (each version's charger: its answers, its own messages and its
pure words in `payloads`), what they share (`station`: state and decisions, pure;
`behaviour`: the loop on one connection; `words`: date-times and readings, pure) and
`model` (the physics, pure).
"""

from connector.simulator.fleet import run
from connector.simulator.options import Options

__all__ = ["Options", "run"]
