"""Outgoing MQTT messages kept on disk while the broker cannot take them.

The outbox writes here only once the broker connection is down (and while what was
written drains after it returns): the connector answers chargers before their values
reach the broker, so a value the charger was told is received must survive a crash or
a restart during an outage. A SIGKILL during an outage once lost 1,755 of 1,756 such
values, all held in memory.

SQLite in WAL mode: an append is one small write to the log file, committed before
`append` returns. `synchronous=NORMAL` does not fsync each commit: a committed row
survives the process (SIGKILL, a crash, a restart), not a power cut, at 16 us per message
instead of 370 us with an fsync each (measured: 20,000 appends of a meter value on this
project's CI disk, `synchronous=FULL` for the comparison).
Row ids only grow (AUTOINCREMENT), so the outbox can read on from the last row it read
even after every row was deleted.

One thread only (the asyncio loop's): sqlite3 refuses use from others.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple, Protocol

SPOOL_FILE = "mqtt-spool.sqlite3"
RAW_SPOOL_FILE = "mqtt-spool-raw.sqlite3"  # raw frames: their own lane (bemcom.BemcomMqtt._raw_lane)


class Message(NamedTuple):
    topic: str
    payload: bytes
    qos: int
    retain: bool


Row = tuple[int, Message]  # (row id, message)


class SpoolUnavailableError(Exception):
    """The spool cannot be read now (its store is unreachable); the rows are kept, try later."""


# What the outbox may be told by a spool it cannot use for the moment: a file it cannot
# write (a full disk), or a store it cannot reach.
SPOOL_ERRORS = (sqlite3.Error, SpoolUnavailableError)


class SpoolLike(Protocol):
    """What the outbox needs of a spool: `Spool` here, `shared_spool.SharedSpool` with several instances."""

    def count(self) -> int: ...
    def append(self, message: Message, drop: int | None = None) -> int: ...
    def append_many(self, messages: Iterable[Message]) -> list[int]: ...
    def read(self, after: int, limit: int) -> list[Row]: ...
    def first_after(self, after: int) -> int | None: ...
    def delete(self, row_ids: list[int]) -> None: ...
    def close(self) -> None: ...


class Spool:
    """An append-only queue of messages in one SQLite file, read oldest first."""

    def __init__(self, path: str | Path) -> None:
        """`path`: the file (created with its directory), or ":memory:" for tests."""
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)  # transactions are explicit below
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " topic TEXT NOT NULL, payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL)"
        )

    def count(self) -> int:
        """Rows on disk (a method, not __len__: an empty spool must not be falsy)."""
        (count,) = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()
        return int(count)

    def append(self, message: Message, drop: int | None = None) -> int:
        """Add `message` (and delete row `drop`, in the same commit); its row id."""
        with self._transaction():
            if drop is not None:
                self._db.execute("DELETE FROM outbox WHERE id = ?", (drop,))
            return self._insert(message)

    def append_many(self, messages: Iterable[Message]) -> list[int]:
        """Add messages in order, in one commit; their row ids."""
        with self._transaction():
            return [self._insert(message) for message in messages]

    def append_rows(self, rows: Sequence[Row], drop: int | None = None) -> None:
        """Add rows under the ids given (above any in the file; see SharedSpool), and delete
        row `drop`, in one commit."""
        with self._transaction():
            if drop is not None:
                self._db.execute("DELETE FROM outbox WHERE id = ?", (drop,))
            self._db.executemany(
                "INSERT INTO outbox (id, topic, payload, qos, retain) VALUES (?, ?, ?, ?, ?)",
                [(row_id, m.topic, m.payload, m.qos, int(m.retain)) for row_id, m in rows],
            )

    def last_id(self) -> int:
        """The highest row id in the file; 0 when it is empty."""
        (highest,) = self._db.execute("SELECT MAX(id) FROM outbox").fetchone()
        return int(highest or 0)

    def _insert(self, message: Message) -> int:
        cursor = self._db.execute(
            "INSERT INTO outbox (topic, payload, qos, retain) VALUES (?, ?, ?, ?)",
            (message.topic, message.payload, message.qos, int(message.retain)),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def read(self, after: int, limit: int) -> list[Row]:
        """Up to `limit` rows with ids above `after`, oldest first."""
        rows = self._db.execute(
            "SELECT id, topic, payload, qos, retain FROM outbox WHERE id > ? ORDER BY id LIMIT ?", (after, limit)
        )
        return [(row_id, Message(topic, bytes(data), qos, bool(retain))) for row_id, topic, data, qos, retain in rows]

    def first_after(self, after: int) -> int | None:
        """The id of the oldest row above `after`; None if there is none."""
        found = self._db.execute("SELECT MIN(id) FROM outbox WHERE id > ?", (after,)).fetchone()
        return None if found[0] is None else int(found[0])

    def delete(self, row_ids: list[int]) -> None:
        """Forget rows (their messages reached the broker), in one commit."""
        with self._transaction():
            self._db.executemany("DELETE FROM outbox WHERE id = ?", [(row_id,) for row_id in row_ids])

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN ... COMMIT, or ROLLBACK when the body raised (a full disk, say)."""
        self._db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
