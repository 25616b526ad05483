"""Pure: OCPP-J framing and schema checks, with the tolerance real chargers need.

`parse_frame` turns frame text into the ocpp library's Call / CallResult / CallError, or
a `FrameProblem` that says whether an answer is possible (OCPP-J 1.6 section 4: without a
readable unique id there is nobody to address a CALLERROR to). `check_payload` validates
against the library's schemas of OCPP 1.6, 2.0.1 or 2.1 and separates deviations that leave
no sense to be made of a message from harmless ones that are tolerated and reported, and
refuses with the version's own error codes (OCPP-J 2.0.1 respelt two of 1.6's). A compiled
validator (fastjsonschema) lets the common, valid payload through cheaply; a second one,
compiled without the tolerated keywords, decides as cheaply whether a payload it rejects is
refused. jsonschema only words the verdict, and its lazy errors are taken no further than
the refusal and the first few deviations: a 1 MB MeterValues.req with 25,000 invented
measurands made it format (with the whole enum) an error per sample, 0.8 s of the loop.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any, TypeAlias

import fastjsonschema
from jsonschema import Draft4Validator, ValidationError
from ocpp.exceptions import (
    FormationViolationError,
    FormatViolationError,
    OccurenceConstraintViolationError,
    OccurrenceConstraintViolationError,
    OCPPError,
    PropertyConstraintViolationError,
    ProtocolError,
    TypeConstraintViolationError,
)
from ocpp.messages import Call, CallError, CallResult, MessageType, get_validator
from ocpp.v16.enums import Action
from ocpp.v21.enums import Action as Action21
from ocpp.v201.enums import Action as Action201

OCPP_VERSION = "1.6"
OCPP_2X_VERSIONS = ("2.0.1", "2.1")  # the ocpp library's names, as every check here takes them

# Charger-initiated actions of OCPP 1.6 and its security extension: the ones we answer.
CHARGER_ACTIONS = frozenset(
    {
        "Authorize",
        "BootNotification",
        "DataTransfer",
        "DiagnosticsStatusNotification",
        "FirmwareStatusNotification",
        "Heartbeat",
        "LogStatusNotification",
        "MeterValues",
        "SecurityEventNotification",
        "SignCertificate",
        "SignedFirmwareStatusNotification",
        "StartTransaction",
        "StatusNotification",
        "StopTransaction",
    }
)
KNOWN_ACTIONS = frozenset(action.value for action in Action)
# Every action a version defines, sent either way: a CALL naming another is unknown (NotImplemented).
KNOWN_ACTIONS_BY_VERSION: dict[str, frozenset[str]] = {
    "1.6": KNOWN_ACTIONS,
    "2.0.1": frozenset(action.value for action in Action201),
    # The ocpp library's 2.1 enum lacks NotifyPeriodicEventStream (2.1's one SEND-only message):
    # known, so a station sending it is told it is not served, not that it is unknown.
    "2.1": frozenset(action.value for action in Action21) | {"NotifyPeriodicEventStream"},
}

# Schema keywords whose violation a charger can commit without making the message
# meaningless: an unlisted enum value (errorCode "Error", unit "Hz"), an extra field,
# an over-long string, an empty list. Everything else (a type or a required field)
# leaves no sense to be made of the message and is refused.
TOLERATED_KEYWORDS = frozenset({"enum", "additionalProperties", "maxLength", "minItems"})

# Deviations named per payload: each is named in a log line, and naming costs jsonschema a
# formatted message; a charger repeating one quirk in every sample needs naming only once.
MAX_NAMED_DEVIATIONS = 5

# Sampled values handled per frame (MeterValues, 1.6's StopTransaction, 2.x's TransactionEvent):
# beyond these a frame is answered but the rest is skipped, and named. 25,000 compact ones fit in
# a 1 MiB frame, and each costs mapping and publishing; where one deviation or refusal sits
# at a frame's end, jsonschema walks every value to word it (~25 us each). 2,000 bound a
# frame to ~50 ms of the loop; real chargers send tens per message, a transaction's data
# some hundreds.
MAX_SAMPLED_VALUES = 2000

# Array items in a payload that is not plainly valid (the compiled check refused it), beyond
# which it is refused without asking jsonschema, whose walk costs ~15 us an item: any
# payload, a charger's answer to our calls and an operator's execute_ocpp_call included,
# is bounded to ~75 ms of the loop. A capped MeterValues stays below it (2,000 values in
# at most 2,000 elements); real answers (a GetConfiguration of some hundred keys) far below.
MAX_ARRAY_ITEMS = 5000

REFUSAL_BY_KEYWORD: dict[str, type[OCPPError]] = {
    "type": TypeConstraintViolationError,
    "required": ProtocolError,
    "minimum": PropertyConstraintViolationError,
    "maximum": PropertyConstraintViolationError,
    "multipleOf": PropertyConstraintViolationError,
    "pattern": PropertyConstraintViolationError,
    "maxItems": OccurenceConstraintViolationError,
}

# OCPP-J 2.0.1 section 4.3 (2.1's table is the same) respells 1.6's FormationViolation and
# OccurenceConstraintViolation, and names a missing required field an occurrence constraint
# ("fields violate occurrence constraints") where 1.6 answers ProtocolError ("payload for
# Action is incomplete"). 1.6 stays as its chargers know it.
REFUSAL_BY_KEYWORD_2X: dict[str, type[OCPPError]] = {
    **REFUSAL_BY_KEYWORD,
    "required": OccurrenceConstraintViolationError,
    "maxItems": OccurrenceConstraintViolationError,
}

# OCPP-J 1.6 error code -> its 2.0.1 and 2.1 spelling, for CALLERRORs built elsewhere by code.
ERROR_CODES_2X: dict[str, str] = {
    FormationViolationError.code: FormatViolationError.code,
    OccurenceConstraintViolationError.code: OccurrenceConstraintViolationError.code,
}


def refusal_for_keyword(keyword: str, version: str = OCPP_VERSION) -> type[OCPPError]:
    """The CALLERROR that OCPP `version` answers to a payload breaking the schema's `keyword`."""
    by_keyword = REFUSAL_BY_KEYWORD if version == OCPP_VERSION else REFUSAL_BY_KEYWORD_2X
    return by_keyword.get(keyword, format_violation_error(version))


def format_violation_error(version: str = OCPP_VERSION) -> type[OCPPError]:
    """A payload or frame that is syntactically incorrect: 1.6's FormationViolation, 2.x's FormatViolation."""
    error: type[OCPPError] = FormationViolationError if version == OCPP_VERSION else FormatViolationError
    return error


def occurrence_violation_error(version: str = OCPP_VERSION) -> type[OCPPError]:
    """Too many or too few of something: 1.6's misspelt OccurenceConstraintViolation, 2.x's corrected one."""
    error: type[OCPPError] = (
        OccurenceConstraintViolationError if version == OCPP_VERSION else OccurrenceConstraintViolationError
    )
    return error


Message: TypeAlias = "Call | CallResult | CallError"


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise ValueError(f"{text} is out of range")
    return number


# Built once: json.loads with parse_constant/parse_float builds a decoder (and its scanner)
# on every call, a few microseconds of every frame.
_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite)


def load_json(text: str | bytes | bytearray) -> Any:
    """json.loads that refuses what strict JSON consumers would choke on.

    NaN, Infinity and numbers beyond float range are not JSON (RFC 8259 section 6) and would
    poison every retained message they reach; nesting deep enough to exhaust the stack is
    refused as well. Both raise ValueError, like any other text that is not JSON. Takes what
    json.loads takes, the same way: bytes in UTF-8, -16 or -32, and no BOM before text.
    """
    if isinstance(text, bytes | bytearray):
        text = text.decode(json.detect_encoding(text), "surrogatepass")
    elif text.startswith("\ufeff"):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    try:
        return _DECODER.decode(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


@dataclass(frozen=True)
class FrameProblem:
    """A frame that is not an OCPP-J message; `unique_id` is None where no answer is possible."""

    reason: str
    unique_id: str | int | None = None


@dataclass
class Verdict:
    """A schema check's outcome; `tolerated` names at most MAX_NAMED_DEVIATIONS deviations.

    `tolerated` and the refusal's description quote (a short prefix of) the offending value,
    which helps to tell a charger's quirk; `unquoted` says the same, the refusal first, from
    the path and the schema alone, for payloads built from an operator's value (a secret).
    """

    refusal: OCPPError | None = None
    tolerated: list[str] = field(default_factory=list)
    unquoted: list[str] = field(default_factory=list)


def parse_frame(text: str | bytes) -> Message | FrameProblem:
    try:
        frame = load_json(text)
    except ValueError:
        return FrameProblem("frame is not JSON")
    if not isinstance(frame, list) or len(frame) < 2:
        return FrameProblem("frame is not an OCPP-J message array")
    type_id, unique_id = frame[0], frame[1]
    # Some chargers send numeric ids; they are answered with the same id, as sent.
    if isinstance(unique_id, bool) or not isinstance(unique_id, str | int) or unique_id == "":
        return FrameProblem("frame has no unique id")
    if type_id == MessageType.Call:
        return _parse_call(frame, unique_id)
    if type_id == MessageType.CallResult and len(frame) == 3 and isinstance(frame[2], dict):
        return CallResult(unique_id, frame[2])
    if type_id == MessageType.CallError and len(frame) >= 4:
        details = frame[4] if len(frame) > 4 else {}
        return CallError(unique_id, str(frame[2]), str(frame[3]), details)
    # OCPP-J 1.6 4.1.3: an unknown message type, or a malformed result, is ignored.
    return FrameProblem(f"message type {type_id!r} with {len(frame)} elements is not valid")


def _parse_call(frame: list[Any], unique_id: str | int) -> Call | FrameProblem:
    if len(frame) != 4 or not isinstance(frame[2], str) or not isinstance(frame[3], dict):
        return FrameProblem("CALL must be [2, uniqueId, action, {payload}]", unique_id)
    return Call(unique_id, frame[2], frame[3])


@functools.cache
def schema_fields(action: str, version: str = OCPP_VERSION) -> frozenset[str]:
    """The top-level fields OCPP `version` defines for a charger's `action` request."""
    validator: Draft4Validator = get_validator(MessageType.Call, action, version)
    return frozenset(validator.schema.get("properties", {}))


# OCPP 1.6 schemas with `multipleOf: 0.1` numbers: validated over Decimals, as the ocpp
# library does (its validator cache is keyed by name and version only, so we must ask the
# same way it does). 2.0.1 and 2.1 have no multipleOf, and the library parses them as floats:
# their SetChargingProfile is compiled like any other.
_DECIMAL_SCHEMAS = frozenset(
    {
        (MessageType.Call, "SetChargingProfile"),
        (MessageType.Call, "RemoteStartTransaction"),
        (MessageType.CallResult, "GetCompositeSchedule"),
    }
)


def _decimal(message_type: int, action: str, version: str) -> bool:
    return version == OCPP_VERSION and (message_type, action) in _DECIMAL_SCHEMAS


def check_payload(action: str, payload: dict[str, Any], message_type: int, version: str = OCPP_VERSION) -> Verdict:
    """Validate a request (CALL) or a response (CALLRESULT) of `action` against OCPP `version`.

    A refusal is of `version`'s error codes. `payload` holds JSON values as json.loads
    returns them (the compiled check would take a tuple for an array, which jsonschema refuses).
    """
    if _compiled_accepts(action, payload, message_type, version):
        return Verdict()
    if array_items_beyond(payload, MAX_ARRAY_ITEMS):
        beyond = f"payload: more than {MAX_ARRAY_ITEMS} array items"
        refusal = occurrence_violation_error(version)(description=beyond)
        return Verdict(refusal=refusal, unquoted=[beyond])
    return _jsonschema_verdict(action, payload, message_type, version)


def array_items_beyond(payload: Any, limit: int) -> bool:
    """Whether the arrays in `payload`, at any depth, hold more than `limit` items in all.

    Stops as soon as it knows: at most `limit` items are looked at.
    """
    pending, seen = [payload], 0
    while pending:
        value = pending.pop()
        if isinstance(value, list):
            seen += len(value)
            if seen > limit:
                return True
            pending.extend(value)
        elif isinstance(value, dict):
            pending.extend(value.values())
    return False


# Draft 4 is what the ocpp library validates every schema with, even those that declare
# draft-06 (1.6's security extension, all of 2.0.1 and 2.1), under which fastjsonschema
# would take 1.0 as an integer.
_DRAFT_4 = "http://json-schema.org/draft-04/schema#"


@functools.cache
def _compiled(message_type: int, action: str, version: str) -> Callable[[Any], Any] | None:
    """fastjsonschema's compilation of the library's schema, None where jsonschema alone decides.

    The compiled check takes ~25 us for an 8-sample MeterValues.req, jsonschema ~300 us.
    tests/test_protocol_compiled.py shows that, for every schema compiled here, the two accept
    exactly the same payloads, so the verdict of a payload the compiled check accepts is empty.
    """
    # _DECIMAL_SCHEMAS stay with jsonschema. fastjsonschema writes their multipleOf 0.1 into
    # its code as a float, and a Decimal divided by a float raises TypeError; compiled over
    # floats instead, it raises OverflowError for an integer like 10**400 (which jsonschema's
    # Decimal remainder refuses as out of range). They are rare messages (charging profiles,
    # a composite schedule), not worth a third way of checking.
    if _decimal(message_type, action, version):
        return None
    return _compile(get_validator(message_type, action, version).schema)


def _compile(schema: dict[str, Any]) -> Callable[[Any], Any]:
    """fastjsonschema's check of `schema` as Draft 4, its definitions written in where they are used.

    fastjsonschema makes a function of each definition and calls it per use, with the
    item's name built for an error it may never raise: ~1 us a use, and a 2.x sampled value
    uses four. Written in, a MeterValues.req of 8 samples is checked in ~13 us, not ~22.
    """
    # No `format` and no `default`: jsonschema asserts no format unless given a format checker
    # (a charger's odd timestamp is not refused), and defaults would be written into the payload.
    return fastjsonschema.compile(
        {**inline_definitions(schema), "$schema": _DRAFT_4}, use_default=False, use_formats=False
    )


def inline_definitions(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with each `{"$ref": "#/definitions/<name>"}` replaced by that definition, and no `definitions`.

    The same schema: under Draft 4 a `$ref` stands for its target, whatever is beside it.
    Field names (under `properties` and the like) are names, not keywords, and `enum` and
    `default` hold data: both are kept as they are. The library's OCPP schemas refer only
    to their own definitions, none to itself; a schema that does otherwise is returned as
    it is.
    """
    definitions = schema.get("definitions", {})

    def written_in(node: Any, within: frozenset[str]) -> Any:
        if isinstance(node, list):
            return [written_in(item, within) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            ref = node["$ref"]
            name = ref.removeprefix(_LOCAL_DEFINITION) if isinstance(ref, str) else None
            if name is None or name == ref or name not in definitions or name in within:
                raise _NotInlinableError
            return written_in(definitions[name], within | {name})
        kept: dict[str, Any] = {}
        for keyword, value in node.items():
            if keyword in _DATA_KEYWORDS:
                kept[keyword] = value
            elif keyword in _NAMED_SCHEMAS and isinstance(value, dict):
                kept[keyword] = {name: written_in(named, within) for name, named in value.items()}
            elif keyword != "definitions":  # only reachable through a $ref, each written in
                kept[keyword] = written_in(value, within)
        return kept

    try:
        inlined: dict[str, Any] = written_in(schema, frozenset())
    except _NotInlinableError:
        return schema
    return inlined


_LOCAL_DEFINITION = "#/definitions/"
_DATA_KEYWORDS = frozenset({"enum", "default"})  # JSON values, not schemas
_NAMED_SCHEMAS = frozenset({"properties", "patternProperties", "dependencies"})  # name -> schema (or names)


class _NotInlinableError(Exception):
    """A `$ref` to anything but one of the schema's own definitions, or to one it is inside of."""


def strictly_valid(action: str, payload: dict[str, Any], message_type: int, version: str = OCPP_VERSION) -> bool:
    """Whether `payload` meets `version`'s whole schema, tolerated keywords included (for what we send)."""
    return _compiled_accepts(action, payload, message_type, version)


def _compiled_accepts(
    action: str, payload: dict[str, Any], message_type: int, version: str, *, core: bool = False
) -> bool:
    compiled = _compiled_core(message_type, action, version) if core else _compiled(message_type, action, version)
    if compiled is None:
        return False
    try:
        compiled(payload)
    except fastjsonschema.JsonSchemaValueException:
        return False
    return True


def without_tolerated(schema: Any) -> Any:
    """The schema without the tolerated keywords: what a payload must meet not to be refused."""
    if isinstance(schema, list):
        return [without_tolerated(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    kept: dict[str, Any] = {}
    for name, value in schema.items():
        if name in ("properties", "definitions"):  # names of fields and definitions, not keywords
            kept[name] = {field: without_tolerated(sub) for field, sub in value.items()}
        elif name not in TOLERATED_KEYWORDS:
            kept[name] = without_tolerated(value)
    return kept


@functools.cache
def _compiled_core(message_type: int, action: str, version: str) -> Callable[[Any], Any] | None:
    """Like `_compiled`, of the schema without the tolerated keywords: it accepts iff nothing is refused."""
    if _decimal(message_type, action, version):
        return None
    return _compile(without_tolerated(get_validator(message_type, action, version).schema))


@functools.cache
def _jsonschema_core(message_type: int, action: str, version: str) -> Draft4Validator:
    """jsonschema's validator of the schema without the tolerated keywords: its errors are refusals only.

    Removing keywords that never descend into the instance leaves the other errors in the
    order the full schema yields them, so its first error is the full schema's first refusal.
    """
    return Draft4Validator(without_tolerated(_jsonschema_full(message_type, action, version).schema))


def _jsonschema_full(message_type: int, action: str, version: str) -> Draft4Validator:
    if _decimal(message_type, action, version):
        return get_validator(message_type, action, version, parse_float=Decimal)
    return get_validator(message_type, action, version)


def _jsonschema_verdict(action: str, payload: dict[str, Any], message_type: int, version: str) -> Verdict:
    """The refusal (the first error that leaves no sense to be made) and the first tolerated deviations."""
    if _decimal(message_type, action, version):
        payload = json.loads(json.dumps(payload), parse_float=Decimal)
    # The compiled core spares the search for a refusal where there is none (jsonschema would
    # walk the whole payload); a Decimal schema has no compiled core and is searched.
    search = not _compiled_accepts(action, payload, message_type, version, core=True)
    try:
        # multipleOf computes a remainder; 400 digits cover any float-sized number.
        with localcontext() as context:
            context.prec = 400
            refused = (
                next(_jsonschema_core(message_type, action, version).iter_errors(payload), None) if search else None
            )
            # A refused payload needs no deviations named: it is not handled (and the search
            # for them would walk all of it).
            named = [] if refused is not None else _first_deviations(message_type, action, payload, version)
    except (InvalidOperation, TypeError, ValueError):  # beyond even that: no meaningful OCPP number
        out_of_range = "a number is out of range"
        return Verdict(refusal=PropertyConstraintViolationError(description=out_of_range), unquoted=[out_of_range])
    verdict = Verdict(tolerated=[quoted(error) for error in named])
    if refused is not None:
        verdict.refusal = refusal_for_keyword(str(refused.validator), version)(description=quoted(refused))
        verdict.unquoted.append(unquoted(refused))
    verdict.unquoted += [unquoted(error) for error in named]
    return verdict


def _first_deviations(message_type: int, action: str, payload: Any, version: str) -> list[ValidationError]:
    """The first MAX_NAMED_DEVIATIONS tolerated errors, found lazily (jsonschema stops there)."""
    errors = _jsonschema_full(message_type, action, version).iter_errors(payload)
    tolerated = (error for error in errors if error.validator in TOLERATED_KEYWORDS)
    return list(itertools.islice(tolerated, MAX_NAMED_DEVIATIONS))


def _where(error: ValidationError) -> str:
    return "/".join(str(p) for p in error.absolute_path)[:100] or "payload"


MAX_MESSAGE_CHARS = 200


def quoted(error: ValidationError) -> str:
    """jsonschema's words for an error: they quote the offending value, which a charger controls: cut short."""
    message = error.message
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS] + "..."
    return f"{_where(error)}: {message}"


# What each keyword asks, in words that quote no value of the instance.
_ASKS: dict[str, Callable[[Any], str]] = {
    "type": lambda wanted: f"must be of type {wanted}",
    "enum": lambda options: f"must be one of {', '.join(map(str, options))}",
    "maxLength": lambda n: f"must be at most {n} characters",
    "minItems": lambda n: f"needs at least {n} items",
    "additionalProperties": lambda _: "has a field the schema does not define",
    "minimum": lambda n: f"must be at least {n}",
    "maximum": lambda n: f"must be at most {n}",
    "multipleOf": lambda n: f"must be a multiple of {n}",
    "maxItems": lambda n: f"has more than {n} items",
}


def unquoted(error: ValidationError) -> str:
    """An error in words of its path and the schema alone: safe for a value that may be a secret."""
    if error.validator == "required":  # "'value' is a required property": the name is the schema's
        return f"{_where(error)}: {error.message}"
    asks = _ASKS.get(str(error.validator))
    text = asks(error.validator_value) if asks else f"breaks the schema's {error.validator!r}"
    return f"{_where(error)}: {text[:MAX_MESSAGE_CHARS]}"


# Where each action carries sampled values, as `[{..., "sampledValue": [...]}, ...]`: 1.6's
# MeterValues and StopTransaction, 2.x's MeterValues and TransactionEvent (no action name
# means another thing in another version, so the action alone says where).
_SAMPLED_ELEMENTS = {
    "MeterValues": "meterValue",
    "StopTransaction": "transactionData",
    "TransactionEvent": "meterValue",
}


def _samples_of(element: Any) -> list[Any] | None:
    samples = element.get("sampledValue") if isinstance(element, dict) else None
    return samples if isinstance(samples, list) else None


def _weight(element: Any) -> int:
    """What an element counts against MAX_SAMPLED_VALUES: at least one (each has a timestamp to read)."""
    return max(len(_samples_of(element) or ()), 1)


def capped_sampled_values(action: str, payload: dict[str, Any]) -> int:
    """Cut a charger's payload down to MAX_SAMPLED_VALUES sampled values, in place; how many were cut.

    Runs before the schema check. Every element counts, whatever its shape (at least one:
    300,000 `1`s are no cheaper to check than 300,000 values); the first in the frame's
    order are kept, and what is left is judged by the schema check as usual.
    """
    elements = payload.get(_SAMPLED_ELEMENTS.get(action, ""))
    if not isinstance(elements, list):
        return 0
    room, cut = MAX_SAMPLED_VALUES, 0
    if len(elements) > MAX_SAMPLED_VALUES:
        # Each element weighs one at least, so these go whatever they hold; counted as one
        # each, unread (reading 300,000 of them would cost more than the check it spares).
        cut = len(elements) - MAX_SAMPLED_VALUES
        del elements[MAX_SAMPLED_VALUES:]
    for index, element in enumerate(elements):
        if room <= 0:  # this element and the later ones are skipped whole
            cut += sum(_weight(later) for later in elements[index:])
            del elements[index:]
            break
        samples = _samples_of(element)
        if samples is not None and len(samples) > room:
            cut += len(samples) - room
            del samples[room:]
        room -= _weight(element)
    return cut
