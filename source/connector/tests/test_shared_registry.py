"""The registry and the roster shared through Redis: every instance lists and routes the whole fleet's keys.

Against a real redis-server of the test's own. The in-process tests pair two instances'
registry sides (a Registry, a Roster, a SharedRegistryStore, an Upkeep and a FleetMerge
each) on one Redis, the way two connector processes would be; the end-to-end tests run two
connector processes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from connector import shared_registry
from connector.datapoints import Datapoint
from connector.fleet import Member, Roster
from connector.registry import ActuatorRef, KeyRecord, Registry
from connector.shared import Shared, prefix
from connector.shared_listing import FleetMerge, ListingLease
from connector.shared_registry import SharedRegistryStore
from connector.tests.harness import WAIT_S, ChargerLink, ConnectorProcess, Mosquitto, MqttProbe, send
from connector.tests.harness_ha import Fleet, Instance, RedisServer
from connector.upkeep import Upkeep

FORGET_AFTER = 3600.0
PUBLISHES = "publishes the fleet's available_datapoints"
MODEL = "CP_1__BootNotification__charge_point_model"
UNLOCK_2 = "CP_1__execute_unlock_connector__2"
UNLOCK_REF = ActuatorRef("CP_1", "execute_unlock_connector", 2)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeListing:
    """The MQTT side as FleetMerge sees it: what it was told."""

    changes: int = 0
    listed: list[str] = field(default_factory=list)

    def listing_changed(self) -> None:
        self.changes += 1

    def list_actuators(self, cp: str) -> None:
        self.listed.append(cp)


class Side:
    """One instance's registry side, as service.py builds it with STATE_URL."""

    def __init__(self, url: str, name: str, instance: str, clock: Clock) -> None:
        self.url, self.name = url, name
        self.registry = Registry()
        self.roster = Roster(FORGET_AFTER, 10, clock=clock)
        self.store = SharedRegistryStore(url, name, instance)
        self.listing = FakeListing()
        self.here: set[str] = set()  # connected to this instance
        self.forgotten: list[str] = []
        self.merge = FleetMerge(
            self.store, self.registry, self.roster, self.listing, here=self.here.__contains__, forget=self._forget
        )
        self.upkeep = Upkeep(self.registry, self.roster, self.store, self._forget, exchange=self.merge.exchange)

    def _forget(self, cp: str) -> None:  # service._forget, its registry part
        self.registry.forget(cp)
        self.forgotten.append(cp)

    async def tick(self) -> None:
        """One upkeep tick: save, then take in what was saved."""
        assert await self.upkeep.save()
        await self.merge.exchange()

    def connect(self, cp: str, boot: bool = True) -> None:
        self.here.add(cp)
        self.roster.arrived(cp)
        if boot:
            self.roster.booted(cp)
        self.registry.add_sensor(Datapoint(f"{cp}__connected", True, 1), cp)

    def disconnect(self, cp: str) -> None:
        self.here.discard(cp)
        self.roster.left(cp)

    def listing_of(self) -> str:
        return self.registry.available_datapoints().decode()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def pair(redis_url: str, connector_name: str, clock: Clock) -> AsyncIterator[tuple[Side, Side]]:
    """Instances A and B, both loaded (their first tick)."""
    a, b = Side(redis_url, connector_name, "a", clock), Side(redis_url, connector_name, "b", clock)
    await a.merge.exchange()
    await b.merge.exchange()
    yield a, b
    a.store.close()
    b.store.close()


def records_of(store: SharedRegistryStore) -> tuple[set[KeyRecord], dict[str, Member]]:
    records, members = store.load()
    return set(records), members


def saved(side: Side) -> tuple[set[KeyRecord], dict[str, Member]]:
    """What Redis holds, read by a store of its own (a load moves a store's place in the stream)."""
    store = SharedRegistryStore(side.url, side.name, "inspector")
    try:
        return records_of(store)
    finally:
        store.close()


def hold(side: Side, cp: str) -> None:
    """What instances.py and handover.py say in Redis of a charger this instance serves."""
    plain = redis.Redis.from_url(side.url)
    plain.hset(prefix(side.name) + "owners", cp, side.store.instance)
    plain.set(prefix(side.name) + f"alive:{side.store.instance}", side.store.instance)
    plain.close()


# -- the store ----------------------------------------------------------------------------

SENSOR = KeyRecord(MODEL, "CP_1", "Wallbox")
ACTUATOR = KeyRecord("CP_1__execute_reset", "CP_1", "Soft", ActuatorRef("CP_1", "execute_reset", 0))
OTHER = KeyRecord("CP_2__connected", "CP_2", True)


def test_what_is_saved_loads_in_a_new_store(redis_url: str, connector_name: str) -> None:
    """Keys (actuators with their ActuatorRef) and roster entries come back from a new store on the same Redis."""
    store = SharedRegistryStore(redis_url, connector_name, "a")
    store.save([SENSOR, ACTUATOR], {"CP_1": Member(True, None)}, [])
    store.save([OTHER, SENSOR], {"CP_2": Member(False, 12.5)}, [])
    store.close()
    reopened = SharedRegistryStore(redis_url, connector_name, "b")
    assert records_of(reopened) == (
        {SENSOR, ACTUATOR, OTHER},
        {"CP_1": Member(True, None), "CP_2": Member(False, 12.5)},
    )
    assert reopened.path == f"redis {prefix(connector_name)}keys"
    reopened.close()


def test_a_forgotten_charge_point_leaves_nothing_in_redis(redis_url: str, connector_name: str) -> None:
    """Forgetting deletes the charge point's keys and roster entry; an arrival in the same save is kept."""
    store = SharedRegistryStore(redis_url, connector_name, "a")
    store.save([SENSOR, ACTUATOR, OTHER], {"CP_1": Member(True, 1.0), "CP_2": Member()}, [])
    store.save([], {}, ["CP_1"])
    assert records_of(store) == ({OTHER}, {"CP_2": Member()})
    back = KeyRecord("CP_2__Heartbeat", "CP_2", 5)
    store.save([back], {"CP_2": Member(True, None)}, ["CP_2"])
    assert records_of(store) == ({back}, {"CP_2": Member(True, None)})
    store.close()


# -- two instances ------------------------------------------------------------------------


async def test_keys_added_on_one_instance_are_listed_and_routable_on_the_other(pair: tuple[Side, Side]) -> None:
    """A charger's keys seen by A reach B's listing and actuator routing, unsaved; A's own come back harmless."""
    a, b = pair
    a.connect("CP_1")
    a.registry.add_sensor(Datapoint(MODEL, "Wallbox", 1), "CP_1")
    a.registry.add_actuator(UNLOCK_2, UNLOCK_REF, True)
    own_listing = a.listing_of()
    await a.tick()
    await b.tick()
    assert b.listing_of() == own_listing
    assert b.registry.actuator_refs[UNLOCK_2] == UNLOCK_REF
    assert b.roster.is_booted("CP_1")
    assert b.roster.members["CP_1"].absent_since is None  # connected, at A
    assert b.listing.changes == 1
    assert list(b.registry.take_unsaved()) == [] and b.roster.take_changes() == ({}, [])
    await a.tick()  # A reads its own save back
    assert a.listing_of() == own_listing
    assert a.registry.key_count("CP_1") == 3
    assert a.listing.changes == 0


async def test_a_charger_connected_elsewhere_is_not_forgotten(pair: tuple[Side, Side], clock: Clock) -> None:
    """B saw the charger leave long ago; it connected to A since: B does not forget it."""
    a, b = pair
    b.connect("CP_1")
    b.disconnect("CP_1")
    await b.tick()
    clock.now += 10
    a.connect("CP_1", boot=False)
    await a.tick()
    await b.tick()
    clock.now += 2 * FORGET_AFTER
    assert b.upkeep.forget_due() == 0
    assert b.roster.members["CP_1"] == Member(True, None)


async def known_to_both_and_gone(a: Side, b: Side) -> None:
    """CP_1 connected to A with an actuator, then left; both instances know it."""
    a.connect("CP_1")
    a.registry.add_actuator(UNLOCK_2, UNLOCK_REF, True)
    a.disconnect("CP_1")
    await a.tick()
    await b.tick()


async def test_a_charger_forgotten_by_one_instance_is_forgotten_by_all(pair: tuple[Side, Side], clock: Clock) -> None:
    """A forgets a charger gone too long; B drops its keys and roster entry, and Redis keeps nothing of it."""
    a, b = pair
    await known_to_both_and_gone(a, b)
    assert UNLOCK_2 in b.registry.actuator_refs
    clock.now += 2 * FORGET_AFTER
    assert a.upkeep.forget_due() == 1
    await a.tick()
    await b.tick()
    assert b.forgotten == ["CP_1"]
    assert "CP_1" not in b.roster.members
    assert b.registry.key_count("CP_1") == 0 and UNLOCK_2 not in b.registry.actuator_refs
    assert b.roster.take_changes() == ({}, [])  # B's own forgetting is not saved again
    assert saved(b) == (set(), {})
    await a.tick()
    assert a.forgotten == ["CP_1"]  # A's forget read back: nothing more


async def test_a_charger_forgotten_elsewhere_while_connected_here_is_kept(
    pair: tuple[Side, Side], clock: Clock
) -> None:
    """A forgets a charger that has just connected to B: B keeps it and saves its keys again, and A learns them back."""
    a, b = pair
    await known_to_both_and_gone(a, b)
    clock.now += 2 * FORGET_AFTER
    b.connect("CP_1", boot=False)
    assert a.upkeep.forget_due() == 1
    await a.tick()
    await b.tick()  # B's arrival saved after A's forget; B reads the forget
    assert UNLOCK_2 in b.registry.actuator_refs and b.forgotten == []
    await b.tick()  # its keys saved again
    records, members = saved(b)
    assert members == {"CP_1": Member(True, None)}
    assert KeyRecord(UNLOCK_2, "CP_1", True, UNLOCK_REF) in records
    await a.tick()
    assert a.registry.actuator_refs[UNLOCK_2] == UNLOCK_REF


async def test_a_late_departure_of_a_charger_connected_here_is_corrected(pair: tuple[Side, Side]) -> None:
    """A saves that the charger left after B saved it arrived: B says again that it is connected."""
    a, b = pair
    a.connect("CP_1")
    await a.tick()
    b.connect("CP_1")
    await b.tick()
    a.disconnect("CP_1")
    await a.tick()
    await b.tick()  # reads A's departure; says otherwise
    assert b.roster.members["CP_1"].absent_since is None
    await b.tick()
    await a.tick()
    assert saved(b)[1]["CP_1"].absent_since is None
    assert a.roster.members["CP_1"].absent_since is None


async def test_a_boot_seen_elsewhere_lists_the_actuators_of_a_charger_here(pair: tuple[Side, Side]) -> None:
    """A charger connected to B without a boot is listed once B learns it booted at A."""
    a, b = pair
    b.connect("CP_1", boot=False)
    await b.tick()
    a.roster.booted("CP_1")  # its BootNotification reached A (a connection B has not noticed closing yet)
    await a.tick()
    await b.tick()
    assert b.listing.listed == ["CP_1"]


async def test_a_load_trusts_connected_only_where_a_live_instance_holds_the_charger(
    redis_url: str, connector_name: str, clock: Clock
) -> None:
    """At start, a charger that Redis says is connected is so only if a live instance owns it; else absent since now."""
    store = SharedRegistryStore(redis_url, connector_name, "a")
    store.save([], {"CP_HELD": Member(True, None), "CP_ORPHAN": Member(True, None)}, [])
    store.close()
    plain = redis.Redis.from_url(redis_url)
    plain.hset(prefix(connector_name) + "owners", mapping={"CP_HELD": "c", "CP_ORPHAN": "dead"})
    plain.set(prefix(connector_name) + "alive:c", "c")
    plain.close()
    b = Side(redis_url, connector_name, "b", clock)
    await b.merge.exchange()
    assert b.merge.loaded.is_set()
    assert b.roster.members == {"CP_HELD": Member(True, None), "CP_ORPHAN": Member(True, clock.now)}
    await b.tick()  # and says so
    assert saved(b)[1]["CP_ORPHAN"] == Member(True, clock.now)
    b.store.close()


async def test_an_instance_behind_the_trimmed_stream_loads_everything_again(
    pair: tuple[Side, Side], clock: Clock, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """B misses entries the stream no longer holds: it loads everything, forgetting what was forgotten meanwhile."""
    a, b = pair
    a.connect("CP_OLD")
    a.disconnect("CP_OLD")
    await a.tick()
    await b.tick()
    assert "CP_OLD" in b.roster.members
    monkeypatch.setattr(shared_registry, "ENTRY_ITEMS", 1)  # one stream entry per key: hundreds
    monkeypatch.setattr(shared_registry, "STREAM_MAXLEN", 10)
    clock.now += 2 * FORGET_AFTER
    assert a.upkeep.forget_due() == 1
    a.connect("CP_1")
    hold(a, "CP_1")
    for index in range(300):
        a.registry.add_sensor(Datapoint(f"CP_1__k{index}", index, 1), "CP_1")
    await a.tick()
    await b.tick()
    assert "fell behind the changes" in caplog.text
    assert b.forgotten == ["CP_OLD"] and "CP_OLD" not in b.roster.members
    assert b.registry.key_count("CP_1") == 301
    assert json.loads(b.listing_of()) == json.loads(a.listing_of())
    assert b.roster.members["CP_1"] == Member(True, None)  # held by A, alive


async def test_when_redis_loses_its_data_the_instances_save_what_they_know_again(pair: tuple[Side, Side]) -> None:
    """A Redis restarted empty: no instance forgets the fleet; both save everything again."""
    a, b = pair
    a.connect("CP_1")
    a.registry.add_actuator(UNLOCK_2, UNLOCK_REF, True)
    hold(a, "CP_1")
    await a.tick()
    await b.tick()
    plain = redis.Redis.from_url(a.url)
    plain.flushall()
    plain.close()
    await b.tick()  # finds out; saves at its next tick
    await b.tick()
    assert b.forgotten == [] and b.registry.actuator_refs[UNLOCK_2] == UNLOCK_REF
    records, members = saved(b)
    assert KeyRecord(UNLOCK_2, "CP_1", True, UNLOCK_REF) in records
    assert members == {"CP_1": Member(True, None)}


async def test_the_roster_keeps_as_many_absent_chargers_as_all_instances_may_serve(pair: tuple[Side, Side]) -> None:
    """Each instance's roster holds the fleet: its bound of absent chargers grows with the instances that run."""
    a, _ = pair
    plain = redis.Redis.from_url(a.url)
    plain.sadd(prefix(a.name) + "instances", "a", "b", "c")
    plain.close()
    await a.tick()
    assert a.roster.max_absent == 30


# -- the listing's publisher ----------------------------------------------------------------


async def test_one_instance_publishes_the_listing_and_a_survivor_takes_over(
    redis_url: str, connector_name: str
) -> None:
    """Of two instances one holds the lease; when it dies without giving it up, the other takes it after its TTL."""
    shared = [Shared(redis_url, connector_name, name) for name in ("a", "b")]
    gained = [asyncio.Event(), asyncio.Event()]
    leases = [ListingLease(s, event.set, ttl_s=0.6, every_s=0.1) for s, event in zip(shared, gained, strict=True)]
    ready = asyncio.Event()
    ready.set()
    runs = [asyncio.create_task(leases[0].run(ready))]
    async with asyncio.timeout(WAIT_S):
        await gained[0].wait()
    runs.append(asyncio.create_task(leases[1].run(ready)))
    await leases[1].renew()
    assert leases[0].held() and not leases[1].held()
    runs[0].cancel()  # A dies: no release
    async with asyncio.timeout(WAIT_S):
        await gained[1].wait()
    assert leases[1].held() and not leases[0].held()
    await leases[1].release()
    assert not leases[1].held()
    await leases[0].renew()  # a clean stop gives it up at once
    assert leases[0].held()
    for run in runs:
        run.cancel()
    await asyncio.gather(*runs, return_exceptions=True)
    for s in shared:
        await s.close()


def test_any_example_survives_the_round_trip(redis_url: str, connector_name: str) -> None:
    """Examples of every JSON type come back as they were (the listing shows them)."""
    examples: list[Any] = ["text", 1, 2.5, True, None, {"a": [1, 2]}]
    records = [KeyRecord(f"CP_1__k{i}", "CP_1", example) for i, example in enumerate(examples)]
    store = SharedRegistryStore(redis_url, connector_name, "a")
    store.save(records, {"CP_1": Member()}, [])
    assert sorted(store.load()[0], key=lambda r: r.key) == records
    store.close()


# -- two connector processes ----------------------------------------------------------------


@pytest.fixture
async def fleet(
    broker: Mosquitto, redis_server: RedisServer, connector_name: str, tmp_path: Path, probe: MqttProbe
) -> AsyncIterator[Fleet]:
    """Instances `a` and `b` of one connector on one Redis, not started."""
    running = Fleet(broker, redis_server, connector_name, tmp_path, probe, ["a", "b"])
    yield running
    for instance in running.instances:
        await instance.kill()
    probe.publish(running.topic("datapoint_map"), b"", retain=True)  # the retained map, cleared


async def start(instance: Instance) -> ConnectorProcess:
    await instance.start()
    assert instance.process is not None
    return instance.process


async def test_keys_of_a_charger_on_one_process_are_listed_by_and_reach_it_through_another(
    fleet: Fleet, probe: MqttProbe
) -> None:
    """B publishes the listing with A's charger's keys; A killed, the charger back at B without a boot gets a
    command for its quiet connector 2."""
    a, b = fleet.instances
    await (await start(b)).wait_for_line(PUBLISHES)
    await start(a)
    (command,) = (await fleet.map_actuators(UNLOCK_2, sensors=("CP_1__connected",))).values()
    async with ChargerLink(a.url, "CP_1") as charger:
        await send(charger, "boot_notification")
        await send(charger, "status_available", connectorId=2)
        await probe.wait_for(
            fleet.topic("available_datapoints"), lambda p: UNLOCK_2 in p["actuator"] and MODEL in p["sensor"]
        )
        await a.kill()
        async with asyncio.timeout(WAIT_S):
            await charger._connection.wait_closed()
    assert a.process is not None and not [line for line in a.process.lines if PUBLISHES in line]  # B published
    since = len(probe.messages)
    async with ChargerLink(b.url, "CP_1") as charger:  # no BootNotification, nothing of connector 2
        charger.answers["UnlockConnector"] = "Unlocked"
        await probe.wait_for(fleet.sensor("CP_1__connected"), lambda p: p["value"] is True, since=since)
        fleet.command(command, True)
        assert await charger.next_call() == ("UnlockConnector", {"connector_id": 2})
        assert await fleet.status(UNLOCK_2, 1) == ["Unlocked"]


async def test_when_the_publisher_dies_another_instance_publishes_the_listing(fleet: Fleet, probe: MqttProbe) -> None:
    """The listing's publisher killed, the other instance takes the lease over and publishes within seconds."""
    a, b = fleet.instances
    await (await start(b)).wait_for_line(PUBLISHES)
    survivor = await start(a)
    async with ChargerLink(a.url, "CP_1") as charger:
        await send(charger, "boot_notification")
        await probe.wait_for(fleet.topic("available_datapoints"), lambda p: MODEL in p["sensor"])
    since = len(probe.messages)
    await b.kill()
    await survivor.wait_for_line(PUBLISHES)
    listing = await probe.wait_for(fleet.topic("available_datapoints"), since=since)
    assert MODEL in listing["sensor"] and "CP_1__execute_reset" in listing["actuator"]


async def test_a_charger_of_a_dead_instance_that_comes_back_nowhere_is_absent_for_all(
    fleet: Fleet, probe: MqttProbe, redis_server: RedisServer
) -> None:
    """The instance that sweeps a killed one's charger marks it absent in Redis, so that it is forgotten in time."""
    a, b = fleet.instances
    survivor = await start(b)
    await start(a)
    async with ChargerLink(a.url, "CP_1") as charger:
        await send(charger, "boot_notification")
        await probe.wait_for(fleet.topic("available_datapoints"), lambda p: MODEL in p["sensor"])
        await a.kill()
        async with asyncio.timeout(WAIT_S):
            await charger._connection.wait_closed()
    await survivor.wait_for_line("instance a is gone")
    assert await departure_saved(redis_server.url, fleet.name, "CP_1") > 0


async def departure_saved(url: str, name: str, cp: str) -> float:
    """When the charger left, as the first save that says so tells the others (the stream, read as they read it)."""
    client = redis.Redis.from_url(url)
    stream, last = prefix(name) + "registry", b"0-0"
    try:
        async with asyncio.timeout(WAIT_S):
            while True:
                found: list[Any] = await asyncio.to_thread(client.xread, {stream: last}, block=500)  # type: ignore[arg-type]
                for _, entries in found:
                    for entry_id, fields in entries:
                        last = entry_id
                        for member, _, since in json.loads(fields.get(b"members", b"[]")):
                            if member == cp and since is not None:
                                return float(since)
    finally:
        client.close()
