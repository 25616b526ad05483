"""paho driven by the asyncio loop, against a real mosquitto: acknowledgements read within a long
turn of the loop, so a full window does not leave the connection silent until the broker drops it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from paho.mqtt.enums import CallbackAPIVersion

from connector.bemcom import MAX_INFLIGHT
from connector.mqtt_client import Client
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
