"""Benchmark: CPU per MeterValues message and memory per connected charge point.

    .venv/bin/python benchmark/bench.py [--chargers 1000] [--rounds 10]

Starts a private mosquitto and the connector (a subprocess, so its CPU time and memory
are read from /proc and the load generator's own cost is not counted), maps all 8 values
of every charger to MQTT topics, connects the chargers over real WebSockets, and then
has each send `--rounds` MeterValues.req with 8 sampled values, one at a time. Every
answer is awaited and every mapped value is counted on MQTT before figures are taken.
Linux only (/proc).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import websockets
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "source"))
from connector.tests.harness import Mosquitto

TICKS = os.sysconf("SC_CLK_TCK")
NAME = "bench"
RATE_UNITS_ANSWER = {
    "configurationKey": [{"key": "ChargingScheduleAllowedChargingRateUnit", "readonly": True, "value": "Current,Power"}]
}
SAMPLES = [
    ("Energy.Active.Import.Register", None, "Wh", "1234567"),
    ("Power.Active.Import", None, "W", "11040.5"),
    ("Voltage", "L1-N", "V", "231.2"),
    ("Voltage", "L2-N", "V", "230.8"),
    ("Voltage", "L3-N", "V", "229.9"),
    ("Current.Import", "L1", "A", "16.02"),
    ("Current.Import", "L2", "A", "15.98"),
    ("Current.Import", "L3", "A", "16.00"),
]


def meter_values_payload() -> dict[str, Any]:
    sampled = []
    for measurand, phase, unit, value in SAMPLES:
        sample = {"value": value, "context": "Sample.Periodic", "measurand": measurand, "unit": unit}
        if phase:
            sample["phase"] = phase
        sampled.append(sample)
    return {"connectorId": 1, "meterValue": [{"timestamp": "2026-11-21T10:15:00Z", "sampledValue": sampled}]}


def keys_of(cp: str) -> list[str]:
    return [
        "__".join([cp, "MeterValues", "1", measurand, *([phase] if phase else []), unit])
        for measurand, phase, unit, _ in SAMPLES
    ]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def rss_kb(pid: int) -> int:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    assert match
    return int(match.group(1))


class StderrWatch:
    """Drains the connector's stderr (so it never blocks) and waits for lines."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._drain, args=(process,), daemon=True).start()

    def _drain(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        for line in process.stderr:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    if found := re.search(pattern, line):
                        return found
                seen = len(self.lines)
                if not self._changed.wait(max(0.0, deadline - time.monotonic())):
                    raise TimeoutError(f"connector never logged {pattern!r}; last lines: {self.lines[-5:]}")


class ValueCounter:
    """Counts value messages arriving on the mapped topics; an event fires at the total."""

    def __init__(self, port: int, total: int, loop: asyncio.AbstractEventLoop) -> None:
        self.count = 0
        self.total = total
        self.complete = asyncio.Event()
        self._loop = loop
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"{NAME}/v/#", qos=1)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.count += 1  # only paho's thread writes it
        if self.count == self.total:
            self._loop.call_soon_threadsafe(self.complete.set)


class Fleet:
    """The load generator: chargers over real WebSockets, raw frames to keep it light."""

    def __init__(self, url: str, identities: list[str], rounds: int) -> None:
        self.url, self.identities, self.rounds = url, identities, rounds
        self.booted = 0
        self.all_booted = asyncio.Event()
        self.go = asyncio.Event()
        self.payload = json.dumps(meter_values_payload())

    async def charger(self, cp: str) -> None:
        async with websockets.connect(f"{self.url}/{cp}", subprotocols=["ocpp1.6"], compression=None) as ws:  # type: ignore[list-item]
            await ws.send(json.dumps([2, "b", "BootNotification", {"chargePointVendor": "B", "chargePointModel": "M"}]))
            await self.answer_of(ws, "b")
            self.booted += 1
            if self.booted == len(self.identities):
                self.all_booted.set()
            await self.go.wait()
            for i in range(self.rounds):
                await ws.send(f'[2,"m{i}","MeterValues",{self.payload}]')
                await self.answer_of(ws, f"m{i}")

    @staticmethod
    async def answer_of(ws: websockets.ClientConnection, unique_id: str) -> None:
        """Wait for the answer to our call, answering the connector's calls meanwhile (like a charger)."""
        while True:
            frame = json.loads(await ws.recv())
            if frame[0] == 2:  # the connector reads ChargingScheduleAllowedChargingRateUnit after boot
                await ws.send(json.dumps([3, frame[1], RATE_UNITS_ANSWER]))
            elif frame[1] == unique_id:
                assert frame[0] == 3, frame
                return


def start_connector(tmp: str, broker: Mosquitto) -> tuple[subprocess.Popen[str], StderrWatch]:
    env = {
        **os.environ,
        "CONNECTOR_NAME": NAME,
        "MQTT_BROKER_HOST": "127.0.0.1",
        "MQTT_BROKER_PORT": str(broker.port),
        "OCPP_HOST": "127.0.0.1",
        "OCPP_PORT": "0",
        "STATE_DIR": str(Path(tmp) / "state"),
    }
    process = subprocess.Popen([sys.executable, "-m", "connector"], env=env, stderr=subprocess.PIPE, text=True, cwd=tmp)
    return process, StderrWatch(process)


async def measure(
    process: subprocess.Popen[str], watch: StderrWatch, broker: Mosquitto, chargers: int, rounds: int
) -> dict[str, float]:
    port = watch.wait_for(r"OCPP server listening on ws://[\d.]+:(\d+)").group(1)
    watch.wait_for("connected to MQTT broker")
    identities = [f"CP{i:05d}" for i in range(chargers)]
    mapping = {"sensor": {k: f"{NAME}/v/{k}" for cp in identities for k in keys_of(cp)}, "actuator": {}}
    counter = ValueCounter(broker.port, chargers * rounds * len(SAMPLES), asyncio.get_running_loop())
    # Retained, as BEMCom publishes it: heard even if it reaches the broker before the
    # connector's subscription does.
    counter.client.publish(f"{NAME}/datapoint_map", json.dumps(mapping), qos=2, retain=True).wait_for_publish(10)
    watch.wait_for("datapoint_map applied")
    rss_before = rss_kb(process.pid)

    fleet = Fleet(f"ws://127.0.0.1:{port}", identities, rounds)
    tasks = [asyncio.create_task(fleet.charger(cp)) for cp in identities]
    async with asyncio.timeout(300):
        await fleet.all_booted.wait()
    await asyncio.sleep(1.0)  # measurement protocol: idle a moment before reading RSS
    rss_connected = rss_kb(process.pid)

    cpu_start, wall_start = cpu_seconds(process.pid), time.perf_counter()
    fleet.go.set()
    async with asyncio.timeout(600):
        await asyncio.gather(*tasks)
        await counter.complete.wait()
    wall = time.perf_counter() - wall_start
    cpu = cpu_seconds(process.pid) - cpu_start
    counter.client.loop_stop()
    messages = chargers * rounds
    return {
        "chargers": chargers,
        "messages": messages,
        "values_delivered": counter.count,
        "cpu_us_per_message": cpu / messages * 1e6,
        "messages_per_s": messages / wall,
        "rss_kb_per_charger": (rss_connected - rss_before) / chargers,
    }


def bench(chargers: int, rounds: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        # The counting subscriber is slower than the connector; mosquitto's default queue of
        # 1000 messages per client would drop values on the way to it, not in the connector.
        broker = Mosquitto(Path(tmp), extra_config="max_queued_messages 0\n")
        broker.start()
        process, watch = start_connector(tmp, broker)
        try:
            return asyncio.run(measure(process, watch, broker, chargers, rounds))
        finally:
            process.terminate()
            process.wait(timeout=10)
            broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chargers", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=10, help="MeterValues.req per charger")
    args = parser.parse_args()
    result = bench(args.chargers, args.rounds)
    print(json.dumps(result, indent=2))
    print(
        f"CPU per MeterValues (8 samples, validated, mapped, published): {result['cpu_us_per_message']:.0f} us; "
        f"{result['messages_per_s']:.0f} messages/s; memory per connected charge point: "
        f"{result['rss_kb_per_charger']:.1f} KB"
    )


if __name__ == "__main__":
    main()
