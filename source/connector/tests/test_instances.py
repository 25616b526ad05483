"""Several instances (INTERFACE section 10), two real connector processes on one Redis.

Each instance is `python -m connector` with its own OCPP port, operations port, STATE_DIR
and CONNECTOR_INSTANCE, the same CONNECTOR_NAME and STATE_URL. Chargers (the ocpp
library's client) connect to one or the other directly: the load balancer in front is
tested in test_ha.py. What is shown here: a command reaches its charger once, whichever
instance holds it, with one status; after SIGKILL of the instance holding a charger, the
other serves it on with its transaction, corrects `connected`, and delivers a command
sent meanwhile; names are unique; without Redis an instance is not ready.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from ocpp.exceptions import InternalError

from connector.datapoints import key, now_ms
from connector.shared import ALIVE_EVERY_S
from connector.tests.harness import (
    WAIT_S,
    ChargerLink,
    Mosquitto,
    MqttProbe,
    free_port,
    http_request,
    run_connector,
    send,
    spawn_connector,
)
from connector.tests.harness_ha import Fleet, Instance, RedisServer
from connector.tests.harness_ocpp2 import StationLink, boot, energy, transaction_event

CP = "CP_1"
TRIGGER = key(CP, "execute_trigger_message")
LIMIT = key(CP, "execute_send_charging_profile_current", 1)
CONNECTED = key(CP, "connected")
POWER_ONLY = {"key": "ChargingScheduleAllowedChargingRateUnit", "readonly": True, "value": "Power"}


@pytest.fixture
async def fleet(
    broker: Mosquitto, redis_server: RedisServer, connector_name: str, tmp_path: Path, probe: MqttProbe
) -> AsyncIterator[Fleet]:
    running = Fleet(broker, redis_server, connector_name, tmp_path, probe, [f"node-{i}" for i in (1, 2)])
    yield running
    for instance in running.instances:
        await instance.kill()
        if instance.process is not None:  # shown by pytest when the test failed
            print(f"--- {instance.name} ---\n{''.join(instance.process.lines[-60:])}")
    probe.publish(running.topic("datapoint_map"), b"", retain=True)


async def calls_of(charger: Any, count: int) -> list[tuple[str, dict[str, Any]]]:
    return [await charger.next_call() for _ in range(count)]


async def test_a_command_reaches_its_charger_once_whichever_instance_holds_it(fleet: Fleet) -> None:
    """Both instances receive every command; only the one holding the charger sends it, and one status comes."""
    await fleet.start()
    first, second = fleet.instances
    topics = await fleet.map_actuators(TRIGGER)
    for holder in (first, second):
        async with ChargerLink(holder.url, CP) as charger:
            await send(charger, "boot_notification")
            before = len(fleet.statuses(TRIGGER))
            received = []
            for sent in range(1, 6):  # one at a time: a newer value supersedes one still queued
                fleet.command(topics[TRIGGER], 3)
                received.append(await charger.next_call())
                await fleet.status(TRIGGER, before + sent)
            # A fence: one more command, whose status comes after any late duplicate of the five.
            fleet.command(topics[TRIGGER], 3)
            await charger.next_call()
            await fleet.status(TRIGGER, before + 6)
            assert received == [("TriggerMessage", {"requested_message": "Heartbeat"})] * 5
            assert fleet.statuses(TRIGGER)[before:] == ["Accepted"] * 6
            assert charger.received.empty()  # nothing sent twice


async def test_a_command_for_a_charger_nobody_holds_fails_once(fleet: Fleet) -> None:
    await fleet.start()
    topics = await fleet.map_actuators(TRIGGER, sensors=(CONNECTED,))
    async with ChargerLink(fleet.instances[0].url, CP) as charger:
        await send(charger, "boot_notification")
    await fleet.probe.wait_for(fleet.sensor(CONNECTED), lambda p: p["value"] is False)
    fleet.command(topics[TRIGGER], 3)
    fleet.command(topics[TRIGGER], 3)
    statuses = await fleet.status(TRIGGER, 2)
    assert statuses == [f"Failed: charge point {CP} is not connected"] * 2


async def test_after_sigkill_the_other_instance_carries_on(fleet: Fleet) -> None:
    """The charger comes back on the other instance: its transaction stops with its energy,
    `connected` says false (timed at the dead one's last sign of life) then true, a command
    sent while nobody held it arrives once, the limit delivered before is not sent again,
    and the next transaction id is new."""
    await fleet.start()
    first, second = fleet.instances
    transaction = [key(CP, "Transaction", 1, part) for part in ("transaction_id", "energy")]
    topics = await fleet.map_actuators(LIMIT, TRIGGER, sensors=(CONNECTED, *transaction))
    async with ChargerLink(first.url, CP) as charger:
        charger.replies["GetConfiguration"] = {"configuration_key": [POWER_ONLY]}
        await send(charger, "boot_notification")
        assert (await charger.next_call())[0] == "GetConfiguration"  # the rate units, after the boot
        await send(charger, "status_available", connectorId=1)
        started = await send(charger, "start_transaction")
        fleet.command(topics[LIMIT], 16)
        assert (await charger.next_call())[0] == "SetChargingProfile"
        assert await fleet.status(LIMIT, 1) == ["Accepted"]
        killed_at, killed = now_ms(), len(fleet.probe.messages)
        await first.kill()
        async with asyncio.timeout(WAIT_S):
            await charger._connection.wait_closed()

    # The broker says the killed instance is gone (its will); `N/state` went offline with it
    # (its will too: it could have been the last) and the live instance set it online again.
    will = await fleet.probe.wait_for(fleet.topic(f"instances/{first.name}/state"), lambda p: p["state"] == "offline")
    fleet_state = fleet.topic("state")
    await fleet.probe.wait_for(fleet_state, lambda p: p == {"state": "offline"}, since=killed)
    await fleet.probe.wait_until(lambda: fleet.probe.on(fleet_state)[-1] == {"state": "online"})
    assert fleet.probe.on(fleet.topic(f"instances/{second.name}/state"))[-1] == {"state": "online"}

    since = len(fleet.probe.messages)
    fleet.command(topics[TRIGGER], 3)  # nobody holds the charger now
    async with ChargerLink(second.url, CP) as charger:
        assert await charger.next_call() == ("TriggerMessage", {"requested_message": "Heartbeat"})
        assert await fleet.status(TRIGGER, 1) == ["Accepted"]
        gone = await fleet.probe.wait_for(fleet.sensor(CONNECTED), lambda p: p["value"] is False, since=since)
        back = await fleet.probe.wait_for(fleet.sensor(CONNECTED), lambda p: p["value"] is True, since=since)
        await send(charger, "stop_transaction", transactionId=started.transaction_id)
        energy = await fleet.probe.wait_for(fleet.sensor(transaction[1]), since=since)
        later = await send(charger, "start_transaction", timestamp="2026-11-21T12:00:00Z")
        assert charger.received.empty()  # the limit was not sent again, nor the trigger
        fleet.command(topics[LIMIT], 11)  # in W, as the first instance read: not read again
        limit = await charger.next_call()

    assert killed_at - 2 * ALIVE_EVERY_S * 1000 <= gone["timestamp"] <= killed_at < back["timestamp"]
    assert energy["value"] == 1245500 - 1234000
    assert will == {"state": "offline"}
    assert later.transaction_id > started.transaction_id
    assert limit[0] == "SetChargingProfile"
    assert limit[1]["cs_charging_profiles"]["charging_schedule"]["charging_rate_unit"] == "W"


async def test_a_second_live_instance_of_the_same_name_is_refused(fleet: Fleet, tmp_path: Path) -> None:
    first = fleet.instances[0]
    await first.start()
    twin = Instance(fleet.env, first.name, tmp_path / "twin")
    status, stderr = await asyncio.to_thread(run_connector, twin.env, tmp_path)
    assert status == 2
    assert f"CONNECTOR_INSTANCE={first.name} is in use by another running instance" in stderr


async def test_without_redis_an_instance_is_alive_but_not_ready(fleet: Fleet, tmp_path: Path) -> None:
    """Unreachable Redis: retried and reported; /readyz 503 (the balancer sends chargers elsewhere), /healthz 200."""
    unreachable = f"redis://127.0.0.1:{free_port()}/0?password=Zq7-very-secret"  # redis-py reads it there too
    lonely = Instance({**fleet.env, "STATE_URL": unreachable, "DEBUG": "TRUE"}, "lonely", tmp_path)
    lonely.process = await spawn_connector(lonely.env, tmp_path)
    await lonely.process.wait_for_line(r"Redis \(STATE_URL\) unreachable: .*; retrying")
    ready = await http_request(lonely.http_port, "/readyz")
    live = await http_request(lonely.http_port, "/healthz")
    metrics = await http_request(lonely.http_port, "/metrics")
    await lonely.kill()
    assert 'ocpp_connector_mqtt_connected{connector_instance="lonely"} 1.0' in metrics.body.decode()
    assert "Zq7-very-secret" not in "".join(lonely.process.lines)  # debug logging, settings included
    assert (ready.status, ready.json()["state"], ready.json()["instance"]) == (503, "down", "lonely")
    assert (live.status, live.json()["instance"]) == (200, "lonely")


async def test_a_201_transaction_carries_on_on_the_other_instance(fleet: Fleet) -> None:
    """OCPP 2.0.1: the seqNos handled before the kill are known on the other instance (a re-sent
    event is published once), and the Ended event there counts the energy from the Started one."""
    await fleet.start()
    first, second = fleet.instances
    cp = "CS_201"
    fields = {f: key(cp, "Transaction", 1, f) for f in ("active", "charging_state", "energy")}
    await fleet.map_actuators(sensors=tuple(fields.values()))
    token = {"idToken": "04A2B3C4", "type": "ISO14443"}
    updated = transaction_event("Updated", 1, "tx-1", chargingState="Charging")
    async with StationLink(first.url, cp) as station:
        await station.send("BootNotification", boot())
        await station.send(
            "TransactionEvent", transaction_event("Started", 0, "tx-1", idToken=token, meterValue=energy(1000))
        )
        await station.send("TransactionEvent", updated)
        await fleet.probe.wait_for(fleet.sensor(fields["charging_state"]), lambda p: p["value"] == "Charging")
        await first.kill()
        async with asyncio.timeout(WAIT_S):
            await station._connection.wait_closed()

    since = len(fleet.probe.messages)
    async with StationLink(second.url, cp) as station:
        await station.send("TransactionEvent", updated)  # its answer was lost with the first instance
        ended = transaction_event("Ended", 2, "tx-1", evse=None, meterValue=energy(8500, context="Transaction.End"))
        await station.send("TransactionEvent", ended)
        stopped = await fleet.probe.wait_for(fleet.sensor(fields["energy"]), since=since)
        await fleet.probe.wait_for(fleet.sensor(fields["active"]), lambda p: p["value"] is False, since=since)

    assert stopped["value"] == 7500
    republished = [p for t, p, _ in fleet.probe.messages[since:] if t == fleet.sensor(fields["charging_state"])]
    assert republished == []  # the re-sent Updated was recognised: nothing published twice


async def test_a_start_redis_cannot_record_is_refused_and_counts_when_sent_again(
    fleet: Fleet, redis_server: RedisServer
) -> None:
    """The charger is never told of a transaction that Redis does not hold: CALLERROR, and the
    charger's repeat (same StartTransaction) gets the id once Redis is back."""
    first = fleet.instances[0]
    await first.start()
    assert first.process is not None
    topics = await fleet.map_actuators(TRIGGER)
    async with ChargerLink(first.url, CP) as charger:
        await send(charger, "boot_notification")
        redis_server.kill()
        with pytest.raises(InternalError):
            await send(charger, "start_transaction")
        redis_server.start()  # empty: what Redis held is lost
        started = await send(charger, "start_transaction")
        stopped = await send(charger, "stop_transaction", transactionId=started.transaction_id)
        # The instance notices its records are gone and holds its chargers again: commands reach them.
        await first.process.wait_for_line("holds 1 chargers again")
        fleet.command(topics[TRIGGER], 3)
        assert await charger.next_call() == ("TriggerMessage", {"requested_message": "Heartbeat"})
    await first.process.wait_for_line(
        r"StartTransaction not answered \(and \d+ others since the last such line\): Redis did not take"
    )
    assert started.transaction_id > 0
    assert stopped.id_tag_info["status"] == "Accepted"


async def test_an_instance_restarted_under_its_name_corrects_connected(fleet: Fleet) -> None:
    """Killed and started again under the same name (a container's restart): the charger that
    comes back gets `false` (at the killed process's last sign of life) then `true`; one that
    does not come back gets `false`, once the restarted process has waited for it."""
    first = fleet.instances[0]
    await first.start()
    other = "CP_2"
    await fleet.map_actuators(sensors=(CONNECTED, key(other, "connected")))
    async with ChargerLink(first.url, CP) as charger, ChargerLink(first.url, other) as quiet:
        await send(charger, "boot_notification")
        await send(quiet, "boot_notification")
        killed_at, killed = now_ms(), len(fleet.probe.messages)
        await first.kill()
        for link in (charger, quiet):
            async with asyncio.timeout(WAIT_S):
                await link._connection.wait_closed()

    await first.start()
    async with ChargerLink(first.url, CP) as charger:
        await send(charger, "heartbeat")
        back = await fleet.probe.wait_for(fleet.sensor(CONNECTED), lambda p: p["value"] is True, since=killed)
        gone = fleet.probe.on(fleet.sensor(CONNECTED))[-2]
        quiet_gone = await fleet.probe.wait_for(
            fleet.sensor(key(other, "connected")), lambda p: p["value"] is False, since=killed, within=3 * WAIT_S
        )
    assert gone["value"] is False
    assert killed_at - 2 * ALIVE_EVERY_S * 1000 <= gone["timestamp"] <= killed_at < back["timestamp"]
    assert killed_at - 2 * ALIVE_EVERY_S * 1000 <= quiet_gone["timestamp"] <= killed_at


async def test_a_second_live_connection_on_another_instance_takes_the_charger_over(fleet: Fleet) -> None:
    """The same identity connects to the other instance while its first connection still lives
    (as one instance alone would, the newest wins): the first is closed, no `false` is published,
    and commands reach the new one."""
    await fleet.start()
    first, second = fleet.instances
    topics = await fleet.map_actuators(TRIGGER, sensors=(CONNECTED,))
    async with ChargerLink(first.url, CP) as old:
        await send(old, "boot_notification")
        since = len(fleet.probe.messages)
        async with ChargerLink(second.url, CP) as new:
            await send(new, "heartbeat")
            async with asyncio.timeout(WAIT_S):
                await old._connection.wait_closed()
            fleet.command(topics[TRIGGER], 3)
            assert await new.next_call() == ("TriggerMessage", {"requested_message": "Heartbeat"})
            assert await fleet.status(TRIGGER, 1) == ["Accepted"]
    assert old._connection.close_reason == "served by another instance"
    connected = [p["value"] for t, p, _ in fleet.probe.messages[since:] if t == fleet.sensor(CONNECTED)]
    assert connected[:1] == [True]  # the new connection's, and no false until it closed itself
    assert False not in connected[:-1]


async def test_an_instance_paused_past_its_sign_of_life_serves_on_and_says_so(fleet: Fleet) -> None:
    """SIGSTOP for longer than an instance's sign of life lasts: the other sweeps its charger
    (`false`); back, it holds the charger again, says `true`, and commands reach it."""
    await fleet.start()
    first, _ = fleet.instances
    assert first.process is not None
    topics = await fleet.map_actuators(TRIGGER, sensors=(CONNECTED,))
    async with ChargerLink(first.url, CP) as charger:
        await send(charger, "boot_notification")
        since = len(fleet.probe.messages)
        first.process.process.send_signal(signal.SIGSTOP)
        try:
            await fleet.probe.wait_for(fleet.sensor(CONNECTED), lambda p: p["value"] is False, since=since)
        finally:
            first.process.process.send_signal(signal.SIGCONT)
        back = await fleet.probe.wait_for(fleet.sensor(CONNECTED), lambda p: p["value"] is True, since=since)
        await first.process.wait_for_line("holds 1 chargers again")
        fleet.command(topics[TRIGGER], 3)
        assert await charger.next_call() == ("TriggerMessage", {"requested_message": "Heartbeat"})
        assert await fleet.status(TRIGGER, 1) == ["Accepted"]
    assert back["value"] is True


async def test_a_clean_stop_of_one_instance_leaves_the_fleet_online(fleet: Fleet) -> None:
    """SIGTERM: the instance ends within the 5 s of section 1, says it is offline on its own
    presence topic, and `N/state` stays online: the other instance serves the fleet."""
    await fleet.start()
    first, second = fleet.instances
    assert first.process is not None
    async with ChargerLink(first.url, CP) as charger:
        await send(charger, "boot_notification")
        since = len(fleet.probe.messages)
        stopped_at = asyncio.get_running_loop().time()
        first.process.process.terminate()
        async with asyncio.timeout(WAIT_S):
            status = await first.process.process.wait()
        took = asyncio.get_running_loop().time() - stopped_at
    presence = await fleet.probe.wait_for(fleet.topic(f"instances/{first.name}/state"), since=since)
    assert (status, presence) == (0, {"state": "offline"})
    # A subscriber arriving after the exit gets the retained `N/state`: the broker took all the
    # stopped instance published (and its DISCONNECT) before it.
    late = MqttProbe(int(fleet.env["MQTT_BROKER_PORT"]))
    try:
        await late.subscribe(fleet.topic("state"))
        retained = await late.wait_for(fleet.topic("state"))
    finally:
        late.close()
    assert took < 5.0
    assert retained == {"state": "online"}
    assert second.process is not None and second.process.process.returncode is None
