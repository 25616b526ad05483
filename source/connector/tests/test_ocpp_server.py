"""The DeviceDispatcher: handshakes, identities, many sessions, replacement."""

from __future__ import annotations

import asyncio

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from connector.ocpp_server import identity_from_path
from connector.tests.conftest import RunningConnector, map_datapoints, values
from connector.tests.harness import ChargerLink, MqttProbe, RawLink, send


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
    """A handshake offering only ocpp2.0.1 is refused with HTTP 400 and a log line naming the cause."""
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(f"{connector.url}/CP_201", subprotocols=["ocpp2.0.1"])  # type: ignore[list-item]
    assert refused.value.response.status_code == 400
    log = await probe.wait_for(connector.topic("logs"), lambda p: "CP_201" in p["msg"])
    assert "ocpp2.0.1" in log["msg"] and log["level"] == 30


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
