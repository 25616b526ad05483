"""The registry store: listed keys and the roster survive a restart (SQLite in STATE_DIR)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connector import registry_store
from connector.fleet import Member
from connector.registry import ActuatorRef, KeyRecord, Registry
from connector.registry_store import RegistryStore

SENSOR = KeyRecord("CP_1__BootNotification__charge_point_model", "CP_1", "Wallbox")
ACTUATOR = KeyRecord("CP_1__execute_reset", "CP_1", "Soft", ActuatorRef("CP_1", "execute_reset", 0))
OTHER = KeyRecord("CP_2__connected", "CP_2", True)


def test_saved_keys_and_members_load_after_reopening(tmp_path: Path) -> None:
    """What was saved comes back, in order, from a new store on the same directory."""
    store = RegistryStore(tmp_path)
    store.save([SENSOR, ACTUATOR], {"CP_1": Member(True, None)}, [])
    store.save([OTHER, SENSOR], {"CP_2": Member(False, 12.5)}, [])
    store.close()
    reopened = RegistryStore(tmp_path)
    assert reopened.load() == ([SENSOR, ACTUATOR, OTHER], {"CP_1": Member(True, None), "CP_2": Member(False, 12.5)})
    reopened.close()


def test_a_forgotten_charge_point_leaves_nothing_in_the_store(tmp_path: Path) -> None:
    """Forgetting deletes the charge point's keys and roster entry; a later arrival in the same save is kept."""
    store = RegistryStore(tmp_path)
    store.save([SENSOR, ACTUATOR, OTHER], {"CP_1": Member(True, 1.0), "CP_2": Member()}, [])
    store.save([], {}, ["CP_1"])
    assert store.load() == ([OTHER], {"CP_2": Member()})
    back = KeyRecord("CP_2__Heartbeat", "CP_2", 5)
    store.save([back], {"CP_2": Member(True, None)}, ["CP_2"])
    assert store.load() == ([back], {"CP_2": Member(True, None)})
    store.close()


def test_restored_keys_are_listed_and_routable_without_a_value(tmp_path: Path) -> None:
    """A restored registry lists the keys and routes the actuator, but holds no latest value to publish."""
    store = RegistryStore(tmp_path)
    store.save([SENSOR, ACTUATOR], {}, [])
    registry = Registry()
    for record in store.load()[0]:
        registry.restore(record)
    store.close()
    assert registry.available_datapoints() == (
        b'{"sensor": {"CP_1__BootNotification__charge_point_model": "Wallbox"}, '
        b'"actuator": {"CP_1__execute_reset": "Soft"}}'
    )
    assert registry.actuator_refs == {ACTUATOR.key: ACTUATOR.actuator}
    assert registry.sensors == {}
    assert list(registry.take_unsaved()) == []


def test_a_save_of_many_statements_keeps_every_row_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows go in ROWS_PER_STATEMENT at a time: every key, member and forgotten charge point across
    the statements' edges, in the order given, the first of a repeated key kept."""
    monkeypatch.setattr(registry_store, "ROWS_PER_STATEMENT", 3)
    records = [KeyRecord(f"CP_{i}__connected", f"CP_{i}", True) for i in range(10)]
    records += [KeyRecord(f"CP_{i}__x_{i}", f"CP_{i}", i, ActuatorRef(f"CP_{i}", "x", i)) for i in range(7)]
    members = {f"CP_{i}": Member(i % 2 == 0, None if i % 3 else i / 4) for i in range(10)}
    store = RegistryStore(tmp_path)
    store.save([*records, KeyRecord("CP_0__connected", "CP_0", False)], members, [])
    assert store.load() == (records, members)
    store.save([], {}, [f"CP_{i}" for i in range(8)])
    assert store.load() == (
        [r for r in records if r.cp in ("CP_8", "CP_9")],
        {"CP_8": members["CP_8"], "CP_9": members["CP_9"]},
    )
    store.close()


@pytest.mark.parametrize(
    "example",
    [0.30000000000000004, 2**70, -0.0, 1e-300, 'Grüße \u2028 "quoted" \\', {"a": [1, None, {"b": 2.5}]}, [], None],
)
def test_an_example_comes_back_exactly(tmp_path: Path, example: Any) -> None:
    """An example's JSON goes through SQLite's JSON functions as a string: no number is rounded or
    turned into another type on the way."""
    store = RegistryStore(tmp_path)
    store.save([KeyRecord("CP_1__DataTransfer__x", "CP_1", example)], {}, [])
    loaded = store.load()[0][0].example
    store.close()
    assert loaded == example and type(loaded) is type(example)
    assert repr(loaded) == repr(example)
