"""SharedTransactionStore against a real redis-server: what the charger is told is in Redis,
ids come from Redis's counter, and a forgotten charger leaves no keys behind."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis

from connector.datapoints import EvseTransaction
from connector.shared import Shared
from connector.shared_transactions import POOL, SharedTransactionStore
from connector.tests.harness_ha import RedisServer
from connector.transactions import ID_EPOCH, StateUnavailableError

NOW = ID_EPOCH + 200_000_000.0
_names = itertools.count()


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def shared(redis_server: RedisServer) -> AsyncIterator[Shared]:
    running = Shared(redis_server.url, f"shared-tx-{next(_names)}", "node-1")
    yield running
    await running.close()


def store(shared: Shared, tmp_path: Path, clock: Clock) -> SharedTransactionStore:
    return SharedTransactionStore(shared, tmp_path, clock)


def keys_of(redis_server: RedisServer, shared: Shared, cp: str) -> list[str]:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        found: list[str] = client.keys(f"{shared.prefix}*:{cp}")  # type: ignore[assignment]
        return sorted(k.removeprefix(shared.prefix) for k in found)
    finally:
        client.close()


async def test_another_instance_reads_what_one_answered(shared: Shared, tmp_path: Path) -> None:
    """A transaction started on one instance is stopped on another: the state was in Redis before `saved()` returned."""
    clock = Clock()
    first, second = store(shared, tmp_path / "a", clock), store(shared, tmp_path / "b", clock)
    await first.prepare("CP_1")
    started = first.start("CP_1", 1, "TAG", 1000, "2026-12-04T10:00:00Z")
    assert first.unsaved("CP_1")
    assert not first.unsaved("CP_2")  # a charger's answer waits for its own writes only
    await first.saved("CP_1")
    assert not first.unsaved("CP_1")
    await second.prepare("CP_1")
    stopped = second.stop("CP_1", started.transaction_id)
    assert stopped == started


async def test_ids_are_unique_across_instances_and_never_below_the_floor(shared: Shared, tmp_path: Path) -> None:
    clock = Clock()
    first, second = store(shared, tmp_path / "a", clock), store(shared, tmp_path / "b", clock)
    await first.prepare("CP_1")
    await second.prepare("CP_1")  # both believe they serve it (a half-open connection on one)
    issued = []
    for _ in range(5):
        issued += [first.new_id("CP_1"), second.new_id("CP_1")]
        await first.saved()  # the pools are topped up in the next batch
        await second.saved()
    assert len(set(issued)) == len(issued)
    assert min(issued) >= int(NOW) - ID_EPOCH


async def test_no_id_at_hand_is_refused_not_invented(shared: Shared, tmp_path: Path) -> None:
    """Ids taken faster than Redis tops the pool up: the next is refused (the charger repeats), never made up."""
    target = store(shared, tmp_path, Clock())
    await target.prepare("CP_1")
    for _ in range(POOL):
        target.new_id("CP_1")
    with pytest.raises(StateUnavailableError):
        target.new_id("CP_1")


async def test_a_write_redis_refuses_fails_saved(shared: Shared, tmp_path: Path, redis_server: RedisServer) -> None:
    target = store(shared, tmp_path, Clock())
    await target.prepare("CP_1")
    redis_server.kill()
    target.start("CP_1", 1, "TAG", 1000, "2026-12-04T10:00:00Z")
    with pytest.raises(StateUnavailableError):
        await target.saved()


async def test_a_forgotten_charger_leaves_no_keys_unless_something_in_them_matters(
    shared: Shared, tmp_path: Path, redis_server: RedisServer
) -> None:
    clock = Clock()
    target = store(shared, tmp_path, clock)
    for cp in ("CP_IDLE", "CP_OPEN", "CP_HELD"):
        await target.prepare(cp)
        target.connector_seen(cp, 1)
    target.start("CP_OPEN", 1, "TAG", 1000, "2026-12-04T10:00:00Z")
    await shared.take("CP_HELD")
    await target.saved()
    clock.now += 60  # the ids issued are below the clock floor now
    for cp in ("CP_IDLE", "CP_OPEN", "CP_HELD"):
        target.forget(cp)
    await target.saved()
    assert keys_of(redis_server, shared, "CP_IDLE") == []
    assert keys_of(redis_server, shared, "CP_OPEN") == ["connectors:CP_OPEN", "tx:CP_OPEN", "txid:CP_OPEN"]
    assert "connectors:CP_HELD" in keys_of(redis_server, shared, "CP_HELD")


async def test_after_a_failed_batch_the_state_and_the_ids_are_written_again(
    shared: Shared, tmp_path: Path, redis_server: RedisServer
) -> None:
    """Redis down for one batch: the next batch (Redis back, empty) holds the charger's whole
    state and tops its id pool up, so its next start is answered and another instance reads it."""
    clock = Clock()
    target = store(shared, tmp_path / "a", clock)
    await target.prepare("CP_1")
    redis_server.kill()
    first = target.start("CP_1", 1, "TAG", 1000, "2026-12-04T10:00:00Z")
    with pytest.raises(StateUnavailableError):
        await target.saved("CP_1")
    redis_server.start()  # empty
    second = target.start("CP_1", 2, "TAG", 2000, "2026-12-04T10:01:00Z")  # the pool's last id
    await target.saved("CP_1")
    third = target.start("CP_1", 3, "TAG", 3000, "2026-12-04T10:02:00Z")  # topped up again
    await target.saved("CP_1")
    other = store(shared, tmp_path / "b", clock)
    await other.prepare("CP_1")
    assert {c: other.active("CP_1", c) for c in (1, 2, 3)} == {1: first, 2: second, 3: third}
    assert len({first.transaction_id, second.transaction_id, third.transaction_id}) == 3


async def test_a_repeated_event_after_a_failed_write_waits_for_its_state(
    shared: Shared, tmp_path: Path, redis_server: RedisServer
) -> None:
    """A 2.x event re-sent because its answer was a CALLERROR: recognised as a repeat, and its
    answer waits until Redis holds what the first one changed."""
    target = store(shared, tmp_path, Clock())
    await target.prepare("CS_1")
    redis_server.kill()
    record = EvseTransaction("tx-1", 1, "TAG", 1000, "2026-12-04T10:00:00Z")
    target.running("CS_1", record, 0)
    with pytest.raises(StateUnavailableError):
        await target.saved("CS_1")
    redis_server.start()
    assert target.repeated("CS_1", "tx-1", 0)
    assert target.unsaved("CS_1")
    await target.saved("CS_1")
    other = store(shared, tmp_path / "b", Clock())
    await other.prepare("CS_1")
    assert other.known("CS_1", "tx-1") == record
