"""The MQTT spool in Redis: what a dead instance had answered is delivered by another.

Against a real redis-server (the `redis_server` fixture); the Spool contract both spools share is
in test_spool.py. The last test runs two connector processes, kills one during a broker
outage and sees the other deliver what it had answered.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import cast

import paho.mqtt.client as mqtt
import pytest
import redis
from paho.mqtt.enums import CallbackAPIVersion

from connector.backpressure import Room
from connector.datapoints import key
from connector.outbox import Outbox
from connector.shared_spool import (
    ADOPT_BATCH,
    LOOP_TIMEOUT_S,
    REGISTER_EVERY_S,
    RETRY_AFTER_S,
    RedisLane,
    SharedSpool,
    SharedSpools,
    SpoolAdopter,
    decode,
    encode,
)
from connector.spool import Message, Spool, SpoolUnavailableError
from connector.tests.harness import (
    WAIT_S,
    ChargerLink,
    ConnectorProcess,
    Mosquitto,
    MqttProbe,
    base_env,
    free_port,
    send,
    spawn_connector,
)
from connector.tests.harness_ha import RedisServer

_names = itertools.count()


def message(i: int, qos: int = 1) -> Message:
    return Message(f"site/sensor/cp:{i % 3}", str(i).encode(), qos, i % 2 == 0)


class RecordingLane:
    """An outbox lane that keeps what it is given."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    def put(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> None:
        self.messages.append(Message(topic, payload, qos, retain))


@pytest.fixture
def name() -> str:
    return f"spool-{next(_names)}"


class Instance:
    """One instance's spools (both lanes, each over its own local file) and adopter, in this process."""

    def __init__(self, url: str, name: str, instance: str, state_dir: Path) -> None:
        self.spools = SharedSpools(url, name, instance)
        self.main = self.spools.lane("main", Spool(state_dir / f"{instance}-{self.spools.run}.sqlite3"))
        self.raw = self.spools.lane("raw", Spool(state_dir / f"{instance}-{self.spools.run}-raw.sqlite3"))
        self.lanes = {"main": RecordingLane(), "raw": RecordingLane()}
        self.adopter: SpoolAdopter = self.spools.adopter(self.lanes, Room())
        self.named = asyncio.Event()

    def leftovers(self) -> list[bytes]:
        """The spool keys and run registries of this connector left in Redis."""
        return sorted(cast(list[bytes], self.spools.client.keys(f"{self.spools.prefix}spool*")))


@pytest.fixture
async def instances(redis_server: RedisServer, name: str, tmp_path: Path) -> AsyncIterator[dict[str, Instance]]:
    """Instances a, b and c of one connector; each adopter runs once its `named` is set."""
    made = {i: Instance(redis_server.url, name, i, tmp_path) for i in "abc"}
    tasks = [asyncio.create_task(i.adopter.run(i.named)) for i in made.values()]
    yield made
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for instance in made.values():
        instance.spools.close()


async def delivered(adopter: SpoolAdopter) -> None:
    async with asyncio.timeout(WAIT_S):
        await adopter.idle.wait()


def test_a_member_holds_a_message_whole() -> None:
    """Topic (with colons, non-ASCII), payload (empty or binary), QoS and retain survive the encoding; ids order it."""
    samples = [
        Message("a/b:c/ü", b"", 0, False),
        Message("x", b"\x00\xff:", 2, True),
        Message("", b'{"value": 1}', 1, True),
    ]
    for row_id, sample in enumerate(samples, 1):
        assert decode(encode(row_id, sample)) == (row_id, sample)


async def test_a_dead_instances_messages_are_delivered_once_in_order_each_lane_to_its_own(
    instances: dict[str, Instance],
) -> None:
    """a (never alive: dead) kept 600 + 10 messages; b takes them: all, in order, raw to raw; c then finds none."""
    a, b, c = instances["a"], instances["b"], instances["c"]
    kept = [message(i) for i in range(600)]  # more than two batches
    a.main.append_many(kept[:300])
    for m in kept[300:]:
        a.main.append(m)
    raw = [message(i, qos=2) for i in range(10)]
    a.raw.append_many(raw)
    b.named.set()
    c.named.set()
    await delivered(b.adopter)  # its own earlier runs: none

    await b.adopter.adopt("a")
    await c.adopter.adopt("a")  # another survivor sweeping too: nothing left to take
    await delivered(b.adopter)
    await delivered(c.adopter)

    assert b.lanes["main"].messages == kept and b.lanes["raw"].messages == raw
    assert c.lanes["main"].messages == [] and c.lanes["raw"].messages == []
    assert b.leftovers() == []
    assert len(kept) > 2 * ADOPT_BATCH


async def test_the_runs_of_a_live_instance_are_left_alone(instances: dict[str, Instance]) -> None:
    """An instance alive again (its name renewed) keeps its spool: a late sweep takes nothing."""
    a, b = instances["a"], instances["b"]
    a.main.append_many([message(1), message(2)])
    a.spools.client.set(f"{a.spools.prefix}alive:a", "a")
    b.named.set()
    await b.adopter.adopt("a")
    await delivered(b.adopter)
    assert b.lanes["main"].messages == []
    assert [m for _, m in a.main.read(0, 10)] == [message(1), message(2)]


async def test_a_restarted_instance_delivers_what_its_killed_process_left(
    redis_server: RedisServer, name: str, tmp_path: Path
) -> None:
    """The next process of a name delivers its predecessor's runs once it holds the name, not its own."""
    killed = Instance(redis_server.url, name, "a", tmp_path)
    killed.main.append_many([message(1), message(2)])
    killed.raw.append(message(3, qos=2))
    # No close(): a SIGKILL. The next process of the same name:
    restarted = Instance(redis_server.url, name, "a", tmp_path)
    restarted.main.append(message(4))  # its own: read by its outbox, not adopted
    task = asyncio.create_task(restarted.adopter.run(restarted.named))
    try:
        restarted.named.set()
        await delivered(restarted.adopter)
    finally:
        task.cancel()
    assert restarted.lanes["main"].messages == [message(1), message(2)]
    assert restarted.lanes["raw"].messages == [message(3, qos=2)]
    assert [m for _, m in restarted.main.read(0, 10)] == [message(4)]
    assert restarted.spools.runs_of("a") == [restarted.spools.run]
    for instance in (killed, restarted):
        instance.spools.close()


async def test_an_outbox_whose_rows_another_instance_took_is_not_left_counting_them(
    instances: dict[str, Instance],
) -> None:
    """a, thought dead (paused too long), loses its spooled rows to b; back online, a's outbox has nothing pending."""
    a, b = instances["a"], instances["b"]
    client = mqtt.Client(CallbackAPIVersion.VERSION2)  # never connected: the outbox stays offline
    outbox = Outbox(client, 100, a.main)
    for i in range(5):
        outbox.put(*message(i))
    assert outbox.pending == 5
    b.named.set()
    await b.adopter.adopt("a")
    await delivered(b.adopter)
    outbox.went_online()  # as after the broker came back: reads the spool, finds it empty
    assert outbox.pending == 0
    assert b.lanes["main"].messages == [message(i) for i in range(5)]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def pause(server: RedisServer) -> None:
    """SIGSTOP: the kernel still accepts connections, nothing answers (a hung Redis)."""
    assert server.process is not None
    server.process.send_signal(signal.SIGSTOP)


def resume(server: RedisServer) -> None:
    assert server.process is not None
    server.process.send_signal(signal.SIGCONT)


@pytest.fixture
def spools(redis_server: RedisServer, name: str) -> Iterator[SharedSpools]:
    made = SharedSpools(redis_server.url, name, "a")
    yield made
    made.close()


@pytest.fixture
def hung_spool(spools: SharedSpools, tmp_path: Path) -> tuple[SharedSpool, Clock]:
    """Instance a's main lane, on a clock of the test's."""
    clock = Clock()
    lane = RedisLane(spools.client, spools.lane_key("a", spools.run, "main"))
    return SharedSpool(lane, (spools.runs_key("a"), spools.run), Spool(tmp_path / "local.sqlite3"), clock), clock


def test_while_redis_hangs_rows_go_to_the_local_file_and_come_back_in_order(
    redis_server: RedisServer,
    hung_spool: tuple[SharedSpool, Clock],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A hung Redis costs one bounded wait, then rows go to STATE_DIR; once it answers, both stores read as one."""
    spool, clock = hung_spool
    ids = spool.append_many(message(i) for i in range(3))
    pause(redis_server)
    try:
        started = time.monotonic()
        with caplog.at_level(logging.ERROR, logger="connector.shared_spool"):
            ids += [spool.append(message(i)) for i in range(3, 100)]
        waited = time.monotonic() - started
        with pytest.raises(SpoolUnavailableError):  # its rows in Redis first: later
            spool.read(0, 10)
    finally:
        resume(redis_server)
    assert waited < 4 * LOOP_TIMEOUT_S  # one timed-out call, not one per message
    assert Spool(tmp_path / "local.sqlite3").count() == 97
    assert len(caplog.records) == 1 and "go to STATE_DIR" in caplog.records[0].getMessage()

    clock.now += RETRY_AFTER_S
    rows = spool.read(0, 1000)
    assert [row_id for row_id, _ in rows] == ids and [m for _, m in rows] == [message(i) for i in range(100)]
    spool.delete(ids)
    assert spool.count() == 0 and Spool(tmp_path / "local.sqlite3").count() == 0


def test_with_redis_down_from_the_start_the_local_file_serves_alone(
    redis_server: RedisServer, hung_spool: tuple[SharedSpool, Clock]
) -> None:
    """Redis refusing connections: appends, reads and deletes work from STATE_DIR, without waiting for Redis."""
    spool, _ = hung_spool
    redis_server.stop()
    ids = [*spool.append_many(message(i) for i in range(3)), spool.append(message(3))]
    assert [m for _, m in spool.read(0, 10)] == [message(i) for i in range(4)]
    assert spool.first_after(ids[0]) == ids[1]
    spool.delete(ids)
    assert spool.count() == 0


def test_a_run_is_registered_again_after_redis_lost_its_data(
    spools: SharedSpools, hung_spool: tuple[SharedSpool, Clock]
) -> None:
    """Redis restarted empty: within REGISTER_EVERY_S of writing, the run is listed again for adoption."""
    spool, clock = hung_spool
    spool.append(message(1))
    assert spools.runs_of("a") == [spools.run]
    spools.client.flushdb()
    spool.append(message(2))
    clock.now += REGISTER_EVERY_S
    spool.append(message(3))
    assert spools.runs_of("a") == [spools.run]
    assert [m for _, m in spool.read(0, 10)] == [message(2), message(3)]


def test_with_redis_refusing_connections_a_call_fails_at_once() -> None:
    """The spool's client does not retry (redis-py's default would back off for seconds on the loop's thread)."""
    spools = SharedSpools(f"redis://127.0.0.1:{free_port()}/0", "nobody", "a")
    started = time.monotonic()
    with pytest.raises(redis.ConnectionError):
        spools.client.ping()
    assert time.monotonic() - started < LOOP_TIMEOUT_S
    spools.close()


# -- end to end: two connector processes, one killed during a broker outage -------------------


def energy_reading(value: int) -> list[dict[str, object]]:
    return [
        {"timestamp": f"2026-11-21T10:{value // 60:02d}:{value % 60:02d}Z", "sampledValue": [{"value": str(value)}]}
    ]


async def start_instance(env: dict[str, str], instance: str, tmp_path: Path) -> tuple[ConnectorProcess, str]:
    port = free_port()
    own = {**env, "CONNECTOR_INSTANCE": instance, "OCPP_PORT": str(port), "STATE_DIR": str(tmp_path / instance)}
    process = await spawn_connector(own, tmp_path)
    await process.wait_for_line("OCPP server listening")
    await process.wait_for_line(f"instance {instance}: serving")
    return process, f"ws://127.0.0.1:{port}"


async def test_values_one_instance_answered_during_an_outage_are_delivered_by_another_after_its_sigkill(
    own_broker: Mosquitto, redis_server: RedisServer, name: str, tmp_path: Path
) -> None:
    """a answers 200 values during a broker outage and is SIGKILLed; with the broker back, b delivers all, in order."""
    energy = key("CP_1", "MeterValues", 1, "Energy.Active.Import.Register", "Wh")
    topic = f"{name}/sensor/{energy}"
    probe = MqttProbe(own_broker.port)
    await probe.subscribe(f"{name}/#")
    probe.publish(f"{name}/datapoint_map", {"sensor": {energy: topic}, "actuator": {}}, retain=True)
    env = {**base_env(own_broker, name, tmp_path), "STATE_URL": redis_server.url}
    answered = list(range(1, 201))
    a, url = await start_instance(env, "a", tmp_path)
    b, _ = await start_instance(env, "b", tmp_path)
    try:
        await probe.wait_for(
            f"{name}/logs", lambda p: p.get("instance") == "a" and str(p["msg"]).startswith("datapoint_map applied")
        )
        async with ChargerLink(url, "CP_1") as charger:
            await send(charger, "meter_values_defaults", meterValue=energy_reading(0))
            await probe.wait_value(topic, 0)
            probe.close()
            since_a, since_b = len(a.lines), len(b.lines)
            own_broker.stop()
            await a.wait_for_line("MQTT connection lost", since=since_a)
            await b.wait_for_line("MQTT connection lost", since=since_b)
            for value in answered:
                await send(charger, "meter_values_defaults", meterValue=energy_reading(value))
            await a.kill()
        own_broker.start()
        probe = MqttProbe(own_broker.port)
        await probe.subscribe(f"{name}/#")
        await probe.wait_value(topic, answered[-1], within=3 * WAIT_S)  # a known dead within seconds
        await b.wait_for_line(r"delivered \d+ messages instance a had kept")
    finally:
        await a.kill()
        await b.kill()
        probe.close()
    assert [p["value"] for t, p, retained in probe.messages if t == topic and not retained] == answered
