"""The README's run command: ./run.sh sets up, starts a private broker where none answers, runs, stops."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import threading
from pathlib import Path

from connector.tests.conftest import Prefix, map_datapoints
from connector.tests.harness import ChargerLink, MqttProbe, free_port

REPO = Path(__file__).resolve().parents[3]
DEADLINE_S = 120  # the first run may install the runtime packages into .venv


def read_until(process: subprocess.Popen[str], lines: list[str], pattern: str, seen: threading.Event) -> None:
    assert process.stderr is not None
    for line in process.stderr:
        lines.append(line)
        if re.search(pattern, line):
            seen.set()


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def run_sh_env(port: int, tmp_path: Path, name: str) -> dict[str, str]:
    """run.sh's environment: a local broker port with nothing on it, free OCPP and HTTP ports."""
    return {
        **os.environ,
        "MQTT_BROKER_HOST": "127.0.0.1",
        "MQTT_BROKER_PORT": str(port),
        "OCPP_HOST": "127.0.0.1",
        "OCPP_PORT": "0",
        "HTTP_PORT": "0",  # the operations server too: never a fixed port in tests
        "STATE_DIR": str(tmp_path / "state"),
        "CONNECTOR_NAME": name,
    }


def test_run_sh_starts_a_private_broker_and_stops_cleanly(tmp_path: Path) -> None:
    """With no broker at the configured local port, run.sh starts one there, runs the connector, and stops both."""
    port = free_port()
    env = run_sh_env(port, tmp_path, "run-sh-test")
    process = subprocess.Popen(["./run.sh"], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    ready = threading.Event()
    reader = threading.Thread(target=read_until, args=(process, lines, "connected to MQTT broker", ready), daemon=True)
    reader.start()
    try:
        assert ready.wait(DEADLINE_S), "".join(lines)
        assert any(f"started a local mosquitto on 127.0.0.1:{port}" in line for line in lines)
        assert any("OCPP server listening on ws://127.0.0.1:" in line for line in lines)
        assert accepts(port)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
    reader.join(timeout=5)
    assert not accepts(port), "the private broker outlived run.sh"


async def test_ctrl_c_stops_the_connector_first_then_the_private_broker(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to run.sh's group): `connected = false` and offline reach the broker, which then saves."""
    port = free_port()
    name = "run-sh-sigint"
    env = run_sh_env(port, tmp_path, name)
    saved = REPO / ".local-broker" / "mosquitto.db"
    saved.unlink(missing_ok=True)
    # A session of its own, as a terminal's foreground job: Ctrl-C signals the whole group.
    process = subprocess.Popen(  # noqa: ASYNC220 - read by a thread, as in the test above
        ["./run.sh"], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    lines: list[str] = []
    ready = threading.Event()
    reader = threading.Thread(target=read_until, args=(process, lines, "connected to MQTT broker", ready), daemon=True)
    reader.start()
    try:
        assert await asyncio.to_thread(ready.wait, DEADLINE_S), "".join(lines)
        ocpp = next(m for line in lines if (m := re.search(r"OCPP server listening on (ws://\S+)", line)))
        probe = MqttProbe(port)
        await probe.subscribe(f"{name}/#")
        connected = f"{name}/v/connected"
        await map_datapoints(probe, Prefix(name), {"CP_RS__connected": connected}, {})
        async with ChargerLink(ocpp.group(1), "CP_RS"):
            await probe.wait_value(connected, True)
            os.killpg(process.pid, signal.SIGINT)
            await probe.wait_value(connected, False)
            await probe.wait_for(f"{name}/state", lambda p: p == {"state": "offline"})
            status = await asyncio.to_thread(process.wait, DEADLINE_S)
        probe.close()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    reader.join(timeout=5)
    assert status == 0
    assert not accepts(port), "the private broker outlived run.sh"
    assert saved.exists(), "".join(lines)  # written by the broker as it stopped, running as this user
