"""The spool on its own: a file of messages, read oldest first, that outlives the process."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from connector.outbox import Outbox
from connector.shared_spool import SharedSpools
from connector.spool import Message, Spool, SpoolLike

_names = itertools.count()


def message(i: int, qos: int = 1) -> Message:
    return Message(f"t/{i % 3}", str(i).encode(), qos, i % 2 == 0)


@pytest.fixture(params=["sqlite", "redis"])
def spool(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SpoolLike]:
    """Both spools the outbox may be given: SQLite in STATE_DIR, and Redis (with several instances)."""
    local = Spool(tmp_path / "s.sqlite3")
    if request.param == "sqlite":
        yield local
        return
    spools = SharedSpools(request.getfixturevalue("redis_server").url, f"spool-contract-{next(_names)}", "a")
    yield spools.lane("main", local)
    spools.close()


def test_rows_are_read_back_oldest_first_from_any_point(spool: SpoolLike) -> None:
    """Appended messages come back in order, whole, in batches that go on after the last row read."""
    ids = [spool.append(message(i)) for i in range(5)] + spool.append_many(message(i) for i in range(5, 10))
    first = spool.read(0, 4)
    rest = spool.read(first[-1][0], 100)
    assert [row for row, _ in first + rest] == ids == sorted(ids)
    assert [m for _, m in first + rest] == [message(i) for i in range(10)]


def test_a_reopened_file_still_holds_what_was_committed(tmp_path: Path) -> None:
    """What was appended and not deleted is there for the next process; row ids go on growing."""
    path = tmp_path / "state" / "s.sqlite3"  # the directory is created
    spool = Spool(path)
    ids = spool.append_many(message(i) for i in range(4))
    spool.delete(ids[:2])
    # No close(): as after a SIGKILL, only the commits count.
    reopened = Spool(path)
    assert [m for _, m in reopened.read(0, 10)] == [message(2), message(3)]
    reopened.delete(ids[2:])
    assert reopened.count() == 0
    assert reopened.append(message(9)) > ids[-1]  # never reused, so a read position stays valid
    assert Outbox(mqtt.Client(CallbackAPIVersion.VERSION2), 10, reopened).pending == 1  # delivered first


def test_row_ids_only_grow_even_once_every_row_is_deleted(spool: SpoolLike) -> None:
    """Deleted rows are gone from reads and the count; a new row's id is above every earlier one."""
    ids = spool.append_many(message(i) for i in range(4))
    spool.delete(ids[:2])
    assert [m for _, m in spool.read(0, 10)] == [message(2), message(3)] and spool.count() == 2
    spool.delete(ids[2:])
    assert spool.count() == 0 and spool.read(0, 10) == [] and spool.first_after(0) is None
    assert spool.append(message(9)) > ids[-1]
    assert spool.append_many([]) == []


def test_append_can_drop_a_row_in_the_same_commit(spool: SpoolLike) -> None:
    """`append(m, drop=row)` adds one and removes one; first_after finds the oldest row past a position."""
    ids = spool.append_many(message(i) for i in range(3))
    assert spool.first_after(ids[0]) == ids[1]
    spool.append(message(3), drop=ids[1])
    assert [m for _, m in spool.read(0, 10)] == [message(0), message(2), message(3)]
    assert spool.first_after(10**9) is None


def test_an_outbox_offline_keeps_at_most_its_limit_on_disk_the_newest(spool: SpoolLike) -> None:
    """Offline, an outbox with limit 10 keeps the newest 10 of 100 messages in its spool and counts 90 dropped."""
    outbox = Outbox(mqtt.Client(CallbackAPIVersion.VERSION2), 10, spool)
    for i in range(100):
        outbox.put("t/x", str(i).encode(), qos=1)
    assert outbox.dropped == 90 and outbox.pending == 10
    assert [m.payload for _, m in spool.read(0, 100)] == [str(i).encode() for i in range(90, 100)]
    assert spool.count() == 10


def test_an_outbox_whose_spool_cannot_be_written_keeps_messages_in_memory(caplog: pytest.LogCaptureFixture) -> None:
    """A spool that fails (here: closed under it) costs durability, not messages: put keeps them, one ERROR says so."""
    spool = Spool(":memory:")
    outbox = Outbox(mqtt.Client(CallbackAPIVersion.VERSION2), 10, spool)
    spool.close()
    with caplog.at_level(logging.ERROR, logger="connector.outbox"):
        for i in range(3):
            outbox.put("t/x", str(i).encode(), qos=1)
    assert outbox.pending == 3
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == ["cannot write the MQTT spool in STATE_DIR"]
