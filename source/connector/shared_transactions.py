"""Transaction state in Redis, for several instances (STATE_URL): the store of transactions.py
with its persistence moved from files to Redis.

The rules (ids, settling, seqNos, reservations) are TransactionStore's, unchanged; only the
five persistence hooks differ. A charge point is served by one instance at a time
(handover.py), so its state is read once, when it connects (`prepare`), and written
through from then on:

- Writes (the state as a whole, a seqNo journal line, an id taken) are queued and sent in
  one MULTI/EXEC per event-loop turn, one batch at a time in order, so a later state never
  lands before an earlier one. The session awaits `saved()` before it answers a call: what
  the charger is told is recorded in Redis first, so it survives this instance's death.
  When Redis fails, the answer is a CALLERROR and the charger sends the call again.
- Ids come from `txid:<cp>`, raised by a Lua script (atomic in Redis) and never below the
  clock floor, so two instances that briefly both think they serve a charger (one with a
  half-open connection) still never issue the same id. The handlers that take an id are
  synchronous, so each charger has POOL ids taken in advance, topped up after each use in
  the next batch.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import redis

from connector.shared import Shared
from connector.transactions import StateUnavailableError, TransactionStore

LOG = logging.getLogger(__name__)

POOL = 2  # ids taken in advance per charger: a StartTransaction and a command's id at the same moment
# Connector ids kept per charger, as session.MAX_CONNECTORS_SEEN per connection: a charger
# inventing ids must not grow its set in Redis with every reconnection.
MAX_CONNECTORS = 256


# Forget a charger's keys (KEYS[1..5]: tx, txj, txid, connectors, rates) unless an instance
# holds it (KEYS[6]: owners, ARGV[1]: the charger), a transaction or reservation is open in
# its state, or its last id is not below the clock floor (ARGV[2]): the rules of
# TransactionStore.forget.
FORGET = """
if redis.call('HEXISTS', KEYS[6], ARGV[1]) == 1 then
  return 0
end
local state = redis.call('GET', KEYS[1])
if state then
  local ok, decoded = pcall(cjson.decode, state)
  if not ok then
    return 0
  end
  if (decoded['open'] and #decoded['open'] > 0) or (decoded['reservations'] and #decoded['reservations'] > 0) then
    return 0
  end
end
if tonumber(redis.call('GET', KEYS[3]) or '0') >= tonumber(ARGV[2]) then
  return 0
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
return 1
"""


class SharedTransactionStore(TransactionStore):
    """TransactionStore persisting in Redis; see the module's docstring."""

    def __init__(self, shared: Shared, state_dir: str | Path, clock: Callable[[], float] = time.time) -> None:
        super().__init__(state_dir, clock)
        self._shared = shared
        self._fetched: dict[str, tuple[bytes | None, list[bytes]]] = {}
        self._ids: dict[str, list[int]] = {}
        self._queued: list[tuple[str, str, str]] = []  # (operation, cp, argument), in order
        self._batch: asyncio.Future[None] | None = None  # completes when the queued operations are written
        self._writing: asyncio.Future[None] | None = None  # the batch being written
        self._rewrite: set[str] = set()  # charge points whose last write failed: next time, all of it
        self._connectors: dict[str, set[int]] = {}  # of the chargers served here: their connectors (EVSEs)
        self._pending: dict[str, asyncio.Future[None]] = {}  # per charger: the batch with its last write
        self._short: set[str] = set()  # chargers whose pool lost ids in a failed batch
        self._forget_script = shared.client.register_script(FORGET)

    # -- the session's side ----------------------------------------------------------------

    async def prepare(self, cp: str) -> None:
        """Read the charger's state from Redis before it is served here; StateUnavailableError if Redis fails."""
        await self.saved()  # our own writes of an earlier connection first
        pipe = self._shared.client.pipeline(transaction=False)
        pipe.get(self._key("tx", cp))
        pipe.lrange(self._key("txj", cp), 0, -1)
        pipe.smembers(self._key("connectors", cp))
        for _ in range(POOL):
            await self._shared.next_id_script(keys=[self._key("txid", cp)], args=[self._floor()], client=pipe)
        try:
            state, journal, connectors, *ids = await self._shared.call(pipe.execute)
        except (redis.RedisError, OSError) as error:
            raise StateUnavailableError(f"cannot read the charge point's state from Redis ({error})") from error
        self._unload(cp)
        self._fetched[cp] = (state, journal)
        self._ids[cp] = [int(i) for i in ids]
        self._connectors[cp] = {int(c) for c in connectors if c.lstrip(b"-").isdigit()}
        self._load(cp)

    def connectors(self, cp: str) -> Collection[int]:
        return self._connectors.get(cp, ())

    def connector_seen(self, cp: str, connector_id: int) -> None:
        """Recorded before the answer: the instance taking the charger over announces the
        actuators of its connectors at once, quiet ones too (the charger sends no
        StatusNotification when it merely reconnects)."""
        known = self._connectors.setdefault(cp, set())
        if connector_id not in known and len(known) < MAX_CONNECTORS:
            known.add(connector_id)
            self._enqueue("connector", cp, str(connector_id))

    def unsaved(self, cp: str) -> bool:
        return cp in self._pending

    async def saved(self, cp: str | None = None) -> None:
        """Return once the charger's writes queued so far (None: everyone's) are in Redis;
        StateUnavailableError if one failed. A charger's answer waits for its own writes only."""
        batch = (self._batch or self._writing) if cp is None else self._pending.get(cp)
        if batch is not None:
            await asyncio.shield(batch)

    def repeated(self, cp: str, transaction_id: str, seq_no: int) -> bool:
        """As TransactionStore's; a charger whose last write failed gets its state written
        again: the repeat is answered only once Redis holds what the first one changed."""
        if cp in self._rewrite and cp in self._last_id:
            self._save(cp)
        return super().repeated(cp, transaction_id, seq_no)

    def left(self, cp: str) -> None:
        """The charger left this instance: forget it here (another may serve it next)."""
        self._unload(cp)
        self._ids.pop(cp, None)
        self._connectors.pop(cp, None)

    def _unload(self, cp: str) -> None:
        for memory in (self._last_id, self._open, self._settled, self._reservations, self._seq_nos, self._ended):
            memory.pop(cp, None)
        self._journaled.pop(cp, None)

    # -- TransactionStore's persistence hooks ------------------------------------------------

    def _move_legacy_hashed_files(self) -> None:
        """Nothing: no files here."""

    def _read_state(self, cp: str) -> None:
        state, journal = self._fetched.pop(cp, (None, []))
        if state is not None:
            try:
                loaded = json.loads(state)
                if not isinstance(loaded, dict) or loaded.get("identity") != cp:
                    raise TypeError("not this charge point's state")
                self._take(cp, loaded)
            except (ValueError, KeyError, TypeError) as error:
                LOG.error("%s: transaction state in Redis unreadable (%s); starting afresh", cp, error)
        self._replay(cp, [line.decode("utf-8", "replace") for line in journal])

    def _write_state(self, cp: str, state: dict[str, Any], durable: bool) -> None:
        self._rewrite.discard(cp)
        self._journaled.pop(cp, None)
        self._enqueue("state", cp, json.dumps(state))

    def _append_journal(self, cp: str, line: str) -> bool:
        if cp in self._rewrite:
            return False  # the state as a whole, in place of a line after what failed
        self._enqueue("journal", cp, line)
        return True

    def restate(self, cps: list[str]) -> None:
        """Write these chargers' state again, whole (Redis lost its data)."""
        for cp in cps:
            if cp in self._last_id:
                self._save(cp)

    def forget(self, cp: str) -> None:
        """A charger gone for long (the roster, fleet-wide): dropped here, and its keys in Redis
        when nothing in them matters and no instance holds it (FORGET, atomic in Redis). So
        Redis holds state for the fleet the roster remembers, not for every identity that
        ever connected."""
        self.left(cp)
        self._rewrite.discard(cp)
        self._enqueue("forget", cp, "")

    def _drop_state(self, cp: str) -> None:
        """Forgotten here only: the state in Redis may be another instance's charger now."""
        self._journaled.pop(cp, None)

    def _next_id(self, cp: str) -> int:
        self._load(cp)
        pool = self._ids.get(cp)
        if not pool:
            raise StateUnavailableError("no transaction id at hand (Redis has not answered)")
        issued = pool.pop(0)
        self._last_id[cp] = max(self._last_id[cp], issued)
        self._enqueue("id", cp, "")
        return issued

    # -- writing ------------------------------------------------------------------------------

    def _lowest_new_id(self, cp: str) -> int:
        """The floor of a new id: the clock's, and above every id issued here or at hand (a
        counter Redis lost, or restored from an older snapshot, must not issue one again)."""
        return max(self._floor(), self._last_id.get(cp, 0) + 1, *(i + 1 for i in self._ids.get(cp, ())))

    def _key(self, kind: str, cp: str) -> str:
        return self._shared.key(kind, cp)

    def _enqueue(self, operation: str, cp: str, argument: str) -> None:
        self._queued.append((operation, cp, argument))
        if self._batch is None:
            self._batch = asyncio.get_running_loop().create_future()
            if self._writing is None:
                asyncio.get_running_loop().call_soon(self._start_batch)
        self._pending[cp] = self._batch

    def _start_batch(self) -> None:
        queued, self._queued = [*self._repairs(), *self._queued], []
        self._writing, self._batch = self._batch, None
        asyncio.get_running_loop().create_task(self._write(queued))

    def _repairs(self) -> list[tuple[str, str, str]]:
        """After a failed batch, with the next one: the state of the chargers it held, whole,
        and the ids their pools lost, so nothing stays missing in Redis for long."""
        repairs = [("state", cp, json.dumps(self._state(cp))) for cp in self._rewrite if cp in self._last_id]
        self._rewrite.clear()
        for cp in self._short:
            repairs += [("id", cp, "")] * (POOL - len(self._ids.get(cp, ())))
        self._short.clear()
        return repairs

    async def _write(self, queued: list[tuple[str, str, str]]) -> None:
        done = self._writing
        assert done is not None
        try:
            await self._execute(queued)
        except (redis.RedisError, OSError) as error:
            self._rewrite.update(cp for _, cp, _ in queued)
            self._short.update(cp for operation, cp, _ in queued if operation == "id" and cp in self._ids)
            LOG.error("could not write transaction state of %d charge points to Redis (%s)", len(queued), error)
            done.set_exception(StateUnavailableError(f"Redis did not take the transaction state ({error})"))
            done.exception()  # retrieved: a batch nobody awaited must not log "never retrieved"
        else:
            done.set_result(None)
        finally:
            self._writing = None
            for cp in [cp for cp, batch in self._pending.items() if batch is done]:
                del self._pending[cp]
            if self._batch is not None:
                self._start_batch()

    async def _execute(self, queued: list[tuple[str, str, str]]) -> None:
        pipe = self._shared.client.pipeline(transaction=True)
        refills = []
        for operation, cp, argument in queued:
            if operation == "state":
                pipe.set(self._key("tx", cp), argument)
                pipe.delete(self._key("txj", cp))
            elif operation == "journal":
                pipe.rpush(self._key("txj", cp), argument)
            elif operation == "connector":
                pipe.sadd(self._key("connectors", cp), argument)
            elif operation == "forget":
                keys = [self._key(kind, cp) for kind in ("tx", "txj", "txid", "connectors", "rates")]
                args: list[str | int] = [cp, self._floor()]
                await self._forget_script(keys=[*keys, self._shared.key("owners")], args=args, client=pipe)
            else:
                lowest = self._lowest_new_id(cp)
                await self._shared.next_id_script(keys=[self._key("txid", cp)], args=[lowest], client=pipe)
            refills.append(cp if operation == "id" else None)
        results = await self._shared.call(pipe.execute)
        # A state write is two commands (SET, DEL): line the results up with the operations.
        position = 0
        for (operation, cp, _), refill in zip(queued, refills, strict=True):
            if refill is not None and cp in self._ids:
                self._ids[cp].append(int(results[position]))
            position += 2 if operation == "state" else 1
