"""The connector killed with SIGKILL and started again: the last will, and what survives.

Everything is real: the connector is a child process killed without warning, its state
lives in STATE_DIR, mosquitto publishes the last will, and the charge point (the ocpp
library's client) reconnects to the restarted connector on the same port and carries on
with the transaction and the reservation it had, without a new BootNotification.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from connector.datapoints import key
from connector.tests.harness import (
    ChargerLink,
    ConnectorProcess,
    Mosquitto,
    MqttProbe,
    base_env,
    free_port,
    send,
    spawn_connector,
)

CP = "CP_1"
STOP_MAP_SUFFIXES = ("active", "transaction_id", "meter_stop", "energy")


class Rig:
    """A connector process on a fixed port, restartable on the same STATE_DIR."""

    def __init__(self, broker: Mosquitto, name: str, tmp_path: Path, probe: MqttProbe) -> None:
        self.name, self.probe, self.tmp_path = name, probe, tmp_path
        self.port = free_port()
        self.env = {**base_env(broker, name, tmp_path), "OCPP_PORT": str(self.port)}
        self.process: ConnectorProcess | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def topic(self, part: str) -> str:
        return f"{self.name}/{part}"

    async def start(self) -> None:
        since = len(self.probe.messages)
        self.process = await spawn_connector(self.env, self.tmp_path)
        await self.process.wait_for_line("OCPP server listening")
        # The map is retained (as BEMCom publishes it): each start applies it.
        await self.probe.wait_for(
            self.topic("logs"), lambda p: str(p.get("msg", "")).startswith("datapoint_map applied"), since=since
        )

    async def kill(self) -> None:
        if self.process is not None:
            await self.process.kill()

    def sensor(self, *parts: object) -> str:
        return self.topic(f"sensor/{key(CP, *parts)}")

    def command(self, *parts: object) -> str:
        return self.topic(f"cmd/{key(CP, *parts)}")

    def publish_map(self) -> None:
        sensors = [key(CP, "Transaction", 1, s) for s in STOP_MAP_SUFFIXES]
        sensors += [key(CP, "Reservation", 2, s) for s in ("reservation_id", "status")]
        sensors += [key(CP, "execute_cancel_reservation", 2, "status")]
        actuators = [key(CP, "execute_reserve_now", 2), key(CP, "execute_cancel_reservation", 2)]
        mapping = {
            "sensor": {k: self.topic(f"sensor/{k}") for k in sensors},
            "actuator": {self.topic(f"cmd/{k}"): k for k in actuators},
        }
        self.probe.publish(self.topic("datapoint_map"), mapping, retain=True)


@pytest.fixture
async def rig(broker: Mosquitto, connector_name: str, tmp_path: Path, probe: MqttProbe) -> AsyncIterator[Rig]:
    running = Rig(broker, connector_name, tmp_path, probe)
    yield running
    if running.process is not None:
        await running.kill()
    running.probe.publish(running.topic("datapoint_map"), b"", retain=True)  # clear the retained map


async def value_of(probe: MqttProbe, topic: str, since: int = 0) -> Any:
    return (await probe.wait_for(topic, since=since))["value"]


async def test_sigkill_then_restart_the_charger_carries_on(rig: Rig, probe: MqttProbe) -> None:
    """After SIGKILL the will says offline; after the restart the transaction and the reservation are still known."""
    rig.publish_map()
    await rig.start()
    await probe.wait_for(rig.topic("state"), lambda p: p == {"state": "online"})

    async with ChargerLink(rig.url, CP) as charger:
        await send(charger, "boot_notification")
        await send(charger, "status_available", connectorId=2)
        started = await send(charger, "start_transaction")
        await probe.wait_for(rig.sensor("Transaction", 1, "active"), lambda p: p["value"] is True)
        probe.publish(rig.command("execute_reserve_now", 2), {"value": "TAG-2", "timestamp": 0})
        reserved = await value_of(probe, rig.sensor("Reservation", 2, "reservation_id"))

        since = len(probe.messages)
        await rig.kill()
        will = await probe.wait_for(rig.topic("state"), since=since)
        # The charger's socket is closed by the kernel with the process.
        async with asyncio.timeout(10):
            await charger._connection.wait_closed()
    assert will == {"state": "offline"}

    since = len(probe.messages)
    await rig.start()
    await probe.wait_for(rig.topic("state"), lambda p: p == {"state": "online"}, since=since)
    async with ChargerLink(rig.url, CP) as charger:  # no BootNotification: it carries on
        await send(charger, "status_available", connectorId=2)
        await send(charger, "stop_transaction", transactionId=started.transaction_id)
        stopped = {s: await value_of(probe, rig.sensor("Transaction", 1, s), since) for s in STOP_MAP_SUFFIXES}
        probe.publish(rig.command("execute_cancel_reservation", 2), {"value": True, "timestamp": 0})
        cancel = await charger.next_call()
        status = await value_of(probe, rig.sensor("execute_cancel_reservation", 2, "status"), since)
        later = await send(charger, "start_transaction", timestamp="2026-11-21T12:00:00Z")

    assert stopped == {
        "active": False,
        "transaction_id": started.transaction_id,
        "meter_stop": 1245500,
        "energy": 1245500 - 1234000,
    }
    assert cancel == ("CancelReservation", {"reservation_id": reserved})
    assert status == "Accepted"
    assert later.transaction_id > max(started.transaction_id, reserved)


async def test_clean_shutdown_says_offline(rig: Rig, probe: MqttProbe, broker: Mosquitto) -> None:
    """SIGTERM publishes `N/state` offline itself (a clean disconnect makes the broker drop the will)."""
    rig.publish_map()
    await rig.start()
    await probe.wait_for(rig.topic("state"), lambda p: p == {"state": "online"})
    assert rig.process is not None
    since = len(probe.messages)
    rig.process.process.terminate()
    async with asyncio.timeout(5):
        assert await rig.process.process.wait() == 0
    assert await probe.wait_for(rig.topic("state"), since=since) == {"state": "offline"}
    late = MqttProbe(broker.port)
    try:
        await late.subscribe(rig.topic("state"))
        retained = await late.wait_for(rig.topic("state"))
    finally:
        late.close()
    assert retained == {"state": "offline"} and late.messages[0][2] is True


def energy_reading(value: int) -> list[dict[str, object]]:
    """One meterValue element with an energy reading of `value` Wh, `value` seconds into the hour."""
    return [
        {"timestamp": f"2026-11-21T10:{value // 60:02d}:{value % 60:02d}Z", "sampledValue": [{"value": str(value)}]}
    ]


async def test_values_answered_during_an_outage_survive_a_sigkill(
    own_broker: Mosquitto, connector_name: str, tmp_path: Path
) -> None:
    """Values answered while the broker is down, then SIGKILL: the next process on STATE_DIR delivers all, in order."""
    energy = key(CP, "MeterValues", 1, "Energy.Active.Import.Register", "Wh")
    probe = MqttProbe(own_broker.port)
    await probe.subscribe(f"{connector_name}/#")
    rig = Rig(own_broker, connector_name, tmp_path, probe)
    topic = rig.topic(f"sensor/{energy}")
    mapping = {"sensor": {energy: topic}, "actuator": {}}
    probe.publish(rig.topic("datapoint_map"), mapping, retain=True)
    answered = list(range(1, 201))
    try:
        await rig.start()
        async with ChargerLink(rig.url, CP) as charger:
            await send(charger, "meter_values_defaults", meterValue=energy_reading(0))
            await probe.wait_value(topic, 0)
            probe.close()
            assert rig.process is not None
            since = len(rig.process.lines)
            own_broker.stop()
            await rig.process.wait_for_line("MQTT connection lost", since=since)
            for value in answered:
                await send(charger, "meter_values_defaults", meterValue=energy_reading(value))
            await rig.kill()
        own_broker.start()
        probe = rig.probe = MqttProbe(own_broker.port)
        await probe.subscribe(f"{connector_name}/#")
        probe.publish(rig.topic("datapoint_map"), mapping, retain=True)  # the broker kept nothing
        await rig.start()
        await probe.wait_value(topic, answered[-1])
    finally:
        await rig.kill()
        probe.close()
    assert [p["value"] for t, p, retained in probe.messages if t == topic and not retained] == answered
