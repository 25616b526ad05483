"""Actuator messages from MQTT become OCPP calls; the answer lands on `<key>__status`.

The catalogue (`actuators.ACTUATORS`) says what an actuator is; the charge point's version
table (`session.version.actuators`) how its value travels in the version the charger speaks.

Every way a command can end is published: the charger's `status` (plus the sensors some
answers carry), or `Failed: <reason>` with a WARNING that names the topic, when the value
is refused, the charge point is not connected, or no usable answer comes back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from websockets.exceptions import ConnectionClosed

from connector.actuators import ACTUATORS, Actuator, ChargerFacts, OcppCall, Refusal, Translation, accepted
from connector.datapoints import Datapoint, key, now_ms
from connector.metrics import CommandResults
from connector.observed import LastCommand
from connector.protocol import load_json
from connector.registry import ActuatorRef
from connector.session import ChargePointSession, CommandError
from connector.settings import Settings
from connector.transactions import TransactionStore

LOG = logging.getLogger(__name__)

EndGate = Callable[[], Awaitable[bool]]  # whether this instance may publish a command's status


def not_connected(cp: str) -> str:
    return f"charge point {cp} is not connected"


def actuator_value(payload: bytes | bytearray) -> Any:
    """The `value` of a BEMCom actuator message, or a Refusal saying what is wrong."""
    try:
        message = load_json(payload)
    except ValueError:
        return Refusal("message is not JSON")
    if not isinstance(message, dict) or "value" not in message:
        return Refusal('message has no "value"')
    return message["value"]


class CommandRunner:
    def __init__(
        self,
        session_for: Callable[[str], ChargePointSession | None],
        publish: Callable[[list[Datapoint], str | None], None],  # (points, their charge point)
        transactions: TransactionStore,
        settings: Settings,
    ) -> None:
        self._session_for = session_for
        self._publish = publish
        self._transactions = transactions
        self._settings = settings
        # The newest command per actuator key: an older one still waiting its turn is
        # dropped, so a burst of limits ends in the last, not in a queue of stale ones.
        self._newest: dict[str, object] = {}
        self.results = CommandResults()  # for /metrics
        self._ending: set[asyncio.Task[None]] = set()  # statuses waiting for the right to be published

    def submit(
        self,
        topic: str,
        actuator_key: str,
        ref: ActuatorRef | None,
        payload: bytes | bytearray,
        may_end: EndGate | None = None,
    ) -> None:
        """Handle one actuator message (on the loop thread); never raises.

        `may_end`: several instances (coordination.py) ask it before publishing the status,
        which exactly one of them may do; None: one instance, always.
        """
        if ref is None:
            self.fail(
                topic,
                actuator_key,
                "no such actuator (unknown key, not enabled in OCPP_CONFIG, or of an unbooted charge point now gone)",
                may_end=may_end,
            )
            return
        value = actuator_value(payload)
        if isinstance(value, Refusal):
            self.fail(topic, actuator_key, value.reason, ref.cp, may_end)
            return
        session = self._session_for(ref.cp)
        if session is None:
            self.fail(topic, actuator_key, not_connected(ref.cp), ref.cp, may_end)
            return
        translation = session.version.actuators.get(ref.name)
        if translation is None:
            self.fail(
                topic, actuator_key, f"{ref.name} is not available in OCPP {session.ocpp_version}", ref.cp, may_end
            )
            return
        # Built now to refuse a bad value at once (allocating no reservation id); built
        # again when its turn comes.
        try:
            call = translation.build(value, ref.connector_id, self._facts(session, ref, allocate=False))
        except Exception as error:  # a bug in a builder must still end in a status
            LOG.exception("actuator %s: building the call failed", actuator_key)
            call = Refusal(f"internal error ({type(error).__name__}) building the call")
        if isinstance(call, Refusal):
            self.fail(topic, actuator_key, call.reason, ref.cp, may_end)
            return
        LOG.info("%s: %s -> %s", ref.cp, actuator_key, call.action)
        token = self._newest[actuator_key] = object()
        command = Command(
            topic,
            actuator_key,
            ref,
            ACTUATORS[ref.name],
            translation,
            value,
            still_wanted=lambda: self._newest.get(actuator_key) is token,
            queued_at=session.unanswered,
            may_end=may_end,
        )
        session.spawn(self._run(session, command))

    def _facts(self, session: ChargePointSession, ref: ActuatorRef, allocate: bool = True) -> ChargerFacts:
        active = self._transactions.active(ref.cp, ref.connector_id)
        return ChargerFacts(
            transaction_id=active.transaction_id if active else None,
            reservation_id=self._transactions.reservation(ref.cp, ref.connector_id),
            new_reservation_id=(lambda: self._transactions.new_id(ref.cp)) if allocate else (lambda: 0),
            new_remote_start_id=(lambda: self._transactions.new_id(ref.cp)) if allocate else (lambda: 0),
            allowed_rate_units=session.state.allowed_rate_units,
            voltages=tuple(session.voltages.values()),
            phases=self._settings.charging_phases,
            reservation_expiry_s=self._settings.reservation_expiry,
            id_tag_allowed=self._settings.id_tags.allows,
        )

    async def _run(self, session: ChargePointSession, command: Command) -> None:
        def build() -> OcppCall | Refusal:  # at the call's turn, with what is known by then
            return command.translation.build(command.value, command.ref.connector_id, self._facts(session, command.ref))

        try:
            if command.actuator.needs_rate_units and not session.state.rate_units_asked:
                # Not read since we started (no BootNotification yet): read it first, once.
                # A read that fails does not fail the limit: it goes out in the unit given.
                await session.refresh_rate_units(command.queued_at)
            call, answer = await session.send_call(build, command.still_wanted, command.queued_at)
        except CommandError as error:
            self.fail(command.topic, command.key, str(error), command.ref.cp, command.may_end)
            return
        except ConnectionClosed:
            closed = "connection closed before the charger answered"
            self.fail(command.topic, command.key, closed, command.ref.cp, command.may_end)
            return
        except asyncio.CancelledError:
            closed = "connection closed before the charger answered"
            self.fail(command.topic, command.key, closed, command.ref.cp, command.may_end)
            raise
        self._answered(session, command, call, answer)

    def _answered(self, session: ChargePointSession, command: Command, call: OcppCall, answer: dict[str, Any]) -> None:
        ref, at = command.ref, now_ms()
        remember(session, self._transactions, call, answer)
        try:
            points = command.translation.answer(ref.cp, ref.connector_id, call, answer, at)
        except Exception:  # a bug in an answer mapping must not swallow the status
            LOG.exception("actuator %s: mapping the answer failed", command.key)
            points = []
        status, warning = command.translation.status(answer)
        if warning is not None:
            LOG.warning("%s: %s: %s", ref.cp, command.key, warning)
        # With its charge point: keys an answer mints (a charger's configuration keys) count
        # against that charger's OCPP_MAX_KEYS_PER_CHARGE_POINT and are forgotten with it.
        self._end([*points, Datapoint(key(command.key, "status"), status, at)], ref.cp, command.key, command.may_end)

    def fail(
        self, topic: str, actuator_key: str, reason: str, cp: str | None = None, may_end: EndGate | None = None
    ) -> None:
        """Publish `Failed: <reason>` (several instances: if `may_end` allows); `cp` None only
        for a key the map names but nobody owns."""
        status = Datapoint(key(actuator_key, "status"), f"Failed: {reason}", now_ms())
        warning = f"actuator {actuator_key} (topic {topic}): Failed: {reason}"
        self._end([status], cp, actuator_key, may_end, warning=warning)

    def _end(
        self,
        points: list[Datapoint],
        cp: str | None,
        actuator_key: str,
        may_end: EndGate | None,
        *,
        warning: str | None = None,
    ) -> None:
        """Publish the command's last points, its status last (and log `warning`); with several
        instances, once this one has the right to (the answer waits meanwhile: it is in `points`)."""
        if may_end is None:
            self._publish_end(points, cp, actuator_key, warning)
            return
        task = asyncio.get_running_loop().create_task(self._end_once(points, cp, actuator_key, may_end, warning))
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)

    async def _end_once(
        self, points: list[Datapoint], cp: str | None, actuator_key: str, may_end: EndGate, warning: str | None
    ) -> None:
        if await may_end():  # only the instance that publishes the status says why it failed
            self._publish_end(points, cp, actuator_key, warning)

    def _publish_end(self, points: list[Datapoint], cp: str | None, actuator_key: str, warning: str | None) -> None:
        if warning is not None:
            LOG.warning("%s", warning)
        self._publish(points, cp)
        self._ended(cp, actuator_key, points[-1])

    def _ended(self, cp: str | None, actuator_key: str, status: Datapoint) -> None:
        """Count the command's result; the status page shows it with its charge point, if connected."""
        self.results.ended(str(status.value))
        session = self._session_for(cp) if cp is not None else None
        if session is not None:
            session.observed.command = LastCommand(actuator_key, str(status.value), status.timestamp)


def remember(
    session: ChargePointSession, transactions: TransactionStore, call: OcppCall, answer: dict[str, Any]
) -> None:
    """What an answer teaches about the charger, whichever actuator sent the call.

    Reservations in 1.6's payload or 2.x's (`id`, `evseId`, `expiryDateTime`); the rate
    units from whatever the version's read covers (an operator's read of the same kind).
    """
    p = call.payload
    if call.action == "ReserveNow":
        if accepted(answer):
            reservation_id = p["reservationId"] if "reservationId" in p else p["id"]
            expiry = p["expiryDate"] if "expiryDate" in p else p["expiryDateTime"]
            transactions.reserve(session.id, p.get("connectorId", p.get("evseId", 0)), reservation_id, expiry)
    elif call.action == "CancelReservation":
        if accepted(answer):
            transactions.end_reservation(session.id, p["reservationId"])
    else:
        session.remember_rate_units(call, answer)


@dataclass(frozen=True)
class Command:
    """One actuator message on its way to the charger."""

    topic: str
    key: str
    ref: ActuatorRef
    actuator: Actuator  # what it is (the catalogue's)
    translation: Translation  # how it travels in the charger's version
    value: Any
    still_wanted: Callable[[], bool]
    queued_at: int  # the session's unanswered count when it arrived
    may_end: EndGate | None = None  # see CommandRunner.submit
