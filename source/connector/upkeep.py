"""Upkeep of what the connector knows: save the registry and the roster, forget long-gone chargers.

Runs beside the service. Changes are collected in memory by the registry (new listed keys)
and the roster (arrivals, departures, boots) on the loop thread; every SAVE_EVERY_S they
are taken there and written by a worker thread, so the event loop never waits on the disk
(a save that fails gives them back for the next). Charge points due to be forgotten are
forgotten at the same pace, a batch at a time.

Several instances (STATE_URL) keep the registry in Redis (shared_registry.py): each tick
then also takes in what the others saved (`exchange`), after this instance's own save.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Protocol

from connector.fleet import Member, Roster
from connector.limits import Throttled
from connector.registry import KeyRecord, Registry, Unsaved

LOG = logging.getLogger(__name__)

SAVE_EVERY_S = 2.0
# Charge points forgotten per tick at most: forgetting one costs ~50 us of the loop (its
# listing read back), so a flood of identities is given back in slices, not in one stall.
FORGET_BATCH = 2000
FORGET_REPORT_INTERVAL_S = 60.0


class Store(Protocol):
    """Where the registry and the roster are kept: registry_store.RegistryStore (STATE_DIR) or
    shared_registry.SharedRegistryStore (Redis)."""

    @property
    def path(self) -> Path | str: ...  # for log lines

    def load(self) -> tuple[list[KeyRecord], dict[str, Member]]: ...

    def save(self, records: Iterable[KeyRecord], members: dict[str, Member], forgotten: Iterable[str]) -> None: ...

    def close(self) -> None: ...


class Upkeep:
    def __init__(
        self,
        registry: Registry,
        roster: Roster,
        store: Store,
        forget: Callable[[str], None],
        *,
        exchange: Callable[[], Awaitable[None]] | None = None,
        every_s: float = SAVE_EVERY_S,
    ) -> None:
        self._registry = registry
        self._roster = roster
        self._store = store
        self._forget = forget
        self._exchange = exchange  # several instances: take in what the others saved
        self._every_s = every_s
        self._forgotten_unreported = 0
        self._reports = Throttled(FORGET_REPORT_INTERVAL_S)

    def restore(self) -> None:
        """Load what the store kept into the registry and the roster (at start)."""
        records, members = self._store.load()
        for record in records:
            self._registry.restore(record)
        self._roster.restore(members)
        LOG.info("restored %d datapoint keys of %d charge points from %s", len(records), len(members), self._store.path)

    async def run(self) -> None:
        """Forever: every SAVE_EVERY_S share actuator sets, forget what is due (a batch), save, and
        take in what other instances saved (at once too: their keys are the listing's); save
        once more when stopped."""
        try:
            if self._exchange is not None:
                await self._exchange()
            while True:
                await asyncio.sleep(self._every_s)
                self._registry.actuator_refs.share()  # the chargers that connected meanwhile
                self.forget_due()
                await self.save()
                if self._exchange is not None:
                    await self._exchange()
        finally:
            # The last changes, every charger's departure at shutdown among them.
            self._save(*self._take())

    async def save(self) -> bool:
        """Save what changed, in a worker thread; on failure it is kept for the next save."""
        taken = self._take()
        if not any(taken):  # the usual tick: nothing changed, no thread, no transaction
            return True
        saved = await asyncio.to_thread(self._save, *taken)
        if not saved:
            self._give_back(*taken)
        return saved

    def forget_due(self) -> int:
        """Forget a batch of the charge points due (longest gone first); how many."""
        due = self._roster.due(FORGET_BATCH)
        for cp in due:
            self._forget(cp)
            self._roster.forget(cp)
        self._forgotten_unreported += len(due)
        if self._forgotten_unreported and self._reports.ready():
            LOG.info(
                "forgot %d charge points gone for more than %g s (OCPP_FORGET_AFTER) or beyond the %d most recent",
                self._forgotten_unreported,
                self._roster.forget_after,
                self._roster.max_absent,
            )
            self._forgotten_unreported = 0
        return len(due)

    def _take(self) -> tuple[Unsaved, dict[str, Member], list[str]]:
        records = self._registry.take_unsaved()
        changed, forgotten = self._roster.take_changes()
        if forgotten:  # a key listed just before its charge point was forgotten stays forgotten
            records = records.without(set(forgotten))
        return records, changed, forgotten

    def _save(self, records: Unsaved, changed: dict[str, Member], forgotten: list[str]) -> bool:
        try:
            self._store.save(records, changed, forgotten)
        except Exception:  # a full disk must not stop the service; it says so and goes on
            LOG.exception("could not save the registry to %s; kept in memory, tried again", self._store.path)
            return False
        return True

    def _give_back(self, records: Unsaved, changed: dict[str, Member], forgotten: list[str]) -> None:
        """What a failed save took goes back, ahead of (and under) what changed meanwhile."""
        self._registry.give_back(records)
        self._roster.changed = {**changed, **self._roster.changed}
        self._roster.forgotten[:0] = forgotten
