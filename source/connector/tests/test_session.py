"""End to end: real OCPP 1.6 charge points over WebSockets, datapoints on a real broker."""

from __future__ import annotations

import json
from datetime import datetime

from connector import __version__
from connector.tests.conftest import RunningConnector, map_datapoints, values
from connector.tests.harness import METER_VALUES_8, ChargerLink, MqttProbe, RawLink, frame, send


async def test_boot_notification_is_accepted_with_the_configured_interval(connector: RunningConnector) -> None:
    """BootNotification is answered Accepted, with our heartbeat interval and a UTC `Z` time."""
    async with ChargerLink(connector.url, "CP_1") as charger:
        answer = await send(charger, "boot_notification")
    assert answer.status == "Accepted"
    assert answer.interval == 300
    assert answer.current_time.endswith("Z")
    datetime.fromisoformat(answer.current_time)


async def test_boot_fields_reach_mapped_topics_even_when_mapped_later(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """Each BootNotification field becomes a snake_case sensor; mapping it later still publishes it."""
    async with ChargerLink(connector.url, "CP_1") as charger:
        await send(charger, "boot_notification")
        await map_datapoints(
            probe,
            connector,
            {
                "CP_1__BootNotification__charge_point_vendor": connector.topic("v/vendor"),
                "CP_1__BootNotification__meter_type": connector.topic("v/meter"),
            },
            {},
        )
        assert (await probe.wait_for(connector.topic("v/vendor")))["value"] == "Alfen BV"
        assert (await probe.wait_for(connector.topic("v/meter")))["value"] == "Eastron SDM630"


async def test_available_datapoints_lists_sensors_and_actuators(connector: RunningConnector, probe: MqttProbe) -> None:
    """Connect and boot: available_datapoints (retained) lists connected, boot fields and both actuators."""
    async with ChargerLink(connector.url, "CP_7") as charger:
        await send(charger, "boot_notification_minimal")
        available = await probe.wait_for(
            connector.topic("available_datapoints"),
            lambda p: "CP_7__BootNotification__charge_point_model" in p["sensor"],
        )
    assert available["sensor"]["CP_7__connected"] is True
    assert available["sensor"]["CP_7__BootNotification__charge_point_vendor"] == "ABB"
    assert set(available["actuator"]) >= {"CP_7__execute_trigger_message", "CP_7__execute_send_charging_profile__0"}


async def test_meter_values_publish_every_sample_with_its_measurement_time(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """All 8 samples of a MeterValues.req reach their topics as numbers, stamped with the meter time."""
    keys = METER_VALUES_8
    await map_datapoints(probe, connector, {k: connector.topic(f"v/{i}") for i, k in enumerate(keys)}, {})
    async with ChargerLink(connector.url, "CP_1") as charger:
        await send(charger, "meter_values_8")
        for i, expected in enumerate(keys.values()):
            message = await probe.wait_for(connector.topic(f"v/{i}"))
            assert message == {"value": expected, "timestamp": 1795256100000}


async def test_meter_value_backlog_is_published_oldest_first(connector: RunningConnector, probe: MqttProbe) -> None:
    """Several meterValue elements in one request: each published, in time order, with its own time."""
    topic = connector.topic("v/energy")
    await map_datapoints(probe, connector, {"CP_1__MeterValues__1__Energy.Active.Import.Register__Wh": topic}, {})
    async with ChargerLink(connector.url, "CP_1") as charger:
        await send(charger, "meter_values_backlog")
        await probe.wait_value(topic, 1002)
    assert [(p["value"], p["timestamp"]) for p in probe.on(topic)] == [
        (1000, 1795251600000),
        (1001, 1795251660000),
        (1002, 1795251720000),
    ]


async def test_status_notification_fields(connector: RunningConnector, probe: MqttProbe) -> None:
    """StatusNotification publishes status, error_code and the optional vendor fields per connector."""
    prefix = "CP_1__StatusNotification__2__"
    fields = ["status", "error_code", "info", "vendor_id", "vendor_error_code"]
    await map_datapoints(probe, connector, {prefix + f: connector.topic(f"v/{f}") for f in fields}, {})
    async with ChargerLink(connector.url, "CP_1") as charger:
        await send(charger, "status_faulted_vendor")
        got = {f: (await probe.wait_for(connector.topic(f"v/{f}")))["value"] for f in fields}
    assert got == {
        "status": "Faulted",
        "error_code": "OtherError",
        "info": "RCD tripped",
        "vendor_id": "com.alfen",
        "vendor_error_code": "E0042",
    }


async def test_transaction_start_and_stop(connector: RunningConnector, probe: MqttProbe) -> None:
    """Start and stop publish the Transaction datapoints, energy = meter_stop - meter_start."""
    prefix = "CP_1__Transaction__1__"
    fields = ["active", "transaction_id", "id_tag", "meter_start", "meter_stop", "stop_reason", "energy"]
    await map_datapoints(probe, connector, {prefix + f: connector.topic(f"v/{f}") for f in fields}, {})
    async with ChargerLink(connector.url, "CP_1") as charger:
        started = await send(charger, "start_transaction")
        assert started.id_tag_info["status"] == "Accepted"
        await probe.wait_value(connector.topic("v/active"), True)
        stopped = await send(charger, "stop_transaction", transactionId=started.transaction_id)
        assert stopped.id_tag_info["status"] == "Accepted"
        await probe.wait_value(connector.topic("v/active"), False)
        await probe.wait_value(connector.topic("v/energy"), 11500)
    assert values(probe, connector.topic("v/transaction_id")) == [started.transaction_id, started.transaction_id]
    assert values(probe, connector.topic("v/id_tag")) == ["04A2B3C4D5E6F7"]
    assert values(probe, connector.topic("v/meter_start")) == [1234000]
    assert values(probe, connector.topic("v/meter_stop")) == [None, 1245500]
    assert values(probe, connector.topic("v/stop_reason")) == [None, "EVDisconnected"]


async def test_stop_transaction_data_counts_as_meter_values(connector: RunningConnector, probe: MqttProbe) -> None:
    """Sampled values in StopTransaction.transactionData are published under the transaction's connector."""
    topic = connector.topic("v/energy")
    await map_datapoints(probe, connector, {"CP_1__MeterValues__1__Energy.Active.Import.Register__Wh": topic}, {})
    async with ChargerLink(connector.url, "CP_1") as charger:
        started = await send(charger, "start_transaction")
        await send(charger, "stop_transaction", transactionId=started.transaction_id)
        assert (await probe.wait_value(topic, 1245500))["timestamp"] == 1795258800000


async def test_transaction_ids_are_unique_per_charge_point(connector: RunningConnector) -> None:
    """Two connectors starting at once get different transaction ids."""
    async with ChargerLink(connector.url, "CP_1") as charger:
        first = await send(charger, "start_transaction", connectorId=1)
        second = await send(charger, "start_transaction", connectorId=2)
    assert first.transaction_id != second.transaction_id


async def test_every_charger_initiated_message_gets_a_schema_valid_answer(connector: RunningConnector) -> None:
    """Each charger-initiated action of 1.6 and the security extension is answered (the client validates)."""
    names = [
        "boot_notification",
        "heartbeat",
        "status_available",
        "meter_values_8",
        "authorize",
        "data_transfer",
        "firmware_status",
        "diagnostics_status",
        "security_event",
        "sign_certificate",
        "log_status",
        "signed_firmware_status",
    ]
    async with ChargerLink(connector.url, "CP_1") as charger:
        for name in names:
            await send(charger, name)  # the library client raises on a CALLERROR or an invalid answer
        started = await send(charger, "start_transaction")
        await send(charger, "stop_transaction", transactionId=started.transaction_id)
        await send(charger, "stop_transaction_no_id_tag", transactionId=started.transaction_id)


async def test_raw_frames_reach_raw_message_to_db(settings_env: dict[str, str], probe: MqttProbe) -> None:
    """With SEND_RAW_MESSAGE_TO_DB=TRUE both directions are published exactly as on the wire."""
    from connector.tests.conftest import start_connector

    running = await start_connector({**settings_env, "SEND_RAW_MESSAGE_TO_DB": "TRUE"}, probe)
    try:
        async with RawLink(running.url, "CP_RAW") as link:
            sent = '[2, "42", "Heartbeat", {}]'
            answer = await link.exchange(sent)
        topic = running.topic("raw_message_to_db")
        incoming = await probe.wait_for(topic, lambda p: p["payload"]["direction"] == "in")
        outgoing = await probe.wait_for(topic, lambda p: p["payload"]["direction"] == "out")
    finally:
        await running.stop()
    assert incoming["payload"]["raw_message"] == sent
    assert incoming["payload"]["charge_point_id"] == "CP_RAW"
    assert json.loads(outgoing["payload"]["raw_message"]) == answer
    assert incoming["connector_version"] == __version__
    assert isinstance(incoming["payload"]["timestamp"], int)


async def test_connected_is_true_then_false(connector: RunningConnector, probe: MqttProbe) -> None:
    """`<cp>__connected` follows the WebSocket."""
    await map_datapoints(probe, connector, {"CP_1__connected": connector.topic("v/connected")}, {})
    async with ChargerLink(connector.url, "CP_1"):
        await probe.wait_value(connector.topic("v/connected"), True)
    await probe.wait_value(connector.topic("v/connected"), False)


def test_fixture_frames_are_valid_ocpp() -> None:
    """The recorded frames used by these tests pass the OCPP 1.6 schemas, except the deviant ones."""
    from ocpp.messages import MessageType

    from connector.protocol import check_payload

    deviant = {"status_error_code_error", "meter_values_hz_padded", "meter_values_empty_sampled"}
    for name in json.loads((__import__("pathlib").Path(__file__).parent / "fixtures/ocpp16_frames.json").read_text()):
        if name.startswith("_"):
            continue
        action, payload = frame(name)
        verdict = check_payload(action, payload, MessageType.Call)
        assert verdict.refusal is None, name
        assert bool(verdict.tolerated) == (name in deviant), name


async def test_transactions_survive_a_connector_restart(settings_env: dict[str, str], probe: MqttProbe) -> None:
    """Ids stay unique across a restart on the same STATE_DIR, and a stop after it still counts the energy."""
    from connector.tests.conftest import start_connector

    first = await start_connector(settings_env, probe)
    async with ChargerLink(first.url, "CP_1") as charger:
        before = await send(charger, "start_transaction", connectorId=1)
    await first.stop()
    second = await start_connector(settings_env, probe)
    try:
        topic = second.topic("v/energy")
        await map_datapoints(probe, second, {"CP_1__Transaction__1__energy": topic}, {})
        async with ChargerLink(second.url, "CP_1") as charger:
            after = await send(charger, "start_transaction", connectorId=2)
            await send(charger, "stop_transaction", transactionId=before.transaction_id)
            await probe.wait_value(topic, 11500)
    finally:
        await second.stop()
    assert after.transaction_id > before.transaction_id


TRANSACTION_FIELDS = ["active", "transaction_id", "meter_stop", "stop_reason", "energy"]


async def map_transaction(probe: MqttProbe, connector: RunningConnector) -> None:
    sensors = {f"CP_1__Transaction__1__{f}": connector.topic(f"v/{f}") for f in TRANSACTION_FIELDS}
    await map_datapoints(probe, connector, sensors, {})


async def test_a_stop_sent_after_the_boot_still_counts_its_energy(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """A boot makes the open transaction inactive; its StopTransaction sent after the boot still counts the energy."""
    await map_transaction(probe, connector)
    async with ChargerLink(connector.url, "CP_1") as charger:
        started = await send(charger, "start_transaction")
        await probe.wait_value(connector.topic("v/active"), True)
        await send(charger, "boot_notification")
        await probe.wait_value(connector.topic("v/active"), False)
        await send(charger, "stop_transaction", transactionId=started.transaction_id, reason="PowerLoss")
        await probe.wait_value(connector.topic("v/energy"), 11500)
    assert values(probe, connector.topic("v/active")) == [True, False, False]
    assert values(probe, connector.topic("v/stop_reason")) == [None, "PowerLoss"]
    assert values(probe, connector.topic("v/meter_stop")) == [None, 1245500]


async def test_a_late_stop_while_a_newer_transaction_runs_ends_describing_the_newer(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """A stop for a transaction settled by a newer start publishes its energy, then the newer one's fields again."""
    await map_transaction(probe, connector)
    async with ChargerLink(connector.url, "CP_1") as charger:
        old = await send(charger, "start_transaction", timestamp="2026-11-21T09:00:00Z")
        new = await send(charger, "start_transaction", timestamp="2026-11-21T10:00:00Z")
        await send(charger, "stop_transaction", transactionId=old.transaction_id, timestamp="2026-11-21T09:30:00Z")
        await probe.wait_value(connector.topic("v/energy"), 11500)
        # energy is the last field published: once its fourth value is here, all are.
        await probe.wait_until(lambda: len(probe.on(connector.topic("v/energy"))) == 4)
    ids = [old.transaction_id, new.transaction_id]
    assert values(probe, connector.topic("v/transaction_id")) == [ids[0], ids[1], ids[0], ids[1]]
    assert values(probe, connector.topic("v/active")) == [True, True, False, True]
    assert values(probe, connector.topic("v/energy")) == [None, None, 11500, None]
    assert probe.latest(connector.topic("v/active")) is True
