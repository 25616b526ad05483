"""Pure: a charger-initiated OCPP 1.6 message becomes flat sensor datapoints; the key
builders every version shares (`key`, `meter_key`), so a key that means the same thing has
the same shape in 1.6 and 2.x (2.x's own mapping: ocpp201/datapoints.py).

Works on the payload exactly as it came off the wire (camelCase), so the hot path pays for
no case conversion. Each function returns `Datapoint`s in the order they should be
published; `notes` collects the harmless deviations the caller logs as tolerated.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

Scalar = str | int | float | bool | None

# OCPP 1.6 defaults for absent SampledValue fields (7.45, SampledValue).
DEFAULT_MEASURAND = "Energy.Active.Import.Register"
DEFAULT_UNIT = "Wh"
DEFAULT_LOCATION = "Outlet"
DEFAULT_STOP_REASON = "Local"

BOOT_FIELDS = {
    "chargePointVendor": "charge_point_vendor",
    "chargePointModel": "charge_point_model",
    "chargePointSerialNumber": "charge_point_serial_number",
    "chargeBoxSerialNumber": "charge_box_serial_number",
    "firmwareVersion": "firmware_version",
    "iccid": "iccid",
    "imsi": "imsi",
    "meterType": "meter_type",
    "meterSerialNumber": "meter_serial_number",
}

STATUS_FIELDS = {
    "status": "status",
    "errorCode": "error_code",
    "info": "info",
    "vendorId": "vendor_id",
    "vendorErrorCode": "vendor_error_code",
}


class Datapoint(NamedTuple):
    key: str
    value: Scalar
    timestamp: int  # ms since the epoch, UTC


@dataclass(frozen=True, slots=True)
class TransactionRecord:
    """What the connector remembers of a transaction between start and stop."""

    transaction_id: int
    connector_id: int
    id_tag: str
    meter_start: int
    started: str = ""  # the charger's timestamp, as sent: tells a replayed start from a new one


@dataclass(frozen=True, slots=True)
class EvseTransaction:
    """The same for an OCPP 2.0.1 or 2.1 transaction: the charger names it (a string), on an EVSE.

    Field names follow TransactionRecord's, so what serves both (a remote stop, settling
    after a boot) reads either: `connector_id` is the EVSE id.
    """

    transaction_id: str
    connector_id: int
    id_tag: str = ""  # the first idToken the transaction's events carried
    meter_start: int | float | None = None  # Wh; None: its Started event carried no energy register
    started: str = ""  # the timestamp of its first event, as sent


AnyTransaction = TransactionRecord | EvseTransaction


def key(*parts: object) -> str:
    return "__".join(str(part) for part in parts)


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def parse_time(text: Any, fallback: int, notes: list[str]) -> int:
    """An OCPP date-time as ms; the fallback (receive time) if it cannot be read."""
    try:
        moment = datetime.fromisoformat(str(text))
    except ValueError:
        notes.append(f"timestamp {text!r} is not ISO 8601; used the time of receipt")
        return fallback
    if moment.tzinfo is None:  # OCPP times are UTC; some chargers drop the suffix.
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


# JSON's number grammar (RFC 8259 section 6). Python's int()/float() also take "1_000",
# "inf" and non-ASCII digits, none of which a meter means as a number.
NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
SIGNIFICANT_DIGITS = 12  # beyond any meter's precision; drops float noise like 0.15006999999999998


# Python refuses int() of more than 4,300 digits (a guard against quadratic conversion);
# longer digit strings take the float path below, which gives them back as text.
MAX_INT_DIGITS = 4000


def sampled_number(text: str) -> Scalar:
    """A sampled value as a JSON number where it is one, else the text unchanged."""
    stripped = text.strip()
    if not NUMBER.fullmatch(stripped):
        return text
    if stripped.lstrip("-").isdigit() and len(stripped) <= MAX_INT_DIGITS:
        return int(stripped)
    number = float(stripped)
    if not math.isfinite(number):
        return text
    if len(stripped) <= SIGNIFICANT_DIGITS:
        # At most 12 digits: float() already gives the double whose shortest text they are,
        # and rounding it to 12 digits would give them back (the hot path: meter texts are short).
        return number
    return float(f"{number:.{SIGNIFICANT_DIGITS}g}")


def grouped(cp: str, group: str, where: int, fields: dict[str, Scalar], at: int) -> list[Datapoint]:
    """`<cp>__<group>__<c>__<field>` = value for each field: the shape of every per-connector (1.6)
    or per-EVSE (2.x) group (Transaction, Reservation, CompositeSchedule), in every version."""
    return [Datapoint(key(cp, group, where, name), value, at) for name, value in fields.items()]


def transactions_inactive(cp: str, where: Iterable[int], at: int) -> list[Datapoint]:
    """`<cp>__Transaction__<c>__active` = false on each connector (1.6) or EVSE (2.x) in `where`."""
    return [point for c in where for point in grouped(cp, "Transaction", c, {"active": False}, at)]


def reservation_status(cp: str, where: Iterable[int], status: str, at: int) -> list[Datapoint]:
    """`<cp>__Reservation__<c>__status` = `status` on each connector or EVSE in `where`."""
    return [point for c in where for point in grouped(cp, "Reservation", c, {"status": status}, at)]


def data_transfer(cp: str, payload: dict[str, Any], received: int) -> list[Datapoint]:
    """`<cp>__DataTransfer__<vendorId>[__<messageId>]`: the data as text (1.6's is text; 2.x's may be any JSON)."""
    parts = [cp, "DataTransfer", payload["vendorId"]] + ([payload["messageId"]] if "messageId" in payload else [])
    data = payload.get("data", "")
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return [Datapoint(key(*parts), text, received)]


def boot_notification(cp: str, payload: dict[str, Any], received: int) -> list[Datapoint]:
    return [
        Datapoint(key(cp, "BootNotification", name), payload[field], received)
        for field, name in BOOT_FIELDS.items()
        if field in payload
    ]


def heartbeat(cp: str, received: int) -> list[Datapoint]:
    return [Datapoint(key(cp, "Heartbeat"), received, received)]


def status_notification(cp: str, payload: dict[str, Any], received: int, notes: list[str]) -> list[Datapoint]:
    at = parse_time(payload["timestamp"], received, notes) if "timestamp" in payload else received
    prefix = key(cp, "StatusNotification", payload["connectorId"])
    return [
        Datapoint(key(prefix, name), payload[field], at) for field, name in STATUS_FIELDS.items() if field in payload
    ]


Reading = tuple[dict[str, Any], Datapoint]  # a sampled value as sent, and its datapoint


def meter_values(cp: str, payload: dict[str, Any], received: int, notes: list[str]) -> list[Datapoint]:
    return [point for _, point in meter_readings(cp, payload, received, notes)]


def meter_readings(cp: str, payload: dict[str, Any], received: int, notes: list[str]) -> list[Reading]:
    """MeterValues.req as (sample, datapoint) pairs: each value parsed once, for publishing and for voltages."""
    return sampled_readings(cp, payload["connectorId"], payload["meterValue"], received, notes)


def sampled_values(
    cp: str, connector_id: int, meter_value: Iterable[dict[str, Any]], received: int, notes: list[str]
) -> list[Datapoint]:
    return [point for _, point in sampled_readings(cp, connector_id, meter_value, received, notes)]


# One sampled value as a datapoint at `at`, or None where there is no reading (noted):
# (the key prefix `<cp>__MeterValues__<c>`, sample, at, notes). Each version reads a value its own way.
SamplePoint = Callable[[str, dict[str, Any], int, list[str]], Datapoint | None]


def sample_point(prefix: str, sample: dict[str, Any], at: int, notes: list[str]) -> Datapoint | None:
    """An OCPP 1.6 SampledValue as a datapoint."""
    name = prefix + sample_suffix(sample)
    if str(sample["value"]).strip() == "":
        # No reading: publishing "" would overwrite a number on a numeric sensor.
        notes.append(f"empty value for {name}; skipped it")
        return None
    return Datapoint(name, sample_value(sample, notes), at)


def sampled_readings(
    cp: str,
    connector_id: int,
    meter_value: Iterable[dict[str, Any]],
    received: int,
    notes: list[str],
    *,
    point: SamplePoint = sample_point,
) -> list[Reading]:
    """Every sampled value of every meterValue element, oldest element first (`point`: the version's reading)."""
    stamped = [(parse_time(mv.get("timestamp"), received, notes), mv) for mv in meter_value]
    stamped.sort(key=lambda pair: pair[0])  # stable: equal times keep the charger's order
    prefix = meter_prefix(cp, connector_id)
    readings: list[Reading] = []
    for at, element in stamped:
        samples = element.get("sampledValue") or []
        if not samples:
            notes.append("meterValue element with an empty sampledValue; skipped it")
        for sample in samples:
            made = point(prefix, sample, at, notes)
            if made is not None:
                readings.append((sample, made))
    return readings


def sample_key(cp: str, connector_id: int, sample: dict[str, Any]) -> str:
    """An OCPP 1.6 SampledValue's key (2.x's: ocpp201/datapoints.py, through the same `meter_suffix`)."""
    return meter_prefix(cp, connector_id) + sample_suffix(sample)


def sample_suffix(sample: dict[str, Any]) -> str:
    """An OCPP 1.6 SampledValue's key after its `<cp>__MeterValues__<c>`, the 1.6 defaults filled in."""
    return meter_suffix(
        sample.get("measurand", DEFAULT_MEASURAND),
        sample.get("phase"),
        sample.get("location", DEFAULT_LOCATION),
        sample.get("unit", DEFAULT_UNIT),
    )


def meter_key(cp: str, connector_id: int, measurand: object, *, phase: object, location: object, unit: object) -> str:
    """`<cp>__MeterValues__<c>__<measurand>[__<phase>][__<location>]__<unit>`, for every version.

    `phase` None: absent (an overall value); `location` Outlet (the default) is left out.
    """
    return meter_prefix(cp, connector_id) + meter_suffix(measurand, phase, location, unit)


def meter_prefix(cp: str, connector_id: int) -> str:
    """`<cp>__MeterValues__<c>`: what every sampled value's key of one message starts with."""
    return key(cp, "MeterValues", connector_id)


# Key suffixes by the sample's (measurand, phase, location, unit). A fleet's meters send the
# same few shapes in every message, so each suffix is built once for every charger: building
# the key part by part was a third of a MeterValues' session path (benchmark/session_path.py).
# Bounded, as the parts are a charger's text (unlisted enum values are tolerated): beyond
# MAX_CACHED_SUFFIXES shapes, or for a suffix longer than MAX_CACHED_SUFFIX_CHARS, a suffix
# is built each time, as before, so what chargers invent costs time, never memory.
_SUFFIXES: dict[tuple[object, object, object, object], str] = {}
MAX_CACHED_SUFFIXES = 1024
MAX_CACHED_SUFFIX_CHARS = 200


def meter_suffix(measurand: object, phase: object, location: object, unit: object) -> str:
    """`__<measurand>[__<phase>][__<location>]__<unit>` (`phase` None: absent; `location` Outlet: left out)."""
    shape = (measurand, phase, location, unit)
    try:
        return _SUFFIXES[shape]
    except KeyError:
        built = _build_suffix(measurand, phase, location, unit)
    except TypeError:  # an unhashable part (a list): never cached
        return _build_suffix(measurand, phase, location, unit)
    # Only text (or an absent phase) is cached: JSON's other scalars never equal a text, so
    # a hit is always a shape of the same text parts, and 1 and True cannot share an entry.
    cacheable = all(part is None or type(part) is str for part in shape)
    if cacheable and len(built) <= MAX_CACHED_SUFFIX_CHARS and len(_SUFFIXES) < MAX_CACHED_SUFFIXES:
        _SUFFIXES[shape] = built
    return built


def _build_suffix(measurand: object, phase: object, location: object, unit: object) -> str:
    parts: list[object] = [measurand]
    if phase is not None:
        parts.append(phase)
    if location != DEFAULT_LOCATION:
        parts.append(location)
    parts.append(unit)
    return "".join(f"__{part}" for part in parts)


def sample_value(sample: dict[str, Any], notes: list[str]) -> Scalar:
    text = str(sample["value"])
    if sample.get("format") == "SignedData":
        return text  # signed blobs may look numeric; keep them as text
    if text != text.strip():
        notes.append(f"value {text!r} padded with spaces; read as {text.strip()!r}")
    return sampled_number(text)


# Phase-to-neutral voltages a supply can have: 230 V +-10 % (EN 50160), 120 V and 277 V
# grids, with room. A reading outside is a floating phase (0.8 V), a meter in kV or a wrong
# value, and must not turn a power limit into a current limit of thousands of amperes.
PLAUSIBLE_VOLTS = (100.0, 300.0)

# OCPP 1.6 Phase values of a Voltage, as the phase they measure: "L1" and "L1-N" alike; a
# line-to-line voltage is one of its own (divided by sqrt 3). Others ("N": neutral to earth,
# unlisted labels) are not a supply's voltage.
VOLTAGE_PHASES = {
    "": "",  # no phase: the charger's one voltage
    "L1": "L1",
    "L2": "L2",
    "L3": "L3",
    "L1-N": "L1",
    "L2-N": "L2",
    "L3-N": "L3",
    "L1-L2": "L1-L2",
    "L2-L3": "L2-L3",
    "L3-L1": "L3-L1",
}
LINE_TO_LINE = frozenset({"L1-L2", "L2-L3", "L3-L1"})
SQRT_3 = math.sqrt(3)
MAX_LINE_VOLTS = PLAUSIBLE_VOLTS[1] * SQRT_3  # the highest plausible reading, line-to-line included


def note_phase_voltages(readings: Iterable[Reading], voltages: dict[str, float]) -> None:
    """Record in `voltages` each plausible phase-to-neutral voltage among the readings, the latest per phase.

    Readings come oldest first, so a later one replaces an earlier one of its phase; an
    implausible one (see PLAUSIBLE_VOLTS) is left out and leaves its phase as it was.
    """
    for sample, point in readings:
        if sample.get("measurand") != "Voltage" or sample.get("unit", "V") != "V":
            continue
        phase = VOLTAGE_PHASES.get(sample.get("phase", ""))
        value = point.value
        if phase is None or not isinstance(value, int | float) or isinstance(value, bool):
            continue
        if not 0 < value <= MAX_LINE_VOLTS:
            # Compared before any division: a JSON integer beyond float range (10**400) is
            # valid JSON, and float() of it raised OverflowError, failing the whole message.
            continue
        volts = value / SQRT_3 if phase in LINE_TO_LINE else float(value)
        if PLAUSIBLE_VOLTS[0] <= volts <= PLAUSIBLE_VOLTS[1]:
            voltages[phase] = volts


def transaction_started(
    cp: str, payload: dict[str, Any], record: TransactionRecord, received: int, notes: list[str]
) -> list[Datapoint]:
    return _transaction_running(cp, record, parse_time(payload["timestamp"], received, notes))


def _transaction_running(cp: str, record: AnyTransaction, at: int) -> list[Datapoint]:
    values: dict[str, Scalar] = {
        "active": True,
        "transaction_id": record.transaction_id,
        "id_tag": record.id_tag,
        "meter_start": record.meter_start,
        # The stop fields describe the current transaction: clear the last one's.
        "meter_stop": None,
        "stop_reason": None,
        "energy": None,
    }
    return grouped(cp, "Transaction", record.connector_id, values, at)


def transaction_stopped(
    cp: str,
    payload: dict[str, Any],
    record: TransactionRecord,
    received: int,
    notes: list[str],
    *,
    running: AnyTransaction | None = None,
) -> list[Datapoint]:
    """Any sampled values the charger sent as transactionData, then the stop fields.

    `running`: a newer transaction open on the connector (the stop is a late one, of a
    transaction settled by that one's start). Its fields follow, stamped with its start, so
    the connector's keys end describing what runs, and a time series sees both in order.
    """
    at = parse_time(payload["timestamp"], received, notes)
    meter_stop = payload["meterStop"]
    values: dict[str, Scalar] = {
        "active": False,
        "transaction_id": record.transaction_id,
        "meter_stop": meter_stop,
        "stop_reason": payload.get("reason", DEFAULT_STOP_REASON),
        "energy": meter_stop - record.meter_start,
    }
    points = grouped(cp, "Transaction", record.connector_id, values, at)
    data = payload.get("transactionData") or []
    points = sampled_values(cp, record.connector_id, data, received, notes) + points
    if running is not None:
        started = parse_time(running.started, received, notes) if running.started else received
        points += _transaction_running(cp, running, started)
    return points


def flat_notification(
    cp: str, action: str, payload: dict[str, Any], received: int, *, fields: frozenset[str], notes: list[str]
) -> list[Datapoint]:
    """Status-style notifications (firmware, diagnostics, logs, security events).

    Only `fields` (those the schema defines) become datapoints: a tolerated extra field
    must not mint keys at a charger's whim. A `timestamp` (a security event's time of
    occurrence; chargers send stored ones after a reconnect) stamps them all.
    """
    at = parse_time(payload["timestamp"], received, notes) if "timestamp" in payload else received
    return [
        Datapoint(key(cp, action, snake_case(field)), value, at)
        for field, value in payload.items()
        if field in fields and isinstance(value, str | int | float | bool)
    ]


def snake_case(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")
