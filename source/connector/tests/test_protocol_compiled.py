"""The compiled schema check accepts exactly the payloads jsonschema finds no error in.

check_payload returns an empty verdict as soon as the compiled validator (fastjsonschema)
accepts a payload, and asks jsonschema only about the rest: that is the verdict it gave
before only if the two agree on acceptance. Likewise a second compiled validator, of the
schema without the tolerated keywords, decides whether jsonschema is asked for a refusal:
it must accept exactly the payloads in which jsonschema finds nothing to refuse. They are
compared on every OCPP 1.6 schema the ocpp library ships (requests and responses) but the
three left to jsonschema alone:
- systematically: a payload holding every field the schema lists, with each field and item
  in turn removed, or set to each misfit of its schema (unlisted enum values, strings of
  maxLength and one longer, huge and negative integers, true, 1.0 and 1e308 for an
  integer, other JSON types), plus an extra field and an extra item;
- at random (hypothesis): valid payloads generated from the schema, and those payloads
  with one or two such changes or arbitrary JSON in place of a field or an item;
- on named edge cases where JSON Schema drafts or validators are known to differ.

hypothesis-jsonschema would generate the valid payloads, but its latest release (0.23.1)
fails with the pinned hypothesis, so `valid` does it for the few keywords OCPP 1.6 uses.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastjsonschema
import ocpp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ocpp.exceptions import FormationViolationError, PropertyConstraintViolationError
from ocpp.messages import MessageType, get_validator
from ocpp.v16.enums import Action

from connector.protocol import (
    _DECIMAL_SCHEMAS,
    MAX_NAMED_DEVIATIONS,
    OCPP_VERSION,
    REFUSAL_BY_KEYWORD,
    TOLERATED_KEYWORDS,
    Verdict,
    _compiled,
    _compiled_accepts,
    _compiled_core,
    check_payload,
    quoted,
)

SCHEMA_DIR = Path(ocpp.__file__).parent / "v16" / "schemas"
ALL_SCHEMAS = sorted(
    (MessageType.CallResult, path.stem.removesuffix("Response"))
    if path.stem.endswith("Response")
    else (MessageType.Call, path.stem)
    for path in SCHEMA_DIR.glob("*.json")
)
COMPILED_SCHEMAS = [kind for kind in ALL_SCHEMAS if kind not in _DECIMAL_SCHEMAS]
IDS = [
    f"{'Call' if message_type == MessageType.Call else 'CallResult'}-{action}" for message_type, action in ALL_SCHEMAS
]
COMPILED_IDS = [name for name, kind in zip(IDS, ALL_SCHEMAS, strict=True) if kind not in _DECIMAL_SCHEMAS]

# 150 examples per schema, two payloads each: about 25 s for the 75 schemas on one core.
DIFFERENTIAL = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def jsonschema_errors(message_type: int, action: str, payload: Any) -> list[str]:
    return [error.message for error in get_validator(message_type, action, OCPP_VERSION).iter_errors(payload)]


def schema_of(message_type: int, action: str) -> dict[str, Any]:
    schema: dict[str, Any] = get_validator(message_type, action, OCPP_VERSION).schema
    return schema


def deref(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """The definition a `$ref` points to (OCPP 1.6 refers only to "#/definitions/<name>")."""
    if "$ref" not in schema:
        return schema
    definition: dict[str, Any] = root["definitions"][schema["$ref"].removeprefix("#/definitions/")]
    return definition


def valid(schema: dict[str, Any], root: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Instances of `schema` (the test checks that jsonschema finds no error in them)."""
    schema = deref(schema, root)
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema["type"]
    if kind == "object":
        properties = {name: valid(sub, root) for name, sub in schema.get("properties", {}).items()}
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {name: s for name, s in properties.items() if name in required},
            optional={name: s for name, s in properties.items() if name not in required},
        )
    if kind == "array":
        return st.lists(valid(schema["items"], root), min_size=schema.get("minItems", 0), max_size=3)
    strategies: dict[str, st.SearchStrategy[Any]] = {
        # `format` (date-time, uri) is not asserted by jsonschema here: any text will do.
        "string": st.text(max_size=schema.get("maxLength")),
        "integer": st.integers(),
        "boolean": st.booleans(),
    }
    return strategies[kind]  # a KeyError: a compiled schema uses a type this test does not know


def full(schema: dict[str, Any], root: dict[str, Any]) -> Any:
    """One instance of `schema` with every field it lists and one item in each array."""
    schema = deref(schema, root)
    if "enum" in schema:
        return schema["enum"][0]
    if schema["type"] == "object":
        return {name: full(sub, root) for name, sub in schema.get("properties", {}).items()}
    if schema["type"] == "array":
        return [full(schema["items"], root)]
    return {"string": "x", "integer": 1, "boolean": True}[schema["type"]]


@functools.cache
def valid_payloads(message_type: int, action: str) -> st.SearchStrategy[Any]:
    schema = schema_of(message_type, action)
    return valid(schema, schema)


def places(value: Any, schema: dict[str, Any], root: dict[str, Any]) -> Iterator[tuple[Any, Any, dict[str, Any]]]:
    """(object or array, field or index, its schema) for each field, listed or not, and item of `value`."""
    schema = deref(schema, root)
    if isinstance(value, dict):
        yield value, "extra", {}  # a field no OCPP 1.6 schema lists
        for name, sub in schema.get("properties", {}).items():
            yield value, name, deref(sub, root)  # present or not
            if name in value:
                yield from places(value[name], sub, root)
    elif isinstance(value, list) and "items" in schema:
        items = deref(schema["items"], root)
        for index, item in enumerate(value):
            yield value, index, items
            yield from places(item, items, root)
        yield value, len(value), items  # one item more


# Other JSON types, and numbers that are integers only in some drafts or validators.
SOME_JSON: list[Any] = [None, True, False, 0, 1, -1, 1.0, 0.5, "", "1", [], {}, {"value": "1"}]


def misfits(schema: dict[str, Any]) -> list[Any]:
    """Values that break one rule of `schema` or sit on one of its edges; some are valid."""
    found: list[Any] = []
    for value in schema.get("enum", []):
        found += [value, value.lower(), value.upper(), f" {value}", f"{value}x"]
    if "maxLength" in schema:
        n = schema["maxLength"]
        found += ["x" * n, "\U0001f600" * n, "x" * (n + 1), "\U0001f600" * (n + 1)]
    if schema.get("type") == "integer":
        found += [2**63, 10**400, -(10**400), -0.0, 2.0, 1e308, 5e-324]
    if schema.get("type") == "array":
        found += [[None], [[]], [{}]]
    return found


DELETE: Any = object()


def change(node: Any, slot: Any, new: Any) -> bool:
    """Set field or item `slot` of `node` to (a copy of) `new`, or remove it; False where nothing changes."""
    present = slot in node if isinstance(node, dict) else slot < len(node)
    if new is DELETE:
        if present:
            del node[slot]  # a required field missing, an optional one, an item (down to none)
        return present
    if present or isinstance(node, dict):
        node[slot] = copy.deepcopy(new)  # a misfit in a field or an item, or an extra field
    else:
        node.append(copy.deepcopy(new))  # one item more
    return True


def single_changes(payload: dict[str, Any], schema: dict[str, Any]) -> Iterator[Any]:
    """SOME_JSON, then `payload` with one field or item removed or set to each misfit or SOME_JSON."""
    yield from SOME_JSON
    for index, (_, _, sub) in enumerate(list(places(payload, schema, schema))):
        for new in [DELETE, *misfits(sub), *SOME_JSON]:
            changed = copy.deepcopy(payload)
            node, slot, _ = list(places(changed, schema, schema))[index]
            if change(node, slot, new):
                yield changed


@st.composite
def mutated(draw: st.DrawFn, payload: dict[str, Any], schema: dict[str, Any]) -> Any:
    """`payload` with one or two fields or items removed, or set to a misfit or arbitrary JSON."""
    payload = copy.deepcopy(payload)
    for _ in range(draw(st.integers(1, 2))):
        node, slot, sub = draw(st.sampled_from(list(places(payload, schema, schema))))
        values = st.sampled_from([DELETE, *misfits(sub)]) | st.sampled_from(SOME_JSON) | ANY_JSON
        change(node, slot, draw(values))
    return payload


ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=5,
)


def parts(verdict: Verdict) -> tuple[Any, ...]:
    return type(verdict.refusal), verdict.refusal and verdict.refusal.description, verdict.tolerated


def unbounded_verdict(action: str, payload: Any, message_type: int) -> Verdict:
    """The verdict as jsonschema alone gives it: every error, the first that is not tolerated the refusal.

    check_payload gave exactly this before its work was bounded; it now names only the
    first MAX_NAMED_DEVIATIONS deviations, which no payload compared here exceeds, and none
    of a payload it refuses (the payload is not handled, so nothing is tolerated in it).
    """
    verdict = Verdict()
    for error in get_validator(message_type, action, OCPP_VERSION).iter_errors(payload):
        if error.validator in TOLERATED_KEYWORDS:
            verdict.tolerated.append(quoted(error))
        elif verdict.refusal is None:
            verdict.refusal = REFUSAL_BY_KEYWORD.get(str(error.validator), FormationViolationError)(
                description=quoted(error)
            )
    if verdict.refusal is not None:
        verdict.tolerated = []
    return verdict


def assert_agree(message_type: int, action: str, payload: Any) -> None:
    """Each compiled check accepts `payload` iff jsonschema finds no error (none refused): the verdict is as before."""
    accepted = _compiled_accepts(action, payload, message_type, "1.6")
    errors = jsonschema_errors(message_type, action, payload)
    assert accepted == (not errors), f"compiled accepts: {accepted}; jsonschema: {errors}; payload: {payload!r:.500}"
    before = unbounded_verdict(action, payload, message_type)
    assert _compiled_accepts(action, payload, message_type, "1.6", core=True) == (before.refusal is None), payload
    assert len(before.tolerated) <= MAX_NAMED_DEVIATIONS, "a payload that tests naming, not the verdict"
    verdict = check_payload(action, payload, message_type)
    assert parts(verdict) == parts(before)
    assert len(verdict.unquoted) == (verdict.refusal is not None) + len(verdict.tolerated)  # the same, in safe words


def test_every_ocpp16_schema_is_covered() -> None:
    """The schemas compared are the requests and responses of every OCPP 1.6 action."""
    assert {action for _, action in ALL_SCHEMAS} == {action.value for action in Action}
    assert len(ALL_SCHEMAS) == 2 * len(Action)
    assert {kind for kind in ALL_SCHEMAS if _compiled(*kind, "1.6") is None} == _DECIMAL_SCHEMAS
    assert {kind for kind in ALL_SCHEMAS if _compiled_core(*kind, "1.6") is None} == _DECIMAL_SCHEMAS


@pytest.mark.parametrize(("message_type", "action"), COMPILED_SCHEMAS, ids=COMPILED_IDS)
@DIFFERENTIAL
@given(data=st.data())
def test_compiled_check_accepts_exactly_what_jsonschema_finds_no_error_in(
    message_type: int, action: str, data: st.DataObject
) -> None:
    """On valid and mutated payloads, the compiled check accepts iff jsonschema finds no error."""
    schema = schema_of(message_type, action)
    payload = data.draw(valid_payloads(message_type, action), label="valid")
    assert jsonschema_errors(message_type, action, payload) == [], "the generator made an invalid instance"
    assert_agree(message_type, action, payload)
    assert_agree(message_type, action, data.draw(mutated(payload, schema), label="mutated"))


@pytest.mark.parametrize(("message_type", "action"), COMPILED_SCHEMAS, ids=COMPILED_IDS)
def test_every_single_change_is_decided_alike(message_type: int, action: str) -> None:
    """A payload with every field, each field and item removed or set to each misfit in turn, is decided alike."""
    schema = schema_of(message_type, action)
    payload = full(schema, schema)
    assert jsonschema_errors(message_type, action, payload) == []
    for changed in single_changes(payload, schema):
        assert_agree(message_type, action, changed)


CALL, RESULT = MessageType.Call, MessageType.CallResult
STATUS = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
METER = {"connectorId": 1, "meterValue": [{"timestamp": "2026-11-21T10:15:00Z", "sampledValue": []}]}
EDGE_CASES: list[tuple[str, int, str, dict[str, Any], bool]] = [
    ("true as an integer", CALL, "StatusNotification", {**STATUS, "connectorId": True}, False),
    ("1.0 as an integer", CALL, "StatusNotification", {**STATUS, "connectorId": 1.0}, False),
    ("1.0 as an integer, draft-06", CALL, "LogStatusNotification", {"status": "Uploaded", "requestId": 1.0}, False),
    ("1 as a boolean", RESULT, "GetConfiguration", {"configurationKey": [{"key": "K", "readonly": 1}]}, False),
    ("negative integer", CALL, "StatusNotification", {**STATUS, "connectorId": -1}, True),
    ("huge integer", CALL, "StatusNotification", {**STATUS, "connectorId": 10**400}, True),
    ("no date-time", CALL, "StatusNotification", {**STATUS, "timestamp": "yesterday"}, True),  # format: not asserted
    ("no uri", CALL, "GetDiagnostics", {"location": "not a uri"}, True),
    ("extra field", CALL, "StatusNotification", {**STATUS, "extra": 1}, False),
    ("unlisted enum value", CALL, "StatusNotification", {**STATUS, "errorCode": "Error"}, False),
    ("maxLength characters", CALL, "StatusNotification", {**STATUS, "info": "\U0001f600" * 50}, True),
    ("one character more", CALL, "StatusNotification", {**STATUS, "info": "x" * 51}, False),
    ("required field missing", CALL, "StatusNotification", {"connectorId": 1, "status": "Available"}, False),
    ("fewer than minItems", CALL, "MeterValues", METER, False),
    ("$ref to a definition", RESULT, "SignCertificate", {"status": "Maybe"}, False),
]


@pytest.mark.parametrize(
    ("message_type", "action", "payload", "accepted"), [c[1:] for c in EDGE_CASES], ids=[c[0] for c in EDGE_CASES]
)
def test_edge_cases_are_decided_alike(message_type: int, action: str, payload: dict[str, Any], accepted: bool) -> None:
    """Known differences between JSON Schema drafts and validators are decided as jsonschema's Draft 4 does."""
    assert _compiled_accepts(action, payload, message_type, "1.6") == accepted
    assert_agree(message_type, action, payload)


def test_draft06_schemas_are_compiled_as_draft4() -> None:
    """A security extension schema declares draft-06, where 1.0 is an integer; the library checks it as Draft 4."""
    schema = schema_of(MessageType.Call, "LogStatusNotification")
    payload = {"status": "Uploaded", "requestId": 1.0}
    assert "draft-06" in schema["$schema"]
    as_declared = fastjsonschema.compile(schema, use_default=False, use_formats=False)
    assert as_declared(payload) == payload
    assert not _compiled_accepts("LogStatusNotification", payload, MessageType.Call, "1.6")


def charging_profile(limit: Any) -> dict[str, Any]:
    schedule = {"chargingRateUnit": "W", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}]}
    profile = {
        "chargingProfileId": 1,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": schedule,
    }
    return {"connectorId": 1, "csChargingProfiles": profile}


@pytest.mark.parametrize(
    ("limit", "refusal"),
    [
        (21.4, None),  # 21.4 / 0.1 is 213.99999999999997 in floats: Decimals are needed
        (10**30, None),
        (4.11, "multiple of 0.1"),
        (10**400, "a number is out of range"),  # a remainder beyond 400 digits
    ],
)
def test_decimal_schemas_keep_jsonschema_verdicts(limit: Any, refusal: str | None) -> None:
    """The multipleOf-0.1 schemas are left to jsonschema over Decimals, with its verdicts."""
    assert _compiled(MessageType.Call, "SetChargingProfile", "1.6") is None
    verdict = check_payload("SetChargingProfile", charging_profile(limit), MessageType.Call)
    if refusal is None:
        assert verdict.refusal is None
    else:
        assert isinstance(verdict.refusal, PropertyConstraintViolationError)
        assert refusal in verdict.refusal.description
        assert len(verdict.unquoted) == 1
