"""Redis: what several instances of one connector share (STATE_URL, INTERFACE section 10).

Every key of a connector starts with `ocpp:<CONNECTOR_NAME>:`, so connectors of several
sites may share one Redis. This module holds the instances' own keys and scripts:

- `alive:<instance>` (expires after ALIVE_TTL_S unless renewed) and `seen:<instance>` (the
  last renewal, ms): which instances run, and when a dead one was last alive. `instances`:
  the set of names that ran, for the sweep of the dead (instances.Presence); `sweep:<instance>`
  lets one survivor sweep.
- `owners` (charge point -> instance) and `held:<instance>` (its charge points): who serves
  each charger, changed by Lua scripts (atomic); `orphan:<cp>` (ORPHAN_S): a dead instance's
  charger not back yet; `rates:<cp>`: the rate units it allows.
- `send:<digest>` and `end:<digest>` (claim_ttl): the claims that let exactly one instance
  send an actuator value and exactly one publish its status (coordination.py).

Elsewhere: `tx:`, `txj:`, `txid:`, `connectors:<cp>` (shared_transactions.py), the registry
and roster (shared_registry.py), the listing's lease (shared_listing.py), the spools
(shared_spool.py).

The clients are redis-py's: its asyncio client on the event loop, its blocking one in
worker threads (the registry's saves). Every call is bounded by REDIS_TIMEOUT_S and retried
once, so an unreachable Redis fails a step instead of hanging it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from connector.settings import redis_address

LOG = logging.getLogger(__name__)

REDIS_TIMEOUT_S = 2.0
ALIVE_TTL_S = 3.0  # an instance not heard of this long is dead
ALIVE_EVERY_S = 1.0  # how often an instance says it is alive
# A dead instance's charger not back yet: a command for it waits this long (INTERFACE 10: a
# command for a charger whose instance just died is answered within 15 s).
ORPHAN_S = 15.0
REDIS_CONNECTIONS = 100  # an instance's connections to Redis at most (redis-py's default bound)
# Command claims outlive the command (the charger's answer within OCPP_RESPONSE_TIMEOUT, the
# 15 s failover), and recognise a message the broker delivers again meanwhile. The service
# sets `Shared.claim_ttl_s` from OCPP_RESPONSE_TIMEOUT (`claim_ttl`); each claim costs Redis
# ~450 B for that long.
CLAIM_TTL_S = 600.0
READY_GRACE_S = 5.0  # /readyz fails once Redis has not answered this long


def claim_ttl(response_timeout: float) -> float:
    return max(120.0, 2 * (response_timeout + ORPHAN_S))


def prefix(connector_name: str) -> str:
    return f"ocpp:{connector_name}:"


# redis-py retries a failed command 10 times by default, backing off up to 1 s: 4.4 s before
# a refused connection fails, and a charger's answer would wait that long behind it. One
# retry (a connection the server closed while idle) is enough: every caller here has its
# own way on (the next tick, a CALLERROR the charger repeats, the local spool).
RETRIES = 1


def async_client(url: str) -> redis.asyncio.Redis:
    """The asyncio client; connects lazily, at its first command.

    Its pool blocks: past REDIS_CONNECTIONS exchanges in flight, the next waits for a free
    connection (at most REDIS_TIMEOUT_S). redis-py's default pool refuses it at once with
    "Too many connections", which refused chargers of a connect burst and failed every
    release of a shutdown with a few thousand chargers (benchmark/instances.py showed both).
    """
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url,
        max_connections=REDIS_CONNECTIONS,
        timeout=REDIS_TIMEOUT_S,
        socket_timeout=REDIS_TIMEOUT_S,
        socket_connect_timeout=REDIS_TIMEOUT_S,
        decode_responses=False,
        retry=AsyncRetry(NoBackoff(), RETRIES),
    )
    return redis.asyncio.Redis.from_pool(pool)  # closed with the client


def sync_client(url: str, timeout_s: float = REDIS_TIMEOUT_S, retries: int = RETRIES) -> redis.Redis:
    """The blocking client, for worker threads (and the MQTT spool: shared_spool.py)."""
    return redis.Redis.from_url(
        url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), retries)
    )


def now_ms() -> int:
    return int(time.time() * 1000)


class InstanceNameTakenError(Exception):
    """Another live instance of this connector has the same CONNECTOR_INSTANCE."""


# Take a charger: the owner it had (nil if none), now this instance.
TAKE = """
local previous = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
if previous and previous ~= ARGV[2] then
  redis.call('SREM', KEYS[3] .. previous, ARGV[1])
end
return previous
"""

# Hold a charger again after this instance's records were lost (Redis restarted without its
# data, or this instance was paused past ALIVE_TTL_S and swept): only if nobody else took it.
REASSERT = """
local holder = redis.call('HGET', KEYS[1], ARGV[1])
if holder and holder ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""

# Forget a dead instance (ARGV[1]) from the set of those that ran (KEYS[1]), unless its name
# is alive again (KEYS[2]): a process restarted under it meanwhile must stay known.
FORGET_INSTANCE = """
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
return redis.call('SREM', KEYS[1], ARGV[1])
"""

# Give a charger up, only if this instance (ARGV[2]) still holds it: 1 if it did.
RELEASE = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('SREM', KEYS[2], ARGV[1])
  return 1
end
redis.call('SREM', KEYS[2], ARGV[1])
return 0
"""

# The next transaction id of a charger: above the last one and never below the floor (ARGV[1]).
NEXT_ID = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local issued = math.max(current + 1, tonumber(ARGV[1]))
redis.call('SET', KEYS[1], issued)
return issued
"""


# Claim sending a command (KEYS[1]: its send claim) only while this instance (ARGV[2]) holds
# the charger (KEYS[2]: owners, ARGV[1]: the charger): one whose connection went half-open
# while the charger came back elsewhere must not take it. Nor once its status is claimed
# (KEYS[3]): a command already answered `Failed` is never sent.
CLAIM_SEND = """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then
  return 0
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  return 0
end
if redis.call('SET', KEYS[1], ARGV[2], 'NX', 'PX', ARGV[3]) then
  return 1
end
return 0
"""

# Where a command stands, in one round trip: {sender, status claimed, owner of the charger,
# sender alive, owner alive, orphaned}. KEYS: send claim, end claim, owners, the charger's
# orphan mark; ARGV: charger, alive prefix.
COMMAND_STATE = """
local sender = redis.call('GET', KEYS[1])
local ended = redis.call('EXISTS', KEYS[2])
local owner = redis.call('HGET', KEYS[3], ARGV[1])
local sender_alive = 0
if sender then sender_alive = redis.call('EXISTS', ARGV[2] .. sender) end
local owner_alive = 0
if owner then owner_alive = redis.call('EXISTS', ARGV[2] .. owner) end
return {sender, ended, owner, sender_alive, owner_alive, redis.call('EXISTS', KEYS[4])}
"""


@dataclass(frozen=True)
class CommandState:
    sender: str | None  # the instance that claimed sending it
    ended: bool  # its status is claimed (published, or about to be)
    owner: str | None  # the instance holding the charger
    sender_alive: bool
    owner_alive: bool
    orphaned: bool  # its instance died within ORPHAN_S, and it is not back: it may be soon

    @property
    def nobody_holds(self) -> bool:
        """No instance holds the charger, nor did one that died just now."""
        return self.owner is None and not self.orphaned


class Shared:
    """The Redis side of one instance: its name, the client, the keys and the scripts."""

    def __init__(self, url: str, connector_name: str, instance: str, claim_ttl_s: float = CLAIM_TTL_S) -> None:
        self.instance = instance
        self.where = redis_address(url)  # for logs: never the password
        self.prefix = prefix(connector_name)
        self.client = async_client(url)
        self._take = self.client.register_script(TAKE)
        self._release = self.client.register_script(RELEASE)
        self._reassert = self.client.register_script(REASSERT)
        self._forget_instance = self.client.register_script(FORGET_INSTANCE)
        self.next_id_script = self.client.register_script(NEXT_ID)
        self._claim_send = self.client.register_script(CLAIM_SEND)
        self._command_state = self.client.register_script(COMMAND_STATE)
        self._answered = False  # Redis answered once
        self._failing_since: float | None = None  # monotonic: since when Redis has not answered
        self.claim_ttl_s = claim_ttl_s
        self._earlier_seen: int | None = None  # when an earlier process of this name was last alive

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def call(self, command: Callable[[], Awaitable[Any]]) -> Any:
        """Run one exchange with Redis, noting whether Redis answered (for /readyz)."""
        try:
            result = await command()
        except (redis.RedisError, OSError):
            if self._failing_since is None:
                self._failing_since = time.monotonic()
            raise
        self._failing_since = None
        self._answered = True
        return result

    @property
    def reachable(self) -> bool:
        """Whether Redis answers, for /readyz: a blip shorter than READY_GRACE_S does not count
        (every instance sees it at once, and the load balancer would cut every charger)."""
        if not self._answered:
            return False
        return self._failing_since is None or time.monotonic() - self._failing_since < READY_GRACE_S

    # -- presence ------------------------------------------------------------------------

    async def claim_name(self, wait_s: float = ALIVE_TTL_S + ALIVE_EVERY_S) -> int | None:
        """Take this instance's name among the live ones; InstanceNameTakenError if another keeps it.

        A restarted instance finds its own name still alive until ALIVE_TTL_S after its
        death, so the claim is retried that long before it counts as taken. Returns when
        an earlier process of this name was last alive (ms), if one was.
        """
        deadline = time.monotonic() + wait_s
        while not await self._mark_alive(first=True, keep_seen=True):
            if time.monotonic() >= deadline:
                raise InstanceNameTakenError(
                    f"CONNECTOR_INSTANCE={self.instance} is in use by another running instance; names must be unique"
                )
            await asyncio.sleep(ALIVE_EVERY_S / 2)
        await self.call(lambda: self.client.sadd(self.key("instances"), self.instance))
        return self._earlier_seen

    async def _mark_alive(self, first: bool = False, keep_seen: bool = False) -> bool:
        """Renew `alive:<instance>` (NX on the first: only if nobody holds the name).

        `keep_seen`: note the previous `seen:<instance>` (an earlier process's last sign of life).
        """
        alive, seen = self.key("alive", self.instance), self.key("seen", self.instance)
        ttl_ms = int(ALIVE_TTL_S * 1000)
        if not await self.call(lambda: self.client.set(alive, self.instance, nx=first, xx=not first, px=ttl_ms)):
            return False  # `seen` stays the other's (or the earlier process's) last sign of life
        earlier = await self.call(lambda: self.client.set(seen, now_ms(), get=keep_seen))
        if keep_seen:
            self._earlier_seen = int(earlier) if earlier is not None else None
        return True

    async def still_alive(self) -> tuple[bool, bool]:
        """Renew the name: (whether it is ours, whether it had lapsed: this instance was paused
        past ALIVE_TTL_S, or Redis lost its data; then what it holds must be said again)."""
        if await self._mark_alive():
            return True, False
        taken_back = await self._mark_alive(first=True)  # unless another took the name meanwhile
        if taken_back:
            await self.call(lambda: self.client.sadd(self.key("instances"), self.instance))
        return taken_back, True

    async def reassert(self, chargers: list[str]) -> list[str]:
        """Hold again the chargers connected here that no other instance took; those."""
        if not chargers:
            return []
        keys = [self.key("owners"), self.key("held", self.instance)]
        pipe = self.client.pipeline(transaction=False)
        for cp in chargers:
            await self._reassert(keys=keys, args=[cp, self.instance], client=pipe)
        results = await self.call(pipe.execute)
        return [cp for cp, held in zip(chargers, results, strict=True) if held]

    async def leave(self) -> None:
        """A clean stop: the name is free at once."""
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self.key("alive", self.instance))
        pipe.set(self.key("seen", self.instance), now_ms())
        await self.call(pipe.execute)

    async def alive(self, instance: str) -> bool:
        return bool(await self.call(lambda: self.client.exists(self.key("alive", instance))))

    async def last_seen(self, instance: str) -> int | None:
        """When a (dead) instance was last alive, ms since 1970."""
        raw = await self.call(lambda: self.client.get(self.key("seen", instance)))
        return int(raw) if raw is not None else None

    async def dead(self) -> list[str]:
        """Instances that ran and are not alive now (not this one)."""
        names = [n.decode() for n in await self.call(lambda: self.client.smembers(self.key("instances")))]
        others = [n for n in names if n != self.instance]
        if not others:
            return []
        pipe = self.client.pipeline(transaction=False)
        for name in others:
            pipe.exists(self.key("alive", name))
        alive = await self.call(pipe.execute)
        return [name for name, is_alive in zip(others, alive, strict=True) if not is_alive]

    async def claim_sweep(self, instance: str, ttl_s: float) -> bool:
        """Whether this instance is the one to sweep the dead `instance`'s chargers now."""
        claimed = await self.call(
            lambda: self.client.set(self.key("sweep", instance), self.instance, nx=True, px=int(ttl_s * 1000))
        )
        return bool(claimed)

    async def others_alive(self) -> bool:
        """Whether another instance of this connector is alive."""
        names = [n.decode() for n in await self.call(lambda: self.client.smembers(self.key("instances")))]
        others = [n for n in names if n != self.instance]
        if not others:
            return False
        return bool(await self.call(lambda: self.client.exists(*(self.key("alive", n) for n in others))))

    async def forget_instance(self, instance: str) -> None:
        """Drop a dead instance from the set of those that ran, unless it is alive again meanwhile."""
        keys = [self.key("instances"), self.key("alive", instance)]
        await self.call(lambda: self._forget_instance(keys=keys, args=[instance]))

    # -- ownership -----------------------------------------------------------------------

    async def take(self, cp: str) -> str | None:
        """Serve `cp` here; the instance that held it before (None: nobody)."""
        keys = [self.key("owners"), self.key("held", self.instance), self.key("held", "")]
        previous = await self.call(lambda: self._take(keys=keys, args=[cp, self.instance]))
        return previous.decode() if previous is not None else None

    async def orphan(self, cp: str) -> None:
        """Mark a dead instance's charger, released by the sweep: commands wait ORPHAN_S for it."""
        await self.call(lambda: self.client.set(self.key("orphan", cp), 1, px=int(ORPHAN_S * 1000)))

    async def release(self, cp: str, instance: str | None = None) -> bool:
        """Give `cp` up, if `instance` (default: this one) still holds it; whether it did."""
        holder = instance or self.instance
        keys = [self.key("owners"), self.key("held", holder)]
        return bool(await self.call(lambda: self._release(keys=keys, args=[cp, holder])))

    async def rate_units(self, cp: str) -> tuple[bool, frozenset[str] | None]:
        """(whether an instance learnt the charger's rate units, what they are: None if unreadable)."""
        raw = await self.call(lambda: self.client.get(self.key("rates", cp)))
        if raw is None:
            return False, None
        try:
            units = json.loads(raw)
        except ValueError:
            return False, None
        if not (isinstance(units, list) and all(isinstance(u, str) for u in units)):
            return True, None
        return True, frozenset(units)

    async def save_rate_units(self, cp: str, units: frozenset[str] | None) -> None:
        value = json.dumps(sorted(units) if units is not None else None)
        await self.call(lambda: self.client.set(self.key("rates", cp), value))

    async def owner(self, cp: str) -> str | None:
        raw = await self.call(lambda: self.client.hget(self.key("owners"), cp))
        return raw.decode() if raw is not None else None

    async def held_by(self, instance: str) -> list[str]:
        return [cp.decode() for cp in await self.call(lambda: self.client.smembers(self.key("held", instance)))]

    # -- command claims ------------------------------------------------------------------

    async def claim_end(self, digest: str) -> bool:
        """Whether this instance is the first to claim publishing the status of command `digest`."""
        claimed = await self.call(
            lambda: self.client.set(self.key("end", digest), self.instance, nx=True, px=int(self.claim_ttl_s * 1000))
        )
        return bool(claimed)

    async def claim_send(self, digest: str, cp: str) -> bool:
        """Whether this instance, holding `cp`, is the first to claim sending command `digest` to it."""
        keys = [self.key("send", digest), self.key("owners"), self.key("end", digest)]
        args: list[str | int] = [cp, self.instance, int(self.claim_ttl_s * 1000)]
        return bool(await self.call(lambda: self._claim_send(keys=keys, args=args)))

    async def command_state(self, digest: str, cp: str) -> CommandState:
        keys = [self.key("send", digest), self.key("end", digest), self.key("owners"), self.key("orphan", cp)]
        args = [cp, self.key("alive", "")]
        sender, ended, owner, sender_alive, owner_alive, orphaned = await self.call(
            lambda: self._command_state(keys=keys, args=args)
        )
        return CommandState(
            _text(sender), bool(ended), _text(owner), bool(sender_alive), bool(owner_alive), bool(orphaned)
        )

    async def close(self) -> None:
        await self.client.aclose()


def _text(raw: bytes | None) -> str | None:
    return raw.decode() if raw is not None else None
