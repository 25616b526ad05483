"""One charge point's session: the asyncio adapter between its WebSocket and the OCPP-J endpoint.

It reads frames off the connection and feeds them to the sans-I/O endpoint
(ocppj/endpoint.py), which says what each means; it dispatches the CALLs to its version's
handler table (`OcppVersion.handlers`, e.g. ocpp16/handlers.py) with itself as the handler's
`handling.Context`, writes the answers, and runs the work a handler leaves for after its
answer. It sends the connector's calls one at a time (`send_call`), times them out, and
owns the tasks of this connection. It knows nothing of MQTT: it hands datapoints, new
connector ids and raw frames to `SessionEvents`, and no version: what differs between
versions is in their tables.

Not the ocpp library's ChargePoint: its routing answers an unknown action NotSupported and
a known one without a handler NotImplemented, the reverse of OCPP-J 1.6 table 7
(https://github.com/mobilityhouse/ocpp/issues/493), drops a CALL of the wrong length
without the CALLERROR OCPP-J prescribes (https://github.com/mobilityhouse/ocpp/issues/102),
validates in a thread pool by default (https://github.com/mobilityhouse/ocpp/pull/676), and
builds a route map and a queue per connection (~6 KB each) that a table makes unnecessary.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from time import perf_counter
from typing import Any, Protocol

from ocpp.messages import MessageType
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK

from connector import datapoints as dp
from connector.actuators import OcppCall, Refusal
from connector.authorization import IdTagPolicy
from connector.backpressure import Room
from connector.charger import ChargerState
from connector.datapoints import Datapoint
from connector.handling import CallRefusedError, Handler, Inbound, NotCovered, OcppVersion
from connector.limits import MessageRate, RefusalLog, Throttled
from connector.metrics import FrameMetrics
from connector.observed import Observed
from connector.ocppj.endpoint import (
    BadFrame,
    Endpoint,
    Error,
    IncomingCall,
    RefusedCall,
    Result,
    ResultError,
    Unmatched,
)
from connector.protocol import MAX_SAMPLED_VALUES, check_payload
from connector.transactions import StateUnavailableError, TransactionStore

__all__ = ["ChargePointSession", "CommandError", "Handler", "Inbound", "RawTap", "SessionEvents"]

LOG = logging.getLogger(__name__)

RATE_CLOSE_CODE = 1008  # policy violation
MAX_QUOTED = 200  # characters of a charger's error description quoted in a status
MAX_NAMED_DEVIATIONS = 100  # per connection; bounds memory against a charger that varies them
# Connector (1.6) or EVSE (2.x) ids a connection announces actuators for. Real chargers have
# a few; an id is any integer, and at 1,000 frames/s a charger inventing one per frame grew
# the set by gigabytes a day. The registry's key limit stops listing them long before (some
# ten actuators per id against 2,000 keys), so ids beyond this are neither tracked nor announced.
MAX_CONNECTORS_SEEN = 256
UNSAVED_REPORTS = Throttled(10.0)  # calls refused because the shared state store did not take them


Frame = str | bytes  # a message as websockets gives it


class _RateExceededError(Exception):
    """The charger went over its message rate: its connection is being closed."""


# A text frame's bytes on the wire at most: 4 per character (UTF-8), the longest WebSocket
# header (RFC 6455 5.2: 14 bytes) and room for deflate's block overhead (RFC 1951 3.2.4).
MAX_BYTES_PER_CHAR = 4
FRAME_OVERHEAD_BYTES = 64


def looks_like_answer(frame: Frame) -> bool:
    """Whether a frame's first characters make it a CALLRESULT or CALLERROR (`[3,` or `[4,`,
    OCPP-J 4.1.3): a look at its head only, to decide what may be read ahead; the endpoint
    decides what it is."""
    head = (frame[:16] if isinstance(frame, str) else frame[:16].decode("ascii", "replace")).lstrip()
    return head[:1] == "[" and head[1:].lstrip()[:1] in ("3", "4")


def fits_unbuffered(chars: int, buffered: int, high_water: int) -> bool:
    """Whether a text frame of `chars` characters is written without waiting: the transport's
    buffer holds nothing (`buffered` bytes) and the frame alone cannot take it to `high_water`
    (asyncio pauses a TCP transport's protocol above it, a TLS one's at it)."""
    return buffered == 0 and chars * MAX_BYTES_PER_CHAR + FRAME_OVERHEAD_BYTES < high_water


class SessionEvents(Protocol):
    """What a session tells the rest of the connector."""

    def publish(self, cp: str, points: list[Datapoint]) -> None: ...

    def connector_seen(self, cp: str, connector_id: int) -> None: ...

    def booted(self, cp: str) -> None: ...


RawTap = Callable[[str, str, str, int], None]  # (cp, direction, frame, ms)


class CommandError(Exception):
    """A call to the charger that got no usable answer: the message is the reason."""


class ChargePointSession:
    """One connection of one charge point, served in its negotiated OCPP version."""

    __slots__ = (
        "_answer",
        "_boot_triggered_until",
        "_call_lock",
        "_connection",
        "_connectors",
        "_endpoint",
        "_events",
        "_metrics",
        "_named",
        "_rate",
        "_rate_units_waiting",
        "_raw_tap",
        "_refusals",
        "_response_timeout",
        "_room",
        "_tasks",
        "_write_timeout",
        "heartbeat_interval",
        "id",
        "id_tags",
        "observed",
        "ocpp_version",
        "state",
        "transactions",
        "version",
        "voltages",
    )

    def __init__(
        self,
        cp_id: str,
        connection: ServerConnection,
        events: SessionEvents,
        transactions: TransactionStore,
        *,
        version: OcppVersion,
        state: ChargerState,
        id_tags: IdTagPolicy,
        heartbeat_interval: int,
        response_timeout: float,
        max_message_rate: float = 0.0,
        write_timeout: float = 60.0,
        raw_tap: RawTap | None = None,
        metrics: FrameMetrics | None = None,
        room: Room | None = None,
    ) -> None:
        self.id = cp_id
        self.version = version
        self.ocpp_version = version.name  # metrics and the status page count and show it
        self.state = state
        self.transactions = transactions
        self.id_tags = id_tags
        self.heartbeat_interval = heartbeat_interval
        # Plausible phase voltages of this connection, latest per phase: W <-> A conversions use
        # them. Not kept beyond it: another connection under the same identity may be another
        # device, or the same one after a fault, and starts from the default again.
        self.voltages: dict[str, float] = {}
        self.observed = Observed()  # for the status page
        self._connection = connection
        self._endpoint = Endpoint(version)
        self._events = events
        self._raw_tap = raw_tap
        self._room = room or Room()  # the MQTT side's backpressure (backpressure.Room)
        self._metrics = metrics or FrameMetrics()
        self._response_timeout = response_timeout
        self._write_timeout = write_timeout
        self._rate = MessageRate(max_message_rate)
        self._rate_units_waiting = False  # a rate-unit read is queued and not yet sent
        self._call_lock = asyncio.Lock()  # OCPP-J: one CALL of ours in flight at a time
        self._answer: asyncio.Future[Result | Error] | None = None  # to the call in flight
        # Connector or EVSE ids announced: a tuple (a charger has a few), not a set of 216 bytes.
        self._connectors: tuple[int, ...] = ()
        # Created when first needed, dropped when empty (Python's empty set is 216 bytes, and
        # most connections have no task running and name no deviation most of the time).
        self._tasks: set[asyncio.Task[None]] | None = None
        self._named: set[str] | None = None  # deviations already logged on this connection
        self._refusals: RefusalLog | None = None
        self._boot_triggered_until = 0.0  # loop time until which a BootNotification is one we asked for

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger naming the charge point, made when something is logged (rarely: kept, it
        was 250 bytes of every connection)."""
        return logging.LoggerAdapter(LOG, {"charge_point": self.id})

    # -- reading -----------------------------------------------------------------------

    async def start(self) -> None:
        """Serve frames until the connection closes (ConnectionClosed propagates)."""
        self.connector_seen(0)
        for connector_id in self.transactions.connectors(self.id):  # seen by another instance
            self.connector_seen(connector_id)
        later: Frame | None = None  # read while waiting for room, served next
        while True:
            if later is not None:
                frame, later = later, None
            else:
                try:
                    frame = await self._connection.recv()
                except ConnectionClosedOK:
                    return
            try:
                ahead: Frame | ConnectionClosed | None = None
                if not self._room.is_open and not self._answers_a_call_in_flight(frame):
                    # The MQTT side is behind: this frame waits, and the next ones stay
                    # unread, but for the answer to a call of ours in flight.
                    ahead = await self._read_answer_until_room()
                await self._serve(frame)
            except _RateExceededError:
                return
            if isinstance(ahead, ConnectionClosed):
                raise ahead  # after serving the frame that waited: its values count
            later = ahead

    async def _serve(self, frame: Frame) -> None:
        """Handle one frame read off the connection."""
        if not self._rate.allow():
            # The dispatcher logs why, from the close code.
            await self._connection.close(RATE_CLOSE_CODE, "message rate limit exceeded")
            raise _RateExceededError
        arrived, received = perf_counter(), dp.now_ms()
        self._metrics.frames_in += 1
        text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
        if self._raw_tap is not None:
            self._raw_tap(self.id, "in", text, received)
        try:
            await self.handle_frame(text, received, arrived)
        except ConnectionClosed:
            raise
        except Exception:
            self.log.exception("%s: frame could not be handled: %.200s", self.id, text)

    def _awaiting_answer(self) -> bool:
        """A call of ours is in flight and not answered yet."""
        return self._answer is not None and not self._answer.done()

    def _answers_a_call_in_flight(self, frame: Frame) -> bool:
        return self._awaiting_answer() and looks_like_answer(frame)

    async def _read_answer_until_room(self) -> Frame | ConnectionClosed | None:
        """Wait for room, reading on meanwhile only to serve the answer to a call of ours.

        A command's status must not wait for a lane full of raw frames or values: the
        charger answered, and its answer is behind at most the one CALL it may have
        outstanding (OCPP-J 4.1.1), which waits here. Anything else read is kept (the frame
        returned, served after the one waiting) and ends the reading: what one charger
        can make the connector hold while it is behind stays bounded at two frames and
        one answer per call of ours. So only a call in flight when the first frame after
        the waiting one arrives is covered; a call sent later waits for room as before.
        A connection closed meanwhile is returned too, once there is room: the frame
        waiting is served first, as it was before this read-ahead.
        """
        room = asyncio.ensure_future(self._room.wait())
        reading: asyncio.Future[Frame] | None = None
        try:
            while not room.done():
                reading = asyncio.ensure_future(self._connection.recv())
                await asyncio.wait((room, reading), return_when=asyncio.FIRST_COMPLETED)
                if not reading.done():
                    break  # room: the reading is cancelled below (websockets' recv() loses nothing then)
                try:
                    frame = reading.result()
                except ConnectionClosed as closed:
                    await room
                    return closed
                if not self._answers_a_call_in_flight(frame):
                    await room
                    return frame
                await self._serve(frame)
                if self._awaiting_answer():
                    await room  # not the answer expected: read no further
        finally:
            room.cancel()
            if reading is not None and not reading.done():
                reading.cancel()
                # Before the next recv(): websockets refuses two at a time.
                await asyncio.wait((reading,))
        return None

    async def handle_frame(self, text: str, received: int | None = None, arrived: float | None = None) -> None:
        """Handle one frame; `received` (ms) and `arrived` (perf_counter) when it came off the wire."""
        event = self._endpoint.receive(text)
        if isinstance(event, IncomingCall):  # the common case first
            await self._handle_call(event, received or dp.now_ms(), arrived or perf_counter())
        elif isinstance(event, Result | Error):
            answer = self._answer
            if answer is not None and not answer.done():
                answer.set_result(event)
        elif isinstance(event, RefusedCall):
            self._refused(
                "refused calls", "%s: refused %.100s: %s %s", self.id, event.action, event.code, event.description
            )
            if event.reply is not None:
                await self._send(event.reply)
        elif isinstance(event, BadFrame):
            await self._bad_frame(event, text)
        elif isinstance(event, Unmatched):
            self._refused(
                "unmatched answers", "%s: ignored answer to unknown or expired call %.100s", self.id, event.unique_id
            )
        elif isinstance(event, ResultError):
            what = "%s: the charger could not use our answer %.100s: %.100s %.200s"
            self._refused("CALLRESULTERRORs", what, self.id, event.unique_id, event.code, event.description)

    async def _bad_frame(self, event: BadFrame, text: str) -> None:
        if event.reply is None:
            # OCPP-J 1.6 4.2.3: without a unique id there is nothing to answer.
            self._refused("dropped frames", "%s: dropped frame (%s): %.200s", self.id, event.reason, text)
            return
        self._refused("refused frames", "%s: refused frame (%s): %.200s", self.id, event.reason, text)
        await self._send(event.reply)

    async def _handle_call(self, call: IncomingCall, received: int, arrived: float) -> None:
        self._name_deviations(call)
        inbound = Inbound(call.payload, received)
        try:
            response = self.version.handlers[call.action](self, inbound)
        except CallRefusedError as refused:
            self._refused("refused frames", "%s: refused %s: %s", self.id, call.action, refused.description)
            if call.answer:
                code = self.version.error_code(refused.code)
                await self._send(self._endpoint.error(call.unique_id, code, refused.description))
            return
        except Exception as error:
            self.log.exception("%s: handling %s failed", self.id, call.action)
            if call.answer:
                description = f"{type(error).__name__} while handling {call.action}"
                await self._send(self._endpoint.error(call.unique_id, "InternalError", description))
            return
        # The handler has handed its values to the MQTT side (the few CALLs without values,
        # Authorize and SignCertificate, count their handling): the histogram's end point.
        self._metrics.handed(perf_counter() - arrived)
        for note in inbound.notes:
            if self._first_time(f"{call.action}: {note}"):
                self.log.info("%s: tolerated in %s: %s", self.id, call.action, note)
        if call.answer:  # a 2.1 SEND gets none
            if self.transactions.unsaved(self.id) and not await self._state_saved(call):
                return
            await self._send(self._endpoint.result(call.unique_id, response))
        for work in inbound.after:
            self.spawn(work())

    async def _state_saved(self, call: IncomingCall) -> bool:
        """Wait until the transaction state the answer tells of is stored (Redis, several
        instances); if it cannot be, answer InternalError instead: the charger sends the call
        again, and is never told of a transaction id that another instance would not know."""
        try:
            await self.transactions.saved(self.id)
        except StateUnavailableError as error:
            if UNSAVED_REPORTS.ready():  # fleet-wide: a Redis outage refuses every charger's at once
                others = UNSAVED_REPORTS.take_suppressed()
                self.log.error(
                    "%s: %s not answered (and %d others since the last such line): %s",
                    self.id,
                    call.action,
                    others,
                    error,
                )
            await self._send(self._endpoint.error(call.unique_id, "InternalError", "state store unavailable"))
            return False
        return True

    def _name_deviations(self, call: IncomingCall) -> None:
        """Name what was tolerated in a call, each once per connection."""
        if call.cut and self._first_time(f"{call.action}: over {MAX_SAMPLED_VALUES} sampled values"):
            # Bounds what one frame costs every other charger on this loop (see MAX_SAMPLED_VALUES).
            self.log.warning(
                "%s: %s with more than %d sampled values: answered, the %d beyond them skipped",
                self.id,
                call.action,
                MAX_SAMPLED_VALUES,
                call.cut,
            )
        for deviation in call.tolerated:
            if self._first_time(f"{call.action}: {deviation}"):
                self.log.warning("%s: tolerated schema deviation in %s: %s", self.id, call.action, deviation)

    def _refused(self, reason: str, message: str, *args: object) -> None:
        """A WARNING about a frame refused: at most one per 10 s per reason on this connection,
        counting the others (a charger sending junk in a loop must not flood N/logs)."""
        if self._refusals is None:  # most connections never need one
            self._refusals = RefusalLog(LOG)
        self._refusals.report(reason, message, *args)

    def _first_time(self, deviation: str) -> bool:
        """Name each distinct deviation once per connection: a charger repeats its quirks
        every meter interval, and a fleet's logs topic must stay readable."""
        if self._named is None:
            self._named = set()
        if deviation in self._named or len(self._named) >= MAX_NAMED_DEVIATIONS:
            return False
        self._named.add(deviation)
        return True

    # -- calling the charger -----------------------------------------------------------

    @property
    def unanswered(self) -> int:
        """How many calls went unanswered so far; pass it as `queued_at` when a command arrives."""
        return self._endpoint.unanswered

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
        unanswered_before = self.unanswered if queued_at is None else queued_at
        async with self._call_lock:
            if self.unanswered != unanswered_before:
                raise CommandError(
                    f"not sent: the charger left an earlier command unanswered for {self._response_timeout:g} s"
                )
            if not still_wanted():
                raise CommandError("superseded by a newer value before it was sent")
            call = build()
            if isinstance(call, Refusal):
                raise CommandError(call.reason)
            self._note_boot_trigger(call)
            answer = await self._exchange(call, counts_unanswered)
        return call, self._result_payload(answer)

    def _note_boot_trigger(self, call: OcppCall) -> None:
        """A BootNotification we ask for is no reboot: it must not settle running transactions.

        Noted when the trigger goes out, not when its answer comes: some chargers send the
        BootNotification before their TriggerMessage.conf. Expected within the response timeout.
        """
        if call.action == "TriggerMessage" and call.payload.get("requestedMessage") == "BootNotification":
            self._boot_triggered_until = asyncio.get_running_loop().time() + self._response_timeout

    async def _exchange(self, call: OcppCall, counts_unanswered: bool = True) -> Result | Error:
        """Send the call (bounded by the write timeout), then wait for its answer (the response timeout)."""
        frame = self._endpoint.call(call.action, call.payload)
        answer: asyncio.Future[Result | Error] = asyncio.get_running_loop().create_future()
        self._answer = answer
        try:
            await self._send(frame)
            async with asyncio.timeout(self._response_timeout):
                return await answer
        except TimeoutError:
            self._endpoint.timed_out(counts_unanswered)
            raise CommandError(f"no answer within {self._response_timeout:g} s") from None
        finally:
            self._endpoint.abandon()  # answered, timed out, or given up: nothing is in flight now
            self._answer = None

    def _result_payload(self, answer: Result | Error) -> dict[str, Any]:
        if isinstance(answer, Error):
            # The charger's words, cut short: they end up in a status and on N/logs.
            code, description = answer.code[:MAX_QUOTED], answer.description
            if len(description) > MAX_QUOTED:
                description = f"{description[:MAX_QUOTED]}... ({len(description)} characters)"
            raise CommandError(f"charger answered CALLERROR {code}: {description}")
        action = answer.action
        verdict = check_payload(action, answer.payload, MessageType.CallResult, self.version.name)
        for deviation in verdict.tolerated:
            self.log.warning("%s: tolerated schema deviation in %s answer: %s", self.id, action, deviation)
        if verdict.refusal is not None:
            raise CommandError(f"invalid {action} answer: {verdict.refusal.description}")
        return answer.payload

    async def _send(self, message: str) -> None:
        """Send a frame; a peer that takes nothing for `write_timeout` s is cut off.

        websockets' pings do not catch a peer that stops reading while we have more to
        send than the write buffer holds: the ping itself waits behind the unsent data, and
        the ping timeout only starts once it is sent (websockets 17.4,
        asyncio/connection.py, `keepalive` -> `ping` -> `send_context` -> `drain`; no
        upstream issue names this).

        Only a send that can wait gets the timer (arming one cost ~5 us of every answer):
        websockets' send waits in `drain` only while the transport is paused, i.e. its
        buffer went over the high-water mark, and a frame that finds the buffer empty and
        is too small to fill it on its own cannot get there. A send while the connection
        closes waits at most websockets' close timeout.
        """
        if self._raw_tap is not None:
            self._raw_tap(self.id, "out", message, dp.now_ms())
        self._metrics.frames_out += 1
        transport = self._connection.transport
        if fits_unbuffered(len(message), transport.get_write_buffer_size(), transport.get_write_buffer_limits()[1]):
            await self._connection.send(message)
            return
        try:
            async with asyncio.timeout(self._write_timeout):
                await self._connection.send(message)
        except TimeoutError:
            unsent = transport.get_write_buffer_size()
            self.log.warning(
                "%s: stopped reading: %d bytes still unsent after %g s; connection dropped",
                self.id,
                unsent,
                self._write_timeout,
            )
            transport.abort()  # a close frame could not reach it either
            raise ConnectionClosedError(None, None) from None

    async def close(self, code: int, reason: str) -> None:
        await self._connection.close(code, reason)

    # -- the charger's rate units --------------------------------------------------------

    async def refresh_rate_units(self, queued_at: int | None = None) -> None:
        """Read the units the charger allows for limits (its version's read), so limits go out in one it takes.

        Once per boot (after BootNotification; for a charger not booted since the connector
        started, before its first limit), whatever the outcome: asking again before every
        limit would make each wait out the time-out of a charger that cannot answer. Its
        time-out fails no command queued behind it: the read is ours, they are the operator's.

        A read still waiting for its turn answers for every boot until it goes out: without
        this, a charger booting in a loop queued a read per boot, each waiting out the
        time-out, tasks without bound with every limit behind them.
        """
        read = self.version.rate_units
        self.state.rate_units_asked = True  # a limit arriving meanwhile queues behind this read
        if self._rate_units_waiting:
            return
        self._rate_units_waiting = True
        sent = False

        def build() -> OcppCall:  # called only when the call's turn comes and it goes out
            nonlocal sent
            sent = True
            self._rate_units_waiting = False  # a boot from now on needs a read after this one
            call: OcppCall = read.call()
            return call

        try:
            call, answer = await self.send_call(build, queued_at=queued_at, counts_unanswered=False)
        except (CommandError, ConnectionClosed) as error:
            self._rate_units_unread(error, sent)
            return
        finally:
            if not sent:  # failed or cancelled before its turn: the next boot (or limit) asks again
                self._rate_units_waiting = False
                self.state.rate_units_asked = False
        translation = self.version.actuators.get(read.actuator)
        if translation is not None:  # published like the operator's read of the same kind
            self.publish(translation.answer(self.id, 0, call, answer, dp.now_ms()))
        self.remember_rate_units(call, answer)

    def _rate_units_unread(self, error: Exception, sent: bool) -> None:
        if not sent:
            # Not sent: an earlier command went unanswered, and the limit behind fails unsent
            # the same way. Not a read: the next limit asks.
            self.state.rate_units_asked = False
            return
        self.state.learnt(None)  # unknown now, whatever an earlier boot said
        self.log.warning(
            "%s: could not read %s (%s); until its next BootNotification limits go out in the unit given",
            self.id,
            self.version.rate_units.key,
            error,
        )

    def remember_rate_units(self, call: OcppCall, answer: dict[str, Any]) -> None:
        """Learn the allowed units from an answer (ours or an operator's read) that covers them."""
        read = self.version.rate_units
        units = read.units(call, answer)
        if isinstance(units, NotCovered):
            return  # a read of something else says nothing about the units
        self.state.learnt(units)
        if read.reported is not None:
            said = read.reported(call, answer)
        else:
            said = ",".join(sorted(units)) if units else "not reported"
        self.log.info("%s: allowed charging rate units: %s", self.id, said)

    # -- owned background work ---------------------------------------------------------

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run work (a command) owned by this session: cancelled when the session ends."""
        task = asyncio.get_running_loop().create_task(work)
        if self._tasks is None:
            self._tasks = set()
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if self._tasks is not None:
            self._tasks.discard(task)
            if not self._tasks:
                self._tasks = None

    async def stop_tasks(self) -> None:
        tasks = list(self._tasks or ())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- what handlers use (handling.Context) ---------------------------------------------

    def publish(self, points: list[Datapoint]) -> None:
        if points:
            self._events.publish(self.id, points)

    def connector_seen(self, connector_id: int) -> None:
        if connector_id in self._connectors:
            return
        if len(self._connectors) >= MAX_CONNECTORS_SEEN:
            if self._first_time("connector ids beyond the bound"):
                self.log.warning(
                    "%s: more than %d connector or EVSE ids on this connection; no actuators announced for %.40s",
                    self.id,
                    MAX_CONNECTORS_SEEN,
                    connector_id,
                )
            return
        self._connectors += (connector_id,)  # at most MAX_CONNECTORS_SEEN, each once
        self.transactions.connector_seen(self.id, connector_id)
        self._events.connector_seen(self.id, connector_id)

    def booted(self) -> None:
        self._events.booted(self.id)

    def triggered_boot(self) -> bool:
        """Whether a BootNotification now is the one we asked for (then it is taken as such)."""
        triggered = asyncio.get_running_loop().time() < self._boot_triggered_until
        self._boot_triggered_until = 0.0
        return triggered
