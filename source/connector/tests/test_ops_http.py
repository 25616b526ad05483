"""The operations HTTP server: health, readiness, its settings, and its strictness as a server."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from connector import __version__, ops_http, status_page
from connector.ops_http import Health, OpsHttpServer, Routes, parse_request
from connector.settings import Settings, SettingsError
from connector.tests.conftest import RunningConnector, start_connector
from connector.tests.harness import (
    WAIT_S,
    ChargerLink,
    Mosquitto,
    MqttProbe,
    base_env,
    http_request,
    run_connector,
    send,
    spawn_connector,
)

HEALTH_DEADLINE_S = 10.0  # INTERFACE.md section 9: 503 within 10 s of the broker going away
POLL_S = 0.1


def ops_port(running: RunningConnector) -> int:
    assert running.service.ops_http is not None and running.service.ops_http.port is not None
    return running.service.ops_http.port


async def until_status(port: int, path: str, status: int, within: float) -> dict[str, object]:
    """Poll `path` (as a load balancer does) until it answers `status`; its JSON body."""
    async with asyncio.timeout(within):
        while True:
            answer = await http_request(port, path)
            if answer.status == status:
                body: dict[str, object] = answer.json()
                return body
            await asyncio.sleep(POLL_S)


# -- settings ------------------------------------------------------------------------


def test_http_settings_default_to_every_address_and_port_8080() -> None:
    """Unset, HTTP_HOST is 0.0.0.0 and HTTP_PORT 8080 (INTERFACE.md section 9)."""
    settings = Settings.from_env({})
    assert (settings.http_host, settings.http_port) == ("0.0.0.0", 8080)


@pytest.mark.parametrize(("raw", "port"), [("off", None), ("OFF", None), ("0", 0), ("9100", 9100)])
def test_http_port_takes_a_port_zero_or_off(raw: str, port: int | None) -> None:
    """HTTP_PORT is a port, 0 (any free one) or `off` (no server)."""
    assert Settings.from_env({"HTTP_PORT": raw}).http_port == port


@pytest.mark.parametrize("raw", ["70000", "-1", "eighty", "8080.5", "²"])
def test_a_bad_http_port_is_reported_with_what_it_accepts(raw: str) -> None:
    """A bad HTTP_PORT is a configuration problem naming the variable, the range and `off`."""
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"HTTP_PORT": raw})
    assert raised.value.problems == [f"HTTP_PORT={raw!r} is not valid; use a port 0..65535 (0: any free port) or off"]


# -- health and readiness --------------------------------------------------------------


async def test_healthz_says_what_is_up_and_counts_charge_points(connector: RunningConnector) -> None:
    """/healthz answers 200 with mqtt, ocpp, the connected charge points and the version."""
    port = ops_port(connector)
    answer = await http_request(port, "/healthz")
    assert answer.status == 200 and answer.headers["content-type"] == "application/json"
    assert answer.json() == {"mqtt": "up", "ocpp": "up", "charge_points": 0, "version": __version__}
    async with ChargerLink(connector.url, "CP_health") as charger:
        await send(charger, "boot_notification")
        assert (await http_request(port, "/healthz")).json()["charge_points"] == 1


async def test_a_broker_outage_fails_healthz_within_10_s_but_never_readyz(tmp_path: Path) -> None:
    """Stopping the broker turns /healthz 503 naming mqtt within 10 s; /readyz stays 200; both recover."""
    broker = Mosquitto(tmp_path / "broker")
    broker.directory.mkdir()
    broker.start()
    probe = MqttProbe(broker.port)
    await probe.subscribe("outage/#")
    env = {**base_env(broker, "outage", tmp_path), "OCPP_RESPONSE_TIMEOUT": "5"}
    running = await start_connector(env, probe)
    try:
        port = ops_port(running)
        assert (await http_request(port, "/healthz")).status == 200
        broker.stop()
        stopped = time.monotonic()
        body = await until_status(port, "/healthz", 503, HEALTH_DEADLINE_S)
        assert time.monotonic() - stopped < HEALTH_DEADLINE_S
        assert body["mqtt"] == "down" and body["ocpp"] == "up"
        ready = await http_request(port, "/readyz")
        assert ready.status == 200 and ready.json()["ocpp"] == "up"
        broker.start()
        body = await until_status(port, "/healthz", 200, WAIT_S)
        assert body["mqtt"] == "up"
    finally:
        await running.stop()
        probe.close()
        broker.stop()


async def test_a_broker_gone_silent_fails_healthz_within_10_s(tmp_path: Path) -> None:
    """A frozen broker (SIGSTOP: the connection stays open, nothing answers) turns /healthz 503 within 10 s."""
    broker = Mosquitto(tmp_path / "broker")
    broker.directory.mkdir()
    broker.start()
    assert broker.process is not None
    probe = MqttProbe(broker.port)
    await probe.subscribe("silent/#")
    running = await start_connector(base_env(broker, "silent", tmp_path), probe)
    try:
        port = ops_port(running)
        assert (await http_request(port, "/healthz")).status == 200
        broker.process.send_signal(signal.SIGSTOP)
        frozen = time.monotonic()
        body = await until_status(port, "/healthz", 503, HEALTH_DEADLINE_S + 2)
        assert time.monotonic() - frozen < HEALTH_DEADLINE_S
        assert body["mqtt"] == "down"
    finally:
        broker.process.send_signal(signal.SIGCONT)
        await running.stop()
        probe.close()
        broker.stop()


async def test_readyz_answers_503_once_the_ocpp_server_stops_listening(connector: RunningConnector) -> None:
    """While the service shuts down (OCPP no longer listening), /readyz and /healthz answer 503 naming ocpp."""
    port = ops_port(connector)
    assert (await http_request(port, "/readyz")).status == 200
    connector.service.dispatcher._stopping = True  # the state serve_until enters at SIGTERM
    try:
        ready, health = await http_request(port, "/readyz"), await http_request(port, "/healthz")
    finally:
        connector.service.dispatcher._stopping = False
    assert ready.status == 503 and ready.json()["ocpp"] == "down"
    assert health.status == 503 and health.json()["ocpp"] == "down"


# -- start and stop --------------------------------------------------------------------


async def test_port_0_gets_a_free_port_that_is_logged(broker: Mosquitto, tmp_path: Path) -> None:
    """With HTTP_PORT=0 the connector logs the port it got, and /healthz answers there."""
    process = await spawn_connector(base_env(broker, "http-port-0", tmp_path), tmp_path)
    try:
        found = await process.wait_for_line(r"operations HTTP server listening on http://127\.0\.0\.1:(\d+)")
        await process.wait_for_line("connected to MQTT broker")
        answer = await http_request(int(found.group(1)), "/healthz")
        assert answer.status == 200, answer.body
    finally:
        await process.kill()


def test_a_taken_http_port_stops_the_start_with_status_2(broker: Mosquitto, tmp_path: Path) -> None:
    """An HTTP port in use stops the start with status 2 and one line naming HTTP_PORT, no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**base_env(broker, "http-taken", tmp_path), "HTTP_PORT": str(port)}
        code, stderr = run_connector(env, tmp_path)
    assert code == 2, stderr
    assert f"HTTP_PORT={port}" in stderr and "Traceback" not in stderr


async def test_http_port_off_starts_no_server(settings_env: dict[str, str], probe: MqttProbe) -> None:
    """With HTTP_PORT=off the connector serves OCPP and MQTT and has no operations server."""
    running = await start_connector({**settings_env, "HTTP_PORT": "off"}, probe)
    try:
        assert running.service.ops_http is None
    finally:
        await running.stop()


async def test_shutdown_ends_open_http_connections_within_the_budget(connector: RunningConnector) -> None:
    """A client holding an unfinished request does not delay the stop, and the port closes."""
    port = ops_port(connector)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\n")  # never finished
    await writer.drain()
    started = time.monotonic()
    await connector.stop()
    assert time.monotonic() - started < 5.0
    async with asyncio.timeout(WAIT_S):
        assert await reader.read() == b""  # closed by the server
    writer.close()
    with pytest.raises(OSError):
        await http_request(port, "/healthz")


# -- the server's strictness -----------------------------------------------------------


def routes() -> Routes:
    """Routes over fixed state: everything up, no charge points."""
    health = Health(live={"ocpp": lambda: True}, ready={"ocpp": lambda: True}, charge_points=lambda: 0)

    def render(request: status_page.Request) -> str:
        return f"<p>{request.search}</p>"

    return Routes(health, CollectorRegistry(), render)


@pytest.fixture
async def server() -> AsyncIterator[OpsHttpServer]:
    running = OpsHttpServer("127.0.0.1", 0, routes())
    await running.listen()
    task = asyncio.create_task(running.serve())
    yield running
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def port_of(server: OpsHttpServer) -> int:
    assert server.port is not None
    return server.port


async def test_other_methods_get_405_naming_get_and_head(server: OpsHttpServer) -> None:
    """POST (or any method but GET and HEAD) is answered 405 with Allow: GET, HEAD."""
    answer = await http_request(port_of(server), "/healthz", method="POST")
    assert answer.status == 405 and answer.headers["allow"] == "GET, HEAD"


async def test_unknown_paths_get_404(server: OpsHttpServer) -> None:
    """A path the server does not serve is answered 404."""
    assert (await http_request(port_of(server), "/admin")).status == 404


async def test_head_answers_the_headers_without_the_body(server: OpsHttpServer) -> None:
    """HEAD /healthz answers 200 with the body's length and no body."""
    get = await http_request(port_of(server), "/healthz")
    head = await http_request(port_of(server), "/healthz", method="HEAD")
    assert head.status == 200 and head.body == b""
    assert head.headers["content-length"] == str(len(get.body))


async def test_a_request_head_over_the_limit_gets_431(server: OpsHttpServer) -> None:
    """A request head longer than MAX_HEAD bytes is answered 431 without reading further."""
    raw = b"GET /healthz HTTP/1.1\r\nX-Long: " + b"a" * ops_http.MAX_HEAD + b"\r\n\r\n"
    assert (await http_request(port_of(server), "", raw=raw)).status == 431


@pytest.mark.parametrize("raw", [b"\x16\x03\x01 hello\r\n\r\n", b"GET /\r\n\r\n", b"GET /\xff HTTP/1.1\r\n\r\n"])
async def test_what_is_not_an_http_request_gets_400(server: OpsHttpServer, raw: bytes) -> None:
    """A TLS hello, an HTTP/0.9 line or a non-ASCII target is answered 400."""
    assert (await http_request(port_of(server), "", raw=raw)).status == 400


async def test_a_client_that_sends_nothing_is_cut_off(server: OpsHttpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection that sends no complete request head within REQUEST_TIMEOUT_S is closed."""
    monkeypatch.setattr(ops_http, "REQUEST_TIMEOUT_S", 0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
    async with asyncio.timeout(WAIT_S):
        assert await reader.read() == b""
    writer.close()


async def test_beyond_max_clients_the_oldest_connection_goes_and_the_newcomer_is_served(
    server: OpsHttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With MAX_CLIENTS connections held open silently, a health check is still answered: the oldest is closed."""
    monkeypatch.setattr(ops_http, "MAX_CLIENTS", 2)
    held = [await asyncio.open_connection("127.0.0.1", port_of(server)) for _ in range(2)]
    for _, writer in held:
        writer.write(b"GET /healthz HTTP/1.1\r\n")  # a request in progress, never finished
    # The server takes connections in the order they arrived: the two are in before this one.
    assert (await http_request(port_of(server), "/healthz")).status == 200
    oldest_reader = held[0][0]
    async with asyncio.timeout(WAIT_S):
        assert await oldest_reader.read() == b""  # closed, unanswered
    for _, writer in held:
        writer.close()


async def test_a_failing_route_answers_500_and_the_server_keeps_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    """A route that raises is answered 500 (and logged); the next request is served."""
    table = routes()

    def broken(request: status_page.Request) -> str:
        raise RuntimeError("bug")

    table.page = broken
    running = OpsHttpServer("127.0.0.1", 0, table)
    await running.listen()
    task = asyncio.create_task(running.serve())
    try:
        assert (await http_request(port_of(running), "/")).status == 500
        assert (await http_request(port_of(running), "/healthz")).status == 200
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_the_query_is_decoded_and_bounded() -> None:
    """The query string is percent-decoded; fields beyond MAX_QUERY_FIELDS are ignored, not an error."""
    parsed = parse_request(b"GET /?q=CP%201&page=2 HTTP/1.1\r\n\r\n")
    assert parsed is not None and parsed.query == {"q": "CP 1", "page": "2"}
    many = "&".join(f"f{i}=1" for i in range(ops_http.MAX_QUERY_FIELDS + 5))
    parsed = parse_request(f"GET /?{many} HTTP/1.1\r\n\r\n".encode())
    assert parsed is not None and list(parsed.query) == [f"f{i}" for i in range(ops_http.MAX_QUERY_FIELDS)]


def test_health_lists_every_check_and_fails_on_any_down() -> None:
    """Health.report names each check up or down and answers 503 if any is down."""
    health = Health(live={"mqtt": lambda: False, "ocpp": lambda: True}, ready={}, charge_points=lambda: 3)
    response = health.report(health.live)
    assert response.status == 503
    assert json.loads(response.body) == {"mqtt": "down", "ocpp": "up", "charge_points": 3, "version": __version__}
