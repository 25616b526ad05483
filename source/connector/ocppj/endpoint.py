"""Sans-I/O OCPP-J: frame text in, events out; the frames to send built here too.

The websockets way: this module does no I/O and knows no clock, so it is tested with plain
strings (tests/test_ocppj_endpoint.py); session.py is the asyncio adapter that reads and
writes the socket, times calls out and dispatches the calls to the version's handlers.

What the endpoint decides is what OCPP-J leaves to the RPC layer, for every version alike:
- a frame that is no OCPP-J message: a CALLERROR where its unique id can be read, else
  dropped (OCPP-J 1.6 4.2.3: nobody to address an answer to);
- a CALL for an action the version's handler table lacks: NotSupported for an action only a
  central system sends, NotImplemented for one unknown (OCPP-J 1.6 table 7; the ocpp
  library answers the reverse, https://github.com/mobilityhouse/ocpp/issues/493);
- a CALL whose payload breaks the schema in a way that leaves no sense to be made of it:
  the code protocol.check_payload names; harmless deviations pass, named in the event;
- answers matched to the one call in flight by its unique id (OCPP-J allows one
  outstanding CALL per direction); an answer to any other id is reported as unmatched;
- an unknown message type: ignored in 1.6 (OCPP-J 1.6 4.1.3), answered with the
  version's `unknown_type_error` (2.x: MessageTypeNotSupported);
- OCPP 2.1's SEND (type 6, a CALL never answered) and CALLRESULTERROR (type 5, the peer
  could not use our CALLRESULT), where the version has them (`OcppVersion.send_frames`).
Error codes are spelt the version's way (`OcppVersion.error_code`: 2.0.1's
FormatViolation for 1.6's FormationViolation).
"""

from __future__ import annotations

import json
import reprlib
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeAlias

from ocpp.messages import MessageType

from connector.handling import OcppVersion
from connector.protocol import (
    KNOWN_ACTIONS_BY_VERSION,
    MAX_SAMPLED_VALUES,
    capped_sampled_values,
    check_payload,
    load_json,
)

CALL, CALLRESULT, CALLERROR, CALLRESULTERROR, SEND = 2, 3, 4, 5, 6

CALL_SHAPE = "CALL must be [2, uniqueId, action, {payload}]"
SEND_SHAPE = "SEND must be [6, messageId, action, {payload}]"

UniqueId: TypeAlias = str | int  # some chargers send numeric ids; answered with the same id, as sent


@dataclass(frozen=True, slots=True)
class IncomingCall:
    """A CALL (or a 2.1 SEND, `answer` False) that passed the checks: for the action's handler."""

    unique_id: UniqueId
    action: str
    payload: dict[str, Any]
    tolerated: tuple[str, ...] = ()  # harmless schema deviations, for a log line
    cut: int = 0  # sampled values skipped beyond MAX_SAMPLED_VALUES
    answer: bool = True


@dataclass(frozen=True, slots=True)
class BadFrame:
    """A frame that is no usable OCPP-J message; `reply` is the CALLERROR to send, None where none is possible."""

    reason: str
    reply: str | None = None


@dataclass(frozen=True, slots=True)
class RefusedCall:
    """A CALL refused for its action or payload; `reply` is the CALLERROR (None for a 2.1 SEND)."""

    action: str
    code: str
    description: str
    reply: str | None


@dataclass(frozen=True, slots=True)
class Result:
    """The CALLRESULT to our call in flight (`action` is the call's)."""

    unique_id: UniqueId
    action: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Error:
    """The CALLERROR to our call in flight."""

    unique_id: UniqueId
    action: str
    code: str
    description: str
    details: Any = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Unmatched:
    """An answer to no call in flight: unknown, or expired (answered after its time-out)."""

    unique_id: UniqueId


@dataclass(frozen=True, slots=True)
class ResultError:
    """OCPP 2.1 CALLRESULTERROR: the peer could not use a CALLRESULT of ours. Logged, never answered."""

    unique_id: UniqueId
    code: str
    description: str


Event: TypeAlias = IncomingCall | BadFrame | RefusedCall | Result | Error | Unmatched | ResultError


@dataclass(frozen=True, slots=True)
class Pending:
    """Our call in flight."""

    unique_id: str
    action: str


def _decimal(value: Any) -> Any:
    """Decimals as the ocpp library writes them (one decimal place); anything else is no JSON."""
    if isinstance(value, Decimal):
        return float(f"{value:.1f}")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# One encoder for every frame: compact like the ocpp library's frames, and built once
# instead of per frame as json.dumps(cls=...) would.
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=_decimal)


def encode(frame: list[Any]) -> str:
    return _ENCODER.encode(frame)


class Endpoint:
    """One connection's OCPP-J state: the call in flight and how many calls went unanswered."""

    __slots__ = ("pending", "unanswered", "version")

    def __init__(self, version: OcppVersion) -> None:
        self.version = version
        self.pending: Pending | None = None
        # Calls that timed out so far, where they count (see session.send_call): the calls
        # queued behind one that went unanswered fail unsent.
        self.unanswered = 0

    # -- frames in ---------------------------------------------------------------------

    def receive(self, text: str | bytes) -> Event:
        """What one frame means; never raises for anything a peer can send."""
        try:
            frame = load_json(text)
        except ValueError:
            return BadFrame("frame is not JSON")
        if not isinstance(frame, list) or len(frame) < 2:
            return BadFrame("frame is not an OCPP-J message array")
        type_id, unique_id = frame[0], frame[1]
        if isinstance(unique_id, bool) or not isinstance(unique_id, str | int) or unique_id == "":
            return BadFrame("frame has no unique id")
        if type_id == CALL:
            return self._call(frame, unique_id)
        if type_id in (CALLRESULT, CALLERROR):
            return self._answer(frame, unique_id)
        if self.version.send_frames and type_id == SEND:
            return self._call(frame, unique_id, answer=False)
        if self.version.send_frames and type_id == CALLRESULTERROR:
            if len(frame) < 4:  # a type the version knows, malformed: ignored like a malformed answer
                return self._malformed(frame)
            return ResultError(unique_id, str(frame[2]), str(frame[3]))
        return self._unknown_type(frame, unique_id)

    def _call(self, frame: list[Any], unique_id: UniqueId, answer: bool = True) -> Event:
        if len(frame) != 4 or not isinstance(frame[2], str) or not isinstance(frame[3], dict):
            reason = CALL_SHAPE if answer else SEND_SHAPE
            rpc = len(frame) != 4 or not isinstance(frame[2], str)  # not an RPC request at all
            code = self.version.malformed_call_error if rpc else self.version.error_code("FormationViolation")
            return BadFrame(reason, self.error(unique_id, code, reason) if answer else None)
        action, payload = frame[2], frame[3]
        refusal = self._action_refusal(action)
        if refusal is not None:
            return self._refused(unique_id, action, *refusal, answer=answer)
        cut = capped_sampled_values(action, payload)  # before the check: bounds what it walks
        try:
            verdict = check_payload(action, payload, MessageType.Call, self.version.name)
        except OSError as error:  # no schema file: a table names an action its version lacks (our bug), answered
            description = f"{type(error).__name__} checking {action}"
            return self._refused(unique_id, action, "InternalError", description, answer=answer)
        if verdict.refusal is not None:
            description = str(verdict.refusal.description)
            return self._refused(unique_id, action, str(verdict.refusal.code), description, answer=answer)
        return IncomingCall(unique_id, action, payload, tuple(verdict.tolerated), cut, answer)

    def _action_refusal(self, action: str) -> tuple[str, str] | None:
        """(code, description) for an action this version's table does not serve."""
        if action in self.version.handlers:
            return None
        if action in self.version.central_actions:
            return "NotSupported", f"{action} is sent by the central system, not to it"
        if action in KNOWN_ACTIONS_BY_VERSION.get(self.version.name, ()):  # 2.1's NotifyPeriodicEventStream
            return "NotSupported", f"{action} is not served by this connector"
        return "NotImplemented", f"unknown action {action[:100]!r}"

    def _refused(self, unique_id: UniqueId, action: str, code: str, description: str, *, answer: bool) -> RefusedCall:
        code = self.version.error_code(code)
        return RefusedCall(action, code, description, self.error(unique_id, code, description) if answer else None)

    def _answer(self, frame: list[Any], unique_id: UniqueId) -> Event:
        is_result = frame[0] == CALLRESULT
        if is_result and (len(frame) != 3 or not isinstance(frame[2], dict)):
            return self._malformed(frame)
        if not is_result and len(frame) < 4:
            return self._malformed(frame)
        pending = self.pending
        if pending is None or unique_id != pending.unique_id:
            return Unmatched(unique_id)
        self.pending = None
        if is_result:
            return Result(unique_id, pending.action, frame[2])
        details = frame[4] if len(frame) > 4 else {}
        return Error(unique_id, pending.action, str(frame[2]), str(frame[3]), details)

    @staticmethod
    def _malformed(frame: list[Any]) -> BadFrame:
        # OCPP-J 1.6 4.1.3: a malformed answer is ignored; answering an answer helps nobody.
        return BadFrame(f"message type {reprlib.repr(frame[0])} with {len(frame)} elements is not valid")

    def _unknown_type(self, frame: list[Any], unique_id: UniqueId) -> BadFrame:
        code = self.version.unknown_type_error
        shown = reprlib.repr(frame[0])  # a peer's value: cut short
        reason = f"message type {shown} with {len(frame)} elements is not valid"
        if code is None:  # OCPP-J 1.6 4.1.3: ignored
            return BadFrame(reason)
        return BadFrame(reason, self.error(unique_id, code, f"message type {shown} is not supported"))

    # -- frames out --------------------------------------------------------------------

    def call(self, action: str, payload: dict[str, Any]) -> str:
        """A CALL with a new unique id, now the call in flight (one at a time: the caller queues)."""
        if self.pending is not None:
            raise RuntimeError(f"a call is in flight already ({self.pending.action})")
        unique_id = str(uuid.uuid4())
        self.pending = Pending(unique_id, action)
        return encode([CALL, unique_id, action, payload])

    @staticmethod
    def result(unique_id: UniqueId, payload: dict[str, Any]) -> str:
        return encode([CALLRESULT, unique_id, payload])

    def error(self, unique_id: UniqueId, code: str, description: str, details: Any = None) -> str:
        """A CALLERROR; `code` may be spelt the 1.6 way, it goes out in the version's spelling."""
        code = self.version.error_code(code)
        return encode([CALLERROR, unique_id, code, description, {} if details is None else details])

    # -- time-outs ---------------------------------------------------------------------

    def timed_out(self, counts: bool = True) -> None:
        """The call in flight got no answer in time: an answer still to come is unmatched."""
        self.pending = None
        if counts:
            self.unanswered += 1

    def abandon(self) -> None:
        """The call in flight will not be waited for (the connection or the command ended)."""
        self.pending = None


__all__ = [
    "MAX_SAMPLED_VALUES",
    "BadFrame",
    "Endpoint",
    "Error",
    "Event",
    "IncomingCall",
    "Pending",
    "RefusedCall",
    "Result",
    "ResultError",
    "Unmatched",
    "encode",
]
