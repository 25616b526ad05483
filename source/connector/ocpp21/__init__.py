"""OCPP 2.1: the tables that serve a charging station speaking it; 2.0.1's entries where the
messages are the same (see handlers.py and actuators.py), the same rate-unit read, error words
and listing examples, and 2.1's SEND (type 6) and CALLRESULTERROR (type 5) frames."""

from __future__ import annotations

from dataclasses import replace

from connector import ocpp201
from connector.ocpp21.actuators import CENTRAL_ACTIONS, TRANSLATIONS
from connector.ocpp21.handlers import HANDLERS

# 2.0.1's version with what 2.1 changes: its tables, its actions, its two extra frame types.
VERSION = replace(
    ocpp201.VERSION,
    name="2.1",
    subprotocol="ocpp2.1",
    handlers=HANDLERS,
    actuators=TRANSLATIONS,
    central_actions=CENTRAL_ACTIONS,
    send_frames=True,
)
