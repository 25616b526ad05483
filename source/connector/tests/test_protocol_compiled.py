"""The compiled schema check accepts exactly the payloads jsonschema finds no error in.

check_payload returns an empty verdict as soon as the compiled validator (fastjsonschema)
accepts a payload, and asks jsonschema only about the rest: that is the verdict it gave
before only if the two agree on acceptance. Likewise a second compiled validator, of the
schema without the tolerated keywords, decides whether jsonschema is asked for a refusal:
it must accept exactly the payloads in which jsonschema finds nothing to refuse. They are
compared on every OCPP 1.6, 2.0.1 and 2.1 schema the ocpp library ships (requests,
responses and 2.1's SEND) but the three 1.6 ones left to jsonschema alone, with jsonschema
used as the library validates each version (Draft 4, whatever the schema declares; no
format checker; Decimals for those three only):
- systematically: a payload holding every field the schema lists, with each field and item
  in turn removed, or set to each misfit of its schema (unlisted enum values, strings of
  maxLength and one longer, huge and negative integers, true, 1.0 and 1e308 for an
  integer, numbers on and beside a minimum or maximum, arrays of maxItems and one more,
  other JSON types), plus an extra field and an extra item;
- at random (hypothesis): valid payloads generated from the schema, and those payloads
  with one or two such changes or arbitrary JSON in place of a field or an item;
- on named edge cases where JSON Schema drafts or validators are known to differ.

hypothesis-jsonschema would generate the valid payloads, but its latest release (0.23.1)
fails with the pinned hypothesis, so `valid` does it for the few keywords OCPP uses.

Time (one core): the 75 1.6 schemas take ~25 s, 150 random examples each. The 309 2.x
schemas, larger and more, get 10 random examples each and their single changes made once
per place and value of the schema (single_changes_once): ~35 s more.
"""

from __future__ import annotations

import copy
import functools
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fastjsonschema
import ocpp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft4Validator, ValidationError
from ocpp.exceptions import PropertyConstraintViolationError
from ocpp.messages import MessageType, get_validator
from ocpp.v16.enums import Action
from ocpp.v21.enums import Action as Action21
from ocpp.v201.enums import Action as Action201

from connector.protocol import (
    _DECIMAL_SCHEMAS,
    MAX_ARRAY_ITEMS,
    MAX_NAMED_DEVIATIONS,
    TOLERATED_KEYWORDS,
    Verdict,
    _compiled,
    _compiled_accepts,
    _compiled_core,
    array_items_beyond,
    check_payload,
    inline_definitions,
    quoted,
    refusal_for_keyword,
)

SEND = 6  # OCPP-J 2.1's SEND: the library finds its schema under the bare action name
SCHEMA_DIRS = {"1.6": "v16", "2.0.1": "v201", "2.1": "v21"}
KIND_NAMES = {MessageType.Call: "Call", MessageType.CallResult: "CallResult", SEND: "Send"}


def kind_of(version: str, stem: str) -> tuple[int, str]:
    """(message type, action) of a schema file: 1.6 names a request `<Action>`, 2.x `<Action>Request`."""
    if stem.endswith("Response"):
        return MessageType.CallResult, stem.removesuffix("Response")
    if version == "1.6":
        return MessageType.Call, stem
    if stem.endswith("Request"):
        return MessageType.Call, stem.removesuffix("Request")
    return SEND, stem


def schemas_of(version: str) -> list[tuple[str, int, str]]:
    directory = Path(ocpp.__file__).parent / SCHEMA_DIRS[version] / "schemas"
    return sorted((version, *kind_of(version, path.stem)) for path in directory.glob("*.json"))


ALL_SCHEMAS = [schema for version in SCHEMA_DIRS for schema in schemas_of(version)]


def decimal(version: str, message_type: int, action: str) -> bool:
    return version == "1.6" and (message_type, action) in _DECIMAL_SCHEMAS


def compiled_of(version: str) -> list[Any]:
    """pytest params of `version`'s compiled schemas, named `<version>-<kind>-<action>`."""
    return [
        pytest.param(*schema, id=f"{schema[0]}-{KIND_NAMES[schema[1]]}-{schema[2]}")
        for schema in ALL_SCHEMAS
        if schema[0] == version and not decimal(*schema)
    ]


COMPILED_16 = compiled_of("1.6")
COMPILED_2X = compiled_of("2.0.1") + compiled_of("2.1")

# 150 examples per 1.6 schema, two payloads each: about 25 s for the 75 schemas on one core.
DIFFERENTIAL = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# 10 per 2.x schema: their ~310 schemas are larger, and the single changes cover each field.
DIFFERENTIAL_2X = settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


def jsonschema_errors(version: str, message_type: int, action: str, payload: Any) -> list[str]:
    return [error.message for error in get_validator(message_type, action, version).iter_errors(payload)]


def schema_of(version: str, message_type: int, action: str) -> dict[str, Any]:
    schema: dict[str, Any] = get_validator(message_type, action, version).schema
    return schema


def deref(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """The definition a `$ref` points to (OCPP refers only to "#/definitions/<name>")."""
    if "$ref" not in schema:
        return schema
    definition: dict[str, Any] = root["definitions"][schema["$ref"].removeprefix("#/definitions/")]
    return definition


def valid(schema: dict[str, Any], root: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Instances of `schema` (the test checks that jsonschema finds no error in them)."""
    schema = deref(schema, root)
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind is None:  # any JSON value (DataTransfer's data)
        return st.deferred(lambda: ANY_JSON)
    if kind == "object":
        properties = {name: valid(sub, root) for name, sub in schema.get("properties", {}).items()}
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {name: s for name, s in properties.items() if name in required},
            optional={name: s for name, s in properties.items() if name not in required},
        )
    if kind == "array":
        least = schema.get("minItems", 0)
        return st.lists(valid(schema["items"], root), min_size=least, max_size=min(schema.get("maxItems", 3), 3))
    low, high = schema.get("minimum"), schema.get("maximum")
    integers = st.integers(None if low is None else math.ceil(low), None if high is None else math.floor(high))
    strategies: dict[str, st.SearchStrategy[Any]] = {
        # `format` (date-time, uri) is not asserted by jsonschema here: any text will do.
        "string": st.text(max_size=schema.get("maxLength")),
        "integer": integers,
        "number": integers | st.floats(low, high, allow_nan=False, allow_infinity=False),
        "boolean": st.booleans(),
    }
    return strategies[kind]  # a KeyError: a compiled schema uses a type this test does not know


def full(schema: dict[str, Any], root: dict[str, Any], top: bool = True) -> Any:
    """One instance of `schema` with every field it lists and one item in each array.

    But 2.x's optional customData, listed in nearly every object, only in the top-level one.
    """
    schema = deref(schema, root)
    if "enum" in schema:
        return schema["enum"][0]
    if "type" not in schema:  # any JSON value
        return "x"
    if schema["type"] == "object":
        listed = schema.get("properties", {}).items()
        return {name: full(sub, root, False) for name, sub in listed if top or name != "customData"}
    if schema["type"] == "array":
        return [full(schema["items"], root, False)]
    if schema["type"] in ("integer", "number"):  # 1 where the bounds allow it, else the nearest bound
        return max(min(1, schema.get("maximum", 1)), schema.get("minimum", -math.inf))
    return {"string": "x", "boolean": True}[schema["type"]]


@functools.cache
def valid_payloads(version: str, message_type: int, action: str) -> st.SearchStrategy[Any]:
    schema = schema_of(version, message_type, action)
    return valid(schema, schema)


Place = tuple[Any, Any, dict[str, Any], tuple[int, str]]


def places(value: Any, schema: dict[str, Any], root: dict[str, Any]) -> Iterator[Place]:
    """(object or array, field or index, its schema, where) for each field, listed or not, and item of `value`.

    `where` names the place in the schema (the object or array schema, by identity, and the
    field or "item"), alike wherever a definition recurs: 2.x refers to CustomDataType in
    nearly every object.
    """
    schema = deref(schema, root)
    if isinstance(value, dict):
        yield value, "extra", {}, (id(schema), "extra")  # a field no OCPP schema lists
        for name, sub in schema.get("properties", {}).items():
            yield value, name, deref(sub, root), (id(schema), name)  # present or not
            if name in value:
                yield from places(value[name], sub, root)
    elif isinstance(value, list) and "items" in schema:
        items = deref(schema["items"], root)
        for index, item in enumerate(value):
            yield value, index, items, (id(schema), "item")
            yield from places(item, items, root)
        yield value, len(value), items, (id(schema), "one more")


# Other JSON types, and numbers that are integers only in some drafts or validators.
SOME_JSON: list[Any] = [None, True, False, 0, 1, -1, 1.0, 0.5, "", "1", [], {}, {"value": "1"}]


def misfits(schema: dict[str, Any], root: dict[str, Any], variants: int | None = None) -> list[Any]:
    """Values that break one rule of `schema` or sit on one of its edges; some are valid.

    Every value of an enum, and near misses of the first `variants` of them (of all: None).
    """
    found: list[Any] = []
    for index, value in enumerate(schema.get("enum", [])):
        near = variants is None or index < variants
        found += [value, value.lower(), value.upper(), f" {value}", f"{value}x"] if near else [value]
    if "maxLength" in schema:
        n = schema["maxLength"]
        found += ["x" * n, "\U0001f600" * n, "x" * (n + 1), "\U0001f600" * (n + 1)]
    if schema.get("type") in ("integer", "number"):
        found += [2**63, 10**400, -(10**400), -0.0, 2.0, 0.5, 1e308, -1e308, 5e-324]
        for bound in (schema[name] for name in ("minimum", "maximum") if name in schema):
            found += [bound, int(bound), bound - 1, bound + 1, bound - 0.5, bound + 0.5]
    if schema.get("type") == "array":
        found += [[None], [[]], [{}]]
        if "maxItems" in schema:  # as many items as allowed, and one more
            item = full(schema["items"], root)
            found += [[item] * schema["maxItems"], [item] * (schema["maxItems"] + 1)]
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


DRAFT4_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda value: isinstance(value, dict),
    "array": lambda value: isinstance(value, list),
    "string": lambda value: isinstance(value, str),
    "boolean": lambda value: isinstance(value, bool),
    "integer": lambda value: isinstance(value, int) and not isinstance(value, bool),
    "number": lambda value: isinstance(value, int | float) and not isinstance(value, bool),
}


def fits(value: Any, schema: dict[str, Any]) -> bool:
    """Whether `value` is of the schema's JSON type (as Draft 4 has it: 1.0 is no integer); True without one."""
    kind = schema.get("type")
    return kind is None or value is DELETE or DRAFT4_TYPES[kind](value)


def keywords(schema: dict[str, Any]) -> str:
    """The schema's keywords and values, without its words (two `{"type": "integer"}` differ by description only)."""
    return json.dumps({name: value for name, value in schema.items() if name not in ("description", "javaType")})


def single_changes(payload: dict[str, Any], schema: dict[str, Any]) -> Iterator[Any]:
    """SOME_JSON, then `payload` with one field or item removed or set to each misfit or SOME_JSON."""
    yield from SOME_JSON
    for index, (_, _, sub, _) in enumerate(list(places(payload, schema, schema))):
        for new in [DELETE, *misfits(sub, schema), *SOME_JSON]:
            changed = copy.deepcopy(payload)
            node, slot, _, _ = list(places(changed, schema, schema))[index]
            if change(node, slot, new):
                yield changed


def single_changes_once(payload: dict[str, Any], schema: dict[str, Any]) -> Iterator[Any]:
    """Like single_changes, for the 2.x schemas (large and repetitive): each change made once, in a small payload.

    A place of the schema is changed where it first occurs in `payload` only, and set to a
    value only where no place of the same schema was set to it before: each schema keyword
    meets each value once, however often the schema recurs (2.1's SetChargingProfile has 222
    places, most of them integers, numbers, strings). A value of another JSON type than the
    schema's meets only its `type` (and `enum`): no other keyword applies to it, so it is
    tried once per type. An extra field, whose value no keyword reads, is tried with each
    value once, and in each object with 1 only. Near misses of an enum value (its case,
    a space, a suffix) are tried for its first value. Each change is made in `payload`
    pruned to the required fields and the path to the place (jsonschema's time grows with
    the payload); `payload` itself, with every field, is compared whole.
    """
    yield payload
    yield from SOME_JSON
    paths = dict(node_paths(payload))
    seen: set[Any] = set()
    for node, slot, sub, where in list(places(payload, schema, schema)):
        if where in seen:
            continue
        seen.add(where)
        path = [*paths[id(node)], slot]
        base = pruned(payload, schema, schema, path)
        shape = keywords(sub)
        for new in [DELETE, *misfits(sub, schema, variants=1), *SOME_JSON]:
            tried: tuple[Any, str]
            if slot == "extra":
                tried = (where if repr(new) == "1" else "extra", repr(new))
            else:
                tried = (shape if fits(new, sub) else (sub.get("type"), "enum" in sub), repr(new))
            if new is not DELETE and tried in seen:
                continue
            seen.add(tried)
            changed = copy.deepcopy(base)
            if change(*located(changed, path), new):
                yield changed


def node_paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[int, tuple[Any, ...]]]:
    """(identity, path of fields and indexes) of each object and array in `value`."""
    if isinstance(value, dict | list):
        yield id(value), path
        for slot, item in value.items() if isinstance(value, dict) else enumerate(value):
            yield from node_paths(item, (*path, slot))


def located(value: Any, path: list[Any]) -> tuple[Any, Any]:
    """(object or array, field or index) that `path` names in `value`."""
    for slot in path[:-1]:
        value = value[slot]
    return value, path[-1]


def pruned(value: Any, schema: dict[str, Any], root: dict[str, Any], path: list[Any]) -> Any:
    """A copy of `value` with only the required fields of each object, and the fields on `path`."""
    schema = deref(schema, root)
    if isinstance(value, dict):
        keep = set(schema.get("required", ())) | set(path[:1])
        properties = schema.get("properties", {})
        return {
            name: pruned(item, properties.get(name, {}), root, path[1:] if path[:1] == [name] else [])
            for name, item in value.items()
            if name in keep
        }
    if isinstance(value, list):
        items = schema.get("items", {})
        return [pruned(item, items, root, path[1:] if path[:1] == [index] else []) for index, item in enumerate(value)]
    return value


@st.composite
def mutated(draw: st.DrawFn, payload: dict[str, Any], schema: dict[str, Any]) -> Any:
    """`payload` with one or two fields or items removed, or set to a misfit or arbitrary JSON."""
    payload = copy.deepcopy(payload)
    for _ in range(draw(st.integers(1, 2))):
        node, slot, sub, _ = draw(st.sampled_from(list(places(payload, schema, schema))))
        values = st.sampled_from([DELETE, *misfits(sub, schema)]) | st.sampled_from(SOME_JSON) | ANY_JSON
        change(node, slot, draw(values))
    return payload


ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=5,
)


def parts(verdict: Verdict) -> tuple[Any, ...]:
    return type(verdict.refusal), verdict.refusal and verdict.refusal.description, verdict.tolerated


def unbounded_verdict(version: str, errors: list[ValidationError]) -> Verdict:
    """The verdict as jsonschema alone gives it: every error, the first that is not tolerated the refusal.

    check_payload gave exactly this before its work was bounded; it now names only the
    first MAX_NAMED_DEVIATIONS deviations (assert_agree compares those), and none of a
    payload it refuses (the payload is not handled, so nothing is tolerated in it).
    """
    verdict = Verdict()
    for error in errors:
        if error.validator in TOLERATED_KEYWORDS:
            verdict.tolerated.append(quoted(error))
        elif verdict.refusal is None:
            verdict.refusal = refusal_for_keyword(str(error.validator), version)(description=quoted(error))
    if verdict.refusal is not None:
        verdict.tolerated = []
    return verdict


def assert_agree(version: str, message_type: int, action: str, payload: Any) -> None:
    """Each compiled check accepts `payload` iff jsonschema finds no error (none refused): the verdict is as before."""
    accepted = _compiled_accepts(action, payload, message_type, version)
    errors = list(get_validator(message_type, action, version).iter_errors(payload))
    messages = [error.message for error in errors]
    assert accepted == (not errors), f"compiled accepts: {accepted}; jsonschema: {messages}; payload: {payload!r:.500}"
    before = unbounded_verdict(version, errors)
    assert _compiled_accepts(action, payload, message_type, version, core=True) == (before.refusal is None), payload
    del before.tolerated[MAX_NAMED_DEVIATIONS:]  # check_payload names the first ones only
    verdict = check_payload(action, payload, message_type, version)
    if not accepted and array_items_beyond(payload, MAX_ARRAY_ITEMS):
        # Refused unwalked, whatever jsonschema would say (test_protocol.py): a mutation
        # repeating a large item can get there.
        assert verdict.refusal is not None
        assert verdict.unquoted == [f"payload: more than {MAX_ARRAY_ITEMS} array items"]
        return
    assert parts(verdict) == parts(before)
    assert len(verdict.unquoted) == (verdict.refusal is not None) + len(verdict.tolerated)  # the same, in safe words


KNOWN = {"1.6": Action, "2.0.1": Action201, "2.1": Action21}


@pytest.mark.parametrize("version", list(SCHEMA_DIRS))
def test_every_schema_is_covered(version: str) -> None:
    """The schemas compared are the requests and responses of every action of the version (and 2.1's SEND)."""
    schemas = [(message_type, action) for v, message_type, action in ALL_SCHEMAS if v == version]
    actions = {action.value for action in KNOWN[version]}
    assert {action for message_type, action in schemas if message_type != SEND} == actions
    assert len(schemas) == 2 * len(actions) + (version == "2.1")  # NotifyPeriodicEventStream, sent as SEND
    uncompiled = {kind for kind in schemas if _compiled(*kind, version) is None}
    assert uncompiled == {kind for kind in schemas if _compiled_core(*kind, version) is None}
    assert uncompiled == (_DECIMAL_SCHEMAS if version == "1.6" else set())


def refs_in(node: Any) -> list[Any]:
    if isinstance(node, list):
        return [ref for item in node for ref in refs_in(item)]
    if not isinstance(node, dict):
        return []
    return ([node["$ref"]] if "$ref" in node else []) + [ref for value in node.values() for ref in refs_in(value)]


@pytest.mark.parametrize(("version", "message_type", "action"), COMPILED_16 + COMPILED_2X)
def test_every_schema_is_compiled_with_its_definitions_written_in(version: str, message_type: int, action: str) -> None:
    """No compiled schema falls back to fastjsonschema's function per definition (what the speed-up is about)."""
    inlined = inline_definitions(schema_of(version, message_type, action))
    assert refs_in(inlined) == []
    assert "definitions" not in inlined


def test_a_definition_is_written_in_wherever_it_is_used() -> None:
    unit = {"type": "object", "properties": {"unit": {"type": "string"}}}
    schema = {
        "definitions": {
            "Unit": unit,
            "Sample": {"type": "object", "properties": {"unit": {"$ref": "#/definitions/Unit"}}},
        },
        "type": "object",
        "properties": {
            "sample": {"$ref": "#/definitions/Sample", "description": "ignored beside a $ref, as in Draft 4"},
            "unit": {"$ref": "#/definitions/Unit"},
        },
    }
    assert inline_definitions(schema) == {
        "type": "object",
        "properties": {"sample": {"type": "object", "properties": {"unit": unit}}, "unit": unit},
    }


def test_field_names_and_data_are_not_taken_for_keywords() -> None:
    """A field named `definitions` or `$ref` stays a field, and an enum's values stay as they are."""
    data = {"enum": [{"$ref": "#/definitions/Text"}, {"definitions": 1}], "default": {"$ref": "x"}}
    schema: dict[str, Any] = {
        "definitions": {"Text": {"type": "string"}},
        "type": "object",
        "properties": {"definitions": {"type": "integer"}, "$ref": {"$ref": "#/definitions/Text"}, "shape": data},
        "additionalProperties": False,
    }
    assert inline_definitions(schema)["properties"] == {
        "definitions": {"type": "integer"},
        "$ref": {"type": "string"},
        "shape": data,
    }
    # Compiled, they are checked as jsonschema checks them (fastjsonschema itself cannot
    # compile a $ref inside data, so the enum here has none).
    schema["properties"]["shape"] = {"enum": [{"definitions": 1}]}
    check = fastjsonschema.compile({**inline_definitions(schema), "$schema": "http://json-schema.org/draft-04/schema#"})
    payloads = [{"definitions": 1}, {"definitions": "x"}, {"$ref": "text"}, {"$ref": 1}, {"shape": {"definitions": 1}}]
    payloads.append({"shape": {"definitions": 2}})
    for payload in payloads:
        try:
            check(payload)
            accepted = True
        except fastjsonschema.JsonSchemaValueException:
            accepted = False
        assert accepted == Draft4Validator(schema).is_valid(payload), payload


@pytest.mark.parametrize(
    "ref",
    [
        "#/definitions/Node",  # a definition that refers to itself: it cannot be written out
        "#/definitions/Missing",
        "#/properties/child",  # a pointer into the schema, not to a definition
        "other.json#/definitions/Node",
        7,
        None,
    ],
)
def test_a_schema_whose_refs_cannot_be_written_in_is_kept_as_it_is(ref: Any) -> None:
    schema = {
        "definitions": {"Node": {"type": "object", "properties": {"child": {"$ref": ref}}}},
        "$ref": "#/definitions/Node",
    }
    assert inline_definitions(schema) is schema


def differential(version: str, message_type: int, action: str, data: st.DataObject) -> None:
    """A valid payload and a mutation of it are decided alike."""
    schema = schema_of(version, message_type, action)
    payload = data.draw(valid_payloads(version, message_type, action), label="valid")
    assert jsonschema_errors(version, message_type, action, payload) == [], "the generator made an invalid instance"
    assert_agree(version, message_type, action, payload)
    assert_agree(version, message_type, action, data.draw(mutated(payload, schema), label="mutated"))


@pytest.mark.parametrize(("version", "message_type", "action"), COMPILED_16)
@DIFFERENTIAL
@given(data=st.data())
def test_compiled_check_accepts_exactly_what_jsonschema_finds_no_error_in(
    version: str, message_type: int, action: str, data: st.DataObject
) -> None:
    """On valid and mutated payloads, the compiled check accepts iff jsonschema finds no error."""
    differential(version, message_type, action, data)


@pytest.mark.parametrize(("version", "message_type", "action"), COMPILED_2X)
@DIFFERENTIAL_2X
@given(data=st.data())
def test_compiled_2x_check_accepts_exactly_what_jsonschema_finds_no_error_in(
    version: str, message_type: int, action: str, data: st.DataObject
) -> None:
    """On valid and mutated 2.0.1 and 2.1 payloads, the compiled check accepts iff jsonschema finds no error."""
    differential(version, message_type, action, data)


@pytest.mark.parametrize(("version", "message_type", "action"), COMPILED_16 + COMPILED_2X)
def test_every_single_change_is_decided_alike(version: str, message_type: int, action: str) -> None:
    """A payload with every field, each field and item removed or set to each misfit in turn, is decided alike."""
    schema = schema_of(version, message_type, action)
    payload = full(schema, schema)
    assert jsonschema_errors(version, message_type, action, payload) == []
    for changed in single_changes(payload, schema) if version == "1.6" else single_changes_once(payload, schema):
        assert_agree(version, message_type, action, changed)


CALL, RESULT = MessageType.Call, MessageType.CallResult
STATUS = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
METER = {"connectorId": 1, "meterValue": [{"timestamp": "2026-11-21T10:15:00Z", "sampledValue": []}]}
STATUS_2X = {"timestamp": "2026-11-21T10:15:00Z", "connectorStatus": "Available", "evseId": 1, "connectorId": 1}


def meter_2x(value: Any) -> dict[str, Any]:
    return {"evseId": 1, "meterValue": [{"timestamp": "2026-11-21T10:15:00Z", "sampledValue": [{"value": value}]}]}


def ev_needs(state_of_charge: Any) -> dict[str, Any]:
    dc = {"evMaxCurrent": 32, "evMaxVoltage": 400, "stateOfCharge": state_of_charge}
    return {"evseId": 1, "chargingNeeds": {"requestedEnergyTransfer": "DC", "dcChargingParameters": dc}}


STREAM = {"id": 1, "pending": 0, "basetime": "2026-11-21T10:15:00Z"}
ID_TOKEN_21 = {"idToken": {"idToken": "04A2B3C4", "type": "ISO14443"}}
EDGE_CASES: list[tuple[str, str, int, str, dict[str, Any], bool]] = [
    ("true as an integer", "1.6", CALL, "StatusNotification", {**STATUS, "connectorId": True}, False),
    ("1.0 as an integer", "1.6", CALL, "StatusNotification", {**STATUS, "connectorId": 1.0}, False),
    (
        "1.0 as an integer, draft-06",
        "1.6",
        CALL,
        "LogStatusNotification",
        {"status": "Uploaded", "requestId": 1.0},
        False,
    ),
    ("1 as a boolean", "1.6", RESULT, "GetConfiguration", {"configurationKey": [{"key": "K", "readonly": 1}]}, False),
    ("negative integer", "1.6", CALL, "StatusNotification", {**STATUS, "connectorId": -1}, True),
    ("huge integer", "1.6", CALL, "StatusNotification", {**STATUS, "connectorId": 10**400}, True),
    (
        "no date-time",
        "1.6",
        CALL,
        "StatusNotification",
        {**STATUS, "timestamp": "yesterday"},
        True,
    ),  # format: not asserted
    ("no uri", "1.6", CALL, "GetDiagnostics", {"location": "not a uri"}, True),
    ("extra field", "1.6", CALL, "StatusNotification", {**STATUS, "extra": 1}, False),
    ("unlisted enum value", "1.6", CALL, "StatusNotification", {**STATUS, "errorCode": "Error"}, False),
    ("maxLength characters", "1.6", CALL, "StatusNotification", {**STATUS, "info": "\U0001f600" * 50}, True),
    ("one character more", "1.6", CALL, "StatusNotification", {**STATUS, "info": "x" * 51}, False),
    ("required field missing", "1.6", CALL, "StatusNotification", {"connectorId": 1, "status": "Available"}, False),
    ("fewer than minItems", "1.6", CALL, "MeterValues", METER, False),
    ("$ref to a definition", "1.6", RESULT, "SignCertificate", {"status": "Maybe"}, False),
    # 2.x schemas all declare draft-06, and the library checks them as Draft 4 too.
    ("1.0 as an integer, 2.0.1", "2.0.1", CALL, "StatusNotification", {**STATUS_2X, "evseId": 1.0}, False),
    ("1.0 as an integer, 2.1", "2.1", CALL, "StatusNotification", {**STATUS_2X, "connectorId": 1.0}, False),
    ("true as a number", "2.0.1", CALL, "MeterValues", meter_2x(True), False),
    ("an integer as a number", "2.0.1", CALL, "MeterValues", meter_2x(230), True),
    ("a huge integer as a number", "2.0.1", CALL, "MeterValues", meter_2x(10**400), True),
    ("a string as a number", "2.1", CALL, "MeterValues", meter_2x(" 0.0"), False),
    ("no date-time, 2.0.1", "2.0.1", CALL, "StatusNotification", {**STATUS_2X, "timestamp": "yesterday"}, True),
    ("on the maximum", "2.0.1", CALL, "NotifyEVChargingNeeds", ev_needs(100), True),
    ("above the maximum", "2.0.1", CALL, "NotifyEVChargingNeeds", ev_needs(100.5), False),
    ("below the minimum", "2.0.1", CALL, "NotifyEVChargingNeeds", ev_needs(-1), False),
    ("a huge integer above the maximum", "2.0.1", CALL, "NotifyEVChargingNeeds", ev_needs(10**400), False),
    (
        "maxItems items",
        "2.0.1",
        CALL,
        "GetMonitoringReport",
        {"requestId": 1, "monitoringCriteria": ["ThresholdMonitoring"] * 3},
        True,
    ),
    (
        "one item more",
        "2.0.1",
        CALL,
        "GetMonitoringReport",
        {"requestId": 1, "monitoringCriteria": ["ThresholdMonitoring"] * 4},
        False,
    ),
    ("$ref under a urn $id", "2.1", CALL, "Authorize", ID_TOKEN_21, True),
    ("wrong type under a urn $id", "2.1", CALL, "Authorize", {"idToken": {"idToken": 4, "type": "ISO14443"}}, False),
    (
        "extra field in customData",
        "2.1",
        CALL,
        "Authorize",
        {**ID_TOKEN_21, "customData": {"vendorId": "V", "x": 1}},
        True,
    ),
    ("SEND", "2.1", SEND, "NotifyPeriodicEventStream", {**STREAM, "data": [{"t": 0.5, "v": "230.1"}]}, True),
    ("SEND, fewer than minItems", "2.1", SEND, "NotifyPeriodicEventStream", {**STREAM, "data": []}, False),
    (
        "beyond the array bound, only a tolerated deviation",  # refused unwalked (assert_agree)
        "2.0.1",
        CALL,
        "MeterValues",
        {**meter_2x(1), "extra": [0] * (MAX_ARRAY_ITEMS + 1)},
        False,
    ),
]


@pytest.mark.parametrize(
    ("version", "message_type", "action", "payload", "accepted"),
    [c[1:] for c in EDGE_CASES],
    ids=[c[0] for c in EDGE_CASES],
)
def test_edge_cases_are_decided_alike(
    version: str, message_type: int, action: str, payload: dict[str, Any], accepted: bool
) -> None:
    """Known differences between JSON Schema drafts and validators are decided as jsonschema's Draft 4 does."""
    assert _compiled_accepts(action, payload, message_type, version) == accepted
    assert_agree(version, message_type, action, payload)


@pytest.mark.parametrize(
    ("version", "action", "payload"),
    [
        ("1.6", "LogStatusNotification", {"status": "Uploaded", "requestId": 1.0}),
        ("2.0.1", "StatusNotification", {**STATUS_2X, "evseId": 1.0}),
        ("2.1", "StatusNotification", {**STATUS_2X, "evseId": 1.0}),
    ],
)
def test_draft06_schemas_are_compiled_as_draft4(version: str, action: str, payload: dict[str, Any]) -> None:
    """Schemas declaring draft-06, where 1.0 is an integer, are checked as Draft 4, as the library does."""
    schema = schema_of(version, MessageType.Call, action)
    assert "draft-06" in schema["$schema"]
    as_declared = fastjsonschema.compile(schema, use_default=False, use_formats=False)
    assert as_declared(payload) == payload
    assert not _compiled_accepts(action, payload, MessageType.Call, version)


def test_defaults_are_not_written_into_the_payload() -> None:
    """A 2.x schema's `default` (unit Wh) stays out of the checked payload: an absent unit is the mapper's to read."""
    payload = meter_2x(1.5)
    payload["meterValue"][0]["sampledValue"][0]["unitOfMeasure"] = {}
    unit = get_validator(MessageType.Call, "MeterValues", "2.0.1").schema["definitions"]["UnitOfMeasureType"]
    assert unit["properties"]["unit"]["default"] == "Wh"
    assert check_payload("MeterValues", payload, MessageType.Call, "2.0.1") == Verdict()
    assert payload["meterValue"][0]["sampledValue"][0]["unitOfMeasure"] == {}


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
    assert _compiled(MessageType.Call, "SetChargingProfile", "2.0.1") is not None  # 2.x has no multipleOf
    verdict = check_payload("SetChargingProfile", charging_profile(limit), MessageType.Call)
    if refusal is None:
        assert verdict.refusal is None
    else:
        assert isinstance(verdict.refusal, PropertyConstraintViolationError)
        assert refusal in verdict.refusal.description
        assert len(verdict.unquoted) == 1
