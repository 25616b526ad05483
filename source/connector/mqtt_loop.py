"""paho driven by the asyncio loop instead of its own network thread.

With `loop_start` every publish woke paho's thread, which then fought the event loop for
the GIL: 43 % of the connector's samples were in that thread and 14 % in handing values
over to it (py-spy, 2.0.1 benchmark). Here the loop watches paho's socket itself, as
paho's external-loop API intends (`loop_read` / `loop_write` / `loop_misc` and its socket
callbacks): a publish only queues the packet and asks for the socket to be watched for
writing, so the packets of one loop iteration go out together, acknowledgements are read
where they are used, and no thread hop sits between an actuator message and its command.

A lane's acknowledgements are also read where it finds its window full, when the loop has
not read them for READ_DUE_S (`read_if_due`): in an overloaded turn of the loop (seconds,
with 10,000 2.0.1 chargers connecting at once) a full window otherwise kept the connection
silent until the turn ended, and the broker dropped it after 1.5 x the keepalive.

A connection may leave a pause between its writes (`write_pause_s`): the listing's does.
mosquitto reads a client's packet for as long as that socket has data, so a 20 MB
available_datapoints written as fast as the loop turns held every other client up until all
of it was in: at 10,000 2.0.1 chargers, commands that came meanwhile reached us 50-120 ms
late. With a pause between write budgets (mqtt_client.WRITE_BUDGET_BYTES) the broker finds
the socket empty and serves the others between the parts. Only the time the loop's own
turns do not leave is waited for: on a loop slowed by a connect wave, turns of tens of ms
are the pauses, and a listing paced on top of them outlasted paho's keepalive (its ping
queued behind the listing), so the connection was dropped and the listing sent again.

The one blocking step, opening the connection (name lookup, TCP, TLS handshake, bounded by
paho's `connect_timeout`), runs in a worker thread; paho's socket callbacks from there are
passed to the loop. paho's own reconnect loop belongs to `loop_forever`, so reconnecting
with back-off is done here, with the same bounds (`RECONNECT_*_DELAY_S`), and with several
brokers (MQTT_BROKER_HOST=a,b,c) it moves on to the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt

from connector.mqtt_client import RECONNECT_MAX_DELAY_S, RECONNECT_MIN_DELAY_S, Client, outside_callbacks
from connector.settings import Broker

LOG = logging.getLogger(__name__)

MISC_INTERVAL_S = 1.0  # keepalive pings and the ping timeout: paho's own loop checks once a second
# A lane with a full window reads the broker's acknowledgements itself when the loop has not
# for this long (see above): the loop reads them every turn when it keeps up.
READ_DUE_S = 0.1


class LoopDriver:
    """Runs one paho client's network traffic on the running asyncio loop."""

    def __init__(
        self,
        client: mqtt.Client,
        brokers: Sequence[Broker],
        keepalive: int,
        on_connect_fail: Callable[[Exception, Broker], None],
        write_pause_s: float = 0.0,
    ) -> None:
        self.client = self._client = client
        self._write_pause_s = write_pause_s  # at least between two writes of a Client (see above)
        self._resume: asyncio.TimerHandle | None = None  # the end of a pause being waited for
        self._brokers = brokers
        self._keepalive = keepalive
        self.broker = brokers[0]  # the one connected to, or tried next
        self._on_connect_fail = on_connect_fail
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._sock: Any = None  # the socket being watched, on the loop thread
        # The socket paho last asked to have watched for writing. Kept apart from `_sock`:
        # a publish on the loop thread can ask for it before the connecting thread's
        # "socket opened" has reached the loop, and paho asks only once per socket.
        self._write_wanted: Any = None
        self._closed = asyncio.Event()  # no socket open (set while disconnected)
        self._closed.set()
        self._stopping = False
        self._misc: asyncio.TimerHandle | None = None
        self._read_at = 0.0  # time.monotonic() of the last read
        client.on_socket_open = self._socket_opened
        client.on_socket_close = self._socket_closing
        client.on_socket_register_write = self._want_write
        client.on_socket_unregister_write = self._wrote_all

    async def run(self) -> None:
        """Connect, and connect again whenever the connection is lost, until `disconnect`.

        With several brokers (a cluster), a failed attempt or a lost connection moves on
        to the next; the back-off (paho's: never at once, doubled up to its cap) applies
        once the whole list has been tried, so a dead broker costs no wait.
        """
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        if isinstance(self._client, Client):
            self._client.writer_thread = self._loop_thread  # writes a packet due at once (mqtt_client.WRITE_DUE_S)
        self._misc = self._loop.call_later(MISC_INTERVAL_S, self._tick)
        delay, index = RECONNECT_MIN_DELAY_S, 0
        try:
            while not self._stopping:
                self.broker = self._brokers[index]
                if await self._connect():
                    if self._stopping:  # asked to stop while the connection was being opened
                        self._client.disconnect()
                    await self._closed.wait()
                    delay = RECONNECT_MIN_DELAY_S
                    if self._stopping:
                        return
                index = (index + 1) % len(self._brokers)
                if index == 0 or len(self._brokers) == 1:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RECONNECT_MAX_DELAY_S)
        finally:
            self._misc.cancel()

    async def _connect(self) -> bool:
        assert self._loop is not None
        self._closed.clear()  # set again by the socket's close, or below on failure
        host, port = self.broker
        self._client.connect_async(host, port, keepalive=self._keepalive)  # where the next attempt goes
        try:
            await self._loop.run_in_executor(None, self._client.reconnect)
        except Exception as error:  # noqa: BLE001 - any failure is reported and retried, never the end
            self._closed.set()
            self._on_connect_fail(error, self.broker)
            return False
        return True

    async def disconnect(self, within: float) -> bool:
        """Send DISCONNECT and wait (bounded) until paho closed the socket; True if it did."""
        self._stopping = True
        self._write_pause_s = 0.0  # what is left of a listing goes out as fast as it can, DISCONNECT after it
        self._client.disconnect()
        try:
            async with asyncio.timeout(within):
                await self._closed.wait()
        except TimeoutError:
            return False
        return True

    @property
    def socket_open(self) -> bool:
        return not self._closed.is_set()

    # -- paho's socket callbacks (from the connecting thread too) ---------------------

    def _on_loop(self, callback: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        if threading.get_ident() == self._loop_thread:
            callback(*args)
        else:
            self._loop.call_soon_threadsafe(callback, *args)

    def _socket_opened(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._on_loop(self._watch, sock)

    def _socket_closing(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._on_loop(self._unwatch, sock)

    def _want_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._on_loop(self._watch_writes, sock)

    def _wrote_all(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._on_loop(self._unwatch_writes, sock)

    def _watch(self, sock: Any) -> None:
        assert self._loop is not None
        # paho leaves Nagle's algorithm on: a small packet (a PUBREC of a command, a status)
        # then waits for the broker's delayed ACK of the one before, up to 40 ms on Linux.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._loop.add_reader(sock, self._read)
        if self._write_wanted is sock:
            self._loop.add_writer(sock, self._write)

    def _unwatch(self, sock: Any) -> None:
        assert self._loop is not None
        if self._sock is sock:
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)
            self._sock = None
            if self._resume is not None:
                self._resume.cancel()
                self._resume = None
        if self._write_wanted is sock:
            self._write_wanted = None
        self._closed.set()

    def _watch_writes(self, sock: Any) -> None:
        assert self._loop is not None
        self._write_wanted = sock
        # Else `_watch` adds the writer once the socket is watched, or the pause's end does.
        if self._sock is sock and self._resume is None:
            self._loop.add_writer(sock, self._write)

    def _unwatch_writes(self, sock: Any) -> None:
        assert self._loop is not None
        if self._write_wanted is sock:
            self._write_wanted = None
        if self._sock is sock:
            self._loop.remove_writer(sock)

    # -- traffic ------------------------------------------------------------------------

    def _write(self) -> None:
        if self._write_pause_s and self._sock is not None and isinstance(self._client, Client):
            # From any write: a Client also writes a packet due at once itself (WRITE_DUE_S).
            wait = self._client.wrote_at + self._write_pause_s - time.monotonic()
            if wait > 0:  # the broker has not had its pause yet (see above)
                assert self._loop is not None
                self._loop.remove_writer(self._sock)
                self._resume = self._loop.call_later(wait, self._resume_writes)
                return
        self._client.loop_write()

    def _resume_writes(self) -> None:
        assert self._loop is not None
        self._resume = None
        if self._sock is not None and self._write_wanted is self._sock:
            self._loop.add_writer(self._sock, self._write)

    def read_if_due(self) -> None:
        """Read what the broker sent if the loop has not for READ_DUE_S: called by an outbox
        whose window is full, in the middle of a long turn of the loop (see above).

        Not from within paho's own processing (its callbacks run holding that lock, and paho
        reads one packet at a time), nor before the socket is watched. paho's callbacks
        here only count acknowledgements and pass the rest to the loop (call_soon), so the
        caller's state is not changed under it but for the acknowledgements it waits for.
        """
        if self._sock is None or time.monotonic() - self._read_at < READ_DUE_S:
            return
        if threading.get_ident() == self._loop_thread and outside_callbacks(self._client):
            self._read()

    def _read(self) -> None:
        self._read_at = time.monotonic()
        self._client.loop_read()
        sock = self._sock
        # Bytes the selector cannot see: read by our client's buffer but not yet handled
        # (paho handles so many packets per call), or decrypted and held by TLS.
        buffered = isinstance(self._client, Client) and self._client.input_buffered
        if sock is not None and (buffered or (isinstance(sock, ssl.SSLSocket) and sock.pending())):
            assert self._loop is not None
            self._loop.call_soon(self._read)

    def _tick(self) -> None:
        assert self._loop is not None
        self._client.loop_misc()
        self._misc = self._loop.call_later(MISC_INTERVAL_S, self._tick)
