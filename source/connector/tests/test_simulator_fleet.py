"""The simulated fleet's reconnecting (simulator/fleet.py) and its task helpers (simulator/race.py)."""

from __future__ import annotations

import asyncio
import random

import pytest

from connector.simulator.fleet import MAX_BACKOFF_S, NEW_CHARGER, Backoff
from connector.simulator.options import VERSIONS
from connector.simulator.race import first_to_finish, unless_stopped
from connector.tests.harness import WAIT_S


def test_the_backoff_doubles_up_to_a_minute_with_jitter_and_resets() -> None:
    """Waits of 1, 2, 4, ... s (each between half and all of it) up to MAX_BACKOFF_S; after a reset 1 s again."""
    backoff = Backoff(random.Random(1))
    waits = [backoff.next() for _ in range(10)]
    ceilings = [min(MAX_BACKOFF_S, 2.0**n) for n in range(10)]
    assert all(ceiling / 2 <= wait <= ceiling for wait, ceiling in zip(waits, ceilings, strict=True)), waits
    backoff.reset()
    assert 0.5 <= backoff.next() <= 1.0


async def test_first_to_finish_cancels_the_rest() -> None:
    """When one coroutine returns, the others are cancelled and awaited before first_to_finish returns."""
    never = asyncio.Event()
    cancelled = asyncio.Event()

    async def waits_forever() -> None:
        try:
            await never.wait()
        finally:
            cancelled.set()

    async with asyncio.timeout(WAIT_S):
        await first_to_finish(asyncio.sleep(0), waits_forever())
    assert cancelled.is_set()


async def test_first_to_finish_raises_what_the_first_raised() -> None:
    """An error of the coroutine that ended first reaches the caller."""

    async def fails() -> None:
        raise ConnectionError("gone")

    with pytest.raises(ConnectionError, match="gone"):
        async with asyncio.timeout(WAIT_S):
            await first_to_finish(fails(), asyncio.Event().wait())


async def test_unless_stopped_gives_up_when_stopped() -> None:
    """Work still running when the stop event is set ends in None; work that ends first gives its result."""
    stop = asyncio.Event()
    assert await unless_stopped(asyncio.sleep(0, result="done"), stop) == "done"
    stop.set()
    async with asyncio.timeout(WAIT_S):
        assert await unless_stopped(asyncio.Event().wait(), stop) is None


def test_every_version_the_command_line_accepts_has_chargers() -> None:
    """Each OCPP version --ocpp accepts has a charger implementation in the fleet, and no other."""
    assert set(NEW_CHARGER) == set(VERSIONS)
