"""The spool on its own: a file of messages, read oldest first, that outlives the process."""

from __future__ import annotations

import logging
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from connector.outbox import Outbox
from connector.spool import Message, Spool


def message(i: int, qos: int = 1) -> Message:
    return Message(f"t/{i % 3}", str(i).encode(), qos, i % 2 == 0)


def test_rows_are_read_back_oldest_first_from_any_point(tmp_path: Path) -> None:
    """Appended messages come back in order, whole, in batches that go on after the last row read."""
    spool = Spool(tmp_path / "s.sqlite3")
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


def test_append_can_drop_a_row_in_the_same_commit(tmp_path: Path) -> None:
    """`append(m, drop=row)` adds one and removes one; first_after finds the oldest row past a position."""
    spool = Spool(tmp_path / "s.sqlite3")
    ids = spool.append_many(message(i) for i in range(3))
    assert spool.first_after(ids[0]) == ids[1]
    spool.append(message(3), drop=ids[1])
    assert [m for _, m in spool.read(0, 10)] == [message(0), message(2), message(3)]
    assert spool.first_after(10**9) is None


def test_an_outbox_offline_keeps_at_most_its_limit_on_disk_the_newest(tmp_path: Path) -> None:
    """Offline, an outbox with limit 10 keeps the newest 10 of 100 messages in the file and counts 90 dropped."""
    path = tmp_path / "s.sqlite3"
    outbox = Outbox(mqtt.Client(CallbackAPIVersion.VERSION2), 10, Spool(path))
    for i in range(100):
        outbox.put("t/x", str(i).encode(), qos=1)
    assert outbox.dropped == 90 and outbox.pending == 10
    assert [m.payload for _, m in Spool(path).read(0, 100)] == [str(i).encode() for i in range(90, 100)]
    assert Outbox(mqtt.Client(CallbackAPIVersion.VERSION2), 10, Spool(path)).pending == 10  # as a new process sees it


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
