"""The floor: the least an OCPP -> MQTT bridge must do for a MeterValues.req.

    .venv/bin/python benchmark/floor.py --mqtt-port 1883 [--name bench] [--host 127.0.0.1] [--port 0]

A websockets server (compression off, like the connector) that, per frame, parses the
JSON and answers: BootNotification with Accepted, every other CALL with `{}`. For a
MeterValues CALL it first publishes each sampled value with paho (QoS 1, retained, paho's
network thread started with `loop_start`) to `<name>/v/<cp>__MeterValues__<c>__<measurand>
[__<phase>]__<unit>` as `{"value": float, "timestamp": ms}`, the timestamp being the meter
value's, as the connector publishes it. No schema validation, no datapoint map, no
registry, no keepalive pings, no logging per charge point: `benchmark/bench.py` measures
the connector against this, in the same run. Logs `floor listening on ws://host:port` on
stderr once the broker connection is up (`--port 0`: a free port).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from websockets.asyncio.server import ServerConnection, serve
from websockets.typing import Subprotocol

# paho numbers unacknowledged messages with 16-bit ids: far more than this outstanding and
# new ones would overwrite old ones (lost without an error). Reading waits below it.
MAX_UNACKNOWLEDGED = 30_000


class Floor:
    def __init__(self, name: str, client: mqtt.Client) -> None:
        self.name = name
        self.client = client
        self.published = 0  # written by the loop thread only
        self.acknowledged = 0  # written by paho's thread only
        client.on_publish = self.on_publish

    def on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        self.acknowledged += 1

    async def serve_charge_point(self, connection: ServerConnection) -> None:
        assert connection.request is not None
        cp = connection.request.path.rsplit("/", 1)[-1]
        async for frame in connection:
            message = json.loads(frame)
            if message[0] != 2:  # a charger's answer to us: we never call, nothing to do
                continue
            _, unique_id, action, payload = message
            if action == "MeterValues":
                # Polled: an asyncio.Event would cost a call into the loop per acknowledgement.
                while self.published - self.acknowledged > MAX_UNACKNOWLEDGED:  # noqa: ASYNC110
                    await asyncio.sleep(0.001)
                self.publish_meter_values(cp, payload)
                answer: dict[str, Any] = {}
            elif action == "BootNotification":
                answer = {"status": "Accepted", "currentTime": now_text(), "interval": 300}
            else:
                answer = {}
            await connection.send(json.dumps([3, unique_id, answer]))

    def publish_meter_values(self, cp: str, payload: dict[str, Any]) -> None:
        prefix = f"{self.name}/v/{cp}__MeterValues__{payload['connectorId']}__"
        for meter_value in payload["meterValue"]:
            timestamp = int(datetime.fromisoformat(meter_value["timestamp"]).timestamp() * 1000)
            for sample in meter_value["sampledValue"]:
                phase = sample.get("phase")
                measurand = sample.get("measurand", "Energy.Active.Import.Register")
                path = f"{measurand}__{phase}" if phase else measurand
                topic = f"{prefix}{path}__{sample.get('unit', 'Wh')}"
                message = json.dumps({"value": float(sample["value"]), "timestamp": timestamp})
                self.client.publish(topic, message, qos=1, retain=True)
                self.published += 1


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def run(args: argparse.Namespace) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    # 0, the default here: no limit, paho writes each message at once. With a limit, paho
    # queues what is beyond it and, on every acknowledgement, walks all it holds to find
    # the next to send: a cost per message that grows with the limit (20 is paho's default).
    client.max_inflight_messages_set(args.max_inflight)
    client.connect(args.mqtt_host, args.mqtt_port)
    client.loop_start()
    floor = Floor(args.name, client)
    async with serve(
        floor.serve_charge_point,
        args.host,
        args.port,
        subprotocols=[Subprotocol("ocpp1.6")],
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
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
