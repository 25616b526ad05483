"""Ordered, bounded hand-over of outgoing MQTT messages to paho.

paho keys unacknowledged messages by their 16-bit message id. Hand it more than 65535
before acknowledgements return (a fleet's meter values while paho's thread waits for the
GIL, or a broker outage) and later messages overwrite earlier ones: they vanish without an
error. The benchmark lost 12 % of 80,000 values that way. So paho gets at most `WINDOW`
unacknowledged messages; the rest wait here, oldest first, and go on as acknowledgements
come back. Beyond `limit` waiting messages the oldest are dropped, counted and reported.

QoS 2 messages (raw frames) have a tighter window: mosquitto admits at most
`max_inflight_messages` (default 20) incoming QoS 2 messages awaiting PUBREL per client and
disconnects a client beyond it (PUBREC "quota exceeded"). paho resends everything it holds
at once after a reconnect, so with more held the connector was thrown off on every
reconnect and a backlog never drained.

Threads: `put`, `_drain` and `flush` run on the asyncio loop; `_on_publish` runs on
paho's network thread. `_handed` is written only by the loop and `_acked` only by paho's
thread, so their difference is a safe count of messages paho still holds. Which of those
are QoS 2 is shared book-keeping under our own lock, never held while calling paho (paho's
thread holds paho's lock when it calls `_on_publish`; the other order would deadlock). An
acknowledgement can even arrive before `publish` has returned its id to us: it is then
noted as early and matched when the id comes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt

from connector.limits import Throttled

LOG = logging.getLogger(__name__)

# Far below paho's 65535 message ids. Small on purpose: paho scans every message it holds
# on each acknowledgement, so CPU per message grows with what it holds (measured with
# 50,000 QoS 1 messages on loopback: 256 held: 102 us each, 8,500/s; 4096 held: 186 us,
# 5,200/s). 256 in flight still allows ~25,000 messages/s at a 10 ms round trip.
WINDOW = 256
QOS2_WINDOW = 10  # half of mosquitto's default max_inflight_messages
DROP_REPORT_INTERVAL_S = 10.0


class Message(NamedTuple):
    topic: str
    payload: bytes
    qos: int
    retain: bool


class Outbox:
    def __init__(self, client: mqtt.Client, limit: int) -> None:
        self._client = client
        self._limit = limit
        self._waiting: deque[Message] = deque()
        self._handed = 0  # loop thread only
        self._acked = 0  # paho thread only
        self._backlog = False  # set by the loop, cleared by paho's thread
        self._lock = threading.Lock()  # guards the three below
        self._qos_of: dict[int, int] = {}  # message id -> QoS, for what paho holds
        self._early: set[int] = set()  # ids acknowledged before publish() returned them
        self._qos2_held = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self.dropped = 0
        self._drop_reports = Throttled(DROP_REPORT_INTERVAL_S)
        client.on_publish = self._on_publish

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    @property
    def pending(self) -> int:
        """Messages not yet acknowledged by the broker (waiting here or held by paho)."""
        return len(self._waiting) + self._handed - self._acked

    def put(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> None:
        message = Message(topic, payload, qos, retain)
        if not self._waiting and self._has_room(message):
            self._hand(message)
            return
        self._waiting.append(message)
        if len(self._waiting) > self._limit:
            self._waiting.popleft()
            self.dropped += 1
            self._report_drops()
        self._drain()  # acknowledgements may have freed the window meanwhile

    def put_first(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> None:
        """Hand over at once, ahead of what waits (one message beyond the window is harmless)."""
        self._hand(Message(topic, payload, qos, retain))

    def _has_room(self, message: Message) -> bool:
        if self._handed - self._acked >= WINDOW:
            return False
        return message.qos < 2 or self._qos2_held < QOS2_WINDOW

    def _hand(self, message: Message) -> None:
        try:
            info = self._client.publish(*message)
        except ValueError as error:  # a topic paho refuses; the map validates, this is the last guard
            LOG.error("dropped message to %.200r: %s", message.topic, error)
            return
        # Only messages paho will report through on_publish count as held: QoS 0 while
        # disconnected is refused outright (heartbeats, nothing lost worth keeping).
        if info.rc == mqtt.MQTT_ERR_SUCCESS or message.qos > 0:
            self._handed += 1
            with self._lock:
                if info.mid in self._early:
                    self._early.discard(info.mid)
                else:
                    self._qos_of[info.mid] = message.qos
                    self._qos2_held += message.qos == 2

    def _drain(self) -> None:
        """Hand over waiting messages, oldest first, while the windows allow."""
        while self._waiting:
            while self._waiting and self._has_room(self._waiting[0]):
                self._hand(self._waiting.popleft())
            if not self._waiting:
                return
            # Arm the wake-up first, then look again: an acknowledgement that arrives
            # between the two is either seen here or sees the flag.
            self._backlog = True
            if not self._has_room(self._waiting[0]):
                return  # paho's thread calls _drain once there is room

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        self._acked += 1
        with self._lock:
            qos = self._qos_of.pop(mid, None)
            if qos is None:
                self._early.add(mid)
            was_qos2 = qos == 2
            self._qos2_held -= was_qos2
        # Half the window free, or a QoS 2 slot: batches wake-ups under a steady flow.
        room = was_qos2 or self._handed - self._acked < WINDOW // 2
        if self._backlog and room and self._loop is not None:
            self._backlog = False
            self._loop.call_soon_threadsafe(self._drain)

    def _report_drops(self) -> None:
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
                    await asyncio.sleep(0.02)  # bounded shutdown wait on paho's thread
        except TimeoutError:
            return False
        return True
