"""Micro-benchmark of one charger's session path, without sockets or MQTT.

    .venv/bin/python benchmark/session_path.py            # MeterValues (8 values) and Heartbeat frames
    .venv/bin/python benchmark/session_path.py --frames 50000

Feeds recorded OCPP 1.6 frames to a `ChargePointSession` whose connection is a stub that
takes every frame at once and whose events are dropped: what is left is the session's own
work per frame (framing, schema check, mapping to datapoints, the answer's JSON), the part
the version split rewrote. Prints microseconds per frame (best of `--repeat` runs) and the
memory one idle session holds (tracemalloc, over `--sessions` sessions).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import time
import tracemalloc
from pathlib import Path
from typing import Any

from connector.authorization import IdTagPolicy
from connector.charger import ChargerState
from connector.datapoints import Datapoint
from connector.session import ChargePointSession
from connector.transactions import TransactionStore

FIXTURES = Path(__file__).resolve().parents[1] / "source" / "connector" / "tests" / "fixtures" / "ocpp16_frames.json"


class StubConnection:
    """Takes every frame at once (what the session adds on top of websockets)."""

    subprotocol = "ocpp1.6"

    async def send(self, message: str) -> None:
        return None


class DroppedEvents:
    def publish(self, cp: str, points: list[Datapoint]) -> None:
        return None

    def connector_seen(self, cp: str, connector_id: int) -> None:
        return None

    def booted(self, cp: str) -> None:
        return None


def new_session(cp: str, store: TransactionStore) -> Any:
    kwargs: dict[str, Any] = {
        "state": ChargerState(),
        "id_tags": IdTagPolicy(None),
        "heartbeat_interval": 300,
        "response_timeout": 30,
    }
    try:
        from connector import versions  # after the version split

        kwargs["version"] = versions.by_subprotocol("ocpp1.6")
    except ImportError:
        pass
    return ChargePointSession(cp, StubConnection(), DroppedEvents(), store, **kwargs)  # type: ignore[arg-type]


def frame_text(name: str, unique_id: str) -> str:
    action, payload = json.loads(FIXTURES.read_text())[name]
    return json.dumps([2, unique_id, action, payload])


async def per_frame_us(session: Any, text: str, frames: int) -> float:
    handle = getattr(session, "handle_frame", None) or session.route_message
    started = time.perf_counter()
    for _ in range(frames):
        await handle(text)
    return (time.perf_counter() - started) / frames * 1e6


async def timings(frames: int, repeat: int, store: TransactionStore) -> dict[str, float]:
    session = new_session("CP_1", store)
    texts = {"MeterValues": frame_text("meter_values_8", "m1"), "Heartbeat": frame_text("heartbeat", "h1")}
    return {
        name: min([await per_frame_us(session, text, frames) for _ in range(repeat)]) for name, text in texts.items()
    }


def bytes_per_session(count: int, store: TransactionStore) -> float:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    sessions = [new_session(f"CP_{n}", store) for n in range(count)]
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del sessions
    return (after - before) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=20_000, help="frames per run (default 20000)")
    parser.add_argument("--repeat", type=int, default=5, help="runs; the best counts (default 5)")
    parser.add_argument("--sessions", type=int, default=2_000, help="sessions for the memory figure (default 2000)")
    args = parser.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory() as state:
        store = TransactionStore(Path(state))
        for name, us in asyncio.run(timings(args.frames, args.repeat, store)).items():
            print(f"{name}: {us:.1f} us per frame")
        print(f"idle session: {bytes_per_session(args.sessions, store) / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
