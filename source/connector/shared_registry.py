"""The registry and the roster shared through Redis, for several instances (STATE_URL, INTERFACE section 10).

Two promises rest on it: the listing (`available_datapoints`) is the whole fleet's, so every
instance knows every key, and every actuator key's ActuatorRef (any instance may be the one
that must route a command, coordination.py); and the instance that takes over a dead one's
chargers knows their keys and connectors (actuators of quiet connectors included) and
whether they booted.

`SharedRegistryStore` is registry_store.RegistryStore's counterpart (same `load`, `save`,
`close`, `path`), plus `changes`: what the instances saved since the last call. Its keys,
under `ocpp:<CONNECTOR_NAME>:`:

- `keys:<cp>`: a hash per charge point, key -> `[example, actuator, connector id]` (JSON,
  registry_store's row without the key and the charge point). One hash per charge point,
  not one for the fleet: forgetting a charger is one DEL, without knowing its keys (the
  instance that forgets it may not know all of them yet). `keyed`: the set of charge
  points that have such a hash, for `load`.
- `charge_points`: a hash, charge point -> `[booted, absent since]` (None: connected to
  some instance).
- `registry`: a stream of what each save changed (XADD, bounded by MAXLEN ~ STREAM_MAXLEN),
  in the order the saves reached Redis; every instance reads it every tick. The hashes are
  what is true, the stream says what to read again: an instance whose place in the
  stream was trimmed away (it fell STREAM_MAXLEN entries behind) loads everything again.

Each save is one MULTI/EXEC: the hashes and its stream entries change together. Saves run
in upkeep's worker thread on redis-py's blocking client; applying them to the registry and
the roster happens on the loop (shared_listing.py).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from redis.typing import EncodableT

from connector.batches import batched
from connector.fleet import Member
from connector.registry import ActuatorRef, KeyRecord
from connector.shared import prefix, sync_client

LOG = logging.getLogger(__name__)

# Entries kept (about: MAXLEN ~). Instances read the stream every second; at ENTRY_ITEMS
# each it holds the last 200,000 keys at most (some 30 MB), a fleet's boot in a burst.
STREAM_MAXLEN = 1000
ENTRY_ITEMS = 200  # keys (or charge points) per stream entry
READ_PAGE = 100  # stream entries per XRANGE
LOAD_BATCH = 500  # charge points per pipeline when everything is loaded


@dataclass(frozen=True)
class Entry:
    """What one save changed, applied in this order (as registry_store saves it)."""

    forgotten: list[str] = field(default_factory=list)
    members: list[tuple[str, Member]] = field(default_factory=list)
    records: list[KeyRecord] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.forgotten) + len(self.members) + len(self.records)


@dataclass(frozen=True)
class Changes:
    entries: list[Entry]
    instances: int  # instances of this connector that ran (and were not swept): the roster's bound grows with them
    # A snapshot (a load): everything there is. Charge points missing from it were forgotten;
    # those it says are connected are so only where an instance alive now holds them (these).
    held_elsewhere: frozenset[str] | None = None
    # Redis lost what it held since the last load (restarted without persistence, flushed):
    # what this instance knows is the best there is, saved again rather than forgotten.
    wiped: bool = False


class SharedRegistryStore:
    """The registry's keys and the roster in Redis; see the module's docstring. Blocking calls:
    worker threads only (upkeep's), or at shutdown."""

    def __init__(self, url: str, connector_name: str, instance: str) -> None:
        self._redis = sync_client(url)
        self._prefix = prefix(connector_name)
        self.instance = instance
        self.path = f"redis {self._prefix}keys"  # for log lines
        self._cursor: bytes | str | None = None
        self._epoch: bytes | None = None  # see `_wiped`  # the last stream entry taken in; None: load everything first

    def _key(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)

    # -- saving --------------------------------------------------------------------------

    def save(self, records: Iterable[KeyRecord], members: dict[str, Member], forgotten: Iterable[str]) -> None:
        """Add listed keys, update roster entries and drop forgotten charge points, atomically, and tell the others."""
        forgotten, by_cp = list(forgotten), _by_charge_point(records)
        pipe = self._redis.pipeline(transaction=True)
        for cp in forgotten:  # first: a charge point forgotten and back within one save keeps what is new
            pipe.delete(self._key("keys", cp))
            pipe.hdel(self._key("charge_points"), cp)
            pipe.srem(self._key("keyed"), cp)
        if members:
            rows: dict[EncodableT, EncodableT] = {cp: _member_row(m) for cp, m in members.items()}
            pipe.hset(self._key("charge_points"), mapping=rows)
        for cp, cp_records in by_cp.items():
            keys: dict[EncodableT, EncodableT] = {r.key: _row(r) for r in cp_records}
            pipe.hset(self._key("keys", cp), mapping=keys)
        if by_cp:
            pipe.sadd(self._key("keyed"), *by_cp)
        for fields in self._entries(forgotten, members, [r for rs in by_cp.values() for r in rs]):
            pipe.xadd(self._key("registry"), fields, maxlen=STREAM_MAXLEN, approximate=True)
        pipe.execute()

    def _entries(
        self, forgotten: list[str], members: dict[str, Member], records: list[KeyRecord]
    ) -> Iterator[dict[EncodableT, EncodableT]]:
        """The stream entries of one save, ENTRY_ITEMS items each at most."""
        for names in batched(forgotten, ENTRY_ITEMS):
            yield {"by": self.instance, "forgotten": json.dumps(names)}
        for rows in batched([[cp, m.booted, m.absent_since] for cp, m in members.items()], ENTRY_ITEMS):
            yield {"by": self.instance, "members": json.dumps(rows)}
        for keys in batched([[r.key, r.cp, *_fields(r)] for r in records], ENTRY_ITEMS):
            yield {"by": self.instance, "keys": json.dumps(keys, allow_nan=False)}

    # -- loading -------------------------------------------------------------------------

    def load(self) -> tuple[list[KeyRecord], dict[str, Member]]:
        """Everything saved: the listed keys and the roster. From here on `changes` reads what comes after."""
        # A mark in the stream first: whatever is saved while the rest is read comes after it,
        # and is read again (harmless: applying is idempotent).
        mark: dict[EncodableT, EncodableT] = {"by": self.instance}
        cursor = self._redis.xadd(self._key("registry"), mark, maxlen=STREAM_MAXLEN, approximate=True)
        members = {}
        for cp, raw in self._redis.hgetall(self._key("charge_points")).items():
            member = _member(raw)
            if member is not None:
                members[_text(cp)] = member
        charge_points = sorted(_text(cp) for cp in self._redis.smembers(self._key("keyed")))
        records: list[KeyRecord] = []
        for batch in batched(charge_points, LOAD_BATCH):
            pipe = self._redis.pipeline(transaction=False)
            for cp in batch:
                pipe.hgetall(self._key("keys", cp))
            for cp, rows in zip(batch, pipe.execute(), strict=True):
                records += [r for key, row in rows.items() if (r := _record(key.decode(), cp, row)) is not None]
        self._cursor = cursor
        return records, members

    def held_elsewhere(self) -> frozenset[str]:
        """Charge points held by another instance alive now (instances.py's `owners` and `alive:`)."""
        owners = {_text(cp): _text(owner) for cp, owner in self._redis.hgetall(self._key("owners")).items()}
        others = sorted(set(owners.values()) - {self.instance})
        pipe = self._redis.pipeline(transaction=False)
        for name in others:
            pipe.exists(self._key("alive", name))
        alive = {name for name, exists in zip(others, pipe.execute(), strict=True) if exists}
        return frozenset(cp for cp, owner in owners.items() if owner in alive)

    def changes(self) -> Changes:
        """What was saved since the last call (by every instance, this one included), in order;
        the first time, or after falling behind the stream, everything (a snapshot)."""
        if self._cursor is None:
            return self._snapshot()
        entries: list[Entry] = []
        while True:
            pipe = self._redis.pipeline(transaction=False)
            pipe.xrange(self._key("registry"), min=self._cursor, count=READ_PAGE + 1)  # from the last one taken in
            pipe.scard(self._key("instances"))
            found, instances = pipe.execute()
            if not found or found[0][0] != self._cursor:
                return self._snapshot()
            entries += [_entry(fields) for _, fields in found[1:]]
            self._cursor = found[-1][0]
            if len(found) <= READ_PAGE:
                return Changes(entries, instances)

    def _snapshot(self) -> Changes:
        wiped = self._wiped()
        if wiped:
            LOG.warning("registry: Redis lost what %s held; this instance saves all it knows again", self.path)
        elif self._cursor is not None:
            LOG.warning("registry: this instance fell behind the changes in %s; loading everything again", self.path)
        records, members = self.load()
        held = self.held_elsewhere()  # after the members: one connected since is held by then
        instances = self._redis.scard(self._key("instances"))
        return Changes([Entry([], list(members.items()), records)], int(instances), held, wiped)

    def _wiped(self) -> bool:
        """Whether Redis lost its data since the last call: the first load writes a token (`epoch`), which stays."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(self._key("epoch"), uuid.uuid4().hex, nx=True)
        pipe.get(self._key("epoch"))
        epoch = pipe.execute()[1]
        wiped = self._epoch is not None and epoch != self._epoch
        self._epoch = epoch
        return wiped

    def close(self) -> None:
        self._redis.close()


def _by_charge_point(records: Iterable[KeyRecord]) -> dict[str, list[KeyRecord]]:
    grouped: dict[str, list[KeyRecord]] = {}
    for record in records:
        grouped.setdefault(record.cp, []).append(record)
    return grouped


def _fields(record: KeyRecord) -> list[Any]:
    """[example, actuator, connector id]: registry_store's row without the key and the charge point."""
    ref = record.actuator
    return [record.example, ref.name if ref else None, ref.connector_id if ref else None]


def _row(record: KeyRecord) -> str:
    return json.dumps(_fields(record), allow_nan=False)


def _record(key: str, cp: str, row: bytes) -> KeyRecord | None:
    try:
        example, actuator, connector_id = json.loads(row)
    except (ValueError, TypeError):
        LOG.error("registry: unreadable row of %.200r in Redis; key skipped", key)
        return None
    return _key_record(key, cp, example, actuator, connector_id)


def _key_record(key: str, cp: str, example: Any, actuator: str | None, connector_id: int | None) -> KeyRecord:
    ref = ActuatorRef(cp, actuator, connector_id or 0) if actuator is not None else None
    return KeyRecord(key, cp, example, ref)


def _member_row(member: Member) -> str:
    return json.dumps([member.booted, member.absent_since])


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _member(raw: bytes | str) -> Member | None:
    try:
        booted, absent_since = json.loads(raw)
    except (ValueError, TypeError):
        LOG.error("registry: unreadable roster entry in Redis %.200r; skipped", raw)
        return None
    return Member(bool(booted), absent_since)


def _entry(fields: dict[bytes, bytes]) -> Entry:
    """A stream entry; a part that cannot be read is skipped, said once in the log."""
    try:
        forgotten = json.loads(fields.get(b"forgotten", b"[]"))
        members = [(cp, Member(bool(booted), since)) for cp, booted, since in json.loads(fields.get(b"members", b"[]"))]
        records = [_key_record(*row) for row in json.loads(fields.get(b"keys", b"[]"))]
    except (ValueError, TypeError):
        LOG.error("registry: unreadable entry in the Redis stream (by %r); skipped", fields.get(b"by"))
        return Entry()
    return Entry(forgotten, members, records)
