"""Upkeep of what the connector knows: save the registry and the roster, forget long-gone chargers.

Runs beside the service. Changes are collected in memory by the registry (new listed keys)
and the roster (arrivals, departures, boots) on the loop thread; every SAVE_EVERY_S they
are taken there and written by a worker thread, so the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable

from connector.fleet import Member, Roster
from connector.registry import KeyRecord, Registry
from connector.registry_store import RegistryStore

LOG = logging.getLogger(__name__)

SAVE_EVERY_S = 2.0
FORGET_CHECK_EVERY_S = 60.0


class Upkeep:
    def __init__(self, registry: Registry, roster: Roster, store: RegistryStore, forget: Callable[[str], None]) -> None:
        self._registry = registry
        self._roster = roster
        self._store = store
        self._forget = forget

    def restore(self) -> None:
        """Load what the store kept into the registry and the roster (at start)."""
        records, members = self._store.load()
        for record in records:
            self._registry.restore(record)
        self._roster.restore(members)
        LOG.info("restored %d datapoint keys of %d charge points from %s", len(records), len(members), self._store.path)

    async def run(self) -> None:
        """Forever: save every SAVE_EVERY_S, forget the due every FORGET_CHECK_EVERY_S; save once more when stopped."""
        saves_per_check = max(1, round(FORGET_CHECK_EVERY_S / SAVE_EVERY_S))
        try:
            for tick in itertools.count(1):
                await asyncio.sleep(SAVE_EVERY_S)
                if tick % saves_per_check == 0:
                    self.forget_due()
                await asyncio.to_thread(self._save, *self._take())
        finally:
            # The last changes, every charger's departure at shutdown among them.
            self._save(*self._take())

    def forget_due(self) -> int:
        due = self._roster.due()
        for cp in due:
            self._forget(cp)
            self._roster.forget(cp)
        if due:
            LOG.info(
                "forgot %d charge points gone for more than %g s (OCPP_FORGET_AFTER) or beyond the %d most recent",
                len(due),
                self._roster.forget_after,
                self._roster.max_absent,
            )
        return len(due)

    def _take(self) -> tuple[list[KeyRecord], dict[str, Member], list[str]]:
        records = self._registry.take_unsaved()
        changed, forgotten = self._roster.take_changes()
        if forgotten:  # a key listed just before its charge point was forgotten stays forgotten
            gone = set(forgotten)
            records = [r for r in records if r.cp not in gone]
        return records, changed, forgotten

    def _save(self, records: list[KeyRecord], changed: dict[str, Member], forgotten: list[str]) -> None:
        try:
            self._store.save(records, changed, forgotten)
        except Exception:  # a full disk must not stop the service; it says so and goes on
            LOG.exception("could not save the registry to %s; kept in memory", self._store.path)
