"""Service's lifecycle: background work at shutdown."""

from __future__ import annotations

import asyncio
import logging

import pytest

from connector.service import BACKGROUND_STOP_S, Service
from connector.settings import Settings
from connector.tests.harness import WAIT_S


async def test_background_work_that_ignores_cancellation_does_not_hold_up_the_stop(
    settings_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """A stop waits BACKGROUND_STOP_S for cancelled background work, then goes on, naming what it left."""
    released = asyncio.Event()

    async def stubborn() -> None:
        while not released.is_set():
            try:
                await released.wait()
            except asyncio.CancelledError:
                continue  # a task that swallows its cancellation

    service = Service(Settings.from_env(settings_env))
    service._background = lambda: [stubborn()]  # type: ignore[method-assign]
    running = asyncio.create_task(service.run())
    async with asyncio.timeout(WAIT_S):
        await service.started.wait()
    with caplog.at_level(logging.ERROR):
        service.stop.set()
        async with asyncio.timeout(WAIT_S):
            await running
    released.set()
    assert f"stubborn did not stop within {BACKGROUND_STOP_S:g} s (waiting in" in caplog.text


async def test_background_work_that_fails_stops_the_service(settings_env: dict[str, str]) -> None:
    async def broken() -> None:
        raise RuntimeError("broken background work")

    service = Service(Settings.from_env(settings_env))
    service._background = lambda: [broken()]  # type: ignore[method-assign]
    with pytest.raises(ExceptionGroup) as caught:
        async with asyncio.timeout(WAIT_S):
            await service.run()
    assert [str(error) for error in caught.value.exceptions] == ["broken background work"]
