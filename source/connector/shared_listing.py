"""The whole fleet's listing on every instance (STATE_URL, INTERFACE section 10).

`FleetMerge` takes in, every upkeep tick, what the instances saved to Redis
(shared_registry.py): new keys into the registry (listed and routable), roster entries
into the roster, forgotten charge points out of both. The first tick loads everything. The
stream is applied in the order the saves reached Redis, so every instance ends where the
hashes in Redis are; three rules keep that right when instances disagree:

- A change of a charge point made here and not saved yet is newer than anything read now:
  what others said of it is skipped (this instance's save follows, and is read back).
- A charge point connected here is connected, whatever another instance last said (it
  left there, and that was saved after its arrival here): said again, so Redis agrees.
  Forgotten by another instance (which thought it long gone) it is kept, and its keys saved
  again.
- A load says a charger is connected only where an instance alive now holds it (its
  `owners` entry); others are absent since now: the connector restarted, or their instance
  died.

`ListingLease` makes one instance the publisher of `N/available_datapoints`. Every
instance holds the same listing, and each publishing it would cost the broker and every
subscriber N times a listing of up to 27 MB, with an instance that has not yet read a key
taking it out of the retained listing until its next tick. The lease is a Redis key
(`listing`, SET NX PX, renewed every LEASE_EVERY_S); a dead publisher's runs out after
LEASE_TTL_S and a survivor takes it at its next try, then publishes at once: within about
five seconds. An instance takes it only once it has loaded the fleet's keys, so that no
partial listing replaces the retained one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

import redis

from connector.batches import batched
from connector.fleet import Member, Roster
from connector.limits import Throttled
from connector.registry import KeyRecord, Registry
from connector.shared import Shared
from connector.shared_registry import Changes, SharedRegistryStore

LOG = logging.getLogger(__name__)

TICK_S = 1.0  # upkeep's tick with several instances: a key reaches the others' listing within about two
APPLY_SLICE = 2000  # items applied per loop turn: a load of 300,000 keys must not stall the loop
REPORT_INTERVAL_S = 30.0  # an unreachable Redis is logged at most this often
LEASE_TTL_S = 3.0
LEASE_EVERY_S = 1.0

# Take or renew the lease (KEYS[1]) for this instance (ARGV[1]) for ARGV[2] ms: 1 if it holds it now.
TAKE_LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# Give the lease up, if this instance (ARGV[1]) holds it.
RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Listing(Protocol):
    """The MQTT side's part in it (bemcom.BemcomMqtt)."""

    def listing_changed(self) -> None: ...

    def list_actuators(self, cp: str) -> None: ...


class FleetMerge:
    """Applies what the instances saved to this instance's registry and roster; see the module's docstring."""

    def __init__(
        self,
        store: SharedRegistryStore,
        registry: Registry,
        roster: Roster,
        listing: Listing,
        *,
        here: Callable[[str], bool],  # connected to this instance
        forget: Callable[[str], None],  # everything kept of a charge point, but the roster (service.py)
    ) -> None:
        self._store = store
        self._registry = registry
        self._roster = roster
        self._listing = listing
        self._here = here
        self._forget = forget
        self._max_absent = roster.max_absent  # one instance's share of the roster's bound
        self._reports = Throttled(REPORT_INTERVAL_S)
        self.loaded = asyncio.Event()  # the fleet's keys are here: this instance may publish the listing

    async def exchange(self) -> None:
        """Read what was saved since the last tick (in a worker thread) and apply it; never raises
        for Redis (an unreachable one is tried again at the next tick)."""
        try:
            changes = await asyncio.to_thread(self._store.changes)
        except (redis.RedisError, OSError) as error:
            if self._reports.ready():
                LOG.error("registry: cannot read what was saved in %s (%s); trying again", self._store.path, error)
            return
        await self.apply(changes)

    async def apply(self, changes: Changes) -> None:
        listed = False
        for entry in changes.entries:
            for cp in entry.forgotten:
                self._forgotten_elsewhere(cp)
            for members in batched(entry.members, APPLY_SLICE):
                for cp, member in members:
                    self._member(cp, member, changes.held_elsewhere)
                await asyncio.sleep(0)
            for records in batched(entry.records, APPLY_SLICE):
                for record in records:
                    listed |= self._record(record)
                await asyncio.sleep(0)
        if changes.wiped:
            self._save_again()
        elif changes.held_elsewhere is not None:
            self._loaded(changes)
        # Everything this instance keeps of the fleet grew with the instances (fleet.py's bound).
        self._roster.max_absent = self._max_absent * max(1, changes.instances)
        if listed:
            self._listing.listing_changed()

    def _member(self, cp: str, member: Member, held_elsewhere: frozenset[str] | None) -> None:
        if self._roster.pending(cp):
            return  # changed here since: this instance's save is newer
        newly_booted = self._roster.merge(cp, member)
        if self._here(cp):
            if newly_booted:
                self._listing.list_actuators(cp)  # it booted at another instance before
            if member.absent_since is not None:
                self._roster.arrived(cp)  # it left there, and that was saved after it came here
        elif member.absent_since is None and held_elsewhere is not None and cp not in held_elsewhere:
            self._roster.left(cp)  # a load: no instance alive holds it

    def _record(self, record: KeyRecord) -> bool:
        if record.cp not in self._roster.members or record.cp in self._roster.forgotten:
            return False  # forgotten (by this instance, not saved yet: its save takes the key away)
        return self._registry.restore(record)

    def _forgotten_elsewhere(self, cp: str) -> None:
        if cp in self._roster.forgotten or (cp not in self._roster.members and not self._registry.key_count(cp)):
            return  # forgotten here too (this instance's own, read back)
        if self._here(cp) or cp in self._roster.changed:
            # Gone for long as another instance last heard, but back since: kept, and saved again.
            LOG.info("%s: forgotten by another instance while known here; kept, and saved again", cp)
            if self._here(cp):
                self._roster.arrived(cp)
            self._registry.unsaved += self._registry.records(cp)
            return
        self._forget(cp)
        self._roster.drop(cp)

    def _save_again(self) -> None:
        """Redis lost what it held: everything this instance knows goes to it again."""
        for cp, member in self._roster.members.items():
            self._roster.changed.setdefault(cp, member)
            self._registry.unsaved += self._registry.records(cp)

    def _loaded(self, changes: Changes) -> None:
        """A load: charge points that are not in it were forgotten meanwhile (only those this instance heard of)."""
        (everything,) = changes.entries
        known = {cp for cp, _ in everything.members}
        for cp in [cp for cp in self._roster.members if cp not in known and not self._roster.pending(cp)]:
            self._forgotten_elsewhere(cp)
        if not self.loaded.is_set():
            self.loaded.set()
            count = len(everything.records)
            LOG.info("restored %d datapoint keys of %d charge points from %s", count, len(known), self._store.path)


class ListingLease:
    """Which instance publishes the listing; see the module's docstring."""

    def __init__(
        self,
        shared: Shared,
        gained: Callable[[], None],  # this instance publishes now: the listing goes out at once
        ttl_s: float = LEASE_TTL_S,
        every_s: float = LEASE_EVERY_S,
    ) -> None:
        self._shared = shared
        self._gained = gained
        self._ttl_s = ttl_s
        self._every_s = every_s
        self._key = shared.key("listing")
        self._take = shared.client.register_script(TAKE_LEASE)
        self._release = shared.client.register_script(RELEASE_LEASE)
        # Held until then (monotonic), counted from before the request: the lease in Redis ends
        # later than that, so this instance stops publishing before another may start.
        self._until = 0.0
        self._reports = Throttled(REPORT_INTERVAL_S)

    def held(self) -> bool:
        return time.monotonic() < self._until

    async def run(self, ready: asyncio.Event) -> None:
        """Once `ready` (the fleet's keys loaded), take or renew the lease every `every_s`, forever."""
        await ready.wait()
        while True:
            await self.renew()
            await asyncio.sleep(self._every_s)

    async def renew(self) -> None:
        asked = time.monotonic()
        was_held = self.held()
        args: list[str | int] = [self._shared.instance, int(self._ttl_s * 1000)]
        try:
            taken = await self._shared.call(lambda: self._take(keys=[self._key], args=args))
        except (redis.RedisError, OSError) as error:
            if self._reports.ready():
                LOG.warning("listing lease: Redis unreachable (%s); publishing only while the lease lasts", error)
            return
        self._until = asked + self._ttl_s if taken else 0.0
        if taken and not was_held:
            LOG.info("instance %s publishes the fleet's available_datapoints", self._shared.instance)
            self._gained()
        elif was_held and not taken:
            LOG.info("instance %s no longer publishes available_datapoints: another one does", self._shared.instance)

    async def release(self) -> None:
        """A clean stop: another instance takes over at its next try."""
        if not self.held():
            return
        self._until = 0.0
        try:
            await self._shared.call(lambda: self._release(keys=[self._key], args=[self._shared.instance]))
        except (redis.RedisError, OSError) as error:
            LOG.warning("listing lease: could not give it up (%s); it runs out in %g s", error, self._ttl_s)
