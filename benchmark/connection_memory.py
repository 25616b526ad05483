"""What one connected charger costs the connector, by where it was allocated (tracemalloc).

    .venv/bin/python benchmark/connection_memory.py --chargers 2000              # OCPP 1.6, booted, idle
    .venv/bin/python benchmark/connection_memory.py --chargers 2000 --ocpp 2.0.1 # ... in a transaction
    .venv/bin/python benchmark/connection_memory.py --meter-values 3 --top 40

Runs the whole connector (`Service`, with a mosquitto of its own) in this process and the
chargers (benchmark/loadgen.py's, raw OCPP-J over real WebSockets) in a child process: they
connect, boot, answer the connector's rate-unit read, start a transaction (2.0.1) and send
`--meter-values` MeterValues (8 values) each, then stay connected and idle. Prints the
Python heap the connector holds per charger (tracemalloc, after a garbage collection), in
all and by the source line that allocated it. Python's heap only: the kernel's socket
buffers and the allocator's slack are not in it, so bench.py's RSS figure is higher.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing
import os
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadgen import SHAPES, Charger, Fleet, meter_values_frame, raise_fd_limit

from connector.service import Service
from connector.settings import Settings
from connector.tests.harness import Mosquitto, free_port

SETTLE_S = 3.0  # after the last charger is done: answers, listings and rate-unit reads finish
CHARGERS_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Chargers:
    """What the chargers' process runs: `count` chargers of `ocpp` at `url`, `meter_values` each."""

    url: str
    count: int
    ocpp: str
    meter_values: int


def run_chargers(order: Chargers, ready: Any, stop: Any) -> None:
    raise_fd_limit()
    asyncio.run(_chargers(order, ready, stop))


async def _chargers(order: Chargers, ready: Any, stop: Any) -> None:
    fleet = Fleet()
    shapes = SHAPES[order.ocpp] if order.ocpp != "1.6" else ("MeterValues",)
    chargers = [Charger(n, f"MEM-{n}", fleet, order.ocpp, shapes) for n in range(order.count)]
    for batch in range(0, order.count, 200):
        await asyncio.gather(*(one.connect(order.url) for one in chargers[batch : batch + 200]))
        await asyncio.gather(*(one.boot() for one in chargers[batch : batch + 200]))
    for n in range(order.meter_values):
        now = int(time.time() * 1000)
        answers = [await one.call(f"m{n}", meter_values_frame(f"m{n}", now, order.ocpp)) for one in chargers]
        await asyncio.gather(*answers)
    ready.set()
    await asyncio.to_thread(stop.wait)
    await asyncio.gather(*(one.close() for one in chargers), return_exceptions=True)


async def measure(args: argparse.Namespace, state_dir: str, broker_port: int) -> None:
    settings = Settings(
        mqtt_broker_port=broker_port,
        ocpp_host="127.0.0.1",
        ocpp_port=free_port(),
        http_port=None,
        state_dir=state_dir,
        ocpp_max_connections=args.chargers + 100,
        ocpp_max_unauthenticated_per_address=args.chargers + 100,  # every charger is on 127.0.0.1
    )
    service = Service(settings)
    running = asyncio.create_task(service.run())
    await service.started.wait()
    await asyncio.sleep(1.0)
    gc.collect()
    tracemalloc.start(args.frames)
    before = tracemalloc.take_snapshot()
    context = multiprocessing.get_context("spawn")
    ready, stop = context.Event(), context.Event()
    url = f"ws://127.0.0.1:{settings.ocpp_port}"
    order = Chargers(url, args.chargers, args.ocpp, args.meter_values)
    child = context.Process(target=run_chargers, args=(order, ready, stop))
    child.start()
    if not await asyncio.to_thread(ready.wait, CHARGERS_TIMEOUT_S):
        child.kill()
        raise SystemExit(f"the chargers were not ready within {CHARGERS_TIMEOUT_S:g} s")
    await asyncio.sleep(SETTLE_S)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()  # tracing slows the shutdown of thousands of connections to minutes
    connected = len(service.dispatcher.sessions)
    report(before, after, connected, args.top)
    stop.set()
    child.join(30)
    service.stop.set()
    await running


def report(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, connected: int, top: int) -> None:
    by_file = after.compare_to(before, "filename")
    total = sum(stat.size_diff for stat in by_file)
    print(f"{connected} chargers connected: {total / connected / 1024:.2f} KiB of Python heap each")
    for stat in sorted(by_file, key=lambda s: -s.size_diff)[:12]:
        print(f"{stat.size_diff / connected:9.0f} B  {os.path.relpath(stat.traceback[0].filename)}")
    print("by source line:")
    for stat in sorted(after.compare_to(before, "lineno"), key=lambda s: -s.size_diff)[:top]:
        frame = stat.traceback[0]
        where = f"{os.path.relpath(frame.filename)}:{frame.lineno}"
        print(f"{stat.size_diff / connected:9.0f} B {stat.count_diff / connected:6.1f} blocks  {where}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chargers", type=int, default=2000)
    parser.add_argument("--ocpp", choices=["1.6", "2.0.1"], default="1.6")
    parser.add_argument("--meter-values", type=int, default=0, help="MeterValues each charger sends (default 0)")
    parser.add_argument("--top", type=int, default=30, help="source lines listed (default 30)")
    parser.add_argument("--frames", type=int, default=1, help="traceback depth kept by tracemalloc (default 1)")
    args = parser.parse_args()
    raise_fd_limit()
    with tempfile.TemporaryDirectory() as work:
        broker = Mosquitto(Path(work))
        broker.start()
        try:
            asyncio.run(measure(args, str(Path(work) / "state"), broker.port))
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
