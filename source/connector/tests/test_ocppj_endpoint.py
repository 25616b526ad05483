"""The sans-I/O OCPP-J endpoint: frame text in, events out, answers matched to the call in flight."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector import ocpp16, ocpp21, ocpp201
from connector.handling import Context, Inbound, OcppVersion
from connector.ocppj.endpoint import (
    BadFrame,
    Endpoint,
    Error,
    IncomingCall,
    RefusedCall,
    Result,
    ResultError,
    Unmatched,
)
from connector.protocol import CHARGER_ACTIONS, MAX_SAMPLED_VALUES, FrameProblem, parse_frame
from connector.tests.harness import frame


def answered(ctx: Context, msg: Inbound) -> dict[str, Any]:
    return {}


def version_2x(name: str, send_frames: bool) -> OcppVersion:
    """A 2.x version as the endpoint sees it: a few handlers, 2.x error spellings, its schemas."""
    return OcppVersion(
        name=name,
        subprotocol=f"ocpp{name}",
        handlers={"Heartbeat": answered, "MeterValues": answered},
        actuators={},
        central_actions=frozenset({"Reset", "GetVariables"}),
        error_codes={"FormationViolation": "FormatViolation"},
        rate_units=ocpp16.VERSION.rate_units,  # not used by the endpoint
        send_frames=send_frames,
        unknown_type_error="MessageTypeNotSupported",
        malformed_call_error="RpcFrameworkError",
    )


V201 = version_2x("2.0.1", send_frames=False)
V21 = version_2x("2.1", send_frames=True)


def call_frame(name: str, unique_id: str = "c1", **changes: Any) -> str:
    action, payload = frame(name, **changes)
    return json.dumps([2, unique_id, action, payload])


def test_a_valid_call_is_handed_on_with_its_payload_as_received() -> None:
    """A recorded 1.6 MeterValues.req becomes an IncomingCall carrying its id, action and camelCase payload."""
    action, payload = frame("meter_values_8")
    event = Endpoint(ocpp16.VERSION).receive(json.dumps([2, "m1", action, payload]))
    assert event == IncomingCall("m1", "MeterValues", payload)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("not json", BadFrame("frame is not JSON")),
        ('[2,"a1","Heartbeat",{"x":NaN}]', BadFrame("frame is not JSON")),
        ('{"a":1}', BadFrame("frame is not an OCPP-J message array")),
        ("[2]", BadFrame("frame is not an OCPP-J message array")),
        ('[2,"","Heartbeat",{}]', BadFrame("frame has no unique id")),
        ('[2,true,"Heartbeat",{}]', BadFrame("frame has no unique id")),
        ('[2,null,"Heartbeat",{}]', BadFrame("frame has no unique id")),
        (
            '[2,"a1","Heartbeat"]',
            BadFrame(
                "CALL must be [2, uniqueId, action, {payload}]",
                '[4,"a1","FormationViolation","CALL must be [2, uniqueId, action, {payload}]",{}]',
            ),
        ),
        (
            '[2,7,"Heartbeat",[]]',
            BadFrame(
                "CALL must be [2, uniqueId, action, {payload}]",
                '[4,7,"FormationViolation","CALL must be [2, uniqueId, action, {payload}]",{}]',
            ),
        ),
        (
            '[2,"a1","Foo",{}]',
            RefusedCall(
                "Foo", "NotImplemented", "unknown action 'Foo'", '[4,"a1","NotImplemented","unknown action \'Foo\'",{}]'
            ),
        ),
        (
            '[2,"a1","Reset",{"type":"Soft"}]',
            RefusedCall(
                "Reset",
                "NotSupported",
                "Reset is sent by the central system, not to it",
                '[4,"a1","NotSupported","Reset is sent by the central system, not to it",{}]',
            ),
        ),
        ('[7,"a1"]', BadFrame("message type 7 with 2 elements is not valid")),
        ('[6,"a1","Heartbeat",{}]', BadFrame("message type 6 with 4 elements is not valid")),
        ('[5,"a1","GenericError","",{}]', BadFrame("message type 5 with 5 elements is not valid")),
        ('[3,"a1"]', BadFrame("message type 3 with 2 elements is not valid")),
        ('[3,"a1",[]]', BadFrame("message type 3 with 3 elements is not valid")),
        ('[4,"a1","GenericError"]', BadFrame("message type 4 with 3 elements is not valid")),
        ('["2","a1","Heartbeat",{}]', BadFrame("message type '2' with 4 elements is not valid")),
    ],
)
def test_ocpp16_bad_frames_get_the_callerror_ocpp_j_prescribes_or_none(text: str, expected: object) -> None:
    """Each malformed 1.6 frame gives the specific event: a CALLERROR where an id is readable, else dropped."""
    assert Endpoint(ocpp16.VERSION).receive(text) == expected


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ('{"connectorId":"1","errorCode":"NoError","status":"Available"}', "TypeConstraintViolation"),
        ('{"connectorId":1,"status":"Available"}', "ProtocolError"),
    ],
)
def test_a_payload_that_breaks_the_schema_is_refused_with_the_keywords_code(payload: str, code: str) -> None:
    """A 1.6 StatusNotification with a wrong type or a missing field is refused, naming the code."""
    event = Endpoint(ocpp16.VERSION).receive(f'[2,"s1","StatusNotification",{payload}]')
    assert isinstance(event, RefusedCall) and event.code == code
    assert event.reply is not None and json.loads(event.reply)[:3] == [4, "s1", code]


def test_harmless_deviations_pass_and_are_named() -> None:
    """An unlisted unit (`Hz`) passes the check and comes with the deviation named for the log."""
    event = Endpoint(ocpp16.VERSION).receive(call_frame("meter_values_hz_padded"))
    assert isinstance(event, IncomingCall)
    assert any("Hz" in deviation for deviation in event.tolerated)


def test_sampled_values_beyond_the_cap_are_cut_and_counted() -> None:
    """A MeterValues.req with 100 values over MAX_SAMPLED_VALUES is handed on capped, the cut counted."""
    sample = {"value": "1", "measurand": "Power.Active.Import", "unit": "W"}
    element = {"timestamp": "2026-12-04T10:00:00Z", "sampledValue": [sample] * (MAX_SAMPLED_VALUES + 100)}
    text = json.dumps([2, "m1", "MeterValues", {"connectorId": 1, "meterValue": [element]}])
    event = Endpoint(ocpp16.VERSION).receive(text)
    assert isinstance(event, IncomingCall) and event.cut == 100
    assert len(event.payload["meterValue"][0]["sampledValue"]) == MAX_SAMPLED_VALUES


def test_an_answer_is_matched_to_the_call_in_flight_once() -> None:
    """A CALLRESULT with the pending id is that call's Result; the same id again is unmatched."""
    endpoint = Endpoint(ocpp16.VERSION)
    sent = json.loads(endpoint.call("Reset", {"type": "Soft"}))
    assert sent[0] == 2 and sent[2:] == ["Reset", {"type": "Soft"}]
    answer = json.dumps([3, sent[1], {"status": "Accepted"}])
    assert endpoint.receive(answer) == Result(sent[1], "Reset", {"status": "Accepted"})
    assert endpoint.pending is None
    assert endpoint.receive(answer) == Unmatched(sent[1])


def test_a_callerror_answers_the_call_in_flight_with_its_details() -> None:
    """A CALLERROR with the pending id carries the charger's code, description and details."""
    endpoint = Endpoint(ocpp16.VERSION)
    unique_id = json.loads(endpoint.call("Reset", {"type": "Hard"}))[1]
    event = endpoint.receive(json.dumps([4, unique_id, "NotSupported", "no", {"why": "x"}]))
    assert event == Error(unique_id, "Reset", "NotSupported", "no", {"why": "x"})


def test_an_answer_to_another_id_leaves_the_call_in_flight() -> None:
    """An answer whose id is not the pending one is unmatched and the call still waits for its own."""
    endpoint = Endpoint(ocpp16.VERSION)
    unique_id = json.loads(endpoint.call("Reset", {"type": "Soft"}))[1]
    assert endpoint.receive('[3,"never-sent",{}]') == Unmatched("never-sent")
    assert endpoint.pending is not None and endpoint.pending.unique_id == unique_id


def test_each_call_gets_a_new_unique_id_and_only_one_is_in_flight() -> None:
    """A second call while one is in flight is a programming error; after the answer the next gets a new id."""
    endpoint = Endpoint(ocpp16.VERSION)
    first = json.loads(endpoint.call("Reset", {"type": "Soft"}))[1]
    with pytest.raises(RuntimeError):
        endpoint.call("Reset", {"type": "Soft"})
    endpoint.receive(json.dumps([3, first, {"status": "Accepted"}]))
    second = json.loads(endpoint.call("Reset", {"type": "Soft"}))[1]
    assert second != first


def test_a_time_out_counts_where_asked_and_expires_the_call() -> None:
    """`timed_out` counts an unanswered call only where it counts; a late answer is then unmatched."""
    endpoint = Endpoint(ocpp16.VERSION)
    own_read = json.loads(endpoint.call("GetConfiguration", {}))[1]
    endpoint.timed_out(counts=False)
    assert endpoint.unanswered == 0
    command = json.loads(endpoint.call("Reset", {"type": "Soft"}))[1]
    endpoint.timed_out()
    assert endpoint.unanswered == 1
    assert endpoint.receive(json.dumps([3, own_read, {}])) == Unmatched(own_read)
    assert endpoint.receive(json.dumps([3, command, {}])) == Unmatched(command)


def test_an_abandoned_call_is_no_longer_in_flight() -> None:
    """`abandon` (connection or command gone) clears the call in flight without counting it unanswered."""
    endpoint = Endpoint(ocpp16.VERSION)
    unique_id = json.loads(endpoint.call("Reset", {"type": "Soft"}))[1]
    endpoint.abandon()
    assert endpoint.pending is None and endpoint.unanswered == 0
    assert endpoint.receive(json.dumps([3, unique_id, {}])) == Unmatched(unique_id)


def test_frames_out_are_compact_and_carry_decimals_as_the_ocpp_library_does() -> None:
    """CALLRESULT and CALLERROR frames are compact JSON; a Decimal goes out with one decimal place."""
    endpoint = Endpoint(ocpp16.VERSION)
    assert endpoint.result("r1", {"limit": Decimal("7.25"), "x": [1]}) == '[3,"r1",{"limit":7.2,"x":[1]}]'
    assert endpoint.error(9, "InternalError", "boom") == '[4,9,"InternalError","boom",{}]'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[2,"a1","Heartbeat"]',
            BadFrame(
                "CALL must be [2, uniqueId, action, {payload}]",
                '[4,"a1","RpcFrameworkError","CALL must be [2, uniqueId, action, {payload}]",{}]',
            ),
        ),
        (
            '[2,"a1","Heartbeat",[]]',
            BadFrame(
                "CALL must be [2, uniqueId, action, {payload}]",
                '[4,"a1","FormatViolation","CALL must be [2, uniqueId, action, {payload}]",{}]',
            ),
        ),
        (
            '[7,"a1"]',
            BadFrame(
                "message type 7 with 2 elements is not valid",
                '[4,"a1","MessageTypeNotSupported","message type 7 is not supported",{}]',
            ),
        ),
        (
            '[6,"a1","Heartbeat",{}]',
            BadFrame(
                "message type 6 with 4 elements is not valid",
                '[4,"a1","MessageTypeNotSupported","message type 6 is not supported",{}]',
            ),
        ),
        ('[7,""]', BadFrame("frame has no unique id")),
        ('[3,"a1"]', BadFrame("message type 3 with 2 elements is not valid")),
        (
            '[2,"a1","GetVariables",{}]',
            RefusedCall(
                "GetVariables",
                "NotSupported",
                "GetVariables is sent by the central system, not to it",
                '[4,"a1","NotSupported","GetVariables is sent by the central system, not to it",{}]',
            ),
        ),
    ],
)
def test_ocpp201_frames_are_refused_in_201s_words(text: str, expected: object) -> None:
    """2.0.1: FormatViolation, RpcFrameworkError for a malformed CALL, MessageTypeNotSupported for an unknown type."""
    assert Endpoint(V201).receive(text) == expected


def test_ocpp201_checks_against_its_own_schemas() -> None:
    """A 2.0.1 MeterValues passes against the 2.0.1 schema; its 1.6 shape is refused with a 2.x error."""
    sampled = {"evseId": 1, "meterValue": [{"timestamp": "2026-12-04T10:00:00Z", "sampledValue": [{"value": 1.5}]}]}
    assert isinstance(Endpoint(V201).receive(json.dumps([2, "m1", "MeterValues", sampled])), IncomingCall)
    refused = Endpoint(V201).receive(call_frame("meter_values_8"))
    assert isinstance(refused, RefusedCall) and refused.reply is not None


def test_ocpp21_send_is_handed_on_never_answered() -> None:
    """A 2.1 SEND becomes an IncomingCall that wants no answer; a refused one has no CALLERROR either."""
    endpoint = Endpoint(V21)
    assert endpoint.receive('[6,"s1","Heartbeat",{}]') == IncomingCall("s1", "Heartbeat", {}, answer=False)
    refused = endpoint.receive('[6,"s2","NotifyNothing",{}]')
    assert isinstance(refused, RefusedCall) and refused.code == "NotImplemented" and refused.reply is None
    assert endpoint.receive('[6,"s3","Heartbeat"]') == BadFrame("SEND must be [6, messageId, action, {payload}]")


def test_ocpp21_callresulterror_is_reported_not_answered() -> None:
    """A 2.1 CALLRESULTERROR becomes a ResultError event (logged by the adapter), with no reply."""
    event = Endpoint(V21).receive('[5,"r1","FormatViolation","bad interval",{}]')
    assert event == ResultError("r1", "FormatViolation", "bad interval")


def test_a_malformed_ocpp21_callresulterror_is_ignored_not_answered() -> None:
    """[5, id, code] lacks its description: a malformed frame of a type 2.1 knows, ignored, not answered."""
    event = Endpoint(V21).receive('[5,"r1","FormatViolation"]')
    assert event == BadFrame("message type 5 with 3 elements is not valid")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6,
)
# Arrays led by a message type (or a scalar posing as one), and JSON that is no array at all.
arrays = st.tuples(st.sampled_from([2, 3, 4, 5, 6, 7, "2", None, 2.5]), st.lists(json_values, max_size=4))
frames = arrays.map(lambda t: json.dumps([t[0], *t[1]])) | json_values.filter(lambda v: not isinstance(v, list)).map(
    json.dumps
)


@given(frames)
def test_ocpp16_frames_are_refused_as_parse_frame_refuses_them(text: str) -> None:
    """For any 1.6 frame, the endpoint sees a frame problem exactly where protocol.parse_frame does, as worded."""
    event = Endpoint(ocpp16.VERSION).receive(text)
    parsed = parse_frame(text)
    if isinstance(event, BadFrame):
        assert isinstance(parsed, FrameProblem) and parsed.reason == event.reason
        assert (event.reply is None) == (parsed.unique_id is None)
    else:
        assert not isinstance(parsed, FrameProblem)


@given(frames)
def test_every_reply_is_a_callerror_to_the_frames_own_id(text: str) -> None:
    """Whatever a 2.1 charger sends, the endpoint never raises and any reply addresses the frame's unique id."""
    event = Endpoint(V21).receive(text)
    reply = getattr(event, "reply", None)
    if reply is not None:
        answer = json.loads(reply)
        assert answer[0] == 4 and answer[1] == json.loads(text)[1] and len(answer) == 5


# Routing with each version's real tables: (version, action, the CALLERROR code, None: served).
ROUTES: list[tuple[OcppVersion, str, str | None]] = [
    *[(ocpp16.VERSION, action, None) for action in sorted(CHARGER_ACTIONS)],
    *[(ocpp201.VERSION, action, None) for action in sorted(ocpp201.VERSION.handlers)],
    *[(ocpp21.VERSION, action, None) for action in sorted(ocpp21.VERSION.handlers)],
    (ocpp16.VERSION, "Reset", "NotSupported"),  # the central system's
    (ocpp16.VERSION, "RemoteStartTransaction", "NotSupported"),
    (ocpp16.VERSION, "TransactionEvent", "NotImplemented"),  # not 1.6's
    (ocpp16.VERSION, "heartbeat", "NotImplemented"),
    (ocpp16.VERSION, "", "NotImplemented"),
    (ocpp201.VERSION, "SetChargingProfile", "NotSupported"),
    (ocpp201.VERSION, "NotifyDERAlarm", "NotImplemented"),  # 2.1's own
    (ocpp201.VERSION, "StartTransaction", "NotImplemented"),  # 1.6's only
    (ocpp21.VERSION, "AFRRSignal", "NotSupported"),
    (ocpp21.VERSION, "NotifyPeriodicEventStream", "NotSupported"),  # 2.1's, a SEND not served
    (ocpp21.VERSION, "RemoteStartTransaction", "NotImplemented"),
    (ocpp21.VERSION, "MakeCoffee", "NotImplemented"),
]


@pytest.mark.parametrize(("version", "action", "code"), ROUTES, ids=[f"{v.name}-{a or 'empty'}" for v, a, _ in ROUTES])
def test_each_version_routes_by_its_own_tables(version: OcppVersion, action: str, code: str | None) -> None:
    """A message the version's table serves reaches the schema check (the payload may fail it); the central
    system's own, and 2.1's unserved SEND, are NotSupported; actions the version lacks NotImplemented."""
    event = Endpoint(version).receive(json.dumps([2, "r", action, {}]))
    routing_codes = {"NotSupported", "NotImplemented"}
    if code is None:
        assert not (isinstance(event, RefusedCall) and event.code in routing_codes), event
    else:
        assert isinstance(event, RefusedCall) and event.code == code, event
