"""A site loses one connector process and keeps control of its chargers (INTERFACE section 10).

Everything is real: redis-server, mosquitto and HAProxy (the shipped deploy/haproxy.cfg)
started by the tests, three `python -m connector` processes, and 16 OCPP 1.6 chargers (the
ocpp library's client) connecting through HAProxy. One instance is killed with SIGKILL
while its chargers have open transactions; they reconnect through HAProxy, as real chargers
do, and land on the others.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from websockets.exceptions import InvalidStatus

from connector.datapoints import key, now_ms
from connector.shared import prefix
from connector.tests.conftest import StartHAProxy
from connector.tests.harness import WAIT_S, Charger, ChargerLink, Mosquitto, MqttProbe, send
from connector.tests.harness_ha import Backend, Fleet, HAProxy, RedisServer, all_up, until

CHARGERS = [f"CP_{n:02}" for n in range(16)]
LIMIT, ENERGY_READING, ENERGY = "limit", "reading", "energy"
METER_START = 1_000_000
STOPPED_ENERGY = 5_000
RECONNECT_ATTEMPTS = 3


def sensors(cp: str) -> dict[str, str]:
    return {
        "connected": key(cp, "connected"),
        ENERGY_READING: key(cp, "MeterValues", 1, "Energy.Active.Import.Register", "Wh"),
        ENERGY: key(cp, "Transaction", 1, "energy"),
    }


def limit_key(cp: str) -> str:
    return key(cp, "execute_send_charging_profile_current", 1)


@dataclass
class Station:
    """One charger of the site, reconnecting through the load balancer like a real one."""

    cp: str
    url: str
    link: ChargerLink | None = None
    charger: Charger | None = None
    transaction_id: int = 0
    readings: list[int] = field(default_factory=list)  # meter readings the connector acknowledged
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # what the connector sent it

    async def connect(self) -> Charger:
        """Connect, retrying as chargers do: HAProxy may answer 502 in the instant it marks the dead one down."""
        for attempt in range(RECONNECT_ATTEMPTS):
            self.link = ChargerLink(self.url, self.cp)
            try:
                self.charger = await self.link.__aenter__()
            except (InvalidStatus, OSError):
                if attempt == RECONNECT_ATTEMPTS - 1:
                    raise
                continue
            return self.charger
        raise AssertionError("not reached")

    async def dropped(self) -> None:
        """The connection closed under it (its instance was killed); it is gone."""
        assert self.charger is not None and self.link is not None
        async with asyncio.timeout(WAIT_S):
            await self.charger._connection.wait_closed()
        await self.link.__aexit__()

    async def read_meter(self, value: int) -> None:
        assert self.charger is not None
        reading = [{"timestamp": "2026-11-21T10:20:00Z", "sampledValue": [{"value": str(value)}]}]
        await send(self.charger, "meter_values_defaults", meterValue=reading)
        self.readings.append(value)  # answered: the connector must not lose it

    async def begin(self) -> None:
        """Connect, boot, start a transaction, send a reading."""
        charger = await self.connect()
        await send(charger, "boot_notification")
        await send(charger, "status_available", connectorId=1)
        minute = CHARGERS.index(self.cp)  # each its own start time: a replay is told apart by it
        started = await send(
            charger, "start_transaction", meterStart=METER_START, timestamp=f"2026-11-21T10:{minute:02}:00Z"
        )
        self.transaction_id = started.transaction_id
        await self.read_meter(METER_START + 100)

    async def stop(self) -> None:
        assert self.charger is not None
        await send(
            self.charger, "stop_transaction", transactionId=self.transaction_id, meterStop=METER_START + STOPPED_ENERGY
        )

    async def close(self) -> None:
        if self.link is not None:
            with contextlib.suppress(Exception):
                await self.link.__aexit__()

    async def next_call(self) -> tuple[str, dict[str, Any]]:
        assert self.charger is not None
        call = await self.charger.next_call()
        self.calls.append(call)
        return call


@pytest.fixture
async def site(
    broker: Mosquitto,
    redis_server: RedisServer,
    start_haproxy: StartHAProxy,
    connector_name: str,
    tmp_path: Path,
    probe: MqttProbe,
) -> AsyncIterator[Site]:
    fleet = Fleet(broker, redis_server, connector_name, tmp_path, probe, [f"connector-{i}" for i in (1, 2, 3)])
    await fleet.start()
    proxy = start_haproxy([Backend(i.name, "127.0.0.1", i.ocpp_port, i.http_port) for i in fleet.instances])
    await until(lambda: all_up(proxy), WAIT_S)
    running = Site(fleet, proxy, redis_server.url, [Station(cp, proxy.url) for cp in CHARGERS])
    yield running
    for station in running.stations:
        await station.close()
    for instance in fleet.instances:
        await instance.kill()
        if instance.process is not None:  # shown by pytest when the test failed
            print(f"--- {instance.name} ---\n{''.join(instance.process.lines[-40:])}")
    probe.publish(fleet.topic("datapoint_map"), b"", retain=True)


@dataclass
class Site:
    fleet: Fleet
    proxy: HAProxy
    redis_url: str
    stations: list[Station]
    topics: dict[str, str] = field(default_factory=dict)  # actuator key -> its command topic

    def holders(self) -> dict[str, str]:
        """Which instance holds each charger, as Redis records it."""
        client = redis.Redis.from_url(self.redis_url, decode_responses=True)
        try:
            held: dict[str, str] = client.hgetall(prefix(self.fleet.name) + "owners")  # type: ignore[assignment]
            return held
        finally:
            client.close()

    async def open(self) -> None:
        """Map every charger's limit and sensors; each boots and starts a transaction."""
        mapped = tuple(name for s in self.stations for name in sensors(s.cp).values())
        self.topics = await self.fleet.map_actuators(*(limit_key(s.cp) for s in self.stations), sensors=mapped)
        await asyncio.gather(*(s.begin() for s in self.stations))

    def command_limits(self, amps: int) -> dict[str, int]:
        """A limit to every charger; how many statuses each had before."""
        before = {s.cp: len(self.fleet.statuses(limit_key(s.cp))) for s in self.stations}
        for station in self.stations:
            self.fleet.command(self.topics[limit_key(station.cp)], amps)
        return before

    async def limits_arrive_once(self, before: dict[str, int]) -> None:
        """Each charger receives the limit, and its status comes once, Accepted."""
        calls = await asyncio.gather(*(s.next_call() for s in self.stations))
        assert {call[0] for call in calls} == {"SetChargingProfile"}
        for station in self.stations:
            statuses = await self.fleet.status(limit_key(station.cp), before[station.cp] + 1, within=20)
            assert statuses[before[station.cp] :] == ["Accepted"], station.cp


async def test_a_site_loses_one_instance_and_keeps_control(site: Site) -> None:
    await site.open()
    held = site.holders()
    assert set(held) == set(CHARGERS)
    assert len(set(held.values())) >= 2, f"HAProxy spread 16 chargers over one instance only: {held}"
    await site.limits_arrive_once(site.command_limits(16))

    # SIGKILL the instance holding the most chargers; a limit for every charger while its
    # chargers are away; they reconnect through HAProxy and get it, once.
    victim = max(set(held.values()), key=list(held.values()).count)
    orphans = [s for s in site.stations if held[s.cp] == victim]
    since = len(site.fleet.probe.messages)
    killed_at = now_ms()
    await next(i for i in site.fleet.instances if i.name == victim).kill()
    await asyncio.gather(*(s.dropped() for s in orphans))
    before = site.command_limits(10)
    await asyncio.gather(*(s.connect() for s in orphans))
    await site.limits_arrive_once(before)
    assert set(site.holders()) == set(CHARGERS)
    assert victim not in site.holders().values()

    await ends_with_its_energy(site, since)
    # A third limit, the fence: a late duplicate of the first two would have come before it.
    await site.limits_arrive_once(site.command_limits(8))
    for station in site.stations:
        assert [c[0] for c in station.calls] == ["SetChargingProfile"] * 3, station.cp
        assert station.charger is not None and station.charger.received.empty(), station.cp
        assert site.fleet.statuses(limit_key(station.cp)) == ["Accepted"] * 3, station.cp

    await ids_stay_unique(site)
    nothing_answered_is_lost(site)
    await connected_corrected(site, orphans, since, killed_at)


async def ends_with_its_energy(site: Site, since: int) -> None:
    """Each charger sends a reading and stops its transaction; the energy counts from its start."""
    for station in site.stations:
        await station.read_meter(METER_START + 200)
    await asyncio.gather(*(s.stop() for s in site.stations))
    for station in site.stations:
        energy = await site.fleet.probe.wait_for(site.fleet.sensor(sensors(station.cp)[ENERGY]), since=since)
        assert energy["value"] == STOPPED_ENERGY, station.cp


async def ids_stay_unique(site: Site) -> None:
    """A new transaction on each charger gets an id above its last."""
    for station in site.stations:
        assert station.charger is not None
        later = await send(station.charger, "start_transaction", timestamp="2026-11-21T12:00:00Z")
        assert later.transaction_id > station.transaction_id, station.cp


def nothing_answered_is_lost(site: Site) -> None:
    """Every reading the connector answered reached the broker."""
    for station in site.stations:
        arrived = [p["value"] for p in site.fleet.probe.on(site.fleet.sensor(sensors(station.cp)[ENERGY_READING]))]
        assert set(station.readings) <= set(arrived), station.cp


async def connected_corrected(site: Site, orphans: list[Station], since: int, killed_at: int) -> None:
    """The killed instance's chargers: `connected` false (at its last sign of life), then true
    again, as soon as the instance that took them knows the other is dead (within seconds)."""
    for station in orphans:
        topic = site.fleet.sensor(sensors(station.cp)["connected"])
        gone = await site.fleet.probe.wait_for(topic, lambda p: p["value"] is False, since=since)
        await site.fleet.probe.wait_until(lambda: site.fleet.probe.on(topic)[-1]["value"] is True)  # noqa: B023
        back = site.fleet.probe.on(topic)[-1]
        assert gone["timestamp"] <= killed_at < back["timestamp"], station.cp
