"""OCPP 1.6 (with its security extension): the tables that serve a charge point speaking it.

Handlers (handlers.py), actuators (actuators.py) and the rate-unit read (rate_units.py);
the schemas are the ocpp library's, compiled by protocol.py; the error codes are OCPP-J
1.6's own, so `error_codes` renames none.
"""

from __future__ import annotations

from connector.handling import OcppVersion
from connector.ocpp16.actuators import CENTRAL_ACTIONS, TRANSLATIONS
from connector.ocpp16.handlers import HANDLERS
from connector.ocpp16.rate_units import RATE_UNITS

VERSION = OcppVersion(
    name="1.6",
    subprotocol="ocpp1.6",
    handlers=HANDLERS,
    actuators=TRANSLATIONS,
    central_actions=CENTRAL_ACTIONS,
    error_codes={},
    rate_units=RATE_UNITS,
)
