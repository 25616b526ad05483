"""The DeviceDispatcher: hosts the OCPP-J 1.6 WebSocket server and its sessions.

One session per charge point identity (the last URL path segment, percent-decoded). A
second connection with the same identity takes over at once; the old one is closed in the
background and, being no longer registered, cannot publish `connected = false` over the
new one's `true`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, NegotiationError
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from connector.charger import ChargerState
from connector.limits import Throttled, raise_open_files_limit
from connector.security import Security, basic_auth_refusal
from connector.session import ChargePointSession, RawTap, SessionEvents
from connector.settings import Settings
from connector.transactions import TransactionStore

LOG = logging.getLogger(__name__)

OCPP16 = Subprotocol("ocpp1.6")
# Bounds the shutdown: a peer that does not answer our close frame is cut off after this.
CLOSE_TIMEOUT_S = 2.0
LISTEN_BACKLOG = 4096  # the kernel caps it at net.core.somaxconn


# Why we closed a connection, by our close code, for the log line an operator reads.
CLOSE_EXPLANATIONS = {
    1008: "sent more frames than OCPP_MAX_MESSAGE_RATE allows",
    1009: "sent a frame larger than OCPP_MAX_FRAME_SIZE",
    1011: "did not answer pings (dead or unreachable; OCPP_PING_INTERVAL)",
}


class ListenError(Exception):
    """The OCPP server could not bind OCPP_HOST:OCPP_PORT."""


class DispatcherEvents(SessionEvents, Protocol):
    def connected(self, cp: str, is_connected: bool) -> None: ...


def identity_from_path(path: str) -> str:
    """`/ocpp/CP%201?x=y` -> `CP 1`: the last path segment, percent-decoded.

    "" when there is none, or when it does not decode to UTF-8 (replacing bad bytes would
    let `%FF` and `%FE` become the same charge point).
    """
    try:
        return unquote(urlsplit(path).path.rstrip("/").rsplit("/", 1)[-1], errors="strict")
    except UnicodeDecodeError:
        return ""


def connection_identity(connection: ServerConnection) -> str:
    # The request is set once the handshake has been read, before any of our hooks run.
    assert connection.request is not None
    return identity_from_path(connection.request.path)


def select_subprotocol(connection: ServerConnection, offered: Sequence[Subprotocol]) -> Subprotocol | None:
    if OCPP16 in offered:
        return OCPP16
    if not offered:
        # Real chargers often send no Sec-WebSocket-Protocol at all; serve them as 1.6.
        LOG.info("%s: no subprotocol offered; serving OCPP 1.6", connection_identity(connection))
        return None
    LOG.warning(
        "%s: refused handshake offering only %s; this server speaks ocpp1.6",
        connection_identity(connection),
        ", ".join(offered),
    )
    raise NegotiationError(f"unsupported subprotocols {', '.join(offered)}; this server speaks ocpp1.6")


class TrackedConnection(ServerConnection):
    """A server connection that counts itself while its TCP connection lasts and bounds
    its opening handshake with a log line (websockets drops a slow one silently)."""

    _dispatcher: DeviceDispatcher  # set on the subclass each dispatcher makes

    @classmethod
    def of(cls, dispatcher: DeviceDispatcher) -> type[TrackedConnection]:
        """The class websockets instantiates for `dispatcher`'s connections."""
        return type("DispatcherConnection", (cls,), {"_dispatcher": dispatcher})

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._dispatcher.tcp_connections += 1
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._dispatcher.tcp_connections -= 1
        super().connection_lost(exc)

    async def handshake(self, *args: Any, **kwargs: Any) -> None:
        timeout = self._dispatcher.handshake_timeout
        try:
            async with asyncio.timeout(timeout):
                await super().handshake(*args, **kwargs)
        except TimeoutError:
            peer = self.remote_address[0] if self.remote_address else "?"
            LOG.warning(
                "connection from %s dropped: no opening handshake within %g s (OCPP_HANDSHAKE_TIMEOUT)", peer, timeout
            )
            raise


class DeviceDispatcher:
    def __init__(
        self,
        settings: Settings,
        events: DispatcherEvents,
        transactions: TransactionStore,
        security: Security,
        raw_tap: RawTap | None = None,
    ) -> None:
        self._settings = settings
        self._security = security
        self._events = events
        self._transactions = transactions
        self._raw_tap = raw_tap
        self.sessions: dict[str, ChargePointSession] = {}
        self.chargers: dict[str, ChargerState] = {}  # outlives sessions: reconnects keep it
        self._closing: set[asyncio.Task[None]] = set()
        self.port: int | None = None
        self._server: Server | None = None
        self._stopping = False
        self.sessions_ended = 0
        self.tcp_connections = 0  # open TCP connections, handshakes included
        self.handshake_timeout = settings.ocpp_handshake_timeout
        self.capacity = settings.ocpp_max_connections
        self._refusals = Throttled()

    async def listen(self) -> None:
        """Bind OCPP_HOST:OCPP_PORT; ListenError (one line for the operator) if that fails."""
        self.capacity = raise_open_files_limit(self._settings.ocpp_max_connections)
        if self.capacity < self._settings.ocpp_max_connections:
            LOG.warning(
                "the open files limit allows only %d charger connections (OCPP_MAX_CONNECTIONS=%d); raise `ulimit -n`",
                self.capacity,
                self._settings.ocpp_max_connections,
            )
        try:
            self._server = await self._serve()  # binds here
        except OSError as error:
            where = f"OCPP_HOST={self._settings.ocpp_host} OCPP_PORT={self._settings.ocpp_port}"
            raise ListenError(f"cannot listen on {where}: {error.strerror or error}") from error
        sockets = list(self._server.sockets)
        self.port = sockets[0].getsockname()[1] if sockets else None
        scheme = "wss" if self._security.ocpp_tls else "ws"
        LOG.info("OCPP server listening on %s://%s:%s", scheme, self._settings.ocpp_host, self.port)

    async def serve_until(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set; then close every connection with 1001 and wait."""
        assert self._server is not None, "listen() first"
        async with self._server as server:
            await stop.wait()
            self._stopping = True  # one summary line instead of one per charger (thousands)
            count = len(self.sessions)
            LOG.info("closing %d charge point connections", count)
            server.close(close_connections=True)
            await server.wait_closed()
        await asyncio.gather(*self._closing, return_exceptions=True)
        LOG.info("closed %d charge point connections", count)

    def _serve(self) -> Awaitable[Server]:
        ping = self._settings.ocpp_ping_interval or None
        tls: dict[str, Any] = {}
        if self._security.ocpp_tls is not None:
            tls = {"ssl": self._security.ocpp_tls, "ssl_handshake_timeout": self.handshake_timeout}
        return serve(
            self._serve_charge_point,
            self._settings.ocpp_host,
            self._settings.ocpp_port,
            subprotocols=[OCPP16],
            select_subprotocol=select_subprotocol,
            process_request=self._check_request,
            # permessage-deflate roughly triples memory per connection; OCPP frames are small.
            compression=None,
            ping_interval=ping,
            ping_timeout=ping,
            close_timeout=CLOSE_TIMEOUT_S,
            max_size=self._settings.ocpp_max_frame_size,
            # A fleet reconnecting at once after a power cut: asyncio's default backlog of 100
            # would drop SYNs, and each dropped one costs its charger a 1, 3, 7 s... retry.
            backlog=LISTEN_BACKLOG,
            # Our TrackedConnection bounds (and logs) the handshake; this is only a backstop.
            open_timeout=self.handshake_timeout + 1,
            create_connection=TrackedConnection.of(self),
            **tls,
        )

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuse before the WebSocket opens: full (503), no identity (404), not allowed (403), profile 1 (401)."""
        if self.tcp_connections > self.capacity:  # this one is counted already
            if self._refusals.ready():
                LOG.warning(
                    "refused connection from %s with HTTP 503: %d connections open, OCPP_MAX_CONNECTIONS is %d"
                    " (%d more refused since the last report)",
                    connection.remote_address[0] if connection.remote_address else "?",
                    self.tcp_connections - 1,
                    self.capacity,
                    self._refusals.take_suppressed(),
                )
            response = connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "too many connections\n")
            response.headers["Retry-After"] = "60"
            return response
        identity = identity_from_path(request.path)
        if not identity:
            LOG.warning("refused connection to %.200r: no charge point identity in the path", request.path)
            return connection.respond(HTTPStatus.NOT_FOUND, "charge point identity missing from the URL path\n")
        if self._security.allowed is not None and identity not in self._security.allowed:
            LOG.warning("%.100s: refused: not in OCPP_ALLOWED_CHARGE_POINTS", identity)
            return connection.respond(HTTPStatus.FORBIDDEN, "charge point not allowed\n")
        refusal = basic_auth_refusal(self._security, identity, request.headers)
        if refusal is not None:
            LOG.warning("%.100s: refused: %s", identity, refusal)
            response = connection.respond(HTTPStatus.UNAUTHORIZED, "HTTP Basic authentication required\n")
            response.headers["WWW-Authenticate"] = 'Basic realm="OCPP", charset="UTF-8"'
            return response
        return None

    async def _serve_charge_point(self, connection: ServerConnection) -> None:
        cp = connection_identity(connection)
        session = ChargePointSession(
            cp,
            connection,
            self._events,
            self._transactions,
            state=self.chargers.setdefault(cp, ChargerState()),
            id_tags=self._settings.id_tags,
            heartbeat_interval=self._settings.charger_heartbeat_interval,
            response_timeout=self._settings.ocpp_response_timeout,
            max_message_rate=self._settings.ocpp_max_message_rate,
            # A peer gets as long to take a frame as it gets to answer a ping.
            write_timeout=self._settings.ocpp_ping_interval or self._settings.ocpp_response_timeout,
            raw_tap=self._raw_tap,
        )
        self._take_over(cp, session)
        LOG.info("%s: connected from %s", cp, connection.remote_address[0])
        try:
            self._events.connected(cp, True)
            await session.start()
        except ConnectionClosed:
            pass
        finally:
            await self._end(cp, session, connection)

    def _take_over(self, cp: str, session: ChargePointSession) -> None:
        previous = self.sessions.get(cp)
        self.sessions[cp] = session
        if previous is not None:
            LOG.warning("%s: new connection replaces the open one; closing the old", cp)
            task = asyncio.get_running_loop().create_task(previous.close(1000, "replaced by a new connection"))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def session_counts(self) -> tuple[int, int]:
        """(sessions ended so far, sessions open now)."""
        return self.sessions_ended, len(self.sessions)

    async def _end(self, cp: str, session: ChargePointSession, connection: ServerConnection) -> None:
        self.sessions_ended += 1
        await session.stop_tasks()
        if self.sessions.get(cp) is session:
            del self.sessions[cp]
            self._events.connected(cp, False)
        if self._stopping:
            return
        sent = connection.protocol.close_sent
        if sent is not None and sent.code in CLOSE_EXPLANATIONS:
            LOG.warning(
                "%s: disconnected with close code %d: the charger %s", cp, sent.code, CLOSE_EXPLANATIONS[sent.code]
            )
        else:
            LOG.info("%s: disconnected (code %s)", cp, connection.close_code)
