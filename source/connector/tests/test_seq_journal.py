"""SeqJournal: the seqNo journal's lines per charge point, in one SQLite database."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from connector.seq_journal import COMMIT_AFTER_S, FILE_NAME, SeqJournal


def test_lines_come_back_per_charge_point_in_order_across_a_reopening(tmp_path: Path) -> None:
    """Lines are kept per charge point in the order appended, and a new connection (a restart) reads them."""
    journal = SeqJournal(tmp_path / "transactions")
    for n in range(5):
        journal.append("CP_1", f"line {n}")
        journal.append("CP_2", f"other {n}")
    journal.close()
    again = SeqJournal(tmp_path / "transactions")
    assert again.lines("CP_1", 100) == [f"line {n}" for n in range(5)]
    assert again.lines("CP_1", 2) == ["line 3", "line 4"]  # the newest, oldest first
    assert again.lines("CP_3", 100) == []
    again.close()


def test_clearing_drops_one_charge_points_lines_only(tmp_path: Path) -> None:
    journal = SeqJournal(tmp_path)
    journal.append("CP_1", "a")
    journal.append("CP_2", "b")
    journal.clear("CP_1")
    assert journal.lines("CP_1", 10) == []
    assert journal.lines("CP_2", 10) == ["b"]
    journal.append("CP_1", "c")
    assert journal.lines("CP_1", 10) == ["c"]
    journal.close()


def test_reading_before_anything_was_journaled_creates_nothing(tmp_path: Path) -> None:
    """A store that only reads (chargers loading their state) leaves no database behind."""
    journal = SeqJournal(tmp_path / "transactions")
    assert journal.lines("CP_1", 10) == []
    assert not (tmp_path / "transactions").exists()
    journal.close()


def test_identities_are_kept_as_they_are(tmp_path: Path) -> None:
    """Any identity (quotes, percent signs, a newline, non-ASCII) is its own key: parameters, never SQL text."""
    journal = SeqJournal(tmp_path)
    names = ["CP'; DROP TABLE lines; --", "CP%1", "CP\n2", "Ladesäule 3", "CP_1"]
    for name in names:
        journal.append(name, f"of {name}")
    assert [journal.lines(name, 10) for name in names] == [[f"of {name}"] for name in names]
    assert (tmp_path / FILE_NAME).exists()
    journal.close()


def committed_lines(directory: Path, cp: str) -> list[str]:
    """The lines another connection sees (what a restart would read): committed ones only."""
    reader = SeqJournal(directory)
    try:
        return reader.lines(cp, 100)
    finally:
        reader.close()


def tell_when_committed(journal: SeqJournal) -> asyncio.Future[None]:
    """A future done when the journal's timer has run its commit."""
    fired: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    commit = journal.commit

    def commit_and_tell() -> None:
        commit()
        if not fired.done():
            fired.set_result(None)

    journal.commit = commit_and_tell  # type: ignore[method-assign]
    return fired


async def test_rows_added_on_the_loop_are_committed_together_within_the_delay(tmp_path: Path) -> None:
    """On the event loop a row waits for one commit of all rows, COMMIT_AFTER_S after the first;
    the journal's own reads see it meanwhile, another connection only after."""
    journal = SeqJournal(tmp_path)
    fired = tell_when_committed(journal)
    started = asyncio.get_running_loop().time()
    journal.append("CP_1", "a")
    journal.append("CP_2", "b")
    journal.append("CP_1", "c")
    assert journal.uncommitted == {"CP_1", "CP_2"}
    assert journal.lines("CP_1", 10) == ["a", "c"]
    assert committed_lines(tmp_path, "CP_1") == []
    await asyncio.wait_for(fired, 5)
    assert asyncio.get_running_loop().time() - started >= COMMIT_AFTER_S - 0.01  # the loop's timer granularity
    assert journal.uncommitted == set()
    assert committed_lines(tmp_path, "CP_1") == ["a", "c"] and committed_lines(tmp_path, "CP_2") == ["b"]
    journal.close()


async def test_clearing_and_closing_commit_what_waits(tmp_path: Path) -> None:
    """A clear commits at once, with the other charge points' rows; a close commits the rest."""
    journal = SeqJournal(tmp_path)
    journal.append("CP_1", "a")
    journal.append("CP_2", "b")
    journal.clear("CP_1")
    assert journal.uncommitted == set()
    assert committed_lines(tmp_path, "CP_1") == [] and committed_lines(tmp_path, "CP_2") == ["b"]
    journal.append("CP_2", "c")
    journal.close()
    assert committed_lines(tmp_path, "CP_2") == ["b", "c"]


class FailingCommits:
    """A connection whose commits fail (a disk that fails between the rows and their commit)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)

    def commit(self) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    def __enter__(self) -> FailingCommits:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            self.commit()
        self._db.rollback()


class FailingRollbacks(FailingCommits):
    def rollback(self) -> None:
        raise sqlite3.OperationalError("disk I/O error")


@contextmanager
def failing(journal: SeqJournal, kind: type[FailingCommits] = FailingCommits) -> Iterator[sqlite3.Connection]:
    """While inside: the journal's connection (opened already) fails as `kind` does; yields the real one."""
    db = journal._db
    assert db is not None
    journal._db = kind(db)  # type: ignore[assignment]
    try:
        yield db
    finally:
        journal._db = db


def listened(directory: Path) -> tuple[SeqJournal, list[tuple[set[str], str]]]:
    """A journal whose on_lost calls are kept: (charge points, error) each."""
    told: list[tuple[set[str], str]] = []
    return SeqJournal(directory, on_lost=lambda cps, error: told.append((cps, str(error)))), told


async def test_a_failed_commit_hands_the_lost_charge_points_to_on_lost(tmp_path: Path) -> None:
    """Rows whose commit failed are rolled back, and on_lost hears whose they were."""
    journal, told = listened(tmp_path)
    journal.append("CP_1", "a")
    journal.commit()
    journal.append("CP_1", "b")
    journal.append("CP_2", "c")
    with failing(journal):
        journal.commit()
    assert told == [({"CP_1", "CP_2"}, "disk I/O error")]
    assert journal.uncommitted == set()
    assert journal.lines("CP_1", 10) == ["a"] and journal.lines("CP_2", 10) == []
    journal.close()


async def test_rows_sqlite_rolled_back_itself_are_reported_at_the_commit(tmp_path: Path) -> None:
    """A statement that failed may make SQLite roll the whole transaction back: the commit then tells on_lost."""
    journal, told = listened(tmp_path)
    journal.append("CP_1", "a")
    db = journal._db
    assert db is not None
    db.rollback()  # stands in for SQLite's own rollback after an I/O error or a full disk
    journal.commit()
    assert [cps for cps, _ in told] == [{"CP_1"}] and journal.uncommitted == set()
    journal.close()


async def test_a_commit_whose_rollback_fails_too_reports_and_keeps_committing_later(tmp_path: Path) -> None:
    """Commit and rollback both failing: on_lost hears, and a later row arms the timer again."""
    journal, told = listened(tmp_path)
    journal.append("CP_1", "a")
    with failing(journal, FailingRollbacks) as db, pytest.raises(sqlite3.OperationalError):
        journal.commit()
    db.rollback()
    assert [cps for cps, _ in told] == [{"CP_1"}]
    fired = tell_when_committed(journal)
    journal.append("CP_1", "b")
    await asyncio.wait_for(fired, 5)
    assert committed_lines(tmp_path, "CP_1") == ["b"]
    journal.close()


async def test_a_failed_clear_reports_the_other_charge_points_rows_it_took_along(tmp_path: Path) -> None:
    """A clear's commit failing rolls back the others' waiting rows too: on_lost hears whose, the clear raises."""
    journal, told = listened(tmp_path)
    journal.append("CP_1", "a")
    journal.append("CP_2", "b")
    with failing(journal), pytest.raises(sqlite3.OperationalError):
        journal.clear("CP_1")
    assert [cps for cps, _ in told] == [{"CP_2"}] and journal.uncommitted == set()
    journal.close()
