"""One instance among several: its name, its sign of life, and the chargers of the dead.

Runs beside the service when STATE_URL is set (INTERFACE section 10):

- At start it claims its CONNECTOR_INSTANCE among the live instances (a second live
  instance of the same name is refused: `InstanceNameTakenError`), retrying while Redis
  cannot be reached (`/readyz` says 503 meanwhile).
- Every ALIVE_EVERY_S it renews its sign of life; an instance that misses ALIVE_TTL_S of
  them is dead for the others.
- A dead instance's chargers: those that came back here before it was known dead
  (a killed process's chargers reconnect within a second, before its sign of life
  expires) get `connected = false` at its last sign of life, then `true`; those that came
  back nowhere get `false` from the one instance that claims the sweep.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Protocol

import redis

from connector.shared import ALIVE_EVERY_S, ALIVE_TTL_S, Shared

LOG = logging.getLogger(__name__)

SWEEP_CLAIM_S = 30.0  # one instance sweeps a dead one's chargers; another may after this
RETRY_REPORT_S = 30.0  # an unreachable Redis is logged at most this often
# A charger taken over from an instance that still looked alive is checked this long: a
# killed instance is known dead within ALIVE_TTL_S; one alive by then lost it to a move.
TAKEOVER_WATCH_S = 2 * ALIVE_TTL_S + ALIVE_EVERY_S


class Here(Protocol):
    """What Presence needs of this instance's chargers (the service gives it)."""

    def served(self) -> Collection[str]:
        """The chargers this instance serves now (their handover done)."""

    def lost(self, cp: str, at: int, back: bool) -> None:
        """`connected = false` at `at` (the instance serving it died then); `back`: then `true` again."""

    def back(self, cp: str) -> None:
        """`connected = true` again: another instance said it was gone while it was served here."""

    def close(self, cp: str) -> None:
        """Close its connection here, saying nothing: another instance serves it now."""

    def restate(self, cps: list[str]) -> None:
        """Write the transaction state of these chargers to Redis again (Redis lost it)."""


class Presence:
    def __init__(
        self,
        shared: Shared,
        here: Here,
        adopt_spools: Callable[[str], Awaitable[None]] | None = None,  # shared_spool.SpoolAdopter.adopt
    ) -> None:
        self._shared = shared
        self._here = here
        self._adopt_spools = adopt_spools
        self._releases: set[str] = set()  # chargers gone from here whose release Redis did not take
        self.named = asyncio.Event()  # the name is ours: chargers may be served
        self._takeovers: dict[str, tuple[str, float]] = {}  # charger -> (instance it came from, when)
        # An earlier process of this name (killed, restarted): its last sign of life, and the
        # chargers it held that have not come back here yet (see `came_back`).
        self._earlier_seen: int | None = None
        self._stale: set[str] = set()
        self._stale_since = 0.0
        self._last_report = 0.0

    def release_later(self, cp: str) -> None:
        """A charger left here and Redis did not take its release: tried again every tick."""
        self._releases.add(cp)

    def taken_from(self, cp: str, instance: str) -> None:
        """A charger came here from `instance`, which looked alive (see TAKEOVER_WATCH_S)."""
        self._takeovers[cp] = (instance, time.monotonic())

    async def run(self) -> None:
        """Claim the name (InstanceNameTakenError if another live instance has it), then keep it."""
        await self._retrying(self._claim_name)
        self.named.set()
        LOG.info("instance %s: serving with the others through Redis %s", self._shared.instance, self._shared.where)
        while True:
            await asyncio.sleep(ALIVE_EVERY_S)
            await self._retrying(self._tick, once=True)

    async def _retrying(self, step: Callable[[], object], once: bool = False) -> None:
        while True:
            try:
                await step()  # type: ignore[misc]
                return
            except (redis.RedisError, OSError) as error:
                if time.monotonic() - self._last_report >= RETRY_REPORT_S:
                    self._last_report = time.monotonic()
                    LOG.error("Redis (STATE_URL) unreachable: %s; retrying", error)
                if once:
                    return
                await asyncio.sleep(ALIVE_EVERY_S)

    async def _claim_name(self) -> None:
        """The name, and the chargers an earlier process of this name held (killed: nobody said they left)."""
        self._earlier_seen = await self._shared.claim_name()
        if self._earlier_seen is not None:
            self._stale = set(await self._shared.held_by(self._shared.instance))
            self._stale_since = time.monotonic()

    def came_back(self, cp: str) -> int | None:
        """A charger held by this name arrives: when the earlier process that held it died, if it did."""
        if cp in self._stale:
            self._stale.discard(cp)
            return self._earlier_seen
        return None

    async def _tick(self) -> None:
        ours, lapsed = await self._shared.still_alive()
        if not ours:
            LOG.error(
                "instance %s: another instance took this name while this one was unresponsive", self._shared.instance
            )
        elif lapsed:
            await self._hold_again()
        await self._reconcile()
        for instance in {came_from for came_from, _ in self._takeovers.values()}:
            if not await self._shared.alive(instance):
                await self._taken_from_dead(instance)
        for instance in await self._shared.dead():
            await self._sweep(instance)
        self._expire_takeovers()
        if self._stale and time.monotonic() - self._stale_since >= TAKEOVER_WATCH_S:
            await self._sweep_stale()

    async def _hold_again(self) -> None:
        """This instance's sign of life had lapsed: paused past ALIVE_TTL_S (another instance
        may have swept its chargers: `connected = false`), or Redis lost its data. It holds
        again the chargers still connected here that nobody else took, says `connected = true`
        for them, and writes their transaction state again."""
        served = list(self._here.served())
        held = await self._shared.reassert(served)
        for cp in held:
            self._here.back(cp)
        self._here.restate(held)
        LOG.warning(
            "instance %s: its sign of life had lapsed (paused, or Redis lost its data); holds %d chargers again",
            self._shared.instance,
            len(held),
        )

    async def _reconcile(self) -> None:
        """What this instance serves against what Redis says it holds: a charger another instance
        took (a second live connection of the same identity, there) is closed here, without
        `false`; a release Redis did not take is tried again."""
        served = set(self._here.served())  # before asking: one arriving meanwhile is not in the answer
        held = set(await self._shared.held_by(self._shared.instance))
        for cp in served - held:
            if cp in self._here.served():
                LOG.warning("%s: served by another instance now; its connection here is closed", cp)
                self._here.close(cp)
        for cp in list(self._releases):
            if cp not in self._here.served():
                await self._shared.release(cp)
            self._releases.discard(cp)

    async def _sweep_stale(self) -> None:
        """The earlier process's chargers that came back nowhere: gone since it died."""
        stale, self._stale = self._stale, set()
        connected = self._here.served()
        for cp in stale - set(connected):
            if await self._shared.release(cp):
                await self._shared.orphan(cp)
                self._here.lost(cp, self._earlier_seen or 0, False)

    async def _taken_from_dead(self, instance: str) -> None:
        """Chargers that came here from `instance` while it still looked alive: it died."""
        lost_at = await self._shared.last_seen(instance) or 0
        for cp, (came_from, _) in list(self._takeovers.items()):
            if came_from == instance:
                del self._takeovers[cp]
                if cp in self._here.served():
                    self._here.lost(cp, lost_at, True)

    async def _sweep(self, instance: str) -> None:
        """A dead instance's chargers that came back nowhere: gone (one instance does this)."""
        if not await self._shared.claim_sweep(instance, SWEEP_CLAIM_S):
            return
        lost_at = await self._shared.last_seen(instance) or 0
        swept = 0
        for cp in await self._shared.held_by(instance):
            if await self._shared.release(cp, instance):
                await self._shared.orphan(cp)
                self._here.lost(cp, lost_at, False)
                swept += 1
        # What it had answered but not handed to the broker: delivered here (before it is
        # forgotten: if this fails, the sweep is tried again once its claim expires).
        if self._adopt_spools is not None:
            await self._adopt_spools(instance)
        await self._shared.forget_instance(instance)
        if swept:
            LOG.warning(
                "instance %s is gone: %d of its chargers not back yet, published as disconnected", instance, swept
            )

    def _expire_takeovers(self) -> None:
        horizon = time.monotonic() - TAKEOVER_WATCH_S
        for cp, (_, at) in list(self._takeovers.items()):
            if at < horizon:
                del self._takeovers[cp]
