"""The roster: which charge points are known, and which to forget."""

from __future__ import annotations

from connector.fleet import Member, Roster


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def roster(forget_after: float = 100.0, max_absent: int = 10) -> tuple[Roster, Clock]:
    clock = Clock()
    return Roster(forget_after, max_absent, clock), clock


def test_a_charge_point_gone_longer_than_forget_after_is_due() -> None:
    """Only a charge point absent for more than forget_after seconds is due; a connected one never."""
    members, clock = roster(forget_after=100.0)
    members.arrived("OLD")
    members.left("OLD")
    members.arrived("HERE")
    clock.now += 50
    members.arrived("RECENT")
    members.left("RECENT")
    clock.now += 60
    assert members.due(limit=10) == ["OLD"]


def test_beyond_max_absent_the_longest_gone_are_due() -> None:
    """Beyond max_absent absent charge points, the longest gone are due, the recent kept, at most `limit` at once."""
    members, clock = roster(forget_after=1e9, max_absent=2)
    for cp in ("A", "B", "C", "D"):
        members.arrived(cp)
        clock.now += 1
        members.left(cp)
    assert members.due(limit=10) == ["A", "B"]
    assert members.due(limit=1) == ["A"]  # forgotten in batches, the longest gone first


def test_forgotten_members_are_reported_once_to_the_store() -> None:
    """take_changes hands over the changed members and the forgotten ones, then starts afresh."""
    members, _ = roster()
    members.arrived("A")
    members.booted("A")
    members.arrived("B")
    members.forget("B")
    changed, forgotten = members.take_changes()
    assert changed == {"A": Member(booted=True, absent_since=None)}
    assert forgotten == ["B"]
    assert members.take_changes() == ({}, [])


def test_restored_members_connected_at_the_end_are_absent_since_the_restore() -> None:
    """A charge point that was connected when the connector died counts as gone since the restart."""
    members, clock = roster()
    members.restore({"WAS_ON": Member(True, None), "WAS_OFF": Member(False, 5.0)})
    assert members.members == {"WAS_ON": Member(True, clock.now), "WAS_OFF": Member(False, 5.0)}
    assert members.is_booted("WAS_ON") and not members.is_booted("WAS_OFF")


def test_booted_is_true_only_the_first_time() -> None:
    """booted() says whether the charge point had not booted before."""
    members, _ = roster()
    assert members.booted("A") is True
    assert members.booted("A") is False


def test_a_fleet_gone_at_once_within_the_bound_is_kept() -> None:
    """A network blip disconnecting every charger forgets none: no more are absent than may be connected."""
    members, clock = roster(forget_after=1e9, max_absent=3)
    for cp in ("A", "B", "C"):
        members.arrived(cp)
    for cp in ("A", "B", "C"):
        members.left(cp)
    clock.now += 3600
    assert members.due(limit=10) == []


def test_another_instances_word_is_taken_as_is_and_not_saved_again() -> None:
    """A merged entry says whether the charger is absent (None: connected elsewhere), keeps booted, and is not saved."""
    members, clock = roster()
    members.booted("CP_1")
    members.left("CP_1")
    members.take_changes()
    assert members.merge("CP_1", Member(False, None)) is False
    assert members.merge("CP_2", Member(True, 5.0)) is True
    assert members.members == {"CP_1": Member(True, None), "CP_2": Member(True, 5.0)}
    assert members.take_changes() == ({}, [])
    clock.now += 1000
    assert members.due(10) == ["CP_2"]


def test_a_change_not_saved_yet_is_pending_until_taken() -> None:
    """Arrivals and forgets wait for the store; a charge point dropped for another instance is not one of them."""
    members, _ = roster()
    members.arrived("CP_1")
    members.arrived("CP_2")
    members.forget("CP_2")
    assert members.pending("CP_1") and members.pending("CP_2")
    members.take_changes()
    assert not members.pending("CP_1") and not members.pending("CP_2")
    members.drop("CP_1")
    assert "CP_1" not in members.members and members.take_changes() == ({}, [])
