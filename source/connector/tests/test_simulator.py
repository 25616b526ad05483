"""The charge point simulator end to end: a real connector and mosquitto, its chargers over real WebSockets.

The simulator runs in the test's event loop through `connector.simulator.run` (its stop
event ends it), except where the process itself is under test (signals, exit status).
"""

from __future__ import annotations

import asyncio
import runpy
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from pytest_mock import MockerFixture

from connector.simulator import Options, run
from connector.tests.conftest import RunningConnector, command, map_datapoints, start_connector
from connector.tests.harness import WAIT_S, ConnectorProcess, MqttProbe, free_port

INTERVAL_S = 0.2
CP = "SIM-1"
METER = f"{CP}__MeterValues__1"
POWER = f"{METER}__Power.Active.Import__W"
LIMIT = f"{CP}__execute_send_charging_profile__1"
CURRENT_LIMIT = f"{CP}__execute_send_charging_profile_current__1"
TRANSACTION = f"{CP}__Transaction__1"
STATUS = f"{CP}__StatusNotification__1__status"


@asynccontextmanager
async def simulator(connector: RunningConnector, chargers: int = 1, ocpp: str = "1.6") -> AsyncIterator[None]:
    """The simulator's chargers (speaking `ocpp`) against `connector` while the block runs; then stopped."""
    stop = asyncio.Event()
    task = asyncio.create_task(run(Options(connector.url, chargers, ocpp, INTERVAL_S), stop))
    try:
        yield
    finally:
        stop.set()
        async with asyncio.timeout(WAIT_S):
            await task


async def map_sensors(probe: MqttProbe, connector: RunningConnector, *keys: str) -> dict[str, str]:
    """Map each sensor key to a topic of its own; the topics by key."""
    topics = {k: connector.topic(f"sim/{k}") for k in keys}
    await map_datapoints(probe, connector, topics, {})
    return topics


async def map_all(
    probe: MqttProbe, connector: RunningConnector, sensors: tuple[str, ...], actuators: tuple[str, ...]
) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """Sensors as in `map_sensors`; each actuator to a command topic and its __status to a status topic."""
    sensor_topics = {k: connector.topic(f"sim/{k}") for k in sensors}
    actuator_topics = {k: (connector.topic(f"cmd/{k}"), connector.topic(f"status/{k}")) for k in actuators}
    status_topics = {f"{k}__status": status for k, (_, status) in actuator_topics.items()}
    commands = {cmd: k for k, (cmd, _) in actuator_topics.items()}
    await map_datapoints(probe, connector, {**sensor_topics, **status_topics}, commands)
    return sensor_topics, actuator_topics


async def answered(probe: MqttProbe, topics: tuple[str, str], value: Any) -> dict[str, Any]:
    """Publish `value` on the actuator's command topic; the status message that answers it."""
    cmd, status = topics
    since = len(probe.messages)
    probe.publish(cmd, command(value))
    answer: dict[str, Any] = await probe.wait_for(status, since=since)
    return answer


async def first_value_after(probe: MqttProbe, topic: str, after_ms: int) -> dict[str, Any]:
    """The first value on `topic` measured after `after_ms`."""
    payload: dict[str, Any] = await probe.wait_for(topic, lambda p: p["timestamp"] > after_ms)
    return payload


async def test_meter_values_reach_mqtt(connector: RunningConnector, probe: MqttProbe) -> None:
    """A simulated charger's power, energy, per-phase current and voltage and SoC appear on their mapped topics."""
    keys = (
        POWER,
        f"{METER}__Energy.Active.Import.Register__Wh",
        f"{METER}__Current.Import__L2__A",
        f"{METER}__Voltage__L3-N__V",
        f"{METER}__SoC__EV__Percent",
    )
    topics = await map_sensors(probe, connector, *keys)
    async with simulator(connector):
        power, energy, current, voltage, soc = [(await probe.wait_for(topics[k]))["value"] for k in keys]
    assert power == 11000.0
    assert isinstance(energy, int) and energy > 0
    assert 224 <= voltage <= 236
    assert current == pytest.approx(11000 / 3 / 230, rel=0.03)
    assert 10 <= soc <= 50


async def test_meter_values_are_clock_aligned(connector: RunningConnector, probe: MqttProbe) -> None:
    """Each sample's timestamp is a multiple of the interval since 1970 (UTC)."""
    topics = await map_sensors(probe, connector, POWER)
    async with simulator(connector):
        await probe.wait_until(lambda: len(probe.on(topics[POWER])) >= 3)
    stamps = [p["timestamp"] for p in probe.on(topics[POWER])]
    assert all(ms % int(INTERVAL_S * 1000) == 0 for ms in stamps), stamps


async def test_the_power_follows_a_limit_within_one_interval(connector: RunningConnector, probe: MqttProbe) -> None:
    """A 4200 W limit published on MQTT is the power of the next sample, within one interval; null brings back 11 kW."""
    sensors, actuators = await map_all(probe, connector, (POWER,), (LIMIT,))
    async with simulator(connector):
        await probe.wait_value(sensors[POWER], 11000.0)
        accepted = await answered(probe, actuators[LIMIT], 4200)
        assert accepted["value"] == "Accepted"
        limited = await first_value_after(probe, sensors[POWER], accepted["timestamp"])
        assert limited["value"] == 4200.0
        assert limited["timestamp"] - accepted["timestamp"] <= INTERVAL_S * 1000
        cleared = await answered(probe, actuators[LIMIT], None)
        assert cleared["value"] == "Accepted"
        assert (await first_value_after(probe, sensors[POWER], cleared["timestamp"]))["value"] == 11000.0


async def test_a_zero_limit_suspends_charging(connector: RunningConnector, probe: MqttProbe) -> None:
    """A 0 W limit: the power drops to 0 and the connector reports SuspendedEVSE; lifting it resumes Charging."""
    sensors, actuators = await map_all(probe, connector, (POWER, STATUS), (LIMIT,))
    async with simulator(connector):
        await probe.wait_value(sensors[STATUS], "Charging")
        assert (await answered(probe, actuators[LIMIT], 0))["value"] == "Accepted"
        await probe.wait_value(sensors[STATUS], "SuspendedEVSE")
        await probe.wait_value(sensors[POWER], 0.0)
        since = len(probe.messages)
        assert (await answered(probe, actuators[LIMIT], None))["value"] == "Accepted"
        await probe.wait_for(sensors[STATUS], lambda p: p["value"] == "Charging", since=since)


async def test_a_current_limit_is_obeyed_on_each_phase(connector: RunningConnector, probe: MqttProbe) -> None:
    """A 10 A limit: about 10 A on each phase, and the power 10 A x its voltage x 3."""
    current = f"{METER}__Current.Import__L1__A"
    sensors, actuators = await map_all(probe, connector, (POWER, current), (CURRENT_LIMIT,))
    async with simulator(connector):
        await probe.wait_value(sensors[POWER], 11000.0)
        accepted = await answered(probe, actuators[CURRENT_LIMIT], 10)
        assert accepted["value"] == "Accepted"
        power = await first_value_after(probe, sensors[POWER], accepted["timestamp"])
        amperes = await first_value_after(probe, sensors[current], accepted["timestamp"])
    assert 10 * 3 * 224 <= power["value"] <= 10 * 3 * 236
    assert amperes["value"] == pytest.approx(10, abs=0.3)


async def test_remote_stop_and_start(connector: RunningConnector, probe: MqttProbe) -> None:
    """Remote stop ends the transaction (reason Remote, then Available); remote start opens one for its id tag."""
    sensors = (f"{TRANSACTION}__active", f"{TRANSACTION}__stop_reason", f"{TRANSACTION}__id_tag", STATUS)
    stop, start = f"{CP}__execute_remote_stop_transaction__1", f"{CP}__execute_remote_start_transaction__1"
    topics, actuators = await map_all(probe, connector, sensors, (stop, start))
    active, reason, id_tag, status = (topics[k] for k in sensors)
    async with simulator(connector):
        await probe.wait_value(status, "Charging")
        assert (await answered(probe, actuators[stop], True))["value"] == "Accepted"
        await probe.wait_value(reason, "Remote")
        await probe.wait_value(active, False)
        await probe.wait_value(status, "Available")
        since = len(probe.messages)
        assert (await answered(probe, actuators[start], "TAG-2"))["value"] == "Accepted"
        await probe.wait_value(id_tag, "TAG-2")
        statuses = [p["value"] for p in await until(probe, status, "Charging", since)]
    assert statuses[-2:] == ["Preparing", "Charging"]
    assert probe.latest(active) is True


async def until(probe: MqttProbe, topic: str, value: Any, since: int) -> list[dict[str, Any]]:
    """The messages on `topic` from message number `since` up to and including the first with `value`."""
    await probe.wait_for(topic, lambda p: p["value"] == value, since=since)
    found = [p for t, p, _ in probe.messages[since:] if t == topic]
    return found[: [p["value"] for p in found].index(value) + 1]


async def test_a_reservation_holds_the_connector_until_cancelled(connector: RunningConnector, probe: MqttProbe) -> None:
    """Idle after a remote stop: ReserveNow Accepted, status Reserved; CancelReservation Accepted, Available again."""
    stop = f"{CP}__execute_remote_stop_transaction__1"
    reserve, cancel = f"{CP}__execute_reserve_now__1", f"{CP}__execute_cancel_reservation__1"
    topics, actuators = await map_all(probe, connector, (STATUS,), (stop, reserve, cancel))
    async with simulator(connector):
        await probe.wait_value(topics[STATUS], "Charging")
        assert (await answered(probe, actuators[stop], True))["value"] == "Accepted"
        await probe.wait_value(topics[STATUS], "Available")
        assert (await answered(probe, actuators[reserve], "TAG-4"))["value"] == "Accepted"
        await probe.wait_value(topics[STATUS], "Reserved")
        since = len(probe.messages)
        assert (await answered(probe, actuators[cancel], True))["value"] == "Accepted"
        await probe.wait_for(topics[STATUS], lambda p: p["value"] == "Available", since=since)


@pytest.mark.parametrize(
    ("actuator", "value", "status"),
    [
        ("execute_trigger_message", "StatusNotification", "Accepted"),
        ("execute_change_configuration", "MeterValueSampleInterval=5", "Accepted"),
        ("execute_change_configuration", "NumberOfConnectors=2", "Rejected"),
        ("execute_get_configuration", "MeterValueSampleInterval", "Accepted"),
        ("execute_get_composite_schedule__1", 3600, "Accepted"),
        ("execute_clear_charging_profile__1", True, "Unknown"),
        ("execute_reserve_now__1", "TAG-3", "Occupied"),
        ("execute_change_availability__1", "Inoperative", "Scheduled"),
        ("execute_unlock_connector__1", True, "Unlocked"),
        ("execute_data_transfer", '{"vendor_id": "connector.simulator", "data": "ping"}', "Accepted"),
        ("execute_data_transfer", '{"vendor_id": "com.example"}', "UnknownVendorId"),
        ("execute_ocpp_call", '{"action": "ClearCache", "payload": {}}', "Accepted"),
        ("execute_ocpp_call", '{"action": "GetLocalListVersion", "payload": {}}', "Accepted"),
    ],
)
async def test_commands_get_a_chargers_answers(
    connector: RunningConnector, probe: MqttProbe, actuator: str, value: Any, status: str
) -> None:
    """Each of the connector's other commands gets the answer a real charger in a transaction gives."""
    key = f"{CP}__{actuator}"
    sensors, actuators = await map_all(probe, connector, (POWER,), (key,))
    async with simulator(connector):
        await probe.wait_for(sensors[POWER])  # booted, and charging
        assert (await answered(probe, actuators[key], value))["value"] == status


async def test_the_composite_schedule_is_the_limit_in_effect(connector: RunningConnector, probe: MqttProbe) -> None:
    """After a 5000 W limit, GetCompositeSchedule reports 5000 W for the duration asked."""
    schedule = f"{CP}__execute_get_composite_schedule__1"
    limit_sensor = f"{CP}__CompositeSchedule__1__limit"
    sensors, actuators = await map_all(probe, connector, (POWER, limit_sensor), (LIMIT, schedule))
    async with simulator(connector):
        await probe.wait_for(sensors[POWER])
        assert (await answered(probe, actuators[LIMIT], 5000))["value"] == "Accepted"
        assert (await answered(probe, actuators[schedule], 600))["value"] == "Accepted"
        assert (await probe.wait_for(sensors[limit_sensor]))["value"] == 5000.0


async def test_a_reset_stops_the_transaction_and_boots_again(connector: RunningConnector, probe: MqttProbe) -> None:
    """Reset Soft: StopTransaction with reason SoftReset, then a new boot and a new transaction."""
    sensors = (f"{TRANSACTION}__stop_reason", f"{TRANSACTION}__transaction_id", f"{TRANSACTION}__active")
    reset = f"{CP}__execute_reset"
    topics, actuators = await map_all(probe, connector, sensors, (reset,))
    reason, transaction_id, active = (topics[k] for k in sensors)
    async with simulator(connector):
        first = (await probe.wait_for(transaction_id))["value"]
        assert (await answered(probe, actuators[reset], "Soft"))["value"] == "Accepted"
        await probe.wait_value(reason, "SoftReset")
        await probe.wait_for(transaction_id, lambda p: p["value"] != first)
        await probe.wait_value(active, True)


async def test_the_charger_reconnects_and_keeps_its_limit(settings_env: dict[str, str], probe: MqttProbe) -> None:
    """The connector restarts: the charger connects again after its back-off and carries on under its limit."""
    env = {**settings_env, "OCPP_PORT": str(free_port())}
    connector = await start_connector(env, probe)
    sensors, actuators = await map_all(probe, connector, (POWER,), (LIMIT,))
    async with simulator(connector):
        await probe.wait_value(sensors[POWER], 11000.0)
        assert (await answered(probe, actuators[LIMIT], 3000))["value"] == "Accepted"
        await connector.stop()
        connector = await start_connector(env, probe)
        await map_all(probe, connector, (POWER,), (LIMIT,))  # a map lives as long as the connector
        since = len(probe.messages)
        again = await probe.wait_for(sensors[POWER], since=since)
        assert again["value"] == 3000.0
    await connector.stop()


# -- the same map against an OCPP 2.0.1 station ----------------------------------------
# The keys are the 1.6 ones (`<c>` is the EVSE id), so these tests reuse the constants above.

STATUS_201 = f"{CP}__StatusNotification__1__1__connector_status"


async def test_a_2_0_1_station_meters_and_follows_power_and_current_limits(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """OCPP 2.0.1: the 1.6 power key carries 11 kW; a 4200 W limit, then 10 A in its place, then null: 11 kW again."""
    version = f"{CP}__ocpp_version"
    sensors, actuators = await map_all(probe, connector, (POWER, version), (LIMIT, CURRENT_LIMIT))
    async with simulator(connector, ocpp="2.0.1"):
        await probe.wait_value(sensors[version], "2.0.1")
        await probe.wait_value(sensors[POWER], 11000.0)
        accepted = await answered(probe, actuators[LIMIT], 4200)
        assert accepted["value"] == "Accepted"
        assert (await first_value_after(probe, sensors[POWER], accepted["timestamp"]))["value"] == 4200.0
        amperes = await answered(probe, actuators[CURRENT_LIMIT], 10)
        assert amperes["value"] == "Accepted"
        power = await first_value_after(probe, sensors[POWER], amperes["timestamp"])
        assert 10 * 3 * 224 <= power["value"] <= 10 * 3 * 236
        cleared = await answered(probe, actuators[CURRENT_LIMIT], None)
        assert cleared["value"] == "Accepted"
        assert (await first_value_after(probe, sensors[POWER], cleared["timestamp"]))["value"] == 11000.0


async def test_a_2_0_1_station_is_stopped_and_started_remotely(connector: RunningConnector, probe: MqttProbe) -> None:
    """OCPP 2.0.1: remote stop ends the transaction (Remote, Available); remote start opens one for its id tag."""
    sensors = (f"{TRANSACTION}__active", f"{TRANSACTION}__stop_reason", f"{TRANSACTION}__id_tag", STATUS_201)
    stop, start = f"{CP}__execute_remote_stop_transaction__1", f"{CP}__execute_remote_start_transaction__1"
    topics, actuators = await map_all(probe, connector, sensors, (stop, start))
    active, reason, id_tag, status = (topics[k] for k in sensors)
    async with simulator(connector, ocpp="2.0.1"):
        await probe.wait_value(active, True)
        await probe.wait_value(status, "Occupied")
        assert (await answered(probe, actuators[stop], True))["value"] == "Accepted"
        await probe.wait_value(reason, "Remote")
        await probe.wait_value(active, False)
        await probe.wait_value(status, "Available")
        since = len(probe.messages)
        assert (await answered(probe, actuators[start], "TAG-2"))["value"] == "Accepted"
        await probe.wait_for(id_tag, lambda p: p["value"] == "TAG-2", since=since)
        await probe.wait_for(active, lambda p: p["value"] is True, since=since)


def test_the_package_ships_the_simulator_without_the_tests(
    mocker: MockerFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """setup.py (what `pip install ./source` runs) packages connector.simulator and leaves connector.tests out."""
    source = Path(__file__).resolve().parents[2]
    setup = mocker.patch("setuptools.setup")
    monkeypatch.chdir(source)  # pip runs setup.py in its own directory
    runpy.run_path(str(source / "setup.py"))
    packages = setup.call_args.kwargs["packages"]
    assert {"connector.simulator", "connector.simulator.ocpp16"} <= set(packages)
    assert not [p for p in packages if p.startswith("connector.tests")]


# -- the process -----------------------------------------------------------------------


def simulator_command(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "connector.simulator", *arguments]


async def test_sigterm_closes_each_connection_and_exits_0(connector: RunningConnector, probe: MqttProbe) -> None:
    """`python -m connector.simulator` stops on SIGTERM with status 0, each charger closed with 1001."""
    process = await asyncio.create_subprocess_exec(
        *simulator_command("--url", connector.url, "--chargers", "2", "--interval", "1"),
        stderr=asyncio.subprocess.PIPE,
    )
    output = ConnectorProcess(process)
    try:
        for name in ("SIM-1", "SIM-2"):
            await output.wait_for_line(rf"{name}: transaction \d+ started")
        since = len(probe.messages)
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(WAIT_S):
            assert await process.wait() == 0
        for name in ("SIM-1", "SIM-2"):
            closed = f"{name}: disconnected (code 1001)"
            await probe.wait_for(connector.topic("logs"), lambda p, c=closed: p["msg"] == c, since=since)  # type: ignore[misc]
    finally:
        await output.kill()


def test_help_exits_0() -> None:
    """--help prints the usage with every option and exits 0."""
    done = subprocess.run(simulator_command("--help"), capture_output=True, text=True, timeout=WAIT_S, check=False)
    assert done.returncode == 0
    assert all(option in done.stdout for option in ("--url", "--chargers", "--ocpp", "--interval", "--prefix"))


def test_an_unknown_ocpp_version_exits_2_naming_the_ones_it_speaks() -> None:
    """--ocpp 2.1 ends with status 2 and one stderr line naming 1.6 and 2.0.1."""
    arguments = simulator_command("--url", "ws://127.0.0.1:9", "--ocpp", "2.1")
    done = subprocess.run(arguments, capture_output=True, text=True, timeout=WAIT_S, check=False)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "must be one of 1.6, 2.0.1" in lines[0], lines
