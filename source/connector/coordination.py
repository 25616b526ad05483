"""Commands with several instances: each reaches its charger once, and gets one status.

Every instance receives every actuator message (they share the broker's topics). A
command is told apart by its digest (topic and payload: the BEMCom message's timestamp
makes each one unique), and two claims in Redis settle who does what (shared.py):

- `send`: only an instance that holds the charger's connection (per Redis, at the moment
  of the claim) may take it, once. It sends the call as one instance alone would.
- `end`: whoever publishes the status takes this claim first; a status nobody may publish
  is dropped. So a status is published once, also when two instances decide at once.

An instance that does not hold the charger watches the command (`_watch`) until it is
settled: claimed by a live sender (which publishes), or its status claimed. It acts in
three cases:

- the charger connects here meanwhile: it claims `send` and sends (a charger reconnecting
  during a failover gets its command);
- nobody holds the charger: `Failed: ... not connected` at once, as one instance says;
- the charger's holder died (and the charger is not back) or the sender died before the
  charger answered: after FAILOVER_S at most, `Failed`, and never sent again (the value may
  have reached the charger: a limit already delivered is not sent twice).

A message the broker delivers twice (QoS 1) is the same digest: sent once. So is a
BEMCom message sent twice byte for byte while its claims last (`shared.claim_ttl`: twice
OCPP_RESPONSE_TIMEOUT and the 15 s failover, at least 2 minutes): a command repeated on
purpose carries a new timestamp.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from typing import NamedTuple

import redis

from connector.commands import CommandRunner, EndGate, not_connected
from connector.datapoints import Datapoint
from connector.limits import Throttled
from connector.registry import ActuatorRef
from connector.session import ChargePointSession
from connector.shared import ORPHAN_S, Shared

LOG = logging.getLogger(__name__)

FAILOVER_S = ORPHAN_S  # a command for a charger whose instance died is answered within this (INTERFACE 10)
POLL_S = 0.25  # how often a watcher looks at a command it does not hold
# An actuator key unknown here is refused after this, if no instance took it: its charger
# may be connecting here, or the registry learning it from another instance (every 1 s).
UNKNOWN_GRACE_S = 2.0
MAX_WATCHED = 10_000  # commands watched at once; beyond, new ones are left to the instances holding them
SKIP_REPORT_S = 10.0


class Settled(Exception):  # noqa: N818  # not an error: another instance took the command
    """Raised to end the coordination of a command another instance took."""


class Message(NamedTuple):
    """An actuator message for a known actuator."""

    topic: str
    key: str
    ref: ActuatorRef
    payload: bytes | bytearray


def digest(topic: str, payload: bytes | bytearray) -> str:
    return hashlib.sha256(topic.encode() + b"\0" + bytes(payload)).hexdigest()


class Coordinator:
    """Takes the actuator messages of one instance of several; see the module's docstring."""

    def __init__(
        self,
        runner: CommandRunner,
        shared: Shared,
        session_for: Callable[[str], ChargePointSession | None],
        refs: Callable[[str], ActuatorRef | None],
        publish: Callable[[list[Datapoint], str | None], None],
        *,
        response_timeout: float,
    ) -> None:
        self._runner = runner
        self._refs = refs  # actuator key -> where it routes, as this instance knows it now
        self._shared = shared
        self._session_for = session_for
        self._publish = publish
        # A sender alive this long after its claim has had its answer or its time-out.
        self._watch_sender_s = response_timeout + FAILOVER_S
        self._tasks: set[asyncio.Task[None]] = set()
        self._skipped = 0  # commands beyond MAX_WATCHED, not yet reported
        self._skip_reports = Throttled(SKIP_REPORT_S)
        # Chargers that watchers wait for: an event set when it connects here, and how many wait.
        self._arrivals: dict[str, tuple[asyncio.Event, int]] = {}

    def submit(self, topic: str, actuator_key: str, ref: ActuatorRef | None, payload: bytes | bytearray) -> None:
        """One actuator message (on the loop thread); never raises.

        Beyond MAX_WATCHED commands in hand, a command for a charger not connected here is
        left to the instance holding it (a fleet-wide burst reaches every instance; each must
        still send its own chargers' commands).
        """
        held_here = ref is not None and self._session_for(ref.cp) is not None
        if not held_here and len(self._tasks) >= MAX_WATCHED:
            self._skipped += 1
            if self._skip_reports.ready():
                LOG.warning(
                    "%d commands for chargers not connected here left to the instances holding them:"
                    " %d commands in hand here",
                    self._skipped,
                    MAX_WATCHED,
                )
                self._skipped = 0
            return
        task = asyncio.get_running_loop().create_task(self._coordinate(topic, actuator_key, ref, payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def arrived(self, cp: str) -> None:
        """A charger connected here: the watchers waiting for it act now."""
        waiting = self._arrivals.pop(cp, None)
        if waiting is not None:
            waiting[0].set()

    async def _coordinate(
        self, topic: str, actuator_key: str, ref: ActuatorRef | None, payload: bytes | bytearray
    ) -> None:
        command = digest(topic, payload)

        async def may_end() -> bool:
            return await self._claim_end(command, actuator_key)

        try:
            if ref is None:
                ref = await self._learn_or_refuse(command, actuator_key)
                if ref is None:
                    self._runner.submit(topic, actuator_key, ref, payload, may_end)
                    return
            if self._session_for(ref.cp) is None and (await self._shared.command_state(command, ref.cp)).nobody_holds:
                # Not connected: every instance sees the same, one says it. Not through the
                # runner: the charger may have connected here meanwhile, and only a send claim sends.
                await self._fail(topic, actuator_key, ref.cp, not_connected(ref.cp), may_end)
                return
            await self._watch(Message(topic, actuator_key, ref, payload), command, may_end)
        except Settled:
            return
        except (redis.RedisError, OSError) as error:
            # Without Redis nobody can tell who holds the charger: one holding it sends.
            LOG.error("actuator %s: Redis unreachable (%s); handled by this instance alone", actuator_key, error)
            if self._session_for(ref.cp if ref else "") is not None or ref is None:
                self._runner.submit(topic, actuator_key, ref, payload)

    async def _learn_or_refuse(self, command: str, actuator_key: str) -> ActuatorRef | None:
        """An actuator key unknown here: its ref once it is known here (its charger connected
        here, or the registry learnt it from another instance), or None to refuse it: no
        instance took the command within UNKNOWN_GRACE_S. A command another instance takes
        meanwhile is none of this one's business: CommandState says so (`_watch`)."""
        deadline = asyncio.get_running_loop().time() + UNKNOWN_GRACE_S
        while asyncio.get_running_loop().time() < deadline:
            ref = self._refs(actuator_key)
            if ref is not None:
                return ref
            state = await self._shared.command_state(command, "")
            if state.sender is not None or state.ended:
                raise Settled
            await asyncio.sleep(POLL_S)
        return self._refs(actuator_key)

    async def _watch(self, message: Message, command: str, may_end: EndGate) -> None:
        topic, actuator_key, ref, payload = message
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            if self._session_for(ref.cp) is not None and await self._shared.claim_send(command, ref.cp):
                self._runner.submit(topic, actuator_key, ref, payload, may_end)
                return
            state = await self._shared.command_state(command, ref.cp)
            waited = loop.time() - started
            if state.ended or state.sender == self._shared.instance:
                return  # settled, or ours (a session that just came up here took it)
            if state.sender is not None:
                if not state.sender_alive:
                    reason = f"instance {state.sender} stopped before the charger answered; not sent again"
                    await self._fail(topic, actuator_key, ref.cp, reason, may_end)
                    return
                if waited >= self._watch_sender_s:
                    return  # alive, it publishes
            elif state.nobody_holds and self._session_for(ref.cp) is None:
                await self._fail(topic, actuator_key, ref.cp, not_connected(ref.cp), may_end)
                return
            elif waited >= FAILOVER_S:
                holder = f"held by instance {state.owner}, which did not take the command"
                reason = holder if state.owner_alive else not_connected(ref.cp)
                await self._fail(topic, actuator_key, ref.cp, reason, may_end)
                return
            await self._arrival_or_poll(ref.cp)

    async def _arrival_or_poll(self, cp: str) -> None:
        """Wait POLL_S, or less if the charger connects here meanwhile."""
        event, waiting = self._arrivals.get(cp) or (asyncio.Event(), 0)
        self._arrivals[cp] = (event, waiting + 1)
        try:
            async with asyncio.timeout(POLL_S):
                await event.wait()
        except TimeoutError:
            pass
        finally:
            current = self._arrivals.get(cp)
            if current is not None and current[0] is event:
                if current[1] <= 1:
                    del self._arrivals[cp]
                else:
                    self._arrivals[cp] = (event, current[1] - 1)

    async def _fail(self, topic: str, actuator_key: str, cp: str, reason: str, may_end: EndGate) -> None:
        """`Failed: <reason>` through the runner (counted, shown), if this instance claims the status."""
        if await may_end():
            self._runner.fail(topic, actuator_key, reason, cp)

    async def _claim_end(self, command: str, actuator_key: str) -> bool:
        try:
            return await self._shared.claim_end(command)
        except (redis.RedisError, OSError) as error:
            # A second status is better than none.
            LOG.warning("actuator %s: could not claim its status (%s); published all the same", actuator_key, error)
            return True

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
