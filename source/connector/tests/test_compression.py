"""permessage-deflate: the bounded settings of deflate.py, negotiated with real clients, and a
compressed frame bomb closed with 1009 (INTERFACE.md section 8, Compression)."""

from __future__ import annotations

import asyncio
import json
import zlib

import pytest
import websockets
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory, PerMessageDeflate
from websockets.typing import ExtensionParameter, Subprotocol

from connector.deflate import WINDOW_BITS, BoundedDeflateFactory
from connector.tests.conftest import RunningConnector, start_connector
from connector.tests.harness import WAIT_S, ChargerLink, MqttProbe, send

OCPP201 = [Subprotocol("ocpp2.0.1")]
BARE = ClientPerMessageDeflateFactory(client_max_window_bits=None)  # `permessage-deflate`, no parameters

Params = list[ExtensionParameter]


@pytest.mark.parametrize(
    ("offered", "answered"),
    [
        # No client_max_window_bits: the charger cannot be given a small window, so it keeps no context.
        (
            [],
            [
                ("server_no_context_takeover", None),
                ("client_no_context_takeover", None),
                ("server_max_window_bits", "11"),
            ],
        ),
        (
            [("client_max_window_bits", None)],
            [("server_no_context_takeover", None), ("server_max_window_bits", "11"), ("client_max_window_bits", "11")],
        ),
        (
            [("client_max_window_bits", "15"), ("server_max_window_bits", "15")],
            [("server_no_context_takeover", None), ("server_max_window_bits", "11"), ("client_max_window_bits", "11")],
        ),
        (  # smaller windows than ours are kept
            [("client_max_window_bits", "9"), ("server_max_window_bits", "10")],
            [("server_no_context_takeover", None), ("server_max_window_bits", "10"), ("client_max_window_bits", "9")],
        ),
        (  # a charger that asks to keep no context of its own is answered so
            [("client_no_context_takeover", None), ("client_max_window_bits", None)],
            [
                ("server_no_context_takeover", None),
                ("client_no_context_takeover", None),
                ("server_max_window_bits", "11"),
                ("client_max_window_bits", "11"),
            ],
        ),
    ],
)
def test_every_offer_is_answered_within_the_bounds(offered: Params, answered: Params) -> None:
    """Each permessage-deflate offer is accepted with our compressor keeping no context and the
    charger's context either bounded to 2 KiB or not kept."""
    response, extension = BoundedDeflateFactory().process_request_params(offered, [])
    assert response == answered
    assert isinstance(extension, PerMessageDeflate)
    assert extension.local_no_context_takeover and not hasattr(extension, "encoder")  # nothing kept between answers
    keeps_context = not extension.remote_no_context_takeover
    assert not keeps_context or extension.remote_max_window_bits <= WINDOW_BITS


def extensions_answered(connection: websockets.ClientConnection) -> str | None:
    """The server's Sec-WebSocket-Extensions answer, None where it sent none."""
    assert connection.response is not None  # set once connect() returned
    return connection.response.headers.get("Sec-WebSocket-Extensions")


async def test_deflate_is_negotiated_when_offered(connector: RunningConnector) -> None:
    """A charger offering permessage-deflate (websockets' client does by default) gets it, and is served."""
    link = ChargerLink(connector.url, "CP_Z", subprotocols=["ocpp2.0.1", "ocpp1.6"])
    async with link as charger:
        answer = await send(charger, "heartbeat")
        connection = link.connection
        assert extensions_answered(connection) == (
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=11; client_max_window_bits=11"
        )
        assert [type(e) for e in connection.protocol.extensions] == [PerMessageDeflate]
        assert connection.subprotocol == "ocpp2.0.1"
    assert answer.current_time.endswith("Z")


async def heartbeats(connection: websockets.ClientConnection, count: int) -> list[int]:
    """Send `count` Heartbeat CALLs one at a time; the message types of the answers."""
    types = []
    for n in range(count):
        await connection.send(json.dumps([2, f"h{n}", "Heartbeat", {}]))
        async with asyncio.timeout(WAIT_S):
            types.append(json.loads(await connection.recv())[0])
    return types


async def test_a_bare_offer_is_served_without_context(connector: RunningConnector) -> None:
    """A charger offering permessage-deflate without parameters is asked to keep no context, and frames
    go both ways compressed."""
    url = f"{connector.url}/CP_BARE_Z"
    async with websockets.connect(url, subprotocols=OCPP201, compression=None, extensions=[BARE]) as connection:
        assert "client_no_context_takeover" in (extensions_answered(connection) or "")
        assert await heartbeats(connection, 3) == [3, 3, 3]


async def test_no_deflate_when_not_offered(connector: RunningConnector) -> None:
    """A charger that does not offer permessage-deflate gets no extension at all."""
    url = f"{connector.url}/CP_PLAIN"
    async with websockets.connect(url, subprotocols=OCPP201, compression=None) as connection:
        assert extensions_answered(connection) is None
        assert connection.protocol.extensions == []
        assert await heartbeats(connection, 1) == [3]


async def test_a_compressed_frame_bomb_closes_only_that_connection_with_1009(
    settings_env: dict[str, str], probe: MqttProbe
) -> None:
    """A frame of a few KB that inflates beyond OCPP_MAX_FRAME_SIZE closes its connection with 1009 and a
    WARNING, while another charger goes on being served."""
    running = await start_connector({**settings_env, "OCPP_MAX_FRAME_SIZE": "65536"}, probe)
    bomb = '[2,"b","Heartbeat",{"pad":"' + " " * 1_000_000 + '"}]'
    assert len(zlib.compress(bomb.encode(), wbits=-WINDOW_BITS)) < 20_000  # small on the wire
    try:
        async with (
            websockets.connect(f"{running.url}/CP_OK", subprotocols=OCPP201) as bystander,
            websockets.connect(f"{running.url}/CP_BOMB", subprotocols=OCPP201) as attacker,
        ):
            assert attacker.protocol.extensions  # the bomb really travels deflated
            await attacker.send(bomb)
            async with asyncio.timeout(WAIT_S):
                await attacker.wait_closed()
            assert attacker.close_code == 1009
            assert await heartbeats(bystander, 2) == [3, 3]
        log = await probe.wait_for(running.topic("logs"), lambda p: p["msg"].startswith("CP_BOMB: disconnected"))
        assert "close code 1009" in log["msg"] and log["level"] == 30
    finally:
        await running.stop()
