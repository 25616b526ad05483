"""OCPP 2.0.1 handlers (ocpp201/handlers.py): station messages answered schema-valid, datapoints (INTERFACE.md 8)."""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ocpp.messages import MessageType
from ocpp.v201.enums import Action

from connector.authorization import IdTagPolicy
from connector.datapoints import Datapoint, EvseTransaction
from connector.ocpp201.handlers import HANDLERS
from connector.tests.handler_context import (
    CP,
    RECEIVED,
    TOKEN,
    TX,
    FakeContext,
    assert_valid,
    event,
    handle,
    register,
    requests,
)

VERSION = "2.0.1"

# OCPP 2.0.1 Part 2, the messages a Charging Station sends (DataTransfer goes both ways).
STATION_MESSAGES = {
    "Authorize", "BootNotification", "ClearedChargingLimit", "DataTransfer", "FirmwareStatusNotification",
    "Get15118EVCertificate", "GetCertificateStatus", "Heartbeat", "LogStatusNotification", "MeterValues",
    "NotifyChargingLimit", "NotifyCustomerInformation", "NotifyDisplayMessages", "NotifyEVChargingNeeds",
    "NotifyEVChargingSchedule", "NotifyEvent", "NotifyMonitoringReport", "NotifyReport",
    "PublishFirmwareStatusNotification", "ReportChargingProfiles", "ReservationStatusUpdate",
    "SecurityEventNotification", "SignCertificate", "StatusNotification", "TransactionEvent",
}  # fmt: skip


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


@pytest.fixture
def ctx(tmp_path: Path) -> FakeContext:
    return FakeContext(tmp_path)


def answer_of(ctx: FakeContext, action: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The handler's answer to a request that is valid 2.0.1 (checked, as the session checks it), checked too."""
    assert_valid(action, MessageType.Call, payload, VERSION)
    answer, _ = handle(HANDLERS, ctx, action, payload)
    assert_valid(action, MessageType.CallResult, answer, VERSION)
    return answer


def test_every_station_message_has_a_handler() -> None:
    """HANDLERS covers exactly the messages a 2.0.1 charging station sends, each a 2.0.1 action."""
    assert set(HANDLERS) == STATION_MESSAGES
    assert {action.value for action in Action} >= STATION_MESSAGES


# -- one frame each: answer and datapoints ---------------------------------------------

OCSP_REQUEST = {
    "hashAlgorithm": "SHA256",
    "issuerNameHash": "a1",
    "issuerKeyHash": "b2",
    "serialNumber": "1f",
    "responderURL": "http://ocsp.example.com",
}

SIMPLE: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    ("Heartbeat", {}, {}, {"CP_1__Heartbeat": RECEIVED}),
    (
        "StatusNotification",
        {"timestamp": "2026-11-21T10:00:00Z", "connectorStatus": "Available", "evseId": 1, "connectorId": 1},
        {},
        {"CP_1__StatusNotification__1__1__connector_status": "Available"},
    ),
    ("Authorize", {"idToken": {"idToken": "04A2B3C4D5E6F7", "type": "ISO14443"}},
     {"idTokenInfo": {"status": "Accepted"}}, {}),
    ("DataTransfer", {"vendorId": "com.vendor", "messageId": "Diag", "data": {"temp": 41}},
     {"status": "UnknownVendorId"}, {"CP_1__DataTransfer__com.vendor__Diag": '{"temp":41}'}),
    ("SignCertificate", {"csr": "-----BEGIN CERTIFICATE REQUEST-----\nMIIB...\n-----END CERTIFICATE REQUEST-----"},
     {"status": "Rejected"}, {}),
    ("Get15118EVCertificate", {"iso15118SchemaVersion": "urn:iso:15118:2:2013:MsgDef", "action": "Install",
                               "exiRequest": "gAAAAAA="}, {"status": "Failed", "exiResponse": ""}, {}),
    ("GetCertificateStatus", {"ocspRequestData": OCSP_REQUEST}, {"status": "Failed"}, {}),
    ("NotifyEVChargingNeeds", {"evseId": 1, "chargingNeeds": {"requestedEnergyTransfer": "AC_three_phase",
                                                              "acChargingParameters": {"energyAmount": 20000,
                                                              "evMinCurrent": 6, "evMaxCurrent": 32,
                                                              "evMaxVoltage": 400}}},
     {"status": "Rejected"}, {}),
    ("NotifyEVChargingSchedule", {"timeBase": "2026-11-21T10:00:00Z", "evseId": 1, "chargingSchedule": {
        "id": 1, "chargingRateUnit": "W", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 11000}]}},
     {"status": "Accepted"}, {}),
    ("FirmwareStatusNotification", {"status": "Downloading", "requestId": 42}, {},
     {"CP_1__FirmwareStatusNotification__status": "Downloading", "CP_1__FirmwareStatusNotification__request_id": 42}),
    ("LogStatusNotification", {"status": "Uploaded", "requestId": 7}, {},
     {"CP_1__LogStatusNotification__status": "Uploaded", "CP_1__LogStatusNotification__request_id": 7}),
    ("PublishFirmwareStatusNotification",
     {"status": "Published", "location": ["http://cs.local/fw.bin"], "requestId": 3}, {},
     {"CP_1__PublishFirmwareStatusNotification__status": "Published",
      "CP_1__PublishFirmwareStatusNotification__request_id": 3}),
    ("SecurityEventNotification", {"type": "StartupOfTheDevice", "timestamp": "2026-11-21T09:59:00Z"}, {},
     {"CP_1__SecurityEventNotification__type": "StartupOfTheDevice",
      "CP_1__SecurityEventNotification__timestamp": "2026-11-21T09:59:00Z"}),
    ("ClearedChargingLimit", {"chargingLimitSource": "EMS", "evseId": 1}, {}, {}),
    ("NotifyChargingLimit", {"chargingLimit": {"chargingLimitSource": "SO", "isGridCritical": True}, "evseId": 1},
     {}, {}),
    ("NotifyCustomerInformation", {"data": "no data", "seqNo": 0, "generatedAt": "2026-11-21T10:00:00Z",
                                   "requestId": 5}, {}, {}),
    ("NotifyDisplayMessages", {"requestId": 9, "tbc": False}, {}, {}),
    ("NotifyMonitoringReport", {"requestId": 2, "seqNo": 0, "generatedAt": "2026-11-21T10:00:00Z"}, {}, {}),
    ("ReportChargingProfiles", {"requestId": 4, "chargingLimitSource": "CSO", "evseId": 1, "chargingProfile": [
        {"id": 1001, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Absolute",
         "chargingSchedule": [{"id": 1, "chargingRateUnit": "W", "startSchedule": "2026-11-21T10:00:00Z",
                               "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7400}]}]}]}, {}, {}),
    ("NotifyReport", {"requestId": 1, "generatedAt": "2026-11-21T10:00:00Z", "seqNo": 0, "tbc": True, "reportData": [
        {"component": {"name": "SmartChargingCtrlr"}, "variable": {"name": "RateUnit"},
         "variableAttribute": [{"type": "Actual", "value": "A,W", "mutability": "ReadOnly"}]}]},
     {}, {"CP_1__Variable__SmartChargingCtrlr__RateUnit": "A,W"}),
    ("NotifyEvent", {"generatedAt": "2026-11-21T10:00:00Z", "seqNo": 0, "eventData": [
        {"eventId": 1, "timestamp": "2026-11-21T10:00:00Z", "trigger": "Delta", "actualValue": "Unavailable",
         "component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "AvailabilityState"},
         "eventNotificationType": "HardWiredNotification"}]},
     {}, {"CP_1__Variable__EVSE__1__AvailabilityState": "Unavailable"}),
]  # fmt: skip


@pytest.mark.parametrize(("action", "payload", "answer", "published"), SIMPLE, ids=[s[0] for s in SIMPLE])
def test_answer_and_datapoints(
    ctx: FakeContext, action: str, payload: dict[str, Any], answer: dict[str, Any], published: dict[str, Any]
) -> None:
    """Each station message gets its schema-valid business answer and publishes its datapoints."""
    got = answer_of(ctx, action, payload)
    assert {k: v for k, v in got.items() if k not in ("currentTime", "statusInfo")} == answer
    assert ctx.values() == published


@pytest.mark.parametrize(
    ("action", "payload"),
    [("SignCertificate", {"csr": "x"}), ("GetCertificateStatus", {"ocspRequestData": OCSP_REQUEST})],
)
def test_refusals_say_the_request_is_unsupported(ctx: FakeContext, action: str, payload: dict[str, Any]) -> None:
    """A feature this CSMS lacks is refused with statusInfo.reasonCode UnsupportedRequest."""
    assert answer_of(ctx, action, payload)["statusInfo"]["reasonCode"] == "UnsupportedRequest"


def test_heartbeat_answer_is_utc_now() -> None:
    """Heartbeat is answered with the current time in UTC with a Z suffix."""
    answer, _ = handle(HANDLERS, FakeContext(Path("/nonexistent")), "Heartbeat", {})
    assert answer["currentTime"].endswith("Z")


def test_status_and_meter_values_announce_their_evse(ctx: FakeContext) -> None:
    """StatusNotification and MeterValues announce their EVSE (connector_seen); the status page notes them."""
    answer_of(ctx, "StatusNotification", {"timestamp": "2026-11-21T10:00:00Z", "connectorStatus": "Occupied",
                                          "evseId": 2, "connectorId": 1})  # fmt: skip
    answer_of(ctx, "MeterValues", {"evseId": 0, "meterValue": [{"timestamp": "2026-11-21T10:00:00Z",
                                                                "sampledValue": [{"value": 4711}]}]})  # fmt: skip
    assert ctx.seen == [2, 0]
    assert ctx.observed.statuses == {2: "Occupied"}
    assert [p.key for p in ctx.observed.meter] == ["CP_1__MeterValues__0__Energy.Active.Import.Register__Wh"]


def test_meter_values_publish_every_sample_oldest_first_and_record_voltages(ctx: FakeContext) -> None:
    """MeterValues: each sample at its element's time, oldest element first; plausible voltages kept per phase."""
    payload = {
        "evseId": 1,
        "meterValue": [
            {
                "timestamp": "2026-11-21T10:01:00Z",
                "sampledValue": [
                    {"value": 2312, "measurand": "Voltage", "phase": "L1-N",
                     "unitOfMeasure": {"unit": "V", "multiplier": -1}},
                    {"value": 7.36, "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "kW"}},
                ],
            },
            {"timestamp": "2026-11-21T10:00:00Z", "sampledValue": [{"value": 12.5, "unitOfMeasure": {"unit": "kWh"}}]},
        ],
    }  # fmt: skip
    answer_of(ctx, "MeterValues", payload)
    assert ctx.published == [
        Datapoint("CP_1__MeterValues__1__Energy.Active.Import.Register__kWh", 12.5, ms("2026-11-21T10:00:00Z")),
        Datapoint("CP_1__MeterValues__1__Voltage__L1-N__V", 231.2, ms("2026-11-21T10:01:00Z")),
        Datapoint("CP_1__MeterValues__1__Power.Active.Import__kW", 7.36, ms("2026-11-21T10:01:00Z")),
    ]
    assert ctx.voltages == {"L1": 231.2}


# -- BootNotification --------------------------------------------------------------------

BOOT = {"reason": "PowerUp", "chargingStation": {"model": "Terra AC", "vendorName": "ABB", "firmwareVersion": "1.8"}}


def test_boot_notification_is_accepted_with_the_interval(ctx: FakeContext) -> None:
    """BootNotification: Accepted with our heartbeat interval and a Z time; booted; the rate units read afterwards."""
    answer, inbound = handle(HANDLERS, ctx, "BootNotification", BOOT)
    assert_valid("BootNotification", MessageType.CallResult, answer, VERSION)
    assert (answer["status"], answer["interval"]) == ("Accepted", 300)
    assert answer["currentTime"].endswith("Z")
    assert ctx.boots == 1
    assert inbound.after == [ctx.refresh_rate_units]
    assert ctx.values() == {
        "CP_1__BootNotification__reason": "PowerUp",
        "CP_1__BootNotification__vendor_name": "ABB",
        "CP_1__BootNotification__model": "Terra AC",
        "CP_1__BootNotification__firmware_version": "1.8",
    }


@pytest.mark.parametrize(("triggered", "settled"), [(False, True), (True, False)])
def test_a_boot_settles_open_transactions_unless_we_asked_for_it(
    tmp_path: Path, triggered: bool, settled: bool
) -> None:
    """A reboot settles the open transactions (active false); a BootNotification we triggered does not."""
    ctx = FakeContext(tmp_path, triggered=triggered)
    answer_of(ctx, "TransactionEvent", event("Started", 0, "CablePluggedIn"))
    ctx.take()
    answer_of(ctx, "BootNotification", BOOT)
    assert ("CP_1__Transaction__1__active" in ctx.values()) is settled
    assert (ctx.transactions.active(CP, 1) is None) is settled


# -- TransactionEvent ------------------------------------------------------------------------


def run_transaction(ctx: FakeContext) -> list[dict[str, Any]]:
    """A whole transaction as an ABB Terra AC sends it: plug in, authorise, charge, unplug."""
    events = [
        event("Started", 0, "CablePluggedIn", info_chargingState="EVConnected",
              meterValue=register(12.345, "Transaction.Begin")),
        event("Updated", 1, "Authorized", timestamp="2026-11-21T10:00:05Z", idToken=TOKEN, evse=None),
        event("Updated", 2, "ChargingStateChanged", timestamp="2026-11-21T10:00:07Z", info_chargingState="Charging"),
        event("Updated", 3, "MeterValuePeriodic", timestamp="2026-11-21T10:15:00Z", evse=None, meterValue=[
            {"timestamp": "2026-11-21T10:15:00Z", "sampledValue": [
                {"value": 7360, "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "W"}},
                {"value": 14.2, "unitOfMeasure": {"unit": "kWh"}}]}]),
        event("Ended", 4, "EVDeparted", timestamp="2026-11-21T11:00:00Z", evse=None,
              info_chargingState="Idle", info_stoppedReason="EVDisconnected",
              meterValue=register(20.0, "Transaction.End")),
    ]  # fmt: skip
    for payload in events:
        answer_of(ctx, "TransactionEvent", payload)
    return events


def test_a_transaction_publishes_its_fields_and_energy(ctx: FakeContext) -> None:
    """Started, Updated, Ended: transaction fields at each event's time, meter start/stop and energy in Wh."""
    run_transaction(ctx)
    transaction = {p.key.removeprefix("CP_1__Transaction__1__"): (p.value, p.timestamp) for p in ctx.published
                   if "__Transaction__" in p.key}  # fmt: skip
    assert transaction == {
        "active": (False, ms("2026-11-21T11:00:00Z")),
        "transaction_id": (TX, ms("2026-11-21T11:00:00Z")),
        "id_tag": ("04A2B3C4D5E6F7", ms("2026-11-21T10:00:05Z")),
        "charging_state": ("Idle", ms("2026-11-21T11:00:00Z")),
        "meter_start": (12345, ms("2026-11-21T10:00:00Z")),
        "meter_stop": (20000, ms("2026-11-21T11:00:00Z")),
        "stop_reason": ("EVDisconnected", ms("2026-11-21T11:00:00Z")),
        "energy": (7655, ms("2026-11-21T11:00:00Z")),
    }
    assert ctx.values()["CP_1__MeterValues__1__Power.Active.Import__W"] == 7360
    assert set(ctx.seen) == {1}


def test_the_started_event_clears_the_last_transactions_stop_fields(ctx: FakeContext) -> None:
    """A Started event publishes active, id and meter start, and clears meter_stop, stop_reason and energy."""
    answer_of(ctx, "TransactionEvent", event("Started", 0, "Authorized", idToken=TOKEN,
                                             meterValue=register(1.5, "Transaction.Begin")))  # fmt: skip
    assert {p.key.rsplit("__", 1)[1]: p.value for p in ctx.published if "Transaction" in p.key} == {
        "active": True,
        "transaction_id": TX,
        "id_tag": "04A2B3C4D5E6F7",
        "meter_start": 1500,
        "meter_stop": None,
        "stop_reason": None,
        "energy": None,
        "charging_state": None,
    }


def test_a_new_transaction_does_not_inherit_the_last_ones_charging_state(ctx: FakeContext) -> None:
    """Started without chargingState after one that ended SuspendedEV: charging_state is cleared, not carried."""
    answer_of(ctx, "TransactionEvent", event("Started", 0, "Authorized", info_chargingState="Charging"))
    answer_of(ctx, "TransactionEvent", event("Ended", 1, "EVDeparted", info_chargingState="SuspendedEV"))
    ctx.take()
    answer_of(ctx, "TransactionEvent", event("Started", 0, "CablePluggedIn", transaction_id="tx-next"))
    assert ctx.values()["CP_1__Transaction__1__charging_state"] is None


@pytest.mark.parametrize("allowed", [None, ["OTHER"]], ids=["every tag", "an allow-list"])
def test_a_no_authorization_token_is_accepted(tmp_path: Path, allowed: list[str] | None) -> None:
    """A free-vend station's NoAuthorization token (empty) is Accepted, also when an allow-list is set."""
    ctx = FakeContext(tmp_path, id_tags=None if allowed is None else IdTagPolicy.allow_list(allowed))
    free = {"idToken": "", "type": "NoAuthorization"}
    started = answer_of(ctx, "TransactionEvent", event("Started", 0, "ChargingStateChanged", idToken=free))
    assert started == {"idTokenInfo": {"status": "Accepted"}}
    assert answer_of(ctx, "Authorize", {"idToken": free}) == {"idTokenInfo": {"status": "Accepted"}}
    if allowed:  # the same empty text as another type is not
        other = answer_of(ctx, "Authorize", {"idToken": {"idToken": "", "type": "ISO14443"}})
        assert other == {"idTokenInfo": {"status": "Invalid"}}


def test_a_re_sent_event_publishes_nothing_and_is_answered_the_same(tmp_path: Path) -> None:
    """An event with a seqNo already handled (its answer was lost) publishes nothing again; same answer."""
    ctx = FakeContext(tmp_path, id_tags=IdTagPolicy.allow_list(["OTHER"]))
    payload = event("Started", 0, "Authorized", idToken=TOKEN, meterValue=register(1.0, "Transaction.Begin"))
    first = answer_of(ctx, "TransactionEvent", payload)
    ctx.take()
    again = answer_of(ctx, "TransactionEvent", payload)
    assert first == again == {"idTokenInfo": {"status": "Invalid"}}
    assert ctx.published == []


def test_missing_stopped_reason_means_local(ctx: FakeContext) -> None:
    """An Ended event without stoppedReason publishes stop_reason Local."""
    answer_of(ctx, "TransactionEvent", event("Started", 0, "CablePluggedIn"))
    answer_of(ctx, "TransactionEvent", event("Ended", 1, "StopAuthorized"))
    assert ctx.values()["CP_1__Transaction__1__stop_reason"] == "Local"
    assert ctx.values()["CP_1__Transaction__1__energy"] is None  # cleared at the start; no register at either end


def test_offline_events_keep_their_own_times_and_leave_the_voltages(ctx: FakeContext) -> None:
    """Events sent offline are stamped with their own timestamps, and their old voltages are not this session's."""
    sample = {"value": 231, "measurand": "Voltage", "phase": "L1-N", "unitOfMeasure": {"unit": "V"}}
    answer_of(ctx, "TransactionEvent", event("Started", 0, "CablePluggedIn", offline=True,
                                             timestamp="2026-11-20T23:00:00Z",
                                             meterValue=[{"timestamp": "2026-11-20T23:00:00Z",
                                                          "sampledValue": [sample]}]))  # fmt: skip
    stamps = {p.key.rsplit("__", 1)[1]: p.timestamp for p in ctx.published}
    assert stamps["active"] == ms("2026-11-20T23:00:00Z")
    assert stamps["V"] == ms("2026-11-20T23:00:00Z")
    assert ctx.voltages == {}


def test_a_remote_stop_finds_the_transaction_after_a_restart(tmp_path: Path) -> None:
    """Open 2.x transactions survive a restart: active() gives the charger's string id; re-sends are still known."""
    before = FakeContext(tmp_path)
    started = event("Started", 0, "RemoteStart", info_remoteStartId=17, meterValue=register(3.0, "Transaction.Begin"))
    answer_of(before, "TransactionEvent", started)
    after = FakeContext(tmp_path)  # a new TransactionStore on the same state directory
    record = after.transactions.active(CP, 1)
    assert isinstance(record, EvseTransaction) and record.transaction_id == TX
    answer_of(after, "TransactionEvent", started)
    assert after.published == []
    answer_of(after, "TransactionEvent", event("Ended", 1, "RemoteStop", evse=None, info_stoppedReason="Remote",
                                               meterValue=register(4.5, "Transaction.End")))  # fmt: skip
    assert after.values()["CP_1__Transaction__1__energy"] == 1500
    assert FakeContext(tmp_path).transactions.active(CP, 1) is None


def test_a_re_sent_ended_event_after_a_restart_publishes_nothing(tmp_path: Path) -> None:
    """The Ended event's seqNo is remembered past the transaction's end and a restart."""
    ctx = FakeContext(tmp_path)
    answer_of(ctx, "TransactionEvent", event("Started", 0, "CablePluggedIn"))
    ended = event("Ended", 1, "EVDeparted", info_stoppedReason="EVDisconnected")
    answer_of(ctx, "TransactionEvent", ended)
    restarted = FakeContext(tmp_path)
    assert answer_of(restarted, "TransactionEvent", ended) == {}
    assert restarted.published == []


def test_a_settled_transactions_late_end_counts_its_energy(ctx: FakeContext) -> None:
    """After a reboot settles a transaction, its Ended event (reason PowerLoss) still publishes its energy."""
    answer_of(
        ctx, "TransactionEvent", event("Started", 0, "CablePluggedIn", meterValue=register(10, "Transaction.Begin"))
    )
    answer_of(ctx, "BootNotification", BOOT)
    ctx.take()
    answer_of(ctx, "TransactionEvent", event("Ended", 1, "AbnormalCondition", info_stoppedReason="PowerLoss",
                                             offline=True, meterValue=register(11, "Transaction.End")))  # fmt: skip
    assert ctx.values()["CP_1__Transaction__1__energy"] == 1000
    assert ctx.values()["CP_1__Transaction__1__stop_reason"] == "PowerLoss"


def test_a_settled_transaction_that_sends_events_again_is_active_again(ctx: FakeContext) -> None:
    """A transaction settled by a boot whose station still sends Updated events for it is active again."""
    answer_of(ctx, "TransactionEvent", event("Started", 0, "CablePluggedIn"))
    answer_of(ctx, "BootNotification", BOOT)
    assert ctx.transactions.active(CP, 1) is None
    answer_of(ctx, "TransactionEvent", event("Updated", 1, "MeterValuePeriodic"))
    assert ctx.values()["CP_1__Transaction__1__active"] is True
    assert ctx.transactions.active(CP, 1) is not None


def test_a_late_end_of_a_settled_transaction_leaves_the_running_ones_fields(ctx: FakeContext) -> None:
    """When a settled transaction's Ended comes while a newer one runs on the EVSE, the keys end with the newer one."""
    answer_of(ctx, "TransactionEvent", event("Started", 0, "CablePluggedIn", transaction_id="old"))
    answer_of(ctx, "TransactionEvent", event("Started", 0, "CablePluggedIn", transaction_id="new",
                                             timestamp="2026-11-21T12:00:00Z"))  # fmt: skip
    answer_of(ctx, "TransactionEvent", event("Ended", 1, "EVDeparted", transaction_id="old",
                                             timestamp="2026-11-21T12:01:00Z"))  # fmt: skip
    assert ctx.values()["CP_1__Transaction__1__transaction_id"] == "new"
    assert ctx.values()["CP_1__Transaction__1__active"] is True
    record = ctx.transactions.active(CP, 1)
    assert record is not None and record.transaction_id == "new"


def test_an_event_without_evse_for_an_unknown_transaction_goes_under_evse_0(ctx: FakeContext) -> None:
    """Without evse and without earlier events, the transaction is filed under EVSE 0, and that is named."""
    _, inbound = handle(HANDLERS, ctx, "TransactionEvent", event("Updated", 5, "MeterValuePeriodic", evse=None))
    assert ctx.values()["CP_1__Transaction__0__active"] is True
    assert any("EVSE 0" in note for note in inbound.notes)


def test_a_reservation_used_by_a_transaction_is_published_used(ctx: FakeContext) -> None:
    """A Started event with the reservationId of a reservation ends it: Reservation status Used."""
    ctx.transactions.reserve(CP, 1, 4242, "2099-01-01T00:00:00Z")
    answer_of(ctx, "TransactionEvent", event("Started", 0, "Authorized", idToken=TOKEN, reservationId=4242))
    assert ctx.values()["CP_1__Reservation__1__status"] == "Used"
    assert ctx.transactions.reservation(CP, 1) is None


@pytest.mark.parametrize("status", ["Expired", "Removed"])
def test_reservation_status_update_publishes_its_status(ctx: FakeContext, status: str) -> None:
    """ReservationStatusUpdate publishes the status under the reservation's EVSE and forgets the reservation."""
    ctx.transactions.reserve(CP, 2, 77, "2099-01-01T00:00:00Z")
    answer_of(ctx, "ReservationStatusUpdate", {"reservationId": 77, "reservationUpdateStatus": status})
    assert ctx.values() == {"CP_1__Reservation__2__status": status}
    assert ctx.transactions.reservation(CP, 2) is None


def test_an_over_long_transaction_id_is_answered_but_not_stored(ctx: FakeContext) -> None:
    """A transactionId far beyond the schema's 36 characters is answered, named, and kept out of the store."""
    payload = event("Started", 0, "CablePluggedIn", transaction_id="x" * 1000)
    answer, inbound = handle(HANDLERS, ctx, "TransactionEvent", payload)
    assert answer == {} and ctx.published == [] and inbound.notes
    assert ctx.transactions.active(CP, 1) is None


# -- property: every handler, every valid request -------------------------------------------


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> FakeContext:
    """One context for all drawn requests of the module: the store sees them pile up, as a long session would."""
    return FakeContext(tmp_path_factory.mktemp("state"))


@pytest.mark.parametrize("action", sorted(STATION_MESSAGES))
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_valid_request_gets_a_valid_answer(shared: FakeContext, action: str, data: st.DataObject) -> None:
    """For any request valid against the 2.0.1 schema, the handler answers schema-valid and publishes JSON scalars."""
    payload = data.draw(requests(action, VERSION))
    assert_valid(action, MessageType.Call, payload, VERSION)  # the generator is honest
    answer, _ = handle(HANDLERS, shared, action, payload)
    assert_valid(action, MessageType.CallResult, answer, VERSION)
    for point in shared.take():
        assert point.key.startswith(f"{CP}__") and type(point.timestamp) is int
        assert point.value is None or isinstance(point.value, str | int | float | bool)
        assert not isinstance(point.value, float) or math.isfinite(point.value)
        json.dumps(point.value, allow_nan=False)
