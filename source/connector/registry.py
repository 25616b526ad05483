"""Pure: the datapoints the connector knows and the map that routes them to topics.

Keys are looked up, never split at a guessed identity: the registry records, for each
charge point, which actuators and connectors it has (ActuatorRefs), so identities may
contain `__`.
"""

from __future__ import annotations

import json
import logging
import weakref
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from connector.datapoints import Datapoint

LOG = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ActuatorRef:
    cp: str
    name: str
    connector_id: int


@dataclass(frozen=True, slots=True, weakref_slot=True, eq=False)  # one per suffix: compared by identity
class _Kind:
    """An actuator's name and connector id, shared by every charge point's key for them."""

    name: str
    connector_id: int
    suffix: str  # what follows the identity in its key: `__<name>` or `__<name>__<connector id>`


def key_suffixes(key: str) -> tuple[str, str]:
    """The two ways an actuator key can end after its identity: `__<last part>` and
    `__<last two parts>` (an actuator's name has no `__`, and is never a connector id)."""
    last = key.rfind("__")
    before = key.rfind("__", 0, last) if last > 0 else -1
    return key[last:] if last >= 0 else "", key[before:] if before >= 0 else ""


SHARED_KINDS_MAX = 256  # a charger with 16 connectors has some 170


class ActuatorRefs(MutableMapping[str, ActuatorRef]):
    """Actuator key -> ActuatorRef, holding nothing per key.

    A charger has some 24 actuator keys. A string, a dict entry and an ActuatorRef for
    each were some 3 KB of every connected charger (`benchmark/connection_memory.py`).
    Here a charge point has a set of kinds, and a key is looked up as its identity and a
    kind's suffix: the suffix is the key's last part or last two, so the identity is
    whatever comes before, `__` in it or not. An ActuatorRef is made when a key is looked
    up (a command: rare).

    A charge point's set changes in place while its actuators are announced (a connect, a
    connector seen), and `share` then swaps it for the one set object of every charge
    point with the same kinds (most of a fleet). Kinds and shared sets are held weakly: the
    connector ids chargers invent leave nothing behind once their keys are gone. A charge
    point with more than SHARED_KINDS_MAX kinds keeps a set of its own.
    """

    def __init__(self) -> None:
        self._by_cp: dict[str, frozenset[_Kind] | set[_Kind]] = {}
        self._changed: set[str] = set()  # charge points whose set is their own until `share`
        self._kinds: dict[str, weakref.ref[_Kind]] = {}  # by suffix; each entry leaves with its kind
        # Keyed by an equal copy: a set as its own key would keep itself alive.
        self._sets: weakref.WeakValueDictionary[frozenset[_Kind], frozenset[_Kind]] = weakref.WeakValueDictionary()

    def _kind(self, suffix: str) -> _Kind | None:
        held = self._kinds.get(suffix)
        return None if held is None else held()

    def _forget_kind(self, suffix: str) -> Callable[[weakref.ref[_Kind]], None]:
        """What drops a kind's entry once no charge point has it (a weakref's callback)."""
        kinds = self._kinds

        def forget(_: weakref.ref[_Kind]) -> None:
            kinds.pop(suffix, None)

        return forget

    def _find(self, key: str) -> tuple[str, _Kind] | None:
        for suffix in key_suffixes(key):
            kind = self._kind(suffix)
            if kind is not None:
                cp = key[: len(key) - len(suffix)]
                if kind in self._by_cp.get(cp, ()):
                    return cp, kind
        return None

    def __getitem__(self, key: str) -> ActuatorRef:
        found = self._find(key)
        if found is None:
            raise KeyError(key)
        cp, kind = found
        return ActuatorRef(cp, kind.name, kind.connector_id)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._find(key) is not None

    def __setitem__(self, key: str, ref: ActuatorRef) -> None:
        suffix = key[len(ref.cp) :]
        made = (
            (f"__{ref.name}__{ref.connector_id}", f"__{ref.name}")
            if ref.connector_id == 0
            else (f"__{ref.name}__{ref.connector_id}",)
        )
        if not key.startswith(ref.cp) or suffix not in made:  # `__<name>` alone only for connector 0
            raise ValueError(
                f"actuator key {key[:200]!r} is not made of charge point {ref.cp[:200]!r} and its actuator"
            )
        kind = self._kind(suffix)
        if kind is not None and (kind.name, kind.connector_id) != (ref.name, ref.connector_id):
            raise ValueError(f"actuator key {key[:200]!r} is {kind.name} on connector {kind.connector_id}, not {ref}")
        # A name with `__` (only a damaged store holds one) would read back as another actuator (actuator_of).
        if "__" in ref.name:
            raise ValueError(f"actuator name {ref.name[:200]!r} has `__` in it")
        if kind is None:
            kind = _Kind(ref.name, ref.connector_id, suffix)
            self._kinds[suffix] = weakref.ref(kind, self._forget_kind(suffix))
        self._own(ref.cp).add(kind)

    def __delitem__(self, key: str) -> None:
        found = self._find(key)
        if found is None:
            raise KeyError(key)
        cp, kind = found
        kinds = self._own(cp)
        kinds.discard(kind)
        if not kinds:
            del self._by_cp[cp]

    def _own(self, cp: str) -> set[_Kind]:
        """The charge point's set, its own to change (a shared one copied)."""
        kinds = self._by_cp.get(cp)
        if not isinstance(kinds, set):
            kinds = self._by_cp[cp] = set(kinds or ())
        self._changed.add(cp)
        return kinds

    def share(self) -> None:
        """Swap the sets changed since the last call for the shared ones (cheap: a few per
        charge point that connected meanwhile)."""
        for cp in self._changed:
            kinds = self._by_cp.get(cp)
            if not isinstance(kinds, set) or len(kinds) > SHARED_KINDS_MAX:
                continue
            frozen = frozenset(kinds)
            shared = self._sets.get(frozen)
            if shared is None:
                shared = self._sets[frozenset(kinds)] = frozen
            self._by_cp[cp] = shared
        self._changed.clear()

    def forget(self, cp: str) -> None:
        """Drop every actuator of a charge point."""
        self._by_cp.pop(cp, None)
        self._changed.discard(cp)

    def __iter__(self) -> Iterator[str]:
        return (cp + kind.suffix for cp, kinds in self._by_cp.items() for kind in kinds)

    def __len__(self) -> int:
        return sum(len(kinds) for kinds in self._by_cp.values())


class MapError(ValueError):
    """A datapoint_map payload that is not `{"sensor": {key: topic}, "actuator": {topic: key}}`."""


MAX_TOPIC_BYTES = 65535  # MQTT 3.1.1 1.5.3


def topic_problem(topic: str) -> str | None:
    """Why `topic` cannot be published to or subscribed as one exact topic; None if it can."""
    if not topic:
        return "empty topic"
    if "+" in topic or "#" in topic:
        return f"wildcard in topic {topic[:200]!r}"
    if "\0" in topic:
        return "NUL in topic"
    try:
        encoded = topic.encode()
    except UnicodeEncodeError:  # a lone surrogate ("\ud800" is valid JSON text)
        return "topic is not valid UTF-8"
    if len(encoded) > MAX_TOPIC_BYTES:
        return "topic longer than 65535 bytes"
    return None


# The connector's own topics under `N/`. A map that routes a value onto one of them feeds
# the connector itself: a sensor on N/datapoint_map wiped the map (retained, so at every
# start), an actuator on N/logs looped at 340 messages/s. N/instances/ is reserved for the
# presence topics of several instances. Other topics under N/ stay allowed: BEMCom assigns
# map topics such as N/messages/12/value.
OWN_TOPICS = ("heartbeat", "logs", "available_datapoints", "datapoint_map", "raw_message_to_db", "state")
RESERVED_SUBTREES = ("instances/",)
MAP_SECTIONS = ("sensor", "actuator")


def own_topic(topic: str, connector_name: str) -> bool:
    """True if `topic` is one the connector publishes or listens to itself."""
    prefix = f"{connector_name}/"
    if not topic.startswith(prefix):
        return False
    part = topic[len(prefix) :]
    return part in OWN_TOPICS or part.startswith(RESERVED_SUBTREES)


@dataclass(frozen=True)
class DatapointMap:
    sensor: dict[str, str]  # key -> topic
    actuator: dict[str, str]  # topic -> key

    @classmethod
    def parse(cls, message: Any, connector_name: str | None = None) -> DatapointMap:
        """The map in a datapoint_map message, or MapError saying what is wrong with it.

        `connector_name`: refuse topics of the connector's own (`N/...`, see OWN_TOPICS).
        """
        if not isinstance(message, dict):
            raise MapError("datapoint_map must be a JSON object")
        sensor, actuator = (_section(message, name) for name in MAP_SECTIONS)
        for topic in [*sensor.values(), *actuator.keys()]:
            problem = topic_problem(topic)
            if problem is None and connector_name is not None and own_topic(topic, connector_name):
                problem = f"{topic[:200]!r} is one of the connector's own topics"
            if problem is not None:
                raise MapError(f"datapoint_map: {problem}")
        both = set(sensor.values()) & actuator.keys()
        if both:
            raise MapError(f"datapoint_map: {min(both)[:200]!r} is both a sensor and an actuator topic")
        return cls(sensor=sensor, actuator=actuator)


def _section(message: dict[Any, Any], name: str) -> dict[str, str]:
    """One section of a map: required (a missing one read as empty once wiped a whole map)."""
    if name not in message:
        raise MapError(f"datapoint_map has no {name!r} section")
    section = message[name]
    if not isinstance(section, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and k and v for k, v in section.items()
    ):
        raise MapError(f"datapoint_map.{name} must map non-empty strings to non-empty strings")
    return section


# Longest key a charge point may mint. Parts of keys are the charger's text (a measurand, a
# unit, a 2.x component or variable name, a vendor id), and a schema's maxLength is a
# tolerated deviation: a 600,000-character component name made a key as long, listed in
# every available_datapoints message; some hundred of them took the listing past MQTT's
# 256 MB, and then no charger's new key was listed again. Real keys have some tens.
MAX_KEY_CHARS = 512


class KeyLimitError(Exception):
    """A charge point has as many keys as OCPP_MAX_KEYS_PER_CHARGE_POINT allows."""


class KeyTooLongError(KeyLimitError):
    """A charge point's new key is longer than MAX_KEY_CHARS after its identity: not kept, like one beyond the limit."""


def add_entry(entries: bytes, key: str, example: Any) -> bytes:
    """One charge point's part of a listing section with `"key": example` appended.

    With thousands of chargers available_datapoints lists hundreds of thousands of keys
    (27 MB at 10,000 chargers). Encoding the whole dict again for every new key blocked the
    loop for a large share of each second while a fleet booted (the benchmark showed
    commands waiting over a second); here each entry is encoded once, when its key appears,
    into its charge point's part, and a listing is one join of the parts. The parts are
    immutable (a new one per new key: a few KB, rarely), so that the join can run in a
    worker thread while the loop adds keys (`join_listing`).
    """
    entry = f"{json.dumps(key)}: {json.dumps(shortened(example), allow_nan=False)}".encode()
    return entries + b", " + entry if entries else entry


def listed_entries(entries: bytes, start: int = 0) -> dict[str, Any]:
    """The `key: example` entries of one charge point's part of a listing section, from
    `start` (a length the part had: where a later entry, with its `, `, begins)."""
    rest = entries[start:].removeprefix(b", ")
    return json.loads(b"{" + rest + b"}") if rest else {}


def listed_keys(entries: bytes) -> list[str]:
    """The keys in one charge point's part of a listing section (to forget them: rare)."""
    return list(listed_entries(entries))


def actuator_of(cp: str, key: str) -> ActuatorRef:
    """The actuator a listed key of `cp` stands for, read from the key: ActuatorRefs lets in
    only `<cp>__<name>` (connector 0) and `<cp>__<name>__<connector id>`, and a name has no `__`."""
    name, _, connector_id = key[len(cp) + 2 :].partition("__")
    return ActuatorRef(cp, name, int(connector_id) if connector_id else 0)


MAX_EXAMPLE_CHARS = 200
# Text longer than this is not kept as a sensor's latest value: a charger could otherwise
# hold its keys' limit x a frame's size of memory (2,000 NotifyReport values of 1 MB each).
# Every value is published all the same; only a sensor mapped later misses such a value
# until its next one. 2.x's longest variable value (ValueType) is 2,500 characters.
MAX_KEPT_CHARS = 4096
NOT_KEPT = "<not kept: longer than MAX_KEPT_CHARS>"  # by identity: a charger's text never `is` it
STATUS_SUFFIX = "__status"  # `<actuator key>__status`: the answer to the last command


def shortened(example: Any) -> Any:
    """An example as listed: long text (a charger's DataTransfer data, up to a frame's size)
    cut short, so what chargers send cannot make the listing huge."""
    if isinstance(example, str) and len(example) > MAX_EXAMPLE_CHARS:
        return example[:MAX_EXAMPLE_CHARS] + "..."
    return example


@dataclass(frozen=True, slots=True)  # some thousand wait for the store while a fleet boots
class KeyRecord:
    """A listed key as the registry store keeps it across restarts."""

    key: str
    cp: str
    example: Any
    actuator: ActuatorRef | None = None  # None: a sensor


class UnsavedPart(NamedTuple):
    """A charge point's listing parts and where its entries not saved yet begin in each."""

    cp: str
    sensors: bytes
    sensors_from: int
    actuators: bytes
    actuators_from: int


class Unsaved:
    """Keys listed since the store last took them, read back from the listing when saved.

    A fleet booting at once lists hundreds of thousands of keys while the store, a worker
    thread beside a saturated loop, saves them slowly. Held as a KeyRecord each (with the
    key's string and an ActuatorRef), 220,000 of them waited at 10,000 2.0.1 chargers, some
    60 MB, and Python's allocator kept most of that memory once they were saved
    (docs/benchmark.md). Here a charge point's new keys cost one entry: where they begin in
    its listing parts. The parts are immutable bytes shared with the listing, so the
    records are made as the store iterates, in its worker thread, a batch at a time.
    `records` holds the few given as records (a failed save's, another instance's).
    """

    __slots__ = ("parts", "records")

    def __init__(self, records: list[KeyRecord] | None = None, parts: list[UnsavedPart] | None = None) -> None:
        self.records = records or []
        self.parts = parts or []

    def __bool__(self) -> bool:
        return bool(self.records or self.parts)

    def __iter__(self) -> Iterator[KeyRecord]:
        yield from self.records
        for cp, sensors, sensors_from, actuators, actuators_from in self.parts:
            try:  # never fails for parts add_entry wrote; if it did, the other charge points are still saved
                new_sensors = listed_entries(sensors, sensors_from)
                records = [KeyRecord(key, cp, example) for key, example in new_sensors.items()]
                new_actuators = listed_entries(actuators, actuators_from)
                records += [KeyRecord(key, cp, example, actuator_of(cp, key)) for key, example in new_actuators.items()]
            except ValueError as error:
                LOG.error("registry: new keys of %.200r not saved, its listing part unreadable: %s", cp, error)
                continue
            yield from records

    def without(self, gone: set[str]) -> Unsaved:
        """These but the keys of the charge points in `gone`."""
        return Unsaved([r for r in self.records if r.cp not in gone], [p for p in self.parts if p.cp not in gone])


class ChargePointKeys:
    """Everything the registry holds for one charge point (or, under None, for no charge point).

    Lean on purpose (slots, no set of its keys): there is one per charger, and the keys
    themselves can be read back from the listing buffers when the charge point is forgotten.
    """

    __slots__ = ("actuators", "count", "restored", "sensors", "unlisted")

    def __init__(self) -> None:
        self.count = 0  # keys held, listed or not: what the key limit counts
        self.sensors = b""  # its part of the listing's sensor section
        self.actuators = b""  # ... and of its actuator section
        # actuator key -> (ref, example): routable, not announced yet
        self.unlisted: dict[str, tuple[ActuatorRef, Any]] | None = None
        self.restored: set[str] | None = None  # sensor keys listed before a restart, no value since


class ListingParts(NamedTuple):
    sensors: list[bytes]
    actuators: list[bytes]


def join_listing(parts: ListingParts) -> bytes:
    """The listing's JSON from its pieces. At 10,000 chargers it is 27 MB: bytes.join lets go of
    the GIL while it copies that much, so in a worker thread the loop goes on meanwhile."""
    sensors, actuators = b", ".join(parts.sensors), b", ".join(parts.actuators)
    return b"".join((b'{"sensor": {', sensors, b'}, "actuator": {', actuators, b"}}"))


class Registry:
    """Every key seen, with the latest sensor values; at most `max_keys_per_cp` per charge point.

    The bound matters: keys come from what chargers send (connector ids, enum values a
    charger invents, DataTransfer vendor ids), and each is kept until its charge point is
    forgotten and listed in every available_datapoints message.

    Actuators may be routable before they are listed: a charge point that has not booted
    (and is not known from before) can be commanded while connected, but its actuators
    enter the listing only with `list_actuators`, so identities that merely connect leave
    nothing behind (`drop_unlisted` at disconnect).
    """

    def __init__(self, max_keys_per_cp: int = 2000) -> None:
        self.sensors: dict[str, Datapoint] = {}  # key -> latest datapoint
        self.actuator_refs = ActuatorRefs()  # listed or not: what commands route by
        self.map = DatapointMap({}, {})
        self.max_keys_per_cp = max_keys_per_cp
        self._by_cp: dict[str | None, ChargePointKeys] = {}
        self.unsaved: list[KeyRecord] = []  # given as records since the store last took them (rare)
        self._unsaved_from: dict[str, tuple[int, int]] = {}  # cp -> its parts' lengths before its first new key
        self._given_back: list[UnsavedPart] = []  # a failed save's parts

    def add_sensor(self, point: Datapoint, cp: str | None = None) -> bool:
        """Record a sensor's latest value; True if the key is new to the listing (announce it).

        KeyLimitError for a new key of a charge point that has used up its keys.
        """
        kept = point if not (isinstance(point.value, str) and len(point.value) > MAX_KEPT_CHARS) else None
        if point.key in self.sensors:
            self.sensors[point.key] = kept or point._replace(value=NOT_KEPT)
            return False
        keys = self._keys(cp)
        if keys.restored is not None and point.key in keys.restored:  # listed before a restart
            keys.restored.discard(point.key)
            self.sensors[point.key] = kept or point._replace(value=NOT_KEPT)
            return False
        self._count_new_key(cp, keys, point.key)
        self.sensors[point.key] = kept or point._replace(value=NOT_KEPT)
        if cp is not None:  # keys of no charge point are not kept across restarts
            self._mark_unsaved(cp, keys)
        keys.sensors = add_entry(keys.sensors, point.key, point.value)  # its first value is its example
        return True

    def latest(self, key: str) -> Datapoint | None:
        """A sensor's latest value, where it is known and kept (see MAX_KEPT_CHARS)."""
        point = self.sensors.get(key)
        return None if point is None or point.value is NOT_KEPT else point

    def add_actuator(self, key: str, ref: ActuatorRef, example: Any, listed: bool = True) -> bool:
        """Record an actuator; True if it is new to the listing. KeyLimitError as for sensors."""
        keys = self._keys(ref.cp)
        if keys.unlisted is not None and key in keys.unlisted:
            if listed:
                self._list_actuator(keys, key, ref, keys.unlisted.pop(key)[1])
            return listed
        if key in self.actuator_refs:  # routable and not unlisted: listed
            return False
        self.actuator_refs[key] = ref  # first: it refuses a key not made of ref.cp (ValueError)
        try:
            self._count_new_key(ref.cp, keys, key)
        except KeyLimitError:
            del self.actuator_refs[key]
            raise
        if listed:
            self._list_actuator(keys, key, ref, example)
        else:
            if keys.unlisted is None:
                keys.unlisted = {}
            keys.unlisted[key] = (ref, example)  # the ref kept: listing it needs no lookup
        return listed

    def _list_actuator(self, keys: ChargePointKeys, key: str, ref: ActuatorRef, example: Any) -> None:
        self._mark_unsaved(ref.cp, keys)
        keys.actuators = add_entry(keys.actuators, key, example)

    def _settle_unsaved(self, cp: str, keys: ChargePointKeys) -> None:
        """Before a restored entry enters `cp`'s parts: its new keys so far become records, so that
        what follows a mark stays new (a restored key is the store's, or another instance's, already)."""
        start = self._unsaved_from.pop(cp, None)
        if start is not None:  # rare: a charger's keys from another instance while it lists its own here
            self.unsaved += Unsaved(parts=[UnsavedPart(cp, keys.sensors, start[0], keys.actuators, start[1])])

    def _mark_unsaved(self, cp: str, keys: ChargePointKeys) -> None:
        """Before a new entry of `cp`'s parts: the store takes what follows (see Unsaved)."""
        if cp not in self._unsaved_from:
            self._unsaved_from[cp] = (len(keys.sensors), len(keys.actuators))

    def list_actuators(self, cp: str) -> bool:
        """List the charge point's routable actuators (it booted); True if any was new."""
        keys = self._keys(cp)
        unlisted, keys.unlisted = keys.unlisted or {}, None
        for key, (ref, example) in unlisted.items():
            self._list_actuator(keys, key, ref, example)
        return bool(unlisted)

    def drop_unlisted(self, cp: str) -> None:
        """Forget the actuators of a charge point that left before it was listed."""
        keys = self._by_cp.get(cp)
        if keys is None or keys.unlisted is None:
            return
        for key in keys.unlisted:
            del self.actuator_refs[key]
        keys.count -= len(keys.unlisted)
        keys.unlisted = None

    def forget(self, cp: str) -> None:
        """Drop every key of a charge point (gone for long); the listing shrinks with it."""
        keys = self._by_cp.pop(cp, None)
        self._unsaved_from.pop(cp, None)
        if keys is None:
            return
        for key in listed_keys(keys.sensors):
            self.sensors.pop(key, None)
        self.actuator_refs.forget(cp)

    def restore(self, record: KeyRecord) -> bool:
        """A listed key from before a restart, or from another instance (shared_registry.py):
        listed (and routable) again, without a value yet, and not unsaved (the store has it).
        True if it entered the listing.

        No latest value: publishing a restored example to a newly mapped topic could
        overwrite a newer retained value there. Beyond the key limit, restored keys are
        skipped like new ones (the limit may have been lowered). A key already known is
        left as it is: several instances hear of each other's keys again and again. An
        actuator whose key is not its charge point's identity and its actuator's suffix is
        no key this connector made (ActuatorRefs): skipped.
        """
        keys = self._keys(record.cp)
        if keys.count >= self.max_keys_per_cp or self._known(record.key, keys):
            return False
        self._settle_unsaved(record.cp, keys)
        if record.actuator is None:
            if keys.restored is None:
                keys.restored = set()
            keys.restored.add(record.key)
            keys.sensors = add_entry(keys.sensors, record.key, record.example)
        else:
            try:
                self.actuator_refs[record.key] = record.actuator
            except ValueError:
                return False
            keys.actuators = add_entry(keys.actuators, record.key, record.example)
        keys.count += 1
        return True

    def _known(self, key: str, keys: ChargePointKeys) -> bool:
        """Listed, restored, or routable (an actuator not listed yet: its listing follows the boot)."""
        return key in self.sensors or key in self.actuator_refs or (keys.restored is not None and key in keys.restored)

    def records(self, cp: str) -> list[KeyRecord]:
        """A charge point's listed keys as the store keeps them, read back from its listing parts (rare:
        several instances, when another forgot a charger that is connected here)."""
        keys = self._by_cp.get(cp)
        if keys is None:
            return []
        return list(Unsaved(parts=[UnsavedPart(cp, keys.sensors, 0, keys.actuators, 0)]))

    def key_count(self, cp: str) -> int:
        """Keys the charge point holds (listed, or routable while it is connected)."""
        keys = self._by_cp.get(cp)
        return 0 if keys is None else keys.count

    def take_unsaved(self) -> Unsaved:
        """What was listed since the last take, for the store; a failed save gives it back (`give_back`)."""
        parts = self._given_back + [
            UnsavedPart(cp, keys.sensors, sensors_from, keys.actuators, actuators_from)
            for cp, (sensors_from, actuators_from) in self._unsaved_from.items()
            if (keys := self._by_cp.get(cp)) is not None
        ]
        taken = Unsaved(self.unsaved, parts)
        self.unsaved, self._unsaved_from, self._given_back = [], {}, []
        return taken

    def give_back(self, taken: Unsaved) -> None:
        """What a failed save took, ahead of what was listed since. Its parts stay parts: read
        back on the loop, a connect wave's were some 0.3 s of it, again at every failed save."""
        self.unsaved[:0] = taken.records
        self._given_back[:0] = taken.parts

    def _keys(self, cp: str | None) -> ChargePointKeys:
        keys = self._by_cp.get(cp)
        if keys is None:
            keys = self._by_cp[cp] = ChargePointKeys()
        return keys

    def _count_new_key(self, cp: str | None, keys: ChargePointKeys, key: str) -> None:
        # Keys of no charge point (the status of a key the map names) are bounded by the map;
        # the status of a known actuator by its actuator, and it must always reach the operator.
        # Counted after the identity: what the charger's messages minted, not its name (a
        # long identity is the operator's or the handshake's business, bounded there).
        if cp is not None and len(key) - len(cp) > MAX_KEY_CHARS and not self._is_status(key):
            raise KeyTooLongError(cp)
        if cp is not None and keys.count >= self.max_keys_per_cp and not self._is_status(key):
            raise KeyLimitError(cp)
        keys.count += 1

    def _is_status(self, key: str) -> bool:
        return key.endswith(STATUS_SUFFIX) and key[: -len(STATUS_SUFFIX)] in self.actuator_refs

    def available_datapoints(self) -> bytes:
        """`{"sensor": {key: example}, "actuator": {key: example}}` as UTF-8 JSON; a sensor's
        example is the first value it had."""
        return join_listing(self.listing_parts())

    def listing_parts(self) -> ListingParts:
        """The listing's pieces as they are now (references, no copies): joined by `join_listing`,
        which may run in another thread while the registry changes."""
        sensors = [k.sensors for k in self._by_cp.values() if k.sensors]
        actuators = [k.actuators for k in self._by_cp.values() if k.actuators]
        return ListingParts(sensors, actuators)

    def sensor_topic(self, key: str) -> str | None:
        return self.map.sensor.get(key)

    def actuator_for_topic(self, topic: str) -> tuple[str, ActuatorRef | None] | None:
        """(key, ref) for an actuator topic of the map; ref is None for unknown keys."""
        key = self.map.actuator.get(topic)
        if key is None:
            return None
        return key, self.actuator_refs.get(key)
