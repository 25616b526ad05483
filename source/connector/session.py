"""One charge point's OCPP 1.6 session: the ocpp library's ChargePoint, specialised.

Handlers are registered with the library's `@on` and receive the wire payload (camelCase)
in an `Inbound`: the datapoint mapping works in wire terms, and skipping the library's
recursive case conversion saves a large share of the per-message cost. The session knows
nothing of MQTT: it hands datapoints, new connector ids and raw frames to `SessionEvents`.

Framing is ours rather than the library's `route_message` (ocpp 2.1.0), because the
library drops a CALL of the wrong length without the CALLERROR OCPP-J prescribes
(https://github.com/mobilityhouse/ocpp/issues/102, closed: it only logs), answers an
unknown action NotSupported and a known one without a handler NotImplemented, the reverse
of OCPP-J 1.6 table 7 (https://github.com/mobilityhouse/ocpp/issues/493), and validates
in a thread pool by default (https://github.com/mobilityhouse/ocpp/pull/676), which costs
more than the validation itself for our small frames.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from time import perf_counter
from typing import Any, Protocol, cast

from ocpp.exceptions import InternalError, OCPPError
from ocpp.messages import Call, CallError, CallResult, MessageType
from ocpp.routing import create_route_map, on
from ocpp.v16 import ChargePoint
from ocpp.v16.enums import Action
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed, ConnectionClosedError

from connector import datapoints as dp
from connector.actuators import ACTUATORS, GET_CONFIGURATION, RATE_UNIT_KEY, OcppCall, Refusal, parse_rate_units
from connector.authorization import IdTagPolicy
from connector.charger import ChargerState
from connector.datapoints import Datapoint
from connector.limits import MessageRate, RefusalLog
from connector.metrics import FrameMetrics
from connector.observed import Observed
from connector.protocol import (
    MAX_SAMPLED_VALUES,
    OCPP_VERSION,
    FrameProblem,
    capped_sampled_values,
    check_payload,
    formation_violation,
    parse_frame,
    refusal_for_action,
    schema_fields,
)
from connector.transactions import TransactionStore

LOG = logging.getLogger(__name__)

ACCEPTED = {"status": "Accepted"}
RATE_CLOSE_CODE = 1008  # policy violation
MAX_QUOTED = 200  # characters of a charger's error description quoted in a status
MAX_NAMED_DEVIATIONS = 100  # per connection; bounds memory against a charger that varies them


Handler = Callable[["ChargePointSession", "Inbound"], dict[str, Any]]


def handles(action: Action) -> Callable[[Handler], Handler]:
    """The ocpp library's `@on`, typed for our handlers (the library ships no types)."""
    return cast(Callable[[Handler], Handler], on(action))


class SessionEvents(Protocol):
    """What a session tells the rest of the connector."""

    def publish(self, cp: str, points: list[Datapoint]) -> None: ...

    def connector_seen(self, cp: str, connector_id: int) -> None: ...

    def booted(self, cp: str) -> None: ...


RawTap = Callable[[str, str, str, int], None]  # (cp, direction, frame, ms)


@dataclass
class Inbound:
    """A validated CALL as a handler sees it."""

    payload: dict[str, Any]
    received: int  # ms
    notes: list[str] = field(default_factory=list)
    # Work to start once the answer is on the wire (a call to the charger must not
    # overtake the answer that lets it talk, e.g. BootNotification's Accepted).
    after: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)


class CommandError(Exception):
    """A call to the charger that got no usable answer: the message is the reason."""


def utc_now_text() -> str:
    """Now in OCPP's date-time form, UTC with a `Z` suffix."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ChargePointSession(ChargePoint):  # type: ignore[misc]  # untyped library base
    ocpp_version = OCPP_VERSION

    def __init__(
        self,
        cp_id: str,
        connection: ServerConnection,
        events: SessionEvents,
        transactions: TransactionStore,
        *,
        state: ChargerState,
        id_tags: IdTagPolicy,
        heartbeat_interval: int,
        response_timeout: float,
        max_message_rate: float = 0.0,
        write_timeout: float = 60.0,
        raw_tap: RawTap | None = None,
        metrics: FrameMetrics | None = None,
    ) -> None:
        super().__init__(cp_id, connection, response_timeout=response_timeout, logger=LOG)
        self._events = events
        self._transactions = transactions
        self.state = state
        self._id_tags = id_tags
        self._heartbeat_interval = heartbeat_interval
        self._raw_tap = raw_tap
        self._pending: dict[str, asyncio.Future[CallResult | CallError]] = {}
        self._connectors: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._timeouts = 0  # calls that went unanswered: fails the ones queued behind them
        self._named: set[str] = set()  # deviations already logged on this connection
        self._refusals: RefusalLog | None = None
        self._boot_triggered_until = 0.0  # loop time until which a BootNotification is one we asked for
        self._rate = MessageRate(max_message_rate)
        self._write_timeout = write_timeout
        # Plausible phase voltages of this connection, latest per phase: W <-> A conversions use
        # them. Not kept beyond it: another connection under the same identity may be another
        # device, or the same one after a fault, and starts from the default again.
        self.voltages: dict[str, float] = {}
        self.log = logging.LoggerAdapter(LOG, {"charge_point": cp_id})
        self._metrics = metrics or FrameMetrics()
        self.observed = Observed()  # for the status page

    # -- reading -----------------------------------------------------------------------

    async def start(self) -> None:
        """Serve frames until the connection closes (ConnectionClosed propagates)."""
        self.connector_seen(0)
        async for frame in self._connection:
            if not self._rate.allow():
                # The dispatcher logs why, from the close code.
                await self._connection.close(RATE_CLOSE_CODE, "message rate limit exceeded")
                return
            arrived, received = perf_counter(), dp.now_ms()
            self._metrics.frames_in += 1
            text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
            if self._raw_tap is not None:
                self._raw_tap(self.id, "in", text, received)
            try:
                await self.route_message(text, received, arrived)
            except ConnectionClosed:
                raise
            except Exception:
                self.log.exception("%s: frame could not be handled: %.200s", self.id, text)

    async def route_message(self, raw_msg: str, received: int | None = None, arrived: float | None = None) -> None:
        """Handle one frame; `received` (ms) and `arrived` (perf_counter) when it came off the wire."""
        message = parse_frame(raw_msg)
        if isinstance(message, FrameProblem):
            await self._refuse_frame(message, raw_msg)
        elif isinstance(message, Call):
            await self._handle_call(message, received or dp.now_ms(), arrived or perf_counter())
        else:
            self._resolve(message)

    async def _refuse_frame(self, problem: FrameProblem, raw_msg: str) -> None:
        if problem.unique_id is None:
            # OCPP-J 1.6 4.2.3: without a unique id there is nothing to answer.
            self._refused("dropped frames", "%s: dropped frame (%s): %.200s", self.id, problem.reason, raw_msg)
            return
        self._refused("refused frames", "%s: refused frame (%s): %.200s", self.id, problem.reason, raw_msg)
        error = formation_violation(problem)
        await self._send(CallError(problem.unique_id, error.code, error.description, {}).to_json())

    async def _handle_call(self, msg: Call, received: int, arrived: float) -> None:
        refusal = refusal_for_action(msg.action)
        if refusal is None:
            self._cap_sampled_values(msg)
            refusal = self._schema_refusal(msg)
        if refusal is not None:
            description = refusal.description
            self._refused("refused calls", "%s: refused %.100s: %s %s", self.id, msg.action, refusal.code, description)
            await self._send(msg.create_call_error(refusal).to_json())
            return
        inbound = Inbound(msg.payload, received)
        try:
            response = self._handlers()[msg.action](self, inbound)
        except Exception as error:
            self.log.exception("%s: handling %s failed", self.id, msg.action)
            reply = InternalError(description=f"{type(error).__name__} while handling {msg.action}")
            await self._send(msg.create_call_error(reply).to_json())
            return
        # The handler has handed its values to the MQTT side (the few CALLs without values,
        # Authorize and SignCertificate, count their handling): the histogram's end point.
        self._metrics.handed(perf_counter() - arrived)
        for note in inbound.notes:
            if self._first_time(f"{msg.action}: {note}"):
                self.log.info("%s: tolerated in %s: %s", self.id, msg.action, note)
        await self._send(msg.create_call_result(response).to_json())
        for work in inbound.after:
            self.spawn(work())

    def _refused(self, reason: str, message: str, *args: object) -> None:
        """A WARNING about a frame refused: at most one per 10 s per reason on this connection,
        counting the others (a charger sending junk in a loop must not flood N/logs)."""
        if self._refusals is None:  # most connections never need one
            self._refusals = RefusalLog(LOG)
        self._refusals.report(reason, message, *args)

    def _cap_sampled_values(self, msg: Call) -> None:
        """Bound what one frame costs every other charger on this loop (see MAX_SAMPLED_VALUES)."""
        cut = capped_sampled_values(msg.action, msg.payload)
        if cut and self._first_time(f"{msg.action}: over {MAX_SAMPLED_VALUES} sampled values"):
            self.log.warning(
                "%s: %s with more than %d sampled values: answered, the %d beyond them skipped",
                self.id,
                msg.action,
                MAX_SAMPLED_VALUES,
                cut,
            )

    def _schema_refusal(self, msg: Call) -> OCPPError | None:
        verdict = check_payload(msg.action, msg.payload, MessageType.Call)
        for deviation in verdict.tolerated:
            if self._first_time(f"{msg.action}: {deviation}"):
                self.log.warning("%s: tolerated schema deviation in %s: %s", self.id, msg.action, deviation)
        return verdict.refusal

    def _first_time(self, deviation: str) -> bool:
        """Name each distinct deviation once per connection: a charger repeats its quirks
        every meter interval, and a fleet's logs topic must stay readable."""
        if deviation in self._named or len(self._named) >= MAX_NAMED_DEVIATIONS:
            return False
        self._named.add(deviation)
        return True

    @classmethod
    def _handlers(cls) -> dict[str, Handler]:
        """Action -> handler function, cached on the class.

        (The library's ChargePoint.__init__ still builds its own route map per session,
        unused here; the cache only spares our dispatch from building another.)
        """
        routes = cls.__dict__.get("_route_cache")
        if routes is None:
            routes = {action: r["_on_action"] for action, r in create_route_map(cls).items()}
            cls._route_cache = routes
        return cast(dict[str, Handler], routes)

    # -- calling the charger -----------------------------------------------------------

    @property
    def unanswered(self) -> int:
        """How many calls went unanswered so far; pass it as `queued_at` when a command arrives."""
        return self._timeouts

    async def send_call(
        self,
        build: Callable[[], OcppCall | Refusal],
        still_wanted: Callable[[], bool] = lambda: True,
        queued_at: int | None = None,
        counts_unanswered: bool = True,
    ) -> tuple[OcppCall, dict[str, Any]]:
        """Send the CALL `build` makes when its turn comes; (call, CALLRESULT payload), or CommandError.

        Built at its turn, not before: a call queued behind another (the read of the
        charger's rate units after a boot) is made with what that one's answer taught.

        OCPP-J allows one outstanding CALL per direction, so calls queue on a lock. Each
        call sent gets the full response timeout. When one times out, the calls that were
        waiting behind it fail unsent at once instead of each waiting out its own timeout
        against a charger that has stopped answering; calls made later get a fresh chance.
        `still_wanted` is asked when the call's turn comes (a newer value may replace it).
        `counts_unanswered=False`: this call's time-out fails no call behind it (the
        connector's own reads, which must not cost the operator's commands).
        Never await this from a handler: the answer is read by the same loop.
        """
        timeouts_before = self._timeouts if queued_at is None else queued_at
        async with self._call_lock:
            if self._timeouts != timeouts_before:
                raise CommandError(
                    f"not sent: the charger left an earlier command unanswered for {self._response_timeout:g} s"
                )
            if not still_wanted():
                raise CommandError("superseded by a newer value before it was sent")
            call = build()
            if isinstance(call, Refusal):
                raise CommandError(call.reason)
            self._note_boot_trigger(call)
            result = await self._exchange(call, counts_unanswered)
        return call, self._result_payload(call.action, result)

    def _note_boot_trigger(self, call: OcppCall) -> None:
        """A BootNotification we ask for is no reboot: it must not settle running transactions.

        Noted when the trigger goes out, not when its answer comes: some chargers send the
        BootNotification before their TriggerMessage.conf. Expected within the response timeout.
        """
        if call.action == "TriggerMessage" and call.payload.get("requestedMessage") == "BootNotification":
            self._boot_triggered_until = asyncio.get_running_loop().time() + self._response_timeout

    def _triggered_boot(self) -> bool:
        """Whether a BootNotification now is the one we asked for (then it is taken as such)."""
        triggered = asyncio.get_running_loop().time() < self._boot_triggered_until
        self._boot_triggered_until = 0.0
        return triggered

    async def _exchange(self, call: OcppCall, counts_unanswered: bool = True) -> CallResult | CallError:
        """Send the call (bounded by the write timeout), then wait for its answer (the response timeout)."""
        message = Call(str(uuid.uuid4()), call.action, call.payload)
        answer: asyncio.Future[CallResult | CallError] = asyncio.get_running_loop().create_future()
        self._pending[message.unique_id] = answer
        try:
            await self._send(message.to_json())
            async with asyncio.timeout(self._response_timeout):
                return await answer
        except TimeoutError:
            if counts_unanswered:
                self._timeouts += 1
            raise CommandError(f"no answer within {self._response_timeout:g} s") from None
        finally:
            del self._pending[message.unique_id]

    def _result_payload(self, action: str, result: CallResult | CallError) -> dict[str, Any]:
        if isinstance(result, CallError):
            # The charger's words, cut short: they end up in a status and on N/logs.
            code, description = str(result.error_code)[:MAX_QUOTED], str(result.error_description)
            if len(description) > MAX_QUOTED:
                description = f"{description[:MAX_QUOTED]}... ({len(description)} characters)"
            raise CommandError(f"charger answered CALLERROR {code}: {description}")
        verdict = check_payload(action, result.payload, MessageType.CallResult)
        for deviation in verdict.tolerated:
            self.log.warning("%s: tolerated schema deviation in %s answer: %s", self.id, action, deviation)
        if verdict.refusal is not None:
            raise CommandError(f"invalid {action} answer: {verdict.refusal.description}")
        return cast(dict[str, Any], result.payload)

    def _resolve(self, result: CallResult | CallError) -> None:
        answer = self._pending.get(result.unique_id)
        if answer is None or answer.done():
            self.log.warning("%s: ignored answer to unknown or expired call %s", self.id, result.unique_id)
            return
        answer.set_result(result)

    async def _send(self, message: str) -> None:
        """Send a frame; a peer that takes nothing for `write_timeout` s is cut off.

        websockets' pings do not catch a peer that stops reading while we have more to
        send than the write buffer holds: the ping itself waits behind the unsent data, and
        the ping timeout only starts once it is sent (websockets 17.4,
        asyncio/connection.py, `keepalive` -> `ping` -> `send_context` -> `drain`; no
        upstream issue names this).
        """
        if self._raw_tap is not None:
            self._raw_tap(self.id, "out", message, dp.now_ms())
        self._metrics.frames_out += 1
        try:
            async with asyncio.timeout(self._write_timeout):
                await self._connection.send(message)
        except TimeoutError:
            unsent = self._connection.transport.get_write_buffer_size()
            self.log.warning(
                "%s: stopped reading: %d bytes still unsent after %g s; connection dropped",
                self.id,
                unsent,
                self._write_timeout,
            )
            self._connection.transport.abort()  # a close frame could not reach it either
            raise ConnectionClosedError(None, None) from None

    async def close(self, code: int, reason: str) -> None:
        await self._connection.close(code, reason)

    async def refresh_rate_units(self, queued_at: int | None = None) -> None:
        """Read ChargingScheduleAllowedChargingRateUnit, so limits go out in a unit the charger takes.

        Once per boot (after BootNotification; for a charger not booted since the connector
        started, before its first limit), whatever the outcome: asking again before every
        limit would make each wait out the time-out of a charger that cannot answer. Its
        time-out fails no command queued behind it: the read is ours, they are the operator's.
        """
        self.state.rate_units_asked = True  # a limit arriving meanwhile queues behind this read
        sent = False

        def build() -> OcppCall:  # called only when the call's turn comes and it goes out
            nonlocal sent
            sent = True
            return OcppCall("GetConfiguration", {"key": [RATE_UNIT_KEY]})

        try:
            call, answer = await self.send_call(build, queued_at=queued_at, counts_unanswered=False)
        except (CommandError, ConnectionClosed) as error:
            self._rate_units_unread(error, sent)
            return
        self.publish(ACTUATORS[GET_CONFIGURATION].answer(self.id, 0, call, answer, dp.now_ms()))
        self.remember_rate_units(call, answer)

    def _rate_units_unread(self, error: Exception, sent: bool) -> None:
        if not sent:
            # Not sent: an earlier command went unanswered, and the limit behind fails unsent
            # the same way. Not a read: the next limit asks.
            self.state.rate_units_asked = False
            return
        self.state.allowed_rate_units = None  # unknown now, whatever an earlier boot said
        self.log.warning(
            "%s: could not read %s (%s); until its next BootNotification limits go out in the unit given",
            self.id,
            RATE_UNIT_KEY,
            error,
        )

    def remember_rate_units(self, call: OcppCall, answer: dict[str, Any]) -> None:
        """Learn the allowed units from a GetConfiguration answer that covers the key."""
        asked = call.payload.get("key")
        if asked is not None and RATE_UNIT_KEY not in asked:
            return  # a read of other keys says nothing about this one
        entry = next((e for e in answer.get("configurationKey", []) if e.get("key") == RATE_UNIT_KEY), None)
        # Not reported (unknownKey, or missing): unknown now, whatever older firmware said.
        self.state.allowed_rate_units = parse_rate_units(entry.get("value")) if entry else None
        reported = entry.get("value") if entry else "not reported"
        self.log.info("%s: allowed charging rate units: %s", self.id, reported)

    # -- owned background work ---------------------------------------------------------

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run work (a command) owned by this session: cancelled when the session ends."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop_tasks(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- helpers for handlers ----------------------------------------------------------

    def connector_seen(self, connector_id: int) -> None:
        if connector_id not in self._connectors:
            self._connectors.add(connector_id)
            self._events.connector_seen(self.id, connector_id)

    def publish(self, points: list[Datapoint]) -> None:
        if points:
            self._events.publish(self.id, points)

    # -- charger-initiated messages ----------------------------------------------------

    @handles(Action.boot_notification)
    def on_boot_notification(self, msg: Inbound) -> dict[str, Any]:
        self.publish(dp.boot_notification(self.id, msg.payload, msg.received))
        self._events.booted(self.id)
        if not self._triggered_boot():
            self._settle_transactions(msg.received)
        msg.after.append(self.refresh_rate_units)  # a reboot may come with new firmware
        return {"status": "Accepted", "currentTime": utc_now_text(), "interval": self._heartbeat_interval}

    def _settle_transactions(self, at: int) -> None:
        """A charger that booted holds no transaction: those still open are settled (see
        transactions.py), and their connectors are no longer active."""
        settled = self._transactions.settle_all(self.id)
        connectors = sorted({record.connector_id for record in settled})
        self.publish([Datapoint(dp.key(self.id, "Transaction", c, "active"), False, at) for c in connectors])

    @handles(Action.heartbeat)
    def on_heartbeat(self, msg: Inbound) -> dict[str, Any]:
        self.publish(dp.heartbeat(self.id, msg.received))
        return {"currentTime": utc_now_text()}

    @handles(Action.status_notification)
    def on_status_notification(self, msg: Inbound) -> dict[str, Any]:
        self.connector_seen(msg.payload["connectorId"])
        self.publish(dp.status_notification(self.id, msg.payload, msg.received, msg.notes))
        self.observed.note_status(msg.payload["connectorId"], msg.payload["status"])
        return {}

    @handles(Action.meter_values)
    def on_meter_values(self, msg: Inbound) -> dict[str, Any]:
        self.connector_seen(msg.payload["connectorId"])
        readings = dp.meter_readings(self.id, msg.payload, msg.received, msg.notes)
        points = [point for _, point in readings]
        self.publish(points)
        self.observed.note_meter(points)
        dp.note_phase_voltages(readings, self.voltages)
        return {}

    @handles(Action.start_transaction)
    def on_start_transaction(self, msg: Inbound) -> dict[str, Any]:
        p = msg.payload
        self.connector_seen(p["connectorId"])
        # An id tag refused here still gets a transaction id: the charger may have started
        # already and will send StopTransaction for it (OCPP 1.6 5.16).
        record = self._transactions.start(self.id, p["connectorId"], p["idTag"], p["meterStart"], p["timestamp"])
        if self._transactions.active(self.id, record.connector_id) == record:
            self.publish(dp.transaction_started(self.id, p, record, msg.received, msg.notes))
        else:
            msg.notes.append(f"replay of transaction {record.transaction_id}, a newer one runs; published nothing")
        if "reservationId" in p:
            self._reservation_used(p["connectorId"], p["reservationId"], msg.received)
        return {"transactionId": record.transaction_id, "idTagInfo": self._id_tags.id_tag_info(p["idTag"])}

    def _reservation_used(self, connector_id: int, reservation_id: int, at: int) -> None:
        for reserved_on in self._transactions.end_reservation(self.id, reservation_id):
            self.publish([Datapoint(dp.key(self.id, "Reservation", reserved_on, "status"), "Used", at)])

    @handles(Action.stop_transaction)
    def on_stop_transaction(self, msg: Inbound) -> dict[str, Any]:
        p = msg.payload
        record = self._transactions.stop(self.id, p["transactionId"])
        if record is None:
            msg.notes.append(f"transaction {p['transactionId']} is not open (a repeat, or unknown); published nothing")
        else:
            # A late stop (of a settled transaction) may come while a newer one runs there.
            running = self._transactions.active(self.id, record.connector_id)
            self.publish(dp.transaction_stopped(self.id, p, record, msg.received, msg.notes, running=running))
        return {"idTagInfo": self._id_tags.id_tag_info(p["idTag"])} if "idTag" in p else {}

    @handles(Action.authorize)
    def on_authorize(self, msg: Inbound) -> dict[str, Any]:
        return {"idTagInfo": self._id_tags.id_tag_info(msg.payload["idTag"])}

    @handles(Action.data_transfer)
    def on_data_transfer(self, msg: Inbound) -> dict[str, Any]:
        p = msg.payload
        parts = [self.id, "DataTransfer", p["vendorId"]] + ([p["messageId"]] if "messageId" in p else [])
        self.publish([Datapoint(dp.key(*parts), str(p.get("data", "")), msg.received)])
        return ACCEPTED

    @handles(Action.sign_certificate)
    def on_sign_certificate(self, msg: Inbound) -> dict[str, Any]:
        self.log.info("%s: SignCertificate rejected: this connector runs no certificate authority", self.id)
        return {"status": "Rejected"}

    def _notification(self, action: str, msg: Inbound) -> dict[str, Any]:
        fields = schema_fields(action)
        self.publish(dp.flat_notification(self.id, action, msg.payload, msg.received, fields=fields, notes=msg.notes))
        return {}

    @handles(Action.diagnostics_status_notification)
    def on_diagnostics_status_notification(self, msg: Inbound) -> dict[str, Any]:
        return self._notification("DiagnosticsStatusNotification", msg)

    @handles(Action.firmware_status_notification)
    def on_firmware_status_notification(self, msg: Inbound) -> dict[str, Any]:
        return self._notification("FirmwareStatusNotification", msg)

    @handles(Action.log_status_notification)
    def on_log_status_notification(self, msg: Inbound) -> dict[str, Any]:
        return self._notification("LogStatusNotification", msg)

    @handles(Action.signed_firmware_status_notification)
    def on_signed_firmware_status_notification(self, msg: Inbound) -> dict[str, Any]:
        return self._notification("SignedFirmwareStatusNotification", msg)

    @handles(Action.security_event_notification)
    def on_security_event_notification(self, msg: Inbound) -> dict[str, Any]:
        return self._notification("SecurityEventNotification", msg)
