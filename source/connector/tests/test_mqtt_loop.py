"""paho driven by the asyncio loop, against a real mosquitto: acknowledgements read within a long
turn of the loop, so a full window does not leave the connection silent until the broker drops it;
a large packet written with pauses, so the broker serves the others meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from connector.bemcom import MAX_INFLIGHT
from connector.mqtt_client import WRITE_BUDGET_BYTES, Client
from connector.mqtt_loop import LoopDriver
from connector.outbox import WINDOW, Outbox
from connector.settings import Broker
from connector.spool import Spool
from connector.tests.harness import Mosquitto, MqttProbe

KEEPALIVE_S = 1  # mosquitto drops a client it heard nothing from for 1.5 x this
TURN_S = 4.0  # one turn of the loop, well beyond that
PUT_EVERY_S = 0.002  # the work between two values in that turn


def _one_long_turn(outbox: Outbox) -> int:
    """One callback that blocks the loop for TURN_S, putting a value every PUT_EVERY_S; the number put."""
    put = 0
    end = time.monotonic() + TURN_S
    while time.monotonic() < end:
        outbox.put("o/seq", str(put).encode(), qos=1)
        put += 1
        time.sleep(PUT_EVERY_S)  # the turn's other work, with the loop blocked as an overloaded one is
    return put


async def test_a_long_turn_of_the_loop_reads_acknowledgements_and_keeps_the_connection(tmp_path: Path) -> None:
    """A turn of the loop that puts values for TURN_S (an overloaded connector: seconds per turn)
    fills the window within a fraction of it. The outbox reads the acknowledgements itself every
    READ_DUE_S, so values keep flowing within the turn, the broker keeps hearing from us, the
    connection is never lost, and every value arrives once, in order."""
    broker = Mosquitto(tmp_path)
    broker.start()
    probe = MqttProbe(broker.port)
    await probe.subscribe("o/#", qos=1)
    loop = asyncio.get_running_loop()
    client = Client(CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
    client.max_inflight_messages_set(MAX_INFLIGHT)  # as bemcom: the outbox's window is the bound
    outbox = Outbox(client, 1_000_000, Spool(":memory:"))
    outbox.start(loop)
    online, lost = asyncio.Event(), asyncio.Event()

    def connected(*args: object) -> None:
        outbox.went_online()
        online.set()

    def disconnected(*args: object) -> None:
        lost.set()

    client.on_connect = connected  # paho runs them on the loop's thread: the driver reads there
    client.on_disconnect = disconnected
    driver = LoopDriver(client, [Broker("127.0.0.1", broker.port)], KEEPALIVE_S, lambda error, at: None)
    outbox.read_acks = driver.read_if_due
    running = loop.create_task(driver.run())
    try:
        async with asyncio.timeout(10):
            await online.wait()
        put = _one_long_turn(outbox)
        acked_within = outbox.delivered
        assert put > 2 * WINDOW, "the turn must put more than the window holds"
        assert acked_within > WINDOW, f"only {acked_within} acknowledged within the turn: the window stayed full"
        assert await outbox.flush(within=10)
        await probe.wait_for("o/seq", lambda payload: payload == put - 1, within=10)
        assert [p for t, p, _ in probe.messages if t == "o/seq"] == list(range(put))
        assert not lost.is_set(), "the broker dropped the connection"
        assert driver.socket_open
    finally:
        await driver.disconnect(within=2)
        running.cancel()
        probe.close()
        broker.stop()


# Below mqtt_client.WRITE_DUE_S, as the listing's: a packet queued meanwhile (a keepalive
# ping) waits for the pause's end instead of being written at once.
PAUSE_S = 0.015
LARGE = 40 * WRITE_BUDGET_BYTES  # 0.59 s of pauses or more on the way


class _Writes(Client):
    """Notes when it writes to the socket, and in which turn of the loop (`turn`, kept by the test)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.writes: list[float] = []
        self.turns: list[int] = []
        self.turn = 0
        self.wrote = asyncio.Event()

    def loop_write(self) -> MQTTErrorCode:
        self.writes.append(time.monotonic())
        self.turns.append(self.turn)
        rc = super().loop_write()
        self.wrote.set()
        return rc


@contextlib.asynccontextmanager
async def _paced_client(tmp_path: Path) -> AsyncIterator[tuple[_Writes, MqttProbe]]:
    """A client driven with PAUSE_S between writes, connected to a broker of its own, and a
    probe subscribed there to `big` and `ping`."""
    broker = Mosquitto(tmp_path)
    broker.start()
    probe = MqttProbe(broker.port)
    await probe.subscribe("big", qos=1)
    await probe.subscribe("ping", qos=0)
    client = _Writes(CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
    online = asyncio.Event()
    client.on_connect = lambda *args: online.set()
    driver = LoopDriver(client, [Broker("127.0.0.1", broker.port)], KEEPALIVE_S, lambda e, at: None, PAUSE_S)
    running = asyncio.get_running_loop().create_task(driver.run())
    try:
        async with asyncio.timeout(10):
            await online.wait()
        yield client, probe
    finally:
        await driver.disconnect(within=2)
        running.cancel()
        probe.close()
        broker.stop()


async def test_a_large_packet_goes_out_with_pauses_and_the_broker_serves_others_meanwhile(tmp_path: Path) -> None:
    """The listing's connection pauses after each write budget, so the broker, which reads a
    packet for as long as the socket has data, finds it empty between the parts: the writes
    come a pause apart at least; a message another client sends while the large one is on
    its way reaches its subscriber first; the large one arrives whole."""
    async with _paced_client(tmp_path) as (client, probe):
        client.wrote.clear()
        large = "x" * LARGE
        client.publish("big", json.dumps(large), qos=1, retain=True)
        await client.wrote.wait()
        started = len(client.writes) - 1
        probe.publish("ping", 1, qos=0)
        await probe.wait_for("ping", within=5)
        assert "big" not in [t for t, _, _ in probe.messages], "the broker read the large packet before the ping"
        assert await probe.wait_for("big", within=10) == large
        writes = client.writes[started:]
        assert len(writes) >= LARGE // WRITE_BUDGET_BYTES, "more than a budget in one write"
        gaps = [later - earlier for earlier, later in itertools.pairwise(writes)]
        assert min(gaps) >= PAUSE_S * 0.99, f"written {min(gaps) * 1e3:.1f} ms after the write before"


SLOW_TURN_S = 0.03  # a loop busy with a connect wave: every turn takes this long, far over the pause


async def test_a_slow_loop_s_turns_are_the_pauses(tmp_path: Path) -> None:
    """When each turn of the loop takes longer than the pause, the turn is the pause: a large
    packet goes out a write budget per turn, no turn added, so it is not stretched beyond
    paho's keepalive (a listing paced on top of slow turns lost its connection, again and again)."""
    loop = asyncio.get_running_loop()
    busy = True
    async with _paced_client(tmp_path) as (client, probe):

        def one_slow_turn() -> None:  # runs once in every turn of the loop while busy
            client.turn += 1
            time.sleep(SLOW_TURN_S)  # the turn's other work, the loop blocked as a busy one is
            if busy:
                loop.call_soon(one_slow_turn)

        try:
            large = "x" * (16 * WRITE_BUDGET_BYTES)
            loop.call_soon(one_slow_turn)
            client.publish("big", json.dumps(large), qos=1)
            assert await probe.wait_for("big", within=20) == large
        finally:
            busy = False
        turns = client.turns[-(len(large) // WRITE_BUDGET_BYTES) :]
        gaps = [later - earlier for earlier, later in itertools.pairwise(turns)]
        assert gaps.count(1) >= len(gaps) * 3 // 4, f"turns between writes: {gaps}"
