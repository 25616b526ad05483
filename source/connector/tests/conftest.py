"""Fixtures: one real mosquitto per test run, a connector per test, an MQTT probe; redis, HAProxy."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

from connector.main import configure_logging
from connector.service import Service
from connector.settings import Settings
from connector.tests.harness import WAIT_S, Mosquitto, MqttProbe
from connector.tests.harness_ha import Backend, HAProxy, RedisServer

_names = itertools.count()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    server = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of this test's own: it starts in a few milliseconds, and a test may stop or kill it."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


class StartHAProxy(Protocol):
    """The `start_haproxy` fixture: backends, and for TLS the bind options and frontend rules."""

    def __call__(self, backends: list[Backend], bind_options: str = "", rules: str = "") -> HAProxy: ...


@pytest.fixture
def start_haproxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartHAProxy]:
    """Starts HAProxy from the shipped deploy/haproxy.cfg in front of the given backends; all stopped at the end."""
    started: list[HAProxy] = []

    def start(backends: list[Backend], bind_options: str = "", rules: str = "") -> HAProxy:
        proxy = HAProxy(tmp_path_factory.mktemp("haproxy"), backends, bind_options=bind_options, rules=rules)
        started.append(proxy)
        proxy.start()
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker this test stops and starts again (on the same port, without persistence)."""
    directory = tmp_path / "broker"
    directory.mkdir()
    server = Mosquitto(directory)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def connector_name() -> str:
    """A fresh topic prefix per test, so retained messages never leak between tests."""
    return f"test-connector-{next(_names)}"


@pytest.fixture
def settings_env(broker: Mosquitto, connector_name: str, tmp_path: Path) -> dict[str, str]:
    return {
        "CONNECTOR_NAME": connector_name,
        "MQTT_BROKER_HOST": "127.0.0.1",
        "MQTT_BROKER_PORT": str(broker.port),
        "OCPP_HOST": "127.0.0.1",
        "OCPP_PORT": "0",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": "0",  # the operations server too: never a fixed port in tests
        "STATE_DIR": str(tmp_path / "state"),
        "OCPP_RESPONSE_TIMEOUT": "5",
    }


@pytest.fixture
async def probe(broker: Mosquitto, connector_name: str) -> AsyncIterator[MqttProbe]:
    client = MqttProbe(broker.port)
    await client.subscribe(f"{connector_name}/#")
    yield client
    client.close()


class RunningConnector:
    def __init__(self, service: Service, task: asyncio.Task[None]) -> None:
        self.service = service
        self.task = task
        self.name = service.settings.connector_name

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.service.dispatcher.port}"

    def topic(self, part: str) -> str:
        return f"{self.name}/{part}"

    async def stop(self) -> None:
        self.service.stop.set()
        async with asyncio.timeout(WAIT_S):
            await self.task


async def start_connector(env: dict[str, str], probe: MqttProbe) -> RunningConnector:
    """Start a connector in this event loop; return once it serves OCPP and listens on MQTT."""
    settings = Settings.from_env(env)
    configure_logging(settings.debug)
    since = len(probe.messages)
    service = Service(settings)
    task = asyncio.create_task(service.run())
    async with asyncio.timeout(WAIT_S):
        await service.started.wait()
    running = RunningConnector(service, task)
    await probe.wait_for(running.topic("logs"), lambda p: p["msg"].startswith("connected to MQTT broker"), since=since)
    return running


@pytest.fixture
async def connector(settings_env: dict[str, str], probe: MqttProbe) -> AsyncIterator[RunningConnector]:
    """A connector running in this test's event loop, against the test broker."""
    running = await start_connector(settings_env, probe)
    yield running
    if not running.task.done():
        await running.stop()


class Topics(Protocol):
    """Whatever names a connector's topics: a RunningConnector, or `Prefix` for a process."""

    def topic(self, part: str) -> str: ...


@dataclass(frozen=True)
class Prefix:
    """The topics of a connector running as a process, by its CONNECTOR_NAME."""

    name: str

    def topic(self, part: str) -> str:
        return f"{self.name}/{part}"


async def map_datapoints(probe: MqttProbe, running: Topics, sensor: dict[str, str], actuator: dict[str, str]) -> None:
    """Publish a datapoint_map and wait until the connector logged that it applied it."""
    since = len(probe.messages)
    probe.publish(running.topic("datapoint_map"), {"sensor": sensor, "actuator": actuator})
    await probe.wait_for(
        running.topic("logs"),
        lambda p: (
            isinstance(p, dict)
            and p["msg"] == f"datapoint_map applied: {len(sensor)} sensors, {len(actuator)} actuators"
        ),
        since=since,
    )


async def wire(probe: MqttProbe, connector: RunningConnector, *keys: str) -> dict[str, tuple[str, str]]:
    """Map each actuator key to a command topic and its status sensor to a status topic."""
    topics = {k: (connector.topic(f"cmd/{k}"), connector.topic(f"status/{k}")) for k in keys}
    await map_datapoints(
        probe,
        connector,
        {f"{k}__status": status for k, (_, status) in topics.items()},
        {command: k for k, (command, _) in topics.items()},
    )
    return topics


def command(value: Any) -> dict[str, Any]:
    return {"value": value, "timestamp": 1795256100000}


def values(probe: MqttProbe, topic: str) -> list[Any]:
    return [p["value"] for p in probe.on(topic)]
