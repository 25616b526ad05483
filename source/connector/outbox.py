"""Ordered, bounded hand-over of outgoing MQTT messages to paho.

paho keys unacknowledged messages by their 16-bit message id
(https://github.com/eclipse-paho/paho.mqtt.python/issues/377). Hand it more than 65535
before acknowledgements return (a fleet's meter values while paho's thread waits for the
GIL, or a broker outage) and later messages are lost: paho 2.2 refuses them with a return
code (MQTT_ERR_QUEUE_SIZE) that nothing else reports. The benchmark lost 12 % of 80,000
values that way. So paho gets at most `WINDOW` unacknowledged messages; the rest wait
here, oldest first, and go on as acknowledgements come back. Beyond `limit` waiting
messages the oldest are dropped, counted and reported.

QoS 2 messages (raw frames) have a tighter window: mosquitto admits at most
`max_inflight_messages` (default 20) incoming QoS 2 messages awaiting PUBREL per client.
Beyond it, mosquitto 2.0.11 with MQTT 3.1.1 acknowledges a message and drops it (its log:
PUBREC "rc151", quota exceeded; seen when re-checked for this comment), and this project's
outage test once saw the connector thrown off and reconnecting; paho resends everything it
holds at once after a reconnect (https://github.com/eclipse-paho/paho.mqtt.python/issues/492),
so with more held a backlog lost messages or never drained.

Threads: in the connector paho runs on the asyncio loop (`mqtt_loop.LoopDriver`), so
everything here runs on the loop thread. The outbox is also correct with paho's own
network thread (`loop_start`, as its tests drive it), where `_on_publish` runs on that
thread: `_handed` is written only by the loop and `_acked` only by `_on_publish`, so their
difference is a safe count of messages paho still holds. Which of those are QoS 2 is
shared book-keeping under our own lock, never held while calling paho (paho's thread holds
paho's lock when it calls `_on_publish`; the other order would deadlock). With paho's
thread an acknowledgement can even arrive before `publish` has returned its id to us: it
is then noted as early and matched when the id comes.

While the broker connection is down (and at start, until the first connect) nothing is
handed to paho: each message is appended to the spool (`spool.py`, SQLite in STATE_DIR;
with several instances Redis, `shared_spool.py`) before `put` returns, so the charger's
answer, sent after, never precedes durability.
Going offline also spools what waits in memory and copies of what paho holds
unacknowledged (paho resends those itself after the reconnect; their rows go once the
broker acknowledges them). After the connect, `N/state` online goes first (`publish_now`,
from paho's on_connect, ahead of paho's resends), then what paho resends, then the spool,
oldest first through the same windows, once paho's resends are acknowledged (handed
earlier, newer rows overtook them); new messages queue behind it on disk. Once it is
empty, the in-memory fast path takes over again. Keeping messages out of paho while
disconnected also keeps the order: paho resent what it had queued after our on_connect
work had published newer messages ("connected" arrived before "connecting" on N/logs).
The spool is touched by the loop thread only; copying what paho holds happens under our
lock, so that no acknowledgement slips between a copy and its row.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from connector.backpressure import Room
from connector.limits import Throttled
from connector.spool import SPOOL_ERRORS, Message, Row, SpoolLike, SpoolUnavailableError

LOG = logging.getLogger(__name__)

# Far below paho's 65535 message ids. Small on purpose: paho scans every message it holds
# on each acknowledgement, so CPU per message grows with what it holds (measured with
# 50,000 QoS 1 messages on loopback: 256 held: 102 us each, 8,500/s; 4096 held: 186 us,
# 5,200/s). 256 in flight still allows ~25,000 messages/s at a 10 ms round trip.
WINDOW = 256
QOS2_WINDOW = 10  # half of mosquitto's default max_inflight_messages
# A connection that carries QoS 2 messages only (raw frames: their own lane) may use more
# of it; nothing else on that connection needs room. Still below mosquitto's 20, beyond
# which it drops an MQTT 3.1.1 client. Closed loop with raw frames (bench.py --closed-loop
# 20 --raw --mapped 1): raw p99 205 ms and value age p99 78 ms at 10 in flight.
QOS2_ONLY_WINDOW = 16
# Backpressure: with this many messages waiting in memory (beyond what paho holds) a lane
# is full and charge point sessions stop reading frames until it is down to LOW_WATER.
# Chargers then wait for their answers, as OCPP allows, instead of the connector taking
# on work it cannot hand on: in a closed loop at full speed, values waited up to 3 s here.
# Closed loop, 20 chargers (bench.py --closed-loop 20): value age p99 475 ms at 4 x WINDOW,
# 83 ms at 2 x WINDOW, 70 ms at 1 x WINDOW with 3 % fewer messages answered per second.
HIGH_WATER = 2 * WINDOW
LOW_WATER = WINDOW // 2
DROP_REPORT_INTERVAL_S = 10.0


class Outbox:
    def __init__(
        self,
        client: mqtt.Client,
        limit: int,
        spool: SpoolLike,
        room: Room | None = None,
        qos2_window: int = QOS2_WINDOW,
    ) -> None:
        self._client = client
        self._qos2_window = qos2_window
        self._limit = limit
        self._room = room or Room()
        self._full = False  # this lane told the room it is full
        self._waiting: deque[Message] = deque()  # the fast path: online, spool drained
        self._handed = 0  # loop thread only
        self._acked = 0  # `_on_publish` only
        self._backlog = False  # set by the loop, cleared by `_on_publish`
        self._lock = threading.Lock()  # guards the nine below
        self._held: dict[int, Message] = {}  # message id -> what paho holds
        self._early: set[int] = set()  # ids acknowledged before publish() returned them
        self._qos2_held = 0
        self._row_of: dict[int, int] = {}  # message id -> spool row, for held messages that have one
        self._never_spooled: set[int] = set()  # held ids of put_first messages (N/state)
        self._stale: set[int] = set()  # held when the connection went down: paho resends these
        self._uncounted: set[int] = set()  # ids of publish_now messages, outside the windows
        self._finished_rows: list[int] = []  # rows whose message the broker acknowledged
        self._forget_scheduled = False  # a call of _forget_finished is on its way to the loop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self.dropped = 0
        self._drop_reports = Throttled(DROP_REPORT_INTERVAL_S)
        self._spool_errors = Throttled(DROP_REPORT_INTERVAL_S)
        # The spool side, loop thread only. Rows above `_cursor` are unread; `_peeked`
        # holds rows read but not yet handed.
        self._spool = spool
        self._online = False
        self._fast = False  # online with nothing spooled: `put` takes the in-memory path
        self._cursor = 0
        self._unread = spool.count()  # rows a killed process left are delivered first
        self._peeked: deque[Row] = deque()
        self._closed = False
        client.on_publish = self._on_publish
        # Reads the broker's acknowledgements now if the loop has not for a while:
        # mqtt_loop.LoopDriver.read_if_due, set by bemcom.
        self.read_acks: Callable[[], None] = lambda: None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._loop_thread = threading.get_ident()
        if self._unread:
            LOG.info("%d messages kept from an earlier run go to the broker once it is connected", self._unread)

    @property
    def pending(self) -> int:
        """Messages not yet acknowledged by the broker (waiting here or on disk, or held by paho)."""
        return len(self._waiting) + self._unread + len(self._peeked) + self._handed - self._acked

    @property
    def delivered(self) -> int:
        """Messages the broker acknowledged so far (QoS 0: paho wrote them), for /metrics."""
        return self._acked

    def put(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> None:
        message = Message(topic, payload, qos, retain)
        if not self._fast:
            self._put_spooled(message)
            return
        if not self._waiting and self._has_room(message):
            self._hand(message)
            return
        self._keep_in_memory(message)
        self.read_acks()  # in a long turn of the loop, its acknowledgements wait unread
        self._drain()  # acknowledgements may have freed the window meanwhile

    def put_urgent(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> None:
        """As `put`, but ahead of what waits in memory: a command's status must not queue
        behind a fleet's values (seen: 1 s at p99 on a busy machine). Its topic carries
        nothing else, so no topic's order changes. While the broker is away: as `put`."""
        message = Message(topic, payload, qos, retain)
        if not self._fast:
            self._put_spooled(message)
        elif self._has_room(message):
            self._hand(message)
        else:
            self._waiting.appendleft(message)

    def _keep_in_memory(self, message: Message) -> None:
        self._waiting.append(message)
        if len(self._waiting) > self._limit:
            self._waiting.popleft()
            self._count_drop()
        # Only on the fast path: while the broker is away the spool takes everything, and
        # chargers must still be answered (their data is on disk before the answer).
        if self._fast and not self._full and len(self._waiting) >= HIGH_WATER:
            self._full = True
            self._room.full(self)

    def _freed(self) -> None:
        if self._full and (len(self._waiting) <= LOW_WATER or not self._fast):
            self._full = False
            self._room.freed(self)

    def publish_now(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> None:
        """From within paho's processing of CONNACK (on_connect): ahead of what paho resends.

        Outside the windows and the book-keeping of held messages (those belong to `put`
        and `_drain`); the acknowledgement is recognised by its id and otherwise ignored.
        Never spooled, like put_first. Safe only where paho reads (its own thread, or the
        loop while it runs paho's `loop_read`): an acknowledgement cannot arrive before
        this returns.
        """
        info = self._client.publish(topic, payload, qos, retain)
        with self._lock:
            self._uncounted.add(info.mid)

    def put_first(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> None:
        """Hand over at once, ahead of what waits (one message beyond the window is harmless).

        Never spooled: a stale `N/state` delivered after a restart would contradict the new one.
        """
        self._hand(Message(topic, payload, qos, retain), spool=False)

    # -- connection state (loop thread) -------------------------------------------------

    def went_online(self) -> None:
        """The broker connection is up (after `N/state` online): drain the spool, then go fast."""
        if not self._closed:
            self._online = True
            self._drain()

    def went_offline(self) -> None:
        """The connection is down: from now on to disk, with what memory and paho hold."""
        if not self._online:
            return
        self._online = self._fast = False
        self._spool_memory()
        self._freed()

    def close(self) -> None:
        """At shutdown: whatever the broker has not acknowledged stays on disk for the next start."""
        self._online = self._fast = False
        self._spool_memory()
        self._freed()
        self._forget_finished()
        self._closed = True
        self._spool.close()

    def _spool_failed(self, error: Exception) -> None:
        if self._spool_errors.ready():
            LOG.error(
                "cannot write the MQTT spool in STATE_DIR (%s; %d more since the last report): "
                "messages for the broker are kept in memory only",
                error,
                self._spool_errors.take_suppressed(),
            )

    def _spool_memory(self) -> None:
        """Copies of what paho holds (not yet on disk), then what waits, oldest first."""
        try:
            self._spool_held_and_waiting()
        except SPOOL_ERRORS as error:  # each step is one transaction: what failed stays in memory
            self._spool_failed(error)

    def _spool_held_and_waiting(self) -> None:
        # Copies exist only after the fast path (spooled messages have their rows already),
        # when nothing is unread: so they go right behind the read position, as handed.
        with self._lock:  # paho's thread must not acknowledge a message between copy and row
            copies = [
                (mid, m)
                for mid, m in self._held.items()
                if m.qos and mid not in self._row_of and mid not in self._never_spooled
            ]
            rows = self._spool.append_many(m for _, m in copies)
            self._row_of.update(zip((mid for mid, _ in copies), rows, strict=True))
            # Every message paho holds is resent by paho after the connect, spooled or not.
            self._stale.update(mid for mid, m in self._held.items() if m.qos and mid not in self._never_spooled)
        if rows and not self._unread and not self._peeked:
            self._cursor = rows[-1]
        if self._peeked:  # read but not handed: unread again
            self._cursor = self._peeked[0][0] - 1
            self._unread += len(self._peeked)
            self._peeked.clear()
        if self._waiting:
            self._spool.append_many(self._waiting)
            self._unread += len(self._waiting)
            self._waiting.clear()

    def _put_spooled(self, message: Message) -> None:
        if message.qos == 0:  # heartbeats: worthless later, so never kept
            if self._online:
                self._hand(message, spool=False)
            return
        if self._closed:  # a last log line after shutdown: nowhere left to keep it
            return
        try:
            self._append_to_spool(message)
        except SPOOL_ERRORS as error:  # a full disk, say: memory, behind what the spool holds
            self._spool_failed(error)
            self._keep_in_memory(message)
        self._drain()

    def _append_to_spool(self, message: Message) -> None:
        drop = None
        if self._unread + len(self._peeked) >= self._limit:
            drop = self._take_oldest_waiting_row()
            self._count_drop()
        self._spool.append(message, drop)
        self._unread += 1

    def _take_oldest_waiting_row(self) -> int | None:
        """The oldest row not yet handed, taken out of the queue; the caller deletes it."""
        if self._peeked:
            return self._peeked.popleft()[0]
        row = self._spool.first_after(self._cursor)
        if row is not None:
            self._cursor, self._unread = row, self._unread - 1
        return row

    # -- handing over -------------------------------------------------------------------

    def _has_room(self, message: Message) -> bool:
        if self._handed - self._acked >= WINDOW:
            return False
        return message.qos < 2 or self._qos2_held < self._qos2_window

    def _hand(self, message: Message, row: int | None = None, spool: bool = True) -> None:
        try:
            info = self._client.publish(*message)
        except ValueError as error:  # a topic paho refuses; the map validates, this is the last guard
            LOG.error("dropped message to %.200r: %s", message.topic, error)
            if row is not None:
                self._spool.delete([row])
            return
        # Only messages paho will report through on_publish count as held: QoS 0 while
        # disconnected is refused outright (heartbeats, nothing lost worth keeping).
        if info.rc == mqtt.MQTT_ERR_SUCCESS or message.qos > 0:
            self._handed += 1
            with self._lock:
                if info.mid in self._early:
                    self._early.discard(info.mid)
                    if row is not None:  # deleted with the next batch (or at close)
                        self._finished_rows.append(row)
                    return
                self._held[info.mid] = message
                self._qos2_held += message.qos == 2
                if row is not None:
                    self._row_of[info.mid] = row
                if not spool:
                    self._never_spooled.add(info.mid)

    def _drain(self) -> None:
        """Hand over waiting messages, oldest first, while the windows allow."""
        if not self._online:
            return
        if not self._fast and not self._drain_spool():
            return
        while self._waiting:
            while self._waiting and self._has_room(self._waiting[0]):
                self._hand(self._waiting.popleft())
            self._freed()
            if not self._waiting:
                return
            # Arm the wake-up first, then look again: an acknowledgement that arrives
            # between the two is either seen here or sees the flag.
            self._backlog = True
            if not self._has_room(self._waiting[0]):
                return  # `_on_publish` calls _drain once there is room

    def _drain_spool(self) -> bool:
        """As `_drain`, reading the spool a window at a time; True (fast again) once it is empty.

        Not before the broker acknowledged what paho held when the connection went down:
        paho resends those after the connect, and newer messages handed meanwhile could
        overtake them (seen: paho's resend raced our drain on the loop thread).
        """
        if self._stale:  # a plain read of a set `_on_publish` shrinks: at worst one wake-up late
            self._backlog = True
            if self._stale:
                return False
        while self._peeked or self._read_spool():
            while self._peeked and self._has_room(self._peeked[0][1]):
                row, message = self._peeked.popleft()
                self._hand(message, row)
            if self._peeked:
                self._backlog = True  # as in _drain: arm, then look again
                if not self._has_room(self._peeked[0][1]):
                    return False
        self._fast = not self._unread  # unread left: the spool could not be read, try again later
        return self._fast

    def _read_spool(self) -> bool:
        if not self._unread:
            return False
        try:
            rows = self._spool.read(self._cursor, WINDOW)
        except SpoolUnavailableError:  # Redis away (shared_spool.py, which reports it): read later
            return False
        except sqlite3.Error as error:
            self._spool_failed(error)
            return False
        if not rows:  # fewer than counted: another instance took them to deliver (shared_spool.py)
            self._unread = 0
            return False
        self._cursor = rows[-1][0]
        self._unread -= len(rows)
        self._peeked.extend(rows)
        return True

    def _forget_finished(self) -> None:
        """Delete the rows of messages the broker acknowledged (batched: one commit each)."""
        with self._lock:
            rows, self._finished_rows = self._finished_rows, []
            self._forget_scheduled = False
        if rows and not self._closed:
            try:
                self._spool.delete(rows)
            except SPOOL_ERRORS as error:  # delivered again after a restart: at least once
                self._spool_failed(error)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        forget = resent = False
        with self._lock:
            if self._uncounted and mid in self._uncounted:
                self._uncounted.discard(mid)
                return
            self._acked += 1
            message = self._held.pop(mid, None)
            if message is None:
                self._early.add(mid)
            was_qos2 = message is not None and message.qos == 2
            self._qos2_held -= was_qos2
            if self._row_of:  # only after an outage: the fast path pays nothing for it
                row = self._row_of.pop(mid, None)
                if row is not None:
                    self._finished_rows.append(row)
                    forget = not self._forget_scheduled
                    self._forget_scheduled = True
            if self._never_spooled:
                self._never_spooled.discard(mid)
            if self._stale:
                self._stale.discard(mid)
                resent = not self._stale
        if forget:
            self._on_loop(self._forget_finished)
        # Half the window free, or a QoS 2 slot: batches wake-ups under a steady flow.
        room = was_qos2 or resent or self._handed - self._acked < WINDOW // 2
        if self._backlog and room:
            self._backlog = False
            self._on_loop(self._drain)

    def _on_loop(self, callback: Callable[[], None]) -> None:
        """Run `callback` on the loop, after the current callback (paho's processing) is done."""
        if self._loop is None:
            return
        if threading.get_ident() == self._loop_thread:  # paho on the loop: no wake-up through the self-pipe
            self._loop.call_soon(callback)
        else:
            self._loop.call_soon_threadsafe(callback)

    def _count_drop(self) -> None:
        self.dropped += 1
        if self._drop_reports.ready():
            LOG.warning(
                "MQTT queue full (%d messages): dropped %d oldest since the last report, %d in all",
                self._limit,
                self._drop_reports.take_suppressed() + 1,
                self.dropped,
            )

    async def flush(self, within: float) -> bool:
        """Wait until the broker acknowledged everything (True) or `within` s passed."""
        try:
            async with asyncio.timeout(within):
                while self.pending:
                    self._drain()
                    await asyncio.sleep(0.02)  # bounded shutdown wait on the broker's acknowledgements
        except TimeoutError:
            return False
        return True
