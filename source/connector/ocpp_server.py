"""The DeviceDispatcher: hosts the OCPP-J WebSocket server and its sessions.

Every OCPP version on one port: the charger's subprotocol list picks the version
(negotiation.py, OCPP_PROTOCOLS), and a charger that offers permessage-deflate gets it
within bounded memory (deflate.py).

One session per charge point identity (the last URL path segment, percent-decoded). A
second connection with the same identity takes over at once; the old one is closed in the
background and, being no longer registered, cannot publish `connected = false` over the
new one's `true`.

Before the WebSocket opens, every request is checked (identity, allow-list, HTTP Basic)
and only one that passes takes a place under OCPP_MAX_CONNECTIONS; until then the gate
(gate.py) counts and bounds the connection. Every refusal is logged at most once per 10 s
per reason, with a count, since a refusal flood must not become a log flood.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from http import HTTPStatus
from typing import Protocol
from urllib.parse import unquote

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, NegotiationError
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from connector import versions
from connector.backpressure import Room
from connector.charger import ChargerState
from connector.deflate import PER_MESSAGE_DEFLATE
from connector.gate import Gate
from connector.handover import Alone, Handover
from connector.limits import RefusalLog, raise_open_files_limit
from connector.logtext import escaped, has_control_characters
from connector.metrics import FrameMetrics
from connector.negotiation import OCPP16, negotiate, version_name
from connector.security import Security, basic_auth_refusal
from connector.session import ChargePointSession, RawTap, SessionEvents
from connector.settings import Settings
from connector.transactions import StateUnavailableError, TransactionStore

LOG = logging.getLogger(__name__)

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
    def connected(self, cp: str, is_connected: bool, version: str | None = None) -> None:
        """A charge point connected (`version`: the OCPP version it is served in, "1.6", "2.0.1", "2.1") or left."""

    def lost(self, cp: str, at: int, back: bool = False) -> None:
        """The instance that served it died at `at` (ms) without saying it is gone (handover.py);
        `back`: it is connected here again."""


def identity_from_path(path: str) -> str:
    """`/ocpp/CP%201?x=y` -> `CP 1`: the last path segment, percent-decoded.

    "" when there is none, or when it does not decode to UTF-8 (replacing bad bytes would
    let `%FF` and `%FE` become the same charge point).
    """
    # A request target is a path and a query (RFC 9112 3.2.1), not a URL: urlsplit would
    # read `//[x/CP_1` as a host and raise, which websockets answers with 500 and a traceback.
    segment = path.partition("?")[0].rstrip("/").rsplit("/", 1)[-1]
    try:
        return unquote(segment, errors="strict")
    except UnicodeDecodeError:
        return ""


def connection_identity(connection: ServerConnection) -> str:
    # The request is set once the handshake has been read, before any of our hooks run.
    assert connection.request is not None
    return identity_from_path(connection.request.path)


def forget_handshake_headers(connection: ServerConnection) -> None:
    """Drop the opening handshake's headers, which websockets keeps for the connection's life.

    Nothing reads them once the session runs (the identity is the request path, kept, and the
    checks of the request are done), and they were the largest part of an idle connection's
    memory: ~3 KB of header names and values in two lists and two dicts per charger
    (benchmark/connection_memory.py). Emptied in place: websockets' request parser, a
    suspended generator, holds the request too (websockets 17.4, server.py `parse`).
    """
    for message in (connection.request, connection.response):
        if message is not None:
            message.headers.clear()


def peer_host(connection: ServerConnection) -> str:
    return connection.remote_address[0] if connection.remote_address else "?"


class DeviceDispatcher:
    def __init__(
        self,
        settings: Settings,
        events: DispatcherEvents,
        transactions: TransactionStore,
        security: Security,
        *,
        raw_tap: RawTap | None = None,
        room: Room | None = None,
        handover: Handover | None = None,
    ) -> None:
        self._settings = settings
        self._handover = handover or Alone()
        self._security = security
        self._events = events
        self._transactions = transactions
        self._raw_tap = raw_tap
        self._room = room or Room()
        self.sessions: dict[str, ChargePointSession] = {}
        self.chargers: dict[str, ChargerState] = {}  # outlives sessions: reconnects keep it
        self._closing: set[asyncio.Task[None]] = set()
        self._leaving: dict[str, asyncio.Future[None]] = {}  # identities giving up their handover
        self.served: set[str] = set()  # identities served here: their handover done (several instances)
        self.port: int | None = None
        self._server: Server | None = None
        self._stopping = False
        self.sessions_ended = 0
        self.gate = Gate(settings, security.ocpp_tls)
        self.refusals = RefusalLog(LOG)
        self.metrics = FrameMetrics()  # shared by every session: frames and latency, for /metrics

    async def listen(self) -> None:
        """Bind OCPP_HOST:OCPP_PORT; ListenError (one line for the operator) if that fails."""
        self._fit_open_files_limit()
        try:
            self._server = await self._serve()  # binds here
        except OSError as error:
            where = f"OCPP_HOST={self._settings.ocpp_host} OCPP_PORT={self._settings.ocpp_port}"
            raise ListenError(f"cannot listen on {where}: {error.strerror or error}") from error
        sockets = list(self._server.sockets)
        self.port = sockets[0].getsockname()[1] if sockets else None
        scheme = "wss" if self._security.ocpp_tls else "ws"
        LOG.info("OCPP server listening on %s://%s:%s", scheme, self._settings.ocpp_host, self.port)

    @property
    def listening(self) -> bool:
        """Whether the OCPP server accepts connections (bound, not shutting down)."""
        return self._server is not None and not self._stopping

    async def serve_until(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set; then close every connection with 1001 and wait."""
        assert self._server is not None, "listen() first"
        async with self._server as server:
            await stop.wait()
            self._room.release()  # a session waiting for the MQTT side would hold up its own closing
            self._stopping = True  # one summary line instead of one per charger (thousands)
            count = len(self.sessions)
            LOG.info("closing %d charge point connections", count)
            server.close(close_connections=True)
            self.gate.close()
            await server.wait_closed()
        await self.gate.wait_closed()
        await asyncio.gather(*self._closing, return_exceptions=True)
        LOG.info("closed %d charge point connections", count)

    def _fit_open_files_limit(self) -> None:
        """Raise the open files limit for the configured connections; shrink them where it cannot be."""
        wanted = self._settings.ocpp_max_connections
        budget = raise_open_files_limit(wanted, self._settings.ocpp_max_unauthenticated)
        self.gate.admission.capacity = budget.connections
        self.gate.admission.total = budget.unauthenticated
        if budget.connections >= wanted:
            LOG.info("serving up to %d charger connections (OCPP_MAX_CONNECTIONS)", budget.connections)
        elif wanted != Settings.ocpp_max_connections:  # the operator asked for this many
            LOG.warning(
                "the open files limit (%d) allows only %d charger connections, not OCPP_MAX_CONNECTIONS=%d;"
                " raise `ulimit -n`",
                budget.soft_limit,
                budget.connections,
                wanted,
            )
        else:
            # The default (which the shipped .env writes out) is a ceiling for large fleets,
            # not a request: nothing is wrong here.
            LOG.info(
                "serving up to %d charger connections, what the open files limit %d allows (`ulimit -n` for more)",
                budget.connections,
                budget.soft_limit,
            )

    def _serve(self) -> Awaitable[Server]:
        ping = self._settings.ocpp_ping_interval or None
        # No `ssl` here: the gate starts TLS itself once it has counted the connection.
        return serve(
            self._serve_charge_point,
            self._settings.ocpp_host,
            self._settings.ocpp_port,
            subprotocols=[Subprotocol(p) for p in self._settings.ocpp_protocols],
            select_subprotocol=self._select_subprotocol,
            process_request=self._check_request,
            # permessage-deflate for chargers that offer it, on our terms (deflate.py), not websockets' defaults.
            compression=None,
            extensions=[PER_MESSAGE_DEFLATE],
            ping_interval=ping,
            ping_timeout=ping,
            close_timeout=CLOSE_TIMEOUT_S,
            max_size=self._settings.ocpp_max_frame_size,
            # A fleet reconnecting at once after a power cut: asyncio's default backlog of 100
            # (loop.create_server, https://docs.python.org/3/library/asyncio-eventloop.html)
            # would drop SYNs, and each dropped one costs its charger a 1, 3, 7 s... retry.
            backlog=LISTEN_BACKLOG,
            # The gate's connections bound (and log) the handshake; this is only a backstop.
            open_timeout=self.gate.handshake_timeout + 1,
            create_connection=self.gate.connection_class(),
        )

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuse before the WebSocket opens: no identity (404), control characters in it (400),
        not allowed (403), profile 1 (401); then full (503), counting only who passed all that."""
        identity = identity_from_path(request.path)
        refused = self._refuse_identity(connection, request.path, identity) or self._refuse_credentials(
            connection, identity, request
        )
        if refused is None and not self.gate.authenticate(connection):
            refused = self._refuse_full(connection, identity)
        return refused

    def _refuse_identity(self, connection: ServerConnection, path: str, identity: str) -> Response | None:
        if not identity:
            self.refusals.report(
                "HTTP 404 refusals", "refused connection to %.200r: no charge point identity in the path", path
            )
            return connection.respond(HTTPStatus.NOT_FOUND, "charge point identity missing from the URL path\n")
        if has_control_characters(identity):
            # A newline or escape sequence in an identity would end up in keys, topics and logs.
            self.refusals.report(
                "HTTP 400 refusals",
                "%.200s: refused with HTTP 400: control characters in the identity",
                escaped(identity),
            )
            return connection.respond(HTTPStatus.BAD_REQUEST, "control characters in the charge point identity\n")
        return None

    def _refuse_credentials(self, connection: ServerConnection, identity: str, request: Request) -> Response | None:
        if self._security.allowed is not None and identity not in self._security.allowed:
            self.refusals.report("HTTP 403 refusals", "%.100s: refused: not in OCPP_ALLOWED_CHARGE_POINTS", identity)
            return connection.respond(HTTPStatus.FORBIDDEN, "charge point not allowed\n")
        refusal = basic_auth_refusal(self._security, identity, request.headers)
        if refusal is not None:
            self.refusals.report("HTTP 401 refusals", "%.100s: refused: %s", identity, refusal)
            response = connection.respond(HTTPStatus.UNAUTHORIZED, "HTTP Basic authentication required\n")
            response.headers["WWW-Authenticate"] = 'Basic realm="OCPP", charset="UTF-8"'
            return response
        return None

    def _refuse_full(self, connection: ServerConnection, identity: str) -> Response:
        self.refusals.report(
            "HTTP 503 refusals",
            "%.100s: refused connection from %s with HTTP 503: %d charge point connections open,"
            " OCPP_MAX_CONNECTIONS is %d",
            identity,
            peer_host(connection),
            self.gate.admission.authenticated,
            self.gate.admission.capacity,
        )
        response = connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "too many connections\n")
        response.headers["Retry-After"] = "60"
        return response

    def _select_subprotocol(self, connection: ServerConnection, offered: Sequence[Subprotocol]) -> Subprotocol | None:
        """The charger's first choice that OCPP_PROTOCOLS lists (negotiation.py); refused if none."""
        cp = connection_identity(connection)
        spoken = self._settings.ocpp_protocols
        chosen = negotiate(offered, spoken)
        if chosen is not None and offered:
            return Subprotocol(chosen)
        if chosen is not None:
            # Real chargers often send no Sec-WebSocket-Protocol at all; serve them as 1.6.
            LOG.info("%s: no subprotocol offered; serving OCPP 1.6", cp)
            return None
        # Each offered name is a header token (RFC 6455 4.1): no control characters, but
        # a charger may list many, so the line quotes a prefix.
        what = f"offering only {', '.join(offered):.100s}" if offered else "offering no subprotocol (OCPP 1.6)"
        self.refusals.report(
            "protocol refusals", "%s: refused handshake %s; OCPP_PROTOCOLS is %s", cp, what, ",".join(spoken)
        )
        raise NegotiationError(f"unsupported subprotocols; this server speaks {', '.join(spoken)}")

    async def _serve_charge_point(self, connection: ServerConnection) -> None:
        cp = connection_identity(connection)
        forget_handshake_headers(connection)
        session = ChargePointSession(
            cp,
            connection,
            self._events,
            self._transactions,
            # No Sec-WebSocket-Protocol at all: served as 1.6 (see _select_subprotocol).
            version=versions.by_subprotocol(connection.subprotocol or versions.DEFAULT_SUBPROTOCOL),
            state=self.chargers.setdefault(cp, ChargerState()),
            id_tags=self._settings.id_tags,
            heartbeat_interval=self._settings.charger_heartbeat_interval,
            response_timeout=self._settings.ocpp_response_timeout,
            max_message_rate=self._settings.ocpp_max_message_rate,
            # A peer gets as long to take a frame as it gets to answer a ping.
            write_timeout=self._settings.ocpp_ping_interval or self._settings.ocpp_response_timeout,
            raw_tap=self._raw_tap,
            metrics=self.metrics,
            room=self._room,
        )
        self._take_over(cp, session)
        # No Sec-WebSocket-Protocol (the handshake had none): OCPP 1.6, see _select_subprotocol.
        subprotocol = connection.subprotocol or OCPP16
        LOG.info("%s: connected from %s (%s)", cp, connection.remote_address[0], subprotocol)
        served = False
        try:
            leaving = self._leaving.get(cp)
            if leaving is not None:  # the identity's previous connection here is still giving it up
                await asyncio.shield(leaving)
            arrival = await self._handover.arrive(cp)
            self.served.add(cp)
            arrival.apply(session.state)
            session.state.share = self._handover.share(cp)
            if arrival.lost_at is not None:
                self._events.lost(cp, arrival.lost_at)
            self._events.connected(cp, True, version=version_name(subprotocol))
            served = True
            await session.start()
        except ConnectionClosed:
            pass
        except StateUnavailableError as error:
            # Another instance may have Redis: the load balancer's /readyz check sends it there.
            LOG.error("%s: not served here: %s; closed with 1013 (try again later)", cp, error)
            await connection.close(1013, "state store unavailable")
        finally:
            await self._end(cp, session, connection, served)

    def close_quietly(self, cp: str, reason: str) -> None:
        """Close a charger's connection here in the background (another instance serves it now)."""
        session = self.sessions.get(cp)
        if session is not None:
            task = asyncio.get_running_loop().create_task(session.close(1000, reason))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def _take_over(self, cp: str, session: ChargePointSession) -> None:
        previous = self.sessions.get(cp)
        self.sessions[cp] = session
        if previous is not None:
            LOG.warning("%s: new connection replaces the open one; closing the old", cp)
            task = asyncio.get_running_loop().create_task(previous.close(1000, "replaced by a new connection"))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _give_up(self, cp: str) -> bool:
        """Tell the handover the charger left; a new connection of it here waits for that."""
        done = asyncio.get_running_loop().create_future()
        self._leaving[cp] = done
        try:
            return await self._handover.leave(cp)
        finally:
            self._leaving.pop(cp, None)
            done.set_result(None)

    def session_counts(self) -> tuple[int, int]:
        """(sessions ended so far, sessions open now)."""
        return self.sessions_ended, len(self.sessions)

    async def _end(self, cp: str, session: ChargePointSession, connection: ServerConnection, served: bool) -> None:
        self.sessions_ended += 1
        await session.stop_tasks()
        if self.sessions.get(cp) is session:
            del self.sessions[cp]
            self.served.discard(cp)
            # Still ours (not taken over by another instance meanwhile): it is gone.
            if await self._give_up(cp) and served:
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
