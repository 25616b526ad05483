"""The operations HTTP server: /healthz, /readyz, /metrics and the status page at /.

A small HTTP/1.1 server on asyncio streams, for GET and HEAD only. Why not a library:
aiohttp or an ASGI server would be the largest dependency of the connector for four
read-only routes, and prometheus-client's own `start_http_server` serves from a thread,
which would read the sessions and the outbox while the loop changes them. Here every
request is answered on the loop, between two OCPP frames, from state read at that moment.

Strict, since the port may face a network: the request head is bounded (MAX_HEAD bytes,
else 431), it must arrive within REQUEST_TIMEOUT_S, at most MAX_CLIENTS connections are
served at once (others are closed at once), every response closes its connection, and
nothing but GET and HEAD is answered (405; unknown paths 404).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qsl

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from connector import __version__, status_page
from connector.ocpp_server import ListenError

LOG = logging.getLogger(__name__)

MAX_HEAD = 8192  # bytes of request line and headers
MAX_QUERY_FIELDS = 10
REQUEST_TIMEOUT_S = 5.0  # to send the request head
WRITE_TIMEOUT_S = 10.0  # to take the response
MAX_CLIENTS = 64
TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
HTML = "text/html; charset=utf-8"
# The page runs no script and loads nothing: a charger's text can never become code.
PAGE_POLICY = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'"

Check = Callable[[], bool]  # True: that part is up


class HttpListenError(ListenError):
    """The operations server could not bind HTTP_HOST:HTTP_PORT (main exits 2, as for OCPP_PORT)."""


@dataclass(frozen=True)
class Response:
    status: HTTPStatus
    body: bytes = b""
    content_type: str = TEXT
    headers: tuple[tuple[str, str], ...] = ()

    def encode(self, with_body: bool = True) -> bytes:
        lines = [
            f"HTTP/1.1 {self.status.value} {self.status.phrase}",
            f"Content-Type: {self.content_type}",
            f"Content-Length: {len(self.body)}",
            "Cache-Control: no-store",
            "X-Content-Type-Options: nosniff",
            "Connection: close",
            *(f"{name}: {value}" for name, value in self.headers),
        ]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head + self.body if with_body else head


def plain(status: HTTPStatus, message: str, *headers: tuple[str, str]) -> Response:
    return Response(status, (message + "\n").encode(), TEXT, headers)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]


def parse_request(head: bytes) -> Request | None:
    """The request line of an HTTP/1.x request head; None if it is not one (400)."""
    parts = head.split(b"\r\n", 1)[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        return None
    try:
        method, target = parts[0].decode("ascii"), parts[1].decode("ascii")
        path, _, query = target.partition("?")
        # Fields beyond the first MAX_QUERY_FIELDS are ignored (a bookmark's tracking fields).
        fields = parse_qsl("&".join(query.split("&", MAX_QUERY_FIELDS)[:MAX_QUERY_FIELDS]))
    except UnicodeDecodeError:
        return None
    return Request(method, path, dict(fields))


@dataclass
class Health:
    """What /healthz and /readyz check, by name.

    `live`: /healthz (the broker connection, the OCPP server); `ready`: /readyz, what a
    load balancer needs before it sends chargers here (the OCPP server; a shared state
    store, once there is one, adds its check here). A broker outage fails /healthz but
    never /readyz: values are kept until the broker returns.
    """

    live: dict[str, Check]
    ready: dict[str, Check]
    charge_points: Callable[[], int]
    instance: str | None = None  # several instances: this one's name

    def report(self, checks: Mapping[str, Check]) -> Response:
        states = {name: "up" if check() else "down" for name, check in checks.items()}
        body: dict[str, object] = {**states, "charge_points": self.charge_points(), "version": __version__}
        if self.instance is not None:
            body["instance"] = self.instance
        status = HTTPStatus.OK if all(state == "up" for state in states.values()) else HTTPStatus.SERVICE_UNAVAILABLE
        return Response(status, json.dumps(body).encode(), JSON)


@dataclass
class Routes:
    """What each path answers."""

    health: Health
    registry: CollectorRegistry
    page: Callable[[status_page.Request], str]
    table: dict[str, Callable[[Request], Response]] = field(init=False)

    def __post_init__(self) -> None:
        self.table = {
            "/healthz": lambda _: self.health.report(self.health.live),
            "/readyz": lambda _: self.health.report(self.health.ready),
            "/metrics": lambda _: Response(HTTPStatus.OK, generate_latest(self.registry), CONTENT_TYPE_LATEST),
            "/": self._status_page,
        }

    def _status_page(self, request: Request) -> Response:
        body = self.page(status_page.Request.from_query(request.query)).encode()
        return Response(HTTPStatus.OK, body, HTML, (("Content-Security-Policy", PAGE_POLICY),))

    def answer(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return plain(HTTPStatus.METHOD_NOT_ALLOWED, "only GET and HEAD", ("Allow", "GET, HEAD"))
        route = self.table.get(request.path)
        if route is None:
            return plain(HTTPStatus.NOT_FOUND, "not found; try /, /healthz, /readyz or /metrics")
        return route(request)


class OpsHttpServer:
    def __init__(self, host: str, port: int, routes: Routes) -> None:
        self._host = host
        self._requested_port = port
        self._routes = routes
        self._server: asyncio.Server | None = None
        self._clients: dict[asyncio.Task[None], None] = {}  # oldest first
        self.port: int | None = None

    async def listen(self) -> None:
        """Bind HTTP_HOST:HTTP_PORT; HttpListenError (one line for the operator) if that fails."""
        try:
            self._server = await asyncio.start_server(
                self._serve_client, self._host, self._requested_port, limit=MAX_HEAD
            )
        except OSError as error:
            where = f"HTTP_HOST={self._host} HTTP_PORT={self._requested_port}"
            raise HttpListenError(f"cannot listen on {where}: {error.strerror or error}") from error
        self.port = self._server.sockets[0].getsockname()[1]
        LOG.info("operations HTTP server listening on http://%s:%s", self._host, self.port)

    def close(self) -> None:
        """Stop listening (when the service does not get as far as serve())."""
        if self._server is not None:
            self._server.close()

    async def serve(self) -> None:
        """Serve until cancelled; then stop listening and end the requests in progress."""
        assert self._server is not None, "listen() first"
        try:
            await self._server.serve_forever()
        finally:
            self._server.close()
            for client in self._clients:
                client.cancel()
            await asyncio.gather(*self._clients, return_exceptions=True)

    async def _serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # asyncio runs this in a task of its own per connection: tracked here, ended in serve().
        task = asyncio.current_task()
        if task is None:
            writer.transport.abort()
            return
        if len(self._clients) >= MAX_CLIENTS:
            # The oldest goes, not the newcomer: idle connections held open must not shut
            # the health check out (a request that is answered takes milliseconds).
            next(iter(self._clients)).cancel()
        self._clients[task] = None
        try:
            await self._exchange(reader, writer)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            writer.transport.abort()  # gone or too slow: nothing more to say, nothing to flush
        finally:
            self._clients.pop(task, None)
            writer.close()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            too_large = plain(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, f"request head over {MAX_HEAD} bytes")
            writer.write(too_large.encode())
        else:
            writer.write(self._respond(head))
        async with asyncio.timeout(WRITE_TIMEOUT_S):
            await writer.drain()

    def _respond(self, head: bytes) -> bytes:
        request = parse_request(head)
        if request is None:
            return plain(HTTPStatus.BAD_REQUEST, "not an HTTP/1.x request").encode()
        try:
            response = self._routes.answer(request)
        except Exception:  # a bug in a route must not end the server
            LOG.exception("operations HTTP server: answering %.100s failed", request.path)
            response = plain(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error; see the connector's log")
        return response.encode(with_body=request.method != "HEAD")
