"""Datapoint mapping over recorded OCPP 1.6 frames: keys, values and timestamps (INTERFACE.md 3, 4, 7)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector import datapoints
from connector.datapoints import (
    MAX_CACHED_SUFFIX_CHARS,
    MAX_INT_DIGITS,
    Datapoint,
    TransactionRecord,
    boot_notification,
    heartbeat,
    meter_suffix,
    meter_values,
    sample_key,
    sampled_number,
    status_notification,
    transaction_started,
    transaction_stopped,
)
from connector.tests.harness import METER_VALUES_8, frame

CP = "CP_1"
RECEIVED = 1_800_000_000_000  # ms; deliberately unlike any timestamp in the fixtures


def utc_ms(year: int, month: int, day: int, hour: int, minute: int) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp() * 1000)


def as_dict(points: list[Datapoint]) -> dict[str, Any]:
    return {point.key: point.value for point in points}


def meter_points(name: str, **changes: Any) -> tuple[list[Datapoint], list[str]]:
    action, payload = frame(name, **changes)
    assert action == "MeterValues"
    notes: list[str] = []
    return meter_values(CP, payload, RECEIVED, notes), notes


BOOT: list[tuple[str, dict[str, Any]]] = [
    (
        "boot_notification",
        {
            "CP_1__BootNotification__charge_point_vendor": "Alfen BV",
            "CP_1__BootNotification__charge_point_model": "NG910-60023",
            "CP_1__BootNotification__charge_point_serial_number": "ACE0123456",
            "CP_1__BootNotification__charge_box_serial_number": "ACE0123456",
            "CP_1__BootNotification__firmware_version": "6.4.0-4167",
            "CP_1__BootNotification__iccid": "",
            "CP_1__BootNotification__imsi": "",
            "CP_1__BootNotification__meter_type": "Eastron SDM630",
            "CP_1__BootNotification__meter_serial_number": "000123456789",
        },
    ),
    (
        "boot_notification_minimal",
        {
            "CP_1__BootNotification__charge_point_vendor": "ABB",
            "CP_1__BootNotification__charge_point_model": "Terra AC",
        },
    ),
]


@pytest.mark.parametrize(("name", "expected"), BOOT, ids=[n for n, _ in BOOT])
def test_boot_notification_fields_become_snake_case_keys(name: str, expected: dict[str, Any]) -> None:
    """Each BootNotification field present becomes `<cp>__BootNotification__<snake_case>`, stamped on receipt."""
    _, payload = frame(name)
    points = boot_notification(CP, payload, RECEIVED)
    assert as_dict(points) == expected
    assert {point.timestamp for point in points} == {RECEIVED}


def test_heartbeat_is_the_receipt_time() -> None:
    """A Heartbeat becomes `<cp>__Heartbeat` whose value and timestamp are the ms of receipt."""
    assert heartbeat(CP, RECEIVED) == [Datapoint("CP_1__Heartbeat", RECEIVED, RECEIVED)]


STATUS: list[tuple[str, dict[str, Any], int]] = [
    (
        "status_available",
        {"CP_1__StatusNotification__1__status": "Available", "CP_1__StatusNotification__1__error_code": "NoError"},
        utc_ms(2026, 11, 21, 10, 0),
    ),
    (
        "status_faulted_vendor",
        {
            "CP_1__StatusNotification__2__status": "Faulted",
            "CP_1__StatusNotification__2__error_code": "OtherError",
            "CP_1__StatusNotification__2__info": "RCD tripped",
            "CP_1__StatusNotification__2__vendor_id": "com.alfen",
            "CP_1__StatusNotification__2__vendor_error_code": "E0042",
        },
        RECEIVED,
    ),
    (
        "status_error_code_error",
        {"CP_1__StatusNotification__1__status": "Available", "CP_1__StatusNotification__1__error_code": "Error"},
        RECEIVED,
    ),
]


@pytest.mark.parametrize(("name", "expected", "at"), STATUS, ids=[n for n, _, _ in STATUS])
def test_status_notification_keys_and_timestamp(name: str, expected: dict[str, Any], at: int) -> None:
    """StatusNotification fields become keys under the connector id, stamped with the charger's time if given."""
    _, payload = frame(name)
    notes: list[str] = []
    points = status_notification(CP, payload, RECEIVED, notes)
    assert as_dict(points) == expected
    assert {point.timestamp for point in points} == {at}
    assert notes == []


# (frame, expected {key: value}, expected timestamp of every point)
METER: list[tuple[str, dict[str, Any], int]] = [
    (
        "meter_values_8",
        METER_VALUES_8,
        utc_ms(2026, 11, 21, 10, 15),
    ),
    (
        "meter_values_defaults",
        {"CP_1__MeterValues__1__Energy.Active.Import.Register__Wh": 1240000},
        utc_ms(2026, 11, 21, 10, 20),
    ),
    (
        "meter_values_inlet_kwh",
        {
            "CP_1__MeterValues__0__Temperature__Body__Celsius": 52.3,
            "CP_1__MeterValues__0__Energy.Active.Import.Register__Inlet__kWh": 1234.5,
            "CP_1__MeterValues__0__Energy.Active.Import.Register__Wh": "A1B2C3",
        },
        utc_ms(2026, 11, 21, 9, 0),  # the frame says 10:00+01:00
    ),
    (
        "meter_values_hz_padded",
        {
            "CP_1__MeterValues__1__Power.Active.Import__W": 0.0,
            "CP_1__MeterValues__1__Frequency__Hz": 50.01,
        },
        utc_ms(2026, 11, 21, 10, 0),
    ),
]


@pytest.mark.parametrize(("name", "expected", "at"), METER, ids=[n for n, _, _ in METER])
def test_meter_values_keys_values_and_timestamps(name: str, expected: dict[str, Any], at: int) -> None:
    """Recorded MeterValues become the documented keys, JSON values and the meter value's own timestamp."""
    points, notes = meter_points(name)
    assert as_dict(points) == expected
    assert len(points) == len(expected)
    assert {point.timestamp for point in points} == {at}
    padded = ["value ' 0.0' padded with spaces; read as '0.0'"] if name == "meter_values_hz_padded" else []
    assert notes == padded  # padding is tolerated but named (interface section 7)
    for point in points:
        assert type(point.value) is type(expected[point.key]), point.key


# (sampled value as sent, expected key suffix after `<cp>__MeterValues__1__`, expected value)
SAMPLES: list[tuple[str, dict[str, Any], str, Any]] = [
    ("all defaults", {"value": "42"}, "Energy.Active.Import.Register__Wh", 42),
    ("measurand default only", {"value": "42", "unit": "kWh"}, "Energy.Active.Import.Register__kWh", 42),
    (
        "unit default only",
        {"value": "42", "measurand": "Energy.Active.Export.Register"},
        "Energy.Active.Export.Register__Wh",
        42,
    ),
    (
        "Outlet omitted",
        {"value": "1", "measurand": "Power.Active.Import", "unit": "W", "location": "Outlet"},
        "Power.Active.Import__W",
        1,
    ),
    ("EV kept", {"value": "80", "measurand": "SoC", "unit": "Percent", "location": "EV"}, "SoC__EV__Percent", 80),
    (
        "phase then location",
        {"value": "7", "measurand": "Current.Import", "phase": "L2", "location": "Cable", "unit": "A"},
        "Current.Import__L2__Cable__A",
        7,
    ),
    (
        "phase without location",
        {"value": "7", "measurand": "Current.Import", "phase": "N", "unit": "A"},
        "Current.Import__N__A",
        7,
    ),
    ("padded zero", {"value": " 0.0", "measurand": "Power.Active.Import", "unit": "W"}, "Power.Active.Import__W", 0.0),
    ("padded integer", {"value": "  123 "}, "Energy.Active.Import.Register__Wh", 123),
    ("negative", {"value": "-12.5", "measurand": "Power.Active.Export", "unit": "W"}, "Power.Active.Export__W", -12.5),
    ("exponent", {"value": "1.5e3"}, "Energy.Active.Import.Register__Wh", 1500.0),
    ("non-numeric text", {"value": "n/a"}, "Energy.Active.Import.Register__Wh", "n/a"),
    ("NaN stays text", {"value": "NaN"}, "Energy.Active.Import.Register__Wh", "NaN"),
    ("inf stays text", {"value": "inf"}, "Energy.Active.Import.Register__Wh", "inf"),
    (
        "SignedData numeric-looking",
        {"value": "123456", "format": "SignedData"},
        "Energy.Active.Import.Register__Wh",
        "123456",
    ),
    ("SignedData blob", {"value": "AbC/+9==", "format": "SignedData"}, "Energy.Active.Import.Register__Wh", "AbC/+9=="),
    ("Raw format numeric", {"value": "12", "format": "Raw"}, "Energy.Active.Import.Register__Wh", 12),
    ("unlisted unit Hz", {"value": "49.98", "measurand": "Frequency", "unit": "Hz"}, "Frequency__Hz", 49.98),
]


@pytest.mark.parametrize(("sample", "suffix", "value"), [s[1:] for s in SAMPLES], ids=[s[0] for s in SAMPLES])
def test_sampled_value_key_and_value(sample: dict[str, Any], suffix: str, value: Any) -> None:
    """A sampled value's key applies the OCPP 1.6 defaults and omissions, and its value is a number where numeric."""
    meter_value = [{"timestamp": "2026-11-21T10:00:00Z", "sampledValue": [sample]}]
    points, _ = meter_points("meter_values_defaults", meterValue=meter_value)
    assert as_dict(points) == {f"CP_1__MeterValues__1__{suffix}": value}
    assert type(points[0].value) is type(value)


def test_backlog_is_published_oldest_first_with_own_timestamps() -> None:
    """Every meterValue element of a request is handled, oldest first, each with its own timestamp."""
    points, _ = meter_points("meter_values_backlog")
    energy = "CP_1__MeterValues__1__Energy.Active.Import.Register__Wh"
    assert points == [
        Datapoint(energy, 1000, utc_ms(2026, 11, 21, 9, 0)),
        Datapoint(energy, 1001, utc_ms(2026, 11, 21, 9, 1)),
        Datapoint(energy, 1002, utc_ms(2026, 11, 21, 9, 2)),
    ]


# (timestamp as sent, expected ms, whether a note is expected)
TIMESTAMPS: list[tuple[str, int, bool]] = [
    ("2026-11-21T10:00:00Z", utc_ms(2026, 11, 21, 10, 0), False),
    ("2026-11-21T10:00:00.250Z", utc_ms(2026, 11, 21, 10, 0) + 250, False),
    ("2026-11-21T10:00:00+00:00", utc_ms(2026, 11, 21, 10, 0), False),
    ("2026-11-21T12:00:00+02:00", utc_ms(2026, 11, 21, 10, 0), False),
    ("2026-11-21T10:00:00", utc_ms(2026, 11, 21, 10, 0), False),
    ("2026-11-21T10:00:00.000", utc_ms(2026, 11, 21, 10, 0), False),
    ("yesterday", RECEIVED, True),
    ("21.11.2026 10:00", RECEIVED, True),
    ("", RECEIVED, True),
]


@pytest.mark.parametrize(("sent", "expected", "noted"), TIMESTAMPS, ids=[t[0] or "empty" for t in TIMESTAMPS])
def test_meter_value_timestamps(sent: str, expected: int, noted: bool) -> None:
    """Offsets are converted, naive times are UTC, unreadable ones become the receipt time with a note."""
    meter_value = [{"timestamp": sent, "sampledValue": [{"value": "1"}]}]
    points, notes = meter_points("meter_values_defaults", meterValue=meter_value)
    assert [point.timestamp for point in points] == [expected]
    assert bool(notes) is noted
    if noted:
        assert repr(sent) in notes[0]


def test_unreadable_status_timestamp_falls_back_to_receipt_with_a_note() -> None:
    """A StatusNotification timestamp that cannot be read is replaced by the time of receipt and noted."""
    _, payload = frame("status_available", timestamp="not a time")
    notes: list[str] = []
    points = status_notification(CP, payload, RECEIVED, notes)
    assert {point.timestamp for point in points} == {RECEIVED}
    assert len(notes) == 1


def test_empty_sampled_value_is_skipped_with_a_note() -> None:
    """A meterValue element with an empty sampledValue yields no datapoint and a note, and the rest still counts."""
    meter_value = [
        {"timestamp": "2026-11-21T10:00:00Z", "sampledValue": []},
        {"timestamp": "2026-11-21T10:01:00Z", "sampledValue": [{"value": "5"}]},
    ]
    empty, empty_notes = meter_points("meter_values_empty_sampled")
    points, notes = meter_points("meter_values_defaults", meterValue=meter_value)
    assert empty == []
    assert len(empty_notes) == 1
    assert as_dict(points) == {"CP_1__MeterValues__1__Energy.Active.Import.Register__Wh": 5}
    assert len(notes) == 1


def test_identity_with_double_underscore_is_kept_whole() -> None:
    """An identity containing `__` appears verbatim as the first part of every key."""
    _, payload = frame("meter_values_defaults")
    points = meter_values("site__A/CP 1", payload, RECEIVED, [])
    assert as_dict(points) == {"site__A/CP 1__MeterValues__1__Energy.Active.Import.Register__Wh": 1240000}


RECORD = TransactionRecord(transaction_id=4711, connector_id=1, id_tag="04A2B3C4D5E6F7", meter_start=1234000)


def test_transaction_start_datapoints() -> None:
    """StartTransaction sets the transaction fields, clears the last stop's fields, and carries the charger's time."""
    _, payload = frame("start_transaction")
    notes: list[str] = []
    points = transaction_started(CP, payload, RECORD, RECEIVED, notes)
    assert as_dict(points) == {
        "CP_1__Transaction__1__active": True,
        "CP_1__Transaction__1__transaction_id": 4711,
        "CP_1__Transaction__1__id_tag": "04A2B3C4D5E6F7",
        "CP_1__Transaction__1__meter_start": 1234000,
        "CP_1__Transaction__1__meter_stop": None,
        "CP_1__Transaction__1__stop_reason": None,
        "CP_1__Transaction__1__energy": None,
    }
    assert {point.timestamp for point in points} == {utc_ms(2026, 11, 21, 10, 0)}
    assert notes == []


STOPS: list[tuple[str, dict[str, Any]]] = [
    (
        "stop_transaction",
        {
            "CP_1__MeterValues__1__Energy.Active.Import.Register__Wh": 1245500,
            "CP_1__Transaction__1__active": False,
            "CP_1__Transaction__1__transaction_id": 4711,
            "CP_1__Transaction__1__meter_stop": 1245500,
            "CP_1__Transaction__1__stop_reason": "EVDisconnected",
            "CP_1__Transaction__1__energy": 11500,
        },
    ),
    (
        "stop_transaction_no_id_tag",
        {
            "CP_1__Transaction__1__active": False,
            "CP_1__Transaction__1__transaction_id": 4711,
            "CP_1__Transaction__1__meter_stop": 1250000,
            "CP_1__Transaction__1__stop_reason": "Local",
            "CP_1__Transaction__1__energy": 16000,
        },
    ),
]


@pytest.mark.parametrize(("name", "expected"), STOPS, ids=[n for n, _ in STOPS])
def test_transaction_stop_datapoints(name: str, expected: dict[str, Any]) -> None:
    """StopTransaction gives inactive, meter stop, reason (default Local), energy = stop - start, transactionData."""
    _, payload = frame(name, transactionId=RECORD.transaction_id)
    notes: list[str] = []
    points = transaction_stopped(CP, payload, RECORD, RECEIVED, notes)
    assert as_dict(points) == expected
    assert len(points) == len(expected)
    assert notes == []


def test_transaction_data_keeps_its_own_timestamps_and_order() -> None:
    """transactionData sampled values are handled like MeterValues: oldest first, each with its own timestamp."""
    data = [
        {"timestamp": "2026-11-21T10:30:00Z", "sampledValue": [{"value": "1240000"}]},
        {"timestamp": "2026-11-21T10:00:00Z", "sampledValue": [{"value": "1234000"}]},
    ]
    _, payload = frame("stop_transaction", transactionData=data)
    points = transaction_stopped(CP, payload, RECORD, RECEIVED, [])
    energy = [p for p in points if p.key == "CP_1__MeterValues__1__Energy.Active.Import.Register__Wh"]
    assert energy == [
        Datapoint(energy[0].key, 1234000, utc_ms(2026, 11, 21, 10, 0)),
        Datapoint(energy[0].key, 1240000, utc_ms(2026, 11, 21, 10, 30)),
    ]
    stop_times = {p.timestamp for p in points if "__Transaction__" in p.key}
    assert stop_times == {utc_ms(2026, 11, 21, 11, 0)}


# OCPP 1.6 enumerations (7.31 Measurand, 7.46 Phase, 7.30 Location, 7.45 UnitOfMeasure), plus
# unlisted values real chargers send; `None` stands for an absent field.
MEASURANDS = [
    "Current.Export", "Current.Import", "Current.Offered", "Energy.Active.Export.Register",
    "Energy.Active.Import.Register", "Energy.Reactive.Export.Register", "Energy.Reactive.Import.Register",
    "Energy.Active.Export.Interval", "Energy.Active.Import.Interval", "Energy.Reactive.Export.Interval",
    "Energy.Reactive.Import.Interval", "Frequency", "Power.Active.Export", "Power.Active.Import", "Power.Factor",
    "Power.Offered", "Power.Reactive.Export", "Power.Reactive.Import", "RPM", "SoC", "Temperature", "Voltage",
]  # fmt: skip
PHASES = ["L1", "L2", "L3", "N", "L1-N", "L2-N", "L3-N", "L1-L2", "L2-L3", "L3-L1"]
LOCATIONS = ["Cable", "EV", "Inlet", "Outlet", "Body"]
UNITS = ["Wh", "kWh", "varh", "kvarh", "W", "kW", "VA", "kVA", "var", "kvar", "A", "V", "K", "Celsius", "Celcius",
         "Fahrenheit", "Percent", "Hz"]  # fmt: skip

DEFAULTS = {"measurand": "Energy.Active.Import.Register", "location": "Outlet", "unit": "Wh"}


def maybe(values: list[str]) -> st.SearchStrategy[str | None]:
    return st.none() | st.sampled_from(values)


identities = st.tuples(maybe(MEASURANDS), maybe(PHASES), maybe(LOCATIONS), maybe(UNITS))


def effective(identity: tuple[str | None, ...]) -> tuple[str | None, ...]:
    """The (measurand, phase, location, unit) a sampled value means once OCPP 1.6 defaults apply."""
    measurand, phase, location, unit = identity
    return (
        measurand or DEFAULTS["measurand"],
        phase,
        location or DEFAULTS["location"],
        unit or DEFAULTS["unit"],
    )


def sample_for(identity: tuple[str | None, ...], value: str) -> dict[str, Any]:
    fields = dict(zip(("measurand", "phase", "location", "unit"), identity, strict=True))
    return {"value": value, **{name: text for name, text in fields.items() if text is not None}}


@given(
    st.lists(identities, min_size=1, max_size=30, unique_by=effective),
    st.sampled_from(["CP_1", "a__b", "Wallbox 7/2"]),
    st.integers(min_value=0, max_value=10),
)
def test_distinct_sampled_values_get_distinct_keys(
    chosen: list[tuple[str | None, ...]], cp: str, connector_id: int
) -> None:
    """Within one message, sampled values with distinct (measurand, phase, location, unit) never share a key."""
    payload = {
        "connectorId": connector_id,
        "meterValue": [{"timestamp": "2026-11-21T10:00:00Z", "sampledValue": [sample_for(i, "1") for i in chosen]}],
    }
    points = meter_values(cp, payload, RECEIVED, [])
    keys = [point.key for point in points]
    assert len(keys) == len(chosen)
    assert len(set(keys)) == len(keys)
    assert all(key.startswith(f"{cp}__MeterValues__{connector_id}__") for key in keys)


values = st.one_of(
    st.text(max_size=40),
    st.integers().map(str),
    st.floats().map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: f" {f!r} "),
    st.sampled_from(["NaN", "-inf", "Infinity", "1e400", "-1e-400", " 0.0", "0x1A", "1_000"]),
)


@given(values, st.sampled_from([None, "Raw", "SignedData"]), identities)
def test_every_value_is_a_json_scalar(text: str, value_format: str | None, identity: tuple[str | None, ...]) -> None:
    """Whatever text a charger samples, the value is a JSON scalar (finite numbers only) with an int ms timestamp."""
    sample = sample_for(identity, text)
    if value_format is not None:
        sample["format"] = value_format
    payload = {"connectorId": 1, "meterValue": [{"timestamp": "2026-11-21T10:00:00Z", "sampledValue": [sample]}]}
    notes: list[str] = []
    points = meter_values(CP, payload, RECEIVED, notes)
    if not text.strip():  # an empty reading is skipped, and named
        assert points == [] and notes and "empty value" in notes[0]
        return
    [point] = points
    assert isinstance(point.value, str | int | float | bool) or point.value is None
    if isinstance(point.value, float):
        assert math.isfinite(point.value)
    json.dumps(point.value, allow_nan=False)
    assert type(point.timestamp) is int
    if value_format == "SignedData":
        assert point.value == text


def voltage(value: str, phase: str | None = None, unit: str | None = "V") -> dict[str, str]:
    sample = {"measurand": "Voltage", "value": value}
    sample.update({"phase": phase} if phase else {})
    sample.update({"unit": unit} if unit else {})
    return sample


VOLTAGES: list[tuple[str, list[list[dict[str, str]]], dict[str, float]]] = [
    # (id, sampled values of each meterValue element, oldest first; voltages kept per phase)
    ("L1-N", [[voltage("231.2", "L1-N")]], {"L1": 231.2}),
    ("L1 is L1-N", [[voltage("229", "L1")]], {"L1": 229.0}),
    ("no phase, unit absent", [[voltage("230.5", unit=None)]], {"": 230.5}),
    ("line to line over sqrt 3", [[voltage("400", "L1-L2")]], {"L1-L2": 400 / 3**0.5}),
    (
        "latest per phase",
        [[voltage("250", "L1")], [voltage("240", "L1-N"), voltage("232", "L2")]],
        {"L1": 240.0, "L2": 232.0},
    ),
    (
        "a floating phase is left out",
        [[voltage("231", "L1-N"), voltage("229", "L2-N"), voltage("0.8", "L3-N")]],
        {"L1": 231.0, "L2": 229.0},
    ),
    ("an implausible one keeps the last plausible", [[voltage("230", "L3")], [voltage("0.8", "L3")]], {"L3": 230.0}),
    ("beyond 300 V", [[voltage("400", "L1-N")], [voltage("1e6")]], {}),
    ("below 100 V", [[voltage("99.9")]], {}),
    ("the range's ends", [[voltage("100", "L1"), voltage("300", "L2")]], {"L1": 100.0, "L2": 300.0}),
    ("neutral to earth", [[voltage("230", "N")]], {}),
    ("unlisted phase", [[voltage("230", "L4")]], {}),
    ("kV", [[voltage("0.23", unit="kV")]], {}),
    ("not a number", [[voltage("n/a")]], {}),
    ("not a voltage", [[{"measurand": "Power.Active.Import", "unit": "W", "value": "230"}]], {}),
    ("none", [[]], {}),
]


@pytest.mark.parametrize(("elements", "expected"), [v[1:] for v in VOLTAGES], ids=[v[0] for v in VOLTAGES])
def test_plausible_phase_voltages_are_kept_per_phase(
    elements: list[list[dict[str, str]]], expected: dict[str, float]
) -> None:
    """Phase-to-neutral voltages of 100-300 V (line-to-line divided by sqrt 3) are kept, the latest per phase."""
    from connector.datapoints import note_phase_voltages, sampled_readings

    meter_value = [
        {"timestamp": f"2026-11-21T10:0{n}:00Z", "sampledValue": samples} for n, samples in enumerate(elements)
    ]
    voltages: dict[str, float] = {}
    note_phase_voltages(sampled_readings("CP", 1, meter_value, 0, []), voltages)
    assert voltages == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1" * MAX_INT_DIGITS, int("1" * MAX_INT_DIGITS)), ("1" * 5000, "1" * 5000), ("-" + "9" * 5000, "-" + "9" * 5000)],
    ids=["longest int", "beyond int()'s limit", "negative, beyond"],
)
def test_a_number_too_long_for_int_is_kept_as_text(text: str, expected: Any) -> None:
    """Python's int() refuses more than 4,300 digits: such a reading stays text instead of failing the message."""
    assert sampled_number(text) == expected


@given(st.from_regex(r"-?(0|[1-9][0-9]{0,11})(\.[0-9]{1,11})?([eE][+-]?[0-9]{1,2})?", fullmatch=True))
def test_a_short_number_reads_as_the_rounded_reading_would(text: str) -> None:
    """Up to 12 characters (the fast path) or more, a number reads as rounding it to 12 significant digits gives."""
    value = sampled_number(text)
    expected = int(text) if text.lstrip("-").isdigit() else float(f"{float(text):.12g}")
    assert (value, type(value)) == (expected, type(expected))
    if isinstance(value, float):  # -0.0 == 0.0: the sign is compared on its own
        assert math.copysign(1, value) == math.copysign(1, expected)


# -- the shared cache of meter key suffixes -------------------------------------------------


@pytest.fixture
def empty_suffix_cache(monkeypatch: pytest.MonkeyPatch) -> dict[Any, str]:
    cache: dict[Any, str] = {}
    monkeypatch.setattr(datapoints, "_SUFFIXES", cache)
    return cache


def test_each_shape_is_built_once_for_every_charger(empty_suffix_cache: dict[Any, str]) -> None:
    """Two chargers' samples of one shape share one cached suffix; their keys differ by identity and connector."""
    sample = {"value": "1", "measurand": "Voltage", "phase": "L1-N", "unit": "V"}
    assert sample_key("CP_A", 1, sample) == "CP_A__MeterValues__1__Voltage__L1-N__V"
    assert sample_key("CP_B", 2, sample) == "CP_B__MeterValues__2__Voltage__L1-N__V"
    assert list(empty_suffix_cache.values()) == ["__Voltage__L1-N__V"]


def test_the_cache_is_bounded_and_keys_stay_right_beyond_it(
    empty_suffix_cache: dict[Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beyond MAX_CACHED_SUFFIXES shapes (a charger inventing measurands), suffixes are built each time, not kept."""
    monkeypatch.setattr(datapoints, "MAX_CACHED_SUFFIXES", 3)
    for n in range(10):
        assert meter_suffix(f"Invented.{n}", None, "Outlet", "Wh") == f"__Invented.{n}__Wh"
    assert len(empty_suffix_cache) == 3


def test_long_or_odd_parts_are_never_cached(empty_suffix_cache: dict[Any, str]) -> None:
    """A suffix beyond MAX_CACHED_SUFFIX_CHARS, a part that is not text, or an unhashable one is built each time."""
    long_measurand = "M" * MAX_CACHED_SUFFIX_CHARS
    assert meter_suffix(long_measurand, None, "Outlet", "Wh") == f"__{long_measurand}__Wh"
    assert meter_suffix(1, None, "Outlet", "Wh") == "__1__Wh"
    assert meter_suffix(True, None, "Outlet", "Wh") == "__True__Wh"  # 1 == True: must not share an entry
    assert meter_suffix(["x"], None, "Outlet", "Wh") == "__['x']__Wh"
    assert empty_suffix_cache == {}


@pytest.mark.parametrize(
    ("parts", "suffix"),
    [
        (("Energy.Active.Import.Register", None, "Outlet", "Wh"), "__Energy.Active.Import.Register__Wh"),
        (("Voltage", "L2-N", "Inlet", "V"), "__Voltage__L2-N__Inlet__V"),
        (("Current.Import", None, "EV", "A"), "__Current.Import__EV__A"),
    ],
    ids=["defaults", "phase and location", "location only"],
)
def test_a_cached_suffix_is_the_one_built_from_its_parts(
    empty_suffix_cache: dict[Any, str], parts: tuple[str, str | None, str, str], suffix: str
) -> None:
    """A second lookup (from the cache) gives what the first built: `__<measurand>[__<phase>][__<location>]__<unit>`."""
    measurand, phase, location, unit = parts
    assert meter_suffix(measurand, phase, location, unit) == suffix
    assert meter_suffix(measurand, phase, location, unit) == suffix
    assert len(empty_suffix_cache) == 1
