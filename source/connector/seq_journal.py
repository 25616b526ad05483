"""The seqNo journal of OCPP 2.x transactions: one SQLite database beside the state files.

A TransactionEvent `Updated` that changes nothing but its seqNo is one row here, not the
charge point's state file written whole (`TransactionStore._journal_seq_no`). Before, each
charge point had a journal file of its own: every event opened it (60-100 us of kernel CPU
on a loaded machine) and the first event after each save created it again (0.6-0.8 ms),
a third of the connector's CPU for a 2.0.1 fleet's periodic events. One database kept open
costs a write per event.

Like the state files written without fsync, a row survives the connector's death, not the
machine's: WAL mode with `synchronous=OFF` (a commit is a write to the WAL file, no fsync).
Only the event loop's thread uses the connection. Any SQLite or file system error is the
caller's to handle: `append` says False and the store writes the state file whole instead.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

FILE_NAME = "seq_journal.sqlite3"
# Waiting for a lock held by another process (a second connector on the same STATE_DIR,
# which the operator should not run) would stall the event loop: fail fast instead.
LOCK_TIMEOUT_S = 0.05

SCHEMA = """
CREATE TABLE IF NOT EXISTS lines (cp TEXT NOT NULL, line TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS lines_by_cp ON lines (cp);
"""


class SeqJournal:
    """Journal lines per charge point, in the order appended; the database opened at first use."""

    def __init__(self, directory: Path) -> None:
        self._path = directory / FILE_NAME
        self._db: sqlite3.Connection | None = None

    @property
    def path(self) -> Path:
        return self._path

    def append(self, cp: str, line: str) -> None:
        """Add a line, committed before this returns; sqlite3.Error or OSError if it could not be."""
        db = self._connection()
        with db:
            db.execute("INSERT INTO lines (cp, line) VALUES (?, ?)", (cp, line))

    def lines(self, cp: str, limit: int) -> list[str]:
        """The charge point's newest `limit` lines, oldest first; [] while nothing was journaled (no database yet).

        The newest: lines a failed `clear` left behind are older than the state file written
        since, so they are the ones a bounded read may leave out.
        """
        if self._db is None and not self._path.exists():
            return []
        rows = (
            self._connection()
            .execute("SELECT line FROM lines WHERE cp = ? ORDER BY rowid DESC LIMIT ?", (cp, limit))
            .fetchall()
        )
        return [line for (line,) in reversed(rows)]

    def clear(self, cp: str) -> None:
        """Drop the charge point's lines (its state file holds their seqNos now)."""
        db = self._connection()
        with db:
            db.execute("DELETE FROM lines WHERE cp = ?", (cp,))

    def close(self) -> None:
        if self._db is not None:
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
