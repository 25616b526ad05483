"""The simulated OCPP 2.0.1 charging station (simulator/ocpp201/): its pure words against the ocpp
library's 2.0.1 schemas, and its behaviour against a small in-process CSMS.

The CSMS is the ocpp library's v201 server side under a websockets server on port 0; it
records every frame the station sends, checks each against the 2.0.1 schemas (a frame that
breaks them fails the test at teardown) and drives the station with the CSMS's calls. The
station runs in the test's event loop through `connector.simulator.run`, as `--ocpp 2.0.1`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import websockets
from ocpp.exceptions import NotImplementedError as OcppNotImplemented
from ocpp.messages import get_validator
from ocpp.v201 import ChargePoint, call, call_result
from ocpp.v201.enums import Action
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from connector.simulator import Options, run
from connector.simulator.behaviour import answers
from connector.simulator.model import CHARGE_POINT_MAX, Sample
from connector.simulator.ocpp201.payloads import DeviceModel, meter_value, profile_from_wire
from connector.simulator.words import MEASURANDS
from connector.tests.harness import WAIT_S

INTERVAL_S = 0.2
T0 = 1_796_342_400.0  # 2026-12-04T00:00:00Z
SAMPLE = Sample(4200.04, 1234567.8, (229.5, 230.0, 231.2), (6.1, 6.08, 6.05), 42.9)
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def valid(message_type: int, action: str, payload: dict[str, Any]) -> bool:
    """Whether the ocpp library's 2.0.1 schema for the message takes `payload` (as it was on the wire)."""
    return bool(get_validator(message_type, action, "2.0.1").is_valid(json.loads(json.dumps(payload))))


def on_wire(payload: dict[str, Any]) -> dict[str, Any]:
    """A payload in the ocpp library's snake_case as the library puts it on the wire (camelCase keys)."""
    from ocpp.charge_point import snake_to_camel_case

    converted: dict[str, Any] = snake_to_camel_case(payload)
    return converted


# -- pure words --------------------------------------------------------------------------


def test_a_meter_value_is_schema_valid_with_numbers_and_units() -> None:
    """The sample becomes a MeterValuesRequest the 2.0.1 schema takes: numbers, unitOfMeasure, phases, SoC at EV."""
    element = on_wire(meter_value(SAMPLE, T0, "Sample.Clock", MEASURANDS))
    assert valid(2, "MeterValues", {"evseId": 1, "meterValue": [element]})
    assert element["timestamp"] == "2026-12-04T00:00:00.000Z"
    values = {(v["measurand"], v.get("phase"), v.get("location")): v for v in element["sampledValue"]}
    assert values["Energy.Active.Import.Register", None, None]["value"] == 1234567
    assert values["Energy.Active.Import.Register", None, None]["unitOfMeasure"] == {"unit": "Wh"}
    assert values["Power.Active.Import", None, None]["value"] == 4200.0
    assert values["Current.Import", "L2", None]["value"] == 6.08
    assert values["Voltage", "L3-N", None]["unitOfMeasure"] == {"unit": "V"}
    assert values["SoC", None, "EV"]["value"] == 42
    assert len(values) == 9


def wire_profile(**changes: Any) -> dict[str, Any]:
    """A chargingProfile as a CSMS sends it (snake_case, as the ocpp library hands it to a handler)."""
    return {
        "id": 1001,
        "stack_level": 0,
        "charging_profile_purpose": "TxDefaultProfile",
        "charging_profile_kind": "Relative",
        "charging_schedule": [
            {"id": 1, "charging_rate_unit": "W", "charging_schedule_period": [{"start_period": 0, "limit": 4200.0}]}
        ],
        **changes,
    }


def test_a_profile_from_the_wire_follows_its_first_schedule() -> None:
    """A chargingProfile becomes the model's Profile: its id, the EVSE, the first schedule's unit and periods."""
    second = {"id": 2, "charging_rate_unit": "A", "charging_schedule_period": [{"start_period": 0, "limit": 6.0}]}
    profile = profile_from_wire(1, wire_profile(charging_schedule=[*wire_profile()["charging_schedule"], second]))
    assert (profile.profile_id, profile.connector_id, profile.purpose, profile.unit) == (
        1001,
        1,
        "TxDefaultProfile",
        "W",
    )
    assert [(p.start_s, p.limit) for p in profile.periods] == [(0.0, 4200.0)]


def test_the_station_maximum_is_the_models_charger_maximum() -> None:
    """ChargingStationMaxProfile is the model's charger-wide maximum; a TxProfile takes the transaction it is for."""
    assert profile_from_wire(0, wire_profile(charging_profile_purpose="ChargingStationMaxProfile")).purpose == (
        CHARGE_POINT_MAX
    )
    assert profile_from_wire(1, wire_profile(charging_profile_purpose="TxProfile"), "tx-1").transaction_id == "tx-1"


def variable(component: str, name: str, **more: Any) -> dict[str, Any]:
    return {"component": {"name": component}, "variable": {"name": name}, **more}


@pytest.mark.parametrize(
    ("request_", "status", "value"),
    [
        (variable("SmartChargingCtrlr", "RateUnit"), "Accepted", "A,W"),
        (variable("AlignedDataCtrlr", "Interval"), "Accepted", "0.2"),
        (variable("OCPPCommCtrlr", "HeartbeatInterval"), "Accepted", "300"),
        (variable("SmartChargingCtrlr", "NoSuchVariable"), "UnknownVariable", None),
        (variable("NoSuchCtrlr", "Enabled"), "UnknownComponent", None),
        (variable("SmartChargingCtrlr", "RateUnit", attribute_type="MaxSet"), "NotSupportedAttributeType", None),
        (
            {"component": {"name": "SmartChargingCtrlr", "instance": "2"}, "variable": {"name": "RateUnit"}},
            "UnknownComponent",
            None,
        ),
    ],
)
def test_get_variables(request_: dict[str, Any], status: str, value: str | None) -> None:
    """GetVariables: the rate units A,W and the intervals; unknown components and variables named as such."""
    result = DeviceModel(0.2).get(request_)
    assert valid(3, "GetVariables", on_wire({"get_variable_result": [result]}))
    assert (result["attribute_status"], result.get("attribute_value")) == (status, value)
    assert (result["component"], result["variable"]) == (request_["component"], request_["variable"])


@pytest.mark.parametrize(
    ("component", "name", "value", "status"),
    [
        ("AlignedDataCtrlr", "Interval", "5", "Accepted"),
        ("AlignedDataCtrlr", "Interval", "often", "Rejected"),
        ("AlignedDataCtrlr", "Measurands", "Power.Active.Import,SoC", "Accepted"),
        ("AlignedDataCtrlr", "Measurands", "Power.Reactive.Import", "Rejected"),
        ("AuthCtrlr", "AuthorizeRemoteStart", "maybe", "Rejected"),
        ("SmartChargingCtrlr", "RateUnit", "W", "Rejected"),
        ("SecurityCtrlr", "BasicAuthPassword", "secret", "UnknownComponent"),
    ],
)
def test_set_variables(component: str, name: str, value: str, status: str) -> None:
    """SetVariables: a sensible value Accepted and kept, read-only or nonsense Rejected, unknown named as such."""
    device = DeviceModel(10)
    result = device.set(variable(component, name, attribute_value=value))
    assert valid(3, "SetVariables", on_wire({"set_variable_result": [result]}))
    assert result["attribute_status"] == status
    after = device.get(variable(component, name)).get("attribute_value")
    assert (after == value) == (status == "Accepted")


# -- behaviour against a CSMS ------------------------------------------------------------


@dataclass
class Frames:
    """Every CALL the station sent (action, camelCase payload), and every frame that broke its schema."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    subprotocols: list[str | None] = field(default_factory=list)
    _added: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, action: str, payload: dict[str, Any]) -> None:
        self.calls.append((action, payload))
        self._added.set()

    async def wait_for(
        self, action: str, matches: Callable[[dict[str, Any]], bool] = lambda _: True, since: int = 0
    ) -> dict[str, Any]:
        """The first `action` payload from call number `since` on that `matches`, waiting for it."""
        async with asyncio.timeout(WAIT_S):
            while True:
                self._added.clear()
                for name, payload in self.calls[since:]:
                    if name == action and matches(payload):
                        return payload
                await self._added.wait()

    def of(self, action: str, since: int = 0) -> list[dict[str, Any]]:
        return [payload for name, payload in self.calls[since:] if name == action]


def now_text() -> str:
    return datetime.now(UTC).isoformat()


class Csms(ChargePoint):  # type: ignore[misc]  # untyped library base
    """A CSMS that accepts everything, recording and schema-checking the station's frames."""

    def __init__(self, name: str, connection: ServerConnection, frames: Frames) -> None:
        super().__init__(name, connection)
        self.frames = frames
        self._calls_out: dict[str, str] = {}  # unique id -> action of the CSMS's own calls
        self.refused_tags: set[str] = set()

    async def route_message(self, raw_msg: str) -> None:
        message = json.loads(raw_msg)
        if message[0] == 2:
            self.frames.add(message[2], message[3])
            self._check(2, message[2], message[3])
        elif message[0] == 3 and message[1] in self._calls_out:
            self._check(3, self._calls_out.pop(message[1]), message[2])
        await super().route_message(raw_msg)

    async def _send(self, message: str) -> None:
        frame = json.loads(message)
        if frame[0] == 2:
            self._calls_out[frame[1]] = frame[2]
        await super()._send(message)

    def _check(self, message_type: int, action: str, payload: dict[str, Any]) -> None:
        if not valid(message_type, action, payload):
            self.frames.invalid.append(f"{message_type} {action} {payload}")

    @answers(Action.boot_notification)
    def on_boot_notification(self, **_: Any) -> call_result.BootNotification:
        return call_result.BootNotification(current_time=now_text(), interval=300, status="Accepted")

    @answers(Action.status_notification)
    def on_status_notification(self, **_: Any) -> call_result.StatusNotification:
        return call_result.StatusNotification()

    @answers(Action.heartbeat)
    def on_heartbeat(self) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=now_text())

    @answers(Action.meter_values)
    def on_meter_values(self, **_: Any) -> call_result.MeterValues:
        return call_result.MeterValues()

    @answers(Action.transaction_event)
    def on_transaction_event(self, id_token: dict[str, Any] | None = None, **_: Any) -> call_result.TransactionEvent:
        if id_token is None:
            return call_result.TransactionEvent()
        status = "Invalid" if id_token["id_token"] in self.refused_tags else "Accepted"
        return call_result.TransactionEvent(id_token_info={"status": status})

    @answers(Action.log_status_notification)
    def on_log_status_notification(self, **_: Any) -> call_result.LogStatusNotification:
        return call_result.LogStatusNotification()

    @answers(Action.firmware_status_notification)
    def on_firmware_status_notification(self, **_: Any) -> call_result.FirmwareStatusNotification:
        return call_result.FirmwareStatusNotification()


@dataclass
class Lab:
    """The CSMS's side of the simulated station's connections."""

    frames: Frames
    connections: list[Csms] = field(default_factory=list)
    sockets: list[ServerConnection] = field(default_factory=list)
    connected: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def csms(self) -> Csms:
        """The CSMS on the station's latest connection."""
        return self.connections[-1]

    async def ask(self, request: Any) -> Any:
        """The station's answer to the CSMS's `request`."""
        async with asyncio.timeout(WAIT_S):
            return await self.csms.call(request, suppress=False)

    async def charging(self) -> dict[str, Any]:
        """The Started event of the transaction the station begins after booting, once it charges."""
        started = await self.frames.wait_for("TransactionEvent", lambda p: p["eventType"] == "Started")
        await self.frames.wait_for("MeterValues", lambda p: power(p) > 0)
        return started


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    """A CSMS on port 0 and one simulated 2.0.1 station (SIM-1) connected to it; every frame checked at the end."""
    lab = Lab(Frames())

    async def serve_station(connection: ServerConnection) -> None:
        lab.frames.subprotocols.append(connection.subprotocol)
        lab.connections.append(Csms("SIM-1", connection, lab.frames))
        lab.sockets.append(connection)
        lab.connected.set()
        with contextlib.suppress(ConnectionClosed):
            await lab.csms.start()

    async with websockets.serve(serve_station, "127.0.0.1", 0, subprotocols=[Subprotocol("ocpp2.0.1")]) as server:
        port = server.sockets[0].getsockname()[1]
        stop = asyncio.Event()
        task = asyncio.create_task(run(Options(f"ws://127.0.0.1:{port}", 1, "2.0.1", INTERVAL_S), stop))
        try:
            async with asyncio.timeout(WAIT_S):
                await lab.connected.wait()
            yield lab
        finally:
            stop.set()
            async with asyncio.timeout(WAIT_S):
                await task
    assert lab.frames.invalid == []


def power(meter_values: dict[str, Any]) -> float:
    """The Power.Active.Import of a MeterValues payload."""
    return next(
        float(v["value"])
        for v in meter_values["meterValue"][0]["sampledValue"]
        if v["measurand"] == "Power.Active.Import"
    )


def reading(payload: dict[str, Any], measurand: str, phase: str | None = None) -> float:
    values = payload["meterValue"][0]["sampledValue"]
    return next(float(v["value"]) for v in values if v["measurand"] == measurand and v.get("phase") == phase)


def tx_default(limit: float, unit: str = "W", profile_id: int = 1001) -> call.SetChargingProfile:
    """SetChargingProfile as the connector sends a power or current limit: TxDefaultProfile on EVSE 1."""
    period = {"start_period": 0, "limit": limit}
    schedule = {"id": 1, "charging_rate_unit": unit, "charging_schedule_period": [period]}
    profile = wire_profile(id=profile_id, charging_schedule=[schedule])
    return call.SetChargingProfile(evse_id=1, charging_profile=profile)


async def test_the_station_boots_reports_and_starts_a_transaction(lab: Lab) -> None:
    """ocpp2.0.1; BootNotification PowerUp; Available, Occupied; Started: seqNo 0, an idToken, the register."""
    started = await lab.charging()
    assert lab.frames.subprotocols == ["ocpp2.0.1"]
    boot = lab.frames.of("BootNotification")[0]
    assert boot["reason"] == "PowerUp"
    assert boot["chargingStation"] == {
        "vendorName": "connector.simulator",
        "model": "Simulated 11 kW",
        "serialNumber": "SIM-1",
        "firmwareVersion": boot["chargingStation"]["firmwareVersion"],
    }
    statuses = [(s["evseId"], s["connectorId"], s["connectorStatus"]) for s in lab.frames.of("StatusNotification")]
    assert statuses[:2] == [(1, 1, "Available"), (1, 1, "Occupied")]
    assert (started["seqNo"], started["triggerReason"], started["evse"]) == (
        0,
        "Authorized",
        {"id": 1, "connectorId": 1},
    )
    assert started["idToken"] == {"idToken": "SIMULATED", "type": "ISO14443"}
    assert UUID.match(started["transactionInfo"]["transactionId"])
    assert started["transactionInfo"]["chargingState"] == "Charging"
    (register,) = started["meterValue"][0]["sampledValue"]
    assert (register["measurand"], register["context"], register["unitOfMeasure"]) == (
        "Energy.Active.Import.Register",
        "Transaction.Begin",
        {"unit": "Wh"},
    )


async def test_meter_values_every_interval_with_every_measurand(lab: Lab) -> None:
    """MeterValues of EVSE 1 on the clock's multiples of the interval: power, energy, current, voltage, SoC."""
    await lab.charging()
    since = len(lab.frames.calls)
    first = await lab.frames.wait_for("MeterValues", since=since)
    second = await lab.frames.wait_for("MeterValues", lambda p: p is not first, since=since)
    stamps = [datetime.fromisoformat(p["meterValue"][0]["timestamp"]).timestamp() for p in (first, second)]
    assert stamps[1] - stamps[0] == pytest.approx(INTERVAL_S)
    assert all(abs(stamp / INTERVAL_S - round(stamp / INTERVAL_S)) < 0.01 for stamp in stamps)  # to the ms
    measured = {(v["measurand"], v.get("phase")) for v in second["meterValue"][0]["sampledValue"]}
    assert measured == {
        ("Energy.Active.Import.Register", None),
        ("Power.Active.Import", None),
        *(("Current.Import", f"L{i}") for i in (1, 2, 3)),
        *(("Voltage", f"L{i}-N") for i in (1, 2, 3)),
        ("SoC", None),
    }
    assert second["evseId"] == 1 and power(second) == 11000


async def test_the_power_follows_a_limit_in_w_and_in_a_within_one_interval(lab: Lab) -> None:
    """A 4200 W TxDefaultProfile: Accepted, the next MeterValues 4200 W; 6 A: about 6 A on each phase."""
    await lab.charging()
    assert (await lab.ask(tx_default(4200.0))).status == "Accepted"
    since = len(lab.frames.calls)
    assert power(await lab.frames.wait_for("MeterValues", since=since)) == 4200
    assert (await lab.ask(tx_default(6.0, "A"))).status == "Accepted"
    since = len(lab.frames.calls)
    limited = await lab.frames.wait_for("MeterValues", since=since)
    assert 6 * 3 * 224 <= power(limited) <= 6 * 3 * 236
    assert all(reading(limited, "Current.Import", f"L{i}") == pytest.approx(6, abs=0.2) for i in (1, 2, 3))


async def test_a_zero_limit_suspends_and_clearing_it_resumes(lab: Lab) -> None:
    """0 W: Updated to SuspendedEVSE; ClearChargingProfile by id, then by criteria: Updated to Charging."""
    started = await lab.charging()
    transaction_id = started["transactionInfo"]["transactionId"]
    for clear in (
        call.ClearChargingProfile(charging_profile_id=1001),
        call.ClearChargingProfile(
            charging_profile_criteria={"evse_id": 1, "charging_profile_purpose": "TxDefaultProfile"}
        ),
    ):
        since = len(lab.frames.calls)
        assert (await lab.ask(tx_default(0.0))).status == "Accepted"
        suspended = await lab.frames.wait_for("TransactionEvent", since=since)
        assert (suspended["eventType"], suspended["triggerReason"], suspended["transactionInfo"]) == (
            "Updated",
            "ChargingStateChanged",
            {"transactionId": transaction_id, "chargingState": "SuspendedEVSE"},
        )
        since = len(lab.frames.calls)
        assert (await lab.ask(clear)).status == "Accepted"
        resumed = await lab.frames.wait_for("TransactionEvent", since=since)
        assert resumed["transactionInfo"]["chargingState"] == "Charging"
    seq_nos = [event["seqNo"] for event in lab.frames.of("TransactionEvent")]
    assert seq_nos == list(range(len(seq_nos)))
    assert (await lab.ask(call.ClearChargingProfile(charging_profile_id=1001))).status == "Unknown"


async def test_profiles_a_station_refuses(lab: Lab) -> None:
    """No EVSE 2, a station maximum on EVSE 1, a TxProfile for another transaction, external constraints: Rejected."""
    await lab.charging()
    refused = [
        call.SetChargingProfile(evse_id=2, charging_profile=wire_profile()),
        call.SetChargingProfile(
            evse_id=1, charging_profile=wire_profile(charging_profile_purpose="ChargingStationMaxProfile")
        ),
        call.SetChargingProfile(
            evse_id=1, charging_profile=wire_profile(charging_profile_purpose="TxProfile", transaction_id="another")
        ),
        call.SetChargingProfile(
            evse_id=0, charging_profile=wire_profile(charging_profile_purpose="ChargingStationExternalConstraints")
        ),
    ]
    for request in refused:
        assert (await lab.ask(request)).status == "Rejected", request


async def test_remote_stop_and_start(lab: Lab) -> None:
    """RequestStopTransaction: Ended (Remote); RequestStartTransaction: Started (RemoteStart, remoteStartId, new id)."""
    started = await lab.charging()
    first_id = started["transactionInfo"]["transactionId"]
    assert (await lab.ask(call.RequestStopTransaction(transaction_id="not-this-one"))).status == "Rejected"
    since = len(lab.frames.calls)
    assert (await lab.ask(call.RequestStopTransaction(transaction_id=first_id))).status == "Accepted"
    ended = await lab.frames.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended", since=since)
    assert (ended["triggerReason"], ended["transactionInfo"]["stoppedReason"], ended["seqNo"]) == (
        "RemoteStop",
        "Remote",
        1,
    )
    assert ended["meterValue"][0]["sampledValue"][0]["context"] == "Transaction.End"
    await lab.frames.wait_for("StatusNotification", lambda p: p["connectorStatus"] == "Available", since=since)
    since = len(lab.frames.calls)
    start = call.RequestStartTransaction(
        id_token={"id_token": "TAG-7", "type": "Central"}, remote_start_id=7, evse_id=1
    )
    assert (await lab.ask(start)).status == "Accepted"
    again = await lab.frames.wait_for("TransactionEvent", lambda p: p["eventType"] == "Started", since=since)
    assert (again["triggerReason"], again["seqNo"], again["idToken"]) == (
        "RemoteStart",
        0,
        {"idToken": "TAG-7", "type": "Central"},
    )
    assert again["transactionInfo"]["remoteStartId"] == 7
    assert again["transactionInfo"]["transactionId"] != first_id
    assert (await lab.ask(start)).status == "Rejected"  # a transaction is in progress


async def test_a_refused_id_token_ends_the_transaction(lab: Lab) -> None:
    """A remote start whose idToken the CSMS answers Invalid ends at once: Ended, Deauthorized, DeAuthorized."""
    started = await lab.charging()
    await lab.ask(call.RequestStopTransaction(transaction_id=started["transactionInfo"]["transactionId"]))
    await lab.frames.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended")
    lab.csms.refused_tags.add("STOLEN")
    since = len(lab.frames.calls)
    start = call.RequestStartTransaction(id_token={"id_token": "STOLEN", "type": "Central"}, remote_start_id=8)
    assert (await lab.ask(start)).status == "Accepted"
    ended = await lab.frames.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended", since=since)
    assert (ended["triggerReason"], ended["transactionInfo"]["stoppedReason"]) == ("Deauthorized", "DeAuthorized")


async def test_trigger_message_in_2_0_1_names(lab: Lab) -> None:
    """Status, meter values, transaction, log status are sent; a second boot Rejected; certificates NotImplemented."""
    await lab.charging()
    expected = {
        "StatusNotification": "Accepted",
        "MeterValues": "Accepted",
        "TransactionEvent": "Accepted",
        "LogStatusNotification": "Accepted",
        "BootNotification": "Rejected",
        "SignChargingStationCertificate": "NotImplemented",
    }
    since = len(lab.frames.calls)
    answered = {name: (await lab.ask(call.TriggerMessage(requested_message=name))).status for name in expected}
    assert answered == expected
    triggered = await lab.frames.wait_for("TransactionEvent", lambda p: p["triggerReason"] == "Trigger", since=since)
    assert triggered["eventType"] == "Updated" and triggered["meterValue"][0]["sampledValue"][0]["context"] == "Trigger"
    await lab.frames.wait_for("LogStatusNotification", since=since)
    await lab.frames.wait_for(
        "MeterValues", lambda p: p["meterValue"][0]["sampledValue"][0]["context"] == "Trigger", since=since
    )
    assert lab.frames.of("BootNotification", since) == []
    assert (await lab.ask(call.TriggerMessage(requested_message="MeterValues", evse={"id": 2}))).status == "Rejected"


async def test_get_and_set_variables_over_the_wire(lab: Lab) -> None:
    """GetVariables names SmartChargingCtrlr.RateUnit A,W; SetVariables of the interval is Accepted and read back."""
    await lab.charging()
    get = call.GetVariables(get_variable_data=[variable("SmartChargingCtrlr", "RateUnit"), variable("Nope", "Nope")])
    results = (await lab.ask(get)).get_variable_result
    assert [(r["attribute_status"], r.get("attribute_value")) for r in results] == [
        ("Accepted", "A,W"),
        ("UnknownComponent", None),
    ]
    set_ = call.SetVariables(set_variable_data=[variable("AlignedDataCtrlr", "Interval", attribute_value="0.4")])
    assert (await lab.ask(set_)).set_variable_result[0]["attribute_status"] == "Accepted"
    read = await lab.ask(call.GetVariables(get_variable_data=[variable("AlignedDataCtrlr", "Interval")]))
    assert read.get_variable_result[0]["attribute_value"] == "0.4"


async def test_the_composite_schedule_is_the_limit_in_effect(lab: Lab) -> None:
    """With a 4200 W limit, GetCompositeSchedule for EVSE 1 in W: one period of 4200 W; EVSE 3: Rejected."""
    await lab.charging()
    await lab.ask(tx_default(4200.0))
    answer = await lab.ask(call.GetCompositeSchedule(duration=3600, evse_id=1, charging_rate_unit="W"))
    assert answer.status == "Accepted"
    assert (answer.schedule["evse_id"], answer.schedule["charging_rate_unit"]) == (1, "W")
    assert answer.schedule["charging_schedule_period"] == [{"start_period": 0, "limit": 4200.0}]
    assert (await lab.ask(call.GetCompositeSchedule(duration=60, evse_id=3))).status == "Rejected"


async def test_availability_reservations_and_the_connector_while_charging(lab: Lab) -> None:
    """While charging: Inoperative Scheduled, ReserveNow Occupied, no unlock; after the stop: Unavailable."""
    started = await lab.charging()
    assert (await lab.ask(call.ChangeAvailability(operational_status="Inoperative"))).status == "Scheduled"
    reserve = call.ReserveNow(
        id=5, expiry_date_time="2099-01-01T00:00:00Z", id_token={"id_token": "T", "type": "Central"}
    )
    assert (await lab.ask(reserve)).status == "Occupied"
    assert (await lab.ask(call.CancelReservation(reservation_id=5))).status == "Rejected"
    assert (await lab.ask(call.UnlockConnector(evse_id=1, connector_id=1))).status == "OngoingAuthorizedTransaction"
    assert (await lab.ask(call.UnlockConnector(evse_id=1, connector_id=2))).status == "UnknownConnector"
    since = len(lab.frames.calls)
    await lab.ask(call.RequestStopTransaction(transaction_id=started["transactionInfo"]["transactionId"]))
    await lab.frames.wait_for("StatusNotification", lambda p: p["connectorStatus"] == "Unavailable", since=since)
    assert (await lab.ask(reserve)).status == "Unavailable"
    assert (await lab.ask(call.ChangeAvailability(operational_status="Operative", evse={"id": 1}))).status == "Accepted"
    assert (await lab.ask(reserve)).status == "Accepted"
    await lab.frames.wait_for("StatusNotification", lambda p: p["connectorStatus"] == "Reserved", since=since)
    assert (await lab.ask(call.CancelReservation(reservation_id=5))).status == "Accepted"
    await lab.frames.wait_for("StatusNotification", lambda p: p["connectorStatus"] == "Available", since=since)


async def test_an_immediate_reset_ends_the_transaction_and_boots_again(lab: Lab) -> None:
    """Reset Immediate: Ended (ResetCommand, ImmediateReset), then a new connection, BootNotification RemoteReset."""
    await lab.charging()
    since = len(lab.frames.calls)
    assert (await lab.ask(call.Reset(type="Immediate"))).status == "Accepted"
    ended = await lab.frames.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended", since=since)
    assert (ended["triggerReason"], ended["transactionInfo"]["stoppedReason"]) == ("ResetCommand", "ImmediateReset")
    boot = await lab.frames.wait_for("BootNotification", since=since)
    assert boot["reason"] == "RemoteReset" and len(lab.connections) == 2


async def test_a_reset_on_idle_waits_for_the_transaction(lab: Lab) -> None:
    """Reset OnIdle while charging: Scheduled, no reboot; when the transaction is stopped the station reboots."""
    started = await lab.charging()
    since = len(lab.frames.calls)
    assert (await lab.ask(call.Reset(type="OnIdle"))).status == "Scheduled"
    # A round trip through the station's loop, after which a reboot would have shown.
    assert (await lab.ask(call.TriggerMessage(requested_message="Heartbeat"))).status == "Accepted"
    await lab.frames.wait_for("Heartbeat", since=since)
    assert lab.frames.of("BootNotification", since) == [] and len(lab.connections) == 1
    await lab.ask(call.RequestStopTransaction(transaction_id=started["transactionInfo"]["transactionId"]))
    boot = await lab.frames.wait_for("BootNotification", since=since)
    assert boot["reason"] == "RemoteReset"


async def test_a_reconnect_carries_the_transactions_seq_no_on(lab: Lab) -> None:
    """The CSMS closes the connection: the station comes back without booting; its next event continues the seqNo."""
    started = await lab.charging()
    await lab.sockets[-1].close()
    lab.connected.clear()
    async with asyncio.timeout(WAIT_S):
        await lab.connected.wait()
    since = len(lab.frames.calls)
    assert (await lab.ask(call.TriggerMessage(requested_message="TransactionEvent"))).status == "Accepted"
    event = await lab.frames.wait_for("TransactionEvent", since=since)
    assert event["seqNo"] == started["seqNo"] + 1
    assert event["transactionInfo"]["transactionId"] == started["transactionInfo"]["transactionId"]
    assert lab.frames.of("BootNotification") == [lab.frames.of("BootNotification")[0]]


async def test_anything_else_gets_a_valid_answer_or_not_implemented(lab: Lab) -> None:
    """DataTransfer: UnknownVendorId; customData is ignored; an action the station lacks: CALLERROR NotImplemented."""
    await lab.charging()
    assert (await lab.ask(call.DataTransfer(vendor_id="com.example"))).status == "UnknownVendorId"
    assert (await lab.ask(call.DataTransfer(vendor_id="connector.simulator", message_id="x"))).status == "Rejected"
    cleared = call.ClearCache(custom_data={"vendor_id": "com.example", "extra": 1})
    assert (await lab.ask(cleared)).status == "Accepted"
    with pytest.raises(OcppNotImplemented):
        await lab.ask(call.GetBaseReport(request_id=1, report_base="FullInventory"))
