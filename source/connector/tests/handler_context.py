"""For the version tables' handler tests: a hand-written `handling.Context`, and requests drawn from a schema.

`FakeContext` records what a handler does to the session (datapoints published, EVSEs
seen, boots) with a real TransactionStore on a test directory. `requests(action, version)`
draws payloads valid against the ocpp library's request schema of that OCPP version,
built from the schema itself, so a property test covers every field a station may send.
"""

from __future__ import annotations

import functools
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from ocpp.messages import MessageType, get_validator

from connector.authorization import IdTagPolicy
from connector.charger import ChargerState
from connector.datapoints import Datapoint
from connector.handling import Handler, Inbound
from connector.observed import Observed
from connector.transactions import TransactionStore

CP = "CP_1"
RECEIVED = 1_800_000_000_000  # ms; unlike any timestamp the tests send


class FakeContext:
    """The session as a handler sees it: records what the handler did."""

    def __init__(self, state_dir: Path, *, id_tags: IdTagPolicy | None = None, triggered: bool = False) -> None:
        self.id = CP
        self.log = logging.LoggerAdapter(logging.getLogger("connector.tests"), {"charge_point": CP})
        self.state = ChargerState()
        self.voltages: dict[str, float] = {}
        self.observed = Observed()
        self.transactions = TransactionStore(state_dir)
        self.id_tags = id_tags or IdTagPolicy()
        self.heartbeat_interval = 300
        self.published: list[Datapoint] = []
        self.seen: list[int] = []
        self.boots = 0
        self.triggered = triggered

    def publish(self, points: list[Datapoint]) -> None:
        self.published.extend(points)

    def connector_seen(self, connector_id: int) -> None:
        self.seen.append(connector_id)

    def booted(self) -> None:
        self.boots += 1

    def triggered_boot(self) -> bool:
        return self.triggered

    async def refresh_rate_units(self, queued_at: int | None = None) -> None:
        """Never run here: the session starts it after the answer (see `Inbound.after`)."""

    def values(self) -> dict[str, Any]:
        """The latest value published per key."""
        return {point.key: point.value for point in self.published}

    def take(self) -> list[Datapoint]:
        """What was published since the last take."""
        taken, self.published = self.published, []
        return taken


def handle(
    handlers: dict[str, Handler], ctx: FakeContext, action: str, payload: dict[str, Any]
) -> tuple[dict[str, Any], Inbound]:
    """Run the action's handler as the session does: its answer, and the Inbound it saw."""
    inbound = Inbound(payload, RECEIVED)
    return handlers[action](ctx, inbound), inbound


def assert_valid(action: str, message_type: int, payload: dict[str, Any], version: str) -> None:
    """Validate against the ocpp library's schema of that version (raises ValidationError)."""
    get_validator(message_type, action, version).validate(payload)


def utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# -- TransactionEvent frames -------------------------------------------------------------

TX = "a3f1c7e2-5b4d-4e8a-9c1f-0d2e3b4a5c6d"


def register(kwh: float, context: str) -> list[dict[str, Any]]:
    sample = {"value": kwh, "context": context, "unitOfMeasure": {"unit": "kWh"}}
    return [{"timestamp": "2026-11-21T10:00:00Z", "sampledValue": [sample]}]


def event(
    event_type: str,
    seq_no: int,
    trigger: str,
    *,
    transaction_id: str = TX,
    timestamp: str = "2026-11-21T10:00:00Z",
    evse: int | None = 1,
    **fields: Any,
) -> dict[str, Any]:
    """A TransactionEvent as a station sends it; `fields`: top-level ones, and transactionInfo's (info_*)."""
    info = {"transactionId": transaction_id}
    info.update({k[5:]: v for k, v in fields.items() if k.startswith("info_")})
    payload: dict[str, Any] = {
        "eventType": event_type,
        "timestamp": timestamp,
        "triggerReason": trigger,
        "seqNo": seq_no,
        "transactionInfo": info,
        **{k: v for k, v in fields.items() if not k.startswith("info_")},
    }
    if evse is not None:
        payload["evse"] = {"id": evse, "connectorId": 1}
    return payload


TOKEN = {"idToken": "04A2B3C4D5E6F7", "type": "ISO14443"}


# -- requests drawn from a schema -------------------------------------------------------

MAX_DRAWN_ITEMS = 3  # items per array: enough to show a handler loops, small enough to stay quick
MAX_DRAWN_TEXT = 12
MAX_DEPTH = 6  # beyond, only required fields (the schemas nest charging schedules deeply)


@functools.cache
def requests(action: str, version: str) -> st.SearchStrategy[dict[str, Any]]:
    """Payloads valid against `action`'s request schema of OCPP `version`."""
    schema = get_validator(MessageType.Call, action, version).schema
    return _strategy(schema, schema, 0)


def _strategy(schema: dict[str, Any], root: dict[str, Any], depth: int) -> st.SearchStrategy[Any]:
    if "$ref" in schema:
        return _strategy(root["definitions"][schema["$ref"].rsplit("/", 1)[1]], root, depth)
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        return _object(schema, root, depth)
    if kind == "array":
        low = schema.get("minItems", 0)
        high = max(low, min(schema.get("maxItems", MAX_DRAWN_ITEMS), MAX_DRAWN_ITEMS))
        return st.lists(_strategy(schema["items"], root, depth + 1), min_size=low, max_size=high)
    if kind == "string":
        return _string(schema)
    if kind == "integer":
        return st.integers(schema.get("minimum", -(2**31)), schema.get("maximum", 2**31 - 1))
    if kind == "number":
        low, high = schema.get("minimum", -1e9), schema.get("maximum", 1e9)
        return st.integers(int(low), int(high)) | st.floats(low, high, allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    return st.none() | st.integers() | st.text(max_size=MAX_DRAWN_TEXT)  # `data`: any JSON


def _object(schema: dict[str, Any], root: dict[str, Any], depth: int) -> st.SearchStrategy[dict[str, Any]]:
    properties = {name: p for name, p in schema.get("properties", {}).items() if name != "customData"}
    required = set(schema.get("required", []))
    drawn = {name: _strategy(p, root, depth + 1) for name, p in properties.items() if name in required}
    optional = {} if depth >= MAX_DEPTH else {n: _strategy(p, root, depth + 1) for n, p in properties.items()}
    return st.fixed_dictionaries(drawn, optional={n: s for n, s in optional.items() if n not in required})


def _string(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    if schema.get("format") == "date-time":
        moments = st.datetimes(datetime(2020, 1, 1), datetime(2040, 1, 1), timezones=st.just(UTC))
        return moments.map(utc_text)
    return st.text(max_size=min(schema.get("maxLength", MAX_DRAWN_TEXT), MAX_DRAWN_TEXT))
