"""Connections before they are charge points: counted from the first byte, TLS, dropped.

A TCP connection is *unauthenticated* (admission.py) from its first byte until the
dispatcher's request checks pass, and bounded per address and in all while it is. The
count starts before TLS: with `ssl=` on the server, asyncio would run the TLS handshake
before the protocol hears of the connection, so a socket that never sends a ClientHello
would hold a descriptor uncounted. The gate therefore starts TLS itself (loop.start_tls,
same context, same timeout) and hands the connection to websockets only afterwards.
Every refusal here is logged at most once per 10 s per reason, with a count.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any, cast

import websockets.version
from websockets.asyncio.server import ServerConnection

from connector.admission import Admission
from connector.limits import RefusalLog
from connector.logtext import escaped
from connector.settings import Settings

LOG = logging.getLogger(__name__)

LEAN_DRAIN_WAITERS_FOR = "17.4"  # the websockets version whose use of `drain_waiters` was checked


class TrackedConnection(ServerConnection):
    """A server connection that reports its arrival and departure to the gate from the
    first byte, waits for the gate's TLS handshake before websockets sees it, and bounds
    its opening handshake with a log line (websockets drops a slow one silently)."""

    _gate: Gate  # set on the subclass each gate makes
    _websocket_started = False  # websockets' side set up: it has a transport to speak over
    tcp: asyncio.Transport
    peer = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if websockets.version.version == LEAN_DRAIN_WAITERS_FOR:
            # websockets keeps a deque (760 bytes) per connection for the sends waiting for
            # the transport to resume, and only appends to it, removes from it and iterates
            # it (asyncio/connection.py, websockets 17.4): a list does that in 56 bytes, 2 % of
            # what an idle connection holds. Checked against that version only (a test says
            # when another is installed).
            self.drain_waiters = []  # type: ignore[assignment]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.tcp = cast(asyncio.Transport, transport)
        peername = transport.get_extra_info("peername")
        self.peer = str(peername[0]) if peername else "?"
        if not self._gate.arrived(self):
            return
        if self._gate.tls is None:
            self.start_websocket(self.tcp)
        else:
            self.tcp.pause_reading()  # the first bytes are TLS's, not websockets'; start_tls resumes
            self._gate.start_tls(self)

    def start_websocket(self, transport: asyncio.Transport) -> None:
        """Hand the (TLS) transport to websockets, which starts reading the opening handshake."""
        self._websocket_started = True
        super().connection_made(transport)

    def drop(self) -> None:
        """Close the TCP connection at once: it has no WebSocket or session to close politely."""
        self.tcp.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._gate.admission.leave(self)
        if self._websocket_started:
            super().connection_lost(exc)

    async def handshake(self, *args: Any, **kwargs: Any) -> None:
        timeout = self._gate.handshake_timeout
        try:
            async with asyncio.timeout(timeout):
                await super().handshake(*args, **kwargs)
        except TimeoutError:
            self._gate.refusals.report(
                "slow handshakes dropped",
                "connection from %s dropped: no opening handshake within %g s (OCPP_HANDSHAKE_TIMEOUT)",
                self.peer,
                timeout,
            )
            raise


class Gate:
    def __init__(self, settings: Settings, tls: ssl.SSLContext | None) -> None:
        self.tls = tls
        self.handshake_timeout = settings.ocpp_handshake_timeout
        self.admission: Admission[TrackedConnection] = Admission(
            settings.ocpp_max_connections,
            settings.ocpp_max_unauthenticated_per_address,
            settings.ocpp_max_unauthenticated,
        )
        self.refusals = RefusalLog(LOG)
        self._tls_handshakes: set[asyncio.Task[None]] = set()
        self._closing = False

    def connection_class(self) -> type[TrackedConnection]:
        """The class websockets instantiates for this gate's connections."""
        return type("GatedConnection", (TrackedConnection,), {"_gate": self})

    def arrived(self, connection: TrackedConnection) -> bool:
        """A TCP connection opened: count it as unauthenticated; False (and closed) if its address holds too many."""
        if self._closing:
            connection.drop()
            return False
        admitted, evicted = self.admission.arrive(connection, connection.peer)
        if not admitted:
            self.refusals.report(
                "refused for OCPP_MAX_UNAUTHENTICATED_PER_ADDRESS",
                "refused connection from %s: it already holds %d connections that have not authenticated"
                " (OCPP_MAX_UNAUTHENTICATED_PER_ADDRESS)",
                escaped(connection.peer),
                self.admission.per_address,
            )
            connection.drop()
        if evicted is not None:
            self.refusals.report(
                "dropped for OCPP_MAX_UNAUTHENTICATED",
                "dropped the oldest unauthenticated connection (from %s) for a new one: %d are open"
                " (OCPP_MAX_UNAUTHENTICATED)",
                evicted.peer,
                self.admission.total,
            )
            evicted.drop()
        return admitted

    def authenticate(self, connection: ServerConnection) -> bool:
        """It passed the request checks: True if it fits under OCPP_MAX_CONNECTIONS (and now counts there)."""
        assert isinstance(connection, TrackedConnection)  # serve() makes only those
        return self.admission.authenticate(connection)

    def start_tls(self, connection: TrackedConnection) -> None:
        task = asyncio.get_running_loop().create_task(self._tls_handshake(connection))
        self._tls_handshakes.add(task)
        task.add_done_callback(self._tls_handshakes.discard)

    async def _tls_handshake(self, connection: TrackedConnection) -> None:
        """TLS (profile 3: with the client certificate check) within OCPP_HANDSHAKE_TIMEOUT, then the WebSocket."""
        assert self.tls is not None
        if connection.tcp.is_closing():  # dropped before this task ran: start_tls would wait for nothing
            return
        try:
            transport = await asyncio.get_running_loop().start_tls(
                connection.tcp, connection, self.tls, server_side=True, ssl_handshake_timeout=self.handshake_timeout
            )
        except OSError as error:  # ssl.SSLError, the handshake timeout, a reset
            self.refusals.report(
                "TLS handshakes failed",
                "connection from %s dropped: TLS handshake failed: %.200s",
                connection.peer,
                error,
            )
            transport = None
        if transport is None:  # failed, or closed meanwhile (asyncio then tells the protocol nothing)
            self.admission.leave(connection)
            connection.drop()
            return
        connection.start_websocket(transport)

    def close(self) -> None:
        """Shutting down: drop every unauthenticated connection, and any that still arrives.

        They have no session to close cleanly, and websockets waits for their handlers: a
        silent one would hold the shutdown for OCPP_HANDSHAKE_TIMEOUT.
        """
        self._closing = True
        for connection in self.admission.unauthenticated_connections():
            connection.drop()

    async def wait_closed(self) -> None:
        await asyncio.gather(*self._tls_handshakes, return_exceptions=True)
