"""Real peers for the tests of several instances: redis-server, HAProxy, stand-in instances.

Like `harness.Mosquitto`: each is a real process of its own on 127.0.0.1 and a free port,
with its files and log in a directory of the test's, stopped when the test ends.
HAProxy runs the shipped deploy/haproxy.cfg with only what belongs to this machine
changed (addresses and ports), so the tests check the balancing settings that ship.
"""

from __future__ import annotations

import asyncio
import csv
import itertools
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from connector.tests.harness import (
    WAIT_S,
    ConnectorProcess,
    Mosquitto,
    MqttProbe,
    base_env,
    free_port,
    spawn_connector,
    wait_for_port,
)

REPO = Path(__file__).resolve().parents[3]
SHIPPED_HAPROXY_CFG = REPO / "deploy" / "haproxy.cfg"
SERVER_LINE = re.compile(r"^[ \t]*server\s+(\S+)\s+\S+\s+id\s+(\d+).*$", re.MULTILINE)
BIND_LINE = re.compile(r"^([ \t]*)bind\s+\S+.*$", re.MULTILINE)
MAXCONN_LINE = re.compile(r"^([ \t]*)maxconn\s+\d+$", re.MULTILINE)
TEST_MAXCONN = 2000  # HAProxy needs 2 descriptors per connection, and this machine may allow few


def installed(name: str, *usual: str) -> str:
    """The path of an OS program, from PATH or the usual sbin directories (as scripts/setup.sh looks)."""
    found = shutil.which(name) or next((p for p in usual if Path(p).exists()), None)
    if found is None:
        raise RuntimeError(f"{name} is not installed; run ./test.sh once, which installs it")
    return found


def stop_process(process: subprocess.Popen[bytes] | None, sig: signal.Signals = signal.SIGTERM) -> None:
    if process is not None and process.poll() is None:
        process.send_signal(sig)
    if process is not None:
        process.wait(timeout=WAIT_S)


@dataclass
class RedisServer:
    """A redis-server of our own on 127.0.0.1 and a free port; nothing is saved to disk."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = installed("redis-server", "/usr/bin/redis-server", "/usr/local/bin/redis-server")
        # An empty `save` and no append-only file: a test's data dies with its server,
        # as it would with a Redis that lost its disk.
        command = [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        command += ["--dir", str(self.directory), "--logfile", str(self.directory / "redis.log")]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_for_port(self.port)

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None

    def kill(self) -> None:
        """Gone without a goodbye, as a machine that dies: SIGKILL."""
        stop_process(self.process, signal.SIGKILL)
        self.process = None


class Backend(NamedTuple):
    """One connector instance as HAProxy sees it: its OCPP port and its operations port."""

    name: str
    host: str
    ws_port: int
    http_port: int


def shipped_server_ids(shipped: str) -> dict[str, int]:
    return {name: int(server_id) for name, server_id in SERVER_LINE.findall(shipped)}


def server_lines(backends: list[Backend], shipped: str) -> str:
    """A `server` line per backend; a name the shipped file knows keeps its id (the hash ring depends on it)."""
    ids = shipped_server_ids(shipped)
    next_id = max(ids.values(), default=0) + 1
    lines = []
    for backend in backends:
        if backend.name not in ids:
            ids[backend.name], next_id = next_id, next_id + 1
        address = f"{backend.host}:{backend.ws_port}"
        lines.append(f"    server {backend.name} {address} id {ids[backend.name]} port {backend.http_port}")
    return "\n".join(lines)


def replace_servers(text: str, replacement: str) -> str:
    """`replacement` where the first `server` line was, the other `server` lines gone."""
    matches = list(SERVER_LINE.finditer(text))
    assert matches, "deploy/haproxy.cfg has no `server NAME ADDRESS id N` line"
    first = matches[0]
    return text[: first.start()] + replacement + SERVER_LINE.sub("", text[first.end() :])


def haproxy_test_config(
    shipped: str, front_port: int, backends: list[Backend], stats_port: int, bind_options: str = "", rules: str = ""
) -> str:
    """The shipped configuration, listening on 127.0.0.1:front_port and balancing over `backends`.

    Everything else (timeouts, balancing, checks, retries) is kept as shipped, but for
    `maxconn`: HAProxy refuses to start when the descriptor limit (`ulimit -n`) cannot
    hold two per connection, and the shipped size is for a machine set up for it. The
    per-server `port` overrides the shipped `check port 8080` (each test backend has its
    own operations port). A stats socket (TCP: a Unix socket's path would outgrow its
    108 bytes in pytest's directories) lets tests read what HAProxy thinks of each server.
    `bind_options` (TLS) and `rules` (lines after the bind) are for the variants the
    shipped file carries as comments.
    """
    bind = f"bind 127.0.0.1:{front_port} {bind_options}".rstrip()
    text = BIND_LINE.sub(lambda m: f"{m.group(1)}{bind}{rules}", shipped, count=1)
    text = MAXCONN_LINE.sub(lambda m: f"{m.group(1)}maxconn {TEST_MAXCONN}", text, count=1)
    text = replace_servers(text, server_lines(backends, shipped))
    stats = f"    stats socket ipv4@127.0.0.1:{stats_port} level admin\n"
    return text.replace("global\n", "global\n" + stats, 1)


@dataclass
class HAProxy:
    """HAProxy from the shipped deploy/haproxy.cfg, in front of `backends`, on 127.0.0.1 and a free port."""

    directory: Path
    backends: list[Backend]
    port: int = field(default_factory=free_port)
    stats_port: int = field(default_factory=free_port)
    bind_options: str = ""  # e.g. "ssl crt ..." to terminate TLS
    rules: str = ""  # lines for after the frontend's bind, each starting "\n    "
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'wss' if 'ssl' in self.bind_options.split() else 'ws'}://127.0.0.1:{self.port}"

    def start(self) -> None:
        config = self.directory / "haproxy.cfg"
        config.write_text(
            haproxy_test_config(
                SHIPPED_HAPROXY_CFG.read_text(),
                self.port,
                self.backends,
                self.stats_port,
                self.bind_options,
                self.rules,
            )
        )
        binary = installed("haproxy", "/usr/sbin/haproxy", "/usr/local/sbin/haproxy")
        log_path = self.directory / "haproxy.log"
        with log_path.open("ab") as log:
            # -db: stay in the foreground, so terminate() reaches HAProxy itself.
            self.process = subprocess.Popen([binary, "-db", "-f", str(config)], stdout=log, stderr=log)
        try:
            wait_for_port(self.port)
        except OSError as error:  # say why (a configuration error, the descriptor limit), not just "refused"
            raise RuntimeError(f"HAProxy did not start:\n{log_path.read_text()[-2000:]}") from error

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None

    def server_status(self) -> dict[str, str]:
        """What HAProxy thinks of each backend server right now: `UP`, `DOWN`, ... (its stats `status`)."""
        with socket.create_connection(("127.0.0.1", self.stats_port), timeout=WAIT_S) as sock:
            sock.sendall(b"show stat\n")
            data = b"".join(iter(lambda: sock.recv(65536), b""))
        rows = csv.DictReader(data.decode().lstrip("# ").splitlines())
        return {row["svname"]: row["status"] for row in rows if row["svname"] not in {"FRONTEND", "BACKEND"}}


@dataclass
class StubInstance:
    """connector.tests.stub_instance as a process: a connector's two ports, nothing behind them."""

    directory: Path
    name: str
    ws_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def backend(self) -> Backend:
        return Backend(self.name, "127.0.0.1", self.ws_port, self.http_port)

    def launch(self) -> None:
        """Start the process; `wait_ready` waits for its ports (so several start side by side)."""
        command = [sys.executable, "-m", "connector.tests.stub_instance", self.name]
        with (self.directory / f"{self.name}.log").open("ab") as log:
            # Run from this tree's source/, so the stub is this checkout's, not the installed package's.
            self.process = subprocess.Popen(
                [*command, str(self.ws_port), str(self.http_port)], cwd=REPO / "source", stdout=log, stderr=log
            )

    def wait_ready(self) -> None:
        wait_for_port(self.http_port)
        wait_for_port(self.ws_port)

    def set_ready(self, ready: bool) -> None:
        """/readyz answers 200 (True) or 503 (False) from now on."""
        assert self.process is not None
        self.process.send_signal(signal.SIGUSR2 if ready else signal.SIGUSR1)

    def kill(self) -> None:
        stop_process(self.process, signal.SIGKILL)
        self.process = None

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None


async def until(condition: Callable[[], bool], within: float) -> None:
    """Poll `condition` (HAProxy tells its view only when asked) until it holds or `within` passes."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - HAProxy signals nothing: its stats must be asked
            await asyncio.sleep(0.05)


def all_up(proxy: HAProxy) -> bool:
    """Every server past its `rise` checks: the steady state a site runs in."""
    return set(proxy.server_status().values()) == {"UP"}


# Every command a unique BEMCom timestamp: instances tell commands apart by topic and payload.
TIMESTAMPS = itertools.count(1)


class Instance:
    """One connector process of the fleet, on ports of its own."""

    def __init__(self, env: dict[str, str], name: str, tmp_path: Path) -> None:
        self.name = name
        self.ocpp_port, self.http_port = free_port(), free_port()
        self.env = {
            **env,
            "CONNECTOR_INSTANCE": name,
            "OCPP_PORT": str(self.ocpp_port),
            "HTTP_PORT": str(self.http_port),
            "STATE_DIR": str(tmp_path / name),
        }
        self.cwd = tmp_path
        self.process: ConnectorProcess | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.ocpp_port}"

    async def start(self) -> None:
        self.process = await spawn_connector(self.env, self.cwd)
        await self.process.wait_for_line("OCPP server listening")
        await self.process.wait_for_line("serving with the others through Redis")

    async def kill(self) -> None:
        if self.process is not None:
            await self.process.kill()


class Fleet:
    """Connector processes of one CONNECTOR_NAME on one Redis, and what a BEMCom user sees of them."""

    def __init__(
        self, broker: Mosquitto, redis: RedisServer, name: str, tmp_path: Path, probe: MqttProbe, names: list[str]
    ) -> None:
        self.name, self.probe = name, probe
        self.env = {**base_env(broker, name, tmp_path), "STATE_URL": redis.url, "OCPP_RESPONSE_TIMEOUT": "5"}
        self.instances = [Instance(self.env, instance, tmp_path) for instance in names]

    def topic(self, part: str) -> str:
        return f"{self.name}/{part}"

    async def start(self) -> None:
        await asyncio.gather(*(instance.start() for instance in self.instances))

    def sensor(self, sensor_key: str) -> str:
        return self.topic(f"sensor/{sensor_key}")

    async def map_actuators(self, *keys: str, sensors: tuple[str, ...] = ()) -> dict[str, str]:
        """Map `cmd/<key>` for each key (`status/<key>` its status, `sensor/<key>` each sensor);
        returns key -> topic once every instance applied the map."""
        since = len(self.probe.messages)
        topics = {k: self.topic(f"cmd/{k}") for k in keys}
        mapped = {f"{k}__status": self.topic(f"status/{k}") for k in keys} | {s: self.sensor(s) for s in sensors}
        self.probe.publish(
            self.topic("datapoint_map"), {"sensor": mapped, "actuator": {t: k for k, t in topics.items()}}, retain=True
        )
        applied: set[str] = set()

        def every_instance() -> bool:
            for topic, payload, _ in self.probe.messages[since:]:
                if topic == self.topic("logs") and str(payload.get("msg", "")).startswith("datapoint_map applied"):
                    applied.add(payload.get("instance"))
            return applied >= {i.name for i in self.instances if i.process is not None}  # those started

        await self.probe.wait_until(every_instance)
        return topics

    def command(self, topic: str, value: Any) -> None:
        self.probe.publish(topic, {"value": value, "timestamp": next(TIMESTAMPS)})

    def statuses(self, actuator_key: str) -> list[Any]:
        return [p["value"] for p in self.probe.on(self.topic(f"status/{actuator_key}"))]

    async def status(self, actuator_key: str, count: int, within: float = WAIT_S) -> list[Any]:
        """Once `count` statuses of the key came: all of them."""
        await self.probe.wait_until(lambda: len(self.statuses(actuator_key)) >= count, within)
        return self.statuses(actuator_key)
