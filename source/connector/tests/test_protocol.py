"""OCPP-J framing and OCPP 1.6 schema checks with tolerance for real chargers (INTERFACE.md 5, 7)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from ocpp.messages import Call, CallError, CallResult, MessageType

from connector.protocol import (
    CHARGER_ACTIONS,
    MAX_ARRAY_ITEMS,
    MAX_NAMED_DEVIATIONS,
    MAX_SAMPLED_VALUES,
    FrameProblem,
    array_items_beyond,
    capped_sampled_values,
    check_payload,
    load_json,
    parse_frame,
)
from connector.tests.harness import frame

# (id, frame text, expected unique id of the FrameProblem: None where no answer is possible)
PROBLEMS: list[tuple[str, str | bytes, str | int | None]] = [
    ("not JSON", "this is not json", None),
    ("truncated JSON", '[2, "abc", "Heartbeat", {', None),
    ("empty frame", "", None),
    ("JSON object", '{"messageTypeId": 2}', None),
    ("JSON string", '"[2, \\"abc\\", \\"Heartbeat\\", {}]"', None),
    ("empty list", "[]", None),
    ("type only", "[2]", None),
    ("empty unique id", '[2, "", "Heartbeat", {}]', None),
    ("null unique id", '[2, null, "Heartbeat", {}]', None),
    ("boolean unique id", '[2, true, "Heartbeat", {}]', None),
    ("object unique id", '[2, {"id": 1}, "Heartbeat", {}]', None),
    ("CALL without action and payload", '[2, "abc"]', "abc"),
    ("CALL without payload", '[2, "abc", "Heartbeat"]', "abc"),
    ("CALL with list payload", '[2, "abc", "Heartbeat", []]', "abc"),
    ("CALL with null payload", '[2, "abc", "Heartbeat", null]', "abc"),
    ("CALL with numeric action", '[2, "abc", 7, {}]', "abc"),
    ("CALL with extra element", '[2, "abc", "Heartbeat", {}, {}]', "abc"),
    ("CALL numeric id without payload", '[2, 17, "Heartbeat"]', 17),
    ("unknown message type", '[5, "abc", {}]', None),
    ("message type as string", '["2", "abc", "Heartbeat", {}]', None),
    ("CALLRESULT with list payload", '[3, "abc", []]', None),
    ("CALLRESULT with extra element", '[3, "abc", {}, {}]', None),
    ("CALLERROR too short", '[4, "abc", "GenericError"]', None),
]


@pytest.mark.parametrize(("text", "unique_id"), [p[1:] for p in PROBLEMS], ids=[p[0] for p in PROBLEMS])
def test_frames_that_are_not_ocpp_j_messages(text: str | bytes, unique_id: str | int | None) -> None:
    """A frame that is no OCPP-J message is a FrameProblem, with the unique id only where a CALLERROR is possible."""
    problem = parse_frame(text)
    assert isinstance(problem, FrameProblem), problem
    assert problem.unique_id == unique_id
    assert problem.reason


# (id, frame text, expected message type, unique id, action or error code, payload)
MESSAGES: list[tuple[str, str | bytes, type[Any], str | int, str | None, dict[str, Any]]] = [
    ("CALL", '[2, "19223201", "Heartbeat", {}]', Call, "19223201", "Heartbeat", {}),
    ("CALL as bytes", b'[2, "a1", "Heartbeat", {}]', Call, "a1", "Heartbeat", {}),
    (
        "CALL with payload",
        '[2, "u-1", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"}]',
        Call,
        "u-1",
        "StatusNotification",
        {"connectorId": 1, "errorCode": "NoError", "status": "Available"},
    ),
    ("CALL numeric id", '[2, 4711, "Heartbeat", {}]', Call, 4711, "Heartbeat", {}),
    ("CALL unknown action", '[2, "x", "MakeCoffee", {}]', Call, "x", "MakeCoffee", {}),
    ("CALLRESULT", '[3, "r-1", {"status": "Accepted"}]', CallResult, "r-1", None, {"status": "Accepted"}),
    ("CALLRESULT empty", '[3, "r-2", {}]', CallResult, "r-2", None, {}),
    (
        "CALLERROR with details",
        '[4, "e-1", "NotSupported", "no such thing", {"hint": 1}]',
        CallError,
        "e-1",
        "NotSupported",
        {"hint": 1},
    ),
    ("CALLERROR without details", '[4, "e-2", "GenericError", ""]', CallError, "e-2", "GenericError", {}),
]


@pytest.mark.parametrize(
    ("text", "kind", "unique_id", "name", "payload"), [m[1:] for m in MESSAGES], ids=[m[0] for m in MESSAGES]
)
def test_ocpp_j_messages_are_parsed(
    text: str | bytes, kind: type[Any], unique_id: str | int, name: str | None, payload: dict[str, Any]
) -> None:
    """CALL, CALLRESULT and CALLERROR frames parse into the ocpp library's messages, with the unique id as sent."""
    message = parse_frame(text)
    assert type(message) is kind
    assert message.unique_id == unique_id
    if isinstance(message, Call):
        assert (message.action, message.payload) == (name, payload)
    elif isinstance(message, CallResult):
        assert message.payload == payload
    else:
        assert isinstance(message, CallError)
        assert (message.error_code, message.error_details) == (name, payload)


def test_the_security_extension_is_answered() -> None:
    """The OCPP 1.6 security extension's charger-initiated messages are among the answered actions."""
    security = {
        "SecurityEventNotification",
        "SignCertificate",
        "LogStatusNotification",
        "SignedFirmwareStatusNotification",
    }
    assert security <= CHARGER_ACTIONS


FIXTURE_NAMES = [
    "boot_notification",
    "boot_notification_minimal",
    "heartbeat",
    "status_available",
    "status_faulted_vendor",
    "meter_values_8",
    "meter_values_defaults",
    "meter_values_backlog",
    "meter_values_inlet_kwh",
    "start_transaction",
    "stop_transaction",
    "stop_transaction_no_id_tag",
    "authorize",
    "data_transfer",
    "firmware_status",
    "diagnostics_status",
    "security_event",
    "sign_certificate",
    "log_status",
    "signed_firmware_status",
]


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_recorded_frames_are_valid(name: str) -> None:
    """Every recorded well-formed frame passes the schema check without refusal or tolerance."""
    action, payload = frame(name)
    verdict = check_payload(action, payload, MessageType.Call)
    assert verdict.refusal is None
    assert verdict.tolerated == []


def without(name: str, *path: str | int) -> tuple[str, dict[str, Any]]:
    """A recorded frame with the field at `path` removed."""
    action, payload = frame(name)
    parent: Any = payload
    for step in path[:-1]:
        parent = parent[step]
    del parent[path[-1]]
    return action, payload


def changed(name: str, value: Any, *path: str | int) -> tuple[str, dict[str, Any]]:
    """A recorded frame with the field at `path` set to `value`."""
    action, payload = frame(name)
    parent: Any = payload
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    return action, payload


REFUSED: list[tuple[str, tuple[str, dict[str, Any]], str]] = [
    ("status missing", without("status_available", "status"), "ProtocolError"),
    ("connectorId missing", without("status_available", "connectorId"), "ProtocolError"),
    ("vendor missing", without("boot_notification_minimal", "chargePointVendor"), "ProtocolError"),
    ("meterValue missing", without("meter_values_defaults", "meterValue"), "ProtocolError"),
    (
        "sampled value missing",
        without("meter_values_defaults", "meterValue", 0, "sampledValue", 0, "value"),
        "ProtocolError",
    ),
    ("meterStop missing", without("stop_transaction", "meterStop"), "ProtocolError"),
    ("connectorId as string", changed("status_available", "1", "connectorId"), "TypeConstraintViolation"),
    ("meterStart as string", changed("start_transaction", "1234000", "meterStart"), "TypeConstraintViolation"),
    (
        "meterValue not a list",
        changed("meter_values_defaults", {"value": "1"}, "meterValue"),
        "TypeConstraintViolation",
    ),
    (
        "sampled value a number",
        changed("meter_values_defaults", 1240000, "meterValue", 0, "sampledValue", 0, "value"),
        "TypeConstraintViolation",
    ),
    ("vendor null", changed("boot_notification_minimal", None, "chargePointVendor"), "TypeConstraintViolation"),
]


@pytest.mark.parametrize(("action", "payload", "code"), [(*r[1], r[2]) for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_senseless_payloads_are_refused(action: str, payload: dict[str, Any], code: str) -> None:
    """A missing required field is refused with ProtocolError, a wrong JSON type with TypeConstraintViolation."""
    verdict = check_payload(action, payload, MessageType.Call)
    assert verdict.refusal is not None
    assert verdict.refusal.code == code
    assert verdict.refusal.description


TOLERATED: list[tuple[str, tuple[str, dict[str, Any]]]] = [
    ("errorCode Error", frame("status_error_code_error")),
    ("unit Hz", frame("meter_values_hz_padded")),
    ("empty sampledValue", frame("meter_values_empty_sampled")),
    ("extra top-level field", frame("status_available", vendorNote="hello")),
    ("extra nested field", changed("meter_values_defaults", "x", "meterValue", 0, "sampledValue", 0, "extra")),
    ("unlisted status", changed("status_available", "Occupied", "status")),
    (
        "unlisted measurand",
        changed("meter_values_defaults", "Power.Active", "meterValue", 0, "sampledValue", 0, "measurand"),
    ),
    ("over-long info", frame("status_faulted_vendor", info="x" * 60)),
]


@pytest.mark.parametrize(("action", "payload"), [t[1] for t in TOLERATED], ids=[t[0] for t in TOLERATED])
def test_harmless_deviations_are_tolerated_and_named(action: str, payload: dict[str, Any]) -> None:
    """Unlisted enum values, extra fields, over-long strings and an empty sampledValue are tolerated and named."""
    verdict = check_payload(action, payload, MessageType.Call)
    assert verdict.refusal is None
    assert len(verdict.tolerated) == 1
    assert verdict.tolerated[0]


def test_padded_number_string_is_schema_valid() -> None:
    """A sampled value `" 0.0"` is a string, as the schema wants, so only the unlisted unit is named."""
    action, payload = frame("meter_values_hz_padded")
    verdict = check_payload(action, payload, MessageType.Call)
    assert verdict.refusal is None
    assert ["Hz" in note for note in verdict.tolerated] == [True]


def test_refusal_wins_over_tolerance() -> None:
    """A payload with a tolerated deviation and a missing required field is refused, naming no deviation."""
    action, payload = frame("status_error_code_error")
    del payload["status"]
    verdict = check_payload(action, payload, MessageType.Call)
    assert verdict.refusal is not None
    assert verdict.refusal.code == "ProtocolError"
    assert verdict.tolerated == []


RESPONSES: list[tuple[str, dict[str, Any], str | None]] = [
    ("TriggerMessage", {"status": "Accepted"}, None),
    ("SetChargingProfile", {"status": "Rejected"}, None),
    ("ClearChargingProfile", {}, "ProtocolError"),
    ("Reset", {"status": 1}, "TypeConstraintViolation"),
    (
        "GetCompositeSchedule",
        {
            "status": "Accepted",
            "connectorId": 1,
            "chargingSchedule": {
                "chargingRateUnit": "W",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7400.1}],
            },
        },
        None,
    ),
]


@pytest.mark.parametrize(("action", "payload", "code"), RESPONSES, ids=[f"{a}-{c}" for a, _, c in RESPONSES])
def test_responses_are_checked_against_the_response_schema(
    action: str, payload: dict[str, Any], code: str | None
) -> None:
    """check_payload with CallResult validates a charger's answer against the .conf schema of the action."""
    verdict = check_payload(action, payload, MessageType.CallResult)
    assert (verdict.refusal.code if verdict.refusal is not None else None) == code


HUGE: list[tuple[str, str, int, dict[str, Any]]] = [
    (
        "GetCompositeSchedule answer",
        "GetCompositeSchedule",
        MessageType.CallResult,
        {
            "status": "Accepted",
            "connectorId": 1,
            "chargingSchedule": {
                "chargingRateUnit": "W",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 1e30}],
            },
        },
    ),
    (
        "SetChargingProfile request",
        "SetChargingProfile",
        MessageType.Call,
        {
            "connectorId": 1,
            "csChargingProfiles": {
                "chargingProfileId": 1001,
                "stackLevel": 0,
                "chargingProfilePurpose": "TxDefaultProfile",
                "chargingProfileKind": "Relative",
                "chargingSchedule": {
                    "chargingRateUnit": "W",
                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 1e30}],
                },
            },
        },
    ),
    (
        "StartTransaction with a huge meter",
        "StartTransaction",
        MessageType.Call,
        frame("start_transaction", meterStart=10**30)[1],
    ),
]


@pytest.mark.parametrize(("action", "message_type", "payload"), [h[1:] for h in HUGE], ids=[h[0] for h in HUGE])
def test_huge_numbers_give_a_verdict_not_an_exception(action: str, message_type: int, payload: dict[str, Any]) -> None:
    """A payload holding an enormous number gets a verdict (1e30 is a multiple of 0.1) instead of raising."""
    verdict = check_payload(action, payload, message_type)
    assert verdict.refusal is None


# -- bounded work per payload ---------------------------------------------------------------


def meter_values_of(*elements: list[dict[str, Any]]) -> dict[str, Any]:
    """A MeterValues.req payload with one meterValue element per list of sampled values."""
    return {
        "connectorId": 1,
        "meterValue": [{"timestamp": "2026-12-04T10:00:00Z", "sampledValue": samples} for samples in elements],
    }


def invented(count: int) -> list[dict[str, Any]]:
    return [{"value": "1", "measurand": f"X{n}"} for n in range(count)]


def test_a_payload_with_thousands_of_deviations_names_only_the_first_few() -> None:
    """4,000 invented measurands are tolerated, and only the first MAX_NAMED_DEVIATIONS of them are named."""
    verdict = check_payload("MeterValues", meter_values_of(invented(4000)), MessageType.Call)
    assert verdict.refusal is None
    assert len(verdict.tolerated) == MAX_NAMED_DEVIATIONS
    assert verdict.tolerated[0].startswith("meterValue/0/sampledValue/0/measurand: 'X0' is not one of")


def test_a_refusal_behind_thousands_of_deviations_is_found() -> None:
    """A wrong type after 4,000 invented measurands is still refused, with its path; no deviation is named."""
    samples = [*invented(4000), {"value": 1}]
    verdict = check_payload("MeterValues", meter_values_of(samples), MessageType.Call)
    assert verdict.refusal is not None
    assert verdict.refusal.code == "TypeConstraintViolation"
    assert verdict.refusal.description.startswith("meterValue/0/sampledValue/4000/value: ")
    assert verdict.tolerated == []


def test_unquoted_words_name_path_and_rule_but_no_value() -> None:
    """The unquoted verdict of an over-long and a mistyped value names where and what rule, never the value."""
    secret = "S3cr3t-" * 100
    verdict = check_payload("ChangeConfiguration", {"key": "AuthorizationKey", "value": secret}, MessageType.Call)
    assert verdict.unquoted == ["value: must be at most 500 characters"]
    assert "S3cr3t" in verdict.tolerated[0]  # jsonschema's words quote it: for what a charger sent only
    verdict = check_payload("ChangeConfiguration", {"key": "AuthorizationKey", "value": 1234}, MessageType.Call)
    assert verdict.unquoted == ["value: must be of type string"]
    assert not any("1234" in text for text in verdict.unquoted)


CAPS: list[tuple[str, list[int], list[int], int]] = [
    # (id, sampled values per meterValue element, kept per element, cut)
    ("under the cap", [10, 10], [10, 10], 0),
    ("exactly the cap", [MAX_SAMPLED_VALUES], [MAX_SAMPLED_VALUES], 0),
    ("one element over", [MAX_SAMPLED_VALUES + 5], [MAX_SAMPLED_VALUES], 5),
    ("later elements dropped", [MAX_SAMPLED_VALUES - 1, 3, 4], [MAX_SAMPLED_VALUES - 1, 1], 6),
    ("empty elements count one each", [0] * (MAX_SAMPLED_VALUES + 2), [0] * MAX_SAMPLED_VALUES, 2),
]


@pytest.mark.parametrize(("sizes", "kept", "cut"), [c[1:] for c in CAPS], ids=[c[0] for c in CAPS])
def test_sampled_values_beyond_the_cap_are_cut(sizes: list[int], kept: list[int], cut: int) -> None:
    """A MeterValues.req keeps its first MAX_SAMPLED_VALUES sampled values (an element counts as one at least)."""
    payload = meter_values_of(*[invented(size) for size in sizes])
    assert capped_sampled_values("MeterValues", payload) == cut
    assert [len(element["sampledValue"]) for element in payload["meterValue"]] == kept
    assert payload["meterValue"][0]["sampledValue"][:1] == invented(sizes[0])[:1]


def test_transaction_data_is_capped_too() -> None:
    """StopTransaction's transactionData is cut like MeterValues' meterValue."""
    payload = {
        **frame("stop_transaction")[1],
        **{"transactionData": meter_values_of(invented(MAX_SAMPLED_VALUES + 1))["meterValue"]},
    }
    assert capped_sampled_values("StopTransaction", payload) == 1


@pytest.mark.parametrize(
    "payload",
    [{"meterValue": "many"}, {"meterValue": [1, {"sampledValue": "x"}]}, {}],
    ids=["not a list", "odd elements", "no meterValue"],
)
def test_small_payloads_not_shaped_as_the_schema_wants_are_left_to_the_check(payload: dict[str, Any]) -> None:
    """Capping leaves a small misshapen payload as it is: the schema check refuses it."""
    before = json.dumps(payload)
    assert capped_sampled_values("MeterValues", payload) == 0
    assert json.dumps(payload) == before


@pytest.mark.parametrize("element", [None, 1, {}, {"sampledValue": "x"}], ids=["nulls", "ones", "empty", "odd"])
def test_misshapen_elements_count_against_the_cap_too(element: Any) -> None:
    """Elements of any shape count at least one each: 300,000 of them are cut to MAX_SAMPLED_VALUES."""
    payload = {"connectorId": 1, "meterValue": [element] * 300_000}
    assert capped_sampled_values("MeterValues", payload) == 300_000 - MAX_SAMPLED_VALUES
    assert isinstance(payload["meterValue"], list) and len(payload["meterValue"]) == MAX_SAMPLED_VALUES


@pytest.mark.parametrize(
    ("action", "message_type", "payload"),
    [
        ("StopTransaction", MessageType.Call, {**frame("stop_transaction")[1], "transactionData": [1] * 300_000}),
        ("GetConfiguration", MessageType.CallResult, {"configurationKey": [1] * 300_000}),
        (
            "SendLocalList",
            MessageType.Call,
            {"listVersion": 1, "updateType": "Full", "localAuthorizationList": [1] * 10**6},
        ),
        (
            "MeterValues",
            MessageType.Call,
            {"connectorId": 1, "meterValue": [{"timestamp": "x", "sampledValue": [{"value": "1", "x": 1}] * 6000}]},
        ),
    ],
    ids=["transactionData of ones", "an answer of ones", "an operator's call", "tolerated deviations"],
)
def test_a_payload_with_too_many_array_items_is_refused_without_walking_it(
    action: str, message_type: int, payload: dict[str, Any]
) -> None:
    """Beyond MAX_ARRAY_ITEMS array items a payload the compiled check refused is refused as such, unwalked."""
    verdict = check_payload(action, payload, message_type)
    assert verdict.refusal is not None
    assert verdict.refusal.description == f"payload: more than {MAX_ARRAY_ITEMS} array items"
    assert verdict.tolerated == []


def test_array_items_are_counted_at_every_depth_and_the_count_stops_early() -> None:
    """array_items_beyond counts nested arrays' items and answers as soon as the limit is passed."""
    nested = {"a": [[1, 2], {"b": [3, 4, 5]}]}  # 2 + 2 + 3 items
    assert array_items_beyond(nested, 7) is False
    assert array_items_beyond(nested, 6) is True
    assert array_items_beyond({"a": [0] * 10**6}, 10) is True


def test_a_refused_payload_names_no_deviations() -> None:
    """With a refusal found, no tolerated deviation is searched for or named."""
    payload = {
        "connectorId": "1",
        "meterValue": [{"timestamp": "2026-01-01T00:00:00Z", "sampledValue": [{"value": "1", "unit": "Hz"}]}],
    }
    verdict = check_payload("MeterValues", payload, MessageType.Call)
    assert verdict.refusal is not None and verdict.tolerated == []


# -- load_json: strict JSON through one decoder built at import -----------------------------

LOADED: list[tuple[str, str | bytes, Any]] = [
    ("text", '{"a": [1, 2.5, "x", null, true]}', {"a": [1, 2.5, "x", None, True]}),
    ("UTF-8 bytes", '{"a": "\u00e9"}'.encode(), {"a": "\u00e9"}),
    ("UTF-16 bytes, as json.loads reads them", '{"a": 1}'.encode("utf-16"), {"a": 1}),
    ("UTF-8 bytes with a BOM", b"\xef\xbb\xbf[1]", [1]),
    ("a large but finite float", "1e308", 1e308),
    ("an integer beyond float range stays exact", "1" + "0" * 400, 10**400),
]


@pytest.mark.parametrize(("name", "text", "expected"), LOADED, ids=[case[0] for case in LOADED])
def test_load_json_reads_what_json_loads_reads(name: str, text: str | bytes, expected: Any) -> None:
    """load_json gives what json.loads gives for JSON text and bytes, whatever the encoding."""
    assert load_json(text) == expected == json.loads(text)


REFUSED_JSON: list[tuple[str, str | bytes]] = [
    ("NaN", "[NaN]"),
    ("Infinity", '{"a": Infinity}'),
    ("-Infinity", "-Infinity"),
    ("a float beyond range", "[1e400]"),
    ("a text BOM", "\ufeff[1]"),
    ("trailing data", "[1] [2]"),
    ("deep nesting", "[" * 100_000 + "]" * 100_000),
    ("not JSON", b"\xff\xfe\x00"),
]


@pytest.mark.parametrize(("name", "text"), REFUSED_JSON, ids=[case[0] for case in REFUSED_JSON])
def test_load_json_refuses_what_strict_consumers_choke_on(name: str, text: str | bytes) -> None:
    """NaN, infinities, floats beyond range, a BOM before text, trailing data and deep nesting raise ValueError."""
    with pytest.raises(ValueError):
        load_json(text)


def test_load_json_builds_no_decoder_per_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """The decoder is built once: a frame costs no decoder and scanner of its own."""
    built: list[object] = []
    original = json.JSONDecoder.__init__

    def counting(self: json.JSONDecoder, *args: Any, **kwargs: Any) -> None:
        built.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(json.JSONDecoder, "__init__", counting)
    for _ in range(3):
        assert load_json('[2, "a", "Heartbeat", {"x": 1.5}]') == [2, "a", "Heartbeat", {"x": 1.5}]
    assert built == []
