"""The OCPP versions the connector serves, by WebSocket subprotocol.

Each version is a package (ocpp16/, ocpp201/, ocpp21/) exposing `VERSION: handling.OcppVersion`; serving
another is adding its VERSION to `SERVED`.
"""

from __future__ import annotations

from connector import ocpp16, ocpp21, ocpp201
from connector.handling import OcppVersion

SERVED: tuple[OcppVersion, ...] = (ocpp21.VERSION, ocpp201.VERSION, ocpp16.VERSION)

VERSIONS: dict[str, OcppVersion] = {version.subprotocol: version for version in SERVED}
BY_NAME: dict[str, OcppVersion] = {version.name: version for version in SERVED}  # "2.0.1" -> its tables

DEFAULT_SUBPROTOCOL = "ocpp1.6"  # a handshake without Sec-WebSocket-Protocol (real chargers do this)


def by_subprotocol(name: str) -> OcppVersion:
    """The version a negotiated subprotocol names; KeyError for one the connector does not serve."""
    return VERSIONS[name]
