"""TransactionStore for OCPP 2.x: the charger's transactions and seqNos, bounded and persisted (INTERFACE.md 8)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pytest_mock import MockerFixture

from connector.datapoints import EvseTransaction, TransactionRecord
from connector.seq_journal import FILE_NAME, SeqJournal
from connector.tests.test_seq_journal import failing
from connector.tests.test_transactions import Clock
from connector.transactions import (
    ENDED_KEEP_S,
    MAX_ENDED,
    MAX_JOURNAL_LINES,
    MAX_OPEN,
    MAX_SEQ_RUNS,
    SeqNos,
    TransactionStore,
)

CP = "CP_1"
CP_READ_FAILED = "CP_7"


def store_in(directory: Path, clock: Clock | None = None) -> TransactionStore:
    return TransactionStore(directory, clock=clock or Clock())


def saved(directory: Path) -> dict[str, object]:
    state: dict[str, object] = json.loads((directory / "transactions" / f"{CP}.json").read_text())
    return state


def test_consecutive_seq_nos_are_one_run() -> None:
    """seqNos 0..999 in any order are kept as one run [0, 999]."""
    seen = SeqNos()
    for seq_no in [*range(500, 1000), *range(500)]:
        seen.add(seq_no)
    assert seen.runs == [[0, 999]]
    assert 0 in seen and 999 in seen and 1000 not in seen


@given(st.lists(st.integers(min_value=0, max_value=200), max_size=100))
def test_seq_nos_remember_every_one_added_within_a_bounded_size(added: list[int]) -> None:
    """Every seqNo added is recognised; the runs stay sorted, apart and at most MAX_SEQ_RUNS."""
    seen = SeqNos()
    for seq_no in added:
        seen.add(seq_no)
    assert all(seq_no in seen for seq_no in added)
    assert len(seen.runs) <= MAX_SEQ_RUNS
    assert all(a[1] + 1 < b[0] for a, b in zip(seen.runs, seen.runs[1:], strict=False))


def test_too_many_gaps_close_the_oldest() -> None:
    """Beyond MAX_SEQ_RUNS runs the lowest gap counts as seen: nothing is published twice, the newest gaps stay open."""
    seen = SeqNos()
    for seq_no in range(0, 2 * (MAX_SEQ_RUNS + 1), 2):
        seen.add(seq_no)
    assert len(seen.runs) == MAX_SEQ_RUNS
    assert 1 in seen  # the lowest gap, closed
    assert 2 * MAX_SEQ_RUNS - 1 not in seen  # the highest gap, still open


def test_a_2_x_transaction_is_persisted_with_its_seq_nos(tmp_path: Path) -> None:
    """A 2.x transaction and its seqNos are kept (the file, and the journal of later seqNos); a new store reads them."""
    store = store_in(tmp_path)
    record = EvseTransaction("tx-1", 2, "TAG", 1500, "2026-11-21T10:00:00Z")
    assert store.running(CP, record, 0) == "opened"
    assert store.running(CP, record, 1) == "updated"
    assert saved(tmp_path)["seq_nos"] == {"tx-1": [[0, 0]]}
    assert journal_lines(tmp_path) == ['["tx-1", 1]']
    again = store_in(tmp_path)
    assert again.active(CP, 2) == record
    assert again.repeated(CP, "tx-1", 0) and again.repeated(CP, "tx-1", 1) and not again.repeated(CP, "tx-1", 2)


def journal(directory: Path) -> SeqJournal:
    return SeqJournal(directory / "transactions")


def journal_lines(directory: Path) -> list[str]:
    """The charge point's journal as another process would read it (a new connection)."""
    reader = journal(directory)
    try:
        return reader.lines(CP, 10 * MAX_JOURNAL_LINES)
    finally:
        reader.close()


def test_an_updated_event_appends_a_line_and_leaves_the_file_alone(tmp_path: Path) -> None:
    """Updated events that change nothing but the seqNo are one journal line each; the state file is not rewritten."""
    store = store_in(tmp_path)
    record = EvseTransaction("tx-1", 1, "TAG", 0, "2026-11-21T10:00:00Z")
    store.running(CP, record, 0)
    before = (tmp_path / "transactions" / f"{CP}.json").stat().st_mtime_ns
    for seq_no in range(1, 6):
        store.running(CP, record, seq_no)
    assert (tmp_path / "transactions" / f"{CP}.json").stat().st_mtime_ns == before
    assert journal_lines(tmp_path) == [json.dumps(["tx-1", n]) for n in range(1, 6)]


def test_a_change_of_the_transaction_writes_the_file_and_empties_the_journal(tmp_path: Path) -> None:
    """An event that changes the record (here its id tag) writes the state file whole, seqNos included; no journal."""
    store = store_in(tmp_path)
    record = EvseTransaction("tx-1", 1, "TAG", 0, "2026-11-21T10:00:00Z")
    for seq_no in range(3):
        store.running(CP, record, seq_no)
    store.running(CP, EvseTransaction("tx-1", 1, "OTHER", 0, "2026-11-21T10:00:00Z"), 3)
    assert saved(tmp_path)["seq_nos"] == {"tx-1": [[0, 3]]}
    assert journal_lines(tmp_path) == []


def test_the_journal_is_bounded(tmp_path: Path) -> None:
    """After MAX_JOURNAL_LINES lines the state file is written whole and the journal starts again."""
    store = store_in(tmp_path)
    record = EvseTransaction("tx-1", 1, "TAG", 0, "2026-11-21T10:00:00Z")
    last = MAX_JOURNAL_LINES + 2  # 0 opens (a save), 1..MAX journaled, MAX + 1 a save, MAX + 2 journaled
    for seq_no in range(last + 1):
        store.running(CP, record, seq_no)
    assert saved(tmp_path)["seq_nos"] == {"tx-1": [[0, last - 1]]}
    assert journal_lines(tmp_path) == [json.dumps(["tx-1", last])]
    assert store_in(tmp_path).repeated(CP, "tx-1", last)


@pytest.mark.parametrize(
    "tail",
    ['["tx-1", 9', '["tx-1"]', "[7, 9]", '["tx-1", 9.0]', '["tx-1", true]', "\x00\x00"],
    ids=["cut short", "one element", "not a text id", "not an integer", "a boolean", "garbage"],
)
def test_a_journal_line_that_is_not_one_is_skipped(tmp_path: Path, tail: str) -> None:
    """A line that is not `[id, seqNo]` (the database edited, or damaged) is skipped; the lines around it count."""
    store = store_in(tmp_path)
    record = EvseTransaction("tx-1", 1, "TAG", 0, "2026-11-21T10:00:00Z")
    store.running(CP, record, 0)
    store.running(CP, record, 1)
    writer = journal(tmp_path)
    writer.append(CP, tail)
    writer.close()
    store.running(CP, record, 2)
    again = store_in(tmp_path)
    assert again.repeated(CP, "tx-1", 1) and again.repeated(CP, "tx-1", 2)
    assert not again.repeated(CP, "tx-1", 9)
    again.running(CP, EvseTransaction("tx-1", 1, "OTHER", 0, "2026-11-21T10:00:00Z"), 3)  # a whole save
    assert journal_lines(tmp_path) == []


def test_a_negative_seq_no_is_journaled_and_replayed(tmp_path: Path) -> None:
    """The schema sets seqNo no minimum: a negative one is recognised after a restart like any other."""
    store = store_in(tmp_path)
    record = EvseTransaction("tx-1", 1, "TAG", 0, "2026-11-21T10:00:00Z")
    store.running(CP, record, 0)
    store.running(CP, record, -3)
    assert store_in(tmp_path).repeated(CP, "tx-1", -3)


def test_forgetting_a_charge_point_removes_its_journal(tmp_path: Path) -> None:
    """A charge point forgotten with nothing open leaves neither its file nor its journal behind."""
    clock = Clock()
    store = store_in(tmp_path, clock)
    record = EvseTransaction("tx-1", 1, "TAG", 0, "2026-11-21T10:00:00Z")
    store.running(CP, record, 0)
    store.running(CP, record, 1)
    store.ended(CP, "tx-1", 2)
    store.running(CP, EvseTransaction("tx-2", 1, "TAG", 0, "2026-11-21T11:00:00Z"), 0)
    store.ended(CP, "tx-2", 1)
    store.running(CP, EvseTransaction("tx-3", 1, "TAG", 0, "2026-11-21T12:00:00Z"), 0)
    store.running(CP, EvseTransaction("tx-3", 1, "TAG", 0, "2026-11-21T12:00:00Z"), 1)
    store.ended(CP, "tx-3", 2)
    assert journal_lines(tmp_path) == []  # Ended writes the file whole
    store.running(CP, EvseTransaction("tx-4", 1, "TAG", 0, "2026-11-21T13:00:00Z"), 0)
    store.running(CP, EvseTransaction("tx-4", 1, "TAG", 0, "2026-11-21T13:00:00Z"), 1)
    assert journal_lines(tmp_path) == [json.dumps(["tx-4", 1])]
    store.settle_all(CP)
    store.forget(CP)
    assert journal_lines(tmp_path) == []


def test_a_1_6_file_stays_as_it_was(tmp_path: Path) -> None:
    """A charge point with only 1.6 transactions gets no 2.x fields in its file."""
    store_in(tmp_path).start(CP, 1, "TAG", 0)
    assert set(saved(tmp_path)) == {"identity", "last_id", "open", "settled", "reservations"}


def test_ended_transactions_are_remembered_bounded_and_for_a_while(tmp_path: Path) -> None:
    """The newest MAX_ENDED ended transactions' seqNos stay known, for ENDED_KEEP_S at most."""
    clock = Clock()
    store = store_in(tmp_path, clock)
    for i in range(MAX_ENDED + 5):
        store.running(CP, EvseTransaction(f"tx-{i}", 1), 0)
        store.ended(CP, f"tx-{i}", 1)
        clock.now += 1
    remembered = [i for i in range(MAX_ENDED + 5) if store.has_ended(CP, f"tx-{i}")]
    assert remembered == list(range(5, MAX_ENDED + 5))
    assert not store.repeated(CP, "tx-0", 1) and store.repeated(CP, f"tx-{MAX_ENDED + 4}", 1)
    clock.now += ENDED_KEEP_S
    later = store_in(tmp_path, clock)
    assert not later.has_ended(CP, f"tx-{MAX_ENDED + 4}")


def test_a_new_transaction_settles_the_last_one_on_its_evse(tmp_path: Path) -> None:
    """A 2.x transaction opened on an EVSE settles the one open there (its end lost); others stay."""
    store = store_in(tmp_path)
    old, other = EvseTransaction("old", 1), EvseTransaction("other", 2)
    store.running(CP, old, 0)
    store.running(CP, other, 0)
    store.running(CP, EvseTransaction("new", 1), 0)
    assert store.active(CP, 1) == EvseTransaction("new", 1)
    assert store.active(CP, 2) == other
    assert store.known(CP, "old") == old  # settled, still known: its late end counts
    assert store.running(CP, old, 1) == "superseded"


def test_open_2_x_transactions_are_bounded(tmp_path: Path) -> None:
    """A station inventing EVSEs holds at most MAX_OPEN open transactions; the oldest are settled."""
    store = store_in(tmp_path)
    for evse in range(MAX_OPEN + 3):
        store.running(CP, EvseTransaction(f"tx-{evse}", evse), 0)
    assert [store.active(CP, e) for e in range(3)] == [None, None, None]
    assert store.active(CP, MAX_OPEN + 2) is not None


def test_1_6_and_2_x_records_of_one_charger_live_side_by_side(tmp_path: Path) -> None:
    """A charger moving from 1.6 to 2.0.1 without a boot: the new transaction settles the old one, nothing breaks."""
    store = store_in(tmp_path)
    record = store.start(CP, 1, "TAG", 100, "2026-11-21T10:00:00Z")
    store.running(CP, EvseTransaction("tx-2x", 1), 0)
    active = store.active(CP, 1)
    assert isinstance(active, EvseTransaction) and active.transaction_id == "tx-2x"
    assert store.stop(CP, record.transaction_id) == record  # its late stop still counts
    assert store.stop(CP, "tx-2x") is None  # 2.x ones end through `ended`
    assert isinstance(store_in(tmp_path).active(CP, 1), EvseTransaction)
    assert all(isinstance(r, TransactionRecord | EvseTransaction) for r in store.settle_all(CP))


@pytest.mark.parametrize(
    "seq_nos",
    [{"tx": [[3, 1]]}, {"tx": [["a", 2]]}, {"tx": 5}, [["tx", [0, 1]]]],
    ids=["reversed run", "not a number", "not a list", "not an object"],
)
def test_a_malformed_seq_no_history_starts_afresh(
    tmp_path: Path, seq_nos: object, caplog: pytest.LogCaptureFixture
) -> None:
    """A state file whose seqNo history is malformed is reported and ignored, like any malformed state."""
    folder = tmp_path / "transactions"
    folder.mkdir()
    state = {"identity": CP, "last_id": 5, "open": [], "seq_nos": seq_nos, "ended": {}}
    (folder / f"{CP}.json").write_text(json.dumps(state))
    store = store_in(tmp_path)
    assert not store.repeated(CP, "tx", 1)
    assert "unreadable" in caplog.text


def test_a_journal_that_cannot_be_used_falls_back_to_the_whole_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The journal's database unusable (here a folder in its place): one ERROR naming it, each
    seqNo then written with the state file whole, so a restart still recognises every one."""
    store = store_in(tmp_path)
    record = EvseTransaction("tx-1", 1, "TAG", 0, "2026-11-21T10:00:00Z")
    store.running(CP, record, 0)
    (tmp_path / "transactions" / FILE_NAME).mkdir()
    for seq_no in range(1, 4):
        store.running(CP, record, seq_no)
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and FILE_NAME in errors[0].getMessage()
    assert saved(tmp_path)["seq_nos"] == {"tx-1": [[0, 3]]}
    assert all(store_in(tmp_path).repeated(CP, "tx-1", n) for n in range(4))


def test_rows_a_failed_clear_left_stay_counted_and_the_newest_are_replayed(
    tmp_path: Path, mocker: MockerFixture, caplog: pytest.LogCaptureFixture
) -> None:
    """While the journal's rows cannot be deleted, the charge point journals at most MAX_JOURNAL_LINES
    more and then writes its file whole for each event: the journal stays bounded, one ERROR says
    so, and a restart recognises every seqNo (the newest rows are read, not the oldest)."""
    store = store_in(tmp_path)
    record = EvseTransaction("tx-1", 1, "TAG", 0, "2026-11-21T10:00:00Z")
    for seq_no in range(3):
        store.running(CP, record, seq_no)
    clear = mocker.patch.object(SeqJournal, "clear", side_effect=sqlite3.OperationalError("disk I/O error"))
    record = EvseTransaction("tx-1", 1, "OTHER", 0, "2026-11-21T10:00:00Z")
    store.running(CP, record, 3)  # a change of the record: a whole save
    for seq_no in range(4, 7):
        store.running(CP, record, seq_no)
    assert saved(tmp_path)["seq_nos"] == {"tx-1": [[0, 3]]}  # 4..6 are in the journal only
    assert all(store_in(tmp_path).repeated(CP, "tx-1", n) for n in range(7))
    last = 3 * MAX_JOURNAL_LINES
    for seq_no in range(7, last + 1):
        store.running(CP, record, seq_no)
    assert len(journal_lines(tmp_path)) == MAX_JOURNAL_LINES
    assert saved(tmp_path)["seq_nos"] == {"tx-1": [[0, last]]}
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert clear.call_count > 1 and len(errors) == 1 and "could not empty" in errors[0]
    mocker.stopall()
    again = store_in(tmp_path)
    assert all(again.repeated(CP, "tx-1", n) for n in range(last + 1))
    again.running(CP, EvseTransaction("tx-1", 1, "TAG", 0, "2026-11-21T10:00:00Z"), last + 1)  # a whole save
    assert journal_lines(tmp_path) == []  # the clear works again: every row goes


def test_a_load_reads_the_newest_rows(tmp_path: Path) -> None:
    """Of more rows than a charge point can have past its file (rows of an older fault), the newest are replayed."""
    store_in(tmp_path).running(CP, EvseTransaction("tx-1", 1, "TAG", 0, "2026-11-21T10:00:00Z"), 0)
    writer = journal(tmp_path)
    for seq_no in range(1, 2 * MAX_JOURNAL_LINES + 1):
        writer.append(CP, json.dumps(["tx-1", seq_no]))
    writer.close()
    store = store_in(tmp_path)
    assert store.repeated(CP, "tx-1", 2 * MAX_JOURNAL_LINES)
    assert store.repeated(CP, "tx-1", MAX_JOURNAL_LINES)
    assert not store.repeated(CP, "tx-1", 1)


def test_a_journal_that_cannot_be_read_is_logged_once_for_many_charge_points(
    tmp_path: Path, mocker: MockerFixture, caplog: pytest.LogCaptureFixture
) -> None:
    """A restart loading a fleet against an unreadable journal logs one ERROR, not one per charge point."""
    store = store_in(tmp_path)
    record = EvseTransaction("tx-1", 1, "TAG", 0, "2026-11-21T10:00:00Z")
    names = [f"CP_{n}" for n in range(20)]
    assert CP_READ_FAILED in names
    for name in names:
        store.running(name, record, 0)
        store.running(name, record, 1)
    store.close()
    mocker.patch.object(SeqJournal, "lines", side_effect=sqlite3.DatabaseError("file is not a database"))
    again = store_in(tmp_path)
    assert all(again.repeated(name, "tx-1", 0) for name in names)  # the state files are still read
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "could not read the seqNo journal" in errors[0] and FILE_NAME in errors[0]
    append = mocker.patch.object(SeqJournal, "append")
    again.running(CP_READ_FAILED, record, 2)  # rows it could not read: no more journaled past them
    assert append.call_count == 0
    state = json.loads((tmp_path / "transactions" / f"{CP_READ_FAILED}.json").read_text())
    assert state["seq_nos"] == {"tx-1": [[0, 0], [2, 2]]}  # seqNo 1 was in the rows it could not read


def test_a_journal_that_works_again_and_fails_again_is_logged_again(
    tmp_path: Path, mocker: MockerFixture, caplog: pytest.LogCaptureFixture
) -> None:
    """One ERROR per spell of failure: a write that works in between makes the next failure news."""
    store = store_in(tmp_path)
    record = EvseTransaction("tx-1", 1, "TAG", 0, "2026-11-21T10:00:00Z")
    store.running(CP, record, 0)
    failing = sqlite3.OperationalError("database is locked")
    append = mocker.patch.object(SeqJournal, "append", side_effect=[failing, failing, None, failing])
    for seq_no in range(1, 5):
        store.running(CP, record, seq_no)
    assert append.call_count == 4
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 2 and all("could not journal a seqNo" in e for e in errors)
    assert saved(tmp_path)["seq_nos"] == {"tx-1": [[0, 4]]}  # the failed ones: the whole file


async def test_on_the_loop_seq_nos_wait_for_a_commit_and_a_close_commits_them(tmp_path: Path) -> None:
    """On the event loop the journal's rows are committed together; closing the store commits what waits."""
    store = store_in(tmp_path)
    record = EvseTransaction("tx-1", 1, "TAG", 0, "2026-11-21T10:00:00Z")
    for seq_no in range(4):
        store.running(CP, record, seq_no)
    assert journal_lines(tmp_path) == []  # 1..3 wait for their commit
    store.close()
    assert journal_lines(tmp_path) == [json.dumps(["tx-1", n]) for n in range(1, 4)]
    assert all(store_in(tmp_path).repeated(CP, "tx-1", n) for n in range(4))


async def test_seq_nos_whose_commit_failed_are_written_to_the_state_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Rows lost with a failed commit: their charge points' state files are written whole at once,
    so a restart still recognises every seqNo; one ERROR says so."""
    store = store_in(tmp_path)
    record = EvseTransaction("tx-1", 1, "TAG", 0, "2026-11-21T10:00:00Z")
    for seq_no in range(4):
        store.running(CP, record, seq_no)
        store.running("CP_2", record, seq_no)
    assert saved(tmp_path)["seq_nos"] == {"tx-1": [[0, 0]]}
    with failing(store._journal):
        store._journal.commit()
    assert saved(tmp_path)["seq_nos"] == {"tx-1": [[0, 3]]}
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("could not commit seqNo journal rows" in e and "2 charge points" in e for e in errors)
    store.close()
    again = store_in(tmp_path)
    assert all(again.repeated(cp, "tx-1", n) for cp in (CP, "CP_2") for n in range(4))
