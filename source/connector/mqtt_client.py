"""paho's client as the connector uses it, and why it cannot reach the broker.

`Client` changes paho 2.2's hot paths, found by profiling at 1,000 messages/s:

- reads: paho asks for each packet's first byte, its length and its rest in separate
  `recv` calls (7.7 % of the samples); here what the socket has is read at once (64 KiB)
  and handed out as asked;
- writes: paho sends each packet on its own, after copying it from its position (11 %);
  here its packets are queued as views and one write event sends them with one
  `sendmsg`, nothing copied (the 27 MB listing was copied several times on the loop), up
  to a budget per event, so that a large packet leaves room on the loop for the rest; a
  large payload is not copied into paho's packet either;
- acknowledging: what was read is ACKed at once (TCP_QUICKACK), so a broker with Nagle's
  algorithm on does not hold its next small packet for our delayed ACK (up to 40 ms);
- acknowledgements: paho builds a ReasonCode and a Properties object for every PUBACK and
  PUBCOMP, whatever the protocol (23 % of the CPU went into handling acknowledgements);
  for MQTT 3.1.1 an acknowledgement is a message id and nothing else, so one shared
  "Success" and one empty Properties serve every one.

This reaches into paho's internals, so it is active only for the paho version it was
written against (`FAST_PATHS_FOR`); any other version gets paho's own handling, and a test
says so.

Every failed connection attempt (`mqtt_loop.LoopDriver` makes them) is reported with its
reason: refused, not resolved, TLS, timeout. paho's own reconnect loop only called
`on_connect_fail` without the OSError, so an operator saw nothing beyond "connecting to
MQTT broker" for a broker that refused, did not resolve or failed the TLS handshake.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import socket
import ssl
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import paho.mqtt
import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from connector.limits import Throttled

LOG = logging.getLogger(__name__)

# Back-off between attempts, in s: doubled from the first to the last. Capped low:
# with paho's old cap of 30 s the connector came back 10.7 s after a broker restart.
RECONNECT_MIN_DELAY_S = 1
RECONNECT_MAX_DELAY_S = 2
# A broker that stays away is reported at once, then at most once per interval and reason.
FAILURE_REPORT_INTERVAL_S = 30.0


FAST_PATHS_FOR = "2.2.0"
RECV_CHUNK = 65536
MAX_IOV = 512  # buffers per sendmsg (Linux allows 1,024)
TLS_CHUNK = 16384  # one TLS record
QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)  # Linux only
# A payload this large is sent from where it lies, not copied into paho's packet first.
UNCOPIED_PAYLOAD_BYTES = 65536
# Bytes one write event hands to the socket at most; the rest goes on the next turns of
# the loop. Without it a 27 MB listing went out in one callback while the broker read
# it on the other core: commands waited behind it.
WRITE_BUDGET_BYTES = 262144
# A packet queued this long after the last write goes out at once, not when the loop next
# polls its sockets: under overload one turn of the loop ran every ready charger's frame
# (10 s of work with 10,000 2.0.1 chargers booting on a slow machine), and values waited
# for its end. (The broker still dropped us in such turns once a lane's window was full:
# acknowledgements are read only when the loop polls; docs/benchmark.md, 2026-12-05.)
WRITE_DUE_S = 0.02
_ACK_TYPES = {"PUBACK": PacketTypes.PUBACK, "PUBCOMP": PacketTypes.PUBCOMP}
# Shared, never changed: what paho would build anew for every MQTT 3.1.1 acknowledgement.
_SUCCESS = {name: ReasonCode(kind) for name, kind in _ACK_TYPES.items()}
_NO_PROPERTIES = {name: Properties(kind) for name, kind in _ACK_TYPES.items()}  # type: ignore[no-untyped-call]


def outside_callbacks(client: mqtt.Client) -> bool:
    """Whether this thread is outside paho's processing of what it read. Inside it paho holds
    this lock and runs its callbacks; its own direct write has the same guard."""
    if not client._in_callback_mutex.acquire(blocking=False):
        return False
    client._in_callback_mutex.release()
    return True


class Client(mqtt.Client):
    """paho's client with buffered reads, batched writes and lean MQTT 3.1.1 acknowledgements (see above)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fast = paho.mqtt.__version__ == FAST_PATHS_FOR
        self._input = b""  # read from the socket, not yet taken by paho
        self._input_at = 0
        # Packets paho has written, not yet taken by the socket: views, never copies (the
        # listing is 27 MB at 10,000 chargers; each copy held the loop up for ~10 ms).
        self._output: deque[memoryview | bytes | bytearray] = deque()
        self.wrote_at = 0.0  # time.monotonic() of the last loop_write (mqtt_loop paces by it too)
        # The thread that drives this client's socket (mqtt_loop.LoopDriver: the loop's), the
        # only one that may write when a packet is due (WRITE_DUE_S); None: never.
        self.writer_thread: int | None = None

    @property
    def input_buffered(self) -> bool:
        """Bytes read but not yet handled: the socket will not say so again (mqtt_loop reads on)."""
        return self._input_at < len(self._input)

    def reconnect(self) -> MQTTErrorCode:
        self._input, self._input_at = b"", 0  # what the last connection left is not this one's
        self._output.clear()
        return super().reconnect()

    # -- writing: every packet paho writes in one loop_write goes out in one system call

    def _packet_queue(
        self, command: int, packet: bytes | bytearray, mid: int, qos: int, info: mqtt.MQTTMessageInfo | None = None
    ) -> MQTTErrorCode:
        if not self._fast:
            return super()._packet_queue(command, packet, mid, qos, info)
        # paho sends `packet[pos:]`: as a view that slice copies nothing.
        queued = packet if isinstance(packet, Gathered) else memoryview(packet)
        rc = super()._packet_queue(command, queued, mid, qos, info)  # type: ignore[arg-type]
        # See WRITE_DUE_S; otherwise with the loop's next write event. Only on the thread that
        # drives the socket (never the one connecting: its CONNECT must go first), and not
        # from inside one of paho's callbacks (loop_write takes that lock to report a QoS 0
        # message written; paho's own direct write has the same guard).
        due = (
            self._sock is not None
            and threading.get_ident() == self.writer_thread
            and time.monotonic() - self.wrote_at >= WRITE_DUE_S
        )
        if due and outside_callbacks(self):
            self.loop_write()
        return rc

    def _send_publish(  # noqa: PLR0917 - paho's own signature, overridden
        self,
        mid: int,
        topic: bytes,
        payload: bytes | bytearray = b"",
        qos: int = 0,
        retain: bool = False,
        dup: bool = False,
        info: mqtt.MQTTMessageInfo | None = None,
        properties: Properties | None = None,
    ) -> MQTTErrorCode:
        """paho's PUBLISH packet, but a large payload is not copied into it (MQTT 3.1.1).

        paho builds each packet as one bytearray, payload included: for the listing
        (27 MB at 10,000 chargers) that copy, into memory just mapped, held the loop for
        10-20 ms each time a key appeared. Here the header is built as paho builds it and
        the payload follows it as a view of itself.
        """
        if (
            not self._fast
            or self._protocol == MQTTProtocolVersion.MQTTv5
            or not isinstance(payload, bytes)  # a bytearray could change while it waits to be sent
            or len(payload) < UNCOPIED_PAYLOAD_BYTES
            or self._sock is None
        ):
            return super()._send_publish(mid, topic, payload, qos, retain, dup, info, properties)
        header = bytearray((mqtt.PUBLISH | (dup & 0x1) << 3 | qos << 1 | retain,))
        self._pack_remaining_length(header, 2 + len(topic) + (2 if qos else 0) + len(payload))
        self._pack_str16(header, topic)
        if qos:
            header.extend(mid.to_bytes(2, "big"))
        return self._packet_queue(mqtt.PUBLISH, Gathered(header, payload), mid, qos, info)  # type: ignore[arg-type]

    def _sock_send(self, buf: bytes | bytearray | memoryview) -> int:
        if not self._fast:
            return super()._sock_send(buf)  # type: ignore[arg-type]  # not fast: paho's own bytes, never a view
        if self._sock is None:
            raise ConnectionError("self._sock is None")  # as paho's
        if isinstance(buf, Gathered):
            self._output.extend(buf.parts)
        else:
            self._output.append(buf)
        return len(buf)

    def want_write(self) -> bool:
        return super().want_write() or bool(self._output)

    def loop_write(self) -> MQTTErrorCode:
        self.wrote_at = time.monotonic()
        rc = super().loop_write()  # paho's packets into `_output`
        if not self._fast or self._sock is None:
            return rc
        try:
            self._flush()
        except OSError:
            return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)
        if self.want_write():
            self._call_socket_register_write()
        else:
            self._call_socket_unregister_write()
        return rc

    def _flush(self, budget: int = WRITE_BUDGET_BYTES) -> None:
        """Send what the socket takes now, up to `budget` bytes; the rest waits for the next writable event."""
        while self._output and self._sock is not None and budget > 0:
            sock = self._sock
            try:
                if isinstance(sock, socket.socket) and not isinstance(sock, ssl.SSLSocket):
                    # one system call for all of them (scatter-gather), nothing copied
                    sent = sock.sendmsg(self._batch(budget))
                else:  # TLS has no sendmsg: joined, up to a record's worth
                    sent = sock.send(self._joined(TLS_CHUNK))  # type: ignore[arg-type]  # SSLSocket takes any buffer
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                return
            self._consume(sent)
            budget -= sent

    def _batch(self, budget: int) -> list[memoryview | bytes | bytearray]:
        """The first packets, `budget` bytes of them at most (the last one cut short), MAX_IOV at most."""
        batch: list[memoryview | bytes | bytearray] = []
        for part in itertools.islice(self._output, MAX_IOV):
            if len(part) >= budget:
                batch.append(memoryview(part)[:budget])
                break
            batch.append(part)
            budget -= len(part)
        return batch

    def _joined(self, limit: int) -> bytes | memoryview | bytearray:
        """The first packets, up to `limit` bytes, as one buffer (of a large first one, its first `limit` bytes)."""
        first = self._output[0]
        if len(first) >= limit:
            return memoryview(first)[:limit]
        if len(self._output) == 1:
            return first
        parts: list[bytes | memoryview | bytearray] = []
        size = 0
        for part in self._output:
            if parts and size + len(part) > limit:
                break
            parts.append(part)
            size += len(part)
        return b"".join(parts)

    def _consume(self, sent: int) -> None:
        """Drop what the socket took: whole packets, then the front of a partly sent one."""
        while sent:
            first = self._output[0]
            if len(first) > sent:
                self._output[0] = memoryview(first)[sent:]
                return
            sent -= len(first)
            self._output.popleft()

    def _sock_close(self) -> None:
        # paho closes right after writing DISCONNECT: it, at least, goes out if the socket takes it.
        if self._output and self._sock is not None:
            with contextlib.suppress(OSError):
                self._flush(budget=sys.maxsize)  # a DISCONNECT behind a listing: as much as the socket takes
        self._output.clear()
        super()._sock_close()

    def _sock_recv(self, bufsize: int) -> bytes:
        """paho asks for 1 byte, then 1, then the rest of each packet: a system call each.

        Read what is there (up to `RECV_CHUNK`) at once and hand it out as asked.
        """
        if not self._fast:
            return super()._sock_recv(bufsize)
        if self._input_at >= len(self._input):
            data = super()._sock_recv(RECV_CHUNK)  # BlockingIOError when there is nothing
            if not data:
                return data  # closed by the broker
            self._acknowledge_at_once()
            self._input, self._input_at = data, 0
        start = self._input_at
        self._input_at = min(start + bufsize, len(self._input))
        return self._input[start : self._input_at]

    def _acknowledge_at_once(self) -> None:
        """Have the kernel ACK what was read now, not after its delayed-ACK timer.

        A broker with Nagle's algorithm on (mosquitto's default) sends a small packet
        only once the one before is acknowledged. On a connection that sends as well as
        receives, Linux delays its ACK for up to 40 ms hoping to carry it on data: the
        broker's next PUBACK (which frees a place in a lane's window) or the PUBREL that
        delivers a command waited that long. TCP_QUICKACK sends the pending ACK and
        leaves the delayed mode, which the kernel may re-enter later: so after each read.
        """
        sock = self._sock
        if QUICKACK is not None and isinstance(sock, socket.socket):  # ssl.SSLSocket is one too
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)

    def _handle_pubackcomp(self, cmd: Literal["PUBACK", "PUBCOMP"]) -> MQTTErrorCode:
        packet = self._in_packet["packet"]
        if not self._fast or self._protocol == MQTTProtocolVersion.MQTTv5 or len(packet) != 2:
            return super()._handle_pubackcomp(cmd)  # MQTT 5, another paho, or malformed: paho's way
        mid = (packet[0] << 8) | packet[1]
        with self._out_message_mutex:
            if mid in self._out_messages:  # as paho: only the first acknowledgement counts
                return self._do_on_publish(mid, _SUCCESS[cmd], _NO_PROPERTIES[cmd])
        return MQTTErrorCode.MQTT_ERR_SUCCESS


class Failure(NamedTuple):
    reason: str
    level: int  # ERROR where the operator must act (TLS, credentials), else WARNING


class Gathered:
    """A packet in several buffers, sent one after the other without being joined.

    What paho needs of a packet: its length, and the rest of it from a position
    (`packet[pos:]`, see `_packet_write`), which here is views of the parts.
    """

    __slots__ = ("_size", "parts")

    def __init__(self, *parts: bytes | bytearray | memoryview) -> None:
        self.parts = [memoryview(part) for part in parts if len(part)]
        self._size = sum(len(part) for part in self.parts)

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, rest: slice) -> Gathered:
        skip = rest.start or 0
        parts = []
        for part in self.parts:
            if skip >= len(part):
                skip -= len(part)
                continue
            parts.append(part[skip:])
            skip = 0
        return Gathered(*parts)


def describe(error: Exception | None, tls: bool) -> Failure:
    """Why an attempt failed, in an operator's words (never a secret: paho's errors hold none)."""
    if isinstance(error, socket.gaierror):
        return Failure(f"name not resolved ({error.strerror or error})", logging.WARNING)
    if isinstance(error, ConnectionRefusedError):
        return Failure("connection refused (is the broker running, on this port?)", logging.WARNING)
    if isinstance(error, ssl.SSLError):
        detail = getattr(error, "verify_message", None) or error.reason or error
        return Failure(f"TLS failure ({detail})", logging.ERROR)
    if tls and isinstance(error, ConnectionResetError):  # a plain listener hangs up on a TLS hello
        return Failure("TLS failure (connection reset in the handshake: does this port speak TLS?)", logging.ERROR)
    if isinstance(error, TimeoutError):
        return Failure("no answer (timed out)", logging.WARNING)
    return Failure(str(error) if error is not None else "unknown reason", logging.WARNING)


class FailureReports:
    """Failed attempts, logged per broker and reason: the first at once, then one per interval with a count."""

    def __init__(
        self, interval: float = FAILURE_REPORT_INTERVAL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._interval = interval
        self._clock = clock
        self._by_reason: dict[tuple[str, str], Throttled] = {}
        self.failures = 0  # since the last successful connect

    def failed(self, address: str, reason: str, level: int = logging.WARNING) -> None:
        self.failures += 1
        throttle = self._by_reason.setdefault((address, reason), Throttled(self._interval, self._clock))
        if throttle.ready():
            LOG.log(
                level,
                "cannot connect to MQTT broker %s: %s; retrying (%d more failed attempts since the last report)",
                address,
                reason,
                throttle.take_suppressed(),
            )

    def connected(self) -> int:
        """A connect succeeded: the failures before it, and a fresh start for the next outage."""
        failures, self.failures = self.failures, 0
        self._by_reason.clear()
        return failures
