"""Micro-benchmark of one charger's session path, without sockets or MQTT.

    .venv/bin/python benchmark/session_path.py                      # MeterValues (8 values) and Heartbeat frames
    .venv/bin/python benchmark/session_path.py --frames 50000
    .venv/bin/python benchmark/session_path.py --mapped 0,1,3,8      # ... and the BEMCom side, 0/1/3/8 values mapped
    .venv/bin/python benchmark/session_path.py --ocpp 2.0.1 --mapped 1

Feeds OCPP frames (1.6: recorded ones; 2.0.1: the benchmark's MeterValues) to a
`ChargePointSession` whose connection is a stub that takes every frame at once. Without
`--mapped` its events are dropped: what is left is the session's own work per frame
(framing, schema check, mapping, the answer's JSON). With `--mapped N,...` the events go
through the real BEMCom side (`BemcomMqtt.publish_values`, the registry, the datapoint map
with the first N of the 8 values mapped, each mapped value's JSON), up to the outbox, which
takes each message and drops it: the part of the path that depends on what is mapped.
Prints microseconds per frame (best of `--repeat` runs) and the memory one idle session
holds (tracemalloc, over `--sessions` sessions).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from loadgen import meter_values_frame, sensor_keys

from connector.authorization import IdTagPolicy
from connector.bemcom import BemcomMqtt
from connector.charger import ChargerState
from connector.datapoints import Datapoint
from connector.registry import DatapointMap, Registry
from connector.session import ChargePointSession
from connector.settings import Settings
from connector.transactions import TransactionStore

FIXTURES = Path(__file__).resolve().parents[1] / "source" / "connector" / "tests" / "fixtures" / "ocpp16_frames.json"
SUBPROTOCOLS = {"1.6": "ocpp1.6", "2.0.1": "ocpp2.0.1"}
CP = "CP_1"


class StubTransport:
    """An idle connection's transport: nothing buffered, asyncio's and websockets' usual limits."""

    def get_write_buffer_size(self) -> int:
        return 0

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return 8192, 32768


class StubConnection:
    """Takes every frame at once (what the session adds on top of websockets)."""

    def __init__(self, subprotocol: str = "ocpp1.6") -> None:
        self.subprotocol = subprotocol
        self.transport = StubTransport()

    async def send(self, message: str) -> None:
        return None


class DroppedEvents:
    def publish(self, cp: str, points: list[Datapoint]) -> None:
        return None

    def connector_seen(self, cp: str, connector_id: int) -> None:
        return None

    def booted(self, cp: str) -> None:
        return None


class DroppedOutbox:
    """Takes every MQTT message and drops it: paho and the broker are not measured here."""

    def put(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> None:
        return None


class MappedEvents(DroppedEvents):
    """The BEMCom side as the service wires it (ConnectorEvents.publish), the first `mapped` values mapped."""

    def __init__(self, mapped: int, state_dir: str) -> None:
        registry = Registry()
        registry.map = DatapointMap({key: f"bench/{n}" for n, key in enumerate(sensor_keys(CP)[:mapped])}, {})
        self.mqtt = BemcomMqtt(Settings(state_dir=state_dir), registry)
        self.mqtt.outbox = DroppedOutbox()  # type: ignore[assignment]

    def publish(self, cp: str, points: list[Datapoint]) -> None:
        self.mqtt.publish_values(points, cp)


def new_session(cp: str, store: TransactionStore, ocpp: str = "1.6", events: Any = None) -> Any:
    from connector import versions

    return ChargePointSession(
        cp,
        StubConnection(SUBPROTOCOLS[ocpp]),  # type: ignore[arg-type]
        events or DroppedEvents(),
        store,
        version=versions.by_subprotocol(SUBPROTOCOLS[ocpp]),
        state=ChargerState(),
        id_tags=IdTagPolicy(None),
        heartbeat_interval=300,
        response_timeout=30,
    )


def frame_text(name: str, unique_id: str) -> str:
    action, payload = json.loads(FIXTURES.read_text())[name]
    return json.dumps([2, unique_id, action, payload])


def load_frames(ocpp: str) -> dict[str, str]:
    if ocpp == "1.6":
        return {"MeterValues": frame_text("meter_values_8", "m1"), "Heartbeat": frame_text("heartbeat", "h1")}
    return {"MeterValues": meter_values_frame("m1", 1_795_000_000_000, "2.0.1"), "Heartbeat": '[2,"h1","Heartbeat",{}]'}


async def per_frame_us(session: Any, text: str, frames: int) -> float:
    started = time.perf_counter()
    for _ in range(frames):
        await session.handle_frame(text)
    return (time.perf_counter() - started) / frames * 1e6


async def timings(frames: int, repeat: int, store: TransactionStore, ocpp: str, events: Any = None) -> dict[str, float]:
    session = new_session(CP, store, ocpp, events)
    return {
        name: min([await per_frame_us(session, text, frames) for _ in range(repeat)])
        for name, text in load_frames(ocpp).items()
    }


def bytes_per_session(count: int, store: TransactionStore, ocpp: str) -> float:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    sessions = [new_session(f"CP_{n}", store, ocpp) for n in range(count)]
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del sessions
    return (after - before) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=20_000, help="frames per run (default 20000)")
    parser.add_argument("--repeat", type=int, default=5, help="runs; the best counts (default 5)")
    parser.add_argument("--sessions", type=int, default=2_000, help="sessions for the memory figure (default 2000)")
    parser.add_argument("--ocpp", choices=sorted(SUBPROTOCOLS), default="1.6", help="the chargers' version")
    parser.add_argument("--mapped", default="", help="e.g. 0,1,3,8: also through the BEMCom side, N values mapped")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as state:
        store = TransactionStore(Path(state))
        for name, us in asyncio.run(timings(args.frames, args.repeat, store, args.ocpp)).items():
            print(f"{name}: {us:.1f} us per frame (session only)")
        for mapped in [int(n) for n in args.mapped.split(",") if n]:
            events = MappedEvents(mapped, state)
            for name, us in asyncio.run(timings(args.frames, args.repeat, store, args.ocpp, events)).items():
                print(f"{name}: {us:.1f} us per frame ({mapped} of 8 mapped, BEMCom side included)")
        print(f"idle session: {bytes_per_session(args.sessions, store, args.ocpp) / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
