"""The simulated 1.6 charger's own loop (simulator/ocpp16/behaviour.py), against a fake of the library's link."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from connector.simulator.ocpp16 import new_charger
from connector.simulator.ocpp16.behaviour import Behaviour
from connector.simulator.station import Intent
from connector.tests.harness import WAIT_S


class SwallowingLink:
    """Answers the first call only once the caller is cancelled, and drops the cancellation: what
    Python 3.11's asyncio.wait_for, inside the ocpp library's call(), does when both coincide."""

    def __init__(self) -> None:
        self.intents: asyncio.Queue[Intent] = asyncio.Queue()
        self.calls: list[str] = []
        self.waiting = asyncio.Event()

    async def call(self, request: Any, suppress: bool = True) -> Any:
        self.calls.append(type(request).__name__)
        self.waiting.set()
        if len(self.calls) > 1:
            await asyncio.Event().wait()  # a later call: no answer comes, a cancellation ends it
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return None  # the answer arrived together with the cancellation; the cancellation is lost
        raise AssertionError("unreachable")


async def test_a_cancelled_charger_stops_even_when_its_cancellation_is_dropped_with_an_answer() -> None:
    """Cancelled in a call whose answer drops the cancellation, the charger's loop still ends, sending nothing more."""
    station = new_charger("SIM-1", 0.2).station
    station.booted = True  # reconnecting: the loop begins with a StatusNotification
    link = SwallowingLink()
    task = asyncio.create_task(Behaviour(station, link).run())  # type: ignore[arg-type]  # a fake of Answers
    async with asyncio.timeout(WAIT_S):
        await link.waiting.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(WAIT_S):
            await task
    assert link.calls == ["StatusNotification"]


class AnsweringLink:
    """Answers every call at once (with no payload), recording the actions."""

    def __init__(self) -> None:
        self.intents: asyncio.Queue[Intent] = asyncio.Queue()
        self.calls: list[str] = []
        self.called = asyncio.Event()

    async def call(self, request: Any, suppress: bool = True) -> Any:
        self.calls.append(type(request).__name__)
        self.called.set()
        return None


async def test_a_reconnected_charger_keeps_sending_heartbeats() -> None:
    """After a reconnect without a reboot the charger still sends a Heartbeat every HeartbeatInterval."""
    station = new_charger("SIM-1", 60).station
    station.booted = True
    station.configuration.set_seconds("HeartbeatInterval", 0.05)
    link = AnsweringLink()
    task = asyncio.create_task(Behaviour(station, link).run())  # type: ignore[arg-type]  # a fake of Answers
    try:
        async with asyncio.timeout(WAIT_S):
            while link.calls.count("Heartbeat") < 2:
                link.called.clear()
                await link.called.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
