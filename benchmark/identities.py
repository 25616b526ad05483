"""What identities that connect, boot and leave cost the connector, and that it is given back.

Without authentication anyone may connect under any identity. This run connects N
identities (default 24,000), each boots, reports one status and leaves, then measures the
retained available_datapoints listing, how often it was republished, and the connector's
RSS; then it waits until the connector has forgotten them (OCPP_FORGET_AFTER=60 s here,
checked every minute) and measures again; then a second wave of N new identities does the
same, to show that what the first left is given back and reused (RSS is a high-water mark:
what shows the bound is that the second wave adds little).

    .venv/bin/python benchmark/identities.py [--identities N] [--concurrency C]

Prints one JSON object. Takes about five minutes (most of it waiting for the forgetting).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import websockets
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "source"))

from connector.tests.harness import Mosquitto, base_env, spawn_connector

NAME = "identities"
BOOT = '[2,"b","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]'
STATUS = '[2,"s","StatusNotification",{"connectorId":1,"errorCode":"NoError","status":"Available"}]'


class Listings:
    """Counts available_datapoints messages and keeps the size of the newest."""

    def __init__(self, port: int) -> None:
        self._loop = asyncio.get_running_loop()
        self.arrived = asyncio.Event()  # set whenever a listing arrives
        self.count = 0
        self.bytes = 0
        self.newest = b""
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self._client.on_message = self._on_message
        self._client.connect("127.0.0.1", port)
        self._client.subscribe(f"{NAME}/available_datapoints", 1)
        self._client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.count += 1
        self.bytes += len(message.payload)
        self.newest = message.payload
        self._loop.call_soon_threadsafe(self.arrived.set)

    def keys(self) -> int:
        listing = json.loads(self.newest) if self.newest else {"sensor": {}, "actuator": {}}
        return len(listing["sensor"]) + len(listing["actuator"])

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


async def visit(url: str, cp: str) -> None:
    """Connect as `cp`, boot, report a status, leave."""
    async with websockets.connect(f"{url}/{cp}", subprotocols=["ocpp1.6"], open_timeout=60) as ws:  # type: ignore[list-item]
        for frame in (BOOT, STATUS):
            await ws.send(frame)
            while json.loads(await ws.recv())[0] != 3:  # skip the connector's GetConfiguration
                pass


async def visit_all(url: str, first: int, count: int, concurrency: int) -> None:
    queue = iter(range(first, first + count))

    async def worker() -> None:
        for number in queue:
            await visit(url, f"ID-{number}")

    async with asyncio.TaskGroup() as tasks:
        for _ in range(concurrency):
            tasks.create_task(worker())


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) / 1024


async def until_forgotten(listings: Listings, within: float = 200.0) -> None:
    """Until the listing is empty again (every identity forgotten)."""
    listings.arrived.clear()
    async with asyncio.timeout(within):
        while listings.keys():
            await listings.arrived.wait()
            listings.arrived.clear()


def snapshot(listings: Listings, pid: int) -> dict[str, Any]:
    return {
        "listing_mb": round(len(listings.newest) / 1e6, 2),
        "keys": listings.keys(),
        "rss_mb": round(rss_mb(pid), 1),
    }


async def wave(url: str, *, first: int, count: int, concurrency: int, listings: Listings, pid: int) -> dict[str, Any]:
    """N new identities visit; then the listing after them and after they are forgotten."""
    published_before = (listings.count, listings.bytes)
    started = time.monotonic()
    await visit_all(url, first, count, concurrency)
    visited_s = time.monotonic() - started
    await asyncio.sleep(5)  # let the last coalesced listing go out
    visited = snapshot(listings, pid)
    published = listings.count - published_before[0], (listings.bytes - published_before[1]) / 1e6
    await until_forgotten(listings)
    return {
        "visit_s": round(visited_s, 1),
        "listings_published": published[0],
        "listing_mb_published": round(published[1], 1),
        "after_visits": visited,
        "after_forgetting": snapshot(listings, pid),
    }


async def run(count: int, concurrency: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp))
        broker.start()
        env = {**base_env(broker, NAME, Path(tmp)), "OCPP_FORGET_AFTER": "60", "OCPP_PING_INTERVAL": "0"}
        connector = await spawn_connector(env, Path(tmp))
        listings = Listings(broker.port)
        pid = connector.process.pid
        try:
            port = (await connector.wait_for_line(r"listening on ws://[^:]+:(\d+)")).group(1)
            await connector.wait_for_line("connected to MQTT broker")
            url = f"ws://127.0.0.1:{port}"
            start_rss = round(rss_mb(pid), 1)
            waves = [
                await wave(url, first=n * count, count=count, concurrency=concurrency, listings=listings, pid=pid)
                for n in range(2)
            ]
        finally:
            listings.close()
            await connector.kill()
            broker.stop()
    return {"identities_per_wave": count, "rss_mb_at_start": start_rss, "waves": waves}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--identities", type=int, default=24_000)
    parser.add_argument("--concurrency", type=int, default=100)
    options = parser.parse_args()
    os.environ.setdefault("PYTHONPATH", str(Path(__file__).resolve().parents[1] / "source"))
    print(json.dumps(asyncio.run(run(options.identities, options.concurrency)), indent=2))


if __name__ == "__main__":
    main()
