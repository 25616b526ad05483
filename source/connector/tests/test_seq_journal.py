"""SeqJournal: the seqNo journal's lines per charge point, in one SQLite database."""

from __future__ import annotations

from pathlib import Path

from connector.seq_journal import FILE_NAME, SeqJournal


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
