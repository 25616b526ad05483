"""Who serves a charge point: one instance at a time (INTERFACE section 10).

The dispatcher asks `arrive` before it serves a new connection and `leave` when one ends.
One instance alone (`Alone`) has nothing to ask. Several (`Shared`, over Redis) record the
owner of each charger, so that:

- the instance taking a charger over from one that died publishes `<cp>__connected =
  false` timed at the dead one's last sign of life (`Arrival.lost_at`), then `true`;
- an instance whose connection ended after another took the charger over publishes no
  `false` (`leave` says whether this instance still held it);
- commands find who holds a charger (commands.py), and the transaction state is read
  where the charger is served (shared_transactions.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import redis

from connector.charger import ChargerState, RateUnits
from connector.instances import Presence
from connector.shared import Shared
from connector.shared_transactions import SharedTransactionStore
from connector.transactions import StateUnavailableError

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Arrival:
    # ms since 1970: the charger was held by an instance that died then, and nobody has
    # said since that it is gone. None: nothing to correct.
    lost_at: int | None = None
    # The rate units another instance learnt of it (or could not: None), if one did.
    rate_units: RateUnits = None
    rate_units_known: bool = False

    def apply(self, state: ChargerState) -> None:
        """What another instance learnt of the charger, for this one."""
        if self.rate_units_known:
            state.allowed_rate_units = self.rate_units
            state.rate_units_asked = True


class Handover(Protocol):
    async def arrive(self, cp: str) -> Arrival:
        """Take the charger; StateUnavailableError if it cannot be served here now."""

    async def leave(self, cp: str) -> bool:
        """Its connection here ended: whether this instance still held it (then it is gone)."""

    def share(self, cp: str) -> Callable[[RateUnits], None] | None:
        """Where the charger's rate units go when learnt (None: nowhere)."""


class Alone:
    """One instance: every charger is ours."""

    async def arrive(self, cp: str) -> Arrival:
        return Arrival()

    async def leave(self, cp: str) -> bool:
        return True

    def share(self, cp: str) -> Callable[[RateUnits], None] | None:
        return None


class SharedOwnership:
    """Several instances: the owner of each charger in Redis."""

    def __init__(self, shared: Shared, transactions: SharedTransactionStore, presence: Presence) -> None:
        self._shared = shared
        self._transactions = transactions
        # Watches what the handover alone cannot settle: a charger taken from an instance that
        # still looked alive, one an earlier process of this name held, a release Redis refused.
        self._presence = presence
        self._saving: set[asyncio.Task[None]] = set()

    async def arrive(self, cp: str) -> Arrival:
        try:
            previous = await self._shared.take(cp)
            await self._transactions.prepare(cp)
            known, units = await self._shared.rate_units(cp)
            if previous == self._shared.instance:
                # Held by this name: by an earlier process of it (killed), or a blip of our own.
                return Arrival(self._presence.came_back(cp), units, known)
            if previous is None:
                return Arrival(None, units, known)
            if await self._shared.alive(previous):
                # Moved (it publishes no `false` when it notices), or just killed: not known
                # yet, Presence finds out within a few seconds.
                self._presence.taken_from(cp, previous)
                return Arrival(None, units, known)
            lost_at = await self._shared.last_seen(previous)
        except (redis.RedisError, OSError) as error:
            raise StateUnavailableError(f"Redis unreachable ({error})") from error
        LOG.info("%s: taken over from instance %s, which is gone", cp, previous)
        return Arrival(lost_at, units, known)

    def share(self, cp: str) -> Callable[[RateUnits], None] | None:
        def save(units: RateUnits) -> None:
            task = asyncio.get_running_loop().create_task(self._save_rate_units(cp, units))
            self._saving.add(task)
            task.add_done_callback(self._saving.discard)

        return save

    async def _save_rate_units(self, cp: str, units: RateUnits) -> None:
        try:
            await self._shared.save_rate_units(cp, units)
        except (redis.RedisError, OSError) as error:
            # The next instance to take the charger reads them from the charger again.
            LOG.warning("%s: rate units not shared (Redis: %s)", cp, error)

    async def leave(self, cp: str) -> bool:
        self._transactions.left(cp)
        try:
            return await self._shared.release(cp)
        except (redis.RedisError, OSError) as error:
            # Unknown: say it is gone rather than leave it connected for ever (if another
            # instance took it over meanwhile, this `false` is wrong until its next
            # connection: logged), and release it once Redis answers, or commands for it
            # would wait for an instance that no longer serves it.
            LOG.error("%s: could not tell Redis it left (%s); published as disconnected", cp, error)
            self._presence.release_later(cp)
            return True
