"""Limits: frame size, connections, handshake time, message rate, keys per charge point.

The pure parts with a settable clock; then each limit end to end against a real
connector, real WebSockets (raw frames where a peer must misbehave) and real mosquitto:
the peer beyond it is cut off with its close code or HTTP status and a log line naming
the setting, and another charge point is served all along.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import websockets
from pytest_mock import MockerFixture
from websockets.exceptions import ConnectionClosed, InvalidStatus

from connector.datapoints import Datapoint
from connector.limits import SPARE_FILES, MessageRate, RefusalLog, Throttled, raise_open_files_limit
from connector.registry import MAX_KEY_CHARS, ActuatorRef, KeyLimitError, KeyTooLongError, Registry
from connector.tests.conftest import RunningConnector, start_connector
from connector.tests.harness import WAIT_S, ChargerLink, MqttProbe, RawLink, send

StartLimited = Callable[..., Awaitable[RunningConnector]]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_message_rate_allows_a_burst_then_the_rate() -> None:
    """10 s worth of the rate at once, then one frame per 1/rate seconds; 0 means no limit."""
    clock = Clock()
    rate = MessageRate(2.0, clock)
    assert all(rate.allow() for _ in range(20))
    assert not rate.allow()
    clock.now += 0.5
    assert rate.allow() and not rate.allow()
    clock.now += 1000
    assert sum(rate.allow() for _ in range(30)) == 20  # the burst refills, never beyond
    slow = MessageRate(0.05, clock)  # below 0.1/s the burst would be under one frame
    assert slow.allow() and not slow.allow()
    unlimited = MessageRate(0.0, clock)
    assert all(unlimited.allow() for _ in range(100_000))


def test_throttled_warning_counts_what_it_holds_back() -> None:
    clock = Clock()
    throttled = Throttled(10.0, clock)
    assert throttled.ready()
    assert not throttled.ready() and not throttled.ready()
    clock.now += 10
    assert throttled.ready() and throttled.take_suppressed() == 2


def test_refusal_log_writes_one_line_per_interval_per_reason_with_the_count(caplog: pytest.LogCaptureFixture) -> None:
    """Each reason gets one WARNING per interval; the next one counts those held back, other reasons are apart."""
    clock = Clock()
    log = RefusalLog(logging.getLogger("test.refusals"), 10.0, clock)
    with caplog.at_level(logging.WARNING, "test.refusals"):
        for number in range(50):
            log.report("HTTP 401 refusals", "%s: refused", f"CP_{number}")
        log.report("HTTP 403 refusals", "%s: not allowed", "CP_X")
        clock.now += 10
        log.report("HTTP 401 refusals", "%s: refused", "CP_LAST")
    assert caplog.messages == [
        "CP_0: refused",
        "CP_X: not allowed",
        "CP_LAST: refused (49 more HTTP 401 refusals since the last report)",
    ]


def test_open_files_limit_is_raised_towards_what_the_connections_need() -> None:
    """The soft limit goes up to what both kinds of connection need + spare (capped by the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        budget = raise_open_files_limit(1000, 200)
        now_soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        assert now_soft == budget.soft_limit == min(1200 + SPARE_FILES, hard)
        assert budget.connections + budget.unauthenticated <= now_soft - SPARE_FILES
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_low_hard_limit_shrinks_both_kinds_in_proportion(mocker: MockerFixture) -> None:
    """Where the hard limit is below the need, authenticated and unauthenticated places share what fits, 5:1 here."""
    # Faked: lowering the real hard limit could not be undone without root.
    mocker.patch("connector.limits.resource.getrlimit", return_value=(SPARE_FILES + 600, SPARE_FILES + 600))
    mocker.patch("connector.limits.resource.setrlimit")
    budget = raise_open_files_limit(25_000, 5_000)
    assert (budget.connections, budget.unauthenticated, budget.soft_limit) == (500, 100, SPARE_FILES + 600)


def test_registry_caps_new_keys_per_charge_point() -> None:
    """Beyond the cap a charge point's new keys are refused; its known keys and others' still go in."""
    registry = Registry(max_keys_per_cp=3)
    for name in ("a", "b", "c"):
        assert registry.add_sensor(Datapoint(f"CP_1__{name}", 1, 0), "CP_1")
    with pytest.raises(KeyLimitError):
        registry.add_sensor(Datapoint("CP_1__d", 1, 0), "CP_1")
    with pytest.raises(KeyLimitError):
        registry.add_actuator("CP_1__execute_reset", ActuatorRef("CP_1", "execute_reset", 0), "Soft")
    assert registry.add_sensor(Datapoint("CP_1__a", 2, 0), "CP_1") is False
    assert registry.sensors["CP_1__a"].value == 2
    assert registry.add_sensor(Datapoint("CP_2__a", 1, 0), "CP_2")
    assert registry.add_sensor(Datapoint("status-of-a-mapped-key", 1, 0), None)
    assert "CP_1__d" not in registry.sensors


def test_a_key_too_long_is_measured_after_the_identity() -> None:
    """MAX_KEY_CHARS counts what follows `<cp>__`: a long identity's keys go in, a long minted part does not."""
    long_cp = "L" * 600
    registry = Registry()
    assert registry.add_sensor(Datapoint(f"{long_cp}__connected", True, 0), long_cp)
    suffix = "x" * (MAX_KEY_CHARS - 2)  # with its "__": exactly MAX_KEY_CHARS after the identity
    assert registry.add_sensor(Datapoint(f"CP_1__{suffix}", 1, 0), "CP_1")
    with pytest.raises(KeyTooLongError):
        registry.add_sensor(Datapoint(f"CP_1__{suffix}y", 1, 0), "CP_1")


# -- end to end ------------------------------------------------------------------------


@pytest.fixture
async def limited(settings_env: dict[str, str], probe: MqttProbe) -> AsyncIterator[StartLimited]:
    started: list[RunningConnector] = []

    async def start(**limits: str) -> RunningConnector:
        running = await start_connector({**settings_env, **limits}, probe)
        started.append(running)
        return running

    yield start
    for running in started:
        if not running.task.done():
            await running.stop()


async def warning(probe: MqttProbe, running: RunningConnector, text: str) -> str:
    log = await probe.wait_for(running.topic("logs"), lambda p: p["level"] == 30 and text in p["msg"])
    return str(log["msg"])


async def still_served(running: RunningConnector, cp: str = "CP_OK") -> None:
    async with RawLink(running.url, cp) as other:
        assert (await other.exchange('[2,"h","Heartbeat",{}]'))[:2] == [3, "h"]


async def closed_with(connection: websockets.ClientConnection) -> int | None:
    async with asyncio.timeout(WAIT_S):
        await connection.wait_closed()
    return connection.close_code


async def test_frame_too_big_is_closed_1009(limited: StartLimited, probe: MqttProbe) -> None:
    """A frame beyond OCPP_MAX_FRAME_SIZE closes the connection with 1009 and a WARNING naming the setting."""
    running: RunningConnector = await limited(OCPP_MAX_FRAME_SIZE="2048")
    async with RawLink(running.url, "CP_BIG") as link:
        fits = json.dumps([2, "ok", "DataTransfer", {"vendorId": "V", "data": "x" * 1900}])
        assert (await link.exchange(fits))[:2] == [3, "ok"]
        await link.connection.send(json.dumps([2, "big", "DataTransfer", {"vendorId": "V", "data": "x" * 4000}]))
        code = await closed_with(link.connection)
    log = await warning(probe, running, "CP_BIG: disconnected with close code 1009")
    await still_served(running)
    assert code == 1009
    assert "OCPP_MAX_FRAME_SIZE" in log


async def test_connections_beyond_the_maximum_get_503(limited: StartLimited, probe: MqttProbe) -> None:
    """With OCPP_MAX_CONNECTIONS open, the next handshake is refused with HTTP 503; once one leaves, it is served."""
    running: RunningConnector = await limited(OCPP_MAX_CONNECTIONS="2")
    async with RawLink(running.url, "CP_A"), RawLink(running.url, "CP_B") as second:
        with pytest.raises(InvalidStatus) as refused:
            async with RawLink(running.url, "CP_C"):
                pass
        log = await warning(probe, running, "refused connection from 127.0.0.1 with HTTP 503")
        await second.connection.close()
        await probe.wait_for(running.topic("logs"), lambda p: p["msg"].startswith("CP_B: disconnected"))
        await still_served(running, "CP_C")
    assert refused.value.response.status_code == 503
    assert "OCPP_MAX_CONNECTIONS is 2" in log


async def test_a_silent_handshake_is_dropped(limited: StartLimited, probe: MqttProbe) -> None:
    """A TCP connection that never completes the WebSocket handshake is closed after OCPP_HANDSHAKE_TIMEOUT."""
    running: RunningConnector = await limited(OCPP_HANDSHAKE_TIMEOUT="0.5")
    port = running.service.dispatcher.port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /CP_SLOW HTTP/1.1\r\nHost: x\r\n")  # and never the rest
    async with asyncio.timeout(WAIT_S):
        rest = await reader.read()  # EOF: the connector closed it
    writer.close()
    log = await warning(probe, running, "no opening handshake within 0.5 s")
    await still_served(running)
    assert rest == b""
    assert "OCPP_HANDSHAKE_TIMEOUT" in log


async def test_a_flooding_charger_is_closed_1008(limited: StartLimited, probe: MqttProbe) -> None:
    """Beyond OCPP_MAX_MESSAGE_RATE (averaged over 10 s): closed with 1008; the frames within it were answered."""
    running: RunningConnector = await limited(OCPP_MAX_MESSAGE_RATE="2")
    async with RawLink(running.url, "CP_FLOOD") as link:
        for number in range(40):
            await link.connection.send(f'[2,"h{number}","Heartbeat",{{}}]')
        answered = []
        try:
            async with asyncio.timeout(WAIT_S):
                async for frame in link.connection:
                    answered.append(json.loads(frame)[1])
        except ConnectionClosed:
            pass
        code = await closed_with(link.connection)
    log = await warning(probe, running, "CP_FLOOD: disconnected with close code 1008")
    await still_served(running)
    assert code == 1008
    assert "OCPP_MAX_MESSAGE_RATE" in log
    # The burst of 10 s x 2/s was answered (a little more refilled while it ran), not all 40.
    assert answered[:20] == [f"h{n}" for n in range(20)] and len(answered) < 40


async def test_keys_beyond_the_cap_are_not_published(limited: StartLimited, probe: MqttProbe) -> None:
    """A charger minting keys (DataTransfer vendor ids) stops at OCPP_MAX_KEYS_PER_CHARGE_POINT, warned once."""
    running: RunningConnector = await limited(OCPP_MAX_KEYS_PER_CHARGE_POINT="20")
    async with RawLink(running.url, "CP_KEYS") as link:
        for number in range(40):
            request = json.dumps([2, f"d{number}", "DataTransfer", {"vendorId": f"V{number}", "data": "x"}])
            assert (await link.exchange(request))[0] == 3  # still answered
        await warning(probe, running, "CP_KEYS: has 20 datapoint keys")
        # Listed sensors and the actuators it may use while connected (listed once it boots).
        assert running.service.registry.key_count("CP_KEYS") == 20
    await still_served(running)
    listing = await probe.wait_for(running.topic("available_datapoints"), lambda p: "CP_OK__connected" in p["sensor"])
    own = [k for k in [*listing["sensor"], *listing["actuator"]] if k.startswith("CP_KEYS__")]
    warnings = [p for p in probe.on(running.topic("logs")) if "OCPP_MAX_KEYS_PER_CHARGE_POINT" in p["msg"]]
    on_connect = {"CP_KEYS__ocpp_version", "CP_KEYS__connected"}
    assert set(own) == {*on_connect, *(f"CP_KEYS__DataTransfer__V{n}" for n in range(len(own) - 2))}
    assert len(warnings) == 1


async def silent_socket(port: int, host: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection from `host` (any 127.x address routes to lo on Linux) that never sends a byte."""
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(host, 0))


async def closed_by_peer(reader: asyncio.StreamReader) -> bool:
    try:
        return await reader.read() == b""
    except ConnectionResetError:
        return True


async def test_silent_sockets_cannot_lock_honest_chargers_out(limited: StartLimited, probe: MqttProbe) -> None:
    """Silent sockets from one address hold at most their per-address bound and no charger place: an honest
    charger from another address boots, and the fleet limit still refuses authenticated connections beyond it."""
    running: RunningConnector = await limited(OCPP_MAX_CONNECTIONS="2", OCPP_MAX_UNAUTHENTICATED_PER_ADDRESS="5")
    port = running.service.dispatcher.port
    assert port is not None
    silent = [await silent_socket(port, "127.0.0.2") for _ in range(12)]
    try:
        async with asyncio.timeout(WAIT_S):
            closed = await asyncio.gather(*(closed_by_peer(reader) for reader, _ in silent[5:]))
        log = await warning(probe, running, "refused connection from 127.0.0.2")
        admission = running.service.dispatcher.gate.admission
        assert closed == [True] * 7
        assert admission.unauthenticated_from("127.0.0.2") == 5  # the first five are still held
        async with ChargerLink(running.url, "CP_HONEST") as honest, RawLink(running.url, "CP_SECOND"):
            assert (await send(honest, "boot_notification")).status == "Accepted"
            with pytest.raises(InvalidStatus) as refused:
                async with RawLink(running.url, "CP_THIRD"):
                    pass
            assert admission.unauthenticated_from("127.0.0.2") == 5
    finally:
        for _, writer in silent:
            writer.close()
    assert "OCPP_MAX_UNAUTHENTICATED_PER_ADDRESS" in log
    assert refused.value.response.status_code == 503


async def test_beyond_the_unauthenticated_total_the_oldest_silent_socket_goes(
    limited: StartLimited, probe: MqttProbe
) -> None:
    """With OCPP_MAX_UNAUTHENTICATED silent sockets open, a newcomer is served and the oldest silent one is closed."""
    running: RunningConnector = await limited(OCPP_MAX_CONNECTIONS="10", OCPP_MAX_UNAUTHENTICATED="4")
    port = running.service.dispatcher.port
    assert port is not None
    # Accepted in the order they connected: the four are counted before the honest one arrives.
    silent = [await silent_socket(port, f"127.0.0.{3 + number}") for number in range(4)]
    try:
        await still_served(running)
        async with asyncio.timeout(WAIT_S):
            assert await closed_by_peer(silent[0][0])
        log = await warning(probe, running, "dropped the oldest unauthenticated connection (from 127.0.0.3)")
    finally:
        for _, writer in silent:
            writer.close()
    assert "OCPP_MAX_UNAUTHENTICATED" in log
