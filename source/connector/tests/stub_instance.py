"""A stand-in for one connector instance behind the load balancer, run as its own process.

    python -m connector.tests.stub_instance NAME WS_PORT HTTP_PORT

It has the two faces HAProxy sees of a connector: a WebSocket server on WS_PORT that
greets every connection with `{"instance": NAME, "path": <request path>}` and then keeps
it open, and an operations port HTTP_PORT whose `/readyz` answers 200, or 503 after
SIGUSR1 (SIGUSR2: 200 again), the way a connector answers while it shuts down. A process
of its own so that a test can SIGKILL it: an instance dying is the kernel resetting its
sockets, which no in-process stand-in reproduces.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Awaitable, Callable

from websockets.asyncio.server import ServerConnection, serve

HOST = "127.0.0.1"


class Readiness:
    """What /readyz answers; flipped by signals."""

    def __init__(self) -> None:
        self.ready = True

    def answer(self) -> bytes:
        status = "200 OK" if self.ready else "503 Service Unavailable"
        body = b"ready\n" if self.ready else b"shutting down\n"
        head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        return head.encode() + body


async def serve_readyz(readiness: Readiness, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer one request (whatever its path: HAProxy asks only /readyz) and close."""
    try:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(readiness.answer())
        await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # a port probe that connected and left without a request
    finally:
        writer.close()


def greeter(name: str) -> Callable[[ServerConnection], Awaitable[None]]:
    async def greet(connection: ServerConnection) -> None:
        assert connection.request is not None  # set once the handshake is done, before the handler runs
        await connection.send(json.dumps({"instance": name, "path": connection.request.path}))
        await connection.wait_closed()

    return greet


async def run(name: str, ws_port: int, http_port: int) -> None:
    readiness = Readiness()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, setattr, readiness, "ready", False)
    loop.add_signal_handler(signal.SIGUSR2, setattr, readiness, "ready", True)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    operations = await asyncio.start_server(lambda r, w: serve_readyz(readiness, r, w), HOST, http_port)
    async with operations, serve(greeter(name), HOST, ws_port):
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(run(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
