"""A broker the connector cannot reach is reported with host:port and the reason, throttled, and retried."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import trustme
from paho.mqtt.enums import CallbackAPIVersion

from connector.mqtt_client import (
    QUICKACK,
    UNCOPIED_PAYLOAD_BYTES,
    WRITE_BUDGET_BYTES,
    WRITE_DUE_S,
    Client,
    FailureReports,
)
from connector.service import Service
from connector.settings import Settings
from connector.tests.harness import WAIT_S, Mosquitto, MqttProbe


class Records(logging.Handler):
    """Log records of the connector, from any thread, that a test can await."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self._loop.call_soon_threadsafe(self._add, record)

    def _add(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self._changed.set()

    async def wait_for(self, predicate: Callable[[logging.LogRecord], bool]) -> logging.LogRecord:
        async with asyncio.timeout(WAIT_S):
            while True:
                found = next((r for r in self.records if predicate(r)), None)
                if found is not None:
                    return found
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
async def records() -> AsyncIterator[Records]:
    handler = Records()
    logger = logging.getLogger("connector")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
async def run_service(settings_env: dict[str, str]) -> AsyncIterator[Callable[[dict[str, str]], Service]]:
    """Starts a connector in this loop with changed settings; stops it at the end of the test."""
    running: list[tuple[Service, asyncio.Task[None]]] = []

    def start(changes: dict[str, str]) -> Service:
        service = Service(Settings.from_env({**settings_env, **changes}))
        running.append((service, asyncio.create_task(service.run())))
        return service

    yield start
    for service, task in running:
        service.stop.set()
        async with asyncio.timeout(WAIT_S):
            await task


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    yield str(path)


def connect_failure(record: logging.LogRecord) -> bool:
    return record.getMessage().startswith("cannot connect to MQTT broker")


async def test_a_refused_connection_is_reported_and_retried_until_the_broker_is_there(
    run_service: Callable[[dict[str, str]], Service], records: Records, tmp_path: Path
) -> None:
    """Nothing listening: one WARNING naming host:port and "connection refused"; once a broker starts, connected."""
    broker = Mosquitto(tmp_path)
    run_service({"MQTT_BROKER_PORT": str(broker.port)})
    warning = await records.wait_for(connect_failure)
    broker.start()
    try:
        connected = await records.wait_for(lambda r: r.getMessage().startswith("connected to MQTT broker"))
    finally:
        broker.stop()
    assert warning.levelno == logging.WARNING
    assert warning.getMessage().startswith(f"cannot connect to MQTT broker 127.0.0.1:{broker.port}: connection refused")
    assert f"127.0.0.1:{broker.port} (after " in connected.getMessage()
    assert len([r for r in records.records if connect_failure(r)]) == 1  # the retries are counted, not logged


async def test_an_unresolvable_name_is_reported(
    run_service: Callable[[dict[str, str]], Service], records: Records
) -> None:
    """A broker host name that does not resolve is a WARNING naming it and "name not resolved"."""
    run_service({"MQTT_BROKER_HOST": "broker.invalid", "MQTT_BROKER_PORT": "1883"})
    warning = await records.wait_for(connect_failure)
    assert warning.levelno == logging.WARNING
    assert warning.getMessage().startswith("cannot connect to MQTT broker broker.invalid:1883: name not resolved")


async def test_a_tls_failure_is_an_error(
    run_service: Callable[[dict[str, str]], Service], records: Records, broker: Mosquitto, ca_file: str
) -> None:
    """MQTT_TLS_CA_FILE against a broker that does not speak TLS: an ERROR saying "TLS failure"."""
    run_service({"MQTT_TLS_CA_FILE": ca_file})
    error = await records.wait_for(connect_failure)
    assert error.levelno == logging.ERROR
    assert error.getMessage().startswith(f"cannot connect to MQTT broker 127.0.0.1:{broker.port}: TLS failure")


async def test_refused_credentials_are_an_error(
    run_service: Callable[[dict[str, str]], Service], records: Records, tmp_path: Path
) -> None:
    """A broker that refuses the credentials: an ERROR with host:port and the broker's reason, no password."""
    broker = Mosquitto(tmp_path, extra_config="allow_anonymous false\n")  # no one is allowed in
    broker.start()
    try:
        run_service({"MQTT_BROKER_PORT": str(broker.port), "MQTT_USERNAME": "u", "MQTT_PASSWORD": "pw-Kx81"})
        error = await records.wait_for(connect_failure)
    finally:
        broker.stop()
    assert error.levelno == logging.ERROR
    assert error.getMessage().startswith(
        f"cannot connect to MQTT broker 127.0.0.1:{broker.port}: refused by the broker (Not authorized)"
    )
    assert not any("pw-Kx81" in r.getMessage() for r in records.records)


def test_failures_are_reported_once_per_interval_and_reason_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    """The first failure of each reason is logged at once; repeats within the interval are counted into the next."""
    now = [0.0]
    reports = FailureReports(interval=30.0, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="connector.mqtt_client"):
        for _ in range(5):
            reports.failed("b:1883", "connection refused")
        reports.failed("b:1883", "name not resolved")
        now[0] = 31.0
        reports.failed("b:1883", "connection refused")
    assert [r.getMessage().split("; retrying ")[1] for r in caplog.records] == [
        "(0 more failed attempts since the last report)",
        "(0 more failed attempts since the last report)",
        "(4 more failed attempts since the last report)",
    ]
    assert [r.getMessage().split(": ")[1].split(";")[0] for r in caplog.records] == [
        "connection refused",
        "name not resolved",
        "connection refused",
    ]
    assert reports.connected() == 7 and reports.failures == 0


def connected_record(record: logging.LogRecord) -> bool:
    return record.getMessage().startswith("connected to MQTT broker")


async def test_reconnecting_after_a_broker_restart_takes_at_most_a_few_seconds(
    run_service: Callable[[dict[str, str]], Service], records: Records, tmp_path: Path
) -> None:
    """The back-off is capped at 2 s: after an 8 s outage the connector is back within 5 s (with paho's 30 s cap
    the next attempt would come 7 s after the broker's return: 1, 2, 4, 8 s apart)."""
    broker = Mosquitto(tmp_path)
    broker.start()
    try:
        run_service({"MQTT_BROKER_PORT": str(broker.port)})
        await records.wait_for(connected_record)
        broker.stop()
        await records.wait_for(lambda r: r.getMessage().startswith("MQTT connection lost"))
        since = len(records.records)
        await asyncio.to_thread(time.sleep, 8)  # the outage itself (not a wait for an event)
        broker.start()
        returned = time.monotonic()
        await records.wait_for(lambda r: connected_record(r) and records.records.index(r) >= since)
        took = time.monotonic() - returned
    finally:
        broker.stop()
    assert took < 5.0  # 2 s at most by design; the margin is for a busy CI machine


@pytest.mark.parametrize(("cmd", "qos"), [("PUBACK", 1), ("PUBCOMP", 2)])
def test_acknowledgements_are_handled_as_paho_handles_them(cmd: str, qos: int) -> None:
    """The fast path gives on_publish what paho's own decoding gives, once per message, for MQTT 3.1.1."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from connector.mqtt_client import Client

    def acknowledged(handle: Callable[[mqtt.Client, str], object], client: mqtt.Client) -> list[tuple[object, ...]]:
        seen: list[tuple[object, ...]] = []
        client.on_publish = lambda c, u, mid, reason, props: seen.append((mid, str(reason), props.json()))
        mid = client.publish("t", b"x", qos=qos).mid  # not connected: kept, awaiting its acknowledgement
        for packet in (bytes([mid >> 8, mid & 0xFF]), bytes([mid >> 8, mid & 0xFF])):  # the second is a repeat
            client._in_packet["packet"] = bytearray(packet)  # paho's own seam: the packet being handled
            handle(client, cmd)
        return seen

    ours = acknowledged(Client._handle_pubackcomp, Client(CallbackAPIVersion.VERSION2))  # type: ignore[arg-type]
    pahos = acknowledged(mqtt.Client._handle_pubackcomp, mqtt.Client(CallbackAPIVersion.VERSION2))  # type: ignore[arg-type]
    assert ours == pahos and len(ours) == 1


def test_the_fast_paths_are_written_for_the_installed_paho() -> None:
    """An upgraded paho falls back to its own handling: this says so, so the override is re-checked."""
    import paho.mqtt

    from connector.mqtt_client import FAST_PATHS_FOR

    assert paho.mqtt.__version__ == FAST_PATHS_FOR, "re-check mqtt_client.Client's overrides against paho's"


@pytest.fixture
def wired() -> Iterator[tuple[Client, socket.socket]]:
    """Our client on one end of a socketpair (paho's own seam: its connected socket), the broker's end."""
    client = Client(CallbackAPIVersion.VERSION2)
    ours, broker = socket.socketpair()
    ours.setblocking(False)
    broker.setblocking(False)
    client._sock = ours
    yield client, broker
    client._sock = None
    ours.close()
    broker.close()


def test_reads_are_buffered_and_handed_out_as_paho_asks(wired: tuple[Client, socket.socket]) -> None:
    """One system call takes what the socket has; paho's 1-byte reads come from the buffer, in order."""
    client, broker = wired
    broker.sendall(b"\x40\x02\x00\x01\x40\x02\x00\x02")  # two PUBACKs
    taken = [client._sock_recv(1), client._sock_recv(1), client._sock_recv(2)]
    assert taken == [b"\x40", b"\x02", b"\x00\x01"]
    assert client.input_buffered  # the second PUBACK: read, not yet handed out
    assert client._sock_recv(100) == b"\x40\x02\x00\x02"  # never more than there is
    assert not client.input_buffered
    with pytest.raises(BlockingIOError):
        client._sock_recv(1)
    broker.close()
    assert client._sock_recv(1) == b""  # closed by the broker: as paho expects it


@pytest.mark.skipif(QUICKACK is None, reason="TCP_QUICKACK is Linux's")
def test_what_is_read_is_acknowledged_at_once() -> None:
    """After a read the connection is out of the delayed-ACK mode it had entered (see
    `Client._acknowledge_at_once`): the broker's next small packet does not wait for it."""
    assert QUICKACK is not None
    with socket.create_server(("127.0.0.1", 0)) as server:
        ours = socket.create_connection(server.getsockname())
        broker, _ = server.accept()
    with ours, broker:

        def delayed_acks() -> bool:
            return ours.getsockopt(socket.IPPROTO_TCP, QUICKACK) == 0

        for _ in range(5):  # answering at once what arrives: Linux's interactive (delayed-ACK) mode
            broker.sendall(b"\x40\x02\x00\x01")
            ours.recv(4)
            ours.sendall(b"\x40\x02\x00\x01")
            broker.recv(4)
        assert delayed_acks()
        broker.sendall(b"\x40\x02\x00\x02")
        ours.recv(4)
        assert delayed_acks()  # a plain read leaves it so
        client = Client(CallbackAPIVersion.VERSION2)
        client._sock = ours
        broker.sendall(b"\x40\x02\x00\x03")
        assert client._sock_recv(4) == b"\x40\x02\x00\x03"
        assert not delayed_acks()
        client._sock = None


def connected_line(record: logging.LogRecord) -> bool:
    return record.getMessage().startswith("connected to MQTT broker")


async def test_several_brokers_the_first_reachable_serves_and_a_lost_one_fails_over(
    run_service: Callable[[dict[str, str]], Service], records: Records, tmp_path: Path
) -> None:
    """MQTT_BROKER_HOST=a,b: a is down, so b; b stops and a is back, so a, where the connector publishes."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = Mosquitto(tmp_path / "a"), Mosquitto(tmp_path / "b")
    second.start()
    try:
        hosts = f"127.0.0.1:{first.port},127.0.0.1:{second.port}"
        service = run_service({"MQTT_BROKER_HOST": hosts, "MQTT_BROKER_PORT": "1"})
        on_second = await records.wait_for(connected_line)
        first.start()
        second.stop()
        on_first = await records.wait_for(lambda r: connected_line(r) and r is not on_second)
        probe = MqttProbe(first.port)
        await probe.subscribe(f"{service.settings.connector_name}/#")
        state = await probe.wait_for(f"{service.settings.connector_name}/state")  # the connector publishes here
        probe.close()
    finally:
        first.stop()
        second.stop()
    refused = next(r for r in records.records if connect_failure(r))
    assert refused.getMessage().startswith(f"cannot connect to MQTT broker 127.0.0.1:{first.port}: connection refused")
    assert f"127.0.0.1:{second.port} (after 1 failed attempts)" in on_second.getMessage()
    assert f"127.0.0.1:{first.port} (after " in on_first.getMessage()
    assert state == {"state": "online"}


def test_packets_written_in_one_loop_write_leave_in_one_system_call(wired: tuple[Client, socket.socket]) -> None:
    """paho's packets are collected, then sent together; what the socket does not take waits."""
    client, broker = wired
    assert client._sock_send(b"\x30\x03") == 2  # taken at once, as a socket would
    assert client._sock_send(b"abc") == 3
    with pytest.raises(BlockingIOError):
        broker.recv(100)  # nothing on the wire yet
    assert client.want_write()
    client.loop_write()
    assert broker.recv(100) == b"\x30\x03abc"
    assert not client.want_write()


def test_what_the_socket_does_not_take_waits_and_goes_on_in_order(wired: tuple[Client, socket.socket]) -> None:
    """A write larger than the socket takes at once: the rest goes with the next writable events, nothing lost."""
    client, broker = wired
    big = bytes(range(256)) * 40_000  # 10 MB: more than a socket buffer holds
    received = bytearray()
    client._sock_send(b"head")
    client._sock_send(memoryview(big))
    client._sock_send(b"tail")
    while client.want_write() or len(received) < len(big) + 8:
        client.loop_write()
        with contextlib.suppress(BlockingIOError):
            while chunk := broker.recv(1 << 20):
                received += chunk
    assert bytes(received) == b"head" + big + b"tail"


def drain(broker: socket.socket) -> bytes:
    received = bytearray()
    with contextlib.suppress(BlockingIOError):
        while chunk := broker.recv(1 << 20):
            received += chunk
    return bytes(received)


@pytest.mark.parametrize(("qos", "dup", "retain"), [(1, False, True), (0, False, False), (2, True, True)])
def test_a_large_payload_leaves_as_paho_sends_it_and_is_not_copied(
    wired: tuple[Client, socket.socket], qos: int, dup: bool, retain: bool
) -> None:
    """The listing's PUBLISH, a resend's too (dup): paho's own bytes, the payload sent from where it lies."""
    client, broker = wired
    payload = bytes(range(256)) * 1024  # 256 KiB, over UNCOPIED_PAYLOAD_BYTES
    assert len(payload) >= UNCOPIED_PAYLOAD_BYTES
    plain = mqtt.Client(CallbackAPIVersion.VERSION2)
    plain_ours, plain_broker = socket.socketpair()
    with plain_ours, plain_broker:
        plain._sock = plain_ours  # paho's own packet, for comparison
        plain_ours.setblocking(False)
        plain_broker.setblocking(False)
        plain._send_publish(7, b"N/available_datapoints", payload, qos, retain, dup, mqtt.MQTTMessageInfo(7))
        expected = bytearray()
        while plain.want_write() or len(expected) < len(payload):
            plain.loop_write()
            expected += drain(plain_broker)
        plain._sock = None
    client._send_publish(7, b"N/available_datapoints", payload, qos, retain, dup, mqtt.MQTTMessageInfo(7))
    assert any(isinstance(part, memoryview) and part.obj is payload for part in client._output)
    received = bytearray()
    while client.want_write() or len(received) < len(expected):
        client.loop_write()
        received += drain(broker)
    assert bytes(received) == expected
    assert expected.endswith(payload) and len(expected) > len(payload)


def test_one_write_event_hands_the_socket_its_budget_at_most(wired: tuple[Client, socket.socket]) -> None:
    """A large packet goes out over several turns of the loop, leaving room between them for the rest."""
    client, broker = wired
    client._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)  # type: ignore[union-attr]
    broker.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    big = bytes(4 * WRITE_BUDGET_BYTES)
    client._sock_send(b"head")
    client._sock_send(memoryview(big))
    client.loop_write()
    first = drain(broker)
    assert 0 < len(first) <= WRITE_BUDGET_BYTES
    assert client.want_write()  # the rest: on the next writable events
    received = bytearray(first)
    while client.want_write():
        client.loop_write()
        received += drain(broker)
    assert bytes(received) == b"head" + big


def test_a_packet_queued_long_after_the_last_write_goes_out_at_once(wired: tuple[Client, socket.socket]) -> None:
    """Within one long turn of the loop, MQTT keeps flowing: a packet due is written when queued."""
    client, broker = wired
    client.on_socket_register_write = lambda *_: None  # as mqtt_loop.LoopDriver: writes wait for the loop
    client.writer_thread = threading.get_ident()  # ... which runs on this thread
    client.loop_write()  # just written: the next packet waits for the loop's write event
    client._packet_queue(mqtt.PINGREQ, bytearray(b"\xc0\x00"), 0, 0)
    assert drain(broker) == b""
    client.wrote_at -= WRITE_DUE_S  # ... until the last write is WRITE_DUE_S old
    client._packet_queue(mqtt.PINGREQ, bytearray(b"\xc0\x00"), 0, 0)
    assert drain(broker) == b"\xc0\x00\xc0\x00"
    client.wrote_at -= WRITE_DUE_S
    client.writer_thread = None  # another thread's packet (the connecting one's CONNECT) waits for the loop
    client._packet_queue(mqtt.PINGREQ, bytearray(b"\xc0\x00"), 0, 0)
    assert drain(broker) == b""
