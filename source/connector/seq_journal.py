"""The seqNo journal of OCPP 2.x transactions: one SQLite database beside the state files.

A TransactionEvent `Updated` that changes nothing but its seqNo is one row here, not the
charge point's state file written whole (`TransactionStore._journal_seq_no`). Before, each
charge point had a journal file of its own: every event opened it (60-100 us of kernel CPU
on a loaded machine) and the first event after each save created it again (0.6-0.8 ms),
a third of the connector's CPU for a 2.0.1 fleet's periodic events. One database kept open
costs a write per event.

Like the state files written without fsync, a row survives the connector's death, not the
machine's: WAL mode with `synchronous=OFF` (a commit is a write to the WAL file, no fsync).
On the event loop, rows are committed together within COMMIT_AFTER_S of the first: a commit
of its own costs each row six lock calls and four writes, ~8.9 KB to the disk (1.3 KB a
row when ten share a commit) and 10 us of CPU in a tight loop (3.5 us when 50 share
one; in the loaded connector the whole event cost 10-15 us less). A kill of
the process in that window loses those rows (their events' values had been handed on; a
charger repeating such an event would have them published again). Without a running
loop (tools, tests) each row is committed at once.
Only the event loop's thread uses the connection. An error adding or reading a row is the
caller's to handle (`append` raises, and the store writes the state file whole instead);
one committing rows later is handed to `on_lost` with the charge points whose rows it lost.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

FILE_NAME = "seq_journal.sqlite3"
# Waiting for a lock held by another process (a second connector on the same STATE_DIR,
# which the operator should not run) would stall the event loop: fail fast instead.
LOCK_TIMEOUT_S = 0.05
COMMIT_AFTER_S = 0.1

SCHEMA = """
CREATE TABLE IF NOT EXISTS lines (cp TEXT NOT NULL, line TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS lines_by_cp ON lines (cp);
"""


class SeqJournal:
    """Journal lines per charge point, in the order appended; the database opened at first use."""

    def __init__(self, directory: Path, on_lost: Callable[[set[str], Exception], None] | None = None) -> None:
        self._path = directory / FILE_NAME
        self._db: sqlite3.Connection | None = None
        self._on_lost = on_lost
        self._uncommitted: set[str] = set()  # charge points with rows not committed yet
        self._commit_timer: asyncio.TimerHandle | None = None

    @property
    def path(self) -> Path:
        return self._path

    @property
    def uncommitted(self) -> set[str]:
        """The charge points whose rows wait for the commit."""
        return set(self._uncommitted)

    def append(self, cp: str, line: str) -> None:
        """Add a line (committed within COMMIT_AFTER_S on the loop); sqlite3.Error or OSError if it could not be."""
        db = self._connection()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            with db:
                db.execute("INSERT INTO lines (cp, line) VALUES (?, ?)", (cp, line))
            return
        try:
            db.execute("INSERT INTO lines (cp, line) VALUES (?, ?)", (cp, line))  # opens a transaction if none is
        except sqlite3.Error as error:
            if not db.in_transaction:  # SQLite rolled the whole transaction back (a full disk, an I/O error)
                self._lose(error)
            raise
        self._uncommitted.add(cp)
        if self._commit_timer is None:
            self._commit_timer = loop.call_later(COMMIT_AFTER_S, self.commit)

    def commit(self) -> None:
        """Commit the rows added since the last commit; a failure goes to `on_lost` (raised without one)."""
        if self._db is None or not self._uncommitted:
            self._stop_timer()
            return
        if not self._db.in_transaction:  # SQLite rolled them back itself, a statement having failed
            self._lose(sqlite3.OperationalError("the transaction was rolled back"))
            return
        try:
            self._db.commit()
        except sqlite3.Error as error:
            try:
                self._db.rollback()
            finally:
                self._lose(error)
            if self._on_lost is None:
                raise
            return
        self._nothing_waits()

    def lines(self, cp: str, limit: int) -> list[str]:
        """The charge point's newest `limit` lines, oldest first, those not committed yet too;
        [] while nothing was journaled (no database yet).

        The newest: lines a failed `clear` left behind are older than the state file written
        since, so they are the ones a bounded read may leave out.
        """
        if self._db is None and not self._path.exists():
            return []
        db = self._connection()
        try:
            rows = db.execute("SELECT line FROM lines WHERE cp = ? ORDER BY rowid DESC LIMIT ?", (cp, limit)).fetchall()
        except sqlite3.Error as error:
            if self._uncommitted and not db.in_transaction:  # the rows that waited went with it
                self._lose(error)
            raise
        return [line for (line,) in reversed(rows)]

    def clear(self, cp: str) -> None:
        """Drop the charge point's lines (its state file holds their seqNos now), committed at once
        with the rows that wait; if that fails, those are lost as in `commit`, and this raises."""
        db = self._connection()
        self._uncommitted.discard(cp)  # its own rows are in its state file: not lost either way
        try:
            with db:  # on an error: rolled back, with the rows that waited
                db.execute("DELETE FROM lines WHERE cp = ?", (cp,))
        except sqlite3.Error as error:
            self._lose(error)
            raise
        self._nothing_waits()

    def _lose(self, error: sqlite3.Error) -> None:
        """The rows that waited are gone (rolled back): tell whose."""
        lost = self._uncommitted
        self._nothing_waits()
        if lost and self._on_lost is not None:
            self._on_lost(lost, error)

    def _nothing_waits(self) -> None:
        self._uncommitted = set()
        self._stop_timer()

    def _stop_timer(self) -> None:
        if self._commit_timer is not None:
            self._commit_timer.cancel()
            self._commit_timer = None

    def close(self) -> None:
        """Commit what waits, and close."""
        if self._db is not None:
            try:
                self.commit()
            finally:
                self._db.close()
                self._db = None

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self._path, timeout=LOCK_TIMEOUT_S)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=OFF")
                db.executescript(SCHEMA)
            except sqlite3.Error:
                db.close()
                raise
            self._db = db
        return self._db
