"""shared.py against a real redis-server: many chargers' exchanges with Redis at the same moment."""

from __future__ import annotations

import asyncio

from connector.shared import Shared
from connector.tests.harness_ha import RedisServer

BURST = 500  # chargers connecting or leaving in the same event-loop turn: a reconnect storm, a shutdown


async def test_a_burst_of_chargers_taken_and_released_at_once_all_reach_redis(redis_server: RedisServer) -> None:
    """Hundreds of takes and releases at once wait their turn for a Redis connection; none is refused."""
    shared = Shared(redis_server.url, "burst", "a")
    try:
        chargers = [f"CP{i}" for i in range(BURST)]
        assert await asyncio.gather(*(shared.take(cp) for cp in chargers)) == [None] * BURST
        assert sorted(await shared.held_by("a")) == sorted(chargers)
        assert await asyncio.gather(*(shared.release(cp) for cp in chargers)) == [True] * BURST
        assert await shared.held_by("a") == []
    finally:
        await shared.close()
