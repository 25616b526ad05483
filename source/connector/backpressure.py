"""Backpressure from the MQTT side to the charge point sessions.

Each outbox lane says when it is full (`outbox.HIGH_WATER` messages waiting in memory) and
when it has room again; sessions read their next frame only while every lane has room.
Its own module so that the OCPP side need not know the MQTT side's parts.
"""

from __future__ import annotations

import asyncio


class Room:
    """Whether every lane can take more: sessions read their next frame only while open."""

    __slots__ = ("_full", "_open", "_released")

    def __init__(self) -> None:
        self._full: set[int] = set()  # ids of the lanes that are full
        self._open = asyncio.Event()
        self._open.set()
        self._released = False

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    async def wait(self) -> None:
        await self._open.wait()

    def full(self, lane: object) -> None:
        self._full.add(id(lane))
        if not self._released:
            self._open.clear()

    def release(self) -> None:
        """Open for good (at shutdown): no session may wait here while its connection is closed."""
        self._released = True
        self._open.set()

    def freed(self, lane: object) -> None:
        self._full.discard(id(lane))
        if not self._full:
            self._open.set()
