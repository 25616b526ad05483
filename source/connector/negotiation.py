"""Which OCPP version a charger is served in: the WebSocket subprotocol negotiation.

Pure: no I/O, so the rule is tested on plain lists. OCPP-J names each version by a
subprotocol (`ocpp1.6`, `ocpp2.0.1`, `ocpp2.1`); a charger lists the ones it speaks in
`Sec-WebSocket-Protocol`, in its order of preference (RFC 6455 11.3.4), and the server
answers with one of them. OCPP_PROTOCOLS says which the connector speaks.
"""

from __future__ import annotations

from collections.abc import Sequence

OCPP16 = "ocpp1.6"

# Subprotocol -> the version's name (the `<cp>__ocpp_version` value, handling.OcppVersion.name).
VERSION_NAMES = {"ocpp2.1": "2.1", "ocpp2.0.1": "2.0.1", OCPP16: "1.6"}
SUBPROTOCOLS = tuple(VERSION_NAMES)  # every protocol the connector can speak, newest first


def negotiate(offered: Sequence[str], spoken: Sequence[str]) -> str | None:
    """The subprotocol to serve a charger in, or None to refuse its handshake.

    The charger's order wins, not ours: it lists what it prefers first, and a charger that
    prefers 1.6 (say, because its 2.0.1 firmware is young) should get 1.6. No header at
    all means OCPP 1.6: many 1.6 chargers send none.
    """
    if not offered:
        return OCPP16 if OCPP16 in spoken else None
    return next((protocol for protocol in offered if protocol in spoken), None)


def version_name(subprotocol: str | None) -> str:
    """`ocpp2.0.1` -> `2.0.1`; a connection without a subprotocol (no header) is 1.6."""
    return VERSION_NAMES[subprotocol or OCPP16]
