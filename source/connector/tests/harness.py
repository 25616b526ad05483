"""Real peers for the integration tests: mosquitto, an MQTT probe, OCPP charge points.

Nothing here is mocked: the broker is a mosquitto process on a free port, the charge
points are the ocpp library's client over real WebSockets.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import paho.mqtt.client as mqtt
import websockets
from ocpp.charge_point import camel_to_snake_case
from ocpp.exceptions import NotImplementedError as OcppNotImplemented
from ocpp.routing import on
from ocpp.v16 import ChargePoint as OcppClient
from ocpp.v16 import call_result
from ocpp.v16.enums import Action
from paho.mqtt.enums import CallbackAPIVersion
from websockets.typing import Subprotocol

F = TypeVar("F", bound=Callable[..., Any])


def answers(action: Action) -> Callable[[F], F]:
    """The ocpp library's `@on`, typed (the library ships no type information)."""
    return cast(Callable[[F], F], on(action))


WAIT_S = 10.0  # upper bound for any awaited event; tests fail, never hang


# Every port free_port has handed out in this process. A port is free when picked but only
# taken when its server starts, so two picked before either starts could be the same one:
# HAProxy binds with SO_REUSEPORT, and a frontend sharing its stats socket's port hands
# some connections to the CLI, which answers a WebSocket handshake with a bare-LF line
# (seen once in a clean-clone run: "line without CRLF").
_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A free port below the kernel's ephemeral range, never the same one twice in a test run.

    Not bind(0): that hands out an ephemeral port, and while a test's broker is stopped,
    clients retrying 127.0.0.1:port get ephemeral local ports too; Linux can then
    self-connect one of them to that very port and the broker cannot restart on it.
    """
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for port in random.sample(range(10000, min(low, 32768)), 200):
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range")


def wait_for_port(port: int, deadline_s: float = WAIT_S) -> None:
    """Block until something accepts TCP connections on 127.0.0.1:port."""
    end = time.monotonic() + deadline_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.02)


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
    )
    if found is None:
        raise RuntimeError("mosquitto is not installed; run the README's test command, which installs it")
    return found


@dataclass
class Mosquitto:
    """A mosquitto broker of our own, on 127.0.0.1 and a free port."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    extra_config: str = ""

    def start(self) -> None:
        config = self.directory / "mosquitto.conf"
        config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n{self.extra_config}"
        )
        with (self.directory / "mosquitto.log").open("ab") as log:
            self.process = subprocess.Popen([mosquitto_binary(), "-c", str(config)], stdout=log, stderr=log)
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=WAIT_S)
            self.process = None


class MqttProbe:
    """Subscribes like a BEMCom service would and lets tests await what arrives."""

    def __init__(self, port: int, credentials: tuple[str, str] | None = None, client_id: str = "") -> None:
        self._loop = asyncio.get_running_loop()
        self.messages: list[tuple[str, Any, bool]] = []  # (topic, decoded payload, retained)
        self._newest: dict[str, Any] = {}  # topic -> newest payload
        self._changed = asyncio.Event()
        # With a client id the broker keeps our session (and queues for us) while we are away.
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not client_id)
        self._client.on_message = self._on_message
        self._topics: list[tuple[str, int]] = []
        self._client.on_connect = self._on_connect
        self._subscribed = asyncio.Event()
        self._client.on_subscribe = self._on_subscribe
        self._client.reconnect_delay_set(0, 1)
        if credentials is not None:
            self._client.username_pw_set(*credentials)
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()

    def _on_connect(self, client: mqtt.Client, *args: Any) -> None:
        # Re-subscribe after a broker restart (tests restart mosquitto on purpose).
        for topic, qos in self._topics:
            client.subscribe(topic, qos)

    def _on_subscribe(self, *args: Any) -> None:
        self._loop.call_soon_threadsafe(self._subscribed.set)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            payload = json.loads(message.payload)
        except (ValueError, RecursionError):
            payload = message.payload
        item = (message.topic, payload, bool(message.retain))
        self._loop.call_soon_threadsafe(self._record, item)

    def _record(self, item: tuple[str, Any, bool]) -> None:
        self.messages.append(item)
        self._newest[item[0]] = item[1]
        self._changed.set()

    async def subscribe(self, topic: str, qos: int = 2) -> None:
        self._subscribed.clear()
        self._topics.append((topic, qos))
        self._client.subscribe(topic, qos)
        async with asyncio.timeout(WAIT_S):
            await self._subscribed.wait()

    def publish(self, topic: str, payload: Any, qos: int = 2, retain: bool = False) -> None:
        data = payload if isinstance(payload, bytes | str) else json.dumps(payload)
        self._client.publish(topic, data, qos=qos, retain=retain).wait_for_publish(WAIT_S)

    async def wait_for(
        self,
        topic: str,
        predicate: Callable[[Any], bool] = lambda payload: True,
        within: float = WAIT_S,
        since: int = 0,
    ) -> Any:
        """The first payload on `topic` (from message number `since` on) that satisfies predicate."""
        async with asyncio.timeout(within):
            seen = since
            while True:
                for t, payload, _ in self.messages[seen:]:
                    if t == topic and predicate(payload):
                        return payload
                seen = len(self.messages)
                self._changed.clear()
                await self._changed.wait()

    async def wait_until(self, condition: Callable[[], bool], within: float = WAIT_S) -> None:
        """Until `condition()` holds, re-checked whenever a message arrives."""
        async with asyncio.timeout(within):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    async def wait_value(self, topic: str, value: Any, within: float = WAIT_S) -> dict[str, Any]:
        payload: dict[str, Any] = await self.wait_for(
            topic, lambda p: isinstance(p, dict) and p.get("value") == value, within
        )
        return payload

    def latest(self, topic: str) -> Any:
        """The `value` of the newest value message on `topic`; None if none came."""
        newest = self._newest.get(topic)
        return newest.get("value") if isinstance(newest, dict) else None

    def on(self, topic: str) -> list[Any]:
        return [payload for t, payload, _ in self.messages if t == topic]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class Charger(OcppClient):  # type: ignore[misc]
    """An OCPP 1.6 charge point from the ocpp library, answering our calls."""

    def __init__(self, cp_id: str, connection: Any) -> None:
        super().__init__(cp_id, connection)
        self.received: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self.answers: dict[str, str] = {}  # action -> status to answer
        # action -> keyword arguments of its ocpp.v16.call_result answer (snake_case), laid
        # over the default answer (`status` from `answers`). GetConfiguration is answered
        # only when it has an entry here: without one it gets the CALLERROR NotImplemented
        # it always got and is not recorded, so tests that ignore the connector's own
        # rate-unit query see the same calls as before.
        self.replies: dict[str, dict[str, Any]] = {}
        self.silent: set[str] = set()  # actions recorded but never answered (a charger that hangs)

    async def _handle_call(self, msg: Any) -> None:
        if msg.action in self.silent:
            self.received.put_nowait((msg.action, camel_to_snake_case(msg.payload)))
            return
        await super()._handle_call(msg)

    def _got(self, action: str, payload: dict[str, Any]) -> str:
        self.received.put_nowait((action, payload))
        return self.answers.get(action, "Accepted")

    def _reply(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Record the call; the answer's fields: `status` from `answers`, then `replies`."""
        return {"status": self._got(action, payload), **self.replies.get(action, {})}

    async def next_call(self) -> tuple[str, dict[str, Any]]:
        async with asyncio.timeout(WAIT_S):
            return await self.received.get()

    @answers(Action.set_charging_profile)
    def on_set_charging_profile(self, **payload: Any) -> call_result.SetChargingProfile:
        return call_result.SetChargingProfile(status=self._got("SetChargingProfile", payload))

    @answers(Action.clear_charging_profile)
    def on_clear_charging_profile(self, **payload: Any) -> call_result.ClearChargingProfile:
        return call_result.ClearChargingProfile(status=self._got("ClearChargingProfile", payload))

    @answers(Action.trigger_message)
    def on_trigger_message(self, **payload: Any) -> call_result.TriggerMessage:
        return call_result.TriggerMessage(status=self._got("TriggerMessage", payload))

    @answers(Action.remote_start_transaction)
    def on_remote_start_transaction(self, **payload: Any) -> call_result.RemoteStartTransaction:
        return call_result.RemoteStartTransaction(**self._reply("RemoteStartTransaction", payload))

    @answers(Action.remote_stop_transaction)
    def on_remote_stop_transaction(self, **payload: Any) -> call_result.RemoteStopTransaction:
        return call_result.RemoteStopTransaction(**self._reply("RemoteStopTransaction", payload))

    @answers(Action.change_availability)
    def on_change_availability(self, **payload: Any) -> call_result.ChangeAvailability:
        return call_result.ChangeAvailability(**self._reply("ChangeAvailability", payload))

    @answers(Action.reset)
    def on_reset(self, **payload: Any) -> call_result.Reset:
        return call_result.Reset(**self._reply("Reset", payload))

    @answers(Action.unlock_connector)
    def on_unlock_connector(self, **payload: Any) -> call_result.UnlockConnector:
        return call_result.UnlockConnector(**self._reply("UnlockConnector", payload))

    @answers(Action.change_configuration)
    def on_change_configuration(self, **payload: Any) -> call_result.ChangeConfiguration:
        return call_result.ChangeConfiguration(**self._reply("ChangeConfiguration", payload))

    @answers(Action.get_composite_schedule)
    def on_get_composite_schedule(self, **payload: Any) -> call_result.GetCompositeSchedule:
        return call_result.GetCompositeSchedule(**self._reply("GetCompositeSchedule", payload))

    @answers(Action.reserve_now)
    def on_reserve_now(self, **payload: Any) -> call_result.ReserveNow:
        return call_result.ReserveNow(**self._reply("ReserveNow", payload))

    @answers(Action.cancel_reservation)
    def on_cancel_reservation(self, **payload: Any) -> call_result.CancelReservation:
        return call_result.CancelReservation(**self._reply("CancelReservation", payload))

    @answers(Action.data_transfer)
    def on_data_transfer(self, **payload: Any) -> call_result.DataTransfer:
        return call_result.DataTransfer(**self._reply("DataTransfer", payload))

    @answers(Action.clear_cache)
    def on_clear_cache(self, **payload: Any) -> call_result.ClearCache:
        return call_result.ClearCache(**self._reply("ClearCache", payload))

    @answers(Action.send_local_list)
    def on_send_local_list(self, **payload: Any) -> call_result.SendLocalList:
        return call_result.SendLocalList(**self._reply("SendLocalList", payload))

    @answers(Action.get_configuration)
    def on_get_configuration(self, **payload: Any) -> call_result.GetConfiguration:
        if "GetConfiguration" not in self.replies:
            raise OcppNotImplemented(details={"cause": "No handler for GetConfiguration registered."})
        self._got("GetConfiguration", payload)
        return call_result.GetConfiguration(**self.replies["GetConfiguration"])

    @answers(Action.get_local_list_version)
    def on_get_local_list_version(self, **payload: Any) -> call_result.GetLocalListVersion:
        self._got("GetLocalListVersion", payload)
        return call_result.GetLocalListVersion(**{"list_version": 0, **self.replies.get("GetLocalListVersion", {})})


class ChargerLink:
    """A connected Charger with its read loop running, closed on exit."""

    def __init__(self, url: str, cp_id: str, subprotocols: list[str] | None = None) -> None:
        self.url, self.cp_id = url, cp_id
        self.subprotocols = [Subprotocol(p) for p in (["ocpp1.6"] if subprotocols is None else subprotocols)]
        self.charger: Charger
        self._task: asyncio.Task[None]

    async def __aenter__(self) -> Charger:
        self.connection = await websockets.connect(
            f"{self.url}/{self.cp_id}",
            subprotocols=self.subprotocols or None,
            open_timeout=WAIT_S,
        )
        self.charger = Charger(self.cp_id, self.connection)
        self._task = asyncio.create_task(self.charger.start())
        return self.charger

    async def __aexit__(self, *exc: object) -> None:
        await self.connection.close()
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


FIXTURES = Path(__file__).parent / "fixtures"

# What the recorded `meter_values_8` frame maps to (interface section 4), written out once.
METER_VALUES_8 = {
    "CP_1__MeterValues__1__Energy.Active.Import.Register__Wh": 1234567,
    "CP_1__MeterValues__1__Power.Active.Import__W": 11040.5,
    "CP_1__MeterValues__1__Voltage__L1-N__V": 231.2,
    "CP_1__MeterValues__1__Voltage__L2-N__V": 230.8,
    "CP_1__MeterValues__1__Voltage__L3-N__V": 229.9,
    "CP_1__MeterValues__1__Current.Import__L1__A": 16.02,
    "CP_1__MeterValues__1__Current.Import__L2__A": 15.98,
    "CP_1__MeterValues__1__Current.Import__L3__A": 16.0,
}


def frame(name: str, **changes: Any) -> tuple[str, dict[str, Any]]:
    """(action, payload) of a recorded OCPP 1.6 frame, with top-level fields changed."""
    action, payload = json.loads((FIXTURES / "ocpp16_frames.json").read_text())[name]
    return action, {**payload, **changes}


async def send(charger: OcppClient, name: str, **changes: Any) -> Any:
    """Send a recorded frame through the ocpp library's client; its typed answer."""
    from ocpp.charge_point import camel_to_snake_case
    from ocpp.v16 import call

    action, payload = frame(name, **changes)
    request = getattr(call, action)(**camel_to_snake_case(payload))
    async with asyncio.timeout(WAIT_S):
        return await charger.call(request, suppress=False)


class RawLink:
    """A bare WebSocket for frames the ocpp library would refuse to send."""

    def __init__(self, url: str, cp_id: str) -> None:
        self.target = f"{url}/{cp_id}"

    async def __aenter__(self) -> RawLink:
        self.connection = await websockets.connect(self.target, subprotocols=["ocpp1.6"], open_timeout=WAIT_S)  # type: ignore[list-item]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.connection.close()

    async def exchange(self, text: str) -> Any:
        """Send a frame and return the decoded answer."""
        await self.connection.send(text)
        async with asyncio.timeout(WAIT_S):
            return json.loads(await self.connection.recv())


def base_env(broker: Mosquitto, name: str, tmp_path: Path) -> dict[str, str]:
    """The environment of a connector process against `broker`: nothing else inherited."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH", "VIRTUAL_ENV")}
    return {
        **keep,
        "CONNECTOR_NAME": name,
        "MQTT_BROKER_HOST": "127.0.0.1",
        "MQTT_BROKER_PORT": str(broker.port),
        "OCPP_HOST": "127.0.0.1",
        "OCPP_PORT": "0",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": "0",  # the operations server too: never a fixed port in tests
        "STATE_DIR": str(tmp_path / "state"),
    }


class ConnectorProcess:
    """`python -m connector` as a child process; its stderr is read all along (a full pipe
    would block the connector) and kept as lines that tests can wait for."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for line in self.process.stderr:
            self.lines.append(line.decode(errors="replace"))
            self._changed.set()
        self._changed.set()  # end of output: waiters look one last time

    async def wait_for_line(self, pattern: str, within: float = WAIT_S, since: int = 0) -> re.Match[str]:
        """The first stderr line (from line number `since` on) that matches `pattern`."""
        async with asyncio.timeout(within):
            seen = since
            while True:
                for line in self.lines[seen:]:
                    if found := re.search(pattern, line):
                        return found
                seen = len(self.lines)
                if self._reader.done():
                    raise AssertionError(f"connector exited before logging {pattern!r}: {self.lines[-10:]}")
                self._changed.clear()
                await self._changed.wait()

    def rss_kb(self) -> int:
        """The connector's resident memory now (Linux)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        found = re.search(r"VmRSS:\s+(\d+) kB", status)
        assert found is not None
        return int(found.group(1))

    async def kill(self) -> None:
        """SIGKILL (if still running) and reap."""
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()
        await self._reader


async def spawn_connector(env: dict[str, str], cwd: Path) -> ConnectorProcess:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "connector", env=env, cwd=cwd, stderr=asyncio.subprocess.PIPE
    )
    return ConnectorProcess(process)


def run_connector(env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Run `python -m connector` to its end (a start that must fail); (exit status, stderr)."""
    done = subprocess.run(
        [sys.executable, "-m", "connector"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=False,
    )
    return done.returncode, done.stderr


@dataclass
class HttpAnswer:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def http_request(port: int, path: str, method: str = "GET", raw: bytes | None = None) -> HttpAnswer:
    """One HTTP/1.1 request to 127.0.0.1:port (or the `raw` bytes as sent), read to the server's close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw if raw is not None else f"{method} {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
        async with asyncio.timeout(WAIT_S):
            data = await reader.read()  # the server closes after every response
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (h.partition(":") for h in header_lines)}
    return HttpAnswer(int(status_line.split(" ")[1]), headers, body)
