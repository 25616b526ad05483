"""Limits that never weaken: W -> A over this session's plausible voltages (INTERFACE.md 4), end to end.

A charger that takes only amperes (the ocpp library's client over a real WebSocket) reports
voltages in MeterValues; a limit in W published on MQTT must reach it as a current no
higher than the power allows at any phase voltage it measured, whatever it measured.
"""

from __future__ import annotations

import math

from connector.tests.conftest import RunningConnector, command, wire
from connector.tests.harness import Charger, ChargerLink, MqttProbe, send

CP = "CP_V"
POWER = f"{CP}__execute_send_charging_profile__1"
RATE_UNIT = "ChargingScheduleAllowedChargingRateUnit"


def only_current(charger: Charger) -> None:
    entry = {"key": RATE_UNIT, "readonly": True, "value": "Current"}
    charger.replies["GetConfiguration"] = {"configuration_key": [entry]}


async def boot_current_only(charger: Charger) -> None:
    """BootNotification, then the connector's rate-unit query, answered: Current only."""
    only_current(charger)
    await send(charger, "boot_notification_minimal")
    assert await charger.next_call() == ("GetConfiguration", {"key": [RATE_UNIT]})
    await send(charger, "status_available")  # connector 1 appears, its actuators with it


async def measure(charger: Charger, *phase_volts: tuple[str, str]) -> None:
    samples = [{"value": v, "measurand": "Voltage", "phase": p, "unit": "V"} for p, v in phase_volts]
    await send(
        charger, "meter_values_defaults", meterValue=[{"timestamp": "2026-12-04T10:00:00Z", "sampledValue": samples}]
    )


async def limit_sent(charger: Charger, probe: MqttProbe, topics: tuple[str, str], watts: float) -> tuple[str, float]:
    """Publish `watts` on the power actuator; (rate unit, limit) of the SetChargingProfile.req the charger got."""
    cmd, status = topics
    since = len(probe.messages)
    probe.publish(cmd, command(watts))
    action, payload = await charger.next_call()
    await probe.wait_for(status, lambda p: p["value"] == "Accepted", since=since)
    assert action == "SetChargingProfile"
    schedule = payload["cs_charging_profiles"]["charging_schedule"]
    return schedule["charging_rate_unit"], float(schedule["charging_schedule_period"][0]["limit"])


async def test_a_floating_phase_does_not_turn_a_power_limit_into_no_limit(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """After L1 231 V, L2 229 V, L3 0.8 V, 11,000 W reach a Current-only charger as 15.8 A, not 4,583 A."""
    async with ChargerLink(connector.url, CP) as charger:
        await boot_current_only(charger)
        topics = (await wire(probe, connector, POWER))[POWER]
        await measure(charger, ("L1-N", "231"), ("L2-N", "229"), ("L3-N", "0.8"))
        sent = await limit_sent(charger, probe, topics, 11000)
    assert sent == ("A", 15.8) == ("A", math.floor(11000 / (231 * 3) * 10) / 10)


async def test_a_new_connection_starts_from_230_volts(connector: RunningConnector, probe: MqttProbe) -> None:
    """Voltages belong to the connection that measured them: another under the same identity converts over 230 V."""
    async with ChargerLink(connector.url, CP) as first:
        await boot_current_only(first)
        topics = (await wire(probe, connector, POWER))[POWER]
        await measure(first, ("L1-N", "250"), ("L2-N", "250"), ("L3-N", "250"))
        assert await limit_sent(first, probe, topics, 11000) == ("A", 14.6)  # 11000 / 750
        async with ChargerLink(connector.url, CP) as second:  # replaces the first
            only_current(second)
            await send(second, "heartbeat")
            assert await limit_sent(second, probe, topics, 11000) == ("A", 15.9)  # 11000 / 690
