"""The MQTT spool in Redis, for several instances (STATE_URL, INTERFACE section 10).

With one instance the outbox spools to SQLite in STATE_DIR (spool.py): values the charger
was already answered for, kept while the broker is away. With several, an instance that
dies during an outage must not take them along, so they are kept in Redis, where another
instance can deliver them.

Keys, under the connector's prefix (shared.py):

- `spool:<instance>:<run>:<lane>`: a sorted set, one member per message, scored by its
  row id. A *run* is one process's life (`new_run_id`): each process starts on keys of
  its own, so a restart never reads keys another instance may be taking at that moment,
  and its outbox's count of rows starts right (nothing in Redis, the local file read).
- `spools:<instance>`: the runs of an instance that may hold messages.

What happens to a run's messages:

- The process delivers them itself while it lives (the outbox reads its spool).
- When an instance is known dead, the one instance that sweeps it (instances.Presence)
  moves each of its runs under its own name, atomically (`TAKE_RUN`: a renamed key, so a
  second sweeper finds nothing, and an instance alive again keeps its runs), then puts the
  messages into its own outbox, oldest first, the raw lane's into its raw lane, deleting
  each batch as it goes (`SpoolAdopter`). A sweeper that dies halfway leaves the rest
  under its own name, for the next.
- A restarted instance delivers its own earlier runs the same way once it holds its name.

Delivery is at least once: a batch put into the outbox is deleted in the same step of the
event loop, so only a process killed within that step leaves one batch to be delivered again.
Once in the survivor's outbox, adopted messages are its own: spooled while its broker is
away, in memory on their way otherwise (as its own values are). They are older than what
the survivor publishes for the same charger if that charger already reconnected there: a
retained topic may then end on the older value until the next one (each carries its
timestamp).

Cost: the outbox writes here only while the broker is away (and reads while that drains),
so its cost is off the normal path. An append is one round trip (a ZADD; a MULTI when it
also deletes the oldest row at the queue's limit, or says again that the run exists):
measured 107 us per message, median of 8 runs of 20,000 appends of a meter value (63 to
126 us, as the machine's other work allowed), against redis-server 7.0 on 127.0.0.1 on
this project's 2-core machine, client and server sharing its cores; SQLite with
`synchronous=NORMAL` took 17 us there.
So while the broker is away, an instance spools at most about 9,000 messages per second
(the event loop does nothing else meanwhile). Draining reads and deletes a window of rows
per round trip: 3.3 us per message. Redis keeps what it acknowledged as long as its own
persistence does (`appendonly yes`: docs/instances.md).

When Redis is unreachable: the row goes to the local SQLite file in STATE_DIR instead
(`mqtt-spool.sqlite3`, as with one instance), under the same sequence of row ids, so the
outbox reads both stores merged in order. Nothing held in memory is lost, and what is on
the local disk survives a restart of this instance on the same STATE_DIR (not its
machine's loss). After a failure Redis is left alone for RETRY_AFTER_S, and every call
is bounded by LOOP_TIMEOUT_S without retries: the spool runs on the event loop's thread,
which must not wait long. Rows the outbox could not read from Redis stay there until it
answers again (SpoolUnavailableError tells the outbox to try later).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import secrets
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Protocol, TypeVar, cast

import redis

from connector.backpressure import Room
from connector.limits import Throttled
from connector.shared import prefix, sync_client
from connector.spool import Message, Row, Spool, SpoolUnavailableError

LOG = logging.getLogger(__name__)

LOOP_TIMEOUT_S = 0.25  # a Redis call on the event loop's thread waits at most this long
RETRY_AFTER_S = 2.0  # after a failure, Redis is left alone this long (the local file takes the rows)
REPORT_EVERY_S = 10.0  # Redis failures are logged at most this often
REGISTER_EVERY_S = 1.0  # a run that writes says so again after this long (see SharedSpool._to_redis)
ADOPT_BATCH = 256  # messages moved into the outbox per step of the event loop
LANES = ("main", "raw")  # the outbox lanes (bemcom.py): values, statuses and logs; raw frames
REDIS_ERRORS = (redis.RedisError, OSError)

T = TypeVar("T")

# A member: row id, flags (QoS, retain), the topic's length, then topic and payload. The
# row id makes equal messages distinct members.
_HEADER = struct.Struct(">QBI")
_RETAIN = 4


def encode(row_id: int, message: Message) -> bytes:
    topic = message.topic.encode()
    flags = message.qos | (_RETAIN if message.retain else 0)
    return _HEADER.pack(row_id, flags, len(topic)) + topic + message.payload


def decode(member: bytes) -> Row:
    row_id, flags, topic_length = _HEADER.unpack_from(member)
    start = _HEADER.size
    topic = member[start : start + topic_length].decode()
    return row_id, Message(topic, member[start + topic_length :], flags & 3, bool(flags & _RETAIN))


def new_run_id() -> str:
    """A process's run: its start in ms (hex, so that runs sort by age), and randomness."""
    return f"{int(time.time() * 1000):012x}-{secrets.token_hex(4)}"


def _ranges(row_ids: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted ids as runs of consecutive ids: the outbox deletes in order, so mostly one."""
    ranges: list[tuple[int, int]] = []
    for row_id in sorted(row_ids):
        if ranges and row_id == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], row_id)
        else:
            ranges.append((row_id, row_id))
    return ranges


class RedisLane:
    """One lane of one run in Redis: a sorted set of messages, scored by row id; one round trip per call."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self.client = client
        self.key = key

    def add(self, rows: Sequence[Row], drop: int | None = None, register: tuple[str, str] | None = None) -> None:
        """Store rows (and delete row `drop`, and add `register` = (set, member)) in one MULTI."""
        members = {encode(row_id, message): row_id for row_id, message in rows}
        if drop is None and register is None:
            self.client.zadd(self.key, members)
            return
        pipe = self.client.pipeline(transaction=True)
        pipe.zadd(self.key, members)
        if drop is not None:
            pipe.zremrangebyscore(self.key, drop, drop)
        if register is not None:
            pipe.sadd(*register)
        pipe.execute()

    def read(self, after: int, limit: int) -> list[Row]:
        members = self.client.zrange(self.key, f"({after}", "+inf", byscore=True, offset=0, num=limit)
        return [decode(member) for member in cast(list[bytes], members)]

    def delete(self, row_ids: Iterable[int]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for low, high in _ranges(row_ids):
            pipe.zremrangebyscore(self.key, low, high)
        pipe.execute()

    def count(self) -> int:
        return int(self.client.zcard(self.key))


class SharedSpool:
    """The outbox's spool with several instances: this run's rows in Redis, in the local file
    while Redis is unreachable (see the module's docstring). Same interface as spool.Spool.

    Row ids are assigned here, one sequence for both stores, above every id in the local
    file: so rows of both read back merged in the order they were appended.
    """

    def __init__(
        self,
        lane: RedisLane,
        registration: tuple[str, str],
        local: Spool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lane = lane
        self._registration = registration  # (spools:<instance>, run): added with the rows
        self._registered_at: float | None = None
        self._local = local
        self._last = local.last_id()
        self._local_last = self._last  # ids above this are not in the local file
        self._redis_last = 0  # ids above this are not in Redis, but for:
        self._maybe_in_redis: set[int] = set()  # rows of a failed write (a timeout after Redis applied it)
        self._undeleted: list[int] = []  # rows whose deletion from Redis failed: retried
        self._clock = clock
        self._retry_at = 0.0
        self._failures = Throttled(REPORT_EVERY_S)

    def count(self) -> int:
        in_redis = self._from_redis(self._lane.count) if self._redis_last else 0
        return in_redis + self._local.count()

    def append(self, message: Message, drop: int | None = None) -> int:
        self._last += 1
        self._store([(self._last, message)], drop)
        return self._last

    def append_many(self, messages: Iterable[Message]) -> list[int]:
        rows = [(self._last + i, message) for i, message in enumerate(messages, 1)]
        if rows:
            self._last = rows[-1][0]
            self._store(rows, None)
        return [row_id for row_id, _ in rows]

    def read(self, after: int, limit: int) -> list[Row]:
        in_redis = self._from_redis(lambda: self._lane.read(after, limit)) if after < self._redis_last else []
        local = self._local.read(after, limit) if after < self._local_last else []
        if not local:
            return in_redis
        # Both: rows a failed write left in each store. A row whose Redis write timed out
        # after Redis applied it is in both: once is enough.
        merged = {row_id: message for row_id, message in heapq.merge(in_redis, local, key=lambda row: row[0])}
        return list(merged.items())[:limit]

    def first_after(self, after: int) -> int | None:
        found = [row_id for row_id, _ in self.read(after, 1)]
        return found[0] if found else None

    def delete(self, row_ids: list[int]) -> None:
        """Never raises for Redis: rows it could not delete there are retried with the next deletion."""
        in_redis = [i for i in row_ids if i <= self._redis_last or i in self._maybe_in_redis] + self._undeleted
        self._maybe_in_redis.difference_update(in_redis)
        if in_redis:
            self._undeleted = []
            try:
                self._from_redis(lambda: self._lane.delete(in_redis))
            except SpoolUnavailableError:
                self._undeleted = in_redis
        local = [row_id for row_id in row_ids if row_id <= self._local_last]
        if local:
            self._local.delete(local)

    def close(self) -> None:
        """This run's registration goes with its last row (kept if any is left: delivered later)."""
        self._local.close()
        if self._undeleted:
            self.delete([])
        if self._registered_at is None or self._undeleted:
            return
        try:
            if not self._from_redis(self._lane.count):
                self._from_redis(lambda: self._lane.client.srem(*self._registration))
        except SpoolUnavailableError:
            pass  # an empty run left registered costs its adopter one look

    # -- the two stores ------------------------------------------------------------------

    def _store(self, rows: list[Row], drop: int | None) -> None:
        if self._clock() >= self._retry_at:
            try:
                self._to_redis(rows, drop)
                return
            except REDIS_ERRORS as error:
                self._failed(error)
                # A call that timed out may still have been applied: those rows go to the
                # file too, are read from there (once: see read), and deleted from both.
                self._maybe_in_redis.update(row_id for row_id, _ in rows)
        self._to_local(rows, drop)

    def _to_redis(self, rows: list[Row], drop: int | None) -> None:
        # Registered again now and then, not with every row (a fifth more per append): a
        # Redis that lost its data (restarted without persistence) must not hide this run.
        now = self._clock()
        due = self._registered_at is None or now - self._registered_at >= REGISTER_EVERY_S
        redis_drop = drop if drop is not None and drop <= self._redis_last else None
        self._lane.add(rows, redis_drop, self._registration if due else None)
        if due:
            self._registered_at = now
        self._redis_last = rows[-1][0]
        if drop is not None and drop <= self._local_last:
            self._local.delete([drop])

    def _to_local(self, rows: list[Row], drop: int | None) -> None:
        self._local.append_rows(rows, drop if drop is not None and drop <= self._local_last else None)
        self._local_last = rows[-1][0]
        if drop is not None and (drop <= self._redis_last or drop in self._maybe_in_redis):
            self._undeleted.append(drop)

    def _from_redis(self, call: Callable[[], T]) -> T:
        if self._clock() < self._retry_at:
            raise SpoolUnavailableError("Redis (STATE_URL) unreachable a moment ago")
        try:
            return call()
        except REDIS_ERRORS as error:
            self._failed(error)
            raise SpoolUnavailableError(f"Redis (STATE_URL) unreachable: {error}") from error

    def _failed(self, error: Exception) -> None:
        self._retry_at = self._clock() + RETRY_AFTER_S
        if self._failures.ready():
            LOG.error(
                "MQTT spool: Redis (STATE_URL) unreachable (%s; %d more since the last report): "
                "messages for the broker go to STATE_DIR until it answers",
                error,
                self._failures.take_suppressed(),
            )


class Lane(Protocol):
    """What adoption needs of an outbox lane (outbox.Outbox)."""

    def put(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> None: ...


# Move a dead instance's run under this instance's name (a new run), unless that instance is
# alive again. KEYS: its alive key, its runs, our runs, then pairs (its lane, our lane);
# ARGV: its run, our new run. The messages moved; -1: alive; -2: another took the run.
TAKE_RUN = """
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
if redis.call('SREM', KEYS[2], ARGV[1]) == 0 then return -2 end
local moved = 0
for i = 4, #KEYS, 2 do
  local count = redis.call('ZCARD', KEYS[i])
  if count > 0 then
    redis.call('RENAME', KEYS[i], KEYS[i + 1])
    moved = moved + count
  end
end
if moved > 0 then redis.call('SADD', KEYS[3], ARGV[2]) end
return moved
"""


class SharedSpools:
    """The Redis side of one instance's spools: its client, its run, its lanes, and adoption."""

    def __init__(self, url: str, connector_name: str, instance: str) -> None:
        self.client = sync_client(url, LOOP_TIMEOUT_S, retries=0)
        self.prefix = prefix(connector_name)
        self.instance = instance
        self.run = new_run_id()

    def runs_key(self, instance: str) -> str:
        return f"{self.prefix}spools:{instance}"

    def runs_of(self, instance: str) -> list[str]:
        """The runs of `instance` that may hold messages, oldest first."""
        runs = cast(set[bytes], self.client.smembers(self.runs_key(instance)))
        return sorted(run.decode() for run in runs)

    def lane_key(self, instance: str, run: str, lane: str) -> str:
        return f"{self.prefix}spool:{instance}:{run}:{lane}"

    def lane(self, name: str, local: Spool) -> SharedSpool:
        """The spool of lane `name` of this run; `local` takes the rows while Redis is unreachable."""
        redis_lane = RedisLane(self.client, self.lane_key(self.instance, self.run, name))
        return SharedSpool(redis_lane, (self.runs_key(self.instance), self.run), local)

    def adopter(self, lanes: Mapping[str, Lane], room: Room) -> SpoolAdopter:
        return SpoolAdopter(self, lanes, room)

    def close(self) -> None:
        self.client.close()


class SpoolAdopter:
    """Delivers the runs of dead processes through this instance's outbox lanes.

    `adopt(instance)` (from instances.Presence, one survivor per dead instance) takes the
    dead instance's runs; `run()` (a task of the service) delivers them, and first this
    instance's own earlier runs, once `named` says it holds its name (until then a
    process of the same name may still be alive).
    """

    def __init__(self, spools: SharedSpools, lanes: Mapping[str, Lane], room: Room) -> None:
        self._spools = spools
        self._client = spools.client
        self._lanes = lanes
        self._room = room
        self._take = self._client.register_script(TAKE_RUN)
        self._queue: deque[tuple[str, str]] = deque()  # (run under our name, whose it was)
        self._work = asyncio.Event()
        self.idle = asyncio.Event()  # nothing queued for delivery (set once the earlier runs are done)
        self._failures = Throttled(REPORT_EVERY_S)

    async def adopt(self, instance: str) -> None:
        """Take the runs of the dead `instance` for delivery here; redis errors propagate (the sweep retries)."""
        spools = self._spools
        for run in spools.runs_of(instance):
            ours = new_run_id()
            keys = [f"{spools.prefix}alive:{instance}", spools.runs_key(instance), spools.runs_key(spools.instance)]
            for lane in LANES:
                keys += [spools.lane_key(instance, run, lane), spools.lane_key(spools.instance, ours, lane)]
            moved = int(self._take(keys=keys, args=[run, ours]))
            if moved > 0:
                LOG.info("instance %s is gone: %d messages it kept for the broker are delivered here", instance, moved)
                self._queue.append((ours, instance))
                self.idle.clear()
                self._work.set()

    async def run(self, named: asyncio.Event) -> None:
        await named.wait()
        await self._retrying(self._queue_earlier_runs)
        while True:
            await self._work.wait()
            self._work.clear()
            while self._queue:
                await self._retrying(self._deliver_first)
            self.idle.set()

    async def _retrying(self, step: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                await step()
                return
            except REDIS_ERRORS as error:
                if self._failures.ready():
                    LOG.error("MQTT spools of other processes: Redis (STATE_URL) unreachable (%s); retrying", error)
                await asyncio.sleep(RETRY_AFTER_S)

    async def _queue_earlier_runs(self) -> None:
        """Runs of an earlier process of this name (killed, or stopped with messages left)."""
        spools = self._spools
        queued = {run for run, _ in self._queue}
        for run in spools.runs_of(spools.instance):
            if run != spools.run and run not in queued:
                self._queue.append((run, spools.instance))
        self._work.set()

    async def _deliver_first(self) -> None:
        """Deliver the first queued run, lane by lane, oldest first; then forget it."""
        run, whose = self._queue[0]
        spools = self._spools
        delivered = 0
        for name in LANES:
            lane = RedisLane(self._client, spools.lane_key(spools.instance, run, name))
            outbox = self._lanes.get(name) or self._lanes["main"]  # no raw lane here: the main one
            while rows := lane.read(0, ADOPT_BATCH):
                for _, message in rows:
                    outbox.put(*message)
                lane.delete(row_id for row_id, _ in rows)  # no await since the puts: see the module's docstring
                delivered += len(rows)
                await self._room.wait()  # backpressure, as for a charger's frames
                await asyncio.sleep(0)
        self._client.srem(spools.runs_key(spools.instance), run)
        self._queue.popleft()
        if delivered:
            LOG.info("delivered %d messages instance %s had kept for the broker (run %s)", delivered, whose, run)
