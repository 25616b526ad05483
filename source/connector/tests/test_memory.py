"""When a full garbage collection is due (the loop itself is shown by test_storm's rounds)."""

from __future__ import annotations

from connector.memory import FULL_EVERY_S, MIN_ENDED_FOR_FULL, full_collection_due


def test_a_fleet_that_left_is_collected_at_once() -> None:
    """Many sessions ended, few open: due now, not at the hourly collection."""
    assert full_collection_due(ended=1000, open_sessions=0, since_full_s=10)
    assert full_collection_due(ended=MIN_ENDED_FOR_FULL, open_sessions=100, since_full_s=10)


def test_a_trickle_of_reconnects_waits_for_the_hourly_collection() -> None:
    """A few ended among thousands open: the one long pause is not worth it yet."""
    assert not full_collection_due(ended=MIN_ENDED_FOR_FULL - 1, open_sessions=0, since_full_s=10)
    assert not full_collection_due(ended=500, open_sessions=10_000, since_full_s=10)
    assert full_collection_due(ended=0, open_sessions=10_000, since_full_s=FULL_EVERY_S)
