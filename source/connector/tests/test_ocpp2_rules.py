"""Every rule of INTERFACE.md section 8 over real WebSockets, where test_ocpp2_end_to_end.py,
test_negotiation.py and test_compression.py leave one untested; and sections 6 and 7
(security profiles 1-3, the allow-list, the limits, bad input) shown for OCPP 2.0.1 stations.

The ocpp library's 2.x stations (harness_ocpp2.py) where a station behaves, raw 2.x frames where
it must not; a real mosquitto and the connector in process, restarted on the same STATE_DIR
where a rule is about restarts.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trustme
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from connector.actuators import ACTUATORS
from connector.tests.conftest import RunningConnector, command, map_datapoints, start_connector, wire
from connector.tests.harness import WAIT_S, ChargerLink, MqttProbe, send
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
from connector.tests.test_security import basic, client_context, profile_3, write_tls_files

Start = Callable[..., Awaitable[RunningConnector]]
PASSWORDS = {"CP_201": "s3cret-201", "CP_OTHER": "other-pw"}


@pytest.fixture
async def start(settings_env: dict[str, str], probe: MqttProbe) -> AsyncIterator[Start]:
    """Start connectors with settings added to the test's; each still running is stopped at the end."""
    running: list[RunningConnector] = []

    async def start_with(**settings: str) -> RunningConnector:
        connector = await start_connector({**settings_env, **settings}, probe)
        running.append(connector)
        return connector

    yield start_with
    for connector in running:
        if not connector.task.done():
            await connector.stop()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_files(ca: trustme.CA, tmp_path: Path) -> dict[str, str]:
    return write_tls_files(ca, tmp_path)


async def heartbeat_answered(station: Any) -> None:
    answer = await station.send("Heartbeat", {})
    assert answer["currentTime"].endswith("Z")


async def logged(probe: MqttProbe, running: RunningConnector, *texts: str, since: int = 0) -> None:
    """Until each of `texts` is part of a line on the logs topic (from message number `since` on)."""

    def lines() -> list[str]:
        return [p["msg"] for t, p, _ in probe.messages[since:] if t == running.topic("logs")]

    await probe.wait_until(lambda: all(any(text in line for line in lines()) for text in texts))


async def log_line(probe: MqttProbe, running: RunningConnector, text: str, since: int = 0) -> str:
    found = await probe.wait_for(running.topic("logs"), lambda p: text in p["msg"], since=since)
    return str(found["msg"])


async def wire_with(
    probe: MqttProbe, running: RunningConnector, sensors: dict[str, str], *keys: str
) -> dict[str, tuple[str, str]]:
    """conftest.wire's map (each actuator key a command topic, its status a sensor) with more sensors in it:
    a map replaces the last one whole."""
    topics = {k: (running.topic(f"cmd/{k}"), running.topic(f"status/{k}")) for k in keys}
    statuses = {f"{k}__status": status for k, (_, status) in topics.items()}
    await map_datapoints(probe, running, {**sensors, **statuses}, {cmd: k for k, (cmd, _) in topics.items()})
    return topics


# -- versions, negotiation ------------------------------------------------------------------


async def test_a_charger_moving_from_16_to_201_to_21_is_served_in_each(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """One identity connecting in 1.6, then 2.0.1, then 2.1 is served in each (that version's messages and
    error codes), and `<cp>__ocpp_version` follows it."""
    cp, version = "CP_MOVES", connector.topic("t/version")
    await map_datapoints(probe, connector, {f"{cp}__ocpp_version": version}, {})
    async with ChargerLink(connector.url, cp) as charger:
        assert (await send(charger, "boot_notification")).status == "Accepted"
        await probe.wait_value(version, "1.6")
    async with RawStation(connector.url, cp, "2.0.1") as raw:
        await probe.wait_value(version, "2.0.1")
        # 1.6's StartTransaction is no 2.0.1 message; a 2.0.1 payload error is spelt the 2.0.1 way.
        assert (await raw.exchange(dumps([2, "s", "StartTransaction", {}])))[:3] == [4, "s", "NotImplemented"]
        assert (await raw.exchange(dumps([2, "f", "Heartbeat", []])))[:3] == [4, "f", "FormatViolation"]
        answer = await raw.exchange(dumps([2, "b", "BootNotification", boot()]))
        assert answer[:2] == [3, "b"] and answer[2]["status"] == "Accepted"
    async with StationLink(connector.url, cp, "2.1") as station:
        await probe.wait_value(version, "2.1")
        await heartbeat_answered(station)
    versions = [p["value"] for p in probe.on(version)]
    assert versions == ["1.6", "2.0.1", "2.1"]


async def test_a_handshake_offering_only_switched_off_protocols_is_refused(start: Start, probe: MqttProbe) -> None:
    """With OCPP_PROTOCOLS=ocpp2.0.1,ocpp1.6 a station offering only ocpp2.1 gets HTTP 400; one offering
    ocpp2.1 then ocpp2.0.1 is served in 2.0.1."""
    running = await start(OCPP_PROTOCOLS="ocpp2.0.1,ocpp1.6")
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(f"{running.url}/CP_21", subprotocols=[Subprotocol("ocpp2.1")], open_timeout=WAIT_S)
    assert refused.value.response.status_code == 400
    log = await log_line(probe, running, "CP_21: refused handshake")
    assert "ocpp2.1" in log and "OCPP_PROTOCOLS is ocpp2.0.1,ocpp1.6" in log
    async with StationLink(running.url, "CP_21", "2.0.1", subprotocols=["ocpp2.1", "ocpp2.0.1"]) as station:
        assert station._connection.subprotocol == "ocpp2.0.1"
        await heartbeat_answered(station)


# -- security profiles 1-3 and the allow-list, for 2.0.1 ------------------------------------


def credentials(cp: str, password: str) -> dict[str, Any]:
    return {"additional_headers": {"Authorization": basic(cp, password)}}


async def refused_status(url: str, cp: str, **options: Any) -> int:
    """The HTTP status a 2.0.1 handshake to `url` is refused with."""
    with pytest.raises(InvalidStatus) as refused:
        async with StationLink(url, cp, "2.0.1", **options):
            pass
    return refused.value.response.status_code


async def test_profile_1_and_the_allow_list_hold_for_201(start: Start, probe: MqttProbe) -> None:
    """HTTP Basic (user = identity) admits a 2.0.1 station with its password; a wrong or missing one gets 401,
    an identity outside OCPP_ALLOWED_CHARGE_POINTS 403, before the WebSocket opens."""
    running = await start(OCPP_BASIC_AUTH=json.dumps(PASSWORDS), OCPP_ALLOWED_CHARGE_POINTS="CP_201,CP_OTHER")
    assert await refused_status(running.url, "CP_201", **credentials("CP_201", "wrong")) == 401
    assert await refused_status(running.url, "CP_201") == 401
    assert await refused_status(running.url, "CP_STRANGER", **credentials("CP_STRANGER", "x")) == 403
    async with StationLink(running.url, "CP_201", "2.0.1", **credentials("CP_201", "s3cret-201")) as station:
        assert (await station.send("BootNotification", boot()))["status"] == "Accepted"
    logs = [p["msg"] for p in probe.on(running.topic("logs"))]
    assert "CP_STRANGER: refused: not in OCPP_ALLOWED_CHARGE_POINTS" in logs
    assert not any("s3cret" in line for line in logs)


async def test_profile_2_serves_a_201_station_over_tls_with_its_password(
    start: Start,
    tls_files: dict[str, str],
    ca: trustme.CA,
) -> None:
    """TLS and HTTP Basic: a 2.0.1 station with its password is served over wss://, a wrong password gets 401."""
    running = await start(
        OCPP_TLS_CERT_FILE=tls_files["cert"], OCPP_TLS_KEY_FILE=tls_files["key"], OCPP_BASIC_AUTH=json.dumps(PASSWORDS)
    )
    url = f"wss://127.0.0.1:{running.service.dispatcher.port}"
    tls: dict[str, Any] = {"ssl": client_context(ca, False)}
    assert await refused_status(url, "CP_201", **tls, **credentials("CP_201", "s3cret-202")) == 401
    async with StationLink(url, "CP_201", "2.0.1", **tls, **credentials("CP_201", "s3cret-201")) as station:
        assert station._connection.subprotocol == "ocpp2.0.1"
        await heartbeat_answered(station)


async def test_profile_3_serves_a_201_station_with_a_client_certificate(
    start: Start,
    settings_env: dict[str, str],
    tls_files: dict[str, str],
    ca: trustme.CA,
) -> None:
    """Client certificate from the CA plus HTTP Basic: served in 2.0.1; without a certificate the TLS handshake
    fails; with one but a wrong password, 401."""
    env = profile_3(settings_env, tls_files)
    running = await start(**env, OCPP_BASIC_AUTH=json.dumps(PASSWORDS))
    url = f"wss://127.0.0.1:{running.service.dispatcher.port}"
    with pytest.raises((OSError, websockets.exceptions.InvalidMessage)):
        async with StationLink(url, "CP_201", "2.0.1", ssl=client_context(ca, False)) as station:
            await heartbeat_answered(station)
    certified: dict[str, Any] = {"ssl": client_context(ca, True)}
    assert await refused_status(url, "CP_201", **certified, **credentials("CP_201", "wrong")) == 401
    async with StationLink(url, "CP_201", "2.0.1", **certified, **credentials("CP_201", "s3cret-201")) as station:
        assert (await station.send("BootNotification", boot()))["status"] == "Accepted"


# -- limits and bad input (section 7), for 2.0.1 --------------------------------------------


async def closed_with(connection: websockets.ClientConnection) -> int | None:
    async with asyncio.timeout(WAIT_S):
        await connection.wait_closed()
    return connection.close_code


async def another_station_served(running: RunningConnector) -> None:
    async with StationLink(running.url, "CP_BYSTANDER", "2.0.1") as station:
        await heartbeat_answered(station)


async def test_a_201_frame_beyond_the_size_limit_is_closed_1009(start: Start, probe: MqttProbe) -> None:
    """OCPP_MAX_FRAME_SIZE cuts a 2.0.1 station off with 1009; a frame within it was answered; others go on."""
    running = await start(OCPP_MAX_FRAME_SIZE="2048")
    async with RawStation(running.url, "CP_BIG") as raw:
        fits = dumps([2, "ok", "DataTransfer", {"vendorId": "V", "data": "x" * 1900}])
        answer = await raw.exchange(fits)
        assert answer[:2] == [3, "ok"] and answer[2]["status"] == "UnknownVendorId"
        await raw.connection.send(dumps([2, "big", "DataTransfer", {"vendorId": "V", "data": "x" * 4000}]))
        assert await closed_with(raw.connection) == 1009
    assert "OCPP_MAX_FRAME_SIZE" in await log_line(probe, running, "CP_BIG: disconnected with close code 1009")
    await another_station_served(running)


async def test_a_flooding_201_station_is_closed_1008(start: Start, probe: MqttProbe) -> None:
    """Beyond OCPP_MAX_MESSAGE_RATE a 2.0.1 station is closed with 1008; the burst within it was answered."""
    running = await start(OCPP_MAX_MESSAGE_RATE="2")
    answered = []
    async with RawStation(running.url, "CP_FLOOD") as raw:
        for number in range(40):
            await raw.connection.send(dumps([2, f"h{number}", "Heartbeat", {}]))
        try:
            async with asyncio.timeout(WAIT_S):
                async for frame in raw.connection:
                    answered.append(json.loads(frame)[1])
        except ConnectionClosed:
            pass
        assert await closed_with(raw.connection) == 1008
    assert "OCPP_MAX_MESSAGE_RATE" in await log_line(probe, running, "CP_FLOOD: disconnected with close code 1008")
    assert answered[:20] == [f"h{n}" for n in range(20)] and len(answered) < 40
    await another_station_served(running)


async def test_a_201_station_minting_keys_stops_at_the_cap(start: Start, probe: MqttProbe) -> None:
    """A 2.0.1 station's new keys stop at OCPP_MAX_KEYS_PER_CHARGE_POINT, with one warning; it is still answered."""
    running = await start(OCPP_MAX_KEYS_PER_CHARGE_POINT="20")
    async with RawStation(running.url, "CP_KEYS") as raw:
        for number in range(40):
            answer = await raw.exchange(dumps([2, f"d{number}", "DataTransfer", {"vendorId": f"V{number}"}]))
            assert answer[0] == 3
        await log_line(probe, running, "CP_KEYS: has 20 datapoint keys")
        assert running.service.registry.key_count("CP_KEYS") == 20
    warnings = [p for p in probe.on(running.topic("logs")) if "OCPP_MAX_KEYS_PER_CHARGE_POINT" in p["msg"]]
    assert len(warnings) == 1


async def test_bad_201_frames_get_201_answers_and_tolerated_ones_are_named(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """Not JSON: dropped with a log line; a CALL of the wrong shape: RpcFrameworkError; an unknown message type:
    MessageTypeNotSupported; a number sent as text: TypeConstraintViolation; an unlisted enum value and an
    empty sampledValue: answered as valid and named in the log. The session goes on throughout."""
    since = len(probe.messages)
    async with RawStation(connector.url, "CP_JUNK") as raw:
        await raw.connection.send("{not json")
        assert (await raw.exchange(dumps([2, "w", "Heartbeat"])))[:3] == [4, "w", "RpcFrameworkError"]
        assert (await raw.exchange(dumps([7, "t", "Heartbeat", {}])))[:3] == [4, "t", "MessageTypeNotSupported"]
        odd_status = {**status(1), "connectorStatus": "Charging"}  # 1.6's word, not 2.0.1's
        assert (await raw.exchange(dumps([2, "e", "StatusNotification", odd_status])))[:2] == [3, "e"]
        # 1.6's " 0.0" is a string field padded; 2.x's value is a JSON number, so text there is a type
        # wrong (as 1.6's `"connectorId": "1"`), refused the 2.x way and not silently read.
        padded = meter_values(1, {"value": " 0.0", "measurand": "Power.Active.Import"})
        assert (await raw.exchange(dumps([2, "p", "MeterValues", padded])))[:3] == [4, "p", "TypeConstraintViolation"]
        empty = {"evseId": 1, "meterValue": [{"timestamp": "2026-12-04T10:00:00Z", "sampledValue": []}]}
        assert (await raw.exchange(dumps([2, "m", "MeterValues", empty])))[:2] == [3, "m"]
    await logged(
        probe,
        connector,
        "CP_JUNK: dropped frame (frame is not JSON)",
        "CP_JUNK: tolerated schema deviation in StatusNotification: connectorStatus: 'Charging'",
        "CP_JUNK: tolerated schema deviation in MeterValues: meterValue/0/sampledValue: []",
        since=since,
    )


async def test_a_bad_value_for_a_201_station_is_refused_and_a_silent_station_times_out(
    start: Start, probe: MqttProbe
) -> None:
    """A value a 2.0.1 actuator cannot take fails without a call; a station that never answers fails by time-out."""
    running = await start(OCPP_RESPONSE_TIMEOUT="1")
    reset, trigger = "CP_QUIET__execute_reset", "CP_QUIET__execute_trigger_message"
    async with RawStation(running.url, "CP_QUIET") as raw:
        topics = await wire(probe, running, reset, trigger)
        since = len(probe.messages)
        probe.publish(topics[reset][0], command("Sideways"))
        failed = await probe.wait_for(topics[reset][1], lambda p: p["value"].startswith("Failed:"), since=since)
        assert failed["value"] == "Failed: value must be one of Soft, Hard, OnIdle, Immediate; got 'Sideways'"
        await logged(probe, running, f"(topic {topics[reset][0]}): Failed: value must be", since=since)
        probe.publish(topics[trigger][0], command(3))
        async with asyncio.timeout(WAIT_S):
            call = json.loads(await raw.connection.recv())
        assert call[0] == 2 and call[2:] == ["TriggerMessage", {"requestedMessage": "Heartbeat"}]
        timed_out = await probe.wait_for(topics[trigger][1], lambda p: p["value"].startswith("Failed:"), since=since)
    assert timed_out["value"] == "Failed: no answer within 1 s"


# -- boot, answers ------------------------------------------------------------------------

VERSIONS = ["2.0.1", "2.1"]


async def test_boot_publishes_every_field_and_answers_the_heartbeat_interval(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """BootNotification: Accepted with OCPP_CHARGER_HEARTBEAT_INTERVAL; reason, the station's fields in snake_case
    and the modem's as modem_* are published."""
    cp = "CP_BOOT"
    fields = ("reason", "vendor_name", "model", "serial_number", "firmware_version", "modem_iccid", "modem_imsi")
    topics = {f"{cp}__BootNotification__{f}": connector.topic(f"t/{f}") for f in fields}
    await map_datapoints(probe, connector, topics, {})
    async with StationLink(connector.url, cp, "2.0.1") as station:
        answer = await station.send("BootNotification", boot("FirmwareUpdate"))
        assert answer["status"] == "Accepted"
        assert answer["interval"] == connector.service.settings.charger_heartbeat_interval
        assert answer["currentTime"].endswith("Z")
        expected = ("FirmwareUpdate", "Example", "Wallbox 2", "SN-1", "2.0.1-a", "8949", "2620")
        for field, value in zip(fields, expected, strict=True):
            await probe.wait_value(connector.topic(f"t/{field}"), value)


T = "2026-12-04T10:00:00Z"
SCHEDULE = {"id": 1, "chargingRateUnit": "W", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 1000.0}]}
PROFILE = {
    "id": 1,
    "stackLevel": 0,
    "chargingProfilePurpose": "TxDefaultProfile",
    "chargingProfileKind": "Relative",
    "chargingSchedule": [SCHEDULE],
}
EVENT = {
    "eventId": 1,
    "timestamp": T,
    "trigger": "Alerting",
    "actualValue": "1",
    "eventNotificationType": "HardWiredNotification",
    "component": {"name": "EVSE"},
    "variable": {"name": "Problem"},
}
OCSP = {
    "hashAlgorithm": "SHA256",
    "issuerNameHash": "a",
    "issuerKeyHash": "b",
    "serialNumber": "1",
    "responderURL": "x",
}
# One valid request of every message a 2.0.1 charging station sends, and the business answer due where the
# connector has no such feature (INTERFACE.md 8); None: any schema-valid answer.
STATION_MESSAGES: dict[str, tuple[dict[str, Any], dict[str, Any] | None]] = {
    "Authorize": ({"idToken": {"idToken": "04A2B3C4", "type": "ISO14443"}}, {"idTokenInfo": {"status": "Accepted"}}),
    "BootNotification": (boot(), None),
    "ClearedChargingLimit": ({"chargingLimitSource": "EMS"}, {}),
    "DataTransfer": ({"vendorId": "com.example", "data": {"a": 1}}, {"status": "UnknownVendorId"}),
    "FirmwareStatusNotification": ({"status": "Installed"}, {}),
    "Get15118EVCertificate": (
        {"iso15118SchemaVersion": "urn:iso:15118:2:2013:MsgDef", "action": "Install", "exiRequest": "AA=="},
        None,
    ),
    "GetCertificateStatus": ({"ocspRequestData": OCSP}, None),
    "Heartbeat": ({}, None),
    "LogStatusNotification": ({"status": "Idle"}, {}),
    "MeterValues": (meter_values(1, sample(1.0)), {}),
    "NotifyChargingLimit": ({"chargingLimit": {"chargingLimitSource": "EMS"}}, {}),
    "NotifyCustomerInformation": ({"data": "x", "seqNo": 0, "generatedAt": T, "requestId": 1}, {}),
    "NotifyDisplayMessages": ({"requestId": 1}, {}),
    "NotifyEVChargingNeeds": ({"chargingNeeds": {"requestedEnergyTransfer": "AC_three_phase"}, "evseId": 1}, None),
    "NotifyEVChargingSchedule": (
        {"timeBase": T, "chargingSchedule": SCHEDULE, "evseId": 1},
        None,
    ),
    "NotifyEvent": ({"generatedAt": T, "seqNo": 0, "eventData": [EVENT]}, {}),
    "NotifyMonitoringReport": ({"requestId": 1, "seqNo": 0, "generatedAt": T}, {}),
    "NotifyReport": ({"requestId": 1, "seqNo": 0, "generatedAt": T}, {}),
    "PublishFirmwareStatusNotification": ({"status": "Idle"}, {}),
    "ReportChargingProfiles": (
        {"requestId": 1, "chargingLimitSource": "EMS", "evseId": 1, "chargingProfile": [PROFILE]},
        {},
    ),
    "ReservationStatusUpdate": ({"reservationId": 1, "reservationUpdateStatus": "Expired"}, {}),
    "SecurityEventNotification": ({"type": "FirmwareUpdated", "timestamp": T}, {}),
    "SignCertificate": ({"csr": "x"}, None),
    "StatusNotification": (status(1), {}),
    "TransactionEvent": (transaction_event("Started", 0, "tx-answers"), {}),
}


async def test_every_201_station_message_gets_a_schema_valid_answer(connector: RunningConnector) -> None:
    """Each message a 2.0.1 station may send is answered, schema-valid (the library checks it), with the
    business answer of a CSMS without the feature: DataTransfer UnknownVendorId, SignCertificate Rejected, ..."""
    from connector.ocpp201.handlers import HANDLERS

    assert set(STATION_MESSAGES) == set(HANDLERS)
    async with StationLink(connector.url, "CP_ASKS", "2.0.1") as station:
        station.replies["GetVariables"] = rate_unit_answer("A,W")  # the read that follows the boot
        answers = {action: await station.send(action, request) for action, (request, _) in STATION_MESSAGES.items()}
    for action, (_, expected) in STATION_MESSAGES.items():
        if expected is not None:
            assert answers[action] == expected, action
    assert answers["SignCertificate"]["status"] == "Rejected"
    assert answers["Get15118EVCertificate"]["status"] == "Failed"
    assert answers["GetCertificateStatus"]["status"] == "Failed"
    assert answers["NotifyEVChargingNeeds"]["status"] == "Rejected"


# -- transactions ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
async def test_allowed_id_tags_answer_authorize_and_transaction_events(
    version: str, start: Start, probe: MqttProbe
) -> None:
    """With OCPP_ALLOWED_ID_TAGS, Authorize and a TransactionEvent's idTokenInfo say Accepted for a listed tag
    (in any case) and Invalid for another; a remote start for an unlisted tag is refused, nothing sent."""
    running = await start(OCPP_ALLOWED_ID_TAGS="04A2B3C4,CAFE")
    cp = f"CP_TAGS_{version.replace('.', '')}"
    remote_start = f"{cp}__execute_remote_start_transaction__1"

    def token(tag: str) -> dict[str, str]:
        return {"idToken": tag, "type": "ISO14443"}

    async with StationLink(running.url, cp, version) as station:
        assert (await station.send("Authorize", {"idToken": token("04a2b3c4")}))["idTokenInfo"]["status"] == "Accepted"
        assert (await station.send("Authorize", {"idToken": token("DEADBEEF")}))["idTokenInfo"]["status"] == "Invalid"
        started_ok = transaction_event("Started", 0, "tx-ok", idToken=token("CAFE"))
        assert (await station.send("TransactionEvent", started_ok))["idTokenInfo"]["status"] == "Accepted"
        started_bad = transaction_event("Started", 0, "tx-bad", evse=2, idToken=token("DEADBEEF"))
        assert (await station.send("TransactionEvent", started_bad))["idTokenInfo"]["status"] == "Invalid"
        topics = await wire(probe, running, remote_start)
        since = len(probe.messages)
        probe.publish(topics[remote_start][0], command("DEADBEEF"))
        failed = await probe.wait_for(topics[remote_start][1], lambda p: p["value"].startswith("Failed"), since=since)
        assert "OCPP_ALLOWED_ID_TAGS" in failed["value"]
        assert station.received.empty()


async def test_an_event_without_evse_belongs_to_its_transactions_evse(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """A transaction started on EVSE 2: its later events without `evse` publish under EVSE 2 (meter values,
    charging state, its end with the `Local` a missing stoppedReason means), nothing under EVSE 0."""
    cp = "CP_NOEVSE"
    power, prefix = f"{cp}__MeterValues__2__Power.Active.Import__W", f"{cp}__Transaction__2__"
    fields = ("active", "charging_state", "stop_reason", "energy")
    await map_datapoints(
        probe,
        connector,
        {power: connector.topic("t/power"), **{prefix + f: connector.topic(f"t/{f}") for f in fields}},
        {},
    )
    async with StationLink(connector.url, cp, "2.0.1") as station:
        await station.send("TransactionEvent", transaction_event("Started", 0, "tx-2", evse=2, meterValue=energy(100)))
        await probe.wait_value(connector.topic("t/active"), True)
        meter = [{"timestamp": T, "sampledValue": [sample(3000, "Power.Active.Import", "W")]}]
        updated = transaction_event("Updated", 1, "tx-2", evse=None, chargingState="SuspendedEV", meterValue=meter)
        await station.send("TransactionEvent", updated)
        await probe.wait_value(connector.topic("t/power"), 3000)
        await probe.wait_value(connector.topic("t/charging_state"), "SuspendedEV")
        ended = transaction_event("Ended", 2, "tx-2", evse=None, meterValue=energy(2600, context="Transaction.End"))
        await station.send("TransactionEvent", ended)
        await probe.wait_value(connector.topic("t/active"), False)
        await probe.wait_value(connector.topic("t/stop_reason"), "Local")
        await probe.wait_value(connector.topic("t/energy"), 2500)
    sensors = connector.service.registry.sensors
    assert not [k for k in sensors if k.startswith((f"{cp}__Transaction__0__", f"{cp}__MeterValues__0__"))]


async def test_an_offline_event_keeps_its_own_timestamps(connector: RunningConnector, probe: MqttProbe) -> None:
    """An event sent `offline` publishes its meter values and fields at the charger's times, not at arrival."""
    cp = "CP_OFFLINE"
    power = f"{cp}__MeterValues__1__Power.Active.Import__W"
    await map_datapoints(
        probe,
        connector,
        {power: connector.topic("t/power"), f"{cp}__Transaction__1__charging_state": connector.topic("t/state")},
        {},
    )
    then, sampled_at = "2026-11-30T08:00:00Z", "2026-11-30T07:59:30Z"
    async with StationLink(connector.url, cp, "2.0.1") as station:
        await station.send("TransactionEvent", transaction_event("Started", 0, "tx-o", at="2026-11-30T07:00:00Z"))
        meter = [{"timestamp": sampled_at, "sampledValue": [sample(4200, "Power.Active.Import", "W")]}]
        event = transaction_event(
            "Updated", 1, "tx-o", at=then, offline=True, chargingState="Charging", meterValue=meter
        )
        await station.send("TransactionEvent", event)
        reading = await probe.wait_value(connector.topic("t/power"), 4200)
        state = await probe.wait_value(connector.topic("t/state"), "Charging")
    assert reading["timestamp"] == 1796025570000  # 2026-11-30T07:59:30Z
    assert state["timestamp"] == 1796025600000  # 2026-11-30T08:00:00Z


async def test_open_transactions_and_their_seq_nos_survive_a_restart(start: Start, probe: MqttProbe) -> None:
    """After a restart on the same STATE_DIR, a seqNo the old process handled publishes nothing (here sent with
    other values, to see that none of them goes out), the next one does, and a remote stop names the transaction."""
    cp = "CP_RESTART"
    power, state = f"{cp}__MeterValues__1__Power.Active.Import__W", f"{cp}__Transaction__1__charging_state"
    stop = f"{cp}__execute_remote_stop_transaction__1"

    def updated(seq_no: int, watts: float, charging: str) -> dict[str, Any]:
        meter = [{"timestamp": T, "sampledValue": [sample(watts, "Power.Active.Import", "W")]}]
        return transaction_event("Updated", seq_no, "tx-r", evse=None, chargingState=charging, meterValue=meter)

    first = await start()
    async with StationLink(first.url, cp, "2.0.1") as station:
        await station.send("TransactionEvent", transaction_event("Started", 0, "tx-r", meterValue=energy(500)))
        await station.send("TransactionEvent", updated(1, 7000, "Charging"))
    await first.stop()
    second = await start()
    topics = await wire_with(probe, second, {power: second.topic("t/power"), state: second.topic("t/state")}, stop)
    since = len(probe.messages)
    async with StationLink(second.url, cp, "2.0.1") as station:  # back without a boot, as after a CSMS restart
        await station.send("TransactionEvent", updated(1, 4321, "SuspendedEVSE"))
        await station.send("TransactionEvent", updated(2, 5555, "SuspendedEV"))
        await probe.wait_value(second.topic("t/power"), 5555)
        await probe.wait_value(second.topic("t/state"), "SuspendedEV")
        probe.publish(topics[stop][0], command(True))
        assert await station.next_call() == ("RequestStopTransaction", {"transactionId": "tx-r"})
        await probe.wait_for(topics[stop][1], lambda p: p["value"] == "Accepted", since=since)
    published = [
        p["value"] for t, p, _ in probe.messages[since:] if t in (second.topic("t/power"), second.topic("t/state"))
    ]
    assert 4321 not in published and "SuspendedEVSE" not in published


# -- EVSEs and actuators --------------------------------------------------------------------

PER_EVSE = (
    "execute_send_charging_profile",
    "execute_send_charging_profile_current",
    "execute_remote_start_transaction",
    "execute_remote_stop_transaction",
    "execute_change_availability",
)


def actuators_of(cp: str, evse: int) -> set[str]:
    return {f"{cp}__{name}__{evse}" for name in PER_EVSE}


async def listed(probe: MqttProbe, running: RunningConnector, keys: set[str]) -> dict[str, Any]:
    """The first available_datapoints listing whose actuators include `keys`."""
    listing: dict[str, Any] = await probe.wait_for(
        running.topic("available_datapoints"), lambda p: keys <= set(p["actuator"])
    )
    return listing


async def test_per_evse_actuators_appear_when_an_evse_is_first_seen(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """EVSE 0's actuators (but remote stop) are listed on connect (and boot); EVSE 2's after its
    StatusNotification, 3's after MeterValues, 4's after a TransactionEvent, and none before."""
    cp = "CP_EVSES"
    async with StationLink(connector.url, cp, "2.0.1") as station:
        station.replies["GetVariables"] = rate_unit_answer("A,W")
        await station.send("BootNotification", boot())  # listed once booted (docs/datapoints.md)
        # Stopping a transaction acts on one EVSE: not offered for the station as a whole.
        on_connect = await listed(probe, connector, actuators_of(cp, 0) - {f"{cp}__execute_remote_stop_transaction__0"})
        assert not any(k.endswith(("__2", "__3", "__4")) for k in on_connect["actuator"] if k.startswith(cp))
        await station.send("StatusNotification", status(2))
        await listed(probe, connector, actuators_of(cp, 2))
        await station.send("MeterValues", meter_values(3, sample(10.0)))
        await listed(probe, connector, actuators_of(cp, 3))
        await station.send("TransactionEvent", transaction_event("Started", 0, "tx-4", evse=4))
        await listed(probe, connector, actuators_of(cp, 4))
    assert f"{cp}__execute_reset" in on_connect["actuator"]
    assert f"{cp}__execute_trigger_message" in on_connect["actuator"]


@pytest.mark.parametrize("version", VERSIONS)
async def test_the_listing_gives_2_x_examples_for_configuration(
    version: str, connector: RunningConnector, probe: MqttProbe
) -> None:
    """The configuration actuators of a 2.x station are listed with examples it takes (Component.Variable),
    a 1.6 charger's with 1.6's."""
    cp = f"CP_EX_{version.replace('.', '')}"
    get, change = f"{cp}__execute_get_configuration", f"{cp}__execute_change_configuration"
    async with StationLink(connector.url, cp, version) as station:
        station.replies["GetVariables"] = rate_unit_answer("A,W")
        await station.send("BootNotification", boot())
        listing = await probe.wait_for(connector.topic("available_datapoints"), lambda p: get in p["actuator"])
    assert listing["actuator"][get] == "SmartChargingCtrlr.RateUnit"
    assert listing["actuator"][change] == "OCPPCommCtrlr.HeartbeatInterval=300"
    assert listing["actuator"][change] != ACTUATORS["execute_change_configuration"].example


async def ask(
    probe: MqttProbe, topics: dict[str, tuple[str, str]], station: Any, key: str, value: Any
) -> tuple[str, dict[str, Any]]:
    """Publish `value` to the actuator `key`; the call the station got, once its status says Accepted."""
    since = len(probe.messages)
    probe.publish(topics[key][0], command(value))
    call: tuple[str, dict[str, Any]] = await station.next_call()
    await probe.wait_for(topics[key][1], lambda p: p["value"] == "Accepted", since=since)
    return call


@pytest.mark.parametrize("version", VERSIONS)
async def test_trigger_numbers_and_resets_take_the_versions_words(
    version: str, connector: RunningConnector, probe: MqttProbe
) -> None:
    """Trigger 0-5 keep their 1.6 meaning in the version's names (1 is LogStatusNotification); reset Soft and
    Hard are OnIdle and Immediate."""
    cp = f"CP_WORDS_{version.replace('.', '')}"
    trigger, reset = f"{cp}__execute_trigger_message", f"{cp}__execute_reset"
    async with StationLink(connector.url, cp, version) as station:
        topics = await wire(probe, connector, trigger, reset)
        requested = [(await ask(probe, topics, station, trigger, number))[1] for number in range(6)]
        resets = [(await ask(probe, topics, station, reset, kind))[1] for kind in ("Soft", "Hard")]
    names = ["BootNotification", "LogStatusNotification", "FirmwareStatusNotification", "Heartbeat"]
    assert requested == [{"requestedMessage": name} for name in [*names, "MeterValues", "StatusNotification"]]
    assert resets == [{"type": "OnIdle"}, {"type": "Immediate"}]


async def test_remote_start_ids_are_unique_per_charger_and_evse_0_names_no_evse(start: Start, probe: MqttProbe) -> None:
    """RequestStartTransaction: idToken type Central, no evseId for <c> = 0, a remoteStartId never repeated for
    the charger, also after a restart."""
    cp = "CP_STARTS"
    starts = [f"{cp}__execute_remote_start_transaction__{c}" for c in (0, 1)]
    calls = []
    for _ in range(2):  # before and after a restart
        running = await start()
        async with StationLink(running.url, cp, "2.0.1") as station:
            await station.send("StatusNotification", status(1))
            topics = await wire(probe, running, *starts)
            calls += [await ask(probe, topics, station, key, "04A2B3C4") for key in starts]
        await running.stop()
    assert all(action == "RequestStartTransaction" for action, _ in calls)
    assert all(payload["idToken"] == {"idToken": "04A2B3C4", "type": "Central"} for _, payload in calls)
    assert ["evseId" in payload for _, payload in calls] == [False, True, False, True]
    assert calls[1][1]["evseId"] == 1
    ids = [payload["remoteStartId"] for _, payload in calls]
    assert len(set(ids)) == len(ids)


async def test_variables_are_read_and_written_as_component_variable(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """execute_get_configuration "Component.Variable,..." is GetVariables whose answers become
    `<cp>__Variable__<Component>__<Variable>`; execute_change_configuration "Component.Variable=Value" is
    SetVariables."""
    cp = "CP_VARS"
    read, write = f"{cp}__execute_get_configuration", f"{cp}__execute_change_configuration"
    interval, units = (
        f"{cp}__Variable__OCPPCommCtrlr__HeartbeatInterval",
        f"{cp}__Variable__SmartChargingCtrlr__RateUnit",
    )
    async with StationLink(connector.url, cp, "2.0.1") as station:
        heartbeat = {**rate_unit_answer("300")["getVariableResult"][0]}
        heartbeat.update(component={"name": "OCPPCommCtrlr"}, variable={"name": "HeartbeatInterval"})
        results = [heartbeat, *rate_unit_answer("A,W")["getVariableResult"]]
        station.replies["GetVariables"] = {"getVariableResult": results}
        set_result = {k: v for k, v in heartbeat.items() if k != "attributeValue"}
        station.replies["SetVariables"] = {"setVariableResult": [set_result]}
        sensors = {interval: connector.topic("t/interval"), units: connector.topic("t/units")}
        topics = await wire_with(probe, connector, sensors, read, write)
        _, asked = await ask(
            probe, topics, station, read, "OCPPCommCtrlr.HeartbeatInterval,SmartChargingCtrlr.RateUnit"
        )
        await probe.wait_value(connector.topic("t/interval"), "300")
        await probe.wait_value(connector.topic("t/units"), "A,W")
        _, written = await ask(probe, topics, station, write, "OCPPCommCtrlr.HeartbeatInterval=120")
    assert [(d["component"]["name"], d["variable"]["name"]) for d in asked["getVariableData"]] == [
        ("OCPPCommCtrlr", "HeartbeatInterval"),
        ("SmartChargingCtrlr", "RateUnit"),
    ]
    variable = {"name": "HeartbeatInterval"}
    assert written == {
        "setVariableData": [
            {
                "attributeType": "Actual",
                "component": {"name": "OCPPCommCtrlr"},
                "variable": variable,
                "attributeValue": "120",
            }
        ]
    }


async def limit_sent(
    probe: MqttProbe, topics: dict[str, tuple[str, str]], station: Any, key: str, value: Any
) -> dict[str, Any]:
    """The schedule of the SetChargingProfile a limit became (its profile id added as `profileId`)."""
    action, payload = await ask(probe, topics, station, key, value)
    assert action == "SetChargingProfile"
    profile = payload["chargingProfile"]
    assert (payload["evseId"], profile["chargingProfilePurpose"]) == (1, "TxDefaultProfile")
    schedule: dict[str, Any] = profile["chargingSchedule"][0]
    return {"profileId": profile["id"], "unit": schedule["chargingRateUnit"], **schedule["chargingSchedulePeriod"][0]}


async def boot_with_rate_units(station: Any, answer: dict[str, Any] | None) -> None:
    """A BootNotification; the connector's SmartChargingCtrlr.RateUnit read that follows is answered with
    `answer` (None: CALLERROR NotImplemented, the units unknown)."""
    station.replies.pop("GetVariables", None)
    if answer is not None:
        station.replies["GetVariables"] = answer
    await station.send("BootNotification", boot())
    if answer is not None:
        assert (await station.next_call())[0] == "GetVariables"


async def test_the_rate_unit_read_after_each_boot_decides_w_or_a(connector: RunningConnector, probe: MqttProbe) -> None:
    """RateUnit "W": a limit in A goes out in W; unknown: W as W and A as A; read again at the next boot ("A"):
    W goes out in A. Every limit on EVSE 1 uses its one fixed profile id, which null clears."""
    cp = "CP_UNITS"
    power, current = f"{cp}__execute_send_charging_profile__1", f"{cp}__execute_send_charging_profile_current__1"
    async with StationLink(connector.url, cp, "2.0.1") as station:
        await boot_with_rate_units(station, rate_unit_answer("W"))
        await station.send("StatusNotification", status(1))
        topics = await wire(probe, connector, power, current)
        in_w = await limit_sent(probe, topics, station, current, 16)
        await boot_with_rate_units(station, None)
        # The units unknown, whichever unit is asked goes out; no rate-unit read is answered, so none is recorded.
        unknown = [await limit_sent(probe, topics, station, power, 7000)]
        unknown.append(await limit_sent(probe, topics, station, current, 10))
        await boot_with_rate_units(station, rate_unit_answer("A"))
        in_a = await limit_sent(probe, topics, station, power, 11040)
        cleared = await ask(probe, topics, station, power, None)
    assert (in_w["unit"], in_w["limit"]) == ("W", 11040.0)  # 16 A x 230 V x 3 phases
    assert [(u["unit"], u["limit"]) for u in unknown] == [("W", 7000.0), ("A", 10.0)]
    assert (in_a["unit"], in_a["limit"]) == ("A", 16.0)
    profile_ids = {sent["profileId"] for sent in (in_w, *unknown, in_a)}
    assert len(profile_ids) == 1
    assert cleared == ("ClearChargingProfile", {"chargingProfileId": profile_ids.pop()})


FAILED_ACTION = "Failed: action must be one a central system sends in OCPP 2.0.1, got "


@pytest.mark.parametrize(
    ("version", "request_", "outcome"),
    [
        ("2.0.1", {"action": "GetConfiguration", "payload": {}}, FAILED_ACTION + "'GetConfiguration'"),  # 1.6's
        (
            "2.0.1",
            {"action": "GetVariables", "payload": {"getVariableData": []}},
            "Failed: GetVariables payload breaks the OCPP 2.0.1 schema: getVariableData: needs at least 1 items",
        ),
        ("2.0.1", {"action": "AFRRSignal", "payload": {"timestamp": T, "signal": 1}}, FAILED_ACTION + "'AFRRSignal'"),
        ("2.1", {"action": "AFRRSignal", "payload": {"timestamp": T, "signal": 1}}, "Accepted"),
        ("2.0.1", {"action": "GetLocalListVersion", "payload": {}}, "Accepted"),  # answered, no status of its own
    ],
    ids=["16-action", "schema-broken", "21-only-on-201", "21-only-on-21", "valid"],
)
async def test_execute_ocpp_call_is_checked_against_the_chargers_version(
    version: str, request_: dict[str, Any], outcome: str, connector: RunningConnector, probe: MqttProbe
) -> None:
    """An operator's call goes out only when it is a call of the charger's version and valid in its schema;
    the whole answer is published as JSON text; anything else fails with nothing sent."""
    cp = f"CP_CALL_{version.replace('.', '')}"
    call, response = f"{cp}__execute_ocpp_call", f"{cp}__execute_ocpp_call__response"
    async with StationLink(connector.url, cp, version) as station:
        station.replies["GetLocalListVersion"] = {"versionNumber": 7}
        topics = await wire_with(probe, connector, {response: connector.topic("t/response")}, call)
        since = len(probe.messages)
        probe.publish(topics[call][0], command(json.dumps(request_)))
        result = await probe.wait_for(topics[call][1], lambda p: True, since=since)
        assert result["value"] == outcome
        if outcome.startswith("Failed:"):
            assert station.received.empty()
            return
        action, payload = await station.next_call()
        assert (action, payload) == (request_["action"], request_["payload"])
        answer = await probe.wait_for(connector.topic("t/response"), lambda p: True, since=since)
        assert json.loads(answer["value"]) == station.replies.get(action, {"status": "Accepted"})
