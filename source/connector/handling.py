"""What a version's handlers and actuators see of a charge point session: the seam between
the version tables (ocpp16/, ocpp201/, ocpp21/) and the I/O adapter (session.py).

A handler is a plain function `(Context, Inbound) -> answer payload`: it maps a validated
CALL's wire payload (camelCase, as received) to datapoints through the context and returns
the CALLRESULT payload. It does no I/O and never awaits: work that must follow the answer
(a call to the charger) is appended to `Inbound.after` and started once the answer is sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from ocpp.messages import MessageType

from connector import datapoints as dp
from connector.authorization import IdTagPolicy
from connector.charger import ChargerState
from connector.datapoints import Datapoint
from connector.observed import Observed
from connector.protocol import check_payload, strictly_valid
from connector.transactions import TransactionStore


@dataclass
class Inbound:
    """A validated CALL as a handler sees it."""

    payload: dict[str, Any]
    received: int  # ms
    notes: list[str] = field(default_factory=list)  # harmless deviations, logged once per connection
    # Work to start once the answer is on the wire (a call to the charger must not
    # overtake the answer that lets it talk, e.g. BootNotification's Accepted).
    after: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)


class Context(Protocol):
    """The session as a handler uses it."""

    id: str  # the charge point identity

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]: ...

    state: ChargerState  # what outlives the connection (rate units)
    voltages: dict[str, float]  # plausible phase voltages of this connection, latest per phase
    observed: Observed  # for the status page
    transactions: TransactionStore
    id_tags: IdTagPolicy
    heartbeat_interval: int  # s, for BootNotification's answer

    def publish(self, points: list[Datapoint]) -> None: ...

    def connector_seen(self, connector_id: int) -> None:
        """A connector (1.6) or EVSE (2.x) id appeared: its actuators are announced once."""

    def booted(self) -> None:
        """A BootNotification: the charge point is known from now on (its actuators listed)."""

    def triggered_boot(self) -> bool:
        """Whether the BootNotification being handled is one the connector asked for (TriggerMessage)."""

    async def refresh_rate_units(self, queued_at: int | None = None) -> None:
        """Read the charger's allowed charging rate units (the version's way); for `Inbound.after`."""


Handler = Callable[[Context, Inbound], dict[str, Any]]


class CallRefusedError(Exception):
    """Raised by a handler: the CALL is answered with this CALLERROR (the version's code), not a result."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


def echo_checked(action: str, answer: dict[str, Any], version: str) -> dict[str, Any]:
    """An answer that echoes what the charger sent, if `version`'s schema takes it back.

    A request's over-long or unlisted text is tolerated on the way in (protocol.py); copied
    into our answer it would make the answer invalid, so the CALL is refused instead.
    """
    if strictly_valid(action, answer, MessageType.CallResult, version):
        return answer
    why = check_payload(action, answer, MessageType.CallResult, version).unquoted or ["a field beyond the schema"]
    raise CallRefusedError("PropertyConstraintViolation", f"our answer cannot echo it: {why[0]}"[:200])


# -- what every version's handlers share ---------------------------------------------------


def utc_now_text() -> str:
    """Now in OCPP's date-time form, UTC with a `Z` suffix."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def accept_boot(ctx: Context, inbound: Inbound, boot_points: list[Datapoint]) -> dict[str, Any]:
    """A BootNotification in any version: its datapoints published, the charger known from now
    on, its transactions settled (unless the connector asked for the boot), its rate units
    read again once the answer is out; the answer Accepted with the heartbeat interval."""
    ctx.publish(boot_points)
    ctx.booted()
    if not ctx.triggered_boot():
        settle_transactions(ctx, inbound.received)
    inbound.after.append(ctx.refresh_rate_units)  # a reboot may come with new firmware
    return {"status": "Accepted", "currentTime": utc_now_text(), "interval": ctx.heartbeat_interval}


def settle_transactions(ctx: Context, at: int) -> None:
    """A charger that booted holds no transaction: those still open are settled (see
    transactions.py), and their connectors (1.6) or EVSEs (2.x) are no longer active."""
    settled = ctx.transactions.settle_all(ctx.id)
    ctx.publish(dp.transactions_inactive(ctx.id, sorted({record.connector_id for record in settled}), at))


def reservation_used(ctx: Context, reservation_id: int, at: int) -> None:
    """A transaction started on a reservation: it ends, `Used`, wherever it was held."""
    ctx.publish(dp.reservation_status(ctx.id, ctx.transactions.end_reservation(ctx.id, reservation_id), "Used", at))


def heartbeat(ctx: Context, inbound: Inbound) -> dict[str, Any]:
    """Heartbeat, the same message in every version."""
    ctx.publish(dp.heartbeat(ctx.id, inbound.received))
    return {"currentTime": utc_now_text()}


class NotCovered:
    """A read's answer that says nothing about the rate units (it asked for other keys)."""


NOT_COVERED = NotCovered()


@dataclass(frozen=True)
class RateUnitRead:
    """How a version learns the charging rate units a charger takes (W, A or both).

    `call` is the connector's own read after each boot; `units` reads an answer to it, or to
    an operator's read of the same kind: a subset of {"W", "A"}, None where the charger did
    not say (then both are assumed), NOT_COVERED where the call asked for something else.
    `actuator` names the actuator whose answer mapping publishes what the read returned.
    """

    call: Callable[[], Any]  # -> actuators.OcppCall
    units: Callable[[Any, dict[str, Any]], frozenset[str] | NotCovered | None]  # (call, answer)
    actuator: str
    key: str  # what the log line names: "ChargingScheduleAllowedChargingRateUnit"
    # The charger's own words in an answer `units` covers, for the log line ("Current;Power"):
    # a quirk shows as the charger wrote it. None: the units found are named.
    reported: Callable[[Any, dict[str, Any]], str] | None = None


@dataclass(frozen=True)
class OcppVersion:
    """One OCPP version's tables: everything the version-agnostic session needs to serve it."""

    name: str  # "1.6", "2.0.1", "2.1": the `<cp>__ocpp_version` value and the schemas' version
    subprotocol: str  # "ocpp1.6"
    handlers: dict[str, Handler]  # charger-initiated action -> handler
    actuators: dict[str, Any]  # actuator name -> actuators.Translation (value -> call; answer -> datapoints)
    central_actions: frozenset[str]  # actions a central system sends: what execute_ocpp_call may send
    error_codes: dict[str, str]  # OCPP-J 1.6 error code -> this version's spelling, where it differs
    rate_units: RateUnitRead
    send_frames: bool = False  # OCPP 2.1: SEND (type 6) and CALLRESULTERROR (type 5) frames
    # The CALLERROR code for a frame of a message type the version does not know; None:
    # ignored, as OCPP-J 1.6 4.1.3 says. OCPP-J 2.x answers "MessageTypeNotSupported".
    unknown_type_error: str | None = None
    # The CALLERROR for a CALL whose frame is not [2, id, action, {payload}] (its length, or its
    # action not text). OCPP-J 1.6 has no better code than FormationViolation; OCPP-J 2.x
    # has RpcFrameworkError ("not a valid RPC request"). A payload that is not an object
    # is FormationViolation / FormatViolation in every version.
    malformed_call_error: str = "FormationViolation"
    # Listing examples of actuators whose catalogue example (1.6's) this version refuses:
    # actuator name -> example (2.x: configuration as "Component.Variable").
    examples: Mapping[str, Any] = field(default_factory=dict)

    def error_code(self, code: str) -> str:
        return self.error_codes.get(code, code)
