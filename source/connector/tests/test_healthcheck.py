"""`python -m connector.healthcheck`, the container's HEALTHCHECK: exit 0 only for a healthy /healthz."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from connector.healthcheck import check, health_url
from connector.ops_http import Health, OpsHttpServer, Routes
from connector.settings import Settings
from connector.tests.conftest import RunningConnector
from connector.tests.harness import WAIT_S, free_port
from connector.tests.test_ops_http import ops_port


@pytest.mark.parametrize(
    ("host", "port", "url"),
    [
        ("0.0.0.0", "8080", "http://127.0.0.1:8080/healthz"),
        ("::", "8080", "http://[::1]:8080/healthz"),
        ("10.1.2.3", "9100", "http://10.1.2.3:9100/healthz"),
        ("0.0.0.0", "0", None),
        ("0.0.0.0", "off", None),
    ],
)
def test_the_url_follows_http_host_and_http_port(host: str, port: str, url: str | None) -> None:
    """An every-address server is checked on loopback, a fixed address on itself; port 0 or off: nothing to check."""
    assert health_url(Settings.from_env({"HTTP_HOST": host, "HTTP_PORT": port})) == url


async def test_a_healthy_connector_passes(connector: RunningConnector) -> None:
    """Against a running connector the check exits 0 and quotes /healthz."""
    status, line = await asyncio.to_thread(check, f"http://127.0.0.1:{ops_port(connector)}/healthz")
    assert status == 0 and line.startswith('healthy: {"mqtt": "up"'), line


async def test_a_503_fails_naming_what_is_down() -> None:
    """/healthz answering 503 (the broker away) exits 1 with the body naming mqtt down."""
    health = Health(live={"mqtt": lambda: False}, ready={}, charge_points=lambda: 0)
    server = OpsHttpServer("127.0.0.1", 0, Routes(health, CollectorRegistry(), lambda request: ""))
    await server.listen()
    task = asyncio.create_task(server.serve())
    try:
        status, line = await asyncio.to_thread(check, f"http://127.0.0.1:{server.port}/healthz")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert status == 1 and line.startswith('unhealthy: HTTP 503 {"mqtt": "down"'), line


def run_healthcheck(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [sys.executable, "-m", "connector.healthcheck"],
        env={**keep, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=False,
    )


def test_nothing_listening_fails_in_one_line(tmp_path: Path) -> None:
    """With no server on HTTP_PORT the module exits 1 with one line saying it is not reachable."""
    done = run_healthcheck({"HTTP_PORT": str(free_port())}, tmp_path)
    assert done.returncode == 1
    assert done.stdout.startswith("unhealthy: http://127.0.0.1:") and "not reachable" in done.stdout
    assert done.stderr == ""


def test_the_port_comes_from_the_env_file_when_not_set(tmp_path: Path) -> None:
    """HTTP_PORT from ./.env is used when the environment has none (as the connector reads it)."""
    port = free_port()
    (tmp_path / ".env").write_text(f"HTTP_PORT={port}\n")
    done = run_healthcheck({}, tmp_path)
    assert done.returncode == 1 and f"127.0.0.1:{port}" in done.stdout


def test_http_port_off_fails_saying_there_is_nothing_to_check(tmp_path: Path) -> None:
    """With HTTP_PORT=off the check exits 1: there is no server to ask."""
    done = run_healthcheck({"HTTP_PORT": "off"}, tmp_path)
    assert done.returncode == 1 and "HTTP_PORT" in done.stdout
