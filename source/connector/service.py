"""Composition root and lifecycle: build the parts, run them, shut down in order.

Shutdown (SIGTERM/SIGINT, section 1 of the interface): close every charge point with
1001, which publishes `<cp>__connected = false` for each; wait (bounded) for the broker to
acknowledge what is queued; disconnect. Budget: CLOSE_TIMEOUT_S + MQTT_FLUSH_TIMEOUT_S
stays well inside the 5 s the interface allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from connector.actuators import ACTUATORS
from connector.bemcom import BemcomMqtt, MqttLogHandler
from connector.commands import CommandRunner
from connector.datapoints import Datapoint, key, now_ms
from connector.memory import manage_garbage_collection
from connector.ocpp_server import DeviceDispatcher
from connector.registry import ActuatorRef, Registry
from connector.security import Security
from connector.security import load as load_security
from connector.settings import Settings
from connector.transactions import TransactionStore

LOG = logging.getLogger(__name__)

MQTT_FLUSH_TIMEOUT_S = 1.5


class ConnectorEvents:
    """Turns session events into MQTT datapoints and actuator announcements."""

    def __init__(self, mqtt_side: BemcomMqtt, enabled_actuators: frozenset[str]) -> None:
        self._mqtt = mqtt_side
        self._enabled = [ACTUATORS[name] for name in sorted(enabled_actuators)]

    def publish(self, cp: str, points: list[Datapoint]) -> None:
        self._mqtt.publish_values(points, cp)

    def connected(self, cp: str, is_connected: bool) -> None:
        self._mqtt.publish_values([Datapoint(key(cp, "connected"), is_connected, now_ms())], cp)
        if is_connected:
            for actuator in self._enabled:
                if not actuator.per_connector:
                    self._announce(cp, actuator.name, 0, key(cp, actuator.name), actuator.example)

    def connector_seen(self, cp: str, connector_id: int) -> None:
        for actuator in self._enabled:
            if actuator.per_connector and (connector_id != 0 or not actuator.needs_connector):
                actuator_key = key(cp, actuator.name, connector_id)
                self._announce(cp, actuator.name, connector_id, actuator_key, actuator.example)

    def _announce(self, cp: str, name: str, connector_id: int, actuator_key: str, example: object) -> None:
        self._mqtt.announce_actuator(actuator_key, ActuatorRef(cp, name, connector_id), example)


class Service:
    def __init__(self, settings: Settings, security: Security | None = None) -> None:
        self.settings = settings
        security = security or load_security(settings)
        self.registry = Registry(settings.max_keys_per_charge_point)
        self.mqtt = BemcomMqtt(settings, self.registry, security.mqtt_ca_file)
        raw_tap = self.mqtt.publish_raw if settings.send_raw_message_to_db else None
        self.events = ConnectorEvents(self.mqtt, settings.enabled_actuators)
        transactions = TransactionStore(settings.state_dir)
        self.dispatcher = DeviceDispatcher(settings, self.events, transactions, security, raw_tap)
        self.commands = CommandRunner(self.dispatcher.sessions.get, self.mqtt.publish_values, transactions, settings)
        self.stop = asyncio.Event()
        self.started = asyncio.Event()

    async def run(self) -> None:
        await self.dispatcher.listen()
        self.started.set()
        log_handler = MqttLogHandler(self.mqtt)
        logging.getLogger().addHandler(log_handler)
        self.mqtt.start(self.commands.submit)
        try:
            async with asyncio.TaskGroup() as tasks:
                background = [
                    tasks.create_task(self.mqtt.run_heartbeat()),
                    tasks.create_task(self.mqtt.run_available_datapoints()),
                    tasks.create_task(manage_garbage_collection(self.dispatcher.session_counts)),
                ]
                await self.dispatcher.serve_until(self.stop)
                for task in background:
                    task.cancel()
        finally:
            LOG.info("stopped serving charge points; flushing MQTT")
            logging.getLogger().removeHandler(log_handler)
            await self.mqtt.stop(MQTT_FLUSH_TIMEOUT_S)


async def run(settings: Settings, security: Security) -> None:
    """Run until SIGINT or SIGTERM."""
    service = Service(settings, security)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, service.stop.set)
    try:
        await service.run()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(signum)
