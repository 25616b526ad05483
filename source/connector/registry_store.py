"""The registry's listed keys and the roster of charge points, kept in STATE_DIR across restarts.

Without it a restart forgot every key: `available_datapoints` started empty, and keys of
chargers that do not reboot (their BootNotification data, connectors that stay quiet) never
came back, nor did the actuators of such connectors. What is kept is the listing (each key
with its example and, for actuators, what it routes to) and, per charge point, whether it
booted and since when it is gone (for forgetting). Latest values are not kept: see
`Registry.restore`.

SQLite (stdlib) in WAL mode, one file. The registry and the roster collect changes in
memory; `save` writes them in one transaction, called off the event loop in a worker
thread (a fleet booting at once adds hundreds of thousands of keys). One thread at a time
uses the connection: the service awaits each save before the next.

Rows go in as JSON arrays of ROWS_PER_STATEMENT, one statement each (`json_each`), not one
statement per row: sqlite3 lets go of the GIL for every statement and takes it back after,
and beside a saturated event loop each taking back waits its turn. Row by row, a 10,000
charger connect wave's keys took 45 us each to save instead of 5, and 200,000 of them
waited in memory meanwhile (docs/benchmark.md, "Performance II").
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path

from connector.batches import batched
from connector.fleet import Member
from connector.registry import ActuatorRef, KeyRecord

LOG = logging.getLogger(__name__)

FILE_NAME = "registry.sqlite3"
# A statement's rows: its JSON is built holding the GIL (some 0.5 ms), its insert runs without.
ROWS_PER_STATEMENT = 2000

SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    key TEXT PRIMARY KEY,
    cp TEXT NOT NULL,
    example TEXT NOT NULL,
    actuator TEXT,
    connector_id INTEGER
);
CREATE INDEX IF NOT EXISTS keys_by_cp ON keys (cp);
CREATE TABLE IF NOT EXISTS charge_points (
    cp TEXT PRIMARY KEY,
    booted INTEGER NOT NULL,
    absent_since REAL
);
"""
# Each takes one JSON array: of identities, or of rows (arrays in the table's column order).
DELETE_KEYS = "DELETE FROM keys WHERE cp IN (SELECT value FROM json_each(?))"
DELETE_CHARGE_POINTS = "DELETE FROM charge_points WHERE cp IN (SELECT value FROM json_each(?))"
# json_extract, not ->>: SQLite before 3.38 (some distributions' Python) has JSON1 without it.
INSERT_KEYS = """INSERT OR IGNORE INTO keys SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),
json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]') FROM json_each(?) ORDER BY key"""
INSERT_CHARGE_POINTS = """INSERT OR REPLACE INTO charge_points SELECT json_extract(value, '$[0]'),
json_extract(value, '$[1]'), json_extract(value, '$[2]') FROM json_each(?) ORDER BY key"""


class RegistryStore:
    def __init__(self, state_dir: str | Path) -> None:
        self.path = Path(state_dir) / FILE_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # check_same_thread=False: saves run in a worker thread, one at a time (see above).
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit survives a killed process (only power loss may undo
        # the last ones), without an fsync per save.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def load(self) -> tuple[list[KeyRecord], dict[str, Member]]:
        """Everything saved: the listed keys, oldest first, and the roster."""
        records = [_record(row) for row in self._db.execute("SELECT * FROM keys ORDER BY rowid")]
        members = {
            cp: Member(booted=bool(booted), absent_since=absent_since)
            for cp, booted, absent_since in self._db.execute("SELECT cp, booted, absent_since FROM charge_points")
        }
        return [r for r in records if r is not None], members

    def save(self, records: Iterable[KeyRecord], members: dict[str, Member], forgotten: Iterable[str]) -> None:
        """Add listed keys, update roster entries and drop forgotten charge points, atomically."""
        # The lock: a save cancelled at shutdown goes on in its thread while the final one starts.
        with self._lock, self._db:  # one transaction: committed, or rolled back on an error
            # Forgotten first: a charge point forgotten and back within one save keeps what is new.
            for chunk in batched(forgotten, ROWS_PER_STATEMENT):
                self._db.execute(DELETE_KEYS, (json.dumps(chunk),))
                self._db.execute(DELETE_CHARGE_POINTS, (json.dumps(chunk),))
            for rows in batched(map(_row, records), ROWS_PER_STATEMENT):
                self._db.execute(INSERT_KEYS, (json.dumps(rows),))
            roster = ((cp, int(m.booted), m.absent_since) for cp, m in members.items())
            for entries in batched(roster, ROWS_PER_STATEMENT):
                self._db.execute(INSERT_CHARGE_POINTS, (json.dumps(entries),))

    def close(self) -> None:
        self._db.close()


def _row(record: KeyRecord) -> tuple[str, str, str, str | None, int | None]:
    ref = record.actuator
    example = json.dumps(record.example, allow_nan=False)
    return record.key, record.cp, example, ref.name if ref else None, ref.connector_id if ref else None


def _record(row: tuple[str, str, str, str | None, int | None]) -> KeyRecord | None:
    key, cp, example, actuator, connector_id = row
    try:
        value = json.loads(example)
    except ValueError:
        LOG.error("registry store: unreadable example of %.200r; key skipped", key)
        return None
    ref = ActuatorRef(cp, actuator, connector_id or 0) if actuator is not None else None
    return KeyRecord(key, cp, value, ref)
