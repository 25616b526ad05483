"""OCPP 2.0.1: the tables that serve a charging station speaking it (see handling.py).

Handlers (handlers.py, mapping in datapoints.py), actuators (actuators.py, configuration
through variables.py) and the rate-unit read (rate_units.py, SmartChargingCtrlr.RateUnit);
the schemas are the ocpp library's, compiled by protocol.py; OCPP-J 2.0.1 spells two error
codes differently from 1.6 and answers an unknown message type.
"""

from __future__ import annotations

from connector.handling import OcppVersion
from connector.ocpp201.actuators import CENTRAL_ACTIONS, EXAMPLES, TRANSLATIONS
from connector.ocpp201.handlers import HANDLERS
from connector.ocpp201.rate_units import RATE_UNITS
from connector.protocol import ERROR_CODES_2X

VERSION = OcppVersion(
    name="2.0.1",
    subprotocol="ocpp2.0.1",
    handlers=HANDLERS,
    actuators=TRANSLATIONS,
    central_actions=CENTRAL_ACTIONS,
    error_codes=ERROR_CODES_2X,
    rate_units=RATE_UNITS,
    unknown_type_error="MessageTypeNotSupported",
    malformed_call_error="RpcFrameworkError",
    examples=EXAMPLES,
)
