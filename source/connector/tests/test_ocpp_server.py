"""The DeviceDispatcher: handshakes, identities, many sessions, replacement."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from connector.ocpp_server import identity_from_path
from connector.tests.conftest import RunningConnector, map_datapoints, start_connector, values
from connector.tests.harness import WAIT_S, ChargerLink, MqttProbe, RawLink, send
from connector.tests.test_security import OCPP16, PASSWORDS, basic


@pytest.mark.parametrize(
    ("path", "identity"),
    [
        ("/CP_1", "CP_1"),
        ("/ocpp/CP_1", "CP_1"),
        ("/ocpp/CP%201", "CP 1"),
        ("/ocpp/CP_1/", "CP_1"),
        ("/CP_1?token=x", "CP_1"),
        ("/a__b", "a__b"),
        ("/", ""),
        ("/%FF", ""),
        ("/%E2%82%AC", "\u20ac"),
        ("//[x/CP_1", "CP_1"),
        ("//host:99999/CP_1", "CP_1"),
    ],
)
def test_identity_is_the_last_path_segment_percent_decoded(path: str, identity: str) -> None:
    """The charge point identity is the last URL path segment, percent-decoded."""
    assert identity_from_path(path) == identity


async def test_handshake_without_subprotocol_is_served_as_ocpp16(connector: RunningConnector) -> None:
    """A charger that sends no Sec-WebSocket-Protocol header is served as OCPP 1.6."""
    async with ChargerLink(connector.url, "CP_BARE", subprotocols=[]) as charger:
        answer = await send(charger, "heartbeat")
    assert answer.current_time.endswith("Z")


async def test_handshake_offering_only_other_protocols_is_refused(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """A handshake offering only protocols the connector does not speak (OCPP 2.0, withdrawn) is refused
    with HTTP 400 and a log line naming what was offered."""
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(f"{connector.url}/CP_20", subprotocols=["ocpp2.0", "ocpp1.5"])  # type: ignore[list-item]
    assert refused.value.response.status_code == 400
    log = await probe.wait_for(connector.topic("logs"), lambda p: "CP_20" in p["msg"])
    assert "ocpp2.0, ocpp1.5" in log["msg"] and log["level"] == 30


async def test_path_without_identity_is_refused(connector: RunningConnector) -> None:
    """A connection to `/` names no charge point and is refused with 404 before the WebSocket opens."""
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(f"{connector.url}/", subprotocols=["ocpp1.6"])  # type: ignore[list-item]
    assert refused.value.response.status_code == 404


async def test_percent_encoded_identity_is_used_decoded(connector: RunningConnector, probe: MqttProbe) -> None:
    """`/ocpp/CP%201` is the charge point `CP 1` in datapoint keys."""
    async with ChargerLink(f"{connector.url}/ocpp", "CP%201"):
        available = await probe.wait_for(
            connector.topic("available_datapoints"), lambda p: "CP 1__connected" in p["sensor"]
        )
    assert available["sensor"]["CP 1__connected"] is True


async def test_reconnect_with_same_identity_replaces_the_old_session(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """A second connection as CP_1 closes the first; the new one is served and stays `connected`."""
    topic = connector.topic("v/connected")
    await map_datapoints(probe, connector, {"CP_1__connected": topic}, {})
    first = ChargerLink(connector.url, "CP_1")
    await first.__aenter__()
    await probe.wait_value(topic, True)
    async with ChargerLink(connector.url, "CP_1") as second:
        async with asyncio.timeout(10):
            await first.connection.wait_closed()
        assert first.connection.close_code == 1000
        assert (await send(second, "heartbeat")).current_time
        assert len(connector.service.dispatcher.sessions) == 1
    await probe.wait_value(topic, False)
    await first.__aexit__()
    # The old session's end published nothing: no `false` between the two `true`s.
    assert values(probe, topic) == [True, True, False]


async def test_many_charge_points_at_once(connector: RunningConnector, probe: MqttProbe) -> None:
    """Fifty charge points booting concurrently are each answered and each get their own datapoints."""
    identities = [f"CP_{i:03d}" for i in range(50)]

    async def boot(identity: str) -> str:
        async with ChargerLink(connector.url, identity) as charger:
            answer = await send(charger, "boot_notification_minimal", chargePointModel=identity)
            return str(answer.status)

    results = await asyncio.gather(*(boot(i) for i in identities))
    assert results == ["Accepted"] * 50
    sensors = connector.service.registry.sensors
    assert all(sensors[f"{i}__BootNotification__charge_point_model"].value == i for i in identities)


async def test_bad_frames_from_one_charger_do_not_disturb_another(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """A charger sending garbage gets its refusals while another charger's data flows on."""
    topic = connector.topic("v/energy")
    await map_datapoints(probe, connector, {"GOOD__MeterValues__1__Energy.Active.Import.Register__Wh": topic}, {})
    async with RawLink(connector.url, "BAD") as bad, ChargerLink(connector.url, "GOOD") as good:
        await bad.connection.send("not json at all")
        assert (await bad.exchange('[2,"1","NoSuchAction",{}]'))[2] == "NotImplemented"
        await send(good, "meter_values_defaults")
        assert (await probe.wait_for(topic))["value"] == 1240000


@pytest.mark.parametrize(
    ("segment", "shown"),
    [
        ("CP%0AFORGED", "CP\\x0aFORGED"),
        ("CP%1B%5B2J", "CP\\x1b[2J"),
        ("CP%7F", "CP\\x7f"),
        ("CP%C2%85", "CP\\x85"),
        ("CP%E2%80%A8", "CP\\u2028"),
        ("CP%E2%80%AE1", "CP\\u202e1"),
    ],
    ids=["newline", "escape-sequence", "DEL", "C1-NEL", "line-separator", "right-to-left-override"],
)
async def test_identity_with_control_characters_is_refused_with_400(
    connector: RunningConnector, probe: MqttProbe, segment: str, shown: str
) -> None:
    """An identity that decodes to a control character gets HTTP 400 before the WebSocket opens, logged escaped."""
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(f"{connector.url}/{segment}", subprotocols=OCPP16)
    log = await probe.wait_for(connector.topic("logs"), lambda p: "control characters" in p["msg"])
    assert refused.value.response.status_code == 400
    assert log["msg"].startswith(f"{shown}: refused with HTTP 400")


async def test_two_authorization_headers_get_401_not_500(settings_env: dict[str, str], probe: MqttProbe) -> None:
    """Two Authorization headers are refused with 401 and a WARNING; no HTTP 500, no ERROR or traceback."""
    running = await start_connector({**settings_env, "OCPP_BASIC_AUTH": json.dumps(PASSWORDS)}, probe)
    try:
        twice = [("Authorization", basic("CP_1", "s3cret-Zq7")), ("Authorization", basic("CP_1", "s3cret-Zq7"))]
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(f"{running.url}/CP_1", subprotocols=OCPP16, additional_headers=twice)
        log = await probe.wait_for(running.topic("logs"), lambda p: p["msg"].startswith("CP_1: refused"))
        await still_served(running, "CP_1", {"Authorization": basic("CP_1", "s3cret-Zq7")})
    finally:
        await running.stop()
    assert refused.value.response.status_code == 401
    assert log["msg"] == "CP_1: refused: more than one Authorization header" and log["level"] == 30
    assert not [p for p in probe.on(running.topic("logs")) if p["level"] >= 40]


async def still_served(running: RunningConnector, cp: str, headers: dict[str, str]) -> None:
    async with websockets.connect(f"{running.url}/{cp}", subprotocols=OCPP16, additional_headers=headers) as ws:
        await ws.send('[2,"h","Heartbeat",{}]')
        async with asyncio.timeout(WAIT_S):
            assert json.loads(await ws.recv())[:2] == [3, "h"]


async def refused_status(url: str, subprotocols: list[Subprotocol], headers: dict[str, str]) -> int:
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(url, subprotocols=subprotocols, additional_headers=headers, open_timeout=WAIT_S)
    return refused.value.response.status_code


async def test_a_flood_of_refused_handshakes_gives_one_line_per_reason(
    settings_env: dict[str, str], probe: MqttProbe
) -> None:
    """300 refused handshakes of five kinds (401, 403, 404, 400, protocol) write one WARNING per kind, not 300."""
    env = {**settings_env, "OCPP_BASIC_AUTH": json.dumps(PASSWORDS), "OCPP_ALLOWED_CHARGE_POINTS": "CP_1,CP_2"}
    running = await start_connector(env, probe)
    right = {"Authorization": basic("CP_1", "s3cret-Zq7")}
    kinds = [
        (f"{running.url}/CP_1", OCPP16, {"Authorization": basic("CP_1", "wrong")}, 401),
        (f"{running.url}/CP_9", OCPP16, right, 403),
        (f"{running.url}/", OCPP16, right, 404),
        (f"{running.url}/CP%0A1", OCPP16, right, 400),
        (f"{running.url}/CP_1", [Subprotocol("ocpp2.0")], right, 400),
    ]
    since = len(probe.messages)
    try:
        for _ in range(60):
            statuses = await asyncio.gather(
                *(refused_status(url, offered, headers) for url, offered, headers, _ in kinds)
            )
            assert statuses == [status for *_, status in kinds]
        # A line logged after all the refusals: once it is on N/logs, so is every refusal line.
        await still_served(running, "CP_2", {"Authorization": basic("CP_2", "other")})
        await probe.wait_for(running.topic("logs"), lambda p: p["msg"].startswith("CP_2: disconnected"), since=since)
    finally:
        await running.stop()
    warnings = [p["msg"] for _, p, _ in probe.messages[since:] if isinstance(p, dict) and p.get("level") == 30]
    assert len(warnings) <= 2 * len(kinds), warnings  # one per kind, two if the flood spanned the 10 s interval
    for marker in (
        "refused: wrong identity",
        "OCPP_ALLOWED_CHARGE_POINTS",
        "no charge point identity",
        "HTTP 400",
        "offering only ocpp2.0;",
    ):
        assert any(marker in line for line in warnings), marker


async def raw_handshake_status(port: int, path: str) -> bytes:
    """The status line the server answers a hand-written WebSocket opening handshake for `path` with."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: ocpp1.6\r\n\r\n".encode()
    )
    try:
        async with asyncio.timeout(WAIT_S):
            return (await reader.readline()).strip()
    finally:
        writer.close()


async def test_a_path_that_is_no_url_is_served_by_its_last_segment(connector: RunningConnector) -> None:
    """`//[x/CP_1` (a host to a URL parser, and an invalid one) is a path: CP_1 is served, no HTTP 500."""
    port = connector.service.dispatcher.port
    assert port is not None
    assert await raw_handshake_status(port, "//[x/CP_1") == b"HTTP/1.1 101 Switching Protocols"


async def test_a_served_connection_keeps_no_handshake_headers(connector: RunningConnector) -> None:
    """Once a session runs, websockets' copies of the handshake's headers are emptied (memory), the identity is kept."""
    async with ChargerLink(connector.url, "CP_LEAN") as charger:
        await send(charger, "heartbeat")  # served after the headers were dropped
        session = connector.service.dispatcher.sessions["CP_LEAN"]
        connection = session._connection
        assert connection.request is not None and connection.response is not None
        assert (list(connection.request.headers.raw_items()), list(connection.response.headers.raw_items())) == ([], [])
        assert session.id == "CP_LEAN"
