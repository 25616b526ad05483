"""OCPP 2.1 handlers (ocpp21/handlers.py): 2.0.1's where the message is the same, 2.1's own; answers valid."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ocpp.messages import MessageType
from ocpp.v21.enums import Action

from connector.handling import CallRefusedError
from connector.ocpp21.handlers import HANDLERS
from connector.ocpp201 import handlers as v201
from connector.tests.handler_context import CP, FakeContext, assert_valid, event, handle, register, requests
from connector.tests.test_ocpp201_handlers import STATION_MESSAGES as STATION_MESSAGES_201

VERSION = "2.1"

# OCPP 2.1 Part 2: the messages a Charging Station sends that 2.0.1 has not (as CALLs:
# NotifyPeriodicEventStream travels as a SEND, which is answered by nobody).
NEW_STATION_MESSAGES = {
    "BatterySwap", "ClosePeriodicEventStream", "GetCertificateChainStatus", "NotifyDERAlarm", "NotifyDERStartStop",
    "NotifyPriorityCharging", "NotifySettlement", "OpenPeriodicEventStream", "PullDynamicScheduleUpdate",
    "ReportDERControl", "VatNumberValidation",
}  # fmt: skip
STATION_MESSAGES = STATION_MESSAGES_201 | NEW_STATION_MESSAGES


@pytest.fixture
def ctx(tmp_path: Path) -> FakeContext:
    return FakeContext(tmp_path)


def answer_of(ctx: FakeContext, action: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The handler's answer to a valid 2.1 request, checked against 2.1's response schema."""
    assert_valid(action, MessageType.Call, payload, VERSION)
    answer, _ = handle(HANDLERS, ctx, action, payload)
    assert_valid(action, MessageType.CallResult, answer, VERSION)
    return answer


def test_every_station_message_has_a_handler() -> None:
    """HANDLERS covers exactly the CALLs a 2.1 charging station sends, each a 2.1 action."""
    assert set(HANDLERS) == STATION_MESSAGES
    assert {action.value for action in Action} >= STATION_MESSAGES


def test_2_0_1_handlers_are_reused_where_the_message_is_the_same() -> None:
    """Every 2.0.1 message keeps its 2.0.1 handler, except those whose fields or answers differ in 2.1."""
    own = {
        "FirmwareStatusNotification", "LogStatusNotification", "PublishFirmwareStatusNotification",
        "SecurityEventNotification", "NotifyEVChargingNeeds",
    }  # fmt: skip
    assert {a for a in STATION_MESSAGES_201 if HANDLERS[a] is not v201.HANDLERS[a]} == own


SIMPLE: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    ("NotifyEVChargingNeeds", {"evseId": 1, "chargingNeeds": {"requestedEnergyTransfer": "AC_three_phase"}},
     {"status": "NoChargingProfile"}, {}),
    ("FirmwareStatusNotification", {"status": "Installed", "requestId": 3, "statusInfo": {"reasonCode": "NoError"}},
     {}, {"CP_1__FirmwareStatusNotification__status": "Installed", "CP_1__FirmwareStatusNotification__request_id": 3}),
    ("NotifyDERAlarm", {"controlType": "HVMustTrip", "gridEventFault": "OverVoltage", "alarmEnded": False,
                        "timestamp": "2026-11-21T10:00:00Z"}, {},
     {"CP_1__NotifyDERAlarm__control_type": "HVMustTrip", "CP_1__NotifyDERAlarm__grid_event_fault": "OverVoltage",
      "CP_1__NotifyDERAlarm__alarm_ended": False, "CP_1__NotifyDERAlarm__timestamp": "2026-11-21T10:00:00Z"}),
    ("NotifyDERStartStop", {"controlId": "fw-1", "started": True, "timestamp": "2026-11-21T10:00:00Z"}, {},
     {"CP_1__NotifyDERStartStop__control_id": "fw-1", "CP_1__NotifyDERStartStop__started": True,
      "CP_1__NotifyDERStartStop__timestamp": "2026-11-21T10:00:00Z"}),
    ("NotifyPriorityCharging", {"transactionId": "tx-9", "activated": True}, {},
     {"CP_1__NotifyPriorityCharging__transaction_id": "tx-9", "CP_1__NotifyPriorityCharging__activated": True}),
    ("BatterySwap", {"eventType": "BatteryIn", "requestId": 1, "idToken": {"idToken": "A1", "type": "Central"},
                     "batteryData": [{"evseId": 1, "serialNumber": "B-1", "soC": 80, "soH": 97}]}, {}, {}),
    ("ClosePeriodicEventStream", {"id": 3}, {}, {}),
    ("OpenPeriodicEventStream", {"constantStreamData": {"id": 3, "variableMonitoringId": 8,
                                                        "params": {"interval": 60, "values": 10}}},
     {"status": "Rejected"}, {}),
    ("PullDynamicScheduleUpdate", {"chargingProfileId": 1001}, {"status": "Rejected"}, {}),
    ("ReportDERControl", {"requestId": 5, "tbc": False}, {}, {}),
    ("NotifySettlement", {"pspRef": "psp-1", "status": "Settled", "settlementAmount": 12.34,
                          "settlementTime": "2026-11-21T10:00:00Z", "transactionId": "tx-9"}, {}, {}),
    ("VatNumberValidation", {"vatNumber": "DE123456789", "evseId": 1},
     {"status": "Rejected", "vatNumber": "DE123456789", "evseId": 1}, {}),
]  # fmt: skip


@pytest.mark.parametrize(("action", "payload", "answer", "published"), SIMPLE, ids=[s[0] for s in SIMPLE])
def test_answer_and_datapoints(
    ctx: FakeContext, action: str, payload: dict[str, Any], answer: dict[str, Any], published: dict[str, Any]
) -> None:
    """Each 2.1 station message gets its schema-valid business answer and publishes its datapoints."""
    got = answer_of(ctx, action, payload)
    assert {k: v for k, v in got.items() if k != "statusInfo"} == answer
    assert ctx.values() == published


def test_certificate_chain_status_answers_each_certificate_failed(ctx: FakeContext) -> None:
    """GetCertificateChainStatus: each certificate asked about, in order, with status Failed (no OCSP here)."""
    hashes = [
        {"hashAlgorithm": "SHA256", "issuerNameHash": f"n{i}", "issuerKeyHash": f"k{i}", "serialNumber": f"{i}a"}
        for i in range(2)
    ]
    payload = {"certificateStatusRequests": [
        {"certificateHashData": h, "source": "OCSP", "urls": ["http://ocsp.example.com"]} for h in hashes
    ]}  # fmt: skip
    answer = answer_of(ctx, "GetCertificateChainStatus", payload)
    assert [s["certificateHashData"] for s in answer["certificateStatus"]] == hashes
    assert {s["status"] for s in answer["certificateStatus"]} == {"Failed"}


@pytest.mark.parametrize(
    ("action", "payload"),
    [
        ("VatNumberValidation", {"vatNumber": "DE" + "1" * 40}),
        (
            "GetCertificateChainStatus",
            {"certificateStatusRequests": [{
                "certificateHashData": {
                    "hashAlgorithm": "SHA256", "issuerNameHash": "n" * 200, "issuerKeyHash": "k", "serialNumber": "1",
                },
                "source": "OCSP",
                "urls": ["http://ocsp.example.com"],
            }]},
        ),
    ],
    ids=["vatNumber beyond 20", "issuerNameHash beyond 128"],
)  # fmt: skip
def test_a_tolerated_field_that_the_answer_would_echo_is_refused(
    ctx: FakeContext, action: str, payload: dict[str, Any]
) -> None:
    """Over-long text the request's check tolerates would make our echoing answer invalid: the CALL is refused."""
    with pytest.raises(CallRefusedError) as refused:
        handle(HANDLERS, ctx, action, payload)
    assert refused.value.code == "PropertyConstraintViolation"
    assert "our answer cannot echo it" in refused.value.description


def test_a_2_1_transaction_with_its_new_fields_maps_as_2_0_1(ctx: FakeContext) -> None:
    """A 2.1 TransactionEvent (2.1 trigger reasons and fields) maps to the same keys; energy from its registers."""
    answer_of(
        ctx,
        "TransactionEvent",
        event(
            "Started",
            0,
            "Authorized",
            idToken={"idToken": "AB12", "type": "ISO14443"},
            preconditioningStatus="Ready",
            meterValue=register(2, "Transaction.Begin"),
        ),
    )
    answer_of(ctx, "TransactionEvent", event("Updated", 1, "LimitSet", evse=None, evseSleep=False))
    answer_of(ctx, "TransactionEvent", event("Ended", 2, "SoCLimitReached", info_stoppedReason="SOCLimitReached",
                                             costDetails={"totalCost": {"currency": "EUR", "typeOfCost": "NormalCost",
                                                                        "total": {"exclTax": 3.1}},
                                                          "totalUsage": {"energy": 1000, "chargingTime": 3600,
                                                                         "idleTime": 0}},
                                             meterValue=register(3, "Transaction.End")))  # fmt: skip
    values = ctx.values()
    assert (values["CP_1__Transaction__1__energy"], values["CP_1__Transaction__1__id_tag"]) == (1000, "AB12")


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> FakeContext:
    """One context for all drawn requests of the module, as a long session would see them."""
    return FakeContext(tmp_path_factory.mktemp("state"))


@pytest.mark.parametrize("action", sorted(STATION_MESSAGES))
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_valid_request_gets_a_valid_answer(shared: FakeContext, action: str, data: st.DataObject) -> None:
    """For any request valid against the 2.1 schema, the answer is valid against 2.1; datapoints are JSON scalars."""
    payload = data.draw(requests(action, VERSION))
    assert_valid(action, MessageType.Call, payload, VERSION)  # the generator is honest
    answer, _ = handle(HANDLERS, shared, action, payload)
    assert_valid(action, MessageType.CallResult, answer, VERSION)
    for point in shared.take():
        assert point.key.startswith(f"{CP}__") and type(point.timestamp) is int
        assert point.value is None or isinstance(point.value, str | int | float | bool)
        assert not isinstance(point.value, float) or math.isfinite(point.value)
        json.dumps(point.value, allow_nan=False)
