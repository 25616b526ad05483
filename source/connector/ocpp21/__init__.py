"""OCPP 2.1: the tables that serve a charging station speaking it; 2.0.1's entries where the
messages are the same (see handlers.py and actuators.py), the same rate-unit read, and 2.1's
SEND (type 6) and CALLRESULTERROR (type 5) frames."""

from __future__ import annotations

from connector.handling import OcppVersion
from connector.ocpp21.actuators import CENTRAL_ACTIONS, TRANSLATIONS
from connector.ocpp21.handlers import HANDLERS
from connector.ocpp201 import actuators as v201_actuators
from connector.ocpp201.rate_units import RATE_UNITS
from connector.protocol import ERROR_CODES_2X

VERSION = OcppVersion(
    name="2.1",
    subprotocol="ocpp2.1",
    handlers=HANDLERS,
    actuators=TRANSLATIONS,
    central_actions=CENTRAL_ACTIONS,
    error_codes=ERROR_CODES_2X,
    rate_units=RATE_UNITS,
    send_frames=True,
    unknown_type_error="MessageTypeNotSupported",
    malformed_call_error="RpcFrameworkError",
    examples=v201_actuators.EXAMPLES,  # the same device model words
)
