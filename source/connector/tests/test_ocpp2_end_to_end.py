"""OCPP 2.0.1 and 2.1 end to end (INTERFACE.md 8): the ocpp library's 2.x stations over real
WebSockets, a real mosquitto, the connector in between.

Each test runs for both versions where the rule is the same: a 2.0.1 and a 2.1 station are
connected, metered, limited and started or stopped through MQTT exactly as a 1.6 charger is.
"""

from __future__ import annotations

from typing import Any

import pytest

from connector.tests.conftest import RunningConnector, command, map_datapoints, wire
from connector.tests.harness import MqttProbe
from connector.tests.harness_ocpp2 import (
    RawStation,
    StationLink,
    boot,
    dumps,
    energy,
    meter_values,
    rate_unit_answer,
    sample,
    status,
    transaction_event,
)

VERSIONS = ["2.0.1", "2.1"]


def cp_for(version: str) -> str:
    return f"CP_{version.replace('.', '')}"


async def started(station: Any, probe: MqttProbe, connector: RunningConnector, evse: int = 1) -> None:
    """Boot (the connector's rate-unit read answered "A,W"), then EVSE `evse` reports Available."""
    station.replies["GetVariables"] = rate_unit_answer("A,W")
    answer = await station.send("BootNotification", boot())
    assert answer["status"] == "Accepted"
    action, payload = await station.next_call()
    assert action == "GetVariables"
    assert payload["getVariableData"][0]["component"]["name"] == "SmartChargingCtrlr"
    assert payload["getVariableData"][0]["variable"]["name"] == "RateUnit"
    await station.send("StatusNotification", status(evse))


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_station_is_served_in_its_version_and_says_so(
    version: str, connector: RunningConnector, probe: MqttProbe
) -> None:
    """A station offering its 2.x subprotocol gets it, and `<cp>__ocpp_version` and `connected` say so."""
    cp = cp_for(version)
    await map_datapoints(
        probe,
        connector,
        {
            f"{cp}__ocpp_version": f"{connector.name}/t/version",
            f"{cp}__connected": f"{connector.name}/t/connected",
            f"{cp}__Heartbeat": f"{connector.name}/t/hb",
        },
        {},
    )
    async with StationLink(connector.url, cp, version) as station:
        assert station._connection.subprotocol == f"ocpp{version}"
        await probe.wait_value(f"{connector.name}/t/version", version)
        await probe.wait_value(f"{connector.name}/t/connected", True)
        answer = await station.send("Heartbeat", {})
        assert answer["currentTime"].endswith("Z")
        await probe.wait_for(f"{connector.name}/t/hb", lambda p: isinstance(p["value"], int))


@pytest.mark.parametrize("version", VERSIONS)
async def test_boot_and_meter_values_keep_the_16_key_shapes(
    version: str, connector: RunningConnector, probe: MqttProbe
) -> None:
    """Boot fields and MeterValues reach MQTT under the keys of section 8, unit and multiplier applied."""
    cp = cp_for(version)
    sensors = {
        f"{cp}__BootNotification__vendor_name": f"{connector.name}/t/vendor",
        f"{cp}__BootNotification__firmware_version": f"{connector.name}/t/fw",
        f"{cp}__BootNotification__reason": f"{connector.name}/t/reason",
        f"{cp}__MeterValues__1__Energy.Active.Import.Register__Wh": f"{connector.name}/t/energy",
        f"{cp}__MeterValues__1__Power.Active.Import__W": f"{connector.name}/t/power",
        f"{cp}__MeterValues__1__Current.Import__L1__A": f"{connector.name}/t/current",
        f"{cp}__StatusNotification__1__1__connector_status": f"{connector.name}/t/status",
    }
    await map_datapoints(probe, connector, sensors, {})
    async with StationLink(connector.url, cp, version) as station:
        await started(station, probe, connector)
        await probe.wait_value(f"{connector.name}/t/vendor", "Example")
        await probe.wait_value(f"{connector.name}/t/fw", "2.0.1-a")
        await probe.wait_value(f"{connector.name}/t/reason", "PowerUp")
        await probe.wait_value(f"{connector.name}/t/status", "Available")
        values = meter_values(
            1,
            sample(12.5, "Energy.Active.Import.Register", "kWh", multiplier=0),
            sample(11, "Power.Active.Import", "W", multiplier=3),
            sample(16.0, "Current.Import", "A", phase="L1"),
        )
        await station.send("MeterValues", values)
        await probe.wait_value(f"{connector.name}/t/power", 11000)
        await probe.wait_value(f"{connector.name}/t/current", 16.0)
        # No unitOfMeasure: Wh, the 1.6 default; no measurand: the energy register.
        await station.send("MeterValues", meter_values(1, sample(1234)))
        await probe.wait_value(f"{connector.name}/t/energy", 1234)


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_transaction_is_published_once_per_seq_no_with_its_energy(
    version: str, connector: RunningConnector, probe: MqttProbe
) -> None:
    """Started, a repeated Updated, Ended: the transaction keys of 1.6, nothing twice, energy from the register."""
    cp = cp_for(version)
    prefix = f"{cp}__Transaction__1__"
    fields = ("active", "transaction_id", "id_tag", "meter_start", "meter_stop", "energy", "stop_reason")
    await map_datapoints(probe, connector, {prefix + f: f"{connector.name}/t/{f}" for f in fields}, {})
    token = {"idToken": "04A2B3C4", "type": "ISO14443"}
    async with StationLink(connector.url, cp, version) as station:
        await started(station, probe, connector)
        answer = await station.send(
            "TransactionEvent", transaction_event("Started", 0, "tx-1", idToken=token, meterValue=energy(1000))
        )
        assert answer["idTokenInfo"]["status"] == "Accepted"
        await probe.wait_value(f"{connector.name}/t/active", True)
        await probe.wait_value(f"{connector.name}/t/transaction_id", "tx-1")
        await probe.wait_value(f"{connector.name}/t/id_tag", "04A2B3C4")
        await probe.wait_value(f"{connector.name}/t/meter_start", 1000)
        updated = transaction_event("Updated", 1, "tx-1", chargingState="Charging")
        await station.send("TransactionEvent", updated)
        await station.send("TransactionEvent", updated)  # re-sent after a lost answer
        ended = transaction_event(
            "Ended",
            2,
            "tx-1",
            evse=None,
            stoppedReason="EVDisconnected",
            meterValue=energy(8500, context="Transaction.End"),
        )
        await station.send("TransactionEvent", ended)
        await probe.wait_value(f"{connector.name}/t/active", False)
        await probe.wait_value(f"{connector.name}/t/meter_stop", 8500)
        await probe.wait_value(f"{connector.name}/t/energy", 7500)
        await probe.wait_value(f"{connector.name}/t/stop_reason", "EVDisconnected")
    assert [p["value"] for p in probe.on(f"{connector.name}/t/active")].count(True) == 1


@pytest.mark.parametrize("version", VERSIONS)
async def test_limits_reach_the_station_as_tx_default_profiles_on_the_evse(
    version: str, connector: RunningConnector, probe: MqttProbe
) -> None:
    """A W limit becomes SetChargingProfile on evseId 1 in the unit the station takes; null clears that profile."""
    cp = cp_for(version)
    power = f"{cp}__execute_send_charging_profile__1"
    async with StationLink(connector.url, cp, version) as station:
        station.replies["GetVariables"] = rate_unit_answer("A")
        await station.send("BootNotification", boot())
        assert (await station.next_call())[0] == "GetVariables"
        await station.send("StatusNotification", status(1))
        cmd, state = (await wire(probe, connector, power))[power]
        since = len(probe.messages)
        probe.publish(cmd, command(11040))
        action, payload = await station.next_call()
        await probe.wait_for(state, lambda p: p["value"] == "Accepted", since=since)
        assert action == "SetChargingProfile"
        assert payload["evseId"] == 1
        profile = payload["chargingProfile"]
        assert profile["chargingProfilePurpose"] == "TxDefaultProfile"
        schedule = profile["chargingSchedule"][0]
        assert schedule["chargingRateUnit"] == "A"
        assert schedule["chargingSchedulePeriod"][0]["limit"] == 16.0  # 11040 W / (230 V x 3)
        since = len(probe.messages)
        probe.publish(cmd, command(None))
        action, payload = await station.next_call()
        await probe.wait_for(state, lambda p: p["value"] == "Accepted", since=since)
        assert action == "ClearChargingProfile"
        assert payload["chargingProfileId"] == profile["id"]


@pytest.mark.parametrize("version", VERSIONS)
async def test_remote_start_and_stop_use_the_versions_messages(
    version: str, connector: RunningConnector, probe: MqttProbe
) -> None:
    """Remote start is RequestStartTransaction (idToken Central, remoteStartId); stop names the running transaction."""
    cp = cp_for(version)
    start, stop = f"{cp}__execute_remote_start_transaction__1", f"{cp}__execute_remote_stop_transaction__1"
    async with StationLink(connector.url, cp, version) as station:
        await started(station, probe, connector)
        topics = await wire(probe, connector, start, stop)
        since = len(probe.messages)
        probe.publish(topics[start][0], command("04A2B3C4"))
        action, payload = await station.next_call()
        await probe.wait_for(topics[start][1], lambda p: p["value"] == "Accepted", since=since)
        assert action == "RequestStartTransaction"
        assert payload["idToken"] == {"idToken": "04A2B3C4", "type": "Central"}
        assert payload["evseId"] == 1
        remote_start_id = payload["remoteStartId"]
        token = {"idToken": "04A2B3C4", "type": "Central"}
        event = transaction_event(
            "Started", 0, "tx-9", idToken=token, remoteStartId=remote_start_id, triggerReason="RemoteStart"
        )
        await station.send("TransactionEvent", event)
        since = len(probe.messages)
        probe.publish(topics[stop][0], command(True))
        action, payload = await station.next_call()
        await probe.wait_for(topics[stop][1], lambda p: p["value"] == "Accepted", since=since)
        assert (action, payload) == ("RequestStopTransaction", {"transactionId": "tx-9"})


async def test_one_map_drives_a_charger_on_16_and_then_on_201(connector: RunningConnector, probe: MqttProbe) -> None:
    """The same datapoint map serves a charger before and after its firmware moves it from 1.6 to 2.0.1."""
    from connector.tests.harness import ChargerLink, send

    cp = "CP_UPGRADE"
    energy_key = f"{cp}__MeterValues__1__Power.Active.Import__W"
    power = f"{cp}__execute_send_charging_profile__1"
    await map_datapoints(
        probe,
        connector,
        {
            energy_key: f"{connector.name}/t/power",
            f"{cp}__ocpp_version": f"{connector.name}/t/version",
            f"{power}__status": f"{connector.name}/t/limit_status",
        },
        {f"{connector.name}/t/limit": power},
    )
    async with ChargerLink(connector.url, cp) as charger:
        await send(charger, "boot_notification_minimal")
        await send(charger, "status_available")
        sampled = [
            {
                "timestamp": "2026-12-04T10:00:00Z",
                "sampledValue": [{"value": "7000", "measurand": "Power.Active.Import", "unit": "W"}],
            }
        ]
        await send(charger, "meter_values_defaults", connectorId=1, meterValue=sampled)
        await probe.wait_value(f"{connector.name}/t/power", 7000)
        await probe.wait_value(f"{connector.name}/t/version", "1.6")
        since = len(probe.messages)
        probe.publish(f"{connector.name}/t/limit", command(11000))
        assert (await charger.next_call())[0] == "SetChargingProfile"
        await probe.wait_for(f"{connector.name}/t/limit_status", lambda p: p["value"] == "Accepted", since=since)
    async with StationLink(connector.url, cp, "2.0.1") as station:
        await started(station, probe, connector)
        await probe.wait_value(f"{connector.name}/t/version", "2.0.1")
        await station.send("MeterValues", meter_values(1, sample(9000, "Power.Active.Import", "W")))
        await probe.wait_value(f"{connector.name}/t/power", 9000)
        since = len(probe.messages)
        probe.publish(f"{connector.name}/t/limit", command(7000))
        assert (await station.next_call())[0] == "SetChargingProfile"
        await probe.wait_for(f"{connector.name}/t/limit_status", lambda p: p["value"] == "Accepted", since=since)


@pytest.mark.parametrize("version", VERSIONS)
async def test_bad_frames_get_the_versions_error_codes(version: str, connector: RunningConnector) -> None:
    """2.x spells its errors its own way: FormatViolation, OccurrenceConstraintViolation; the session goes on."""
    async with RawStation(connector.url, cp_for(version), version) as raw:
        answer = await raw.exchange(dumps([2, "a", "Heartbeat", "not an object"]))
        assert answer[:3] == [4, "a", "FormatViolation"]
        answer = await raw.exchange(dumps([2, "b", "StatusNotification", {"evseId": 1, "connectorId": 1}]))
        assert answer[:3] == [4, "b", "OccurrenceConstraintViolation"]
        answer = await raw.exchange(dumps([2, "c", "NoSuchAction", {}]))
        assert answer[:3] == [4, "c", "NotImplemented"]
        answer = await raw.exchange(dumps([2, "d", "RequestStartTransaction", {}]))
        assert answer[:3] == [4, "d", "NotSupported"]
        answer = await raw.exchange(dumps([2, "e", "Heartbeat", {}]))
        assert answer[:2] == [3, "e"]


async def test_a_21_send_frame_gets_no_answer_and_a_result_error_is_logged(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """2.1's SEND (type 6) is never answered; its CALLRESULTERROR (type 5) is logged; the session goes on."""
    since = len(probe.messages)
    async with RawStation(connector.url, "CP_21_RAW", "2.1") as raw:
        await raw.connection.send(
            dumps(
                [
                    6,
                    "s1",
                    "NotifyPeriodicEventStream",
                    {"id": 1, "pending": 0, "basetime": "2026-12-04T10:00:00Z", "data": []},
                ]
            )
        )
        await raw.connection.send(dumps([5, "r1", "InternalError", "could not take that answer", {}]))
        answer = await raw.exchange(dumps([2, "h", "Heartbeat", {}]))
        assert answer[:2] == [3, "h"]  # the first frame back answers the Heartbeat: nothing answered the SEND
    await probe.wait_for(
        connector.topic("logs"),
        lambda p: "could not use our answer r1" in p["msg"] and "InternalError" in p["msg"],
        since=since,
    )


async def test_a_21_request_our_answer_cannot_echo_is_refused_by_name(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """A vatNumber beyond 2.1's 20 characters would make our echoing answer invalid: a CALLERROR, logged."""
    since = len(probe.messages)
    async with RawStation(connector.url, "CP_21_VAT", "2.1") as raw:
        answer = await raw.exchange(dumps([2, "v", "VatNumberValidation", {"vatNumber": "DE" + "1" * 40}]))
        assert answer[:3] == [4, "v", "PropertyConstraintViolation"]
        assert "vatNumber" in answer[3]
        answer = await raw.exchange(dumps([2, "w", "VatNumberValidation", {"vatNumber": "DE123456789"}]))
        assert answer[:2] == [3, "w"] and answer[2]["status"] == "Rejected"
    await probe.wait_for(
        connector.topic("logs"),
        lambda p: "refused VatNumberValidation" in p["msg"] and "cannot echo" in p["msg"],
        since=since,
    )
