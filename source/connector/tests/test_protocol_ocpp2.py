"""Schema checks and error codes for OCPP 2.0.1 and 2.1: the same tolerance as 1.6, in the version's own words.

OCPP-J 2.0.1 (and 2.1, whose table is the same) respelt two of 1.6's error codes
(FormationViolation -> FormatViolation, OccurenceConstraintViolation ->
OccurrenceConstraintViolation) and added MessageTypeNotSupported and RpcFrameworkError; a
missing required field is an occurrence constraint there, a ProtocolError in 1.6.
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest
from ocpp.messages import MessageType, get_validator

from connector.protocol import (
    ERROR_CODES_2X,
    MAX_ARRAY_ITEMS,
    MAX_SAMPLED_VALUES,
    Verdict,
    capped_sampled_values,
    check_payload,
    refusal_for_keyword,
    schema_fields,
)

CALL, RESULT = MessageType.Call, MessageType.CallResult
NOW = "2026-11-21T10:15:00.000Z"

# OCPP-J's tables of valid error codes: 1.6 (ten), 2.0.1 and 2.1 (twelve).
CODES_16 = {
    "NotImplemented",
    "NotSupported",
    "InternalError",
    "ProtocolError",
    "SecurityError",
    "FormationViolation",
    "PropertyConstraintViolation",
    "OccurenceConstraintViolation",
    "TypeConstraintViolation",
    "GenericError",
}
CODES_2X = {
    "FormatViolation",
    "GenericError",
    "InternalError",
    "MessageTypeNotSupported",
    "NotImplemented",
    "NotSupported",
    "OccurrenceConstraintViolation",
    "PropertyConstraintViolation",
    "ProtocolError",
    "RpcFrameworkError",
    "SecurityError",
    "TypeConstraintViolation",
}

# Real-looking charger frames, as an OCPP 2.0.1 charging station sends them (2.1 alike).
BOOT = {
    "reason": "PowerUp",
    "chargingStation": {
        "model": "Wallbox 22",
        "vendorName": "ACME",
        "serialNumber": "WB22-000815",
        "firmwareVersion": "2.4.1",
        "modem": {"iccid": "8949000000000000001", "imsi": "262010000000001"},
    },
}
STATUS = {"timestamp": NOW, "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1}
SAMPLES = [
    {"value": 7368.2, "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "W"}},
    {"value": 15.4, "measurand": "Energy.Active.Import.Register", "unitOfMeasure": {"unit": "kWh", "multiplier": 0}},
    {"value": 230.1, "measurand": "Voltage", "phase": "L1-N", "location": "Outlet"},
    {"value": 32, "measurand": "Current.Import", "phase": "L1", "unitOfMeasure": {"unit": "A"}},
]
METER = {"evseId": 1, "meterValue": [{"timestamp": NOW, "sampledValue": SAMPLES}]}
STARTED = {
    "eventType": "Started",
    "timestamp": NOW,
    "triggerReason": "Authorized",
    "seqNo": 0,
    "transactionInfo": {"transactionId": "f3b1c2d4-0001", "chargingState": "EVConnected"},
    "idToken": {"idToken": "04A2B3C4D5E6F7", "type": "ISO14443"},
    "evse": {"id": 1, "connectorId": 1},
    "meterValue": [
        {
            "timestamp": NOW,
            "sampledValue": [
                {"value": 15400, "measurand": "Energy.Active.Import.Register", "context": "Transaction.Begin"}
            ],
        }
    ],
}
AUTHORIZE = {"idToken": {"idToken": "04A2B3C4D5E6F7", "type": "ISO14443"}}
HASH_DATA = {
    "hashAlgorithm": "SHA256",
    "issuerNameHash": "a" * 64,
    "issuerKeyHash": "b" * 64,
    "serialNumber": "1F2E",
    "responderURL": "http://ocsp.example.com",
}
EV_NEEDS = {
    "evseId": 1,
    "chargingNeeds": {
        "requestedEnergyTransfer": "DC",
        "dcChargingParameters": {"evMaxCurrent": 125, "evMaxVoltage": 450, "stateOfCharge": 42},
    },
}


def edited(payload: dict[str, Any], value: Any, *path: str | int) -> dict[str, Any]:
    """A copy of `payload` with the field at `path` set to `value`, or removed where `value` is DELETE."""
    payload = copy.deepcopy(payload)
    parent: Any = payload
    for step in path[:-1]:
        parent = parent[step]
    if value is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return payload


DELETE: Any = object()
VERSIONS = ["2.0.1", "2.1"]

VALID: list[tuple[str, str, dict[str, Any]]] = [
    ("BootNotification", "a boot with its modem", BOOT),
    ("Heartbeat", "a heartbeat", {}),
    ("StatusNotification", "an occupied connector", STATUS),
    ("MeterValues", "four measurands", METER),
    ("TransactionEvent", "a started transaction", STARTED),
    ("Authorize", "an RFID card", AUTHORIZE),
    ("NotifyEVChargingNeeds", "a DC car at 42 %", EV_NEEDS),
]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("action", "payload"), [(a, p) for a, _, p in VALID], ids=[i for _, i, _ in VALID])
def test_real_frames_pass_the_check(version: str, action: str, payload: dict[str, Any]) -> None:
    """Well-formed 2.0.1 and 2.1 frames pass without refusal or tolerance, as the ocpp library's schema has it."""
    assert list(get_validator(CALL, action, version).iter_errors(payload)) == []
    assert check_payload(action, payload, CALL, version) == Verdict()


# (id, action, payload, where the deviation is named)
TOLERATED: list[tuple[str, str, dict[str, Any], str]] = [
    ("a 1.6 status name", "StatusNotification", edited(STATUS, "Charging", "connectorStatus"), "connectorStatus"),
    (
        "an unlisted measurand",
        "MeterValues",
        edited(METER, "Temperature", "meterValue", 0, "sampledValue", 0, "measurand"),
        "meterValue/0/sampledValue/0/measurand",
    ),
    ("an extra field", "StatusNotification", {**STATUS, "errorCode": "NoError"}, "payload"),
    (
        "an extra field in a sample",
        "MeterValues",
        edited(METER, "W", "meterValue", 0, "sampledValue", 0, "unit"),
        "meterValue/0/sampledValue/0",
    ),
    (
        "an over-long serial number",
        "BootNotification",
        edited(BOOT, "S" * 26, "chargingStation", "serialNumber"),
        "chargingStation/serialNumber",
    ),
    (
        "an empty sampledValue",
        "MeterValues",
        edited(METER, [], "meterValue", 0, "sampledValue"),
        "meterValue/0/sampledValue",
    ),
    (
        "an unlisted trigger reason",
        "TransactionEvent",
        edited(STARTED, "CardPresented", "triggerReason"),
        "triggerReason",
    ),
]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("action", "payload", "where"), [c[1:] for c in TOLERATED], ids=[c[0] for c in TOLERATED])
def test_harmless_deviations_are_tolerated_and_named(
    version: str, action: str, payload: dict[str, Any], where: str
) -> None:
    """An unlisted enum value, an extra field, an over-long string, an empty list: answered, and named once."""
    verdict = check_payload(action, payload, CALL, version)
    assert verdict.refusal is None
    assert len(verdict.tolerated) == 1
    assert verdict.tolerated[0].startswith(f"{where}: ")
    assert verdict.unquoted[0].startswith(f"{where}: ")


# (id, version, action, payload, code, where)
REFUSED: list[tuple[str, str, str, dict[str, Any], str, str]] = [
    (
        "no evseId",
        "2.0.1",
        "StatusNotification",
        edited(STATUS, DELETE, "evseId"),
        "OccurrenceConstraintViolation",
        "payload",
    ),
    (
        "no transactionId",
        "2.1",
        "TransactionEvent",
        edited(STARTED, DELETE, "transactionInfo", "transactionId"),
        "OccurrenceConstraintViolation",
        "transactionInfo",
    ),
    (
        "no sample value",
        "2.0.1",
        "MeterValues",
        edited(METER, DELETE, "meterValue", 0, "sampledValue", 1, "value"),
        "OccurrenceConstraintViolation",
        "meterValue/0/sampledValue/1",
    ),
    (
        "evseId as text",
        "2.0.1",
        "StatusNotification",
        edited(STATUS, "1", "evseId"),
        "TypeConstraintViolation",
        "evseId",
    ),
    (
        "a padded number",
        "2.1",
        "MeterValues",
        edited(METER, " 0.0", "meterValue", 0, "sampledValue", 0, "value"),
        "TypeConstraintViolation",
        "meterValue/0/sampledValue/0/value",
    ),
    ("seqNo 1.0", "2.0.1", "TransactionEvent", edited(STARTED, 1.0, "seqNo"), "TypeConstraintViolation", "seqNo"),
    (
        "a state of charge of 101",
        "2.0.1",
        "NotifyEVChargingNeeds",
        edited(EV_NEEDS, 101, "chargingNeeds", "dcChargingParameters", "stateOfCharge"),
        "PropertyConstraintViolation",
        "chargingNeeds/dcChargingParameters/stateOfCharge",
    ),
    (
        "a negative state of charge",
        "2.1",
        "NotifyEVChargingNeeds",
        edited(EV_NEEDS, -1, "chargingNeeds", "dcChargingParameters", "stateOfCharge"),
        "PropertyConstraintViolation",
        "chargingNeeds/dcChargingParameters/stateOfCharge",
    ),
    (
        "five certificate hashes",
        "2.0.1",
        "Authorize",
        {**AUTHORIZE, "iso15118CertificateHashData": [HASH_DATA] * 5},
        "OccurrenceConstraintViolation",
        "iso15118CertificateHashData",
    ),
]


@pytest.mark.parametrize(
    ("version", "action", "payload", "code", "where"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_payloads_that_make_no_sense_are_refused_with_the_version_s_code(
    version: str, action: str, payload: dict[str, Any], code: str, where: str
) -> None:
    """A missing field is an occurrence constraint, a wrong type a type constraint, a bound a property constraint."""
    verdict = check_payload(action, payload, CALL, version)
    assert verdict.refusal is not None
    assert verdict.refusal.code == code
    assert code in CODES_2X
    assert verdict.refusal.description.startswith(f"{where}: ")
    assert verdict.unquoted[0].startswith(f"{where}: ")
    assert verdict.tolerated == []


UNQUOTED: list[tuple[str, dict[str, Any], str]] = [
    ("Authorize", {**AUTHORIZE, "iso15118CertificateHashData": [HASH_DATA] * 5},
     "iso15118CertificateHashData: has more than 4 items"),
    ("NotifyEVChargingNeeds", edited(EV_NEEDS, 1234, "chargingNeeds", "dcChargingParameters", "stateOfCharge"),
     "chargingNeeds/dcChargingParameters/stateOfCharge: must be at most 100.0"),
    ("Authorize", edited(AUTHORIZE, 1234, "idToken", "idToken"), "idToken/idToken: must be of type string"),
]  # fmt: skip


@pytest.mark.parametrize(("action", "payload", "words"), UNQUOTED, ids=["maxItems", "maximum", "type"])
def test_2x_refusals_have_words_that_quote_no_value(action: str, payload: dict[str, Any], words: str) -> None:
    """The unquoted words of a 2.x refusal name the path and the schema's rule, never the value sent."""
    verdict = check_payload(action, payload, CALL, "2.0.1")
    assert verdict.unquoted == [words]
    assert "1234" not in words


def test_2_1_takes_any_id_token_type_where_2_0_1_lists_them() -> None:
    """2.1 made idToken's type a free string (of 20 characters): a type 2.0.1 does not list deviates there only."""
    payload = edited(AUTHORIZE, "VendorCard", "idToken", "type")
    assert check_payload("Authorize", payload, CALL, "2.1").tolerated == []
    assert check_payload("Authorize", payload, CALL, "2.0.1").tolerated == [
        "idToken/type: 'VendorCard' is not one of ['Central', 'eMAID', 'ISO14443', 'ISO15693', 'KeyCode', 'Local', "
        "'MacAddress', 'NoAuthorization']"
    ]


# The same fault in a 1.6 and a 2.x frame: (fault, 1.6 code, 2.x code).
SAME_FAULT: list[tuple[str, tuple[str, dict[str, Any]], tuple[str, dict[str, Any]], str, str]] = [
    (
        "a required field missing",
        ("StatusNotification", {"connectorId": 1, "status": "Available"}),
        ("StatusNotification", edited(STATUS, DELETE, "connectorStatus")),
        "ProtocolError",
        "OccurrenceConstraintViolation",
    ),
    (
        "a wrong type",
        ("StatusNotification", {"connectorId": "1", "errorCode": "NoError", "status": "Available"}),
        ("StatusNotification", edited(STATUS, "1", "connectorId")),
        "TypeConstraintViolation",
        "TypeConstraintViolation",
    ),
    (
        "too many array items",
        ("MeterValues", {"connectorId": 1, "meterValue": [{"timestamp": NOW, "sampledValue": [7] * MAX_ARRAY_ITEMS}]}),
        ("MeterValues", edited(METER, [7] * MAX_ARRAY_ITEMS, "meterValue", 0, "sampledValue")),
        "OccurenceConstraintViolation",
        "OccurrenceConstraintViolation",
    ),
]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    ("frame_16", "frame_2x", "code_16", "code_2x"), [c[1:] for c in SAME_FAULT], ids=[c[0] for c in SAME_FAULT]
)
def test_each_version_refuses_in_its_own_codes(
    version: str,
    frame_16: tuple[str, dict[str, Any]],
    frame_2x: tuple[str, dict[str, Any]],
    code_16: str,
    code_2x: str,
) -> None:
    """A fault is refused with 1.6's code in a 1.6 frame and with the 2.x code in a 2.0.1 or 2.1 frame."""
    refusal_16 = check_payload(*frame_16, CALL).refusal
    refusal_2x = check_payload(*frame_2x, CALL, version).refusal
    assert refusal_16 is not None and refusal_2x is not None
    assert (refusal_16.code, refusal_2x.code) == (code_16, code_2x)
    assert refusal_16.code in CODES_16


KEYWORDS: list[tuple[str, str, str]] = [
    ("type", "TypeConstraintViolation", "TypeConstraintViolation"),
    ("required", "ProtocolError", "OccurrenceConstraintViolation"),
    ("minimum", "PropertyConstraintViolation", "PropertyConstraintViolation"),
    ("maximum", "PropertyConstraintViolation", "PropertyConstraintViolation"),
    ("maxItems", "OccurenceConstraintViolation", "OccurrenceConstraintViolation"),
    ("additionalItems", "FormationViolation", "FormatViolation"),  # any other keyword: the payload is malformed
]


@pytest.mark.parametrize(("keyword", "code_16", "code_2x"), KEYWORDS, ids=[k[0] for k in KEYWORDS])
def test_refusal_codes_by_keyword(keyword: str, code_16: str, code_2x: str) -> None:
    """Each refused keyword maps to one code per version, every one in its version's OCPP-J table."""
    assert code_16 in CODES_16 and code_2x in CODES_2X
    assert refusal_for_keyword(keyword).code == code_16
    assert refusal_for_keyword(keyword, "1.6").code == code_16
    for version in VERSIONS:
        assert refusal_for_keyword(keyword, version).code == code_2x


def test_error_codes_2x_respell_exactly_the_codes_that_changed() -> None:
    """ERROR_CODES_2X maps the two 1.6 codes 2.0.1 respelt; every other 1.6 code is spelt alike in 2.x."""
    assert ERROR_CODES_2X == {
        "FormationViolation": "FormatViolation",
        "OccurenceConstraintViolation": "OccurrenceConstraintViolation",
    }
    assert {ERROR_CODES_2X.get(code, code) for code in CODES_16} == CODES_2X - {
        "MessageTypeNotSupported",
        "RpcFrameworkError",
    }


def test_schema_fields_of_2x_requests() -> None:
    """schema_fields reads a 2.x request's top-level fields from that version's schema."""
    assert schema_fields("BootNotification", "2.0.1") == {"chargingStation", "reason", "customData"}
    assert {"costDetails", "evseSleep"} <= schema_fields("TransactionEvent", "2.1")
    assert "costDetails" not in schema_fields("TransactionEvent", "2.0.1")


def sampled(count: int) -> list[dict[str, Any]]:
    return [{"value": float(n), "measurand": "Energy.Active.Import.Register"} for n in range(count)]


def meter_values(*elements: dict[str, Any]) -> dict[str, Any]:
    return {"evseId": 1, "meterValue": list(elements)}


def transaction_event(*elements: dict[str, Any]) -> dict[str, Any]:
    return {**STARTED, "meterValue": list(elements)}


BUILDERS = {"MeterValues": meter_values, "TransactionEvent": transaction_event}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("action", list(BUILDERS))
@pytest.mark.parametrize("elements", [1, 25_000], ids=["in one element", "one per element"])
def test_25000_sampled_values_are_capped(version: str, action: str, elements: int) -> None:
    """25,000 sampled values in a 2.x MeterValues or TransactionEvent are cut to MAX_SAMPLED_VALUES, then checked."""
    per_element = 25_000 // elements
    payload = BUILDERS[action](*[{"timestamp": NOW, "sampledValue": sampled(per_element)} for _ in range(elements)])
    assert capped_sampled_values(action, payload) == 25_000 - MAX_SAMPLED_VALUES
    assert sum(len(element["sampledValue"]) for element in payload["meterValue"]) == MAX_SAMPLED_VALUES
    assert payload["meterValue"][0]["sampledValue"][0]["value"] == 0.0  # the first ones are kept
    assert list(get_validator(CALL, action, version).iter_errors(payload)) == []
    assert check_payload(action, payload, CALL, version).refusal is None


def test_a_2x_charging_profile_is_checked_over_floats() -> None:
    """2.x has no multipleOf: SetChargingProfile is compiled, and the library's cached schema holds no Decimal."""
    period = {"startPeriod": 0, "limit": 21.4, "numberPhases": 3}
    schedule = {"id": 1, "chargingRateUnit": "W", "chargingSchedulePeriod": [period]}
    profile = {
        "id": 1,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": [schedule],
    }
    payload = {"evseId": 1, "chargingProfile": profile}
    for version in VERSIONS:
        assert check_payload("SetChargingProfile", payload, CALL, version).refusal is None
        assert "Decimal" not in repr(get_validator(CALL, "SetChargingProfile", version).schema)
        assert not isinstance(period["limit"], Decimal)  # the payload is left as it came


def test_a_charger_s_answer_is_checked_against_its_version() -> None:
    """CALLRESULTs are checked like CALLs: a GetVariables answer without attributeStatus is refused in 2.x words."""
    result = {
        "attributeStatus": "Accepted",
        "component": {"name": "SmartChargingCtrlr"},
        "variable": {"name": "RateUnit"},
    }
    answer = {"getVariableResult": [{**result, "attributeValue": "A,W"}]}
    assert check_payload("GetVariables", answer, RESULT, "2.0.1").refusal is None
    unsaid = edited(answer, DELETE, "getVariableResult", 0, "attributeStatus")
    refusal = check_payload("GetVariables", unsaid, RESULT, "2.1").refusal
    assert refusal is not None and refusal.code == "OccurrenceConstraintViolation"
