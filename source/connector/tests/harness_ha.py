"""Real peers for the tests of several instances: redis-server, HAProxy, stand-in instances.

Like `harness.Mosquitto`: each is a real process of its own on 127.0.0.1 and a free port,
with its files and log in a directory of the test's, stopped when the test ends.
HAProxy runs the shipped deploy/haproxy.cfg with only what belongs to this machine
changed (addresses and ports), so the tests check the balancing settings that ship.
"""

from __future__ import annotations

import csv
import re
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from connector.tests.harness import WAIT_S, free_port, wait_for_port

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
