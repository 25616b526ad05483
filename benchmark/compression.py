"""What permessage-deflate costs the connector per charger, and what it saves on the wire.

For each client offer, a fresh connector (`python -m connector`, a child process, with
its own mosquitto) serves N chargers (default 2,000) that this process opens: each
boots, answers the connector's GetConfiguration and sends three MeterValues (8 sampled
values each), one at a time, and then stays connected. Memory per charger = (connector
RSS with all N connected - RSS before) / N, read from /proc once the connector is quiet.
The offers:

- `none`: no Sec-WebSocket-Extensions header: what every charger cost before compression;
- `bare`: `permessage-deflate` without parameters (the server cannot bound the charger's
  window then: it must inflate with 32 KiB);
- `window_bits`: `permessage-deflate; client_max_window_bits` (websockets' client default,
  and what most WebSocket libraries offer).

`--server '{"server_max_window_bits": 15}'` (keyword arguments of websockets'
ServerPerMessageDeflateFactory) runs the connector with other deflate settings instead of
deflate.PER_MESSAGE_DEFLATE, to compare candidates. Bytes on the wire are computed
without a network: the same exchange (BootNotification and ten MeterValues with their
answers) encoded through the negotiated extensions, against the frames' plain size.

`--ocpp 2.0.1`: the chargers speak OCPP 2.0.1 instead (BootNotification, the connector's
GetVariables read of the rate unit, three MeterValues with the same 8 values as numbers).

    .venv/bin/python benchmark/compression.py [--chargers 2000] [--offers none,bare,window_bits] [--server JSON]
                                              [--ocpp 1.6|2.0.1]

Prints one JSON object. Takes about a minute per offer at 2,000 chargers. Linux only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import websockets
from websockets.extensions.base import ClientExtensionFactory, Extension
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory, ServerPerMessageDeflateFactory
from websockets.frames import Frame, Opcode

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "source"))

from loadgen import ANSWERS, BOOTS, OCPP_VERSIONS, SUBPROTOCOLS, meter_values_frame

from connector.deflate import PER_MESSAGE_DEFLATE
from connector.tests.harness import FIXTURES, ConnectorProcess, Mosquitto, base_env

FRAMES_16 = json.loads((FIXTURES / "ocpp16_frames.json").read_text())
METER_VALUES_AT_MS = 1_795_000_000_000  # a fixed stamp: every 2.0.1 frame the same size in every run
# Per version, the boot and the MeterValues each charger sends (1.6: the test fixtures', as measured before 2.0.1).
BOOT = {"1.6": json.dumps([2, "b", *FRAMES_16["boot_notification"]]), "2.0.1": BOOTS["2.0.1"]}
METER_VALUES = {
    "1.6": json.dumps([2, "m", *FRAMES_16["meter_values_8"]]),
    "2.0.1": meter_values_frame("m", METER_VALUES_AT_MS, "2.0.1"),
}

OFFERS: dict[str, list[ClientExtensionFactory] | None] = {
    "none": None,
    "bare": [ClientPerMessageDeflateFactory(client_max_window_bits=None)],
    "window_bits": [ClientPerMessageDeflateFactory(client_max_window_bits=True)],
}

# The connector with other deflate settings: the benchmark's only way into the child process.
LAUNCHER = """
import json, sys
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from connector import ocpp_server
ocpp_server.PER_MESSAGE_DEFLATE = ServerPerMessageDeflateFactory(**json.loads(sys.argv.pop(1)))
from connector.main import main
sys.exit(main())
"""


async def spawn(env: dict[str, str], cwd: Path, server: dict[str, Any] | None) -> ConnectorProcess:
    command = ["-m", "connector"] if server is None else ["-c", LAUNCHER, json.dumps(server)]
    process = await asyncio.create_subprocess_exec(
        sys.executable, *command, env=env, cwd=cwd, stderr=asyncio.subprocess.PIPE
    )
    return ConnectorProcess(process)


async def exchange(ws: Any, frame: str, version: str) -> None:
    """Send a CALL and wait for its answer, answering the connector's own calls meanwhile."""
    await ws.send(frame)
    while True:
        message = json.loads(await ws.recv())
        if message[0] == 3:
            return
        if message[0] == 2:  # the rate-unit read that follows a boot
            await ws.send(json.dumps([3, message[1], ANSWERS[version][message[2]](message[3])]))


async def charger(url: str, cp: str, offer: list[ClientExtensionFactory] | None, version: str) -> Any:
    extensions = {"compression": None, "extensions": offer} if offer else {"compression": None}
    ws = await websockets.connect(f"{url}/{cp}", subprotocols=[SUBPROTOCOLS[version]], open_timeout=120, **extensions)  # type: ignore[list-item]
    await exchange(ws, BOOT[version], version)
    for _ in range(3):
        await exchange(ws, METER_VALUES[version], version)
    return ws


async def connect_all(url: str, count: int, offer: list[ClientExtensionFactory] | None, version: str) -> list[Any]:
    """Open `count` chargers, 100 at a time; the open connections."""
    open_: list[Any] = []
    for first in range(0, count, 100):
        batch = [charger(url, f"Z-{n}", offer, version) for n in range(first, min(first + 100, count))]
        open_ += await asyncio.gather(*batch)
    return open_


def rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))


async def quiet_rss_kb(pid: int) -> int:
    """RSS once it stopped moving (the last answers' values are still being published)."""
    previous = -1
    for _ in range(30):
        await asyncio.sleep(1)
        now = rss_kb(pid)
        if now == previous:
            return now
        previous = now
    return previous


async def measure(count: int, offer_name: str, server: dict[str, Any] | None, version: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp))
        broker.start()
        env = {
            **base_env(broker, "compression", Path(tmp)),
            "OCPP_PING_INTERVAL": "0",
            "OCPP_MAX_UNAUTHENTICATED_PER_ADDRESS": "10000",
        }
        connector = await spawn(env, Path(tmp), server)
        try:
            port = (await connector.wait_for_line(r"listening on ws://[^:]+:(\d+)")).group(1)
            await connector.wait_for_line("connected to MQTT broker")
            pid = connector.process.pid
            before = await quiet_rss_kb(pid)
            connections = await connect_all(f"ws://127.0.0.1:{port}", count, OFFERS[offer_name], version)
            after = await quiet_rss_kb(pid)
            negotiated = connections[0].response.headers.get("Sec-WebSocket-Extensions")
            await asyncio.gather(*(ws.close() for ws in connections))
        finally:
            await connector.kill()
            broker.stop()
    return {
        "offer": offer_name,
        "negotiated": negotiated,
        "rss_mb_before": round(before / 1024, 1),
        "rss_mb_after": round(after / 1024, 1),
        "kb_per_charger": round((after - before) / count, 1),
    }


def negotiated_pair(
    server: ServerPerMessageDeflateFactory, offer: ClientPerMessageDeflateFactory
) -> tuple[Extension, Extension]:
    """(charger's, connector's) extension as a handshake between the two would set them up."""
    response, on_server = server.process_request_params(offer.get_request_params(), [])
    return offer.process_response_params(response, []), on_server


def wire_bytes(server: ServerPerMessageDeflateFactory, offer_name: str, version: str) -> dict[str, Any]:
    """Bytes of a boot and ten MeterValues with their answers: plain, and as sent deflated."""
    answers = [json.dumps([3, "m", {}])] * 10
    sent = [BOOT[version], *[METER_VALUES[version]] * 10]
    received = [
        json.dumps([3, "b", {"status": "Accepted", "currentTime": "2026-11-21T10:15:00Z", "interval": 300}]),
        *answers,
    ]
    plain = sum(len(f.encode()) for f in sent + received)
    offer = OFFERS[offer_name]
    if not offer:
        return {"offer": offer_name, "plain": plain, "on_wire": plain}
    on_charger, on_connector = negotiated_pair(server, offer[0])  # type: ignore[arg-type]
    deflated = sum(len(on_charger.encode(Frame(Opcode.TEXT, f.encode())).data) for f in sent)
    deflated += sum(len(on_connector.encode(Frame(Opcode.TEXT, f.encode())).data) for f in received)
    return {"offer": offer_name, "plain": plain, "on_wire": deflated}


async def run(count: int, offers: list[str], server: dict[str, Any] | None, version: str) -> dict[str, Any]:
    factory = PER_MESSAGE_DEFLATE if server is None else ServerPerMessageDeflateFactory(**server)
    return {
        "chargers": count,
        "ocpp": version,
        "server": server or "deflate.PER_MESSAGE_DEFLATE",
        "memory": [await measure(count, offer, server, version) for offer in offers],
        "bytes": [wire_bytes(factory, offer, version) for offer in offers],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chargers", type=int, default=2000)
    parser.add_argument("--offers", default="none,bare,window_bits")
    parser.add_argument("--server", type=json.loads, default=None, help="ServerPerMessageDeflateFactory kwargs (JSON)")
    parser.add_argument("--ocpp", choices=OCPP_VERSIONS, default="1.6", help="the chargers' OCPP version")
    options = parser.parse_args()
    os.environ.setdefault("PYTHONPATH", str(Path(__file__).resolve().parents[1] / "source"))
    result = run(options.chargers, options.offers.split(","), options.server, options.ocpp)
    print(json.dumps(asyncio.run(result), indent=2))


if __name__ == "__main__":
    main()
