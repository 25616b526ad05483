"""batched: slices in order, the last one shorter."""

from __future__ import annotations

from connector.batches import batched


def test_items_come_in_slices_of_the_size_in_order() -> None:
    assert list(batched(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(batched(iter("ab"), 2)) == [["a", "b"]]


def test_no_items_make_no_slice() -> None:
    assert list(batched([], 5)) == []
