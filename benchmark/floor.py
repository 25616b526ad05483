"""The floor: the least an OCPP -> MQTT bridge must do for a MeterValues or TransactionEvent.

    .venv/bin/python benchmark/floor.py --mqtt-port 1883 [--name bench] [--host 127.0.0.1] [--port 0]
                                        [--mapped PATH,...] [--raw]

A websockets server (compression off, like the connector) speaking `ocpp1.6` and
`ocpp2.0.1` that, per frame, parses the JSON and answers: BootNotification with Accepted
(the same answer in both versions), every other CALL with `{}` (a valid answer to
MeterValues and TransactionEvent alike). For a MeterValues CALL, and a 2.0.1
TransactionEvent, it first publishes each sampled value with paho (QoS 1, retained, paho's
network thread started with `loop_start`) to `<name>/v/<cp>__MeterValues__<c>__<measurand>
[__<phase>]__<unit>` as `{"value": float, "timestamp": ms}`, the timestamp being the meter
value's, as the connector publishes it. `<c>` is 1.6's `connectorId`, 2.0.1's `evseId` or
TransactionEvent `evse.id` (the benchmark always sends it); the unit 1.6's `unit`, 2.0.1's
`unitOfMeasure` (value x 10^multiplier), default Wh. `--mapped` names the values a
datapoint map would map (`<measurand>[__<phase>]`, comma-separated; default: all): the
others are skipped before they are read, as the least a bridge with a map must do. `--raw`
also publishes every frame in and out at QoS 2 to `<name>/raw_message_to_db`, in the
connector's shape (`{"payload": {"raw_message", "timestamp", "charge_point_id",
"direction"}, "connector_version"}`), a frame in before its values, a frame out once sent,
on a second MQTT connection whose paho client holds at most 20 QoS 2 messages in flight:
mosquitto drops an MQTT 3.1.1 client that sends more unacknowledged QoS 2 messages than its
`max_inflight_messages` (20 by default), and a lane of its own keeps the values' unlimited.
No schema validation, no registry, no transaction state, no keepalive pings, no logging
per charge point:
`benchmark/bench.py` measures the connector against this, in the same run. Logs `floor
listening on ws://host:port` on stderr once the broker connection is up (`--port 0`: a
free port).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from websockets.asyncio.server import ServerConnection, serve
from websockets.typing import Subprotocol

OCPP16, OCPP201 = Subprotocol("ocpp1.6"), Subprotocol("ocpp2.0.1")
Read = Callable[[dict[str, Any]], tuple[float, str]]  # a sampled value -> (value, unit)
# paho numbers unacknowledged messages with 16-bit ids: far more than this outstanding and
# new ones would overwrite old ones (lost without an error). Reading waits below it.
MAX_UNACKNOWLEDGED = 30_000
RAW_MAX_INFLIGHT = 20  # mosquitto's default max_inflight_messages: more QoS 2 in flight and it disconnects


class Floor:
    def __init__(
        self,
        name: str,
        client: mqtt.Client,
        mapped: frozenset[str] | None = None,
        raw_client: mqtt.Client | None = None,
    ) -> None:
        self.name = name
        self.client = client
        self.mapped = mapped  # the `<measurand>[__<phase>]` published; None: all
        self.raw_client = raw_client  # None: raw messages off
        self.raw_topic = f"{name}/raw_message_to_db"
        self.published = self.raw_published = 0  # written by the loop thread only
        self.acknowledged = self.raw_acknowledged = 0  # each written by its client's paho thread only
        client.on_publish = self.on_publish
        if raw_client is not None:
            raw_client.on_publish = self.on_raw_publish

    def on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        self.acknowledged += 1

    def on_raw_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        self.raw_acknowledged += 1

    def unacknowledged(self) -> int:
        return self.published - self.acknowledged + self.raw_published - self.raw_acknowledged

    async def serve_charge_point(self, connection: ServerConnection) -> None:
        assert connection.request is not None
        cp = connection.request.path.rsplit("/", 1)[-1]
        ocpp16 = connection.subprotocol == OCPP16
        async for frame in connection:
            if self.raw_client is not None:
                self.publish_raw(cp, "in", frame if isinstance(frame, str) else frame.decode())
            message = json.loads(frame)
            if message[0] != 2:  # a charger's answer to us: we never call, nothing to do
                continue
            _, unique_id, action, payload = message
            if values := meter_values_of(ocpp16, action, payload):
                # Polled: an asyncio.Event would cost a call into the loop per acknowledgement.
                while self.unacknowledged() > MAX_UNACKNOWLEDGED:  # noqa: ASYNC110
                    await asyncio.sleep(0.001)
                self.publish_meter_values(cp, *values)
                answer: dict[str, Any] = {}
            elif action == "BootNotification":
                answer = boot_answer()
            else:
                answer = {}
            reply = json.dumps([3, unique_id, answer])
            await connection.send(reply)
            if self.raw_client is not None:
                self.publish_raw(cp, "out", reply)

    def publish_raw(self, cp: str, direction: str, frame: str) -> None:
        """One frame as the connector's raw message, QoS 2."""
        assert self.raw_client is not None
        timestamp = int(time.time() * 1000)
        payload = {"raw_message": frame, "timestamp": timestamp, "charge_point_id": cp, "direction": direction}
        self.raw_client.publish(self.raw_topic, json.dumps({"payload": payload, "connector_version": "floor"}), qos=2)
        self.raw_published += 1

    def publish_meter_values(self, cp: str, where: int, meter_values: list[Any], read: Read) -> None:
        """Each sampled value of connector/EVSE `where`; `read` takes the version's (value, unit) from one."""
        prefix = f"{self.name}/v/{cp}__MeterValues__{where}__"
        for meter_value in meter_values:
            timestamp = int(datetime.fromisoformat(meter_value["timestamp"]).timestamp() * 1000)
            for sample in meter_value["sampledValue"]:
                phase = sample.get("phase")
                measurand = sample.get("measurand", "Energy.Active.Import.Register")
                path = f"{measurand}__{phase}" if phase else measurand
                if self.mapped is not None and path not in self.mapped:
                    continue
                value, unit = read(sample)
                topic = f"{prefix}{path}__{unit}"
                self.client.publish(topic, json.dumps({"value": value, "timestamp": timestamp}), qos=1, retain=True)
                self.published += 1


def meter_values_of(ocpp16: bool, action: str, payload: dict[str, Any]) -> tuple[int, list[Any], Read] | None:
    """The connector/EVSE a message's values belong to, its meter values, how to read one; None: no values."""
    if action == "MeterValues" and ocpp16:
        return payload["connectorId"], payload["meterValue"], sample_16
    if action == "MeterValues":
        return payload["evseId"], payload["meterValue"], sample_201
    if action == "TransactionEvent" and not ocpp16:
        return payload["evse"]["id"], payload.get("meterValue", []), sample_201
    return None


def sample_16(sample: dict[str, Any]) -> tuple[float, str]:
    """1.6: the value is a decimal string, the unit beside it."""
    return float(sample["value"]), sample.get("unit", "Wh")


def sample_201(sample: dict[str, Any]) -> tuple[float, str]:
    """2.0.1: the value is a number, scaled by unitOfMeasure's power of ten."""
    unit = sample.get("unitOfMeasure", {})
    return float(sample["value"]) * 10 ** unit.get("multiplier", 0), unit.get("unit", "Wh")


def boot_answer() -> dict[str, Any]:
    """Accepted: the same answer in 1.6 and 2.0.1."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"status": "Accepted", "currentTime": now, "interval": 300}


async def run(args: argparse.Namespace) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    # 0, the default here: no limit, paho writes each message at once. With a limit, paho
    # queues what is beyond it and, on every acknowledgement, walks all it holds to find
    # the next to send: a cost per message that grows with the limit (20 is paho's default).
    client.max_inflight_messages_set(args.max_inflight)
    client.connect(args.mqtt_host, args.mqtt_port)
    client.loop_start()
    raw_client = None
    if args.raw:
        raw_client = mqtt.Client(CallbackAPIVersion.VERSION2)
        raw_client.max_inflight_messages_set(RAW_MAX_INFLIGHT)  # paho queues the rest
        raw_client.connect(args.mqtt_host, args.mqtt_port)
        raw_client.loop_start()
    mapped = frozenset(args.mapped.split(",")) if args.mapped else None
    floor = Floor(args.name, client, mapped, raw_client)
    async with serve(
        floor.serve_charge_point,
        args.host,
        args.port,
        subprotocols=[OCPP16, OCPP201],
        compression=None,
        ping_interval=None,
        backlog=4096,  # as the connector: asyncio's 100 drops SYNs at 1,000 connections/s
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"floor listening on ws://{args.host}:{port}", file=sys.stderr, flush=True)
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="bench", help="topic prefix (CONNECTOR_NAME of the connector)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--mqtt-host", default="127.0.0.1")
    parser.add_argument("--mqtt-port", type=int, required=True)
    parser.add_argument("--max-inflight", type=int, default=0, help="paho's max_inflight_messages (0: no limit)")
    parser.add_argument("--mapped", default="", help="comma-separated <measurand>[__<phase>] to publish (default: all)")
    parser.add_argument("--raw", action="store_true", help="publish every frame to <name>/raw_message_to_db, QoS 2")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
