"""The OCPP 1.6 actuators of INTERFACE.md section 4's second table, end to end.

Each test drives the connector only from outside: a value on the actuator's MQTT topic,
a real charge point (the ocpp library's client over a real WebSocket) that records the
call it receives and answers it, and the status and data sensors that come back on MQTT.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connector.datapoints import key as join_key
from connector.tests.conftest import RunningConnector, map_datapoints, start_connector
from connector.tests.harness import WAIT_S, Charger, ChargerLink, MqttProbe, RawLink, send

CP = "CP_1"
RATE_UNIT = "ChargingScheduleAllowedChargingRateUnit"


def key(*parts: object) -> str:
    return join_key(CP, *parts)


TRIGGER = key("execute_trigger_message")
POWER = key("execute_send_charging_profile", 1)
CURRENT = key("execute_send_charging_profile_current", 1)
START_0 = key("execute_remote_start_transaction", 0)
START_1 = key("execute_remote_start_transaction", 1)
STOP_1 = key("execute_remote_stop_transaction", 1)
AVAILABILITY_0 = key("execute_change_availability", 0)
AVAILABILITY_1 = key("execute_change_availability", 1)
RESET = key("execute_reset")
UNLOCK_0 = key("execute_unlock_connector", 0)
UNLOCK_1 = key("execute_unlock_connector", 1)
CHANGE_CONFIGURATION = key("execute_change_configuration")
GET_CONFIGURATION = key("execute_get_configuration")
CLEAR_0 = key("execute_clear_charging_profile", 0)
CLEAR_1 = key("execute_clear_charging_profile", 1)
COMPOSITE_1 = key("execute_get_composite_schedule", 1)
RESERVE_1 = key("execute_reserve_now", 1)
RESERVE_2 = key("execute_reserve_now", 2)
CANCEL_1 = key("execute_cancel_reservation", 1)
CANCEL_2 = key("execute_cancel_reservation", 2)
DATA_TRANSFER = key("execute_data_transfer")
OCPP_CALL = key("execute_ocpp_call")

GLOBAL_ACTUATORS = (
    "execute_trigger_message",
    "execute_reset",
    "execute_change_configuration",
    "execute_get_configuration",
    "execute_data_transfer",
    "execute_ocpp_call",
)
CONNECTOR_ACTUATORS = (
    "execute_send_charging_profile",
    "execute_send_charging_profile_current",
    "execute_remote_start_transaction",
    "execute_remote_stop_transaction",
    "execute_change_availability",
    "execute_unlock_connector",
    "execute_clear_charging_profile",
    "execute_get_composite_schedule",
    "execute_reserve_now",
    "execute_cancel_reservation",
)
CONNECTORS = (0, 1, 2)  # 0 is there on connect; the rig makes 1 and 2 appear
NOT_ON_CONNECTOR_0 = ("execute_remote_stop_transaction", "execute_unlock_connector")
ACTUATOR_KEYS = [key(name) for name in GLOBAL_ACTUATORS] + [
    key(name, c) for name in CONNECTOR_ACTUATORS for c in CONNECTORS if c or name not in NOT_ON_CONNECTOR_0
]
WIRED_KEYS = ACTUATOR_KEYS + [key(name, 0) for name in NOT_ON_CONNECTOR_0]  # mapped, to see them refused
COMPOSITE_FIELDS = (
    "status",
    "schedule_start",
    "duration",
    "charging_rate_unit",
    "min_charging_rate",
    "limit",
    "periods",
)
RESERVATION_FIELDS = ("reservation_id", "id_tag", "expiry_date", "status")
SENSOR_KEYS = [
    *(f"{k}__status" for k in WIRED_KEYS),
    key("Configuration", RATE_UNIT),
    key("Configuration", "HeartbeatInterval"),
    key("Configuration", "MeterValueSampleInterval"),
    key("Configuration", "AuthorizationKey"),
    *(key("CompositeSchedule", 1, name) for name in COMPOSITE_FIELDS),
    *(key("Reservation", c, name) for c in (1, 2) for name in RESERVATION_FIELDS),
    key("Transaction", 1, "transaction_id"),
    key("Transaction", 1, "active"),
    key("execute_data_transfer", "data"),
    key("execute_ocpp_call", "response"),
]


def command(value: Any) -> dict[str, Any]:
    return {"value": value, "timestamp": 1795256100000}


def command_topic(connector: RunningConnector, actuator_key: str) -> str:
    return connector.topic(f"cmd/{actuator_key}")


def sensor_topic(connector: RunningConnector, sensor_key: str) -> str:
    return connector.topic(f"sensor/{sensor_key}")


async def wire_all(probe: MqttProbe, connector: RunningConnector) -> None:
    """Map every actuator of the file to a command topic and every sensor it reads to a topic."""
    await map_datapoints(
        probe,
        connector,
        {k: sensor_topic(connector, k) for k in SENSOR_KEYS},
        {command_topic(connector, k): k for k in WIRED_KEYS},
    )


@dataclass
class Rig:
    """A wired connector, its MQTT probe and one connected charger."""

    probe: MqttProbe
    connector: RunningConnector
    charger: Charger
    mark: int = 0  # probe message count when the last command went out

    def set_mark(self) -> None:
        self.mark = len(self.probe.messages)

    async def run(self, actuator_key: str, value: Any) -> str:
        """Publish `value` on the actuator; the status its command ends in."""
        self.set_mark()
        self.probe.publish(command_topic(self.connector, actuator_key), command(value))
        status: str = await self.sensor(f"{actuator_key}__status")
        return status

    async def sensor(self, sensor_key: str) -> Any:
        """The first value published on the sensor since the mark."""
        payload = await self.probe.wait_for(sensor_topic(self.connector, sensor_key), since=self.mark)
        return payload["value"]

    async def call(self, actuator_key: str, value: Any) -> tuple[tuple[str, dict[str, Any]], str]:
        """Publish `value`; the call the charger received and the status that came back."""
        status = await self.run(actuator_key, value)
        return await self.charger.next_call(), status

    async def refused(self, actuator_key: str, value: Any) -> str:
        """Publish a value that must be refused; its status, once the WARNING and the silence are checked."""
        status = await self.run(actuator_key, value)
        topic = command_topic(self.connector, actuator_key)
        log = await self.probe.wait_for(
            self.connector.topic("logs"), lambda p: topic in p["msg"] and "Failed: " in p["msg"], since=self.mark
        )
        assert log["level"] == 30
        await self.nothing_sent()
        return status

    async def nothing_sent(self) -> None:
        """Nothing reached the charger so far: a trigger sent now is the next call it sees."""
        assert await self.run(TRIGGER, "Heartbeat") == "Accepted"
        assert await self.charger.next_call() == ("TriggerMessage", {"requested_message": "Heartbeat"})
        assert self.charger.received.empty()

    async def boot(self, rate_units: str | None) -> None:
        """BootNotification from a charger whose ChargingScheduleAllowedChargingRateUnit is `rate_units`.

        None: the charger answers the connector's query with the key unknown. Returns once
        the connector asked and, where there is a value, published it.
        """
        if rate_units is None:
            self.charger.replies["GetConfiguration"] = {"unknown_key": [RATE_UNIT]}
        else:
            entry = {"key": RATE_UNIT, "readonly": True, "value": rate_units}
            self.charger.replies["GetConfiguration"] = {"configuration_key": [entry]}
        self.set_mark()
        await send(self.charger, "boot_notification_minimal")
        assert await self.charger.next_call() == ("GetConfiguration", {"key": [RATE_UNIT]})
        if rate_units is not None:
            assert await self.sensor(key("Configuration", RATE_UNIT)) == rate_units

    async def measure_voltage(self, *volts: str) -> None:
        """A MeterValues.req whose meterValue elements carry these phase voltages, oldest first."""
        elements = [
            {
                "timestamp": f"2026-11-21T10:2{n}:00Z",
                "sampledValue": [{"value": v, "measurand": "Voltage", "phase": "L1-N", "unit": "V"}],
            }
            for n, v in enumerate(volts)
        ]
        await send(self.charger, "meter_values_defaults", meterValue=elements)


@asynccontextmanager
async def open_rig(connector: RunningConnector, probe: MqttProbe) -> AsyncIterator[Rig]:
    """Wire everything, connect CP_1 and make its connectors 1 and 2 appear."""
    await wire_all(probe, connector)
    async with ChargerLink(connector.url, CP) as charger:
        await send(charger, "status_available")
        await send(charger, "status_available", connectorId=2)
        yield Rig(probe, connector, charger)


@asynccontextmanager
async def connector_with(settings_env: dict[str, str], probe: MqttProbe, **env: str) -> AsyncIterator[Rig]:
    """A rig on a connector started with these variables added to the test environment."""
    running = await start_connector({**settings_env, **env}, probe)
    try:
        async with open_rig(running, probe) as rig:
            yield rig
    finally:
        await running.stop()


@pytest.fixture
async def rig(connector: RunningConnector, probe: MqttProbe) -> AsyncIterator[Rig]:
    async with open_rig(connector, probe) as opened:
        yield opened


def schedule(payload: dict[str, Any]) -> tuple[int, str, float]:
    """(profile id, rate unit, limit) of a SetChargingProfile.req as the charger received it."""
    profile = payload["cs_charging_profiles"]
    periods = profile["charging_schedule"]["charging_schedule_period"]
    assert len(periods) == 1 and periods[0]["start_period"] == 0
    # The ocpp library reads JSON numbers with fractions as Decimal: compare them as floats.
    return (
        profile["charging_profile_id"],
        profile["charging_schedule"]["charging_rate_unit"],
        float(periods[0]["limit"]),
    )


# -- listing ----------------------------------------------------------------------------


async def test_every_actuator_is_listed_for_each_connector(rig: Rig) -> None:
    """Once booted, available_datapoints lists every actuator of both tables for each connector id seen."""
    await send(rig.charger, "boot_notification")
    topic = rig.connector.topic("available_datapoints")
    available = await rig.probe.wait_for(topic, lambda p: set(ACTUATOR_KEYS) <= set(p["actuator"]))
    assert {k for k in available["actuator"] if k.startswith(f"{CP}__")} == set(ACTUATOR_KEYS)


# -- execute_send_charging_profile_current ----------------------------------------------


async def test_current_limit_becomes_the_tx_default_profile_in_amperes(rig: Rig) -> None:
    """A value in A (number or numeric string) becomes SetChargingProfile with rate unit A; the answer is the status."""
    (action, payload), status = await rig.call(CURRENT, 16)
    rig.charger.answers["SetChargingProfile"] = "Rejected"
    (_, second), second_status = await rig.call(CURRENT, "6.58")
    assert (action, status, second_status) == ("SetChargingProfile", "Accepted", "Rejected")
    assert payload["connector_id"] == 1
    profile = payload["cs_charging_profiles"]
    assert profile["charging_profile_purpose"] == "TxDefaultProfile"
    assert profile["charging_profile_kind"] == "Relative"
    assert profile["stack_level"] == 0
    assert schedule(payload) == (profile["charging_profile_id"], "A", 16.0)
    assert schedule(second) == (profile["charging_profile_id"], "A", 6.5)  # rounded down to 0.1 A


async def test_null_current_limit_clears_the_profile(rig: Rig) -> None:
    """`null` on the A actuator sends ClearChargingProfile for this connector's profile id."""
    (_, set_payload), _ = await rig.call(CURRENT, 10)
    rig.charger.answers["ClearChargingProfile"] = "Unknown"
    (action, payload), status = await rig.call(CURRENT, None)
    assert (action, status) == ("ClearChargingProfile", "Unknown")
    assert payload == {"id": schedule(set_payload)[0], "connector_id": 1}


async def test_power_and_current_limits_share_one_profile_id(rig: Rig) -> None:
    """W and A limits on one connector go out as the same TxDefaultProfile id, so the newest replaces the last."""
    (_, in_watts), _ = await rig.call(POWER, 11000)
    (_, in_amperes), _ = await rig.call(CURRENT, 16)
    (_, in_watts_again), _ = await rig.call(POWER, "4200")
    (action, cleared), _ = await rig.call(POWER, None)
    profile_id = schedule(in_watts)[0]
    assert schedule(in_watts) == (profile_id, "W", 11000.0)
    assert schedule(in_amperes) == (profile_id, "A", 16.0)
    assert schedule(in_watts_again) == (profile_id, "W", 4200.0)
    assert (action, cleared) == ("ClearChargingProfile", {"id": profile_id, "connector_id": 1})
    other_connector = (await rig.call(key("execute_send_charging_profile_current", 2), 16))[0][1]
    assert schedule(other_connector)[0] != profile_id


# -- execute_remote_start_transaction / execute_remote_stop_transaction ----------------


async def test_remote_start_sends_the_id_tag_to_the_connector(rig: Rig) -> None:
    """An id tag becomes RemoteStartTransaction for connector <c>; the charger's answer is the status."""
    rig.charger.answers["RemoteStartTransaction"] = "Rejected"
    call, status = await rig.call(START_1, "04A2B3C4D5E6F7")
    assert call == ("RemoteStartTransaction", {"connector_id": 1, "id_tag": "04A2B3C4D5E6F7"})
    assert status == "Rejected"


async def test_remote_start_on_connector_0_sends_no_connector_id(rig: Rig) -> None:
    """On connector 0 RemoteStartTransaction carries no connectorId: the charger chooses."""
    call, status = await rig.call(START_0, "TAG-1")
    assert call == ("RemoteStartTransaction", {"id_tag": "TAG-1"})
    assert status == "Accepted"


async def test_remote_start_only_for_allowed_id_tags(settings_env: dict[str, str], probe: MqttProbe) -> None:
    """With OCPP_ALLOWED_ID_TAGS set, a tag not in it fails unsent and a listed one goes out."""
    async with connector_with(settings_env, probe, OCPP_ALLOWED_ID_TAGS="TAG-1,04A2B3C4D5E6F7") as rig:
        refused = await rig.refused(START_1, "STRANGER")
        call, status = await rig.call(START_1, "04A2B3C4D5E6F7")
    assert refused.startswith("Failed: ") and "STRANGER" in refused
    assert (call, status) == (("RemoteStartTransaction", {"connector_id": 1, "id_tag": "04A2B3C4D5E6F7"}), "Accepted")


async def test_remote_stop_names_the_active_transaction(rig: Rig) -> None:
    """Any value becomes RemoteStopTransaction for the transaction active on the connector."""
    started = await send(rig.charger, "start_transaction")
    rig.charger.answers["RemoteStopTransaction"] = "Rejected"
    call, status = await rig.call(STOP_1, True)
    assert call == ("RemoteStopTransaction", {"transaction_id": started.transaction_id})
    assert status == "Rejected"


async def test_remote_stop_without_an_active_transaction_fails(rig: Rig) -> None:
    """With no transaction active on the connector (none yet, or the last one stopped), remote stop fails unsent."""
    before = await rig.refused(STOP_1, True)
    started = await send(rig.charger, "start_transaction")
    await send(rig.charger, "stop_transaction", transactionId=started.transaction_id)
    after = await rig.refused(STOP_1, "stop")
    assert before == after == "Failed: no transaction is active on connector 1"


async def test_remote_stop_after_a_reboot_without_stop_fails(rig: Rig) -> None:
    """A transaction left open by a charger that rebooted is settled by its BootNotification: no longer active."""
    await rig.boot(None)
    rig.set_mark()
    await send(rig.charger, "start_transaction")
    assert await rig.sensor(key("Transaction", 1, "active")) is True  # on MQTT before the next mark
    await rig.boot(None)  # rebooted: no StopTransaction came
    assert await rig.sensor(key("Transaction", 1, "active")) is False
    assert await rig.refused(STOP_1, True) == "Failed: no transaction is active on connector 1"


async def test_a_boot_the_connector_asked_for_settles_nothing(rig: Rig) -> None:
    """A BootNotification sent because execute_trigger_message asked for it is no reboot: the transaction runs on."""
    await rig.boot(None)
    started = await send(rig.charger, "start_transaction")
    call, status = await rig.call(TRIGGER, "BootNotification")
    assert (call, status) == (("TriggerMessage", {"requested_message": "BootNotification"}), "Accepted")
    await send(rig.charger, "boot_notification_minimal")  # what the trigger asked for
    assert await rig.charger.next_call() == ("GetConfiguration", {"key": [RATE_UNIT]})  # read after every boot
    stop_call, _ = await rig.call(STOP_1, True)
    assert stop_call == ("RemoteStopTransaction", {"transaction_id": started.transaction_id})


async def test_remote_stop_after_a_second_start_ignores_the_first(rig: Rig) -> None:
    """A second start on the connector settles the first: once the second stops, no remote stop goes to the first."""
    await send(rig.charger, "start_transaction", timestamp="2026-11-21T10:00:00Z")
    second = await send(rig.charger, "start_transaction", timestamp="2026-11-21T11:00:00Z")
    first_call, _ = await rig.call(STOP_1, True)
    await send(rig.charger, "stop_transaction", transactionId=second.transaction_id)
    assert first_call == ("RemoteStopTransaction", {"transaction_id": second.transaction_id})
    assert await rig.refused(STOP_1, True) == "Failed: no transaction is active on connector 1"


# -- execute_change_availability / execute_reset / execute_unlock_connector -------------


@pytest.mark.parametrize(("actuator_key", "connector_id"), [(AVAILABILITY_0, 0), (AVAILABILITY_1, 1)])
@pytest.mark.parametrize("kind", ["Operative", "Inoperative"])
async def test_change_availability(rig: Rig, actuator_key: str, connector_id: int, kind: str) -> None:
    """Operative or Inoperative becomes ChangeAvailability for connector <c>; the answer is the status."""
    rig.charger.answers["ChangeAvailability"] = "Scheduled"
    call, status = await rig.call(actuator_key, kind)
    assert call == ("ChangeAvailability", {"connector_id": connector_id, "type": kind})
    assert status == "Scheduled"


@pytest.mark.parametrize("kind", ["Soft", "Hard"])
async def test_reset(rig: Rig, kind: str) -> None:
    """Soft or Hard becomes Reset.req; the answer is the status."""
    rig.charger.answers["Reset"] = "Rejected"
    assert await rig.call(RESET, kind) == (("Reset", {"type": kind}), "Rejected")


async def test_unlock_connector(rig: Rig) -> None:
    """Any value becomes UnlockConnector for connector <c>; the answer is the status."""
    rig.charger.answers["UnlockConnector"] = "UnlockFailed"
    assert await rig.call(UNLOCK_1, True) == (("UnlockConnector", {"connector_id": 1}), "UnlockFailed")


# -- configuration ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        ("HeartbeatInterval=300", {"key": "HeartbeatInterval", "value": "300"}),
        ("AuthorizationKey=a=b", {"key": "AuthorizationKey", "value": "a=b"}),
    ],
)
async def test_change_configuration(rig: Rig, value: str, sent: dict[str, str]) -> None:
    """ "Key=Value" becomes ChangeConfiguration with that key and value; the answer is the status."""
    rig.charger.answers["ChangeConfiguration"] = "RebootRequired"
    assert await rig.call(CHANGE_CONFIGURATION, value) == (("ChangeConfiguration", sent), "RebootRequired")


async def test_get_configuration_of_one_key(rig: Rig) -> None:
    """A key becomes GetConfiguration for that key; the value returned becomes `Configuration__<key>`."""
    entry = {"key": "HeartbeatInterval", "readonly": False, "value": "300"}
    rig.charger.replies["GetConfiguration"] = {"configuration_key": [entry]}
    call, status = await rig.call(GET_CONFIGURATION, "HeartbeatInterval")
    assert call == ("GetConfiguration", {"key": ["HeartbeatInterval"]})
    assert status == "Accepted"
    assert await rig.sensor(key("Configuration", "HeartbeatInterval")) == "300"


async def test_get_configuration_of_all_keys(rig: Rig) -> None:
    """ "" becomes GetConfiguration without keys; each key returned becomes a `Configuration__<key>` sensor."""
    rig.charger.replies["GetConfiguration"] = {
        "configuration_key": [
            {"key": "HeartbeatInterval", "readonly": False, "value": "300"},
            {"key": "MeterValueSampleInterval", "readonly": False, "value": "60"},
            {"key": "AuthorizationKey", "readonly": False},  # write-only: no value
        ]
    }
    call, status = await rig.call(GET_CONFIGURATION, "")
    assert call == ("GetConfiguration", {})
    assert status == "Accepted"
    assert await rig.sensor(key("Configuration", "HeartbeatInterval")) == "300"
    assert await rig.sensor(key("Configuration", "MeterValueSampleInterval")) == "60"
    assert await rig.sensor(key("Configuration", "AuthorizationKey")) is None


# -- charging profiles and schedules ----------------------------------------------------


@pytest.mark.parametrize(("actuator_key", "connector_id"), [(CLEAR_0, 0), (CLEAR_1, 1)])
async def test_clear_charging_profile(rig: Rig, actuator_key: str, connector_id: int) -> None:
    """Any value becomes ClearChargingProfile for every profile on connector <c>; the answer is the status."""
    rig.charger.answers["ClearChargingProfile"] = "Unknown"
    call, status = await rig.call(actuator_key, True)
    assert call == ("ClearChargingProfile", {"connector_id": connector_id})
    assert status == "Unknown"


@pytest.mark.parametrize("duration", [3600, "900"])
async def test_get_composite_schedule(rig: Rig, duration: Any) -> None:
    """A duration in s becomes GetCompositeSchedule; the answer becomes `CompositeSchedule__<c>__...` sensors."""
    periods = [
        {"start_period": 0, "limit": 16.0},
        {"start_period": 1800, "limit": 10.0, "number_phases": 3},
    ]
    rig.charger.replies["GetCompositeSchedule"] = {
        "connector_id": 1,
        "schedule_start": "2026-11-21T10:00:00Z",
        "charging_schedule": {
            "duration": 3600,
            "charging_rate_unit": "A",
            "charging_schedule_period": periods,
            "min_charging_rate": 6.0,
        },
    }
    call, status = await rig.call(COMPOSITE_1, duration)
    sensors = {name: await rig.sensor(key("CompositeSchedule", 1, name)) for name in COMPOSITE_FIELDS}
    assert call == ("GetCompositeSchedule", {"connector_id": 1, "duration": int(duration)})
    assert status == "Accepted"
    assert {name: v for name, v in sensors.items() if name != "periods"} == {
        "status": "Accepted",
        "schedule_start": "2026-11-21T10:00:00Z",
        "duration": 3600,
        "charging_rate_unit": "A",
        "min_charging_rate": 6.0,
        "limit": 16.0,
    }
    assert json.loads(sensors["periods"]) == [
        {"startPeriod": 0, "limit": 16.0},
        {"startPeriod": 1800, "limit": 10.0, "numberPhases": 3},
    ]


# -- reservations -----------------------------------------------------------------------


async def test_reserve_now(settings_env: dict[str, str], probe: MqttProbe) -> None:
    """An id tag becomes ReserveNow with expiry now + OCPP_RESERVATION_EXPIRY; the reservation becomes sensors."""
    async with connector_with(settings_env, probe, OCPP_RESERVATION_EXPIRY="600") as rig:
        asked_at = datetime.now(UTC)
        (action, payload), status = await rig.call(RESERVE_1, "04A2B3C4D5E6F7")
        reservation = {name: await rig.sensor(key("Reservation", 1, name)) for name in RESERVATION_FIELDS}
        (_, other), _ = await rig.call(RESERVE_2, "04A2B3C4D5E6F7")
    assert (action, status) == ("ReserveNow", "Accepted")
    assert payload["connector_id"] == 1 and payload["id_tag"] == "04A2B3C4D5E6F7"
    assert payload["expiry_date"].endswith("Z")
    expiry = datetime.fromisoformat(payload["expiry_date"].replace("Z", "+00:00"))
    assert abs(expiry - (asked_at + timedelta(seconds=600))) < timedelta(seconds=WAIT_S)
    assert reservation == {
        "reservation_id": payload["reservation_id"],
        "id_tag": "04A2B3C4D5E6F7",
        "expiry_date": payload["expiry_date"],
        "status": "Accepted",
    }
    assert other["reservation_id"] != payload["reservation_id"]


async def test_cancel_reservation_names_the_open_one(rig: Rig) -> None:
    """Cancel sends CancelReservation for the reservation open on <c>; accepted, it is `Cancelled` and gone."""
    (_, on_1), _ = await rig.call(RESERVE_1, "TAG-1")
    (_, on_2), _ = await rig.call(RESERVE_2, "TAG-2")
    call, status = await rig.call(CANCEL_2, True)
    cancelled = await rig.sensor(key("Reservation", 2, "status"))
    again = await rig.refused(CANCEL_2, True)
    call_1, _ = await rig.call(CANCEL_1, True)
    assert call == ("CancelReservation", {"reservation_id": on_2["reservation_id"]})
    assert (status, cancelled) == ("Accepted", "Cancelled")
    assert again == "Failed: no reservation is open on connector 2"
    assert call_1 == ("CancelReservation", {"reservation_id": on_1["reservation_id"]})


async def test_cancel_reservation_without_one_open_fails(rig: Rig) -> None:
    """With no reservation open on <c> (none made, or the charger rejected it), cancel fails unsent."""
    none_made = await rig.refused(CANCEL_1, True)
    rig.charger.answers["ReserveNow"] = "Occupied"
    (action, _), status = await rig.call(RESERVE_1, "TAG-1")
    reserved = await rig.sensor(key("Reservation", 1, "status"))
    rejected = await rig.refused(CANCEL_1, True)
    assert (action, status, reserved) == ("ReserveNow", "Occupied", "Occupied")
    assert none_made == rejected == "Failed: no reservation is open on connector 1"


async def test_refused_cancellation_keeps_the_reservation(rig: Rig) -> None:
    """A CancelReservation the charger rejects leaves the reservation open: the next cancel names it again."""
    (_, reserved), _ = await rig.call(RESERVE_1, "TAG-1")
    rig.charger.answers["CancelReservation"] = "Rejected"
    first, first_status = await rig.call(CANCEL_1, True)
    second, _ = await rig.call(CANCEL_1, True)
    assert first_status == "Rejected"
    assert first == second == ("CancelReservation", {"reservation_id": reserved["reservation_id"]})


async def test_reservation_used_by_a_transaction(rig: Rig) -> None:
    """A StartTransaction naming the reservation makes it `Used`; there is nothing left to cancel."""
    (_, reserved), _ = await rig.call(RESERVE_1, "04A2B3C4D5E6F7")
    rig.set_mark()
    await send(rig.charger, "start_transaction", reservationId=reserved["reservation_id"])
    used = await rig.sensor(key("Reservation", 1, "status"))
    cancel = await rig.refused(CANCEL_1, True)
    assert used == "Used"
    assert cancel == "Failed: no reservation is open on connector 1"


# -- execute_data_transfer / execute_ocpp_call -----------------------------------------


async def test_data_transfer(rig: Rig) -> None:
    """JSON text with vendor_id, message_id and data becomes DataTransfer; the answer's data becomes a sensor."""
    rig.charger.replies["DataTransfer"] = {"data": "pong"}
    value = json.dumps({"vendor_id": "com.example", "message_id": "Ping", "data": "ping"})
    call, status = await rig.call(DATA_TRANSFER, value)
    data = await rig.sensor(key("execute_data_transfer", "data"))
    assert call == ("DataTransfer", {"vendor_id": "com.example", "message_id": "Ping", "data": "ping"})
    assert (status, data) == ("Accepted", "pong")


async def test_data_transfer_rejected_by_the_charger(rig: Rig) -> None:
    """A DataTransfer with only a vendor_id goes out as such; the charger's refusal is the status."""
    rig.charger.answers["DataTransfer"] = "UnknownVendorId"
    call, status = await rig.call(DATA_TRANSFER, '{"vendor_id": "org.unknown"}')
    assert call == ("DataTransfer", {"vendor_id": "org.unknown"})
    assert status == "UnknownVendorId"


async def test_ocpp_call_answer_becomes_the_response_sensor(rig: Rig) -> None:
    """A central-system action with its payload goes out as is; the whole answer is published as JSON text."""
    rig.charger.replies["GetLocalListVersion"] = {"list_version": 7}
    call, status = await rig.call(OCPP_CALL, '{"action": "GetLocalListVersion", "payload": {}}')
    response = await rig.sensor(key("execute_ocpp_call", "response"))
    assert call == ("GetLocalListVersion", {})
    assert status == "Accepted"
    assert json.loads(response) == {"listVersion": 7}


async def test_ocpp_call_with_a_camel_case_payload(rig: Rig) -> None:
    """The payload is sent in OCPP's camelCase; the answer's status is the status and the answer the response."""
    rig.charger.answers["ChangeAvailability"] = "Rejected"
    value = json.dumps({"action": "ChangeAvailability", "payload": {"connectorId": 2, "type": "Inoperative"}})
    call, status = await rig.call(OCPP_CALL, value)
    response = await rig.sensor(key("execute_ocpp_call", "response"))
    assert call == ("ChangeAvailability", {"connector_id": 2, "type": "Inoperative"})
    assert status == "Rejected"
    assert json.loads(response) == {"status": "Rejected"}


async def test_ocpp_call_of_clear_cache(rig: Rig) -> None:
    """ClearCache, which no other actuator sends, goes out through execute_ocpp_call."""
    call, status = await rig.call(OCPP_CALL, '{"action": "ClearCache", "payload": {}}')
    assert (call, status) == (("ClearCache", {}), "Accepted")


# -- refusals ---------------------------------------------------------------------------

NOT_A_LIMIT = "value must be a number >= 0 (A) or null"
NOT_AN_ID_TAG = "value must be an id tag"
NOT_KEY_VALUE = 'value must be "Key=Value"'
NOT_A_DURATION = "value must be a duration in whole seconds, 1..2147483647"
NOT_DATA_TRANSFER = "value must be JSON text of"
NOT_A_CS_ACTION = "action must be one a central system sends in OCPP 1.6"


@pytest.mark.parametrize(
    ("actuator_key", "value", "reason"),
    [
        (CURRENT, -1, NOT_A_LIMIT),
        (CURRENT, "sixteen", NOT_A_LIMIT),
        (CURRENT, True, NOT_A_LIMIT),
        (CURRENT, [16], NOT_A_LIMIT),
        (START_1, 42, NOT_AN_ID_TAG),
        (START_1, "", NOT_AN_ID_TAG),
        (START_1, "X" * 21, NOT_AN_ID_TAG),
        (STOP_1, True, "no transaction is active on connector 1"),
        (AVAILABILITY_1, "Broken", "value must be one of Operative, Inoperative"),
        (AVAILABILITY_1, None, "value must be one of Operative, Inoperative"),
        (RESET, "Medium", "value must be one of Soft, Hard"),
        (RESET, 1, "value must be one of Soft, Hard"),
        (UNLOCK_0, True, "no such actuator"),  # not offered on connector 0
        (CHANGE_CONFIGURATION, "HeartbeatInterval", NOT_KEY_VALUE),
        (CHANGE_CONFIGURATION, "=300", NOT_KEY_VALUE),
        (CHANGE_CONFIGURATION, 300, NOT_KEY_VALUE),
        (CHANGE_CONFIGURATION, "K" * 51 + "=1", "ChangeConfiguration payload breaks the OCPP 1.6 schema"),
        (GET_CONFIGURATION, 5, "value must be a configuration key"),
        (GET_CONFIGURATION, None, "value must be a configuration key"),
        (GET_CONFIGURATION, "K" * 51, "GetConfiguration payload breaks the OCPP 1.6 schema"),
        (COMPOSITE_1, 0, NOT_A_DURATION),
        (COMPOSITE_1, -60, NOT_A_DURATION),
        (COMPOSITE_1, 1.5, NOT_A_DURATION),
        (COMPOSITE_1, "soon", NOT_A_DURATION),
        (RESERVE_1, "", NOT_AN_ID_TAG),
        (RESERVE_1, 7, NOT_AN_ID_TAG),
        (RESERVE_1, "X" * 21, NOT_AN_ID_TAG),
        (CANCEL_1, True, "no reservation is open on connector 1"),
        (DATA_TRANSFER, "not json", NOT_DATA_TRANSFER),
        (DATA_TRANSFER, 5, NOT_DATA_TRANSFER),
        (DATA_TRANSFER, '{"message_id": "Ping"}', NOT_DATA_TRANSFER),
        (DATA_TRANSFER, '{"vendor_id": 5}', NOT_DATA_TRANSFER),
        (DATA_TRANSFER, json.dumps({"vendor_id": "v" * 256}), "DataTransfer payload breaks the OCPP 1.6 schema"),
        (OCPP_CALL, "not json", "value must be JSON text of"),
        (OCPP_CALL, '{"action": "Foo", "payload": {}}', NOT_A_CS_ACTION),
        (OCPP_CALL, '{"payload": {}}', NOT_A_CS_ACTION),
        (OCPP_CALL, '{"action": "Heartbeat", "payload": {}}', NOT_A_CS_ACTION),
        (
            OCPP_CALL,
            '{"action": "BootNotification", "payload": {"chargePointVendor": "A", "chargePointModel": "B"}}',
            NOT_A_CS_ACTION,
        ),
        (
            OCPP_CALL,
            '{"action": "StatusNotification", "payload": {"connectorId": 1, "errorCode": "NoError", '
            '"status": "Available"}}',
            NOT_A_CS_ACTION,
        ),
        (OCPP_CALL, '{"action": "Reset", "payload": ["Soft"]}', "payload must be a JSON object"),
        (OCPP_CALL, '{"action": "Reset", "payload": {"type": "Medium"}}', "Reset payload breaks the OCPP 1.6 schema"),
        (
            OCPP_CALL,
            '{"action": "Reset", "payload": {"type": "Soft", "extra": 1}}',
            "Reset payload breaks the OCPP 1.6 schema",
        ),
        (
            OCPP_CALL,
            '{"action": "ChangeAvailability", "payload": {"type": "Operative"}}',
            "ChangeAvailability payload breaks the OCPP 1.6 schema",
        ),
        (
            OCPP_CALL,
            '{"action": "ChangeAvailability", "payload": {"connectorId": "1", "type": "Operative"}}',
            "ChangeAvailability payload breaks the OCPP 1.6 schema",
        ),
    ],
    ids=[
        "current-negative",
        "current-not-a-number",
        "current-bool",
        "current-list",
        "start-not-text",
        "start-empty",
        "start-too-long",
        "stop-no-transaction",
        "availability-unknown",
        "availability-null",
        "reset-unknown",
        "reset-number",
        "unlock-connector-0",
        "change-configuration-no-equals",
        "change-configuration-no-key",
        "change-configuration-number",
        "change-configuration-key-too-long",
        "get-configuration-number",
        "get-configuration-null",
        "get-configuration-key-too-long",
        "composite-zero",
        "composite-negative",
        "composite-fraction",
        "composite-text",
        "reserve-empty",
        "reserve-number",
        "reserve-too-long",
        "cancel-none-open",
        "data-transfer-not-json",
        "data-transfer-number",
        "data-transfer-no-vendor",
        "data-transfer-vendor-not-text",
        "data-transfer-vendor-too-long",
        "ocpp-call-not-json",
        "ocpp-call-unknown-action",
        "ocpp-call-no-action",
        "ocpp-call-heartbeat",
        "ocpp-call-boot-notification",
        "ocpp-call-status-notification",
        "ocpp-call-payload-not-object",
        "ocpp-call-enum-outside-schema",
        "ocpp-call-extra-field",
        "ocpp-call-required-missing",
        "ocpp-call-wrong-type",
    ],
)
async def test_bad_values_are_refused_and_nothing_is_sent(rig: Rig, actuator_key: str, value: Any, reason: str) -> None:
    """A value of the wrong type or range, or one with nothing to act on, ends in `Failed: <reason>` unsent."""
    assert (await rig.refused(actuator_key, value)).startswith(f"Failed: {reason}")


# -- W <-> A for chargers that take only one unit ----------------------------------------


@pytest.mark.parametrize("rate_units", ["Current", "current"])
async def test_power_limit_goes_out_in_amperes_to_a_current_only_charger(rig: Rig, rate_units: str) -> None:
    """After BootNotification says only Current, W / (230 V x 3) rounded down to 0.1 A goes out in A."""
    await rig.boot(rate_units)
    (_, payload), status = await rig.call(POWER, 7360)  # 10.67 A
    (_, current), _ = await rig.call(CURRENT, 16)
    assert status == "Accepted"
    assert schedule(payload)[1:] == ("A", 10.6)
    assert schedule(current)[1:] == ("A", 16.0)


async def test_power_limit_uses_the_voltage_last_measured(rig: Rig) -> None:
    """The W -> A conversion divides by the phase voltage the charger last reported in MeterValues."""
    await rig.boot("Current")
    await rig.measure_voltage("250.0", "239.0")
    await rig.measure_voltage("240.0")
    (_, payload), _ = await rig.call(POWER, 11000)  # 11000 / 720 = 15.28 A
    assert schedule(payload)[1:] == ("A", 15.2)


async def test_power_limit_uses_charging_phases(settings_env: dict[str, str], probe: MqttProbe) -> None:
    """CHARGING_PHASES=1 converts W to A over one phase."""
    async with connector_with(settings_env, probe, CHARGING_PHASES="1") as rig:
        await rig.boot("Current")
        (_, payload), _ = await rig.call(POWER, 3695)  # 3695 / 230 = 16.07 A
    assert schedule(payload)[1:] == ("A", 16.0)


@pytest.mark.parametrize(
    ("volts", "amperes", "watts"),
    [(None, 16, 11040.0), ("240", 10, 7200.0)],
    ids=["default-230-V", "measured-240-V"],
)
async def test_current_limit_goes_out_in_watts_to_a_power_only_charger(
    rig: Rig, volts: str | None, amperes: float, watts: float
) -> None:
    """After BootNotification says only Power, A x voltage x 3 goes out in W; W limits go out unchanged."""
    await rig.boot("Power")
    if volts is not None:
        await rig.measure_voltage(volts)
    (_, payload), status = await rig.call(CURRENT, amperes)
    (_, power), _ = await rig.call(POWER, 7360)
    assert status == "Accepted"
    assert schedule(payload)[1:] == ("W", watts)
    assert schedule(power)[1:] == ("W", 7360.0)


@pytest.mark.parametrize("rate_units", ["Current,Power", None], ids=["both", "key-unknown"])
async def test_limits_go_out_as_given_when_the_charger_takes_both_or_does_not_say(
    rig: Rig, rate_units: str | None
) -> None:
    """A charger allowing Current and Power, or not naming its units, gets W as W and A as A."""
    await rig.boot(rate_units)
    (_, power), _ = await rig.call(POWER, 7360)
    (_, current), _ = await rig.call(CURRENT, 16)
    assert schedule(power)[1:] == ("W", 7360.0)
    assert schedule(current)[1:] == ("A", 16.0)


async def test_unbooted_charger_is_asked_for_its_rate_units_before_the_first_limit(rig: Rig) -> None:
    """A charger not booted since the start gets the rate-unit GetConfiguration once, before its first limit."""
    entry = {"key": RATE_UNIT, "readonly": True, "value": "Current"}
    rig.charger.replies["GetConfiguration"] = {"configuration_key": [entry]}
    (first_action, query), status = await rig.call(POWER, 7360)
    (action, payload) = await rig.charger.next_call()
    (_, second), _ = await rig.call(key("execute_send_charging_profile", 2), 11000)
    assert (first_action, query) == ("GetConfiguration", {"key": [RATE_UNIT]})
    assert (action, status) == ("SetChargingProfile", "Accepted")
    assert schedule(payload)[1:] == ("A", 10.6)
    assert schedule(second)[1:] == ("A", 15.9)


async def recv(link: RawLink) -> list[Any]:
    async with asyncio.timeout(WAIT_S):
        frame: list[Any] = json.loads(await link.connection.recv())
    return frame


def raw_limit(frame: list[Any]) -> tuple[str, str, Any]:
    """(action, rate unit, periods) of a SetChargingProfile frame as it went over the wire."""
    schedule = frame[3]["csChargingProfiles"]["chargingSchedule"]
    return frame[2], schedule["chargingRateUnit"], schedule["chargingSchedulePeriod"]


async def await_submitted(probe: MqttProbe, connector: RunningConnector, actuator_key: str, value: Any) -> None:
    """Publish a limit and wait until the connector logged that it took the command in."""
    since = len(probe.messages)
    probe.publish(command_topic(connector, actuator_key), command(value))
    submitted = f"{CP}: {actuator_key} -> SetChargingProfile"
    await probe.wait_for(connector.topic("logs"), lambda p: p["msg"] == submitted, since=since)


CURRENT_ONLY = json.dumps({"configurationKey": [{"key": RATE_UNIT, "readonly": True, "value": "Current"}]})


async def test_limit_arriving_while_the_boot_query_is_unanswered_waits_for_its_answer(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """A W limit that arrives before the charger answered the post-boot rate-unit query still goes out in A."""
    await wire_all(probe, connector)
    async with RawLink(connector.url, CP) as link:
        await link.exchange('[2,"s","StatusNotification",{"connectorId":1,"errorCode":"NoError","status":"Available"}]')
        await link.exchange('[2,"b","BootNotification",{"chargePointVendor":"ABB","chargePointModel":"Terra AC"}]')
        query = await recv(link)
        assert query[2:] == ["GetConfiguration", {"key": [RATE_UNIT]}]
        await await_submitted(probe, connector, POWER, 7360)
        await link.connection.send(f'[3,"{query[1]}",{CURRENT_ONLY}]')
        limit = await recv(link)
        await link.connection.send(json.dumps([3, limit[1], {"status": "Accepted"}]))
        await probe.wait_value(sensor_topic(connector, f"{POWER}__status"), "Accepted")
    assert raw_limit(limit) == ("SetChargingProfile", "A", [{"startPeriod": 0, "limit": 10.6}])


async def test_limits_arriving_while_the_first_limit_query_is_unanswered_wait_for_its_answer(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """On a charger not booted yet, a second W limit sent while the rate-unit query is pending goes out in A too."""
    await wire_all(probe, connector)
    second_key = key("execute_send_charging_profile", 2)
    async with RawLink(connector.url, CP) as link:
        for c in (1, 2):
            await link.exchange(
                f'[2,"s{c}","StatusNotification",{{"connectorId":{c},"errorCode":"NoError","status":"Available"}}]'
            )
        probe.publish(command_topic(connector, POWER), command(7360))
        query = await recv(link)
        assert query[2:] == ["GetConfiguration", {"key": [RATE_UNIT]}]
        await await_submitted(probe, connector, second_key, 11000)
        await link.connection.send(f'[3,"{query[1]}",{CURRENT_ONLY}]')
        limits = []
        for _ in range(2):
            limits.append(await recv(link))
            await link.connection.send(json.dumps([3, limits[-1][1], {"status": "Accepted"}]))
        await probe.wait_value(sensor_topic(connector, f"{second_key}__status"), "Accepted")
    by_connector = {frame[3]["connectorId"]: raw_limit(frame) for frame in limits}
    assert by_connector == {
        1: ("SetChargingProfile", "A", [{"startPeriod": 0, "limit": 10.6}]),
        2: ("SetChargingProfile", "A", [{"startPeriod": 0, "limit": 15.9}]),
    }


# -- the rate-unit read, once per boot -------------------------------------------------


def rate_unit_warnings(rig: Rig) -> list[str]:
    """The WARNINGs on N/logs that the rate units could not be read."""
    logs = rig.probe.on(rig.connector.topic("logs"))
    return [p["msg"] for p in logs if p["level"] == 30 and f"could not read {RATE_UNIT}" in p["msg"]]


async def test_limits_reach_a_charger_that_never_answers_the_rate_unit_read(
    settings_env: dict[str, str], probe: MqttProbe
) -> None:
    """The first limit goes out as given once the read timed out, the second without another read, said once."""
    async with connector_with(settings_env, probe, OCPP_RESPONSE_TIMEOUT="0.5") as rig:
        rig.charger.silent.add("GetConfiguration")
        first = await rig.run(POWER, 7360)
        calls = [await rig.charger.next_call(), await rig.charger.next_call()]
        second = await rig.run(key("execute_send_charging_profile", 2), 11000)
        second_call = await rig.charger.next_call()
    assert first == second == "Accepted"
    assert calls[0] == ("GetConfiguration", {"key": [RATE_UNIT]})
    assert calls[1][0] == "SetChargingProfile" and schedule(calls[1][1])[1:] == ("W", 7360.0)
    assert second_call[0] == "SetChargingProfile" and schedule(second_call[1])[1:] == ("W", 11000.0)
    [warning] = rate_unit_warnings(rig)
    assert warning.startswith(f"{CP}: could not read {RATE_UNIT} (no answer within 0.5 s)")


async def test_a_limit_behind_an_unanswered_boot_read_goes_out(settings_env: dict[str, str], probe: MqttProbe) -> None:
    """A limit queued behind the post-boot read that times out is sent as given, not failed as left unanswered."""
    async with connector_with(settings_env, probe, OCPP_RESPONSE_TIMEOUT="2") as rig:
        rig.charger.silent.add("GetConfiguration")
        await send(rig.charger, "boot_notification_minimal")
        query = await rig.charger.next_call()
        await await_submitted(probe, rig.connector, POWER, 7360)  # while the read waits for its answer
        status = await rig.sensor(f"{POWER}__status")
        action, payload = await rig.charger.next_call()
    assert query == ("GetConfiguration", {"key": [RATE_UNIT]})
    assert (action, status) == ("SetChargingProfile", "Accepted")
    assert schedule(payload)[1:] == ("W", 7360.0)
    assert len(rate_unit_warnings(rig)) == 1


async def test_the_rate_units_are_read_again_after_the_next_boot(
    settings_env: dict[str, str], probe: MqttProbe
) -> None:
    """After a read that timed out, the next BootNotification reads the units again and limits follow the answer."""
    async with connector_with(settings_env, probe, OCPP_RESPONSE_TIMEOUT="0.5") as rig:
        rig.charger.silent.add("GetConfiguration")
        await rig.call(POWER, 7360)  # the read, unanswered
        await rig.charger.next_call()  # the limit, as given
        rig.charger.silent.clear()
        await rig.boot("Current")
        (action, payload), status = await rig.call(POWER, 7360)
    assert (action, status) == ("SetChargingProfile", "Accepted")
    assert schedule(payload)[1:] == ("A", 10.6)


async def test_a_charger_refusing_the_rate_unit_read_is_asked_once(rig: Rig) -> None:
    """A charger answering the read with a CALLERROR is asked once: later limits go out as given, said once."""
    (_, first), _ = await rig.call(POWER, 7360)  # the harness answers GetConfiguration with NotImplemented
    (_, second), _ = await rig.call(CURRENT, 16)
    assert (schedule(first)[1:], schedule(second)[1:]) == (("W", 7360.0), ("A", 16.0))
    [warning] = rate_unit_warnings(rig)
    assert "CALLERROR NotImplemented" in warning
