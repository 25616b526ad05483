"""Quirks of real OCPP 1.6 chargers (fixtures/quirks.json), end to end.

A real mosquitto and real WebSockets. Each test replays one quirk as chargers put it on
the wire and checks what the charger is answered, what reaches the mapped MQTT topics
(values and timestamps), and, where the schema is broken harmlessly, the line on `N/logs`
that names what was tolerated.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import websockets
from ocpp.messages import MessageType, get_validator
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from connector.settings import Settings
from connector.tests.conftest import RunningConnector, map_datapoints, start_connector, values
from connector.tests.harness import WAIT_S, MqttProbe

QUIRKS: dict[str, Any] = json.loads((Path(__file__).parent / "fixtures" / "quirks.json").read_text())
RATE_UNIT_KEY = "ChargingScheduleAllowedChargingRateUnit"
# What a charger that has never heard of the rate-unit key answers to the connector's
# GetConfiguration after BootNotification.
UNKNOWN_RATE_UNIT = {"GetConfiguration": {"unknownKey": [RATE_UNIT_KEY]}}


def quirk(name: str, part: str = "frames") -> Any:
    return QUIRKS[name][part]


def ms(text: str) -> int:
    """An OCPP time as ms since the epoch."""
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def now_ms() -> int:
    return int(time.time() * 1000)


def with_payload(frame_text: str, **changes: Any) -> str:
    """The frame with payload fields replaced (the transaction id the connector issued)."""
    message = json.loads(frame_text)
    message[3] = {**message[3], **changes}
    return json.dumps(message)


def command(value: Any) -> dict[str, Any]:
    return {"value": value, "timestamp": now_ms()}


async def mapping(
    probe: MqttProbe, connector: RunningConnector, sensors: list[str], actuators: tuple[str, ...] = ()
) -> dict[str, str]:
    """Map sensor keys and actuator keys to topics of their own; key -> topic."""
    topics = {key: connector.topic(f"v/{i}") for i, key in enumerate(sensors)}
    commands = {key: connector.topic(f"cmd/{i}") for i, key in enumerate(actuators)}
    await map_datapoints(probe, connector, topics, {topic: key for key, topic in commands.items()})
    return {**topics, **commands}


async def logged(probe: MqttProbe, connector: RunningConnector, text: str) -> dict[str, Any]:
    """The first record on `N/logs` whose message contains `text`."""
    record: dict[str, Any] = await probe.wait_for(connector.topic("logs"), lambda p: text in p["msg"])
    return record


Launch = Callable[..., Awaitable[RunningConnector]]


@pytest.fixture
async def launch(settings_env: dict[str, str], probe: MqttProbe) -> AsyncIterator[Launch]:
    """Start a connector with extra environment variables; it is stopped after the test."""
    running: list[RunningConnector] = []

    async def start(**env: str) -> RunningConnector:
        connector = await start_connector({**settings_env, **env}, probe)
        running.append(connector)
        return connector

    yield start
    for connector in running:
        if not connector.task.done():
            await connector.stop()


class Wire:
    """A charge point sending fixture frames over a real WebSocket (websockets' client).

    Answers are matched to calls by unique id, as a charger matches them, so several calls
    may be on the wire at once. A call from the connector is answered from `answers`
    (action -> payload) and kept in `answered`, or else queued for the test.
    """

    def __init__(self, url: str, cp_id: str, answers: dict[str, dict[str, Any]] | None = None) -> None:
        self.target = f"{url}/{cp_id}"
        self.answers = dict(answers or {})
        self.answered: list[list[Any]] = []
        self.calls: asyncio.Queue[list[Any]] = asyncio.Queue()
        self._waiting: dict[str | int, asyncio.Future[list[Any]]] = {}

    async def __aenter__(self) -> Wire:
        self.connection = await websockets.connect(
            self.target, subprotocols=[Subprotocol("ocpp1.6")], open_timeout=WAIT_S
        )
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.connection.close()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)

    async def _read(self) -> None:
        try:
            async for text in self.connection:
                message = json.loads(text)
                if message[0] == MessageType.Call:
                    if message[2] in self.answers:
                        self.answered.append(message)
                        await self.reply(message, self.answers[message[2]])
                    else:
                        self.calls.put_nowait(message)
                elif message[1] in self._waiting:
                    self._waiting.pop(message[1]).set_result(message)
        except ConnectionClosed:
            pass

    async def send_all(self, *frames: str) -> list[list[Any]]:
        """Put the frames on the wire back to back; the answer to each, in the order sent."""
        loop = asyncio.get_running_loop()
        pending: list[asyncio.Future[list[Any]]] = []
        for text in frames:
            pending.append(loop.create_future())
            self._waiting[json.loads(text)[1]] = pending[-1]
        for text in frames:
            await self.connection.send(text)
        async with asyncio.timeout(WAIT_S):
            return list(await asyncio.gather(*pending))

    async def call(self, frame: str) -> list[Any]:
        (answer,) = await self.send_all(frame)
        return answer

    async def next_call(self) -> list[Any]:
        async with asyncio.timeout(WAIT_S):
            return await self.calls.get()

    async def reply(self, call: list[Any], payload: dict[str, Any]) -> None:
        await self.connection.send(json.dumps([MessageType.CallResult, call[1], payload]))


WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
TEXT, CLOSE, PING = 0x1, 0x8, 0x9


class HandRolledCharger:
    """A charge point whose WebSocket is written out by hand on asyncio streams.

    Like the embedded clients of some chargers it does the handshake and text frames and
    never answers a ping. websockets' own client answers every ping, with no option to
    stop it, so it cannot play such a charger.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self.pings = 0  # received, never answered
        self.calls: list[Any] = []  # calls from the connector, never answered either

    @classmethod
    async def connect(cls, port: int, path: str, handshake: list[str]) -> tuple[HandRolledCharger, dict[str, str]]:
        """Send the handshake lines; the charger and the headers of the 101 answer (names in lower case)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        fields = {"path": path, "host": f"127.0.0.1:{port}", "key": key}
        writer.write(("".join(line.format(**fields) + "\r\n" for line in handshake) + "\r\n").encode())
        async with asyncio.timeout(WAIT_S):
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
        status, *lines = head.strip().split("\r\n")
        assert status.startswith("HTTP/1.1 101 "), status
        headers = {name.strip().lower(): value.strip() for name, value in (line.split(":", 1) for line in lines)}
        accept = base64.b64encode(hashlib.sha1((key + WEBSOCKET_GUID).encode()).digest()).decode()
        assert headers["sec-websocket-accept"] == accept
        return cls(reader, writer), headers

    async def aclose(self) -> None:
        self._writer.close()
        await asyncio.gather(self._writer.wait_closed(), return_exceptions=True)

    async def send_text(self, text: str) -> None:
        data = text.encode()
        if len(data) < 126:
            header = bytes([0x80 | TEXT, 0x80 | len(data)])
        elif len(data) < 1 << 16:
            header = bytes([0x80 | TEXT, 0x80 | 126]) + len(data).to_bytes(2, "big")
        else:
            header = bytes([0x80 | TEXT, 0x80 | 127]) + len(data).to_bytes(8, "big")
        mask = os.urandom(4)  # a client masks every frame (RFC 6455 section 5.3)
        self._writer.write(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))
        await self._writer.drain()

    async def _frame(self) -> tuple[int, bytes]:
        first, second = await self._reader.readexactly(2)
        assert not second & 0x80, "a server never masks its frames"
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(await self._reader.readexactly(2), "big")
        elif length == 127:
            length = int.from_bytes(await self._reader.readexactly(8), "big")
        return first & 0x0F, await self._reader.readexactly(length)

    async def exchange(self, text: str) -> Any:
        """Send a frame; the answer with its unique id. Pings and calls on the way go unanswered."""
        sent_id = json.loads(text)[1]
        await self.send_text(text)
        async with asyncio.timeout(WAIT_S):
            while True:
                opcode, data = await self._frame()
                if opcode == PING:
                    self.pings += 1
                elif opcode == CLOSE:
                    raise AssertionError(f"the connector closed the connection: {data!r}")
                elif opcode == TEXT:
                    message = json.loads(data)
                    if message[0] == MessageType.Call:
                        self.calls.append(message)
                    elif message[1] == sent_id:
                        return message

    async def until_closed(self) -> None:
        """Read until the connector closes the connection: its close frame, or the end of the stream."""
        async with asyncio.timeout(WAIT_S):
            while True:
                try:
                    opcode, _ = await self._frame()
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                if opcode == PING:
                    self.pings += 1
                elif opcode == CLOSE:
                    return


def test_quirk_frames_break_the_schema_only_where_their_note_says() -> None:
    """Each quirk frame is an OCPP-J CALL; only `Error`, `Hz` and the empty sampledValue break the schema."""
    broken: dict[str, set[str]] = {}
    for name, fixture in QUIRKS.items():
        if name.startswith("_"):
            continue
        for part in (part for part in fixture if part.startswith("frames")):
            for text in fixture[part]:
                kind, unique_id, action, payload = json.loads(text)
                assert kind == MessageType.Call and isinstance(unique_id, str | int), text
                validator = get_validator(MessageType.Call, action, "1.6")
                for error in validator.iter_errors(payload):
                    broken.setdefault(name, set()).add(f"{error.validator}: {error.instance!r}")
    assert broken == {
        "nonstandard_enums_and_units": {"enum: 'Error'", "enum: 'Hz'"},
        "empty_sampled_value": {"minItems: []"},
    }


# -- the handshake -------------------------------------------------------------------------


async def test_handshake_without_subprotocol_header_is_served_as_ocpp16(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """A handshake without Sec-WebSocket-Protocol is served as OCPP 1.6, its data published, the fallback logged."""
    cp = "CP_GRIZZ"
    boot_key, status_key = f"{cp}__BootNotification__charge_point_model", f"{cp}__StatusNotification__1__status"
    topics = await mapping(probe, connector, [boot_key, status_key])
    port = connector.service.dispatcher.port
    assert port is not None
    charger, headers = await HandRolledCharger.connect(port, f"/ocpp/{cp}", quirk("no_subprotocol", "handshake"))
    try:
        before = now_ms()
        boot, status = [await charger.exchange(text) for text in quirk("no_subprotocol")]
        after = now_ms()
    finally:
        await charger.aclose()
    assert "sec-websocket-protocol" not in headers  # nothing offered, nothing chosen
    assert boot[:2] == [3, "1"] and boot[2]["status"] == "Accepted"
    assert status == [3, "2", {}]
    model = await probe.wait_for(topics[boot_key])
    assert model["value"] == "Grizzl-E Smart" and before <= model["timestamp"] <= after
    assert await probe.wait_for(topics[status_key]) == {"value": "Available", "timestamp": ms("2026-11-21T08:00:00Z")}
    log = await logged(probe, connector, f"{cp}: no subprotocol offered")
    assert log["msg"] == f"{cp}: no subprotocol offered; serving OCPP 1.6" and log["level"] == 20


# -- values the schema allows but the numbers do not ---------------------------------------


async def test_padded_numbers_are_read_and_empty_values_are_skipped(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """`" 0.0"` and `"230.4 "` become numbers, an empty value publishes nothing, and the logs name each."""
    cp = "CP_PAD"
    power, current, voltage = (
        f"{cp}__MeterValues__1__Power.Active.Import__W",
        f"{cp}__MeterValues__1__Current.Import__L1__A",
        f"{cp}__MeterValues__1__Voltage__L1-N__V",
    )
    topics = await mapping(probe, connector, [power, current, voltage, f"{cp}__Heartbeat"])
    async with Wire(connector.url, cp) as wire:
        assert [await wire.call(text) for text in quirk("padded_and_empty_numbers")] == [
            [3, "mv-1", {}],
            [3, "mv-2", {}],
        ]
        assert (await wire.call('[2,"hb","Heartbeat",{}]'))[:2] == [3, "hb"]  # the session goes on
        # The Heartbeat is published after the MeterValues on the same MQTT connection:
        # anything the empty value published would have arrived before it.
        await probe.wait_for(topics[f"{cp}__Heartbeat"])
    first, second = ms("2026-11-21T10:00:00Z"), ms("2026-11-21T10:01:00Z")
    assert probe.on(topics[power]) == [{"value": 7360.5, "timestamp": first}, {"value": 0.0, "timestamp": second}]
    assert probe.on(topics[current]) == [{"value": 16.0, "timestamp": first}]
    assert probe.on(topics[voltage]) == [{"value": 230.4, "timestamp": second}]
    prefix = f"{cp}: tolerated in MeterValues: "
    padded = await logged(probe, connector, "' 0.0'")
    assert padded["msg"] == prefix + "value ' 0.0' padded with spaces; read as '0.0'"
    trailing = await logged(probe, connector, "'230.4 '")
    assert trailing["msg"] == prefix + "value '230.4 ' padded with spaces; read as '230.4'"
    empty = await logged(probe, connector, "empty value")
    assert empty["msg"] == prefix + f"empty value for {current}; skipped it"


async def test_unlisted_error_code_and_unit_keep_their_data_flowing(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """errorCode `Error` and unit `Hz` are answered as valid, published as sent, and named in WARNINGs."""
    cp = "CP_GREENUP"
    error_code, status = f"{cp}__StatusNotification__0__error_code", f"{cp}__StatusNotification__0__status"
    frequency, temperature = f"{cp}__MeterValues__1__Frequency__Hz", f"{cp}__MeterValues__1__Temperature__Celsius"
    topics = await mapping(probe, connector, [error_code, status, frequency, temperature])
    async with Wire(connector.url, cp) as wire:
        status_frame, meter_frame = quirk("nonstandard_enums_and_units")
        assert await wire.call(status_frame) == [3, "28240181849166013077", {}]
        assert await wire.call(meter_frame) == [3, "389571790-1074765951-172066813", {}]
    faulted, measured = ms("2026-11-21T16:16:55Z"), ms("2026-11-21T12:38:37Z")
    assert await probe.wait_for(topics[error_code]) == {"value": "Error", "timestamp": faulted}
    assert await probe.wait_for(topics[status]) == {"value": "Faulted", "timestamp": faulted}
    assert await probe.wait_for(topics[frequency]) == {"value": 49.99, "timestamp": measured}
    assert await probe.wait_for(topics[temperature]) == {"value": 14, "timestamp": measured}
    enum_log = await logged(probe, connector, "'Error' is not one of")
    assert enum_log["msg"].startswith(f"{cp}: tolerated schema deviation in StatusNotification: errorCode: ")
    unit_log = await logged(probe, connector, "'Hz' is not one of")
    assert unit_log["msg"].startswith(
        f"{cp}: tolerated schema deviation in MeterValues: meterValue/0/sampledValue/1/unit"
    )
    assert enum_log["level"] == unit_log["level"] == 30


async def test_empty_sampled_value_is_answered_and_the_next_values_flow(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """An empty sampledValue is answered `{}` and named in the logs; the samples beside and after it flow."""
    cp = "CP_VESTEL"
    energy = f"{cp}__MeterValues__1__Energy.Active.Import.Register__Wh"
    topics = await mapping(probe, connector, [energy])
    async with Wire(connector.url, cp) as wire:
        empty, mixed = quirk("empty_sampled_value")
        assert await wire.call(empty) == [3, "7106e13d-9867-417d-a711-b0023218ad22", {}]
        assert await wire.call(mixed) == [3, "7106e13d-9867-417d-a711-b0023218ad23", {}]
    assert await probe.wait_for(topics[energy]) == {"value": 4213, "timestamp": ms("2026-11-21T19:30:00Z")}
    schema_log = await logged(probe, connector, f"{cp}: tolerated schema deviation in MeterValues")
    assert "sampledValue" in schema_log["msg"] and schema_log["level"] == 30
    note = await logged(probe, connector, "empty sampledValue")
    assert note["msg"] == f"{cp}: tolerated in MeterValues: meterValue element with an empty sampledValue; skipped it"


async def test_energy_in_kwh_loses_its_float_noise(connector: RunningConnector, probe: MqttProbe) -> None:
    """`"0.15006999999999998"` kWh is published as 0.15007 (12 significant digits), at the meter's time."""
    cp = "CP_KWH"
    energy = f"{cp}__MeterValues__1__Energy.Active.Import.Register__kWh"
    power = f"{cp}__MeterValues__1__Power.Active.Import__kW"
    topics = await mapping(probe, connector, [energy, power])
    async with Wire(connector.url, cp) as wire:
        assert await wire.call(quirk("float_noise_kwh")[0]) == [3, "f-1", {}]
    measured = ms("2026-11-21T13:00:00.000Z")
    assert await probe.wait_for(topics[energy]) == {"value": 0.15007, "timestamp": measured}
    assert await probe.wait_for(topics[power]) == {"value": 7.36, "timestamp": measured}


@pytest.mark.parametrize(("frames", "phase"), [("frames_l1", "L1"), ("frames_l1_n", "L1-N")])
async def test_voltage_labelled_l1_or_l1_n_is_the_phase_voltage(
    connector: RunningConnector, probe: MqttProbe, frames: str, phase: str
) -> None:
    """Voltage labelled `L1` or `L1-N` is published as labelled and is the phase voltage: 7200 W go out as 10.0 A."""
    cp = f"CP_{phase.replace('-', '_')}"
    l1, l3 = (
        f"{cp}__MeterValues__1__Voltage__{phase}__V",
        f"{cp}__MeterValues__1__Voltage__{phase.replace('1', '3')}__V",
    )
    limit = f"{cp}__execute_send_charging_profile__1"
    topics = await mapping(probe, connector, [l1, l3, f"{limit}__status"], (limit,))
    async with Wire(connector.url, cp, quirk("phase_labels", "answers")) as wire:
        boot, status, meter = quirk("phase_labels", frames)
        assert (await wire.call(boot))[2]["status"] == "Accepted"
        await logged(probe, connector, f"{cp}: allowed charging rate units: Current")
        assert await wire.call(status) == [3, "s1", {}]  # connector 1 appears, its actuators with it
        assert await wire.call(meter) == [3, "m1", {}]
        probe.publish(topics[limit], command(7200))
        await probe.wait_value(topics[f"{limit}__status"], "Accepted")
    measured = ms("2026-11-21T12:38:37Z")
    assert await probe.wait_for(topics[l1]) == {"value": 234.73, "timestamp": measured}
    assert await probe.wait_for(topics[l3]) == {"value": 240.0, "timestamp": measured}
    assert [call[2] for call in wire.answered] == ["GetConfiguration", "SetChargingProfile"]
    schedule = wire.answered[1][3]["csChargingProfiles"]["chargingSchedule"]
    # 7200 W / (240 V x 3 phases), over the highest voltage measured (L3).
    assert schedule["chargingRateUnit"] == "A"
    assert schedule["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 10.0}]


# -- sessions: reconnects, order, repeats ---------------------------------------------------


async def test_backlog_replayed_after_reconnect_keeps_each_measurement_time(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """MeterValues replayed after a reconnect are published oldest first, each at its own measurement time."""
    cp = "CP_QUEUE"
    energy, connected = f"{cp}__MeterValues__1__Energy.Active.Import.Register__Wh", f"{cp}__connected"
    topics = await mapping(probe, connector, [energy, connected])
    async with Wire(connector.url, cp) as wire:
        assert await wire.call(quirk("backlog_after_reconnect", "frames_before")[0]) == [3, "q-100", {}]
    await probe.wait_value(topics[connected], False)
    async with Wire(connector.url, cp) as wire:
        replayed = [await wire.call(text) for text in quirk("backlog_after_reconnect", "frames_replayed")]
        await probe.wait_value(topics[energy], 10250)
    assert replayed == [[3, "q-101", {}], [3, "q-102", {}], [3, "q-103", {}]]
    assert [(p["value"], p["timestamp"]) for p in probe.on(topics[energy])] == [
        (2000, ms("2026-11-21T09:00:00Z")),
        (4750, ms("2026-11-21T09:15:00Z")),
        (7500, ms("2026-11-21T09:30:00Z")),
        (10250, ms("2026-11-21T09:45:00Z")),
    ]
    await probe.wait_until(lambda: len(values(probe, topics[connected])) == 4)
    assert values(probe, topics[connected]) == [True, False, True, False]


async def test_charger_reconnecting_without_boot_notification_is_served_as_before(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """Reconnected without BootNotification, a charger's data flows and limits go out in the unit it allowed."""
    cp = "CP_COPPER"
    fixture = QUIRKS["reconnect_without_boot"]
    status, energy = f"{cp}__StatusNotification__1__status", f"{cp}__MeterValues__1__Energy.Active.Import.Register__Wh"
    connected, limit = f"{cp}__connected", f"{cp}__execute_send_charging_profile__1"
    topics = await mapping(probe, connector, [status, energy, connected, f"{limit}__status"], (limit,))
    async with Wire(connector.url, cp, fixture["answers"]) as first:
        assert (await first.call(fixture["frames_first"][0]))[2]["status"] == "Accepted"
        await logged(probe, connector, f"{cp}: allowed charging rate units: Current")
    await probe.wait_value(topics[connected], False)
    async with Wire(connector.url, cp, fixture["answers"]) as wire:
        status_frame, meter_frame = fixture["frames_after_reconnect"]
        assert await wire.call(status_frame) == [3, "r-2", {}]
        assert await wire.call(meter_frame) == [3, "r-3", {}]
        probe.publish(topics[limit], command(6900))
        await probe.wait_value(topics[f"{limit}__status"], "Accepted")
    assert await probe.wait_for(topics[status]) == {"value": "Charging", "timestamp": ms("2026-11-21T11:00:00Z")}
    assert await probe.wait_for(topics[energy]) == {"value": 88120, "timestamp": ms("2026-11-21T11:00:05Z")}
    assert values(probe, topics[connected])[:3] == [True, False, True]
    # No new boot needed and nothing asked again: the rate units of the first session hold.
    assert [call[2] for call in wire.answered] == ["SetChargingProfile"]
    schedule = wire.answered[0][3]["csChargingProfiles"]["chargingSchedule"]
    assert schedule["chargingRateUnit"] == "A"  # 6900 W / (230 V x 3)
    assert schedule["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 10.0}]


async def test_status_and_start_sent_before_the_boot_answer_are_each_answered(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """Boot, StatusNotification and StartTransaction sent at once are each answered; their data flows."""
    cp = "CP_ENPLUS"
    prefix = f"{cp}__Transaction__1__"
    keys = [f"{cp}__BootNotification__charge_point_model", f"{cp}__StatusNotification__1__status"]
    keys += [prefix + name for name in ("active", "transaction_id", "id_tag", "meter_start")]
    topics = await mapping(probe, connector, keys)
    async with Wire(connector.url, cp, UNKNOWN_RATE_UNIT) as wire:
        boot, status, start = await wire.send_all(*quirk("calls_before_boot_answer"))
        await probe.wait_value(topics[prefix + "active"], True)
    assert boot[:2] == [3, "e-1"] and boot[2]["status"] == "Accepted"
    assert status == [3, "e-2", {}]
    assert start[:2] == [3, "e-3"] and start[2]["idTagInfo"] == {"status": "Accepted"}
    assert isinstance(start[2]["transactionId"], int)
    assert (await probe.wait_for(topics[keys[0]]))["value"] == "AC7K"
    assert await probe.wait_for(topics[keys[1]]) == {"value": "Preparing", "timestamp": ms("2026-11-21T07:59:58Z")}
    started = ms("2026-11-21T07:59:59Z")
    assert await probe.wait_for(topics[prefix + "transaction_id"]) == {
        "value": start[2]["transactionId"],
        "timestamp": started,
    }
    assert await probe.wait_for(topics[prefix + "id_tag"]) == {"value": "8A11F2C3", "timestamp": started}
    assert await probe.wait_for(topics[prefix + "meter_start"]) == {"value": 40210, "timestamp": started}


async def test_stop_transaction_repeated_after_reconnect_is_answered_and_counted_once(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """The same StopTransaction after a reconnect is answered like the first, publishes nothing, and is logged."""
    cp = "CP_REPEAT"
    energy, register = f"{cp}__Transaction__1__energy", f"{cp}__MeterValues__1__Energy.Active.Import.Register__Wh"
    connected, heartbeat = f"{cp}__connected", f"{cp}__Heartbeat"
    topics = await mapping(probe, connector, [energy, register, connected, heartbeat])
    start_frame, stop_frame = quirk("repeated_stop_transaction")
    async with Wire(connector.url, cp) as wire:
        started = await wire.call(start_frame)
        stop = with_payload(stop_frame, transactionId=started[2]["transactionId"])
        first = await wire.call(stop)
        await probe.wait_value(topics[energy], 11500)
    await probe.wait_value(topics[connected], False)
    async with Wire(connector.url, cp) as wire:
        again = await wire.call(stop)
        await wire.call('[2,"hb","Heartbeat",{}]')
        # Published after the repeat on the same MQTT connection: whatever the repeat
        # published would have arrived before it.
        await probe.wait_for(topics[heartbeat])
    assert first == again == [3, "t-2", {"idTagInfo": {"status": "Accepted"}}]
    assert probe.on(topics[energy]) == [
        {"value": None, "timestamp": ms("2026-11-21T10:00:00Z")},
        {"value": 11500, "timestamp": ms("2026-11-21T11:00:00Z")},
    ]
    assert values(probe, topics[register]) == [1245500]  # transactionData counted once too
    log = await logged(probe, connector, "is not open")
    transaction_id = started[2]["transactionId"]
    assert log["msg"] == (
        f"{cp}: tolerated in StopTransaction: transaction {transaction_id} is not open (a repeat, or unknown); "
        "published nothing"
    )


async def test_stop_transaction_without_id_tag_is_answered_and_closes_the_transaction(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """StopTransaction without idTag is answered `{}` and publishes the stop at the charger's time, reason `Local`."""
    cp = "CP_METRON"
    prefix = f"{cp}__Transaction__1__"
    fields = ["active", "id_tag", "meter_stop", "stop_reason", "energy"]
    topics = await mapping(probe, connector, [prefix + name for name in fields])
    start_frame, stop_frame = quirk("stop_without_id_tag")
    async with Wire(connector.url, cp) as wire:
        started = await wire.call(start_frame)
        stopped = await wire.call(with_payload(stop_frame, transactionId=started[2]["transactionId"]))
        await probe.wait_value(topics[prefix + "active"], False)
    assert stopped == [3, "1000004", {}]
    at = ms("2026-11-21T19:40:00Z")
    assert probe.on(topics[prefix + "active"])[-1] == {"value": False, "timestamp": at}
    assert await probe.wait_value(topics[prefix + "energy"], 8250) == {"value": 8250, "timestamp": at}
    assert await probe.wait_value(topics[prefix + "meter_stop"], 60250) == {"value": 60250, "timestamp": at}
    assert await probe.wait_value(topics[prefix + "stop_reason"], "Local") == {"value": "Local", "timestamp": at}
    assert values(probe, topics[prefix + "id_tag"]) == ["04A2B3C4D5E6F7"]  # the start's, untouched


async def test_numeric_message_ids_are_answered_with_the_same_numbers(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """Calls with JSON numbers as unique ids are answered with the same numbers, and their data flows."""
    cp = "CP_NUMERIC"
    model, status = f"{cp}__BootNotification__charge_point_model", f"{cp}__StatusNotification__1__status"
    topics = await mapping(probe, connector, [model, status, f"{cp}__Heartbeat"])
    async with Wire(connector.url, cp, UNKNOWN_RATE_UNIT) as wire:
        before = now_ms()
        boot, status_answer, heartbeat = [await wire.call(text) for text in quirk("numeric_message_ids")]
        after = now_ms()
    assert [answer[1] for answer in (boot, status_answer, heartbeat)] == [1001, 1002, 1003]
    assert all(type(answer[1]) is int for answer in (boot, status_answer, heartbeat))
    assert boot[2]["status"] == "Accepted" and status_answer[2] == {} and "currentTime" in heartbeat[2]
    assert (await probe.wait_for(topics[model]))["value"] == "Wallbox 11"
    assert await probe.wait_for(topics[status]) == {"value": "Available", "timestamp": ms("2026-11-21T08:30:00Z")}
    beat = await probe.wait_for(topics[f"{cp}__Heartbeat"])
    assert before <= beat["timestamp"] <= after


# -- WebSocket keep-alive and slow chargers ------------------------------------------------


async def test_charger_that_never_answers_pings_is_disconnected_after_two_intervals(
    launch: Launch, probe: MqttProbe
) -> None:
    """With OCPP_PING_INTERVAL=0.3 a charger that never answers pings is cut off about 0.6 s after connecting."""
    interval = 0.3
    connector = await launch(OCPP_PING_INTERVAL=str(interval))
    cp = "CP_DEAF"
    topics = await mapping(probe, connector, [f"{cp}__connected", f"{cp}__Heartbeat"])
    port = connector.service.dispatcher.port
    assert port is not None
    loop = asyncio.get_running_loop()
    charger, _ = await HandRolledCharger.connect(port, f"/{cp}", quirk("no_ping_answers", "handshake"))
    opened = loop.time()
    try:
        answer = await charger.exchange(quirk("no_ping_answers")[0])
        await charger.until_closed()
        lasted = loop.time() - opened
    finally:
        await charger.aclose()
    assert answer[:2] == [3, "hb-1"]  # served until then
    assert charger.pings >= 1
    # A ping after one interval, the cut when its pong is one interval overdue; the upper
    # bound leaves room for a slow machine.
    assert 1.5 * interval <= lasted <= 2 * interval + 1.0
    await probe.wait_value(topics[f"{cp}__connected"], False)
    assert values(probe, topics[f"{cp}__connected"]) == [True, False]
    assert (await probe.wait_for(topics[f"{cp}__Heartbeat"]))["value"] > 0
    await logged(probe, connector, f"{cp}: disconnected")


async def test_with_ping_interval_zero_a_charger_that_never_answers_pings_stays_served(
    launch: Launch, probe: MqttProbe
) -> None:
    """With OCPP_PING_INTERVAL=0 no ping is sent, so a charger that never answers pings is still served later."""
    connector = await launch(OCPP_PING_INTERVAL="0")
    cp = "CP_DEAF_OK"
    topics = await mapping(probe, connector, [f"{cp}__connected"])
    port = connector.service.dispatcher.port
    assert port is not None
    charger, _ = await HandRolledCharger.connect(port, f"/{cp}", quirk("no_ping_answers", "handshake"))
    try:
        first = await charger.exchange(quirk("no_ping_answers")[0])
        # The claim is about something that does not happen (no ping, no cut), which no
        # event can signal, so this one wait is a bounded sleep: 1.2 s is four times the
        # 0.3 s interval after which the test above is cut off.
        await asyncio.sleep(1.2)
        second = await charger.exchange(quirk("no_ping_answers")[1])
        await probe.wait_value(topics[f"{cp}__connected"], True)
        assert values(probe, topics[f"{cp}__connected"]) == [True]
    finally:
        await charger.aclose()
    assert first[:2] == [3, "hb-1"] and second[:2] == [3, "hb-2"]
    assert charger.pings == 0


async def test_slow_answer_within_the_response_timeout_is_accepted(launch: Launch, probe: MqttProbe) -> None:
    """A charger answering after 1 s within OCPP_RESPONSE_TIMEOUT=2 has its answer taken, and is served meanwhile."""
    assert Settings.from_env({}).ocpp_response_timeout == 60.0  # the default
    connector = await launch(OCPP_RESPONSE_TIMEOUT="2")
    cp = "CP_SLOW"
    fixture = QUIRKS["slow_answers"]
    trigger, status = f"{cp}__execute_trigger_message", f"{cp}__StatusNotification__1__status"
    up, meanwhile, triggered = fixture["frames"]
    async with Wire(connector.url, cp) as wire:
        assert (await wire.call(up))[:2] == [3, "hb-up"]  # the session runs: its actuators are known
        topics = await mapping(probe, connector, [f"{trigger}__status", status], (trigger,))
        probe.publish(topics[trigger], command("StatusNotification"))
        call = await wire.next_call()
        asked = asyncio.get_running_loop().time()
        assert (await wire.call(meanwhile))[:2] == [3, "hb-slow"]  # its own call is answered meanwhile
        # The charger's slowness is the quirk under test, not a stand-in for an event.
        await asyncio.sleep(fixture["delay_s"] - (asyncio.get_running_loop().time() - asked))
        await wire.reply(call, fixture["answers"]["TriggerMessage"])
        await probe.wait_value(topics[f"{trigger}__status"], "Accepted")
        assert await wire.call(triggered) == [3, "st-slow", {}]
        assert await probe.wait_for(topics[status]) == {"value": "Preparing", "timestamp": ms("2026-11-21T10:05:00Z")}
    assert call[2:] == ["TriggerMessage", {"requestedMessage": "StatusNotification"}]
    assert values(probe, topics[f"{trigger}__status"]) == ["Accepted"]  # no Failed before it


# -- the security extension on plain 1.6 ----------------------------------------------------


async def test_security_extension_messages_get_schema_valid_answers(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """The security extension's four charger messages get schema-valid CALLRESULTs, never a CALLERROR."""
    cp = "CP_EVEREST"
    keys = [
        f"{cp}__SecurityEventNotification__type",
        f"{cp}__SecurityEventNotification__tech_info",
        f"{cp}__LogStatusNotification__status",
        f"{cp}__LogStatusNotification__request_id",
        f"{cp}__SignedFirmwareStatusNotification__status",
        f"{cp}__SignedFirmwareStatusNotification__request_id",
    ]
    topics = await mapping(probe, connector, keys)
    frames = quirk("security_extension")
    async with Wire(connector.url, cp) as wire:
        answers = [await wire.call(text) for text in frames]
    for text, answer in zip(frames, answers, strict=True):
        _, unique_id, action, _ = json.loads(text)
        assert answer[:2] == [3, unique_id], answer  # a CALLRESULT
        get_validator(MessageType.CallResult, action, "1.6").validate(answer[2])
    assert answers[3][2] == {"status": "Rejected"}  # SignCertificate: no certificate authority here
    got = {key: (await probe.wait_for(topics[key]))["value"] for key in keys}
    expected = ["StartupOfTheDevice", "The Charge Point has booted", "Uploading", 12, "SignatureVerified", 4]
    assert got == dict(zip(keys, expected, strict=True))
    note = await logged(probe, connector, "SignCertificate rejected")
    assert note["msg"] == (f"{cp}: SignCertificate rejected: this connector runs no certificate authority")


async def test_security_event_is_stamped_with_the_time_it_occurred(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """A SecurityEventNotification is published at the event's `timestamp`, the charger's time of it (interface 3)."""
    cp = "CP_EVEREST_TIME"
    key = f"{cp}__SecurityEventNotification__type"
    topics = await mapping(probe, connector, [key])
    async with Wire(connector.url, cp) as wire:
        await wire.call(quirk("security_extension")[0])
    assert await probe.wait_for(topics[key]) == {
        "value": "StartupOfTheDevice",
        "timestamp": ms("2026-11-21T16:01:59.122Z"),
    }


# -- authorization ---------------------------------------------------------------------------


async def test_allowed_id_tags_decide_authorize_start_stop_and_remote_start(launch: Launch, probe: MqttProbe) -> None:
    """With OCPP_ALLOWED_ID_TAGS only listed tags, in any case, pass Authorize, Start, Stop and remote start."""
    connector = await launch(OCPP_ALLOWED_ID_TAGS=" 04A2B3C4D5E6F7 , aa11bb22 ")
    cp = "CP_AUTH"
    remote = f"{cp}__execute_remote_start_transaction__1"
    status, authorize_ok, authorize_other, start_other, stop_other, start_ok, stop_ok = quirk("id_tags")
    async with Wire(connector.url, cp, quirk("id_tags", "answers")) as wire:
        assert await wire.call(status) == [3, "a-0", {}]  # connector 1 appears, its actuators with it
        topics = await mapping(probe, connector, [f"{remote}__status"], (remote,))
        assert await wire.call(authorize_ok) == [3, "a-1", {"idTagInfo": {"status": "Accepted"}}]
        assert await wire.call(authorize_other) == [3, "a-2", {"idTagInfo": {"status": "Invalid"}}]
        refused = await wire.call(start_other)
        # Refused, but with a transaction id: the charger may have started already and
        # will send StopTransaction for it.
        assert refused[2]["idTagInfo"] == {"status": "Invalid"} and isinstance(refused[2]["transactionId"], int)
        stopped = await wire.call(with_payload(stop_other, transactionId=refused[2]["transactionId"]))
        assert stopped == [3, "a-4", {"idTagInfo": {"status": "Invalid"}}]
        accepted = await wire.call(start_ok)
        assert accepted[2]["idTagInfo"] == {"status": "Accepted"}
        assert accepted[2]["transactionId"] != refused[2]["transactionId"]
        stopped = await wire.call(with_payload(stop_ok, transactionId=accepted[2]["transactionId"]))
        assert stopped == [3, "a-6", {"idTagInfo": {"status": "Accepted"}}]

        probe.publish(topics[remote], command("DEADBEEF"))
        failed = await probe.wait_for(topics[f"{remote}__status"])
        probe.publish(topics[remote], command("AA11BB22"))
        await probe.wait_value(topics[f"{remote}__status"], "Accepted")
    assert failed["value"] == "Failed: id tag 'DEADBEEF' is not allowed (OCPP_ALLOWED_ID_TAGS)"
    # Only the listed tag reached the charger.
    assert [call[2:] for call in wire.answered] == [["RemoteStartTransaction", {"idTag": "AA11BB22", "connectorId": 1}]]
    warning = await logged(probe, connector, f"actuator {remote} (topic {topics[remote]})")
    assert "DEADBEEF" in warning["msg"] and warning["level"] == 30


async def test_without_an_allow_list_every_id_tag_is_accepted(connector: RunningConnector, probe: MqttProbe) -> None:
    """Without OCPP_ALLOWED_ID_TAGS any tag is Accepted in Authorize, Start and Stop, and sent in remote starts."""
    cp = "CP_OPEN"
    remote = f"{cp}__execute_remote_start_transaction__1"
    status, _, authorize_other, start_other, stop_other, _, _ = quirk("id_tags")
    async with Wire(connector.url, cp, quirk("id_tags", "answers")) as wire:
        await wire.call(status)
        topics = await mapping(probe, connector, [f"{remote}__status"], (remote,))
        assert await wire.call(authorize_other) == [3, "a-2", {"idTagInfo": {"status": "Accepted"}}]
        started = await wire.call(start_other)
        assert started[2]["idTagInfo"] == {"status": "Accepted"}
        stopped = await wire.call(with_payload(stop_other, transactionId=started[2]["transactionId"]))
        assert stopped == [3, "a-4", {"idTagInfo": {"status": "Accepted"}}]
        probe.publish(topics[remote], command("DEADBEEF"))
        await probe.wait_value(topics[f"{remote}__status"], "Accepted")
    assert [call[2:] for call in wire.answered] == [["RemoteStartTransaction", {"idTag": "DEADBEEF", "connectorId": 1}]]
