"""A bug in one mapping (a handler or an actuator that raises) ends in a specific answer, never in silence."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from connector import datapoints
from connector.ocpp16 import actuators as ocpp16_actuators
from connector.tests.conftest import RunningConnector, command, start_connector, wire
from connector.tests.harness import ChargerLink, MqttProbe, RawLink, send


def broken(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("a bug")


async def test_a_handler_that_raises_answers_internal_error_and_the_session_goes_on(
    connector: RunningConnector, probe: MqttProbe, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handler raising gives the charger a CALLERROR InternalError naming the action; later frames are served."""
    monkeypatch.setattr(datapoints, "heartbeat", broken)
    async with RawLink(connector.url, "CP_1") as link:
        answer = await link.exchange('[2,"h1","Heartbeat",{}]')
        after = await link.exchange(
            '[2,"s1","StatusNotification",{"connectorId":1,"errorCode":"NoError","status":"Available"}]'
        )
    assert answer == [4, "h1", "InternalError", "RuntimeError while handling Heartbeat", {}]
    assert after == [3, "s1", {}]


async def test_an_actuator_that_raises_ends_in_a_failed_status(
    connector: RunningConnector, probe: MqttProbe, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An actuator whose builder raises publishes `Failed: internal error ...` and sends nothing."""
    name = "execute_reset"
    translations = ocpp16_actuators.TRANSLATIONS
    monkeypatch.setitem(translations, name, dataclasses.replace(translations[name], build=broken))
    async with ChargerLink(connector.url, "CP_1") as charger:
        ((cmd, status),) = (await wire(probe, connector, f"CP_1__{name}")).values()
        probe.publish(cmd, command("Soft"))
        failed = await probe.wait_for(status)
        await send(charger, "heartbeat")  # still served, and nothing was sent to it meanwhile
    assert failed["value"] == "Failed: internal error (RuntimeError) building the call"
    assert charger.received.empty()


async def test_keys_a_command_answer_mints_count_against_the_charge_points_cap(
    settings_env: dict[str, str], probe: MqttProbe
) -> None:
    """A GetConfiguration answer's keys stop at OCPP_MAX_KEYS_PER_CHARGE_POINT; the command's status still comes."""
    running = await start_connector({**settings_env, "OCPP_MAX_KEYS_PER_CHARGE_POINT": "30"}, probe)
    try:
        async with ChargerLink(running.url, "CP_1") as charger:
            entries = [{"key": f"Key{n}", "readonly": True, "value": "v"} for n in range(100)]
            charger.replies["GetConfiguration"] = {"configuration_key": entries}
            ((cmd, status),) = (await wire(probe, running, "CP_1__execute_get_configuration")).values()
            probe.publish(cmd, command(""))
            assert (await probe.wait_for(status))["value"] == "Accepted"  # the status is always published
            assert running.service.registry.key_count("CP_1") == 31
    finally:
        await running.stop()
    warnings = [p["msg"] for p in probe.on(running.topic("logs")) if "OCPP_MAX_KEYS_PER_CHARGE_POINT" in p["msg"]]
    assert len(warnings) == 1 and warnings[0].startswith("CP_1: has 30 datapoint keys")
