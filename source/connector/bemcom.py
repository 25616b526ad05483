"""The MQTT side in the BEMCom message format, over paho-mqtt.

paho's network traffic runs on the asyncio loop (`mqtt_loop.LoopDriver`), so its callbacks
arrive on the loop thread; what they start is queued with `call_soon`, outside paho's own
processing, so registry and map are only touched from plain loop callbacks. Log records
from other threads (the registry's save worker) are handed over with `call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from connector import __version__
from connector.backpressure import Room
from connector.datapoints import Datapoint, now_ms
from connector.mqtt_client import Client, FailureReports, describe
from connector.mqtt_loop import LoopDriver
from connector.outbox import QOS2_ONLY_WINDOW, Outbox
from connector.protocol import load_json
from connector.registry import (
    MAX_KEY_CHARS,
    OWN_TOPICS,
    ActuatorRef,
    DatapointMap,
    KeyLimitError,
    KeyTooLongError,
    MapError,
    Registry,
    join_listing,
)
from connector.settings import Broker, Settings
from connector.shared_spool import SharedSpools, SpoolAdopter
from connector.spool import RAW_SPOOL_FILE, SPOOL_FILE, Spool, SpoolLike
from connector.value_message import value_message

LOG = logging.getLogger(__name__)

# No limit in paho itself: the outbox already bounds what paho holds (WINDOW), and with a
# limit paho walks every message it holds on each acknowledgement (about a third of its
# thread's time in the benchmark).
MAX_INFLIGHT = 0

CONNECT_TIMEOUT_S = 1.0
# MQTT keepalive: paho pings after this long without traffic and gives the connection up
# when the answer takes as long again, so a broker that goes silent (a frozen process, a
# cut cable: no FIN, no RST) is noticed within 2 x 4 s, and /healthz says so within the
# 10 s it promises. The broker drops us after 1.5 x 4 s of silence: our thread is never
# that quiet while the process lives.
KEEPALIVE_S = 4
# At shutdown, each connection's DISCONNECT is waited for at most this long; when the
# broker did not acknowledge everything in time, only briefly (2.0.1 at 10,000 chargers
# under load: SIGTERM to exit 5.4 s, over the 5 s of the contract).
DISCONNECT_TIMEOUT_S = 1.0
DISCONNECT_WHEN_BEHIND_S = 0.2

# New keys arriving within this window go out in one available_datapoints message: a
# fleet booting at once would otherwise republish a large retained message per key.
AVAILABLE_DATAPOINTS_COALESCE_S = 1.0  # the interface allows coalescing within a second
# A large listing waits longer: at most this many bytes of listings per second on average,
# so what keys cost to announce does not grow with the fleet (the 20 MB listing of 10,000
# 2.0.1 chargers goes out at most every 20 s while keys keep appearing, not every second).
# mosquitto takes a large retained message in, and stores it, holding up every other client
# meanwhile (40-120 ms for 20 MB on the benchmark's 2 cores): each command's first
# `__status` is a new key, and at 2 MB/s a 15 s run of commands to 10,000 2.0.1 chargers
# met two listings (p99 over 25 ms in 3 runs of 8; at 8 MB/s 55 ms in every run).
AVAILABLE_DATAPOINTS_BYTES_PER_S = 1_000_000
# And it is written a write budget (256 KiB) at a time with this pause between, so the
# broker serves its other clients while it reads the listing (mqtt_loop): what still
# waits is what arrives while the broker stores it. A 20 MB listing goes out in 0.25 s or more.
LISTING_WRITE_PAUSE_S = 0.003

# `N/state` (retained), as zigbee2mqtt's bridge/state: online while connected; offline
# on a clean shutdown and, as the last will, when the connection dies.
ONLINE = json.dumps({"state": "online"}).encode()
OFFLINE = json.dumps({"state": "offline"}).encode()


def listing_pause(size: int) -> float:
    """Seconds to wait before the next available_datapoints after one of `size` bytes."""
    return max(AVAILABLE_DATAPOINTS_COALESCE_S, size / AVAILABLE_DATAPOINTS_BYTES_PER_S)


ActuatorHandler = Callable[[str, str, ActuatorRef | None, bytes | bytearray], None]  # (topic, key, ref, payload)


class BemcomMqtt:
    def __init__(self, settings: Settings, registry: Registry, tls_ca_file: str | None = None) -> None:
        self._settings = settings
        self._registry = registry
        name = settings.connector_name
        self.topics = {part: f"{name}/{part}" for part in OWN_TOPICS}
        self._client = self._new_client(tls_ca_file)
        self._tls = tls_ca_file is not None
        self._failures = FailureReports()
        # available_datapoints has its own connection: at 10,000 chargers it is a 27 MB
        # message; on one connection, its writing would hold up the commands and
        # acknowledgements arriving on the main connection (the benchmark's command p99 doubled).
        self._listing_client = self._new_client(tls_ca_file)
        self._listing_client.on_publish = self._on_listing_published
        self._listing_mid: int | None = None  # the last listing handed to paho
        self._listing_acked: int | None = None  # the last one the broker acknowledged
        # The broker publishes this if the connector vanishes without a clean disconnect
        # (killed, network gone): retained, so a dashboard arriving later sees it too.
        # Several instances (STATE_URL): each has its own presence topic, its main
        # connection's will; `N/state` is the fleet's, the will of the listing connection,
        # and the instances still alive answer its `offline` with `online` (`_dispatch`).
        self.instance_topic: str | None = None
        if settings.state_url is not None:
            self.instance_topic = f"{name}/instances/{settings.connector_instance}/state"
            self._client.will_set(self.instance_topic, OFFLINE, qos=1, retain=True)
            self._listing_client.will_set(self.topics["state"], OFFLINE, qos=1, retain=True)
        else:
            self._client.will_set(self.topics["state"], OFFLINE, qos=1, retain=True)
        self._stopping = False
        self._client.max_inflight_messages_set(MAX_INFLIGHT)
        # Several instances: the spools are in Redis, where another instance can deliver them.
        self._shared_spools = (
            None if settings.state_url is None else SharedSpools(settings.state_url, name, settings.connector_instance)
        )
        spool = self._spool(SPOOL_FILE, "main")
        self.room = Room()  # shared by the lanes: sessions read frames only while every lane has room
        self.outbox = Outbox(self._client, settings.mqtt_queue_limit, spool, self.room)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        # Only the main connection's failures are reported: the others fail alike.
        self.drivers = [
            LoopDriver(self._client, settings.mqtt_brokers, KEEPALIVE_S, self._connect_failed),
            LoopDriver(
                self._listing_client,
                settings.mqtt_brokers,
                KEEPALIVE_S,
                lambda error, broker: None,
                write_pause_s=LISTING_WRITE_PAUSE_S,
            ),
        ]
        self.outbox.read_acks = self.drivers[0].read_if_due
        self.lanes = [self.outbox]
        self._lanes_waiting: set[Outbox] = set()  # connected before the main connection was
        self._raw_outbox: Outbox | None = None
        if settings.send_raw_message_to_db:
            self._raw_outbox = self._raw_lane(tls_ca_file)
            self.lanes.append(self._raw_outbox)
        self.adopter: SpoolAdopter | None = None  # delivers what dead instances had spooled
        if self._shared_spools is not None:
            lanes = {"main": self.outbox} | ({"raw": self._raw_outbox} if self._raw_outbox else {})
            self.adopter = self._shared_spools.adopter(lanes, self.room)
        self._driver_tasks: list[asyncio.Task[None]] = []
        self._available_changed = asyncio.Event()
        # Several instances: whether this one publishes the (fleet-wide, identical) listing now;
        # only the holder of shared_registry.ListingLease does.
        self.publishes_listing: Callable[[], bool] = lambda: True
        self._on_actuator: ActuatorHandler = lambda topic, key, ref, payload: None
        self._over_key_limit: set[str | None] = set()
        self._sent_long_key: set[str | None] = set()  # charge points named for a key beyond MAX_KEY_CHARS
        self._retained_seen: set[str] = set()  # actuator topics whose retained message was ignored
        # Up from the subscriptions after a connect until paho reports the connection lost;
        # written on the loop thread only, so a late connect callback cannot overtake a loss.
        self.connected = False

    def _raw_lane(self, tls_ca_file: str | None) -> Outbox:
        """Raw frames get their own connection, outbox and spool.

        They go at QoS 2, whose window (`outbox.QOS2_ONLY_WINDOW`) is far narrower than QoS 1's.
        In one ordered outbox every value and command status waited behind them: an
        outside simulator saw statuses 6.5 s after their command on a busy machine.
        """
        client = self._new_client(tls_ca_file)
        client.max_inflight_messages_set(MAX_INFLIGHT)
        spool = self._spool(RAW_SPOOL_FILE, "raw")
        outbox = Outbox(client, self._settings.mqtt_queue_limit, spool, self.room, QOS2_ONLY_WINDOW)
        client.on_connect = lambda *args: self._lane_connected(outbox, args[3])
        client.on_disconnect = lambda *args: self._call_soon(lambda: self._lane_lost(outbox))
        driver = LoopDriver(client, self._settings.mqtt_brokers, KEEPALIVE_S, lambda error, broker: None)
        outbox.read_acks = driver.read_if_due
        self.drivers.append(driver)
        return outbox

    def _spool(self, file_name: str, lane: str) -> SpoolLike:
        local = Spool(Path(self._settings.state_dir) / file_name)
        return local if self._shared_spools is None else self._shared_spools.lane(lane, local)

    def _lane_connected(self, outbox: Outbox, reason: Any) -> None:
        """A lane's connection is up; it delivers once the main one is too (after `N/state` online)."""
        if not reason.is_failure:
            self._call_soon(lambda: self._lane_up(outbox))

    def _lane_up(self, outbox: Outbox) -> None:
        if self.connected:
            outbox.went_online()
        else:
            self._lanes_waiting.add(outbox)

    def _lane_lost(self, outbox: Outbox) -> None:
        self._lanes_waiting.discard(outbox)
        outbox.went_offline()

    def _call_soon(self, callback: Callable[[], None]) -> None:
        assert self._loop is not None
        self._loop.call_soon(callback)

    @property
    def pending(self) -> int:
        """Messages of every lane not yet acknowledged by the broker."""
        return sum(lane.pending for lane in self.lanes)

    @property
    def delivered(self) -> int:
        return sum(lane.delivered for lane in self.lanes)

    @property
    def dropped(self) -> int:
        return sum(lane.dropped for lane in self.lanes)

    def _new_client(self, tls_ca_file: str | None) -> Client:
        client = Client(CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
        if self._settings.mqtt_username is not None:
            client.username_pw_set(self._settings.mqtt_username, self._settings.mqtt_password)
        if tls_ca_file is not None:
            client.tls_set(ca_certs=tls_ca_file)  # the broker is verified against this CA
        # paho's default of 5 s would let a broker that never answers hold up shutdown.
        client.connect_timeout = CONNECT_TIMEOUT_S
        return client

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, on_actuator: ActuatorHandler) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        for lane in self.lanes:
            lane.start(self._loop)
        self._on_actuator = on_actuator
        LOG.info("connecting to MQTT broker %s", self._settings.mqtt_broker_address)
        self._driver_tasks = [self._loop.create_task(driver.run()) for driver in self.drivers]

    async def stop(self, flush_within: float, fleet_offline: bool = True) -> None:
        """Wait (bounded) until the broker acknowledged what was published, then disconnect.

        `fleet_offline`: `N/state` goes offline (False: other instances still serve the fleet).
        """
        self._stopping = True
        # A clean disconnect makes the broker discard the will: say offline ourselves.
        # Ahead of any backlog: if the flush below runs out of time, this must not be what is lost.
        if fleet_offline:
            self.outbox.put_first(self.topics["state"], OFFLINE, qos=1, retain=True)
        if self.instance_topic is not None:
            self.outbox.put_first(self.instance_topic, OFFLINE, qos=1, retain=True)
        flushed = all(await asyncio.gather(*(lane.flush(flush_within) for lane in self.lanes)))
        if not flushed:
            LOG.warning(
                "%d messages not yet acknowledged by the broker are kept in STATE_DIR for the next start",
                self.pending,
            )
        # A broker too slow to acknowledge in time will not take DISCONNECT soon either (it
        # queues behind what is unsent): what matters is on disk, so do not wait long for it.
        within = DISCONNECT_TIMEOUT_S if flushed else DISCONNECT_WHEN_BEHIND_S
        closed = await asyncio.gather(*(driver.disconnect(within) for driver in self.drivers))
        if not all(closed):
            LOG.warning("MQTT connection did not close in time; exiting without waiting for it")
        for task in self._driver_tasks:
            task.cancel()
        await asyncio.gather(*self._driver_tasks, return_exceptions=True)
        for lane in self.lanes:
            lane.close()
        if self._shared_spools is not None:
            self._shared_spools.close()

    async def run_heartbeat(self) -> None:
        interval_ms = int(self._settings.heartbeat_interval * 1000)
        while True:
            now = now_ms()
            self._publish_json(
                self.topics["heartbeat"],
                {"this_heartbeats_timestamp": now, "next_heartbeats_timestamp": now + interval_ms},
                qos=0,
            )
            await asyncio.sleep(self._settings.heartbeat_interval)

    async def run_available_datapoints(self) -> None:
        """Publish the listing when keys were added, at most once per coalescing window.

        Only the newest listing matters: while the last one is not yet with the broker
        (an outage), a newer one waits rather than queueing up behind it.
        """
        pause = AVAILABLE_DATAPOINTS_COALESCE_S
        while True:
            await self._available_changed.wait()
            await asyncio.sleep(pause)
            if not self.publishes_listing():
                self._available_changed.clear()  # another instance publishes; `listing_changed` if this one takes over
                continue
            if self._listing_mid is not None and self._listing_acked != self._listing_mid:
                continue  # still changed: try again after the next window
            self._available_changed.clear()
            listing = await asyncio.to_thread(join_listing, self._registry.listing_parts())
            pause = listing_pause(len(listing))
            # Queued by paho while disconnected, sent on reconnect (its rc says "not connected").
            try:
                info = self._listing_client.publish(self.topics["available_datapoints"], listing, qos=1, retain=True)
            except ValueError as error:  # e.g. beyond MQTT's 256 MB: keep serving, say why
                LOG.error("available_datapoints not published (%d bytes): %s", len(listing), error)
                continue
            finally:
                # Not kept while this waits for the next change: paho holds it until the broker has it.
                del listing
            self._listing_mid = info.mid

    def _on_listing_published(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self._listing_acked = mid

    # -- publishing --------------------------------------------------------------------

    def publish_command_result(self, points: list[Datapoint], cp: str | None = None) -> None:
        """A command's `__status` (and what its answer carries): ahead of values waiting to go."""
        self.publish_values(points, cp, urgent=True)

    def publish_values(self, points: list[Datapoint], cp: str | None = None, urgent: bool = False) -> None:
        """Record and publish (where mapped) values; `cp` the charge point they belong to.

        Per value: one registry update (the latest value, for a sensor mapped later; the
        listing only when the key is new) and one map lookup; only a mapped value is encoded.
        """
        registry = self._registry
        mapped = registry.map.sensor  # replaced whole on a new map, never changed in place
        for point in points:
            try:
                if registry.add_sensor(point, cp):
                    self._available_changed.set()
            except KeyLimitError as error:
                self._key_refused(error, cp, point.key)
                continue
            topic = mapped.get(point.key)
            if topic is not None:
                self._publish_value(topic, point, urgent)

    def announce_actuator(self, key: str, ref: ActuatorRef, example: Any, listed: bool = True) -> None:
        """Make an actuator routable and, if `listed`, list it (see Registry)."""
        try:
            if self._registry.add_actuator(key, ref, example, listed):
                self._available_changed.set()
        except KeyLimitError as error:
            self._key_refused(error, ref.cp, key)

    def list_actuators(self, cp: str) -> None:
        if self._registry.list_actuators(cp):
            self._available_changed.set()

    def listing_changed(self) -> None:
        """Publish the listing (coalesced as ever): keys came from another instance, or this one
        became the listing's publisher."""
        self._available_changed.set()

    def drop_unlisted(self, cp: str) -> None:
        self._registry.drop_unlisted(cp)

    def forget(self, cp: str) -> None:
        """Drop everything of a charge point gone for long; the listing shrinks."""
        self._registry.forget(cp)
        self._over_key_limit.discard(cp)
        self._sent_long_key.discard(cp)
        self._available_changed.set()

    def _key_refused(self, error: KeyLimitError, cp: str | None, key: str) -> None:
        if isinstance(error, KeyTooLongError):
            if cp not in self._sent_long_key:  # once per charge point, like the key limit
                self._sent_long_key.add(cp)
                LOG.warning(
                    "%s: key of %d characters not kept (at most %d), nor others as long: %.100r...",
                    cp,
                    len(key),
                    MAX_KEY_CHARS,
                    key,
                )
            return
        self._key_limit_reached(cp, key)

    def _key_limit_reached(self, cp: str | None, key: str) -> None:
        if cp not in self._over_key_limit:  # once per charge point: it will keep trying
            self._over_key_limit.add(cp)
            LOG.warning(
                "%s: has %d datapoint keys, OCPP_MAX_KEYS_PER_CHARGE_POINT; new keys such as %.200r are not published",
                cp,
                self._registry.max_keys_per_cp,
                key,
            )

    def publish_raw(self, cp: str, direction: str, frame: str, timestamp: int) -> None:
        payload = {"raw_message": frame, "timestamp": timestamp, "charge_point_id": cp, "direction": direction}
        message = {"payload": payload, "connector_version": __version__}
        self._publish_json(self.topics["raw_message_to_db"], message, qos=2, lane=self._raw_outbox or self.outbox)

    def publish_log(self, record: logging.LogRecord) -> None:
        message = {
            "timestamp": int(record.created * 1000),
            "msg": record.getMessage(),
            "emitter": record.name,
            "level": record.levelno,
        }
        if self.instance_topic is not None:  # several instances: which one says this
            message["instance"] = self._settings.connector_instance
        if self._loop is None or threading.get_ident() == self._loop_thread:
            self._publish_json(self.topics["logs"], message, qos=1)
        else:  # e.g. the registry's save worker: the outbox is touched by the loop thread only
            self._loop.call_soon_threadsafe(self._publish_json, self.topics["logs"], message, 1)

    def _publish_value(self, topic: str, point: Datapoint, urgent: bool = False) -> None:
        # value_message: json.dumps's bytes without building an encoder per value (ValueError for a NaN).
        put = self.outbox.put_urgent if urgent else self.outbox.put
        put(topic, value_message(point.value, point.timestamp), 1, True)

    def _publish_json(
        self, topic: str, message: Any, qos: int, retain: bool = False, lane: Outbox | None = None
    ) -> None:
        # allow_nan=False: a NaN would make the message unreadable to strict JSON consumers.
        (lane or self.outbox).put(topic, json.dumps(message, allow_nan=False).encode(), qos, retain)

    # -- receiving (from paho's processing, handed on with call_soon) --------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:  # e.g. credentials: ERROR, the operator must act
            self._failures.failed(self.drivers[0].broker.address, f"refused by the broker ({reason})", logging.ERROR)
            return
        # From within paho's processing of CONNACK: before paho resends what it held when
        # the connection broke.
        self.outbox.publish_now(self.topics["state"], ONLINE, qos=1, retain=True)
        if self.instance_topic is not None:
            self.outbox.publish_now(self.instance_topic, ONLINE, qos=1, retain=True)
        assert self._loop is not None
        self._loop.call_soon(self._subscribe_all, self._failures.connected())

    def _connect_failed(self, error: Exception, broker: Broker) -> None:
        reason, level = describe(error, tls=self._tls)
        self._failures.failed(broker.address, reason, level)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            LOG.warning("MQTT connection lost (%s); reconnecting", reason)
        assert self._loop is not None
        self._loop.call_soon(self._went_offline)

    def _went_offline(self) -> None:
        self.connected = False
        self.outbox.went_offline()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        assert self._loop is not None
        self._loop.call_soon(self._dispatch, message.topic, message.payload, bool(message.retain))

    def _subscribe_all(self, failed_attempts: int = 0) -> None:
        """After every (re)connect: with a clean session the broker forgot our subscriptions."""
        self._client.subscribe(self.topics["datapoint_map"], qos=2)
        if self.instance_topic is not None:
            self._client.subscribe(self.topics["state"], qos=1)
        for topic in self._registry.map.actuator:
            self._client.subscribe(topic, qos=2)
        self.outbox.went_online()  # what was kept during the outage, oldest first
        self.connected = True
        for lane in self._lanes_waiting:
            lane.went_online()
        self._lanes_waiting.clear()
        # Logged after subscribing: the broker handles one client's packets in order, so
        # whoever sees this line on N/logs knows the subscriptions are in place.
        LOG.info(
            "connected to MQTT broker %s (after %d failed attempts); subscribed to %s",
            self.drivers[0].broker.address,
            failed_attempts,
            self.topics["datapoint_map"],
        )
        self._available_changed.set()  # the broker may have restarted without persistence

    def _dispatch(self, topic: str, payload: bytes | bytearray, retained: bool = False) -> None:
        if topic == self.topics["datapoint_map"]:
            self._apply_map(payload)
            return
        if topic == self.topics["state"]:
            self._fleet_state(payload)
            return
        found = self._registry.actuator_for_topic(topic)
        if found is None or not payload:  # empty: how MQTT deletes a retained message, not a command
            return
        if retained:
            self._skip_retained_command(topic)
            return
        key, ref = found
        self._on_actuator(topic, key, ref, payload)

    def _fleet_state(self, payload: bytes | bytearray) -> None:
        """Several instances: `N/state` went offline (another instance's will, or its clean
        stop while it thought itself the last); this one still serves the fleet."""
        if self.instance_topic is not None and not self._stopping and bytes(payload) == OFFLINE:
            LOG.info("%s went offline (another instance stopped); this instance serves: online", self.topics["state"])
            self.outbox.put(self.topics["state"], ONLINE, qos=1, retain=True)

    def _skip_retained_command(self, topic: str) -> None:
        """A retained actuator message is an old command, delivered again on every subscribe.

        A retained `Reset Hard` that had failed (charger not yet connected) reached the
        charger after the next broker restart. The broker sets the flag only on what it
        stored earlier; a live message reaches a subscriber without it (MQTT 3.1.1 3.3.1.3).
        """
        if topic not in self._retained_seen:  # once per topic: every reconnect brings it again
            self._retained_seen.add(topic)
            LOG.info("ignored a retained message on actuator topic %.200r: an old command is never sent", topic)

    def _apply_map(self, payload: bytes | bytearray) -> None:
        if not payload:  # the retained map deleted: nothing new to route by
            LOG.info("datapoint_map deleted (empty message); kept the current one")
            return
        try:
            new_map = DatapointMap.parse(load_json(payload), self._settings.connector_name)
        except (ValueError, MapError) as error:
            LOG.error("ignored malformed datapoint_map (kept the previous one): %s", error)
            return
        old_map = self._registry.map
        self._registry.map = new_map
        for topic in old_map.actuator.keys() - new_map.actuator.keys():
            self._client.unsubscribe(topic)
        for topic in new_map.actuator.keys() - old_map.actuator.keys():
            self._client.subscribe(topic, qos=2)
        # A newly mapped sensor gets its latest value at once: some (boot data) never repeat.
        for key, topic in new_map.sensor.items():
            latest = self._registry.latest(key)
            if latest is not None and old_map.sensor.get(key) != topic:
                self._publish_value(topic, latest)
        LOG.info("datapoint_map applied: %d sensors, %d actuators", len(new_map.sensor), len(new_map.actuator))


class MqttLogHandler(logging.Handler):
    """Sends log records of level INFO and above to `N/logs`."""

    def __init__(self, mqtt_side: BemcomMqtt) -> None:
        super().__init__(level=logging.INFO)
        self._mqtt = mqtt_side

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._mqtt.publish_log(record)
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)
