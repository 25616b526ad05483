"""What the connector knows of charge points: listed after a boot, kept across restarts, forgotten when long gone."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from connector.datapoints import Datapoint
from connector.fleet import Roster
from connector.registry import Registry
from connector.registry_store import RegistryStore
from connector.tests.conftest import RunningConnector, command, start_connector, wire
from connector.tests.harness import ChargerLink, MqttProbe, send
from connector.upkeep import Upkeep

RESET = "CP_1__execute_reset"
MODEL = "CP_1__BootNotification__charge_point_model"


def listing(probe: MqttProbe, running: RunningConnector, predicate: Any) -> Any:
    return probe.wait_for(running.topic("available_datapoints"), predicate)


async def disconnected(probe: MqttProbe, running: RunningConnector, cp: str) -> None:
    await probe.wait_for(running.topic("logs"), lambda p: str(p["msg"]).startswith(f"{cp}: disconnected"))


async def test_actuators_are_listed_after_the_boot_not_at_connect(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """Without authentication, a charge point's actuators enter the listing with its BootNotification."""
    async with ChargerLink(connector.url, "CP_1") as charger:
        await send(charger, "status_available")
        before = await listing(probe, connector, lambda p: "CP_1__StatusNotification__1__status" in p["sensor"])
        await send(charger, "boot_notification")
        after = await listing(probe, connector, lambda p: RESET in p["actuator"])
    assert not [k for k in before["actuator"] if k.startswith("CP_1__")]
    assert "CP_1__execute_send_charging_profile__1" in after["actuator"]


async def test_with_an_allow_list_actuators_are_listed_at_connect(
    settings_env: dict[str, str], probe: MqttProbe
) -> None:
    """When the operator names the charge points (allow-list), a connected one is listed at once, boot or not."""
    running = await start_connector({**settings_env, "OCPP_ALLOWED_CHARGE_POINTS": "CP_1"}, probe)
    try:
        async with ChargerLink(running.url, "CP_1"):
            await listing(probe, running, lambda p: RESET in p["actuator"])
    finally:
        await running.stop()


async def test_keys_and_actuators_survive_a_restart(settings_env: dict[str, str], probe: MqttProbe) -> None:
    """After a restart the listing keeps boot data and actuators; a charger back without a boot is commandable."""
    first = await start_connector(settings_env, probe)
    try:
        async with ChargerLink(first.url, "CP_1") as charger:
            await send(charger, "boot_notification")
            await listing(probe, first, lambda p: RESET in p["actuator"] and MODEL in p["sensor"])
    finally:
        await first.stop()
    since = len(probe.messages)
    second = await start_connector(settings_env, probe)
    try:
        restored = await probe.wait_for(
            second.topic("available_datapoints"), lambda p: RESET in p["actuator"], since=since
        )
        ((cmd, status),) = (await wire(probe, second, RESET)).values()
        async with ChargerLink(second.url, "CP_1") as charger:  # no BootNotification this time
            probe.publish(cmd, command("Soft"))
            assert await charger.next_call() == ("Reset", {"type": "Soft"})
            await probe.wait_value(status, "Accepted")
    finally:
        await second.stop()
    assert restored["sensor"][MODEL] == "NG910-60023"
    assert "CP_1__execute_send_charging_profile__0" in restored["actuator"]


async def test_a_charge_point_gone_too_long_is_forgotten(settings_env: dict[str, str], probe: MqttProbe) -> None:
    """Beyond the absent charge points remembered, the longest gone leaves the listing, the registry and its state."""
    running = await start_connector({**settings_env, "OCPP_MAX_CONNECTIONS": "1"}, probe)
    try:
        for cp in ("CP_OLD", "CP_NEW"):
            async with ChargerLink(running.url, cp) as charger:
                await send(charger, "boot_notification")
            await disconnected(probe, running, cp)
        assert running.service.upkeep.forget_due() == 1
        after = await listing(probe, running, lambda p: not any(k.startswith("CP_OLD__") for k in p["sensor"]))
    finally:
        await running.stop()
    assert any(k.startswith("CP_NEW__") for k in after["actuator"])
    assert not any(k.startswith("CP_OLD__") for k in after["actuator"])
    assert running.service.registry.key_count("CP_OLD") == 0
    assert "CP_OLD" not in running.service.dispatcher.chargers
    assert "CP_OLD" not in running.service.roster.members


async def test_a_failed_save_loses_nothing_and_is_tried_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the store cannot be written, the changes are kept and the next save writes them."""
    registry, roster, store = Registry(), Roster(3600.0, 10), RegistryStore(tmp_path)
    upkeep = Upkeep(registry, roster, store, forget=lambda cp: None)
    registry.add_sensor(Datapoint("CP_1__connected", True, 1), "CP_1")
    roster.arrived("CP_1")
    real_save = store.save

    def full_disk(*args: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store, "save", full_disk)
    assert await upkeep.save() is False
    registry.add_sensor(Datapoint("CP_2__connected", True, 1), "CP_2")
    monkeypatch.setattr(store, "save", real_save)
    assert await upkeep.save() is True
    records, members = store.load()
    store.close()
    assert [r.key for r in records] == ["CP_1__connected", "CP_2__connected"]
    assert set(members) == {"CP_1"}
