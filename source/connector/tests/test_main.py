"""The process: start-up, configuration mistakes, `.env`, and shutdown on signals (section 1)."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import websockets
from pytest_mock import MockerFixture

from connector import __version__
from connector.logtext import EscapingFormatter
from connector.main import configure_logging
from connector.settings import VARIABLES, default_text
from connector.tests.conftest import Prefix, map_datapoints
from connector.tests.harness import (
    WAIT_S,
    ChargerLink,
    ConnectorProcess,
    Mosquitto,
    MqttProbe,
    RawLink,
    base_env,
    run_connector,
    send,
    spawn_connector,
)


@pytest.mark.parametrize(
    ("variable", "value", "accepts"),
    [
        ("OCPP_PORT", "nine", "whole number"),
        ("MQTT_BROKER_PORT", "70000", "port"),
        ("HEARTBEAT_INTERVAL", "-1", "number >= 0.1"),
        ("DEBUG", "maybe", "TRUE or FALSE"),
        ("SEND_RAW_MESSAGE_TO_DB", "yes please", "TRUE or FALSE"),
        ("OCPP_CONFIG", '["execute_launch_rocket"]', "execute_trigger_message"),
        ("OCPP_CONFIG", "execute_trigger_message", "JSON list"),
        ("CONNECTOR_NAME", "site/+", "without + # or NUL"),
        ("STATE_DIR", "/dev/null/state", "not a writable directory"),
    ],
)
def test_bad_setting_exits_2_with_one_line(
    broker: Mosquitto, connector_name: str, tmp_path: Path, variable: str, value: str, accepts: str
) -> None:
    """A bad variable stops the start with status 2 and one stderr line naming it and what it accepts."""
    code, stderr = run_connector({**base_env(broker, connector_name, tmp_path), variable: value}, tmp_path)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert variable in lines[0] and accepts in lines[0]
    assert "Traceback" not in stderr


def test_dotenv_is_read_but_never_overrides_the_environment(
    broker: Mosquitto, connector_name: str, tmp_path: Path
) -> None:
    """`.env` in the working directory is loaded, and variables already set win over it."""
    (tmp_path / ".env").write_text("HEARTBEAT_INTERVAL=not-a-number\n")
    env = base_env(broker, connector_name, tmp_path)
    code, stderr = run_connector(env, tmp_path)
    assert code == 2 and "HEARTBEAT_INTERVAL" in stderr  # read from .env
    (tmp_path / ".env").write_text("HEARTBEAT_INTERVAL=not-a-number\nDEBUG=also-bad\n")
    code, stderr = run_connector({**env, "HEARTBEAT_INTERVAL": "5"}, tmp_path)
    assert code == 2 and "DEBUG" in stderr and "HEARTBEAT_INTERVAL" not in stderr


def test_port_in_use_exits_2_naming_the_variable(broker: Mosquitto, connector_name: str, tmp_path: Path) -> None:
    """An OCPP port that is taken stops the start with status 2 and a line naming OCPP_PORT."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, stderr = run_connector({**base_env(broker, connector_name, tmp_path), "OCPP_PORT": str(port)}, tmp_path)
    assert code == 2
    assert f"OCPP_PORT={port}" in stderr and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1 or "cannot listen" in stderr.strip().splitlines()[-1]


@pytest.fixture
async def process(broker: Mosquitto, connector_name: str, tmp_path: Path) -> AsyncIterator[ConnectorProcess]:
    running = await spawn_connector(base_env(broker, connector_name, tmp_path), tmp_path)
    yield running
    await running.kill()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_signal_closes_chargers_publishes_disconnect_and_exits_0(
    probe: MqttProbe, process: ConnectorProcess, connector_name: str, signum: signal.Signals
) -> None:
    """On SIGTERM/SIGINT chargers get close 1001, `connected = false` is published, exit 0 within 5 s."""
    port = (await process.wait_for_line(r"OCPP server listening on ws://[\d.]+:(\d+)")).group(1)
    # The MQTT log line, not stderr: it leaves after the SUBSCRIBE on the same connection,
    # so once the probe (subscribed before the process started) sees it, a map is heard.
    await probe.wait_for(f"{connector_name}/logs", lambda p: p["msg"].startswith("connected to MQTT broker"))

    connected = f"{connector_name}/v/connected"
    await map_datapoints(probe, Prefix(connector_name), {"CP_1__connected": connected}, {})
    async with ChargerLink(f"ws://127.0.0.1:{port}", "CP_1") as charger:
        await send(charger, "boot_notification")
        await probe.wait_value(connected, True)
        started = time.monotonic()
        process.process.send_signal(signum)
        async with asyncio.timeout(5):
            code = await process.process.wait()
        elapsed = time.monotonic() - started
        link_closed = charger._connection
        assert isinstance(link_closed, websockets.ClientConnection)
        await link_closed.wait_closed()
    assert code == 0
    assert elapsed < 5
    assert link_closed.close_code == 1001
    await probe.wait_value(connected, False)


async def test_sigterm_does_not_wait_for_a_silent_socket(process: ConnectorProcess) -> None:
    """A TCP connection that never sent its handshake does not hold the exit on SIGTERM: exit 0 within 5 s."""
    port = (await process.wait_for_line(r"OCPP server listening on ws://[\d.]+:(\d+)")).group(1)
    reader, writer = await asyncio.open_connection("127.0.0.1", int(port))
    async with RawLink(f"ws://127.0.0.1:{port}", "CP_1"):  # served, so the silent one was accepted before it
        process.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(5):
            code = await process.process.wait()
            assert await reader.read() == b""
    writer.close()
    assert code == 0


def run_with_arguments(*arguments: str) -> subprocess.CompletedProcess[str]:
    """`python -m connector ARGUMENTS` with no broker and no settings at all."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [sys.executable, "-m", "connector", *arguments],
        env={**env, "MQTT_BROKER_PORT": "not-even-a-port"},  # would stop a start: proves none happens
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=False,
    )


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_prints_every_variable_with_its_default_and_exits_0(flag: str) -> None:
    """`--help` prints the usage with every variable and its default, starts nothing and exits 0."""
    done = run_with_arguments(flag)
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.startswith("usage: python -m connector")
    for variable in VARIABLES:
        assert re.search(rf"^  {variable.name} +{re.escape(default_text(variable))} ", done.stdout, re.M), variable


def test_version_prints_the_version_and_exits_0() -> None:
    """`--version` prints the package version, starts nothing and exits 0."""
    done = run_with_arguments("--version")
    assert (done.returncode, done.stdout, done.stderr) == (0, f"ocpp-connector {__version__}\n", "")


def test_an_unknown_argument_exits_2_with_one_line() -> None:
    """An argument the connector does not know stops it with status 2 and one stderr line naming it."""
    done = run_with_arguments("--port", "9000")
    assert done.returncode == 2 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert "--port 9000" in line and "--help" in line


async def test_start_logs_the_version_and_capacity_at_info(process: ConnectorProcess) -> None:
    """At start the version is logged, and with the default OCPP_MAX_CONNECTIONS the capacity is an INFO line."""
    await process.wait_for_line(rf"INFO connector\.main: ocpp-connector {re.escape(__version__)} starting")
    await process.wait_for_line(r"INFO connector\.ocpp_server: serving up to \d+ charger connections")
    await process.wait_for_line(r"OCPP server listening")
    assert not [line for line in process.lines if "WARNING" in line]


async def test_control_characters_from_a_charger_never_reach_stderr_raw(
    process: ConnectorProcess, connector_name: str
) -> None:
    """A frame with a newline and a terminal escape is logged on one stderr line, both shown escaped."""
    port = (await process.wait_for_line(r"OCPP server listening on ws://[\d.]+:(\d+)")).group(1)
    async with RawLink(f"ws://127.0.0.1:{port}", "CP_1") as link:
        await link.connection.send("garbage\n2026-12-04 00:00:00 CRITICAL forged line\x1b[2J")
        line = await process.wait_for_line(r"CP_1: dropped frame")
    assert "garbage\\x0a2026-12-04 00:00:00 CRITICAL forged line\\x1b[2J" in line.string
    assert not [text for text in process.lines if text.startswith("2026-12-04 00:00:00 CRITICAL")]
    assert not [text for text in process.lines if "\x1b" in text]


def test_the_stderr_formatter_escapes_the_message_but_not_the_traceback() -> None:
    """Control characters in a message are escaped; the traceback appended to it keeps its line breaks."""
    formatter = EscapingFormatter("%(levelname)s %(message)s")
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "%s: bad\r\n%s", ("CP\x1b", "\x85next"), sys.exc_info()
        )
    first, *traceback = formatter.format(record).splitlines()
    assert first == "ERROR CP\\x1b: bad\\x0d\\x0a\\x85next"
    assert traceback[0] == "Traceback (most recent call last):" and traceback[-1] == "ValueError: boom"


def test_configure_logging_puts_the_escaping_formatter_on_stderr(mocker: MockerFixture) -> None:
    """configure_logging installs a stderr handler whose formatter escapes control characters."""
    root = logging.getLogger()
    mocker.patch.object(root, "handlers", [])  # basicConfig only configures a root without handlers
    configure_logging(debug=False)
    [handler] = root.handlers
    assert isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr
    assert isinstance(handler.formatter, EscapingFormatter)


@pytest.mark.parametrize(
    ("explicit", "expected"),
    [
        ({}, r"INFO connector\.ocpp_server: serving up to \d+ charger connections, what the open files limit 400"),
        (  # the shipped .env writes the default out: still the default, not a request
            {"OCPP_MAX_CONNECTIONS": "25000"},
            r"INFO connector\.ocpp_server: serving up to \d+ charger connections, what the open files limit 400",
        ),
        (
            {"OCPP_MAX_CONNECTIONS": "1000"},
            r"WARNING connector\.ocpp_server: the open files limit \(400\) allows only \d+ charger connections,"
            r" not OCPP_MAX_CONNECTIONS=1000",
        ),
    ],
    ids=["default", "default-written-out", "explicit"],
)
async def test_open_files_limit_warns_only_when_the_operator_asked_for_more(
    broker: Mosquitto, connector_name: str, tmp_path: Path, explicit: dict[str, str], expected: str
) -> None:
    """Under `ulimit -n 400` the default OCPP_MAX_CONNECTIONS logs the capacity at INFO, another value a WARNING."""
    env = {**base_env(broker, connector_name, tmp_path), **explicit}
    # The shell lowers the limit for the connector alone (hard too, so it cannot raise it).
    process = ConnectorProcess(
        await asyncio.create_subprocess_exec(
            "sh",
            "-c",
            'ulimit -n 400 && exec "$0" -m connector',
            sys.executable,
            env=env,
            cwd=tmp_path,
            stderr=asyncio.subprocess.PIPE,
        )
    )
    try:
        await process.wait_for_line(expected)
        await process.wait_for_line(r"OCPP server listening")
    finally:
        await process.kill()
    assert sum("open files" in line for line in process.lines) == 1
