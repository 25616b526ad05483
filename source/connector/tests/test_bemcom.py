"""The BEMCom MQTT side against a real mosquitto: formats, retention, map handling, reconnects."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connector.tests.conftest import RunningConnector, map_datapoints, start_connector
from connector.tests.harness import ChargerLink, Mosquitto, MqttProbe, send


async def test_heartbeat_format_and_interval(settings_env: dict[str, str], probe: MqttProbe) -> None:
    """`N/heartbeat` carries this and next timestamp, HEARTBEAT_INTERVAL apart, and repeats."""
    running = await start_connector({**settings_env, "HEARTBEAT_INTERVAL": "0.2"}, probe)
    try:
        topic = running.topic("heartbeat")
        first = await probe.wait_for(topic)
        second = await probe.wait_for(
            topic, lambda p: p["this_heartbeats_timestamp"] > first["this_heartbeats_timestamp"]
        )
    finally:
        await running.stop()
    assert set(first) == {"this_heartbeats_timestamp", "next_heartbeats_timestamp"}
    assert first["next_heartbeats_timestamp"] - first["this_heartbeats_timestamp"] == 200
    assert second["this_heartbeats_timestamp"] > first["this_heartbeats_timestamp"]


async def test_log_messages_have_the_bemcom_shape(connector: RunningConnector, probe: MqttProbe) -> None:
    """`N/logs` carries timestamp, msg, emitter and the numeric level of INFO and above."""
    async with ChargerLink(connector.url, "CP_LOG"):
        log = await probe.wait_for(connector.topic("logs"), lambda p: p["msg"].startswith("CP_LOG: connected"))
    assert set(log) == {"timestamp", "msg", "emitter", "level"}
    assert log["emitter"] == "connector.ocpp_server" and log["level"] == 20
    assert isinstance(log["timestamp"], int)
    assert all(p["level"] >= 20 for p in probe.on(connector.topic("logs")))


async def test_values_and_available_datapoints_are_retained(
    connector: RunningConnector, probe: MqttProbe, broker: Mosquitto
) -> None:
    """A subscriber arriving later still gets available_datapoints and the latest mapped value."""
    topic = connector.topic("v/model")
    await map_datapoints(probe, connector, {"CP_R__BootNotification__charge_point_model": topic}, {})
    async with ChargerLink(connector.url, "CP_R") as charger:
        await send(charger, "boot_notification_minimal", chargePointModel="first")
        await send(charger, "boot_notification_minimal", chargePointModel="second")
        await probe.wait_value(topic, "second")
        await probe.wait_for(connector.topic("available_datapoints"), lambda p: "CP_R__connected" in p["sensor"])
    late = MqttProbe(broker.port)
    try:
        await late.subscribe(topic)
        await late.subscribe(connector.topic("available_datapoints"))
        value = await late.wait_for(topic)
        await late.wait_for(connector.topic("available_datapoints"))
    finally:
        late.close()
    assert value["value"] == "second"
    assert all(retained for _, _, retained in late.messages)


# `{N}` stands for the connector's name.
BAD_MAPS = {
    "not-json": b"not json",
    "list": b'["a"]',
    "sensor-list": b'{"sensor": ["x"], "actuator": {}}',
    "topic-not-string": b'{"sensor": {"k": 5}, "actuator": {}}',
    "empty-key": b'{"sensor": {}, "actuator": {"t": ""}}',
    "sensor-wildcard": b'{"sensor": {"CP_M__connected": "x/+/y"}, "actuator": {}}',
    "actuator-wildcard": b'{"sensor": {}, "actuator": {"a/#": "CP_M__execute_trigger_message"}}',
    "nested-too-deep": b"[" * 100_000,
    "nan": b'{"sensor": {"CP_M__Heartbeat": NaN}, "actuator": {}}',
    "empty-object": b"{}",
    "no-actuator-section": b'{"sensor": {"CP_M__Heartbeat": "x/y"}}',
    "sensor-on-the-map-topic": b'{"sensor": {"CP_M__Heartbeat": "{N}/datapoint_map"}, "actuator": {}}',
    "actuator-on-the-logs-topic": b'{"sensor": {}, "actuator": {"{N}/logs": "CP_M__execute_trigger_message"}}',
    "sensor-on-an-instance-topic": b'{"sensor": {"CP_M__Heartbeat": "{N}/instances/a/state"}, "actuator": {}}',
    "status-on-its-own-actuator-topic": (
        b'{"sensor": {"CP_M__execute_reset__status": "x/reset"}, "actuator": {"x/reset": "CP_M__execute_reset"}}'
    ),
}


@pytest.mark.parametrize("bad_map", BAD_MAPS.values(), ids=BAD_MAPS.keys())
async def test_malformed_map_is_logged_and_the_previous_one_kept(
    connector: RunningConnector, probe: MqttProbe, bad_map: bytes
) -> None:
    """A malformed datapoint_map is logged as an ERROR and ignored; values keep their old topics."""
    topic = connector.topic("v/heartbeat")
    await map_datapoints(probe, connector, {"CP_M__Heartbeat": topic}, {})
    probe.publish(connector.topic("datapoint_map"), bad_map.replace(b"{N}", connector.name.encode()))
    log = await probe.wait_for(
        connector.topic("logs"), lambda p: p["msg"].startswith("ignored malformed datapoint_map")
    )
    async with ChargerLink(connector.url, "CP_M") as charger:
        await send(charger, "heartbeat")
        await probe.wait_for(topic)
    assert log["level"] == 40


async def test_a_map_under_the_connectors_name_but_not_its_own_topics_is_applied(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """Topics under `N/` that are not the connector's own (BEMCom's `N/messages/12/value`) route values."""
    topic = connector.topic("messages/12/value")
    await map_datapoints(probe, connector, {"CP_N__Heartbeat": topic}, {})
    async with ChargerLink(connector.url, "CP_N") as charger:
        await send(charger, "heartbeat")
        assert isinstance((await probe.wait_for(topic))["value"], int)


async def test_new_keys_arriving_together_are_coalesced(connector: RunningConnector, probe: MqttProbe) -> None:
    """Twenty chargers booting at once produce far fewer available_datapoints messages than new keys."""

    async def boot(identity: str) -> None:
        async with ChargerLink(connector.url, identity) as charger:
            await send(charger, "boot_notification")

    await asyncio.gather(*(boot(f"CO_{i}") for i in range(20)))
    final = await probe.wait_for(
        connector.topic("available_datapoints"),
        lambda p: all(f"CO_{i}__BootNotification__meter_type" in p["sensor"] for i in range(20)),
    )
    assert len(final["sensor"]) == 20 * 11  # connected, ocpp_version and 9 BootNotification fields each
    # 200 new keys (plus connected flags) arrived within moments: far fewer messages than keys.
    assert len(probe.on(connector.topic("available_datapoints"))) < 100


def meter_exchanges(probe: MqttProbe, raw_topic: str) -> tuple[list[Any], list[str]]:
    """From the raw topic: the MeterValues CALLs received, and the ids of those answered, in order."""
    frames = [
        (p["payload"]["direction"], json.loads(p["payload"]["raw_message"]))
        for t, p, _ in probe.messages
        if t == raw_topic
    ]
    requests = [f for d, f in frames if d == "in" and f[0] == 2 and f[2] == "MeterValues"]
    ids = {f[1] for f in requests}
    return requests, [f[1] for d, f in frames if d == "out" and f[0] == 3 and f[1] in ids]


def broker_in(directory: Path, extra_config: str = "") -> Iterator[Mosquitto]:
    """A broker of the test's own, which it may stop and restart on the same port."""
    directory.mkdir()
    server = Mosquitto(directory, extra_config=extra_config)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    yield from broker_in(tmp_path / "broker")


async def test_subscriptions_survive_a_broker_restart(
    settings_env: dict[str, str], own_broker: Mosquitto, connector_name: str
) -> None:
    """After mosquitto restarts, the connector reconnects, re-subscribes its actuators and republishes."""
    env = {**settings_env, "MQTT_BROKER_PORT": str(own_broker.port)}
    probe = MqttProbe(own_broker.port)
    await probe.subscribe(f"{connector_name}/#")
    running = await start_connector(env, probe)
    try:
        async with ChargerLink(running.url, "CP_1") as charger:
            command = running.topic("cmd/trigger")
            await map_datapoints(probe, running, {}, {command: "CP_1__execute_trigger_message"})
            own_broker.stop()
            since = len(probe.messages)
            own_broker.start()
            # Logged after the re-subscription, on the same connection: once seen, the
            # connector listens again; the listing is republished too (a broker without
            # persistence has forgotten it).
            await probe.wait_for(
                running.topic("logs"), lambda p: p["msg"].startswith("connected to MQTT broker"), since=since, within=20
            )
            await probe.wait_for(running.topic("available_datapoints"), since=since, within=20)
            probe.publish(command, {"value": 3, "timestamp": 0})
            assert await charger.next_call() == ("TriggerMessage", {"requested_message": "Heartbeat"})
    finally:
        await running.stop()
        probe.close()


async def test_log_records_from_other_threads_reach_the_logs_topic(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """A record logged on another thread (paho's, say) is handed to the loop and published from there."""
    import logging
    import threading

    outbox = connector.service.mqtt.outbox
    put_threads: list[int] = []
    original_put = outbox.put

    def recording_put(*args: object, **kwargs: object) -> None:
        put_threads.append(threading.get_ident())
        original_put(*args, **kwargs)  # type: ignore[arg-type]

    outbox.put = recording_put  # type: ignore[method-assign]
    await asyncio.to_thread(logging.getLogger("connector.elsewhere").warning, "from another thread")
    log = await probe.wait_for(connector.topic("logs"), lambda p: p["msg"] == "from another thread")
    assert log["emitter"] == "connector.elsewhere" and log["level"] == 30
    assert put_threads and set(put_threads) == {threading.get_ident()}


def reading(value: int) -> list[dict[str, object]]:
    """One meterValue element with an energy reading, `value` seconds into the day."""
    at = f"2026-11-21T10:{value // 60:02d}:{value % 60:02d}Z"
    return [{"timestamp": at, "sampledValue": [{"value": str(value)}]}]


@pytest.fixture
def persistent_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker that keeps sessions and retained messages across its own restarts."""
    import getpass

    store = tmp_path / "store"
    store.mkdir()
    # `user`: started as root, mosquitto would drop to its own user and lose access to tmp_path.
    config = f"user {getpass.getuser()}\npersistence true\npersistence_location {store}/\nmax_queued_messages 0\n"
    yield from broker_in(tmp_path / "pbroker", config)


async def test_values_produced_during_a_broker_outage_arrive_oldest_first(
    settings_env: dict[str, str], persistent_broker: Mosquitto, connector_name: str
) -> None:
    """While mosquitto is down chargers are answered; afterwards every value and raw frame arrives in order."""
    env = {**settings_env, "MQTT_BROKER_PORT": str(persistent_broker.port), "SEND_RAW_MESSAGE_TO_DB": "TRUE"}
    probe = MqttProbe(persistent_broker.port, client_id=f"{connector_name}-probe")  # a session that survives
    # QoS 2, so raw frames (published at QoS 2) reach the probe exactly once end to end; values
    # are published at QoS 1 and so reach it at least once whatever the probe asks.
    await probe.subscribe(f"{connector_name}/#", qos=2)
    running = await start_connector(env, probe)
    topic = running.topic("v/energy")
    await map_datapoints(probe, running, {"CP_O__MeterValues__1__Energy.Active.Import.Register__Wh": topic}, {})
    try:
        async with ChargerLink(running.url, "CP_O") as charger:
            await send(charger, "meter_values_defaults", meterValue=reading(0))
            await probe.wait_value(topic, 0)
            for lane in running.service.mqtt.lanes:  # values and raw frames: the broker has acknowledged all so far
                assert await lane.flush(within=10)
            persistent_broker.stop()
            await send(charger, "status_available")  # new keys while the broker is away
            produced = list(range(1, 201))
            for value in produced:  # answered although the broker is away
                await send(charger, "meter_values_defaults", meterValue=reading(value))
            assert running.service.mqtt.outbox.pending >= len(produced)
            since = len(probe.messages)
            persistent_broker.start()
            await probe.wait_value(topic, produced[-1], within=30)
            await probe.wait_for(
                running.topic("available_datapoints"), lambda p: "CP_O__StatusNotification__1__status" in p["sensor"]
            )
            raw_topic = running.topic("raw_message_to_db")
            await probe.wait_until(lambda: len(meter_exchanges(probe, raw_topic)[1]) == len(produced) + 1)
    finally:
        await running.stop()
        probe.close()
    # After the reconnect: N/state online first, then the backlog (its log lines included) in order.
    # Not the listing nor raw frames (their own connections: MQTT orders within one only),
    # nor the last will (mosquitto publishes it as it stops; the probe's session kept it), nor
    # a value the probe had before the stop: a delivery whose PUBACK the stop cut off comes
    # again from the restarted broker, before anything of ours (value 0 did, in some runs).
    own_connections = (running.topic("available_datapoints"), running.topic("raw_message_to_db"))
    had = [p for t, p, _ in probe.messages[:since] if t == topic]
    live = [
        (t, p)
        for t, p, retained in probe.messages[since:]
        if not retained and p != {"state": "offline"} and t not in own_connections and not (t == topic and p in had)
    ]
    assert live[0] == (running.topic("state"), {"state": "online"}), live[:3]
    logs = [p["msg"] for t, p in live if t == running.topic("logs")]
    lost = next(i for i, m in enumerate(logs) if m.startswith("MQTT connection lost"))
    assert lost < next(i for i, m in enumerate(logs) if m.startswith("connected to MQTT broker"))
    # Live deliveries only: re-subscribing after the restart also brings the retained value again.
    received = [p["value"] for t, p, retained in probe.messages if t == topic and not retained]
    # QoS 1 is at least once: a delivery whose acknowledgement was cut off by the stop is
    # repeated right where it was. Collapsed, nothing is missing and the order holds.
    collapsed = [v for i, v in enumerate(received) if i == 0 or v != received[i - 1]]
    assert collapsed == [0, *produced]
    # Raw frames (QoS 2: exactly once): every MeterValues.req in order, and its answer.
    requests, answered = meter_exchanges(probe, raw_topic)
    assert [f[3]["meterValue"][0]["sampledValue"][0]["value"] for f in requests] == [str(v) for v in [0, *produced]]
    assert answered == [f[1] for f in requests]
    late = MqttProbe(persistent_broker.port)
    await late.subscribe(topic)
    assert (await late.wait_for(topic))["value"] == produced[-1]  # the retained value is the newest
    late.close()


RETAINED_IGNORED = "ignored a retained message on actuator topic"


async def test_a_retained_command_is_never_sent_and_a_live_one_after_it_is(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """A retained command waiting when the map is applied is logged at INFO and not sent; the live one after it is."""
    topic = connector.topic("cmd/reset")
    async with ChargerLink(connector.url, "CP_RT") as charger:
        await probe.wait_for(connector.topic("logs"), lambda p: p["msg"].startswith("CP_RT: connected"))
        probe.publish(topic, {"value": "Hard", "timestamp": 0}, retain=True)
        await map_datapoints(probe, connector, {}, {topic: "CP_RT__execute_reset"})
        log = await probe.wait_for(connector.topic("logs"), lambda p: p["msg"].startswith(RETAINED_IGNORED))
        probe.publish(topic, {"value": "Soft", "timestamp": 0})
        first_call = await charger.next_call()
    probe.publish(topic, b"", retain=True)
    assert first_call == ("Reset", {"type": "Soft"})
    assert log["level"] == 20 and topic in log["msg"]


async def test_an_empty_actuator_message_is_ignored_quietly(connector: RunningConnector, probe: MqttProbe) -> None:
    """An empty payload on an actuator topic (a retained message deleted) gets no status and no warning."""
    topic, status = connector.topic("cmd/trigger"), connector.topic("status/trigger")
    async with ChargerLink(connector.url, "CP_E") as charger:
        await probe.wait_for(connector.topic("logs"), lambda p: p["msg"].startswith("CP_E: connected"))
        await map_datapoints(
            probe,
            connector,
            {"CP_E__execute_trigger_message__status": status},
            {topic: "CP_E__execute_trigger_message"},
        )
        since = len(probe.messages)
        probe.publish(topic, b"", retain=True)
        probe.publish(topic, {"value": 3, "timestamp": 0})
        first_call = await charger.next_call()
        await probe.wait_value(status, "Accepted")
    assert first_call == ("TriggerMessage", {"requested_message": "Heartbeat"})
    after = probe.messages[since:]
    assert [p["value"] for t, p, _ in after if t == status] == ["Accepted"]
    assert not [p for t, p, _ in after if t == connector.topic("logs") and p["level"] >= 30]


async def test_a_retained_command_is_not_replayed_after_a_broker_restart(
    settings_env: dict[str, str], persistent_broker: Mosquitto, connector_name: str
) -> None:
    """A retained command that failed (charger away) is not sent when the restarted broker delivers it again."""
    env = {**settings_env, "MQTT_BROKER_PORT": str(persistent_broker.port)}
    probe = MqttProbe(persistent_broker.port)
    await probe.subscribe(f"{connector_name}/#")
    running = await start_connector(env, probe)
    topic, status = running.topic("cmd/reset"), running.topic("status/reset")
    try:
        async with ChargerLink(running.url, "CP_RR"):
            await probe.wait_for(running.topic("logs"), lambda p: p["msg"].startswith("CP_RR: connected"))
        await map_datapoints(probe, running, {"CP_RR__execute_reset__status": status}, {topic: "CP_RR__execute_reset"})
        probe.publish(topic, {"value": "Hard", "timestamp": 0}, retain=True)  # live: refused, not connected
        await probe.wait_for(status, lambda p: str(p["value"]).startswith("Failed:"))
        async with ChargerLink(running.url, "CP_RR") as charger:
            persistent_broker.stop()
            since = len(probe.messages)
            persistent_broker.start()
            await probe.wait_for(running.topic("logs"), lambda p: p["msg"].startswith(RETAINED_IGNORED), since=since)
            await probe.wait_for(
                running.topic("logs"), lambda p: p["msg"].startswith("connected to MQTT broker"), since=since
            )
            probe.publish(topic, {"value": "Soft", "timestamp": 0})
            first_call = await charger.next_call()
        probe.publish(topic, b"", retain=True)
    finally:
        await running.stop()
        probe.close()
    assert first_call == ("Reset", {"type": "Soft"})


async def test_state_online_comes_first_and_connecting_before_connected(
    settings_env: dict[str, str], probe: MqttProbe
) -> None:
    """At start `N/state` online is the connector's first message, and "connecting" precedes "connected" on N/logs."""
    since = len(probe.messages)
    running = await start_connector(settings_env, probe)  # returns once "connected" arrived
    await running.stop()
    mine = [(t, p) for t, p, _ in probe.messages[since:] if t.startswith(f"{running.name}/")]
    logs = [p["msg"] for t, p in mine if t == running.topic("logs")]
    assert mine[0] == (running.topic("state"), {"state": "online"})
    connecting = next(i for i, m in enumerate(logs) if m.startswith("connecting to MQTT broker"))
    assert connecting < next(i for i, m in enumerate(logs) if m.startswith("connected to MQTT broker"))
