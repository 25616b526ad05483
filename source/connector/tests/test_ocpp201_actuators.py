"""ocpp201/ (actuators, variables, rate units): actuator values become OCPP 2.0.1 calls or refusals (INTERFACE.md 8)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ocpp.messages import MessageType, get_validator
from ocpp.v201.enums import Action

from connector.actuators import ACTUATORS, MAX_LIMIT, ChargerFacts, OcppCall, Refusal
from connector.authorization import IdTagPolicy
from connector.datapoints import Datapoint, note_phase_voltages, sampled_readings
from connector.handling import NOT_COVERED
from connector.ocpp201 import rate_units
from connector.ocpp201.actuators import CENTRAL_ACTIONS, EXAMPLES, TRANSLATIONS
from connector.ocpp201.variables import variables_status

VERSION = "2.0.1"
NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
FACTS = ChargerFacts(
    transaction_id="b7c1e2f0-1d6a-4c1e-9a51-4f0e6f2d1a33",
    reservation_id=7,
    new_reservation_id=lambda: 42,
    new_remote_start_id=lambda: 17,
    now=NOW,
)


def build(name: str, evse_id: int, value: Any, facts: ChargerFacts = FACTS) -> OcppCall | Refusal:
    return TRANSLATIONS[name].build(value, evse_id, facts)


def schema_errors(call: OcppCall, version: str = VERSION) -> list[str]:
    validator = get_validator(MessageType.Call, call.action, version)
    return [error.message for error in validator.iter_errors(call.payload)]


def answer_errors(action: str, payload: dict[str, Any], version: str = VERSION) -> list[str]:
    validator = get_validator(MessageType.CallResult, action, version)
    return [error.message for error in validator.iter_errors(payload)]


def profile(evse_id: int, unit: str, limit: float) -> dict[str, Any]:
    """The SetChargingProfile payload a limit must become."""
    schedule = {
        "id": 1000 + evse_id,
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}],
    }
    charging_profile = {
        "id": 1000 + evse_id,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": [schedule],
    }
    return {"evseId": evse_id, "chargingProfile": charging_profile}


def variable(component: str, name: str) -> dict[str, Any]:
    return {"attributeType": "Actual", "component": {"name": component}, "variable": {"name": name}}


CENTRAL = {"idToken": "04A2B3C4D5E6F7", "type": "Central"}

# (actuator, EVSE id, value from MQTT, the call that must reach the charger)
VALID: list[tuple[str, int, Any, OcppCall]] = [
    ("execute_send_charging_profile", 1, 11000, OcppCall("SetChargingProfile", profile(1, "W", 11000.0))),
    ("execute_send_charging_profile", 0, "7400", OcppCall("SetChargingProfile", profile(0, "W", 7400.0))),
    ("execute_send_charging_profile", 2, 3680.75, OcppCall("SetChargingProfile", profile(2, "W", 3680.7))),
    ("execute_send_charging_profile", 1, 0, OcppCall("SetChargingProfile", profile(1, "W", 0.0))),
    ("execute_send_charging_profile", 1, None, OcppCall("ClearChargingProfile", {"chargingProfileId": 1001})),
    ("execute_send_charging_profile_current", 1, 16, OcppCall("SetChargingProfile", profile(1, "A", 16.0))),
    ("execute_send_charging_profile_current", 3, "6.09", OcppCall("SetChargingProfile", profile(3, "A", 6.0))),
    ("execute_send_charging_profile_current", 3, None, OcppCall("ClearChargingProfile", {"chargingProfileId": 1003})),
    ("execute_trigger_message", 0, 0, OcppCall("TriggerMessage", {"requestedMessage": "BootNotification"})),
    ("execute_trigger_message", 0, 1, OcppCall("TriggerMessage", {"requestedMessage": "LogStatusNotification"})),
    ("execute_trigger_message", 0, "2", OcppCall("TriggerMessage", {"requestedMessage": "FirmwareStatusNotification"})),
    ("execute_trigger_message", 0, 3.0, OcppCall("TriggerMessage", {"requestedMessage": "Heartbeat"})),
    ("execute_trigger_message", 0, 4, OcppCall("TriggerMessage", {"requestedMessage": "MeterValues"})),
    ("execute_trigger_message", 0, " 5 ", OcppCall("TriggerMessage", {"requestedMessage": "StatusNotification"})),
    (
        "execute_trigger_message",
        0,
        "transactionevent",
        OcppCall("TriggerMessage", {"requestedMessage": "TransactionEvent"}),
    ),
    (
        "execute_trigger_message",
        0,
        "SignChargingStationCertificate",
        OcppCall("TriggerMessage", {"requestedMessage": "SignChargingStationCertificate"}),
    ),
    (
        "execute_remote_start_transaction",
        1,
        "04A2B3C4D5E6F7",
        OcppCall("RequestStartTransaction", {"idToken": CENTRAL, "remoteStartId": 17, "evseId": 1}),
    ),
    (
        "execute_remote_start_transaction",
        0,
        " 04A2B3C4D5E6F7 ",
        OcppCall("RequestStartTransaction", {"idToken": CENTRAL, "remoteStartId": 17}),
    ),
    (
        "execute_remote_start_transaction",
        2,
        "x" * 36,
        OcppCall(
            "RequestStartTransaction", {"idToken": {**CENTRAL, "idToken": "x" * 36}, "remoteStartId": 17, "evseId": 2}
        ),
    ),
    (
        "execute_remote_stop_transaction",
        1,
        True,
        OcppCall("RequestStopTransaction", {"transactionId": "b7c1e2f0-1d6a-4c1e-9a51-4f0e6f2d1a33"}),
    ),
    (
        "execute_change_availability",
        0,
        "Inoperative",
        OcppCall("ChangeAvailability", {"operationalStatus": "Inoperative"}),
    ),
    (
        "execute_change_availability",
        2,
        "operative",
        OcppCall("ChangeAvailability", {"operationalStatus": "Operative", "evse": {"id": 2}}),
    ),
    ("execute_reset", 0, "Soft", OcppCall("Reset", {"type": "OnIdle"})),
    ("execute_reset", 0, "hard", OcppCall("Reset", {"type": "Immediate"})),
    ("execute_reset", 0, "Immediate", OcppCall("Reset", {"type": "Immediate"})),
    ("execute_unlock_connector", 2, True, OcppCall("UnlockConnector", {"evseId": 2, "connectorId": 1})),
    (
        "execute_change_configuration",
        0,
        "OCPPCommCtrlr.HeartbeatInterval=300",
        OcppCall(
            "SetVariables",
            {"setVariableData": [{**variable("OCPPCommCtrlr", "HeartbeatInterval"), "attributeValue": "300"}]},
        ),
    ),
    (
        "execute_change_configuration",
        0,
        " SmartChargingCtrlr.RateUnit =A,W",
        OcppCall(
            "SetVariables",
            {"setVariableData": [{**variable("SmartChargingCtrlr", "RateUnit"), "attributeValue": "A,W"}]},
        ),
    ),
    (
        "execute_get_configuration",
        0,
        "SmartChargingCtrlr.RateUnit",
        OcppCall("GetVariables", {"getVariableData": [variable("SmartChargingCtrlr", "RateUnit")]}),
    ),
    (
        "execute_get_configuration",
        0,
        "OCPPCommCtrlr.HeartbeatInterval, SecurityCtrlr.SecurityProfile",
        OcppCall(
            "GetVariables",
            {
                "getVariableData": [
                    variable("OCPPCommCtrlr", "HeartbeatInterval"),
                    variable("SecurityCtrlr", "SecurityProfile"),
                ]
            },
        ),
    ),
    (
        "execute_clear_charging_profile",
        1,
        True,
        OcppCall("ClearChargingProfile", {"chargingProfileCriteria": {"evseId": 1}}),
    ),
    (
        "execute_clear_charging_profile",
        0,
        "x",
        OcppCall("ClearChargingProfile", {"chargingProfileCriteria": {"evseId": 0}}),
    ),
    ("execute_get_composite_schedule", 1, 3600, OcppCall("GetCompositeSchedule", {"duration": 3600, "evseId": 1})),
    ("execute_get_composite_schedule", 0, "86400", OcppCall("GetCompositeSchedule", {"duration": 86400, "evseId": 0})),
    (
        "execute_reserve_now",
        1,
        "04A2B3C4D5E6F7",
        OcppCall("ReserveNow", {"id": 42, "expiryDateTime": "2026-12-04T11:00:00Z", "idToken": CENTRAL, "evseId": 1}),
    ),
    (
        "execute_reserve_now",
        0,
        "04A2B3C4D5E6F7",
        OcppCall("ReserveNow", {"id": 42, "expiryDateTime": "2026-12-04T11:00:00Z", "idToken": CENTRAL}),
    ),
    ("execute_cancel_reservation", 1, True, OcppCall("CancelReservation", {"reservationId": 7})),
    (
        "execute_data_transfer",
        0,
        '{"vendor_id": "com.example", "message_id": "Hello", "data": {"a": [1, 2]}}',
        OcppCall("DataTransfer", {"vendorId": "com.example", "messageId": "Hello", "data": {"a": [1, 2]}}),
    ),
    ("execute_data_transfer", 0, {"vendor_id": "com.example"}, OcppCall("DataTransfer", {"vendorId": "com.example"})),
    (
        "execute_ocpp_call",
        0,
        '{"action": "GetBaseReport", "payload": {"requestId": 1, "reportBase": "FullInventory"}}',
        OcppCall("GetBaseReport", {"requestId": 1, "reportBase": "FullInventory"}),
    ),
    ("execute_ocpp_call", 0, {"action": "GetLocalListVersion"}, OcppCall("GetLocalListVersion", {})),
]
VALID_IDS = [f"{name[8:]}-{evse}-{value!r}"[:60] for name, evse, value, _ in VALID]


def test_every_actuator_has_a_2_0_1_translation() -> None:
    """The 2.0.1 table carries every actuator of the catalogue, and nothing else."""
    assert set(TRANSLATIONS) == set(ACTUATORS)


@pytest.mark.parametrize(("name", "evse_id", "value", "call"), VALID, ids=VALID_IDS)
def test_valid_values_become_the_2_0_1_call(name: str, evse_id: int, value: Any, call: OcppCall) -> None:
    """Each valid value becomes exactly the OCPP 2.0.1 call INTERFACE.md 8 describes."""
    assert build(name, evse_id, value) == call


@pytest.mark.parametrize(("name", "evse_id", "value", "call"), VALID, ids=VALID_IDS)
def test_every_call_built_is_schema_valid(name: str, evse_id: int, value: Any, call: OcppCall) -> None:
    """Every call built from a valid value passes the OCPP 2.0.1 CALL schema."""
    built = build(name, evse_id, value)
    assert isinstance(built, OcppCall), built
    assert schema_errors(built) == []


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_the_2_0_1_examples_are_accepted(name: str) -> None:
    """The examples offered for 2.0.1 where 1.6's would be refused become calls."""
    assert isinstance(build(name, 0, EXAMPLES[name]), OcppCall)


SECRET = "0xC0FFEE5EC12E7"
# (actuator, EVSE id, value, facts, what the refusal must say)
REFUSED: list[tuple[str, int, Any, ChargerFacts, str]] = [
    ("execute_send_charging_profile", 1, -1, FACTS, "value must be a number >= 0 (W) or null"),
    ("execute_send_charging_profile", 1, "eleven", FACTS, "got 'eleven'"),
    ("execute_send_charging_profile", 1, True, FACTS, "value must be a number"),
    ("execute_send_charging_profile", 1, math.nan, FACTS, "value must be a number"),
    ("execute_send_charging_profile", 1, [11000], FACTS, "value must be a number"),
    ("execute_send_charging_profile", 1, 1e308, FACTS, "at most 10000000 W"),
    ("execute_send_charging_profile", 1, 10_000_000.1, FACTS, "at most 10000000 W"),
    ("execute_send_charging_profile_current", 1, 10_000.1, FACTS, "at most 10000 A"),
    (
        "execute_send_charging_profile",
        1,
        9_000_000,
        ChargerFacts(allowed_rate_units=frozenset({"A"})),
        "is 13043 A for this charger, beyond 10000 A",
    ),
    ("execute_trigger_message", 0, 6, FACTS, "0 BootNotification, 1 LogStatusNotification"),
    ("execute_trigger_message", 0, "DiagnosticsStatusNotification", FACTS, "TransactionEvent"),
    ("execute_trigger_message", 0, "SignV2G20Certificate", FACTS, "got 'SignV2G20Certificate'"),  # 2.1 only
    ("execute_trigger_message", 0, True, FACTS, "got True"),
    ("execute_trigger_message", 0, "9" * 5000, FACTS, "(5000 characters)"),
    ("execute_remote_start_transaction", 1, "x" * 37, FACTS, "an id tag of at most 36 characters, got 37"),
    ("execute_remote_start_transaction", 1, "", FACTS, "value must be an id tag"),
    ("execute_remote_start_transaction", 1, 1234, FACTS, "value must be an id tag"),
    (
        "execute_remote_start_transaction",
        1,
        "DEADBEEF",
        ChargerFacts(id_tag_allowed=IdTagPolicy.allow_list(["04A2B3C4"]).allows),
        "id tag 'DEADBEEF' is not allowed (OCPP_ALLOWED_ID_TAGS)",
    ),
    ("execute_remote_stop_transaction", 2, True, ChargerFacts(), "no transaction is active on EVSE 2"),
    ("execute_change_availability", 1, "Off", FACTS, "value must be one of Operative, Inoperative"),
    ("execute_reset", 0, "Reboot", FACTS, "value must be one of Soft, Hard"),
    ("execute_unlock_connector", 0, True, FACTS, "UnlockConnector needs an EVSE id > 0"),
    ("execute_change_configuration", 0, 300, FACTS, 'value must be "Component.Variable=Value" text, got int'),
    ("execute_change_configuration", 0, "HeartbeatInterval=300", FACTS, '"Component.Variable=Value" (21 characters'),
    ("execute_change_configuration", 0, ".HeartbeatInterval=300", FACTS, '"Component.Variable=Value"'),
    ("execute_change_configuration", 0, "OCPPCommCtrlr.=300", FACTS, '"Component.Variable=Value"'),
    ("execute_change_configuration", 0, "OCPPCommCtrlr.HeartbeatInterval", FACTS, '"Component.Variable=Value"'),
    (
        "execute_change_configuration",
        0,
        f"{'C' * 51}.HeartbeatInterval=300",
        FACTS,
        "SetVariables payload breaks the OCPP 2.0.1 schema: setVariableData/0/component/name: must be at most 50",
    ),
    ("execute_get_configuration", 0, "", FACTS, 'OCPP 2.x has no "read all" (GetBaseReport, via execute_ocpp_call)'),
    ("execute_get_configuration", 0, "  ", FACTS, 'no "read all"'),
    ("execute_get_configuration", 0, None, FACTS, '"Component.Variable" (several comma-separated), got None'),
    ("execute_get_configuration", 0, "HeartbeatInterval", FACTS, "'HeartbeatInterval' is not"),
    ("execute_get_configuration", 0, "OCPPCommCtrlr.HeartbeatInterval,", FACTS, "'' is not"),
    ("execute_get_configuration", 0, ",".join(["A.B"] * 51), FACTS, "value names 51 variables; at most 50"),
    (
        "execute_get_configuration",
        0,
        f"OCPPCommCtrlr.{'V' * 51}",
        FACTS,
        "GetVariables payload breaks the OCPP 2.0.1 schema: getVariableData/0/variable/name: must be at most 50",
    ),
    ("execute_get_composite_schedule", 1, 0, FACTS, "1..2147483647"),
    ("execute_get_composite_schedule", 1, 2**31, FACTS, "1..2147483647"),
    ("execute_get_composite_schedule", 1, 1.5, FACTS, "whole seconds"),
    ("execute_reserve_now", 1, "x" * 37, FACTS, "at most 36 characters, got 37"),
    (
        "execute_reserve_now",
        1,
        "DEADBEEF",
        ChargerFacts(id_tag_allowed=IdTagPolicy.allow_list(["04A2B3C4"]).allows),
        "is not allowed",
    ),
    ("execute_cancel_reservation", 3, True, ChargerFacts(), "no reservation is open on EVSE 3"),
    ("execute_data_transfer", 0, "not json", FACTS, "value must be JSON text of"),
    ("execute_data_transfer", 0, '{"message_id": "Hello"}', FACTS, "with a vendor_id string"),
    (
        "execute_data_transfer",
        0,
        '{"vendor_id": "v", "message_id": 5}',
        FACTS,
        "DataTransfer payload breaks the OCPP 2.0.1 schema: messageId: must be of type string",
    ),
    ("execute_data_transfer", 0, '{"vendor_id": "v", "data": {"a": Infinity}}', FACTS, "value must be JSON text"),
    ("execute_ocpp_call", 0, '{"action": "RemoteStartTransaction"}', FACTS, "one a central system sends in OCPP 2.0.1"),
    ("execute_ocpp_call", 0, '{"action": "TransactionEvent"}', FACTS, "one a central system sends in OCPP 2.0.1"),
    ("execute_ocpp_call", 0, '{"action": "BootNotification"}', FACTS, "one a central system sends"),
    ("execute_ocpp_call", 0, '{"action": "GetTariffs", "payload": {"evseId": 1}}', FACTS, "got 'GetTariffs'"),  # 2.1
    ("execute_ocpp_call", 0, '{"action": [1]}', FACTS, "one a central system sends"),
    ("execute_ocpp_call", 0, '{"action": "Reset", "payload": [1]}', FACTS, "payload must be a JSON object"),
    ("execute_ocpp_call", 0, '{"action": "Reset", "payload": {}}', FACTS, "payload: 'type' is a required property"),
    (
        "execute_ocpp_call",
        0,
        '{"action": "Reset", "payload": {"type": "Hard"}}',
        FACTS,
        "Reset payload breaks the OCPP 2.0.1 schema: type: must be one of Immediate, OnIdle",
    ),
    (
        "execute_ocpp_call",
        0,
        json.dumps(
            {
                "action": "RequestStartTransaction",
                "payload": {"idToken": {"idToken": "DEADBEEF", "type": "ISO14443"}, "remoteStartId": 1},
            }
        ),
        ChargerFacts(id_tag_allowed=IdTagPolicy.allow_list(["04A2B3C4"]).allows),
        "id tag 'DEADBEEF' is not allowed",
    ),
    (
        "execute_ocpp_call",
        0,
        json.dumps(
            {
                "action": "ReserveNow",
                "payload": {
                    "id": 1,
                    "expiryDateTime": "2026-12-04T11:00:00Z",
                    "idToken": {"idToken": "DEADBEEF", "type": "ISO14443"},
                },
            }
        ),
        ChargerFacts(id_tag_allowed=IdTagPolicy.allow_list(["04A2B3C4"]).allows),
        "id tag 'DEADBEEF' is not allowed",
    ),
]
REFUSED_IDS = [f"{name[8:]}-{value!r}"[:60] for name, _, value, _, _ in REFUSED]


@pytest.mark.parametrize(("name", "evse_id", "value", "facts", "reason"), REFUSED, ids=REFUSED_IDS)
def test_bad_values_are_refused_with_a_specific_reason(
    name: str, evse_id: int, value: Any, facts: ChargerFacts, reason: str
) -> None:
    """A value of the wrong type, range or shape is refused, nothing is sent, and the reason says what is wrong."""
    refusal = build(name, evse_id, value, facts)
    assert isinstance(refusal, Refusal), refusal
    assert reason in refusal.reason
    assert len(refusal.reason) <= 400


MEGABYTE = "x" * 1_000_000


@pytest.mark.parametrize("name", sorted(TRANSLATIONS))
def test_a_megabyte_value_is_refused_in_a_few_words(name: str) -> None:
    """A 1 MB value is refused with a reason of at most 400 characters, or (where any value will do) sent."""
    result = build(name, 1, MEGABYTE)
    assert isinstance(result, OcppCall) or len(result.reason) <= 400, result


SECRET_VALUES: list[tuple[str, Any]] = [
    ("execute_change_configuration", f"SecurityCtrlr.BasicAuthPassword {SECRET}"),  # no "="
    ("execute_change_configuration", f"BasicAuthPassword={SECRET}"),  # no component
    ("execute_change_configuration", f"SecurityCtrlr.BasicAuthPassword:{SECRET}"),
    ("execute_change_configuration", f"SecurityCtrlr.BasicAuthPassword={SECRET * 80}"),  # beyond maxLength 1000
    ("execute_change_configuration", f"{'C' * 60}.BasicAuthPassword={SECRET}"),  # a name beyond maxLength 50
    (
        "execute_ocpp_call",
        json.dumps(
            {
                "action": "SetVariables",
                "payload": {
                    "setVariableData": [
                        {**variable("SecurityCtrlr", "BasicAuthPassword"), "attributeValue": SECRET * 80}
                    ]
                },
            }
        ),
    ),
    (
        "execute_ocpp_call",
        json.dumps(
            {
                "action": "SetVariables",
                "payload": {
                    "setVariableData": [{**variable("SecurityCtrlr", "BasicAuthPassword"), "attributeValue": [SECRET]}]
                },
            }
        ),
    ),
    ("execute_data_transfer", json.dumps({"vendor_id": SECRET * 20, "data": "password"})),
]


@pytest.mark.parametrize(("name", "value"), SECRET_VALUES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(SECRET_VALUES)])
def test_refusals_never_quote_a_secret(name: str, value: Any) -> None:
    """A mistyped BasicAuthPassword, or an operator's payload the schema refuses, is refused without its value."""
    refusal = build(name, 0, value)
    assert isinstance(refusal, Refusal), refusal
    assert SECRET[2:] not in refusal.reason


def test_a_secret_set_is_sent_as_it_is() -> None:
    """The value of a SetVariables is sent untouched (not stripped, not quoted): spaces may be part of a password."""
    call = build("execute_change_configuration", 0, f"SecurityCtrlr.BasicAuthPassword= {SECRET} ")
    assert isinstance(call, OcppCall)
    assert call.payload["setVariableData"][0]["attributeValue"] == f" {SECRET} "


# -- charging limits ------------------------------------------------------------------

CONVERSIONS = [
    # (value, unit asked, allowed, voltages measured, phases, expected limit, expected unit)
    (11000, "W", frozenset({"A"}), (), 3, 15.9, "A"),  # 11000 / (230 * 3) = 15.94
    (11000, "W", frozenset({"A"}), (240.0,), 3, 15.2, "A"),  # 11000 / 720 = 15.27
    (11000, "W", frozenset({"A"}), (231.0, 229.0), 3, 15.8, "A"),  # the highest: 11000 / 693 = 15.87
    (3680, "W", frozenset({"A"}), (), 1, 16.0, "A"),
    (16, "A", frozenset({"W"}), (), 3, 11040.0, "W"),
    (16, "A", frozenset({"W"}), (231.0, 229.0), 3, 10992.0, "W"),  # the lowest: 16 * 229 * 3
    (11000, "W", frozenset({"A", "W"}), (240.0,), 3, 11000.0, "W"),
    (16, "A", None, (), 3, 16.0, "A"),  # not known: sent as asked
    (10_000_000, "W", frozenset({"W"}), (), 3, 10_000_000.0, "W"),  # the largest power limit
    (10_000, "A", frozenset({"A"}), (), 3, 10_000.0, "A"),  # the largest current limit
]


@pytest.mark.parametrize(("value", "unit", "allowed", "voltages", "phases", "limit", "sent_unit"), CONVERSIONS)
def test_limits_are_converted_to_a_unit_the_charger_allows(
    value: float,
    unit: str,
    allowed: frozenset[str] | None,
    voltages: tuple[float, ...],
    phases: int,
    limit: float,
    sent_unit: str,
) -> None:
    """W <-> A over the measured voltage that gives the smaller limit (else 230 V), rounded down to 0.1."""
    name = "execute_send_charging_profile" if unit == "W" else "execute_send_charging_profile_current"
    facts = ChargerFacts(allowed_rate_units=allowed, voltages=voltages, phases=phases)
    call = build(name, 1, value, facts)
    assert call == OcppCall("SetChargingProfile", profile(1, sent_unit, limit))
    assert schema_errors(call) == []


def test_a_floating_phase_does_not_weaken_a_power_limit() -> None:
    """After L1 231 V, L2 229 V, L3 0.8 V, 11,000 W reach an A-only 2.0.1 charger as 15.8 A, not 4,583 A."""
    samples = [
        {"measurand": "Voltage", "phase": phase, "unit": "V", "value": volts}
        for phase, volts in (("L1-N", "231"), ("L2-N", "229"), ("L3-N", "0.8"))
    ]
    voltages: dict[str, float] = {}
    readings = sampled_readings("CP", 1, [{"timestamp": "2026-12-04T10:00:00Z", "sampledValue": samples}], 0, [])
    note_phase_voltages(readings, voltages)
    facts = ChargerFacts(allowed_rate_units=frozenset({"A"}), voltages=tuple(voltages.values()))
    call = build("execute_send_charging_profile", 1, 11000, facts)
    assert call == OcppCall("SetChargingProfile", profile(1, "A", 15.8))
    assert math.floor(11000 / (231 * 3) * 10) / 10 == 15.8


@given(st.floats(min_value=0, max_value=MAX_LIMIT["W"], allow_nan=False, allow_infinity=False))
def test_rounding_never_exceeds_the_asked_limit(value: float) -> None:
    """For any limit, the one sent is at most the one asked and less than 0.1 below it, and is schema-valid."""
    call = build("execute_send_charging_profile", 1, value)
    assert isinstance(call, OcppCall)
    sent = call.payload["chargingProfile"]["chargingSchedule"][0]["chargingSchedulePeriod"][0]["limit"]
    assert sent <= value
    assert value - sent < 0.1 + 1e-9 * max(1.0, value)
    assert schema_errors(call) == []


def profile_id(name: str, evse_id: int) -> int:
    call = build(name, evse_id, 10)
    assert isinstance(call, OcppCall)
    return int(call.payload["chargingProfile"]["id"])


def test_each_evse_has_its_own_fixed_profile_id_which_null_clears() -> None:
    """Limits on one EVSE share one profile id (each replaces the last), other EVSEs' differ, null clears that id."""
    ids = {}
    for evse_id in range(4):
        sent = {
            profile_id(name, evse_id)
            for name in ("execute_send_charging_profile", "execute_send_charging_profile_current")
        }
        assert len(sent) == 1
        ids[evse_id] = sent.pop()
        cleared = build("execute_send_charging_profile", evse_id, None)
        assert cleared == OcppCall("ClearChargingProfile", {"chargingProfileId": ids[evse_id]})
    assert len(set(ids.values())) == 4


# -- answers --------------------------------------------------------------------------

AT = 1_764_842_400_000


def answer(name: str, evse_id: int, value: Any, payload: dict[str, Any]) -> list[Datapoint]:
    call = build(name, evse_id, value)
    assert isinstance(call, OcppCall)
    assert answer_errors(call.action, payload) == []  # a real-looking answer, valid for 2.0.1
    return TRANSLATIONS[name].answer("CP_1", evse_id, call, payload, AT)


COMPOSITE = {
    "status": "Accepted",
    "schedule": {
        "evseId": 1,
        "duration": 3600,
        "scheduleStart": "2026-12-04T10:00:00Z",
        "chargingRateUnit": "A",
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}, {"startPeriod": 1800, "limit": 10.0}],
    },
}


def test_a_composite_schedule_answer_becomes_1_6s_sensors() -> None:
    """GetCompositeSchedule's answer lands under <cp>__CompositeSchedule__<c>__... with 1.6's field names."""
    points = answer("execute_get_composite_schedule", 1, 3600, COMPOSITE)
    assert {p.key: p.value for p in points} == {
        "CP_1__CompositeSchedule__1__status": "Accepted",
        "CP_1__CompositeSchedule__1__schedule_start": "2026-12-04T10:00:00Z",
        "CP_1__CompositeSchedule__1__duration": 3600,
        "CP_1__CompositeSchedule__1__charging_rate_unit": "A",
        "CP_1__CompositeSchedule__1__limit": 16.0,
        "CP_1__CompositeSchedule__1__periods": json.dumps(COMPOSITE["schedule"]["chargingSchedulePeriod"]),  # type: ignore[index]
    }
    assert all(p.timestamp == AT for p in points)


def test_a_rejected_composite_schedule_says_so_with_empty_fields() -> None:
    """A Rejected answer without a schedule publishes its status and nothing made up."""
    points = {p.key: p.value for p in answer("execute_get_composite_schedule", 2, 60, {"status": "Rejected"})}
    assert points["CP_1__CompositeSchedule__2__status"] == "Rejected"
    assert points["CP_1__CompositeSchedule__2__limit"] is None
    assert points["CP_1__CompositeSchedule__2__periods"] == "[]"


@pytest.mark.parametrize(("evse_id", "status"), [(1, "Accepted"), (0, "Occupied")])
def test_a_reservation_answer_becomes_1_6s_reservation_sensors(evse_id: int, status: str) -> None:
    """ReserveNow's answer publishes the reservation under <cp>__Reservation__<c>__... as 1.6 does."""
    points = answer("execute_reserve_now", evse_id, "04A2B3C4D5E6F7", {"status": status})
    assert {p.key: p.value for p in points} == {
        f"CP_1__Reservation__{evse_id}__reservation_id": 42,
        f"CP_1__Reservation__{evse_id}__id_tag": "04A2B3C4D5E6F7",
        f"CP_1__Reservation__{evse_id}__expiry_date": "2026-12-04T11:00:00Z",
        f"CP_1__Reservation__{evse_id}__status": status,
    }


@pytest.mark.parametrize(("status", "published"), [("Accepted", ["Cancelled"]), ("Rejected", [])])
def test_a_cancelled_reservation_is_published_only_when_accepted(status: str, published: list[str]) -> None:
    """CancelReservation Accepted marks the reservation Cancelled; Rejected leaves it as it was."""
    points = answer("execute_cancel_reservation", 1, True, {"status": status})
    assert [p.value for p in points if p.key == "CP_1__Reservation__1__status"] == published


def result(component: str, name: str, status: str, value: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"attributeStatus": status, "component": {"name": component}, "variable": {"name": name}}
    if value is not None:
        found["attributeValue"] = value
    return found


def test_variables_read_become_variable_sensors() -> None:
    """Each variable asked for and Accepted becomes <cp>__Variable__<Component>__<Variable> = its value."""
    payload = {
        "getVariableResult": [
            result("OCPPCommCtrlr", "HeartbeatInterval", "Accepted", "300"),
            result("SecurityCtrlr", "SecurityProfile", "Accepted", "2"),
        ]
    }
    points = answer(
        "execute_get_configuration", 0, "OCPPCommCtrlr.HeartbeatInterval,SecurityCtrlr.SecurityProfile", payload
    )
    assert points == [
        Datapoint("CP_1__Variable__OCPPCommCtrlr__HeartbeatInterval", "300", AT),
        Datapoint("CP_1__Variable__SecurityCtrlr__SecurityProfile", "2", AT),
    ]


def test_a_variables_answer_mints_only_the_keys_asked_for() -> None:
    """Unknown or rejected variables publish nothing, ones not asked for are ignored, keys keep the asked spelling."""
    payload = {
        "getVariableResult": [
            result("ocppcommctrlr", "heartbeatinterval", "Accepted", "300"),  # echoed in another case
            result("SecurityCtrlr", "SecurityProfile", "UnknownVariable"),
            result("SecurityCtrlr", "BasicAuthPassword", "Accepted", "not asked for"),
        ]
    }
    points = answer(
        "execute_get_configuration", 0, "OCPPCommCtrlr.HeartbeatInterval,SecurityCtrlr.SecurityProfile", payload
    )
    assert points == [Datapoint("CP_1__Variable__OCPPCommCtrlr__HeartbeatInterval", "300", AT)]


def test_a_secret_variable_read_is_not_published() -> None:
    """A station answering a password's value (it should not: WriteOnly) has it kept out of MQTT, as NotifyReport's."""
    payload = {
        "getVariableResult": [
            result("SecurityCtrlr", "BasicAuthPassword", "Accepted", "hunter2"),
            result("OCPPCommCtrlr", "HeartbeatInterval", "Accepted", "300"),
        ]
    }
    points = answer(
        "execute_get_configuration", 0, "SecurityCtrlr.BasicAuthPassword,OCPPCommCtrlr.HeartbeatInterval", payload
    )
    assert points == [Datapoint("CP_1__Variable__OCPPCommCtrlr__HeartbeatInterval", "300", AT)]


def test_a_variable_answered_twice_counts_once() -> None:
    """A charger repeating a variable in its answer publishes its first result only."""
    payload = {
        "getVariableResult": [
            result("OCPPCommCtrlr", "HeartbeatInterval", "Accepted", "300"),
            result("OCPPCommCtrlr", "HeartbeatInterval", "Accepted", "5"),
        ]
    }
    points = answer("execute_get_configuration", 0, "OCPPCommCtrlr.HeartbeatInterval", payload)
    assert points == [Datapoint("CP_1__Variable__OCPPCommCtrlr__HeartbeatInterval", "300", AT)]


STATUSES: list[tuple[str, list[dict[str, Any]], str, list[str]]] = [
    # (results field, results, status, what the WARNING names)
    ("getVariableResult", [result("A", "B", "Accepted", "1")], "Accepted", []),
    (
        "getVariableResult",
        [result("A", "B", "Accepted", "1"), result("A", "C", "UnknownVariable")],
        "UnknownVariable",
        ["'A.C' 'UnknownVariable'"],
    ),
    (
        "getVariableResult",
        [result("X", "Y", "UnknownComponent"), result("A", "C", "Rejected")],
        "UnknownComponent",
        ["'X.Y' 'UnknownComponent'", "'A.C' 'Rejected'"],
    ),
    ("setVariableResult", [result("OCPPCommCtrlr", "HeartbeatInterval", "Accepted")], "Accepted", []),
    (
        "setVariableResult",
        [result("SecurityCtrlr", "BasicAuthPassword", "RebootRequired")],
        "RebootRequired",
        ["BasicAuthPassword"],
    ),
    (
        "setVariableResult",
        [result("SecurityCtrlr", "SecurityProfile", "Rejected")],
        "Rejected",
        ["'SecurityCtrlr.SecurityProfile' 'Rejected'"],
    ),
    ("setVariableResult", [result("A", f"V{i}", "Rejected") for i in range(8)], "Rejected", ["'A.V4'", "and 3 more"]),
    ("getVariableResult", [result("C" * 1000, "V", "Rejected")], "Rejected", ["... (1002 characters)"]),
]


@pytest.mark.parametrize(("field", "results", "status", "named"), STATUSES)
def test_variables_status_is_accepted_or_the_first_other_status_with_a_warning(
    field: str, results: list[dict[str, Any]], status: str, named: list[str]
) -> None:
    """Accepted if every variable was; else the first other status, and a WARNING naming each variable not Accepted."""
    found, warning = variables_status(field)({field: results})
    assert found == status
    if not named:
        assert warning is None
    else:
        assert warning is not None and all(words in warning for words in named)
        assert len(warning) <= 600


@pytest.mark.parametrize(
    ("name", "value"),
    [("execute_change_configuration", "OCPPCommCtrlr.HeartbeatInterval=300"), ("execute_get_configuration", "A.B")],
)
def test_the_configuration_actuators_take_their_status_from_the_results(name: str, value: str) -> None:
    """SetVariables and GetVariables answers have no top-level status: theirs comes from each variable's."""
    field = "setVariableResult" if name == "execute_change_configuration" else "getVariableResult"
    status = TRANSLATIONS[name].status
    assert status({field: [result("A", "B", "Accepted")]}) == ("Accepted", None)
    assert status({field: [result("A", "B", "Rejected")]})[0] == "Rejected"


@pytest.mark.parametrize(
    ("data", "published"), [({"a": [1, 2]}, '{"a": [1, 2]}'), ("text", "text"), (5, 5), (None, None)]
)
def test_data_transfer_data_is_published_as_a_json_scalar(data: Any, published: Any) -> None:
    """2.x DataTransfer data may be any JSON: scalars are published as they are, the rest as JSON text."""
    payload: dict[str, Any] = {"status": "Accepted"}
    if data is not None:
        payload["data"] = data
    points = answer("execute_data_transfer", 0, '{"vendor_id": "com.example"}', payload)
    assert points == [Datapoint("CP_1__execute_data_transfer__data", published, AT)]


def test_an_operators_call_answer_is_published_whole() -> None:
    """execute_ocpp_call's answer becomes <cp>__execute_ocpp_call__response as JSON text."""
    points = answer("execute_ocpp_call", 0, {"action": "GetLocalListVersion"}, {"versionNumber": 3})
    assert points == [Datapoint("CP_1__execute_ocpp_call__response", '{"versionNumber": 3}', AT)]


# -- execute_ocpp_call's actions ------------------------------------------------------

CHARGING_STATION_ACTIONS = {
    "Authorize",
    "BootNotification",
    "ClearedChargingLimit",
    "FirmwareStatusNotification",
    "Get15118EVCertificate",
    "GetCertificateStatus",
    "Heartbeat",
    "LogStatusNotification",
    "MeterValues",
    "NotifyChargingLimit",
    "NotifyCustomerInformation",
    "NotifyDisplayMessages",
    "NotifyEVChargingNeeds",
    "NotifyEVChargingSchedule",
    "NotifyEvent",
    "NotifyMonitoringReport",
    "NotifyReport",
    "PublishFirmwareStatusNotification",
    "ReportChargingProfiles",
    "ReservationStatusUpdate",
    "SecurityEventNotification",
    "SignCertificate",
    "StatusNotification",
    "TransactionEvent",
}


def test_the_central_actions_are_2_0_1s_csms_messages() -> None:
    """execute_ocpp_call sends every 2.0.1 message a CSMS sends, DataTransfer included, and none a station sends."""
    assert {action.value for action in Action} == CENTRAL_ACTIONS | CHARGING_STATION_ACTIONS
    assert not CENTRAL_ACTIONS & CHARGING_STATION_ACTIONS
    assert "DataTransfer" in CENTRAL_ACTIONS


# -- rate units -----------------------------------------------------------------------


def rate_unit_answer(status: str = "Accepted", value: str | None = "A,W") -> dict[str, Any]:
    return {"getVariableResult": [result("SmartChargingCtrlr", "RateUnit", status, value)]}


def test_the_rate_unit_read_is_a_schema_valid_get_variables() -> None:
    """After a boot the connector asks GetVariables for SmartChargingCtrlr.RateUnit's Actual value."""
    call = rate_units.RATE_UNITS.call()
    assert call == OcppCall("GetVariables", {"getVariableData": [variable("SmartChargingCtrlr", "RateUnit")]})
    assert schema_errors(call) == []
    assert rate_units.RATE_UNITS.key == "SmartChargingCtrlr.RateUnit"


READ = rate_units.rate_unit_call()
OTHER_READ = OcppCall("GetVariables", {"getVariableData": [variable("OCPPCommCtrlr", "HeartbeatInterval")]})
BOTH_READ = OcppCall(
    "GetVariables",
    {"getVariableData": [variable("OCPPCommCtrlr", "HeartbeatInterval"), variable("smartchargingctrlr", "rateunit")]},
)
UNITS: list[tuple[OcppCall, dict[str, Any], object]] = [
    (READ, rate_unit_answer(value="A,W"), frozenset({"A", "W"})),
    (READ, rate_unit_answer(value="W"), frozenset({"W"})),
    (READ, rate_unit_answer(value="A"), frozenset({"A"})),
    (READ, rate_unit_answer(value="a, w"), frozenset({"A", "W"})),
    (READ, rate_unit_answer(value="W;A"), frozenset({"A", "W"})),
    (READ, rate_unit_answer(value=""), None),
    (READ, rate_unit_answer(value="Amps"), None),
    (READ, rate_unit_answer(value=None), None),
    (READ, rate_unit_answer("UnknownVariable"), None),
    (READ, rate_unit_answer("Rejected"), None),
    (READ, {"getVariableResult": [result("OCPPCommCtrlr", "HeartbeatInterval", "Accepted", "W")]}, None),
    (OTHER_READ, {"getVariableResult": [result("OCPPCommCtrlr", "HeartbeatInterval", "Accepted", "300")]}, NOT_COVERED),
    (BOTH_READ, rate_unit_answer(value="W"), frozenset({"W"})),
    (OcppCall("SetVariables", {"setVariableData": []}), rate_unit_answer(), NOT_COVERED),
    # An operator's read of another attribute, or of one EVSE's instance, is not the station's rate unit.
    (
        OcppCall("GetVariables", {"getVariableData": [
            {**variable("SmartChargingCtrlr", "RateUnit"), "attributeType": "Target"},
        ]}),
        rate_unit_answer(value="W"),
        NOT_COVERED,
    ),
    (
        OcppCall("GetVariables", {"getVariableData": [{
            "component": {"name": "SmartChargingCtrlr", "evse": {"id": 1}}, "variable": {"name": "RateUnit"},
        }]}),
        rate_unit_answer(value="W"),
        NOT_COVERED,
    ),
    # A Target result first in the answer does not shadow the Actual one.
    (
        READ,
        {"getVariableResult": [
            {**rate_unit_answer(value="W")["getVariableResult"][0], "attributeType": "Target"},
            *rate_unit_answer(value="A,W")["getVariableResult"],
        ]},
        frozenset({"A", "W"}),
    ),
]  # fmt: skip


@pytest.mark.parametrize(("call", "payload", "units"), UNITS)
def test_rate_units_from_a_get_variables_answer(call: OcppCall, payload: dict[str, Any], units: object) -> None:
    """Spellings of "A,W" are read; unknown, rejected or missing is None (both assumed); other reads cover nothing."""
    assert rate_units.RATE_UNITS.units(call, payload) == units


def test_the_rate_unit_read_is_published_by_its_actuators_answer_mapping() -> None:
    """What the read returned appears as <cp>__Variable__SmartChargingCtrlr__RateUnit, as an operator's read would."""
    assert rate_units.RATE_UNITS.actuator == "execute_get_configuration"
    mapping = TRANSLATIONS[rate_units.RATE_UNITS.actuator].answer
    assert answer_errors("GetVariables", rate_unit_answer()) == []
    assert mapping("CP_1", 0, READ, rate_unit_answer(), AT) == [
        Datapoint("CP_1__Variable__SmartChargingCtrlr__RateUnit", "A,W", AT)
    ]
