"""A reconnect storm: a thousand charge points at once, as after a power cut, again and again.

The connector runs as its own process (its memory is read from /proc); the charge points
are the ocpp library's client over real WebSockets, all started at once, each sending
BootNotification and StatusNotification. Every one must be accepted and answered and
its values must reach the broker; none is refused. Memory: after they leave, the
connector keeps only what it must keep per identity (its datapoint keys and latest
values, for available_datapoints and the datapoint map), so a second storm of the same
identities must not add to what the earlier ones left: no per-connection leftovers.

RSS is a high-water mark: CPython and glibc keep memory freed by departed connections for
reuse rather than returning it to the system at once. So "memory returns to its level" is
shown the way an operator sees it over months: storm after storm, it stops growing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from connector.memory import FREEZE_EVERY_S
from connector.tests.conftest import Prefix, map_datapoints
from connector.tests.harness import (
    WAIT_S,
    ChargerLink,
    ConnectorProcess,
    Mosquitto,
    MqttProbe,
    base_env,
    send,
    spawn_connector,
)

CHARGERS = 1000
ROUNDS = 4
RATE_UNITS = {
    "configuration_key": [{"key": "ChargingScheduleAllowedChargingRateUnit", "readonly": True, "value": "Current"}]
}
STORM_WITHIN_S = 30.0  # an upper bound for CI; the figures are printed with -s


class Storm:
    """Chargers that all connect at once, boot, report status, and stay until told to leave."""

    def __init__(self, url: str, identities: list[str]) -> None:
        self.url, self.identities = url, identities
        self.go, self.leave = asyncio.Event(), asyncio.Event()
        self.served: dict[str, str] = {}  # cp -> BootNotification status
        self.all_served = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.errors: list[str] = []

    async def _charger(self, cp: str) -> None:
        await self.go.wait()
        try:
            async with ChargerLink(self.url, cp) as charger:
                charger.replies["GetConfiguration"] = RATE_UNITS  # the connector asks after the boot
                boot = await send(charger, "boot_notification")
                await send(charger, "status_available")
                self.served[cp] = boot.status
                if len(self.served) == len(self.identities):
                    self.all_served.set()
                await self.leave.wait()
        except Exception as error:
            self.errors.append(f"{cp}: {error!r}")
            self.all_served.set()  # wake the test: it fails on the error
            raise

    async def connect(self) -> float:
        """Start them all at once; seconds until every one was answered."""
        self.tasks = [asyncio.create_task(self._charger(cp)) for cp in self.identities]
        started = time.monotonic()
        self.go.set()
        async with asyncio.timeout(STORM_WITHIN_S):
            await self.all_served.wait()
        assert self.errors == [], self.errors[:3]
        return time.monotonic() - started

    async def disconnect(self) -> None:
        self.leave.set()
        async with asyncio.timeout(STORM_WITHIN_S):
            await asyncio.gather(*self.tasks)


async def settle(process: ConnectorProcess, probe: MqttProbe, topic_of: dict[str, str], connected: bool) -> int:
    """Wait until every charger's `connected` value is `connected`; the RSS then."""
    await probe.wait_until(
        lambda: all(probe.latest(topic) == connected for topic in topic_of.values()), within=STORM_WITHIN_S
    )
    return process.rss_kb()


@pytest.fixture
async def roomy_broker(tmp_path: Path) -> AsyncIterator[Mosquitto]:
    """A broker that queues without bound for a slow subscriber: mosquitto's default of
    1000 queued messages per client drops values on their way to this busy test process."""
    (tmp_path / "broker").mkdir()
    server = Mosquitto(tmp_path / "broker", extra_config="max_queued_messages 0\n")
    server.start()
    yield server
    server.stop()


async def test_a_thousand_chargers_at_once_again_and_again(
    roomy_broker: Mosquitto, connector_name: str, tmp_path: Path
) -> None:
    probe = MqttProbe(roomy_broker.port)
    await probe.subscribe(f"{connector_name}/#", qos=1)
    # Every simulated charger shares 127.0.0.1, as a fleet behind a load balancer shares its
    # address: the per-address bound is set for that case, as the README tells operators.
    env = {**base_env(roomy_broker, connector_name, tmp_path), "OCPP_MAX_UNAUTHENTICATED_PER_ADDRESS": str(CHARGERS)}
    process = await spawn_connector(env, tmp_path)
    try:
        port = (await process.wait_for_line(r"OCPP server listening on ws://[\d.]+:(\d+)")).group(1)
        await probe.wait_for(f"{connector_name}/logs", lambda p: p["msg"].startswith("connected to MQTT broker"))
        identities = [f"STORM_{n:04d}" for n in range(CHARGERS)]
        topic_of = {cp: f"{connector_name}/v/{cp}/connected" for cp in identities}
        status_topics = [f"{connector_name}/v/{cp}/status" for cp in identities]
        sensors = {f"{cp}__connected": topic_of[cp] for cp in identities}
        sensors |= {f"{cp}__StatusNotification__1__status": t for cp, t in zip(identities, status_topics, strict=True)}
        await map_datapoints(probe, Prefix(connector_name), sensors, {})
        baseline = process.rss_kb()

        figures = []
        for _ in range(ROUNDS):
            storm = Storm(f"ws://127.0.0.1:{port}", identities)
            took = await storm.connect()
            assert set(storm.served.values()) == {"Accepted"} and len(storm.served) == CHARGERS
            connected = await settle(process, probe, topic_of, connected=True)
            await probe.wait_until(lambda: all(probe.latest(t) == "Available" for t in status_topics))
            since = len(process.lines)
            await storm.disconnect()
            await settle(process, probe, topic_of, connected=False)
            # Departed sessions are cyclic garbage, collected in one full collection soon after.
            await process.wait_for_line("full garbage collection", within=FREEZE_EVERY_S + WAIT_S, since=since)
            left = process.rss_kb()
            figures.append((took, connected, left))
    finally:
        await process.kill()
        probe.close()

    times = " / ".join(f"{t:.1f}" for t, _, _ in figures)
    peaks = " / ".join(str(peak) for _, peak, _ in figures)
    after = [left for _, _, left in figures]
    print(
        f"\nstorm of {CHARGERS} chargers, {ROUNDS} times: all served in {times} s; RSS (KB) before {baseline}, "
        f"connected {peaks}, after leaving {' / '.join(map(str, after))}"
    )
    # The first storm leaves the per-identity registry behind, and the allocators settle at
    # a high-water mark over the first rounds; a leak would add the same again every round.
    first_growth = after[0] - baseline
    assert after[-1] - after[-2] < 0.05 * first_growth + 2048
    errors = [line for line in process.lines if "ERROR" in line or "Traceback" in line]
    assert errors == []
