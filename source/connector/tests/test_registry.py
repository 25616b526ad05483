"""Registry and datapoint_map: known datapoints and their routing to topics (INTERFACE.md 3, 4)."""

from __future__ import annotations

import gc
import json
from typing import Any

import pytest

from connector.bemcom import AVAILABLE_DATAPOINTS_BYTES_PER_S, AVAILABLE_DATAPOINTS_COALESCE_S, listing_pause
from connector.datapoints import Datapoint
from connector.registry import (
    MAX_KEPT_CHARS,
    SHARED_KINDS_MAX,
    ActuatorRef,
    DatapointMap,
    KeyRecord,
    MapError,
    Registry,
    Unsaved,
    UnsavedPart,
    shortened,
)

VALID_MAPS: list[tuple[str, Any, dict[str, str], dict[str, str]]] = [
    (
        "bemcom shape",
        {
            "sensor": {"CP_1__connected": "bemcom/ocpp/1", "CP_1__Heartbeat": "bemcom/ocpp/2"},
            "actuator": {"bemcom/ocpp/3": "CP_1__execute_trigger_message"},
        },
        {"CP_1__connected": "bemcom/ocpp/1", "CP_1__Heartbeat": "bemcom/ocpp/2"},
        {"bemcom/ocpp/3": "CP_1__execute_trigger_message"},
    ),
    ("empty sections", {"sensor": {}, "actuator": {}}, {}, {}),
    ("sensor only", {"sensor": {"a": "t/a"}, "actuator": {}}, {"a": "t/a"}, {}),
    ("actuator only", {"sensor": {}, "actuator": {"t/x": "x"}}, {}, {"t/x": "x"}),
    (
        "other topics under the connector's name",
        {"sensor": {"a": "N/messages/12/value"}, "actuator": {"N/cmd/x": "x", "N/logs/x": "y", "N/states": "z"}},
        {"a": "N/messages/12/value"},
        {"N/cmd/x": "x", "N/logs/x": "y", "N/states": "z"},
    ),
    (
        "identity with __",
        {"sensor": {"site__A__connected": "t/1"}, "actuator": {"t/2": "site__A__execute_send_charging_profile__1"}},
        {"site__A__connected": "t/1"},
        {"t/2": "site__A__execute_send_charging_profile__1"},
    ),
]


@pytest.mark.parametrize(("message", "sensor", "actuator"), [m[1:] for m in VALID_MAPS], ids=[m[0] for m in VALID_MAPS])
def test_parse_accepts_the_bemcom_shape(message: Any, sensor: dict[str, str], actuator: dict[str, str]) -> None:
    """A `{"sensor": {key: topic}, "actuator": {topic: key}}` object parses into its two mappings."""
    parsed = DatapointMap.parse(message, "N")
    assert parsed.sensor == sensor
    assert parsed.actuator == actuator


INVALID_MAPS: list[tuple[str, Any]] = [
    ("list", [["CP_1__connected", "t/1"]]),
    ("string", "sensor"),
    ("number", 42),
    ("null", None),
    ("sensor is a list", {"sensor": ["CP_1__connected"]}),
    ("actuator is a string", {"actuator": "t/1"}),
    ("sensor null", {"sensor": None}),
    ("non-string key", {"sensor": {1: "t/1"}}),
    ("numeric topic", {"sensor": {"CP_1__connected": 1}}),
    ("null topic", {"sensor": {"CP_1__connected": None}}),
    ("nested topic", {"sensor": {"CP_1__connected": {"topic": "t/1"}}}),
    ("actuator key not a string", {"actuator": {"t/1": ["CP_1__execute_reset"]}}),
    ("empty sensor key", {"sensor": {"": "t/1"}}),
    ("empty sensor topic", {"sensor": {"CP_1__connected": ""}}),
    ("empty actuator topic", {"actuator": {"": "CP_1__execute_reset"}}),
    ("empty actuator key", {"actuator": {"t/1": ""}}),
    ("one bad among good", {"sensor": {"a": "t/a", "b": 2}, "actuator": {"t/c": "c"}}),
    ("empty object", {}),
    ("no actuator section", {"sensor": {"a": "t/a"}}),
    ("no sensor section", {"actuator": {"t/x": "x"}}),
    ("lone surrogate in a topic", {"sensor": {"a": "t/\ud800"}, "actuator": {}}),
    ("one topic as sensor and actuator", {"sensor": {"a": "t/1"}, "actuator": {"t/1": "b"}}),
    *[
        (f"sensor on N/{part}", {"sensor": {"a": f"N/{part}"}, "actuator": {}})
        for part in ("heartbeat", "logs", "available_datapoints", "datapoint_map", "raw_message_to_db", "state")
    ],
    ("actuator on N/logs", {"sensor": {}, "actuator": {"N/logs": "CP_1__execute_reset"}}),
    ("actuator under N/instances/", {"sensor": {}, "actuator": {"N/instances/a/state": "CP_1__execute_reset"}}),
    ("sensor under N/instances/", {"sensor": {"a": "N/instances/a/state"}, "actuator": {}}),
]


@pytest.mark.parametrize("message", [m[1] for m in INVALID_MAPS], ids=[m[0] for m in INVALID_MAPS])
def test_parse_refuses_malformed_maps(message: Any) -> None:
    """Anything but both sections of non-empty strings, on topics not the connector's own, raises MapError."""
    with pytest.raises(MapError):
        DatapointMap.parse(message, "N")
    assert issubclass(MapError, ValueError)


def point(key: str, value: Any, timestamp: int = 1) -> Datapoint:
    return Datapoint(key, value, timestamp)


def test_add_sensor_is_true_only_for_new_keys() -> None:
    """add_sensor reports True the first time a key is seen and False for every later value of it."""
    registry = Registry()
    answers = [
        registry.add_sensor(point("CP_1__connected", True)),
        registry.add_sensor(point("CP_1__connected", False)),
        registry.add_sensor(point("CP_1__Heartbeat", 5)),
        registry.add_sensor(point("CP_1__connected", True)),
    ]
    assert answers == [True, False, True, False]


def test_add_sensor_keeps_the_latest_value() -> None:
    """The registry holds the most recently added datapoint of each key."""
    registry = Registry()
    for value, at in [(100, 1), (200, 2), (150, 3)]:
        registry.add_sensor(point("CP_1__MeterValues__1__Energy.Active.Import.Register__Wh", value, at))
    assert registry.sensors["CP_1__MeterValues__1__Energy.Active.Import.Register__Wh"] == point(
        "CP_1__MeterValues__1__Energy.Active.Import.Register__Wh", 150, 3
    )


def test_add_actuator_is_true_only_for_new_keys() -> None:
    """add_actuator reports True for a new key and False for a key already known, keeping the first ref."""
    registry = Registry()
    ref = ActuatorRef("CP_1", "execute_trigger_message", 0)
    other = ActuatorRef("CP_2", "execute_trigger_message", 0)
    assert registry.add_actuator("CP_1__execute_trigger_message", ref, "MeterValues") is True
    assert registry.add_actuator("CP_1__execute_trigger_message", other, "Heartbeat") is False
    assert registry.actuator_refs["CP_1__execute_trigger_message"] == ref


def test_actuator_refs_give_back_each_charge_point_though_its_identity_holds_the_separator() -> None:
    """Refs are rebuilt from the key and a shared kind: an identity with `__` in it comes back whole."""
    registry = Registry()
    refs = [
        ActuatorRef("A__B", "execute_reset", 0),
        ActuatorRef("A", "execute_reset", 0),
        ActuatorRef("A__B", "execute_send_charging_profile", 12),
        ActuatorRef("A", "execute_send_charging_profile", 12),
    ]
    keys = ["A__B__execute_reset", "A__execute_reset", "A__B__execute_send_charging_profile__12"]
    keys.append("A__execute_send_charging_profile__12")
    for actuator_key, ref in zip(keys, refs, strict=True):
        registry.add_actuator(actuator_key, ref, None)
    assert [registry.actuator_refs.get(k) for k in keys] == refs
    assert registry.actuator_refs.get("A__B__execute_unlock_connector__1") is None


def test_actuator_kinds_are_shared_and_let_go_with_their_last_key() -> None:
    """Once shared, charge points with the same actuators hold one set object; a connector id
    chargers invented leaves nothing behind once their keys are forgotten."""
    registry = Registry()
    for cp in ("CP_1", "CP_2"):
        registry.add_actuator(f"{cp}__execute_reset", ActuatorRef(cp, "execute_reset", 0), "Soft")
        registry.add_actuator(f"{cp}__execute_unlock_connector__77", ActuatorRef(cp, "execute_unlock_connector", 77), 1)
    refs = registry.actuator_refs
    assert refs._by_cp["CP_1"] is not refs._by_cp["CP_2"]  # each its own while announced
    refs.share()
    assert refs._by_cp["CP_1"] is refs._by_cp["CP_2"] and isinstance(refs._by_cp["CP_1"], frozenset)
    assert len(refs) == 4 and set(refs._kinds) == {"__execute_reset", "__execute_unlock_connector__77"}
    del refs["CP_1__execute_unlock_connector__77"]  # the shared set is left as it is
    assert set(refs) == {"CP_1__execute_reset", "CP_2__execute_reset", "CP_2__execute_unlock_connector__77"}
    refs.share()
    registry.forget("CP_1")
    registry.forget("CP_2")
    assert len(refs) == 0 and len(refs._kinds) == 0 and len(refs._sets) == 0


def test_a_charge_point_inventing_connectors_keeps_a_set_of_its_own() -> None:
    """Beyond SHARED_KINDS_MAX kinds a charge point's set is not shared; every key still routes."""
    registry = Registry()
    refs = registry.actuator_refs
    count = SHARED_KINDS_MAX + 20
    for connector_id in range(count):
        ref = ActuatorRef("CP_1", "execute_unlock_connector", connector_id)
        registry.add_actuator(f"CP_1__execute_unlock_connector__{connector_id}", ref, True, listed=False)
    refs.share()
    assert isinstance(refs._by_cp["CP_1"], set) and len(refs) == count and len(refs._sets) == 0
    last = ActuatorRef("CP_1", "execute_unlock_connector", count - 1)
    assert refs.get(f"CP_1__execute_unlock_connector__{count - 1}") == last
    registry.drop_unlisted("CP_1")
    assert len(refs) == 0 and "CP_1" not in refs._by_cp


def test_an_actuator_key_not_made_of_its_charge_point_and_actuator_is_refused() -> None:
    """Such a key would route commands to whatever identity or actuator its characters spell."""
    registry = Registry()
    for wrong in ("CP_2__execute_reset", "CP_1__execute_unlock_connector", "CP_1__execute_reset__1"):
        with pytest.raises(ValueError, match="is not made of charge point"):
            registry.add_actuator(wrong, ActuatorRef("CP_1", "execute_reset", 0), "Soft")
    with pytest.raises(ValueError, match="is not made of charge point"):  # no connector in the key: connector 0
        registry.add_actuator("CP_1__execute_unlock_connector", ActuatorRef("CP_1", "execute_unlock_connector", 3), 1)
    registry.add_actuator("CP_9__execute_reset__1", ActuatorRef("CP_9", "execute_reset", 1), "Soft")
    with pytest.raises(ValueError, match="is execute_reset on connector 1"):  # the suffix's kind is taken
        registry.add_actuator("CP_1__execute_reset__1", ActuatorRef("CP_1", "execute_reset__1", 0), "Soft")
    registry.forget("CP_9")
    record = KeyRecord("CP_2__execute_reset", "CP_1", "Soft", ActuatorRef("CP_1", "execute_reset", 0))
    assert registry.restore(record) is False
    assert len(registry.actuator_refs) == 0 and registry.key_count("CP_1") == 0


def test_available_datapoints_shape() -> None:
    """available_datapoints is `{"sensor": {key: first value}, "actuator": {key: example}}`, as JSON."""
    registry = Registry()
    registry.add_sensor(point("CP_1__connected", True))
    registry.add_sensor(point("CP_1__connected", False))
    registry.add_sensor(point("CP_1__StatusNotification__1__status", "Available"))
    registry.add_actuator(
        "CP_1__execute_send_charging_profile__1", ActuatorRef("CP_1", "execute_send_charging_profile", 1), 11000
    )
    registry.add_actuator(
        "CP_1__execute_trigger_message", ActuatorRef("CP_1", "execute_trigger_message", 0), "MeterValues"
    )
    assert json.loads(registry.available_datapoints()) == {
        "sensor": {"CP_1__connected": True, "CP_1__StatusNotification__1__status": "Available"},
        "actuator": {"CP_1__execute_send_charging_profile__1": 11000, "CP_1__execute_trigger_message": "MeterValues"},
    }


def test_empty_registry_announces_empty_sections() -> None:
    """A fresh registry announces both sections, empty."""
    assert json.loads(Registry().available_datapoints()) == {"sensor": {}, "actuator": {}}


def test_available_datapoints_grows_key_by_key() -> None:
    """Each listing holds every key so far, however many listings were taken between additions."""
    registry = Registry(max_keys_per_cp=10_000)
    expected = {}
    for n in range(200):
        registry.add_sensor(point(f"CP_1__k{n}", n), "CP_1")
        expected[f"CP_1__k{n}"] = n
        if n % 3 == 0:
            assert json.loads(registry.available_datapoints())["sensor"] == expected
    assert json.loads(registry.available_datapoints())["sensor"] == expected


# Two charge points whose identities only differ around `__`: lookups must never confuse them.
REFS = {
    "CP__execute_send_charging_profile__1": ActuatorRef("CP", "execute_send_charging_profile", 1),
    "CP__execute_send_charging_profile__1__execute_send_charging_profile__2": ActuatorRef(
        "CP__execute_send_charging_profile__1", "execute_send_charging_profile", 2
    ),
    "site__A__execute_trigger_message": ActuatorRef("site__A", "execute_trigger_message", 0),
    "site__execute_trigger_message": ActuatorRef("site", "execute_trigger_message", 0),
}

LOOKUPS: list[tuple[str, str, tuple[str, ActuatorRef | None] | None]] = [
    ("mapped known key", "t/1", ("CP__execute_send_charging_profile__1", REFS["CP__execute_send_charging_profile__1"])),
    (
        "identity containing an actuator key",
        "t/2",
        (
            "CP__execute_send_charging_profile__1__execute_send_charging_profile__2",
            ActuatorRef("CP__execute_send_charging_profile__1", "execute_send_charging_profile", 2),
        ),
    ),
    (
        "identity with __",
        "t/3",
        ("site__A__execute_trigger_message", ActuatorRef("site__A", "execute_trigger_message", 0)),
    ),
    ("shorter identity", "t/4", ("site__execute_trigger_message", ActuatorRef("site", "execute_trigger_message", 0))),
    ("mapped unknown key", "t/5", ("site__B__execute_trigger_message", None)),
    ("unmapped topic", "t/6", None),
    ("sensor topic is not an actuator topic", "t/sensor", None),
]


@pytest.mark.parametrize(("topic", "expected"), [row[1:] for row in LOOKUPS], ids=[row[0] for row in LOOKUPS])
def test_actuator_for_topic(topic: str, expected: tuple[str, ActuatorRef | None] | None) -> None:
    """A mapped topic yields its key and the registered ref (None if unknown); identities with `__` are never split."""
    registry = Registry()
    for key, ref in REFS.items():
        registry.add_actuator(key, ref, 0)
    registry.map = DatapointMap.parse(
        {
            "sensor": {"site__A__connected": "t/sensor"},
            "actuator": {
                "t/1": "CP__execute_send_charging_profile__1",
                "t/2": "CP__execute_send_charging_profile__1__execute_send_charging_profile__2",
                "t/3": "site__A__execute_trigger_message",
                "t/4": "site__execute_trigger_message",
                "t/5": "site__B__execute_trigger_message",
            },
        }
    )
    assert registry.actuator_for_topic(topic) == expected


SENSOR_TOPICS = [("site__A__connected", "t/a"), ("site__connected", None), ("A__connected", None)]


@pytest.mark.parametrize(("key", "topic"), SENSOR_TOPICS, ids=[k for k, _ in SENSOR_TOPICS])
def test_sensor_topic_matches_the_whole_key(key: str, topic: str | None) -> None:
    """sensor_topic finds a topic only for the exact key of the map, never for a part of it."""
    registry = Registry()
    registry.map = DatapointMap.parse({"sensor": {"site__A__connected": "t/a"}, "actuator": {}})
    assert registry.sensor_topic(key) == topic


def test_fresh_registry_routes_nothing() -> None:
    """Before a datapoint_map arrives, no sensor or actuator topic is known."""
    registry = Registry()
    assert registry.sensor_topic("CP_1__connected") is None
    assert registry.actuator_for_topic("anything") is None


def test_long_text_examples_are_cut_short_in_the_listing() -> None:
    """A charger's 1 MB DataTransfer data is listed as its first 200 characters: the listing stays small."""
    registry = Registry()
    registry.add_sensor(point("CP_1__DataTransfer__V", "x" * 1_000_000), "CP_1")
    listed = json.loads(registry.available_datapoints())["sensor"]["CP_1__DataTransfer__V"]
    assert listed == "x" * 200 + "..."


def test_long_text_is_published_but_not_kept_as_the_latest_value() -> None:
    """Text beyond MAX_KEPT_CHARS is not held as a latest value (memory a charger could fill); shorter text is."""
    registry = Registry()
    registry.add_sensor(point("CP_1__DataTransfer__V", "x" * (MAX_KEPT_CHARS + 1)), "CP_1")
    registry.add_sensor(point("CP_1__DataTransfer__W", "y" * MAX_KEPT_CHARS), "CP_1")
    assert registry.latest("CP_1__DataTransfer__V") is None
    assert "CP_1__DataTransfer__V" in registry.sensors  # known all the same: listed once, not new again
    assert not registry.add_sensor(point("CP_1__DataTransfer__V", "x" * (MAX_KEPT_CHARS + 2)), "CP_1")
    latest = registry.latest("CP_1__DataTransfer__W")
    assert latest is not None and latest.value == "y" * MAX_KEPT_CHARS
    registry.add_sensor(point("CP_1__DataTransfer__V", "short"), "CP_1")
    again = registry.latest("CP_1__DataTransfer__V")
    assert again is not None and again.value == "short"


def test_unlisted_actuators_route_but_are_listed_only_when_asked() -> None:
    """An actuator added unlisted routes commands, and enters the listing with list_actuators."""
    registry = Registry()
    ref = ActuatorRef("CP_1", "execute_reset", 0)
    assert registry.add_actuator("CP_1__execute_reset", ref, "Soft", listed=False) is False
    assert registry.actuator_refs == {"CP_1__execute_reset": ref}
    assert json.loads(registry.available_datapoints())["actuator"] == {}
    assert registry.list_actuators("CP_1") is True
    assert json.loads(registry.available_datapoints())["actuator"] == {"CP_1__execute_reset": "Soft"}
    assert registry.list_actuators("CP_1") is False


def test_drop_unlisted_forgets_what_an_unbooted_charge_point_left() -> None:
    """drop_unlisted removes routable-only actuators and frees their keys; listed ones stay."""
    registry = Registry()
    registry.add_actuator("CP_1__execute_reset", ActuatorRef("CP_1", "execute_reset", 0), "Soft", listed=False)
    registry.add_sensor(point("CP_1__connected", True), "CP_1")
    registry.drop_unlisted("CP_1")
    assert registry.actuator_refs == {}
    assert registry.key_count("CP_1") == 1


def test_forget_drops_every_key_of_the_charge_point_only() -> None:
    """forget removes a charge point's values, actuators and listing entries, leaving the others'."""
    registry = Registry()
    for cp in ("CP_1", "CP_2"):
        registry.add_sensor(point(f"{cp}__connected", False), cp)
        registry.add_actuator(f"{cp}__execute_reset", ActuatorRef(cp, "execute_reset", 0), "Soft")
    registry.forget("CP_1")
    assert json.loads(registry.available_datapoints()) == {
        "sensor": {"CP_2__connected": False},
        "actuator": {"CP_2__execute_reset": "Soft"},
    }
    assert set(registry.sensors) == {"CP_2__connected"}
    assert set(registry.actuator_refs) == {"CP_2__execute_reset"}
    assert registry.key_count("CP_1") == 0


def test_new_listed_keys_are_handed_to_the_store_once() -> None:
    """take_unsaved returns each newly listed key of a charge point once; keys of no charge point are not kept."""
    registry = Registry()
    registry.add_sensor(point("CP_1__connected", True), "CP_1")
    registry.add_sensor(point("CP_1__connected", False), "CP_1")
    registry.add_sensor(point("status-of-a-mapped-key", "Failed: x"), None)
    assert [r.key for r in registry.take_unsaved()] == ["CP_1__connected"]
    assert list(registry.take_unsaved()) == []


def test_the_store_gets_every_new_key_once_with_its_example_and_actuator() -> None:
    """Keys wait as places in their charge point's listing parts: taken, they read back as the
    records the store keeps (the listed example, the actuator from the key, an identity with
    `__` in it), each once, across takes; a forgotten charge point's are dropped; `without`
    leaves out the charge points named."""
    registry = Registry()
    cp = "site__CP_1"
    registry.add_sensor(point(f"{cp}__connected", True), cp)
    registry.add_actuator(f"{cp}__execute_reset", ActuatorRef(cp, "execute_reset", 0), "Soft")
    first = list(registry.take_unsaved())
    registry.add_sensor(point(f"{cp}__Heartbeat", 5), cp)
    registry.add_sensor(point(f"{cp}__BootNotification__firmware_version", "x" * 500), cp)
    limit = f"{cp}__execute_send_charging_profile__2"
    registry.add_actuator(limit, ActuatorRef(cp, "execute_send_charging_profile", 2), 11000)
    registry.add_sensor(point("CP_2__connected", True), "CP_2")
    registry.add_sensor(point("CP_3__connected", True), "CP_3")
    registry.forget("CP_3")
    second = registry.take_unsaved()
    assert first == [
        KeyRecord(f"{cp}__connected", cp, True),
        KeyRecord(f"{cp}__execute_reset", cp, "Soft", ActuatorRef(cp, "execute_reset", 0)),
    ]
    assert sorted(list(second), key=lambda r: r.key) == sorted(
        [
            KeyRecord(f"{cp}__Heartbeat", cp, 5),
            KeyRecord(f"{cp}__BootNotification__firmware_version", cp, shortened("x" * 500)),
            KeyRecord(limit, cp, 11000, ActuatorRef(cp, "execute_send_charging_profile", 2)),
            KeyRecord("CP_2__connected", "CP_2", True),
        ],
        key=lambda r: r.key,
    )
    assert [r.key for r in second.without({cp})] == ["CP_2__connected"]
    assert sorted(first + list(second), key=lambda r: r.key) == sorted(
        registry.records(cp) + registry.records("CP_2"), key=lambda r: r.key
    )
    assert list(registry.take_unsaved()) == []


def test_new_keys_wait_for_the_store_without_a_record_each() -> None:
    """What made a 10,000-charger connect wave's memory: no KeyRecord exists for a key waiting
    for the store, only while the store reads them; a failed save's come back ahead of newer
    ones, still without a record each (read back on the loop, they cost it 0.3 s a save)."""
    gc.collect()
    before = sum(isinstance(o, KeyRecord) for o in gc.get_objects())
    registry = Registry()
    for n in range(100):
        registry.add_sensor(point(f"CP_{n}__connected", True), f"CP_{n}")
        registry.add_actuator(f"CP_{n}__execute_reset", ActuatorRef(f"CP_{n}", "execute_reset", 0), "Soft")
    taken = registry.take_unsaved()
    registry.add_sensor(point("CP_0__Heartbeat", 1), "CP_0")
    registry.give_back(taken)
    assert sum(isinstance(o, KeyRecord) for o in gc.get_objects()) == before
    keys = [r.key for r in registry.take_unsaved()]
    assert len(keys) == 201 and keys[-1] == "CP_0__Heartbeat"


def test_a_key_restored_between_new_ones_is_not_saved_again() -> None:
    """Another instance's key for a charger that lists new keys here (it moved between them):
    restored into the same listing part, it is not handed to the store as new; the new keys
    before and after it are, once each."""
    registry = Registry()
    registry.add_sensor(point("CP_1__connected", True), "CP_1")
    assert registry.restore(KeyRecord("CP_1__Heartbeat", "CP_1", 7))
    registry.add_actuator("CP_1__execute_reset", ActuatorRef("CP_1", "execute_reset", 0), "Soft")
    assert list(registry.take_unsaved()) == [
        KeyRecord("CP_1__connected", "CP_1", True),
        KeyRecord("CP_1__execute_reset", "CP_1", "Soft", ActuatorRef("CP_1", "execute_reset", 0)),
    ]
    assert set(json.loads(registry.available_datapoints())["sensor"]) == {"CP_1__connected", "CP_1__Heartbeat"}


def test_an_actuator_name_with_double_underscores_is_not_restored() -> None:
    """Only a damaged store could hold one: its key would read back (`actuator_of`) as another
    actuator, so the registry refuses it as it refuses a key not made of its actuator."""
    registry = Registry()
    damaged = KeyRecord("CP_1__vendor__3", "CP_1", 1, ActuatorRef("CP_1", "vendor__3", 0))
    assert not registry.restore(damaged)
    assert "CP_1__vendor__3" not in registry.actuator_refs
    assert registry.key_count("CP_1") == 0


def test_a_part_that_does_not_read_back_costs_its_own_keys_only(caplog: pytest.LogCaptureFixture) -> None:
    """A listing part the store cannot read back (never written so; an actuator restored from a
    damaged store with `__` in its name reads back so) loses that charge point's new keys, with an
    ERROR naming it; the others are saved."""
    taken = Unsaved(
        parts=[
            UnsavedPart("CP_1", b'"CP_1__connected": true', 0, b'"CP_1__execute_x__y": 1', 0),
            UnsavedPart("CP_2", b'"CP_2__connected": true, "CP_2__Heartbeat": 5', 23, b"", 0),
            UnsavedPart("CP_3", b'"CP_3__connected": tru', 0, b"", 0),
        ]
    )
    assert list(taken) == [KeyRecord("CP_2__Heartbeat", "CP_2", 5)]
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 2 and "'CP_1'" in errors[0] and "'CP_3'" in errors[1]


def test_restoring_a_key_already_known_changes_nothing() -> None:
    """A key restored again (another instance's save read back), or seen here, is not listed twice nor counted twice."""
    ref = ActuatorRef("CP_1", "execute_unlock_connector", 2)
    registry = Registry()
    registry.add_sensor(point("CP_1__connected", True), "CP_1")
    registry.add_actuator("CP_1__execute_reset", ActuatorRef("CP_1", "execute_reset", 0), "Soft", listed=False)
    registry.take_unsaved()
    records = [
        KeyRecord("CP_1__connected", "CP_1", False),
        KeyRecord("CP_1__execute_reset", "CP_1", "Hard", ActuatorRef("CP_1", "execute_reset", 0)),
        KeyRecord("CP_1__BootNotification__charge_point_model", "CP_1", "Wallbox"),
        KeyRecord("CP_1__execute_unlock_connector__2", "CP_1", True, ref),
    ]
    assert [registry.restore(r) for r in records] == [False, False, True, True]
    listing = registry.available_datapoints()
    assert [registry.restore(r) for r in records] == [False] * 4
    assert registry.available_datapoints() == listing
    assert registry.key_count("CP_1") == 4
    assert list(registry.take_unsaved()) == []


def test_records_read_back_what_a_charge_point_lists() -> None:
    """A charge point's listed keys come back as the store keeps them; unlisted actuators and others' keys do not."""
    ref = ActuatorRef("CP_1", "execute_unlock_connector", 2)
    registry = Registry()
    registry.add_sensor(point("CP_1__connected", True), "CP_1")
    registry.add_sensor(point("CP_2__connected", True), "CP_2")
    registry.add_actuator("CP_1__execute_unlock_connector__2", ref, True)
    registry.add_actuator("CP_1__execute_reset", ActuatorRef("CP_1", "execute_reset", 0), "Soft", listed=False)
    assert registry.records("CP_1") == [
        KeyRecord("CP_1__connected", "CP_1", True),
        KeyRecord("CP_1__execute_unlock_connector__2", "CP_1", True, ref),
    ]
    assert registry.records("CP_3") == []


def test_a_large_listing_waits_in_proportion_to_its_size() -> None:
    """The pause after a listing is the coalescing second, or longer in proportion to the listing's size."""
    assert listing_pause(1000) == AVAILABLE_DATAPOINTS_COALESCE_S
    assert listing_pause(27_000_000) == 27_000_000 / AVAILABLE_DATAPOINTS_BYTES_PER_S


async def test_a_listing_joined_in_a_worker_thread_is_the_snapshot_taken_on_the_loop() -> None:
    """The parts are immutable: keys added while the join runs elsewhere change the next listing, not this one."""
    import asyncio
    import json

    from connector.registry import join_listing

    registry = Registry()
    registry.add_sensor(point("CP_1__connected", True), "CP_1")
    registry.add_actuator("CP_1__execute_reset", ActuatorRef("CP_1", "execute_reset", 0), "Soft")
    parts = registry.listing_parts()
    registry.add_sensor(point("CP_1__Heartbeat", 5), "CP_1")  # while the join below runs
    registry.add_sensor(point("CP_2__connected", False), "CP_2")
    joined = await asyncio.to_thread(join_listing, parts)
    assert json.loads(joined) == {"sensor": {"CP_1__connected": True}, "actuator": {"CP_1__execute_reset": "Soft"}}
    assert json.loads(registry.available_datapoints())["sensor"] == {
        "CP_1__connected": True,
        "CP_1__Heartbeat": 5,
        "CP_2__connected": False,
    }
