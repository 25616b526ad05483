"""Backpressure: a lane that cannot hand on its messages stops the sessions reading, and nothing is lost."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from connector.actuators import OcppCall
from connector.backpressure import Room
from connector.outbox import HIGH_WATER, WINDOW
from connector.session import looks_like_answer
from connector.tests.conftest import RunningConnector, map_datapoints, start_connector
from connector.tests.harness import WAIT_S, Mosquitto, MqttProbe


def test_the_room_opens_only_when_every_full_lane_has_room() -> None:
    room, values, raw = Room(), object(), object()
    room.full(values)
    room.full(raw)
    room.freed(values)
    assert not room.is_open
    room.freed(values)  # freeing twice changes nothing
    assert not room.is_open
    room.freed(raw)
    assert room.is_open


def test_a_released_room_stays_open() -> None:
    room, lane = Room(), object()
    room.full(lane)
    room.release()
    assert room.is_open
    room.full(lane)
    assert room.is_open


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker of this test alone: it is frozen with SIGSTOP."""
    (tmp_path / "broker").mkdir()
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    yield broker
    assert broker.process is not None
    os.kill(broker.process.pid, signal.SIGCONT)
    broker.stop()


async def connector_mapping_energy(
    settings_env: dict[str, str], broker: Mosquitto, connector_name: str
) -> tuple[MqttProbe, RunningConnector, str]:
    """A connector on `broker` with CP_BP's energy mapped: (probe, connector, the value's topic)."""
    probe = MqttProbe(broker.port)
    await probe.subscribe(f"{connector_name}/#", qos=1)
    running = await start_connector({**settings_env, "MQTT_BROKER_PORT": str(broker.port)}, probe)
    topic = running.topic("v/energy")
    await map_datapoints(probe, running, {"CP_BP__MeterValues__1__Energy.Active.Import.Register__Wh": topic}, {})
    return probe, running, topic


async def fill_the_lanes(broker: Mosquitto, flooder: ClientConnection, room: Room) -> None:
    """Freeze the broker and have `flooder` send more MeterValues than the lanes hold: the room closes."""
    assert broker.process is not None
    os.kill(broker.process.pid, signal.SIGSTOP)
    for number in range(WINDOW + HIGH_WATER + 200):
        await flooder.send(meter_values(number))
    async with asyncio.timeout(WAIT_S):
        while room.is_open:  # noqa: ASYNC110 - no event says "closed"
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def beside_full_lanes(running: RunningConnector, broker: Mosquitto, cp: str) -> AsyncIterator[ClientConnection]:
    """Charger `cp`, connected while CP_BP fills the lanes with the broker frozen (the room closed)."""
    async with (
        connect(f"{running.url}/{cp}", subprotocols=["ocpp1.6"]) as charger,  # type: ignore[list-item]
        connect(f"{running.url}/CP_BP", subprotocols=["ocpp1.6"]) as flooder,  # type: ignore[list-item]
    ):
        await fill_the_lanes(broker, flooder, running.service.mqtt.room)
        yield charger


def thaw(broker: Mosquitto) -> None:
    if broker.process is not None:
        os.kill(broker.process.pid, signal.SIGCONT)


def meter_values(number: int) -> str:
    sample = {"timestamp": "2026-12-04T10:00:00Z", "sampledValue": [{"value": str(number)}]}
    return json.dumps([2, f"m{number}", "MeterValues", {"connectorId": 1, "meterValue": [sample]}])


async def test_a_frozen_broker_stops_the_reading_not_the_memory_and_loses_nothing(
    settings_env: dict[str, str], own_broker: Mosquitto, connector_name: str
) -> None:
    """With the broker frozen, values pile up only to HIGH_WATER; then frames wait unread, unanswered.

    A charger sends more MeterValues than fit (each makes one mapped value) without waiting
    for answers. Once the broker is frozen, paho gets no acknowledgements; beyond WINDOW
    held and HIGH_WATER waiting the session stops reading. Thawed, everything is answered
    and every value arrives.
    """
    sent = WINDOW + HIGH_WATER + 200
    probe, running, topic = await connector_mapping_energy(settings_env, own_broker, connector_name)
    mqtt_side = running.service.mqtt
    answered: set[str] = set()
    all_answered, nearly_full = asyncio.Event(), asyncio.Event()
    try:
        async with connect(f"{running.url}/CP_BP", subprotocols=["ocpp1.6"]) as charger:  # type: ignore[list-item]

            async def read_answers() -> None:
                async for frame in charger:
                    answered.add(json.loads(frame)[1])
                    if len(answered) == WINDOW + HIGH_WATER - 10:  # the room closes within a few frames
                        nearly_full.set()
                    if len(answered) == sent:
                        all_answered.set()

            reader = asyncio.create_task(read_answers())
            assert own_broker.process is not None
            os.kill(own_broker.process.pid, signal.SIGSTOP)
            for number in range(sent):
                await charger.send(meter_values(number))
            async with asyncio.timeout(WAIT_S):
                await nearly_full.wait()
            # Nothing more is read while the broker stays frozen (a bounded look: nothing to await).
            await asyncio.sleep(0.5)
            # Each frame read made one value: paho holds WINDOW, HIGH_WATER wait, the rest unread.
            assert len(answered) <= WINDOW + HIGH_WATER + 1
            assert not mqtt_side.room.is_open
            assert mqtt_side.outbox.pending <= WINDOW + HIGH_WATER + 10  # + log lines, at most a few
            os.kill(own_broker.process.pid, signal.SIGCONT)
            async with asyncio.timeout(WAIT_S):
                await all_answered.wait()
            await probe.wait_value(topic, sent - 1)
            reader.cancel()
    finally:
        await running.stop()
        probe.close()
    values = {p["value"] for t, p, _ in probe.messages if t == topic}
    assert values == set(range(sent))


async def test_a_stop_while_sessions_wait_for_room_ends_in_time(
    settings_env: dict[str, str], own_broker: Mosquitto, connector_name: str
) -> None:
    """SIGTERM's path while the broker is frozen and the room closed: sessions close, the stop ends."""
    probe, running, _ = await connector_mapping_energy(settings_env, own_broker, connector_name)
    closed = asyncio.Event()
    try:
        async with connect(f"{running.url}/CP_BP", subprotocols=["ocpp1.6"]) as charger:  # type: ignore[list-item]
            assert own_broker.process is not None
            os.kill(own_broker.process.pid, signal.SIGSTOP)
            for number in range(WINDOW + HIGH_WATER + 200):
                await charger.send(meter_values(number))

            async def answers_until_closed() -> None:
                with contextlib.suppress(ConnectionClosed):
                    async for _ in charger:
                        pass
                closed.set()

            reader = asyncio.create_task(answers_until_closed())
            async with asyncio.timeout(WAIT_S):
                while running.service.mqtt.room.is_open:  # noqa: ASYNC110 - no event says "closed"
                    await asyncio.sleep(0.01)
            async with asyncio.timeout(8):  # CLOSE_TIMEOUT_S + MQTT flush + disconnect: 4 s, with room to spare
                await running.stop()
            async with asyncio.timeout(WAIT_S):
                await closed.wait()
            reader.cancel()
    finally:
        if not running.task.done():
            await running.stop()
        probe.close()
    assert charger.close_code == 1001


@pytest.mark.parametrize("frame", ['[3, "m1", {}]', b' [ 4,"x"', "\n[3,"])
def test_an_answer_is_told_by_its_head(frame: str | bytes) -> None:
    assert looks_like_answer(frame)


@pytest.mark.parametrize("frame", ['[2, "m1", "Heartbeat", {}]', "3", "", b"\xff[3", '{"[3"}'])
def test_anything_else_is_not_an_answer(frame: str | bytes) -> None:
    assert not looks_like_answer(frame)


async def test_the_answer_to_our_call_is_read_while_the_room_is_closed(
    settings_env: dict[str, str], own_broker: Mosquitto, connector_name: str
) -> None:
    """A command's answer does not wait for room: the CALL before it does, and is served after.

    One charger fills the lanes with the broker frozen. Another, asked for something,
    sends a MeterValues and then its answer, as a charger between two of its own
    messages does. The call gets its answer while the room is still closed; the
    MeterValues waits for the broker and is answered once it is back.
    """
    probe, running, _ = await connector_mapping_energy(settings_env, own_broker, connector_name)
    mqtt_side = running.service.mqtt
    try:
        async with beside_full_lanes(running, own_broker, "CP_OK") as asked:
            session = running.service.dispatcher.sessions["CP_OK"]
            trigger = OcppCall("TriggerMessage", {"requestedMessage": "Heartbeat"})
            command = asyncio.create_task(session.send_call(lambda: trigger))
            async with asyncio.timeout(WAIT_S):
                call = json.loads(await asked.recv())
            assert call[2] == "TriggerMessage"
            await asked.send(meter_values(7))  # read, and held for room
            await asked.send(json.dumps([3, call[1], {"status": "Accepted"}]))
            async with asyncio.timeout(WAIT_S):
                _, answer = await command
            assert answer == {"status": "Accepted"}
            assert not mqtt_side.room.is_open
            with pytest.raises(TimeoutError):  # the MeterValues still waits (a bounded look)
                async with asyncio.timeout(0.3):
                    await asked.recv()
            thaw(own_broker)
            async with asyncio.timeout(WAIT_S):
                held_answer = json.loads(await asked.recv())
            assert held_answer[:2] == [3, "m7"]
    finally:
        thaw(own_broker)
        await running.stop()
        probe.close()


async def test_a_frame_waiting_for_room_is_served_though_its_charger_left_meanwhile(
    settings_env: dict[str, str], own_broker: Mosquitto, connector_name: str
) -> None:
    """A charger's last MeterValues waits for room; the charger closes its connection: the value still arrives."""
    probe, running, energy = await connector_mapping_energy(settings_env, own_broker, connector_name)
    leaving = running.topic("v/leaving")
    sensors = {
        "CP_BP__MeterValues__1__Energy.Active.Import.Register__Wh": energy,
        "CP_GONE__MeterValues__1__Energy.Active.Import.Register__Wh": leaving,
    }
    await map_datapoints(probe, running, sensors, {})
    try:
        async with beside_full_lanes(running, own_broker, "CP_GONE") as gone:
            await gone.send(meter_values(7))  # read, and held for room
            await gone.close()
            thaw(own_broker)
            await probe.wait_value(leaving, 7)
    finally:
        thaw(own_broker)
        await running.stop()
        probe.close()
