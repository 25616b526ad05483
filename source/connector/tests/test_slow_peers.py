"""Slow and dead peers: none blocks the others; each is detected and cleaned up in bounded time.

- a charger that stops reading while the connector has megabytes to send it;
- a half-open TCP connection (the path goes silent without FIN or RST: a cable pulled, a
  NAT entry expired), made by a TCP relay in the test that freezes without closing;
- a charger that never answers a call.

Detection of the first two is the WebSocket ping: no pong within OCPP_PING_INTERVAL after
a ping, the connection is failed (close 1011) and, since the peer cannot answer the close
either, aborted after the close timeout. So the bound is ping interval + ping timeout +
close timeout (here 0.5 + 0.5 + 2 s), plus scheduling slack.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import cast

import pytest
import websockets
import websockets.version

from connector.gate import LEAN_DRAIN_WAITERS_FOR
from connector.ocpp_server import CLOSE_TIMEOUT_S
from connector.tests.conftest import RunningConnector, command, map_datapoints, start_connector
from connector.tests.harness import ChargerLink, MqttProbe, RawLink, send

PING_S = 0.5
DETECTION_BOUND_S = 2 * PING_S + CLOSE_TIMEOUT_S + 2.0  # the last term: slack for a loaded CI machine


@pytest.fixture
async def pinging(settings_env: dict[str, str], probe: MqttProbe) -> AsyncIterator[RunningConnector]:
    running = await start_connector(
        {**settings_env, "OCPP_PING_INTERVAL": str(PING_S), "OCPP_RESPONSE_TIMEOUT": "1"}, probe
    )
    yield running
    await running.stop()


async def wire_peers(probe: MqttProbe, running: RunningConnector, *cps: str) -> dict[str, str]:
    """Map `connected`, a DataTransfer command and its status for each charge point."""
    topics: dict[str, str] = {}
    sensors, actuators = {}, {}
    for cp in cps:
        topics[f"{cp}/connected"] = sensors[f"{cp}__connected"] = running.topic(f"v/{cp}/connected")
        topics[f"{cp}/status"] = sensors[f"{cp}__execute_data_transfer__status"] = running.topic(f"v/{cp}/status")
        topics[f"{cp}/cmd"] = running.topic(f"cmd/{cp}/data_transfer")
        actuators[topics[f"{cp}/cmd"]] = f"{cp}__execute_data_transfer"
    await map_datapoints(probe, running, sensors, actuators)
    return topics


async def other_charger_is_served(running: RunningConnector, probe: MqttProbe, topics: dict[str, str]) -> None:
    """CP_OK's messages are answered and its commands run while the peer misbehaves."""
    async with ChargerLink(running.url, "CP_OK") as charger:
        await send(charger, "heartbeat")
        since = len(probe.messages)
        probe.publish(topics["CP_OK/cmd"], command(json.dumps({"vendor_id": "V", "data": "ping"})))
        await probe.wait_for(topics["CP_OK/status"], lambda p: p["value"] == "Accepted", since=since)


def cut_off(message: str) -> bool:
    """The WARNING of either way a non-reading charger is caught: our write timeout (the
    kernel's buffers filled up) or the ping (the kernel took all we sent, the pong never came)."""
    return message.startswith("CP_STUCK: stopped reading") or message.startswith(
        "CP_STUCK: disconnected with close code 1011"
    )


async def test_a_charger_that_stops_reading_is_cut_off(pinging: RunningConnector, probe: MqttProbe) -> None:
    """4 MB on its way to a charger that reads nothing: it is disconnected in bounded time, others go on."""
    topics = await wire_peers(probe, pinging, "CP_STUCK", "CP_OK")
    stuck = await websockets.connect(f"{pinging.url}/CP_STUCK", subprotocols=["ocpp1.6"])  # type: ignore[list-item]
    try:
        await probe.wait_value(topics["CP_STUCK/connected"], True)
        # The sends below wait for the transport in websockets' drain_waiters, here a list (gate.py).
        assert isinstance(pinging.service.dispatcher.sessions["CP_STUCK"]._connection.drain_waiters, list)
        stuck.transport.pause_reading()  # from here on, this charger reads nothing
        stopped_reading = time.monotonic()
        probe.publish(topics["CP_STUCK/cmd"], command(json.dumps({"vendor_id": "V", "data": "x" * 4_000_000})))
        await other_charger_is_served(pinging, probe, topics)
        await probe.wait_value(topics["CP_STUCK/connected"], False, within=DETECTION_BOUND_S + 5)
        detected_after = time.monotonic() - stopped_reading
        status = await probe.wait_for(topics["CP_STUCK/status"])
        why = await probe.wait_for(pinging.topic("logs"), lambda p: p["level"] == 30 and cut_off(p["msg"]))
    finally:
        stuck.transport.abort()
    assert detected_after < DETECTION_BOUND_S
    assert status["value"].startswith("Failed: ")
    assert why["msg"].startswith("CP_STUCK: ")
    assert pinging.service.dispatcher.sessions.keys() == set()  # cleaned up


def test_the_lean_drain_waiters_are_written_for_the_installed_websockets() -> None:
    assert websockets.version.version == LEAN_DRAIN_WAITERS_FOR, "re-check gate.TrackedConnection against websockets"


class FreezingRelay:
    """A TCP relay between charger and connector that can go silent without closing anything."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.pumps: set[asyncio.Task[None]] = set()
        self.sockets: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> FreezingRelay:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.freeze()
        for writer in self.sockets:
            writer.transport.abort()
        assert self.server is not None
        self.server.close()

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.sockets += [client_writer, upstream_writer]
        for reader, writer in ((client_reader, upstream_writer), (upstream_reader, client_writer)):
            task = asyncio.create_task(self._pump(reader, writer))
            self.pumps.add(task)

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()

    def freeze(self) -> None:
        """Stop relaying both ways and read nothing more; send no FIN or RST."""
        for task in self.pumps:
            task.cancel()
        for writer in self.sockets:
            cast(asyncio.Transport, writer.transport).pause_reading()


async def test_a_half_open_connection_is_detected(pinging: RunningConnector, probe: MqttProbe) -> None:
    """The path to a charger goes silent (no FIN, no RST): the connector notices by ping and cleans up."""
    topics = await wire_peers(probe, pinging, "CP_GONE", "CP_OK")
    async with FreezingRelay(pinging.service.dispatcher.port or 0) as relay:
        link = ChargerLink(f"ws://127.0.0.1:{relay.port}", "CP_GONE")
        charger = await link.__aenter__()
        try:
            await send(charger, "boot_notification")
            await probe.wait_value(topics["CP_GONE/connected"], True)
            relay.freeze()
            frozen_at = time.monotonic()
            await other_charger_is_served(pinging, probe, topics)
            await probe.wait_value(topics["CP_GONE/connected"], False, within=DETECTION_BOUND_S + 5)
            detected_after = time.monotonic() - frozen_at
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(link.__aexit__(None, None, None), 1)
    assert detected_after < DETECTION_BOUND_S
    assert "CP_GONE" not in pinging.service.dispatcher.sessions


async def test_a_charger_that_never_answers_blocks_only_itself(pinging: RunningConnector, probe: MqttProbe) -> None:
    """A call left unanswered ends in `Failed: no answer` after OCPP_RESPONSE_TIMEOUT; meanwhile others are served."""
    topics = await wire_peers(probe, pinging, "CP_MUTE", "CP_OK")
    async with RawLink(pinging.url, "CP_MUTE") as mute:
        probe.publish(topics["CP_MUTE/cmd"], command(json.dumps({"vendor_id": "V"})))
        request = json.loads(await mute.connection.recv())  # received, never answered
        await other_charger_is_served(pinging, probe, topics)
        failed = await probe.wait_for(topics["CP_MUTE/status"])
        # Still connected and served: silence to a call is not a dead connection.
        assert (await mute.exchange('[2,"h","Heartbeat",{}]'))[:2] == [3, "h"]
    assert request[2] == "DataTransfer"
    assert failed["value"] == "Failed: no answer within 1 s"
