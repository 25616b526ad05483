"""A real redis-server for the spool's tests, on a free port, nothing kept on disk.

Minimal on purpose: a shared Redis harness for the several-instances tests replaces it.
Test modules import the fixture (`from connector.tests.redis_fixture import redis_url`).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from connector.tests.harness import WAIT_S, free_port, wait_for_port


@dataclass
class RedisProcess:
    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        with (self.directory / "redis.log").open("ab") as log:
            self.process = subprocess.Popen([*command, "--dir", str(self.directory)], stdout=log, stderr=log)
        wait_for_port(self.port)

    def pause(self) -> None:
        """SIGSTOP: connections are accepted by the kernel, nothing is answered (a hung Redis)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)  # a paused server could not act on SIGTERM
            self.process.terminate()
            self.process.wait(timeout=WAIT_S)
            self.process = None


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Redis for the session; tests keep apart by their own key prefixes (connector names)."""
    server = RedisProcess(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A Redis this test pauses, or stops and starts again (on the same port, empty after each start)."""
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisProcess(directory)
    server.start()
    yield server
    server.stop()
