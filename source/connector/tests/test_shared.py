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


async def test_claims_let_one_instance_send_and_one_publish(redis_server: RedisServer) -> None:
    """Only the holder may claim sending, once; a command whose status is claimed is never sent."""
    holder, other = Shared(redis_server.url, "claims", "a"), Shared(redis_server.url, "claims", "b")
    try:
        await holder.take("CP_1")
        assert not await other.claim_send("cmd-1", "CP_1")  # not its charger
        assert await holder.claim_send("cmd-1", "CP_1")
        assert not await holder.claim_send("cmd-1", "CP_1")  # a QoS 1 duplicate
        assert await other.claim_end("cmd-1")
        assert not await holder.claim_end("cmd-1")
        assert await other.claim_end("cmd-2")  # answered Failed (the charger was between connections)
        assert not await holder.claim_send("cmd-2", "CP_1")  # ... so never sent afterwards
        state = await other.command_state("cmd-1", "CP_1")
        assert (state.sender, state.ended, state.owner, state.sender_alive) == ("a", True, "a", False)
    finally:
        await holder.close()
        await other.close()


async def test_a_sweep_does_not_forget_a_name_alive_again(redis_server: RedisServer) -> None:
    """A restarted process took its name back while another swept it: it stays known."""
    survivor, restarted = Shared(redis_server.url, "sweep", "b"), Shared(redis_server.url, "sweep", "a")
    try:
        await restarted.claim_name()
        await survivor.forget_instance("a")  # the sweep found "a" dead a moment before
        assert await restarted.alive("a")
        await restarted.leave()
        assert await survivor.dead() == ["a"]
    finally:
        await survivor.close()
        await restarted.close()
