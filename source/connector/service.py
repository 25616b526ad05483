"""Composition root and lifecycle: build the parts, run them, shut down in order.

Shutdown (SIGTERM/SIGINT, section 1 of the interface): close every charge point with
1001, which publishes `<cp>__connected = false` for each; wait (bounded) for the broker to
acknowledge what is queued; disconnect (bounded). Budget: ocpp_server.CLOSE_TIMEOUT_S (2)
+ MQTT_FLUSH_TIMEOUT_S (1) + bemcom.DISCONNECT_TIMEOUT_S (1) = 4 s of the 5 s the
interface allows; the rest (the registry's last save, the process exit) takes milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
from collections.abc import Callable, Collection, Coroutine, Mapping
from typing import Any

import redis

from connector import __version__, status_page
from connector.actuators import ACTUATORS
from connector.bemcom import BemcomMqtt, MqttLogHandler
from connector.commands import CommandRunner
from connector.coordination import Coordinator
from connector.datapoints import Datapoint, key, now_ms
from connector.fleet import Roster
from connector.handover import Handover, SharedOwnership
from connector.instances import Presence
from connector.memory import manage_garbage_collection
from connector.metrics import Sources, registry_for, versions_connected
from connector.ocpp_server import DeviceDispatcher, ListenError
from connector.ops_http import Health, OpsHttpServer, Routes
from connector.registry import ActuatorRef, Registry
from connector.registry_store import RegistryStore
from connector.security import Security
from connector.security import load as load_security
from connector.settings import Settings
from connector.shared import InstanceNameTakenError, Shared, claim_ttl
from connector.shared_listing import TICK_S, FleetMerge, ListingLease
from connector.shared_registry import SharedRegistryStore
from connector.shared_transactions import SharedTransactionStore
from connector.transactions import TransactionStore
from connector.upkeep import Upkeep
from connector.versions import BY_NAME

LOG = logging.getLogger(__name__)

MQTT_FLUSH_TIMEOUT_S = 1.0
BACKGROUND_STOP_S = 0.5  # background work cancelled at shutdown must end within this


class ConnectorEvents:
    """Turns session events into MQTT datapoints and actuator announcements.

    Actuators are routable while their charge point is connected, but listed only once it
    is known: it booted (now or before, as the roster remembers), or the operator
    authenticates every charge point (then the identities are the operator's). So an
    identity that merely connects, as anyone can without authentication, leaves nothing
    in the listing once it is gone.
    """

    def __init__(
        self, mqtt_side: BemcomMqtt, enabled_actuators: frozenset[str], roster: Roster, trust_at_connect: bool
    ) -> None:
        self._mqtt = mqtt_side
        self._enabled = [ACTUATORS[name] for name in sorted(enabled_actuators)]
        self._roster = roster
        self._trust_at_connect = trust_at_connect
        # Per connected charge point: its version's listing examples where they differ from the catalogue's.
        self._examples: dict[str, Mapping[str, object]] = {}
        self.on_arrival: Callable[[str], None] = lambda cp: None  # commands waiting for it (coordination.py)

    def publish(self, cp: str, points: list[Datapoint]) -> None:
        self._mqtt.publish_values(points, cp)

    def lost(self, cp: str, at: int, back: bool = False) -> None:
        """The instance serving `cp` died at `at` (ms) without saying it is gone (several instances).

        `back`: it is connected here again (it came back before that death was known): its
        `true` is said again after the `false`, so the newest value is right.
        """
        points = [Datapoint(key(cp, "connected"), False, at)]
        if back:
            points.append(Datapoint(key(cp, "connected"), True, max(now_ms(), at + 1)))
        else:
            self._roster.left(cp)  # else no instance would ever say it is gone, nor forget it
        self._mqtt.publish_values(points, cp)

    def still_here(self, cp: str) -> None:
        """`connected = true` again, nothing else: another instance had said it was gone (instances.py)."""
        self._mqtt.publish_values([Datapoint(key(cp, "connected"), True, now_ms())], cp)

    def connected(self, cp: str, is_connected: bool, version: str | None = None) -> None:
        """`connected` true or false; on connect, `ocpp_version` first, so a reader of `connected`
        finds the version it is served in (a charger may come back in another after an update)."""
        at = now_ms()
        points = [Datapoint(key(cp, "connected"), is_connected, at)]
        if is_connected and version is not None:
            points.insert(0, Datapoint(key(cp, "ocpp_version"), version, at))
        self._mqtt.publish_values(points, cp)
        if not is_connected:
            self._roster.left(cp)
            self._mqtt.drop_unlisted(cp)
            self._examples.pop(cp, None)
            return
        self._roster.arrived(cp)
        self.on_arrival(cp)
        self._examples[cp] = BY_NAME[version].examples if version in BY_NAME else {}
        for actuator in self._enabled:
            if not actuator.per_connector:
                self._announce(cp, actuator.name, 0, key(cp, actuator.name))

    def connector_seen(self, cp: str, connector_id: int) -> None:
        for actuator in self._enabled:
            if actuator.per_connector and (connector_id != 0 or not actuator.needs_connector):
                self._announce(cp, actuator.name, connector_id, key(cp, actuator.name, connector_id))

    def booted(self, cp: str) -> None:
        """A BootNotification: from now on the charge point is known, its actuators listed."""
        self._roster.booted(cp)
        self._mqtt.list_actuators(cp)

    def _announce(self, cp: str, name: str, connector_id: int, actuator_key: str) -> None:
        example = self._examples.get(cp, {}).get(name, ACTUATORS[name].example)
        listed = self._trust_at_connect or self._roster.is_booted(cp)
        self._mqtt.announce_actuator(actuator_key, ActuatorRef(cp, name, connector_id), example, listed)


class ChargersHere:
    """instances.Here for the service: what Presence needs of this instance's chargers."""

    def __init__(self, service: Service, transactions: SharedTransactionStore) -> None:
        self._service = service
        self._transactions = transactions

    def served(self) -> Collection[str]:
        return self._service.dispatcher.served

    def lost(self, cp: str, at: int, back: bool) -> None:
        self._service.events.lost(cp, at, back)

    def back(self, cp: str) -> None:
        self._service.events.still_here(cp)

    def close(self, cp: str) -> None:
        self._service.dispatcher.close_quietly(cp, "served by another instance")

    def restate(self, cps: list[str]) -> None:
        self._transactions.restate(cps)


def authenticates_charge_points(security: Security) -> bool:
    """Whether only identities the operator configured can connect (profile 1, allow-list, profile 3)."""
    client_certificates = security.ocpp_tls is not None and security.ocpp_tls.verify_mode == ssl.CERT_REQUIRED
    return security.passwords is not None or security.allowed is not None or client_certificates


class Service:
    def __init__(self, settings: Settings, security: Security | None = None) -> None:
        self.settings = settings
        security = security or load_security(settings)
        self.registry = Registry(settings.max_keys_per_charge_point)
        self.mqtt = BemcomMqtt(settings, self.registry, security.mqtt_ca_file)
        raw_tap = self.mqtt.publish_raw if settings.send_raw_message_to_db else None
        # As many absent charge points are remembered as may be connected at once.
        self.roster = Roster(settings.forget_after, settings.ocpp_max_connections)
        trusted = authenticates_charge_points(security)
        self.events = ConnectorEvents(self.mqtt, settings.enabled_actuators, self.roster, trusted)
        self.shared: Shared | None = None
        self.presence: Presence | None = None
        handover: Handover | None = None
        self.transactions: TransactionStore
        if settings.state_url is not None:
            self.shared = shared = Shared(
                settings.state_url,
                settings.connector_name,
                settings.connector_instance,
                claim_ttl(settings.ocpp_response_timeout),
            )
            adopt_spools = self.mqtt.adopter.adopt if self.mqtt.adopter is not None else None
            shared_store = SharedTransactionStore(shared, settings.state_dir)
            self.transactions = shared_store
            self.presence = Presence(shared, ChargersHere(self, shared_store), adopt_spools)
            handover = SharedOwnership(shared, shared_store, self.presence)
        else:
            self.transactions = TransactionStore(settings.state_dir)
        transactions = self.transactions
        self.dispatcher = DeviceDispatcher(
            settings, self.events, transactions, security, raw_tap=raw_tap, room=self.mqtt.room, handover=handover
        )
        self.upkeep = self._keep_registry(settings)
        self.commands = CommandRunner(
            self.dispatcher.sessions.get, self.mqtt.publish_command_result, transactions, settings
        )
        self.coordinator: Coordinator | None = None
        if self.shared is not None:
            self.coordinator = Coordinator(
                self.commands,
                self.shared,
                self.dispatcher.sessions.get,
                self.registry.actuator_refs.get,
                self.mqtt.publish_command_result,
                response_timeout=settings.ocpp_response_timeout,
            )
            self.events.on_arrival = self.coordinator.arrived
        self.ops_http = None if settings.http_port is None else self._operations(settings.http_host, settings.http_port)
        self.stop = asyncio.Event()
        self.started = asyncio.Event()
        self.fatal: InstanceNameTakenError | None = None  # why the service stopped on its own

    def _keep_registry(self, settings: Settings) -> Upkeep:
        """The registry and the roster kept in STATE_DIR, or (several instances) shared through Redis:
        loaded at upkeep's first tick (Redis may be unreachable at start), the listing published by one."""
        self.fleet_merge: FleetMerge | None = None
        self.listing_lease: ListingLease | None = None
        if self.shared is None or settings.state_url is None:
            self._store: RegistryStore | SharedRegistryStore = RegistryStore(settings.state_dir)
            upkeep = Upkeep(self.registry, self.roster, self._store, self._forget)
            upkeep.restore()
            return upkeep
        self._store = store = SharedRegistryStore(settings.state_url, settings.connector_name, self.shared.instance)
        here = self.dispatcher.sessions.__contains__
        self.fleet_merge = FleetMerge(store, self.registry, self.roster, self.mqtt, here=here, forget=self._forget)
        self.listing_lease = ListingLease(self.shared, self.mqtt.listing_changed)
        self.mqtt.publishes_listing = self.listing_lease.held
        return Upkeep(
            self.registry, self.roster, store, self._forget, exchange=self.fleet_merge.exchange, every_s=TICK_S
        )

    def _operations(self, host: str, port: int) -> OpsHttpServer:
        """The operations HTTP server, reading the state the parts keep anyway."""
        sessions, mqtt_side = self.dispatcher.sessions, self.mqtt
        health = Health(
            live={"mqtt": lambda: mqtt_side.connected, "ocpp": lambda: self.dispatcher.listening},
            ready={"ocpp": lambda: self.dispatcher.listening, **self._state_check()},
            charge_points=lambda: len(sessions),
            instance=self.shared.instance if self.shared is not None else None,
        )
        sources = Sources(
            frames=self.dispatcher.metrics,
            commands=self.commands.results,
            versions=lambda: versions_connected(sessions),
            mqtt_connected=lambda: mqtt_side.connected,
            mqtt_delivered=lambda: mqtt_side.delivered,
            mqtt_queue_depth=lambda: mqtt_side.pending,
            mqtt_dropped=lambda: mqtt_side.dropped,
        )
        address = self.settings.mqtt_broker_address

        def page(request: status_page.Request) -> str:
            broker = status_page.Broker(address, mqtt_side.connected, mqtt_side.pending, mqtt_side.dropped)
            return status_page.render(sessions, request, broker, __version__)

        return OpsHttpServer(host, port, Routes(health, registry_for(sources, health.instance), page))

    def _state_check(self) -> dict[str, Callable[[], bool]]:
        """Several instances: no charger can be served here without Redis (its name claimed, Redis answering)."""
        shared, presence = self.shared, self.presence
        if shared is None or presence is None:
            return {}
        return {"state": lambda: presence.named.is_set() and shared.reachable}

    async def _listen(self) -> None:
        """Bind the operations port, then OCPP's; ListenError if either is taken."""
        if self.ops_http is not None:
            await self.ops_http.listen()
        try:
            await self.dispatcher.listen()
        except ListenError:
            if self.ops_http is not None:
                self.ops_http.close()
            raise

    async def run(self) -> None:
        await self._listen()
        self.started.set()
        log_handler = MqttLogHandler(self.mqtt)
        logging.getLogger().addHandler(log_handler)
        self.mqtt.start(self.coordinator.submit if self.coordinator is not None else self.commands.submit)
        loop = asyncio.get_running_loop()
        background = [loop.create_task(work, name=getattr(work, "__qualname__", None)) for work in self._background()]
        for task in background:
            task.add_done_callback(self._background_ended)
        try:
            await self.dispatcher.serve_until(self.stop)
        finally:
            await self._stop_background(background)
            LOG.info("stopped serving charge points; flushing MQTT")
            logging.getLogger().removeHandler(log_handler)
            if self.coordinator is not None:
                await self.coordinator.stop()
            if self.listing_lease is not None:
                await self.listing_lease.release()
            await self.mqtt.stop(MQTT_FLUSH_TIMEOUT_S, fleet_offline=await self._last_instance())
            try:
                self._store.close()
            finally:
                self.transactions.close()  # commits the seqNo journal's waiting rows
            if self.shared is not None:
                await self.shared.close()
        failed = [task.exception() for task in background if task.done() and not task.cancelled()]
        errors = [error for error in failed if isinstance(error, Exception)]
        if errors:
            raise ExceptionGroup("background work failed", errors)
        if self.fatal is not None:
            raise self.fatal

    def _background(self) -> list[Coroutine[Any, Any, None]]:
        """The service's work beside serving chargers, each until cancelled."""
        work = [
            self.mqtt.run_heartbeat(),
            self.mqtt.run_available_datapoints(),
            manage_garbage_collection(self.dispatcher.session_counts),
            self.upkeep.run(),
        ]
        if self.ops_http is not None:
            work.append(self.ops_http.serve())
        if self.presence is not None:
            work.append(self._keep_presence(self.presence))
        if self.listing_lease is not None and self.fleet_merge is not None:
            work.append(self.listing_lease.run(self.fleet_merge.loaded))
        if self.mqtt.adopter is not None and self.presence is not None:
            work.append(self.mqtt.adopter.run(self.presence.named))
        return work

    def _background_ended(self, task: asyncio.Task[None]) -> None:
        """Background work ends only when cancelled: one that fails stops the service (as a TaskGroup would)."""
        if not task.cancelled() and task.exception() is not None:
            LOG.error("%s failed; stopping", task.get_name(), exc_info=task.exception())
            self.stop.set()

    async def _stop_background(self, background: list[asyncio.Task[None]]) -> None:
        """Cancel the background work and wait for it, bounded: a task that does not end in
        BACKGROUND_STOP_S is left behind, named in the log with where it waits, so SIGTERM
        still ends within the 5 s of section 1 (seen once under load with several instances)."""
        for task in background:
            task.cancel()
        _, pending = await asyncio.wait(background, timeout=BACKGROUND_STOP_S)
        for task in pending:
            where = " <- ".join(f"{f.f_code.co_name}:{f.f_lineno}" for f in reversed(task.get_stack()))
            LOG.error(
                "%s did not stop within %g s (waiting in %s); left behind",
                task.get_name(),
                BACKGROUND_STOP_S,
                where,
            )

    async def _keep_presence(self, presence: Presence) -> None:
        try:
            await presence.run()
        except InstanceNameTakenError as error:
            LOG.error("%s", error)
            self.fatal = error
            self.stop.set()

    async def _last_instance(self) -> bool:
        """Whether no other instance serves the fleet (then `N/state` goes offline); leaves Redis."""
        if self.shared is None:
            return True
        try:
            if self.fatal is None:
                await self.shared.leave()
            return not await self.shared.others_alive()
        except (redis.RedisError, OSError):
            return True  # unknown: a live instance answers `offline` with `online` (bemcom.py)

    def _forget(self, cp: str) -> None:
        """Drop everything kept of a charge point that has been gone for long."""
        self.mqtt.forget(cp)
        self.dispatcher.chargers.pop(cp, None)
        self.transactions.forget(cp)


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
