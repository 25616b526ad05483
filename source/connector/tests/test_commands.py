"""Actuators end to end: MQTT value -> OCPP call on a real charger -> `<key>__status`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from connector.actuators import OcppCall
from connector.commands import remember
from connector.tests.conftest import RunningConnector, command, start_connector, wire
from connector.tests.harness import ChargerLink, MqttProbe, RawLink, send
from connector.transactions import TransactionStore

PROFILE = "CP_1__execute_send_charging_profile__1"
TRIGGER = "CP_1__execute_trigger_message"


async def test_power_limit_becomes_a_tx_default_profile(connector: RunningConnector, probe: MqttProbe) -> None:
    """A value in W becomes SetChargingProfile with this connector's fixed TxDefaultProfile; status Accepted."""
    async with ChargerLink(connector.url, "CP_1") as charger:
        await send(charger, "status_available")  # connector 1 appears, its actuators with it
        ((cmd, status),) = (await wire(probe, connector, PROFILE)).values()
        probe.publish(cmd, command(11000))
        action, payload = await charger.next_call()
        await probe.wait_value(status, "Accepted")
        probe.publish(cmd, command("7360.55"))
        _, second = await charger.next_call()
    assert action == "SetChargingProfile"
    assert payload["connector_id"] == 1
    profile = payload["cs_charging_profiles"]
    assert profile["charging_profile_purpose"] == "TxDefaultProfile"
    assert profile["charging_schedule"]["charging_rate_unit"] == "W"
    assert profile["charging_schedule"]["charging_schedule_period"] == [{"start_period": 0, "limit": 11000.0}]
    assert second["cs_charging_profiles"]["charging_profile_id"] == profile["charging_profile_id"]
    assert second["cs_charging_profiles"]["charging_schedule"]["charging_schedule_period"][0]["limit"] == 7360.5


async def test_null_limit_clears_the_profile(connector: RunningConnector, probe: MqttProbe) -> None:
    """`null` sends ClearChargingProfile for the same profile id."""
    async with ChargerLink(connector.url, "CP_1") as charger:
        await send(charger, "status_available")
        ((cmd, status),) = (await wire(probe, connector, PROFILE)).values()
        probe.publish(cmd, command(4000))
        _, set_payload = await charger.next_call()
        await probe.wait_value(status, "Accepted")
        charger.answers["ClearChargingProfile"] = "Unknown"
        probe.publish(cmd, command(None))
        action, payload = await charger.next_call()
        await probe.wait_value(status, "Unknown")
    assert action == "ClearChargingProfile"
    assert payload["id"] == set_payload["cs_charging_profiles"]["charging_profile_id"]


@pytest.mark.parametrize(
    ("value", "requested"), [(3, "Heartbeat"), ("MeterValues", "MeterValues"), ("5", "StatusNotification")]
)
async def test_trigger_message(connector: RunningConnector, probe: MqttProbe, value: Any, requested: str) -> None:
    """0..5 or the message name becomes TriggerMessage.req; the charger's answer is the status."""
    async with ChargerLink(connector.url, "CP_1") as charger:
        charger.answers["TriggerMessage"] = "Rejected"
        ((cmd, status),) = (await wire(probe, connector, TRIGGER)).values()
        probe.publish(cmd, command(value))
        assert await charger.next_call() == ("TriggerMessage", {"requested_message": requested})
        await probe.wait_value(status, "Rejected")


@pytest.mark.parametrize(
    ("key", "payload", "reason"),
    [
        (PROFILE, b"not json", "message is not JSON"),
        (PROFILE, b'{"timestamp": 1}', 'message has no "value"'),
        (PROFILE, json.dumps(command(-5)).encode(), "value must be a number >= 0 (W) or null, got -5"),
        (PROFILE, json.dumps(command("eleven")).encode(), "value must be a number >= 0 (W) or null, got 'eleven'"),
        (PROFILE, json.dumps(command(True)).encode(), "value must be a number >= 0 (W) or null, got True"),
        (TRIGGER, json.dumps(command(9)).encode(), "value must be one of"),
        (TRIGGER, json.dumps(command("Reboot")).encode(), "value must be one of"),
    ],
    ids=["not-json", "no-value", "negative", "not-a-number", "bool", "trigger-out-of-range", "trigger-unknown-name"],
)
async def test_bad_actuator_values_are_refused(
    connector: RunningConnector, probe: MqttProbe, key: str, payload: bytes, reason: str
) -> None:
    """A bad actuator message sends nothing, sets `Failed: <reason>` and logs a WARNING naming the topic."""
    async with ChargerLink(connector.url, "CP_1") as charger:
        await send(charger, "status_available")
        topics = await wire(probe, connector, PROFILE, TRIGGER)
        cmd, status = topics[key]
        probe.publish(cmd, payload)
        failed = await probe.wait_for(status, lambda p: p["value"].startswith("Failed: "))
        log = await probe.wait_for(connector.topic("logs"), lambda p: cmd in p["msg"])
        # A good command afterwards is the first call the charger sees: nothing was sent before it.
        probe.publish(topics[TRIGGER][0], command(3))
        assert (await charger.next_call())[0] == "TriggerMessage"
    assert failed["value"].startswith(f"Failed: {reason}")
    assert log["level"] == 30 and reason[:20] in log["msg"]


async def test_command_for_a_disconnected_charge_point_fails(connector: RunningConnector, probe: MqttProbe) -> None:
    """A command for a booted charge point that is not connected ends in `Failed: ... not connected`."""
    async with ChargerLink(connector.url, "CP_1") as charger:
        await send(charger, "boot_notification")
        ((cmd, status),) = (await wire(probe, connector, TRIGGER)).values()
    await probe.wait_for(connector.topic("logs"), lambda p: p["msg"].startswith("CP_1: disconnected"))
    probe.publish(cmd, command(0))
    assert (await probe.wait_for(status))["value"] == "Failed: charge point CP_1 is not connected"


async def test_an_unbooted_charge_point_leaves_no_actuator_behind(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """A charge point that connected without booting was commandable, but once gone its actuators are unknown."""
    async with ChargerLink(connector.url, "CP_1") as charger:
        ((cmd, status),) = (await wire(probe, connector, TRIGGER)).values()
        probe.publish(cmd, command(3))
        assert await charger.next_call() == ("TriggerMessage", {"requested_message": "Heartbeat"})
        await probe.wait_value(status, "Accepted")
    await probe.wait_for(connector.topic("logs"), lambda p: p["msg"].startswith("CP_1: disconnected"))
    assert TRIGGER not in connector.service.registry.actuator_refs
    probe.publish(cmd, command(0))
    assert (await probe.wait_for(status, lambda p: p["value"] != "Accepted"))["value"].startswith(
        "Failed: no such actuator"
    )


async def test_callerror_answer_is_reported(connector: RunningConnector, probe: MqttProbe) -> None:
    """A charger answering with a CALLERROR gives `Failed: charger answered CALLERROR <code>: ...`."""
    async with RawLink(connector.url, "CP_1") as link:
        ((cmd, status),) = (await wire(probe, connector, TRIGGER)).values()
        probe.publish(cmd, command("Heartbeat"))
        async with asyncio.timeout(10):
            request = json.loads(await link.connection.recv())
        await link.connection.send(json.dumps([4, request[1], "NotImplemented", "no triggers here", {}]))
        failed = await probe.wait_for(status)
    assert failed["value"] == "Failed: charger answered CALLERROR NotImplemented: no triggers here"


async def test_a_huge_callerror_description_is_cut_short(connector: RunningConnector, probe: MqttProbe) -> None:
    """A CALLERROR with a 1 MB description gives a status and a log line that quote 200 characters of it."""
    async with RawLink(connector.url, "CP_1") as link:
        ((cmd, status),) = (await wire(probe, connector, TRIGGER)).values()
        probe.publish(cmd, command("Heartbeat"))
        async with asyncio.timeout(10):
            request = json.loads(await link.connection.recv())
        await link.connection.send(json.dumps([4, request[1], "InternalError", "x" * 1_000_000, {}]))
        failed = await probe.wait_for(status)
    expected = f"Failed: charger answered CALLERROR InternalError: {'x' * 200}... (1000000 characters)"
    assert failed["value"] == expected
    assert max(len(p["msg"]) for p in probe.on(connector.topic("logs"))) < 500


async def test_silent_charger_times_out(settings_env: dict[str, str], probe: MqttProbe) -> None:
    """A charger that never answers ends in `Failed: no answer within <timeout> s`, and stays served."""
    running = await start_connector({**settings_env, "OCPP_RESPONSE_TIMEOUT": "0.5"}, probe)
    try:
        async with RawLink(running.url, "CP_1") as link:
            ((cmd, status),) = (await wire(probe, running, TRIGGER)).values()
            probe.publish(cmd, command(3))
            async with asyncio.timeout(10):
                request = json.loads(await link.connection.recv())
            assert request[2] == "TriggerMessage"
            failed = await probe.wait_for(status)
            assert (await link.exchange('[2,"h","Heartbeat",{}]'))[:2] == [3, "h"]
    finally:
        await running.stop()
    assert failed["value"] == "Failed: no answer within 0.5 s"


async def test_disabled_actuators_are_not_offered_or_run(settings_env: dict[str, str], probe: MqttProbe) -> None:
    """OCPP_CONFIG limits the actuators: a disabled one is not listed and a mapped one is refused."""
    running = await start_connector({**settings_env, "OCPP_CONFIG": '["execute_trigger_message"]'}, probe)
    try:
        async with ChargerLink(running.url, "CP_1") as charger:
            await send(charger, "boot_notification")
            await send(charger, "status_available")
            available = await probe.wait_for(
                running.topic("available_datapoints"), lambda p: "CP_1__StatusNotification__1__status" in p["sensor"]
            )
            ((cmd, status),) = (await wire(probe, running, PROFILE)).values()
            probe.publish(cmd, command(1000))
            failed = await probe.wait_for(status)
    finally:
        await running.stop()
    assert set(available["actuator"]) == {TRIGGER}
    assert failed["value"].startswith("Failed: no such actuator")


async def test_a_newer_value_supersedes_one_still_waiting(settings_env: dict[str, str], probe: MqttProbe) -> None:
    """Behind an unanswered call, only the newest of several queued values is sent; the rest fail as superseded."""
    running = await start_connector({**settings_env, "OCPP_RESPONSE_TIMEOUT": "3"}, probe)
    try:
        async with RawLink(running.url, "CP_1") as link:
            await link.exchange(
                '[2,"s","StatusNotification",{"connectorId":1,"errorCode":"NoError","status":"Available"}]'
            )
            ((cmd, status),) = (await wire(probe, running, PROFILE)).values()
            probe.publish(cmd, command(1000))
            async with asyncio.timeout(10):
                query = json.loads(await link.connection.recv())  # rate units, read before the first limit
                await link.connection.send(json.dumps([3, query[1], {"configurationKey": []}]))
                first = json.loads(await link.connection.recv())
            for value in (2000, 3000, 4000):
                probe.publish(cmd, command(value))
            submitted = f"CP_1: {PROFILE} -> SetChargingProfile"
            await probe.wait_until(lambda: sum(p["msg"] == submitted for p in probe.on(running.topic("logs"))) == 4)
            await link.connection.send(json.dumps([3, first[1], {"status": "Accepted"}]))
            async with asyncio.timeout(10):
                second = json.loads(await link.connection.recv())
            await link.connection.send(json.dumps([3, second[1], {"status": "Accepted"}]))
            await probe.wait_until(lambda: [p["value"] for p in probe.on(status)].count("Accepted") == 2)
    finally:
        await running.stop()
    limits = second[3]["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"]
    assert limits == 4000.0
    statuses = [p["value"] for p in probe.on(status)]
    assert statuses.count("Failed: superseded by a newer value before it was sent") == 2
    assert statuses[-1] == "Accepted"


async def test_commands_behind_a_silent_charger_fail_within_the_timeout(
    settings_env: dict[str, str], probe: MqttProbe
) -> None:
    """A command queued behind one the charger leaves unanswered fails unsent when that one times out."""
    running = await start_connector({**settings_env, "OCPP_RESPONSE_TIMEOUT": "0.5"}, probe)
    try:
        async with RawLink(running.url, "CP_1") as link:
            topics = await wire(probe, running, TRIGGER, "CP_1__execute_send_charging_profile__0")
            probe.publish(topics[TRIGGER][0], command(3))
            probe.publish(topics["CP_1__execute_send_charging_profile__0"][0], command(100))
            first = await probe.wait_for(topics[TRIGGER][1])
            second = await probe.wait_for(topics["CP_1__execute_send_charging_profile__0"][1])
            async with asyncio.timeout(10):
                only = json.loads(await link.connection.recv())
    finally:
        await running.stop()
    assert only[2] == "TriggerMessage"
    assert first["value"] == "Failed: no answer within 0.5 s"
    assert second["value"] == "Failed: not sent: the charger left an earlier command unanswered for 0.5 s"


async def test_a_failed_rate_unit_read_is_not_repeated_before_the_next_boot(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """If the read after boot fails, limits go out in the unit given until the next boot, with no second read."""
    async with RawLink(connector.url, "CP_1") as link:
        ((cmd, status),) = (await wire(probe, connector, "CP_1__execute_send_charging_profile__0")).values()
        await link.connection.send('[2,"b","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]')
        async with asyncio.timeout(10):
            assert json.loads(await link.connection.recv())[0] == 3  # the boot answer comes first
            query = json.loads(await link.connection.recv())
            assert query[2:] == ["GetConfiguration", {"key": ["ChargingScheduleAllowedChargingRateUnit"]}]
            await link.connection.send(json.dumps([4, query[1], "InternalError", "busy booting", {}]))
        await probe.wait_for(connector.topic("logs"), lambda p: "could not read" in p["msg"])
        probe.publish(cmd, command(6900))
        async with asyncio.timeout(10):
            limit = json.loads(await link.connection.recv())
            await link.connection.send(json.dumps([3, limit[1], {"status": "Accepted"}]))
        await probe.wait_value(status, "Accepted")
    assert limit[2] == "SetChargingProfile"
    schedule = limit[3]["csChargingProfiles"]["chargingSchedule"]
    assert schedule["chargingRateUnit"] == "W"
    assert schedule["chargingSchedulePeriod"][0]["limit"] == 6900


class SessionStub:
    """Only what `remember` reads: the identity (and rate-unit learning, unused here)."""

    id = "CP_1"

    def remember_rate_units(self, call: OcppCall, answer: dict[str, Any]) -> None:
        raise AssertionError("not a GetConfiguration")


def reserve(connector_id: int, reservation_id: int) -> OcppCall:
    payload = {
        "connectorId": connector_id,
        "expiryDate": "2099-11-21T12:00:00Z",
        "idTag": "T",
        "reservationId": reservation_id,
    }
    return OcppCall("ReserveNow", payload)


def reservations(store: TransactionStore) -> dict[int, int | None]:
    return {c: store.reservation("CP_1", c) for c in (1, 2) if store.reservation("CP_1", c) is not None}


def test_a_reservation_is_remembered_on_the_connector_its_payload_names(tmp_path: Path) -> None:
    """ReserveNow sent through execute_ocpp_call (connector 0 in the key) is recorded on the payload's connector."""
    store = TransactionStore(tmp_path)
    remember(SessionStub(), store, reserve(2, 77), {"status": "accepted"})  # type: ignore[arg-type]
    assert reservations(store) == {2: 77}


def test_a_cancel_forgets_the_reservation_by_its_id(tmp_path: Path) -> None:
    """CancelReservation Accepted removes the reservation with that id, wherever it is."""
    store = TransactionStore(tmp_path)
    for call in (reserve(1, 5), reserve(2, 77)):
        remember(SessionStub(), store, call, {"status": "Accepted"})  # type: ignore[arg-type]
    remember(SessionStub(), store, OcppCall("CancelReservation", {"reservationId": 77}), {"status": "Accepted"})  # type: ignore[arg-type]
    assert reservations(store) == {1: 5}


def test_a_rejected_reservation_is_not_remembered(tmp_path: Path) -> None:
    """Only an accepted ReserveNow opens a reservation."""
    store = TransactionStore(tmp_path)
    remember(SessionStub(), store, reserve(1, 5), {"status": "Occupied"})  # type: ignore[arg-type]
    assert reservations(store) == {}


# -- refusals in a few words, never a secret (INTERFACE.md 7) ------------------------------

CHANGE_CONFIGURATION = "CP_1__execute_change_configuration"
OCPP_CALL = "CP_1__execute_ocpp_call"
GET_CONFIGURATION = "CP_1__execute_get_configuration"


async def test_a_megabyte_value_gives_a_short_status_and_log_line(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """A 1 MB limit is refused with a status and a WARNING quoting 40 characters of it and its length."""
    async with ChargerLink(connector.url, "CP_1") as charger:
        await send(charger, "status_available")
        ((cmd, status),) = (await wire(probe, connector, PROFILE)).values()
        probe.publish(cmd, command("7" * 1_000_000))
        failed = await probe.wait_for(status)
        log = await probe.wait_for(connector.topic("logs"), lambda p: cmd in p["msg"])
    quoted = f"got {'7' * 40!r}... (1000000 characters)"
    assert failed["value"] == f"Failed: value must be a number >= 0 (W) or null, {quoted}"
    assert log["level"] == 30 and log["msg"].endswith(quoted) and len(log["msg"]) < 300


def mentioning(text: str) -> Callable[[Any], bool]:
    return lambda payload: text in payload["msg"]


async def test_a_mistyped_authorization_key_never_reaches_the_logs_or_a_status(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """ "AuthorizationKey 1234" (no "=") and an operator's call holding the key are refused without quoting it."""
    secret = "5ecret5ecret"
    refused = {
        CHANGE_CONFIGURATION: f"AuthorizationKey {secret}",
        OCPP_CALL: json.dumps({"action": "ChangeConfiguration", "payload": {"AuthorizationKey": secret}}),
    }
    async with ChargerLink(connector.url, "CP_1"):
        topics = await wire(probe, connector, *refused)
        for actuator_key, value in refused.items():
            cmd, status = topics[actuator_key]
            probe.publish(cmd, command(value))
            assert (await probe.wait_for(status))["value"].startswith("Failed: ")
            await probe.wait_for(connector.topic("logs"), mentioning(cmd))
    published = [json.dumps(payload) for topic, payload, _ in probe.messages if "/cmd/" not in topic]  # not ours
    assert published and not [text for text in published if secret in text]


async def test_unlock_and_remote_stop_are_not_offered_on_connector_0(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """Actuators that act on one connector are listed for connector 1, not for 0 (the charge point as a whole)."""
    async with ChargerLink(connector.url, "CP_1") as charger:
        await send(charger, "boot_notification")
        await send(charger, "status_available")
        available = await probe.wait_for(
            connector.topic("available_datapoints"),
            lambda p: "CP_1__execute_unlock_connector__1" in p["actuator"],
        )
    actuators = set(available["actuator"])
    assert {"CP_1__execute_remote_stop_transaction__1", "CP_1__execute_change_availability__0"} <= actuators
    assert not {"CP_1__execute_unlock_connector__0", "CP_1__execute_remote_stop_transaction__0"} & actuators


async def test_an_unknown_configuration_key_is_not_supported_and_named(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """GetConfiguration answered with the key in unknownKey: status NotSupported and a WARNING naming the key."""
    async with ChargerLink(connector.url, "CP_1") as charger:
        charger.replies["GetConfiguration"] = {"unknown_key": ["NoSuchKey"]}
        ((cmd, status),) = (await wire(probe, connector, GET_CONFIGURATION)).values()
        probe.publish(cmd, command("NoSuchKey"))
        assert await charger.next_call() == ("GetConfiguration", {"key": ["NoSuchKey"]})
        answered = await probe.wait_for(status)
        log = await probe.wait_for(connector.topic("logs"), lambda p: "does not know" in p["msg"])
    assert answered["value"] == "NotSupported"
    assert log["level"] == 30
    assert log["msg"] == f"CP_1: {GET_CONFIGURATION}: the charger does not know the configuration key 'NoSuchKey'"


async def test_values_and_statuses_do_not_wait_behind_raw_frames(
    settings_env: dict[str, str], probe: MqttProbe
) -> None:
    """Raw frames (QoS 2) have their own lane: with it stalled, a command status still arrives.

    The raw lane's acknowledgements are left unread (its socket taken off the loop), so its
    QoS 2 window fills and raw frames pile up behind it; statuses (and values, on the same
    lane) go on.
    """
    from connector.outbox import QOS2_ONLY_WINDOW

    running = await start_connector({**settings_env, "SEND_RAW_MESSAGE_TO_DB": "TRUE"}, probe)
    raw_lane, raw_driver = running.service.mqtt.lanes[-1], running.service.mqtt.drivers[-1]
    try:
        async with ChargerLink(running.url, "CP_1") as charger:
            await send(charger, "status_available")
            ((cmd, status),) = (await wire(probe, running, TRIGGER)).values()
            raw_socket = raw_driver.client.socket()
            assert raw_socket is not None
            asyncio.get_running_loop().remove_reader(raw_socket)
            for _ in range(QOS2_ONLY_WINDOW * 2):
                await send(charger, "heartbeat")  # two raw frames each
            assert raw_lane.pending > QOS2_ONLY_WINDOW * 2  # the raw lane is stalled
            probe.publish(cmd, b"not a command")
            refused = await probe.wait_for(status, lambda p: p["value"].startswith("Failed: "))
            assert raw_lane.pending > QOS2_ONLY_WINDOW * 2  # still stalled: the status did not pass through it
            asyncio.get_running_loop().add_reader(raw_socket, raw_driver.client.loop_read)
    finally:
        await running.stop()
    assert refused["value"].startswith("Failed: ")
