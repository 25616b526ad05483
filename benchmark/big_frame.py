"""What one large, odd frame costs the connector: the time from sending it to its answer.

    .venv/bin/python benchmark/big_frame.py [--samples 25000] [--rounds 5]

A private mosquitto and `python -m connector` (default settings) are started; one charge
point sends, `--rounds` times, a MeterValues.req whose one meterValue element carries
`--samples` sampled values, each with a measurand OCPP 1.6 does not list (`X<n>`, one
new datapoint key each: the charger soon hits OCPP_MAX_KEYS_PER_CHARGE_POINT). The frame
stays under the default 1 MiB frame limit. The connector handles a frame in one go on
its event loop (JSON, schema check, mapping, publishing), so the time from the send to
the answer is what the frame held up every other charger for. Printed per kind of frame
(all measurands invented; only the last one; all valid, for comparison; and frames of
junk elements, refused with a CALLERROR): its size, each round's time and the median.
`--samples 2000` shows the worst a frame under the connector's cap on sampled values per
frame can cost: one deviation at its very end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from connector.tests.harness import Mosquitto, base_env, spawn_connector

KINDS = {
    "invented measurands": lambda n, samples: f"X{n}",
    "one invented measurand, the last": lambda n, samples: "X" if n == samples - 1 else "Voltage",
    "valid": lambda n, samples: "Voltage",
}


def meter_values(samples: int, kind: str) -> str:
    """The frame text: one meterValue element with `samples` sampled values, measurands as `kind` says."""
    sampled = [{"value": "1", "measurand": KINDS[kind](n, samples)} for n in range(samples)]
    payload = {"connectorId": 1, "meterValue": [{"timestamp": "2026-12-04T10:00:00Z", "sampledValue": sampled}]}
    return json.dumps([2, "big", "MeterValues", payload], separators=(",", ":"))


# Frames of junk elements (refused, with a CALLERROR): what the reviewer's attack sent.
JUNK = {
    "300,000 meterValue elements that are 1s": lambda: frame(
        "MeterValues", {"connectorId": 1, "meterValue": [1] * 300_000}
    ),
    "250,000 empty meterValue elements": lambda: frame("MeterValues", {"connectorId": 1, "meterValue": [{}] * 250_000}),
    "a transactionData of 300,000 1s": lambda: frame(
        "StopTransaction",
        {"transactionId": 1, "meterStop": 1, "timestamp": "2026-12-04T10:00:00Z", "transactionData": [1] * 300_000},
    ),
}


def frame(action: str, payload: dict[str, object]) -> str:
    return json.dumps([2, "big", action, payload], separators=(",", ":"))


async def answer_times(url: str, text: str, rounds: int) -> list[float]:
    """Seconds from sending `text` to its answer, per round, over one connection."""
    times = []
    async with connect(url, subprotocols=[Subprotocol("ocpp1.6")], max_size=None) as link:
        for _ in range(rounds):
            start = time.perf_counter()
            await link.send(text)
            answer = json.loads(await link.recv())
            times.append(time.perf_counter() - start)
            if answer[0] not in (3, 4):
                sys.exit(f"the frame was not answered: {answer!r:.300}")
    return times


async def run(samples: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        broker = Mosquitto(Path(scratch))
        broker.start()
        connector = await spawn_connector(base_env(broker, "bench", Path(scratch)), Path(scratch))
        try:
            port = (await connector.wait_for_line(r"OCPP server listening on ws://[^:]+:(\d+)")).group(1)
            await connector.wait_for_line("connected to MQTT broker")
            frames = {f"{kind}, {samples:,} samples": meter_values(samples, kind) for kind in KINDS}
            frames.update({kind: make() for kind, make in JUNK.items()})
            for number, (kind, text) in enumerate(frames.items()):
                times = await answer_times(f"ws://127.0.0.1:{port}/BIG_{number}", text, rounds)
                shown = " ".join(f"{t * 1000:.0f}" for t in times)
                print(f"{kind}: {len(text):,} bytes; ms per frame: {shown}; ", end="")
                print(f"median {statistics.median(times) * 1000:.0f} ms")
        finally:
            await connector.kill()
            broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=25_000)
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()
    asyncio.run(run(arguments.samples, arguments.rounds))


if __name__ == "__main__":
    main()
