"""A charge point simulator: `python -m connector.simulator --url ws://HOST:PORT [--chargers N] ...`.

Simulated chargers that boot, report their status, run transactions, send realistic meter
values and obey charging limits and the connector's other commands, for trying the
connector (and a BEMS on top of it) without a charger on the desk.

Layout: `options` (the command line), `fleet` (one task per charger, reconnecting),
`ocpp16/` (the OCPP 1.6 charge point, its pure message building in `ocpp16/payloads`; a
2.0.1 one would sit beside it) and `model` (the physics, pure).
"""

from connector.simulator.fleet import run
from connector.simulator.options import Options

__all__ = ["Options", "run"]
