"""Work in slices: batched(items, size), as itertools.batched does from Python 3.12 on (lists here)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TypeVar

T = TypeVar("T")


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of `size` items in order, the last one shorter; nothing for no items."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk
