"""OCPP 2.x datapoint mapping (ocpp201/datapoints.py): keys shaped as 1.6's, values, timestamps (INTERFACE.md 8)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector import datapoints as dp
from connector.datapoints import Datapoint, data_transfer
from connector.ocpp201 import datapoints as dp2

CP = "CP_1"
RECEIVED = 1_800_000_000_000  # ms; unlike any timestamp below


def utc_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).astimezone(UTC).timestamp() * 1000)


def as_dict(points: list[Datapoint]) -> dict[str, Any]:
    return {point.key: point.value for point in points}


# -- BootNotification, StatusNotification -------------------------------------------------

BOOTS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "full",
        {
            "reason": "PowerUp",
            "chargingStation": {
                "model": "Terra AC W22-T-RD-M-0",
                "vendorName": "ABB",
                "serialNumber": "TACW2242821G1234",
                "firmwareVersion": "1.8.21",
                "modem": {"iccid": "89490200001234567890", "imsi": "262011234567890"},
            },
        },
        {
            "CP_1__BootNotification__reason": "PowerUp",
            "CP_1__BootNotification__vendor_name": "ABB",
            "CP_1__BootNotification__model": "Terra AC W22-T-RD-M-0",
            "CP_1__BootNotification__serial_number": "TACW2242821G1234",
            "CP_1__BootNotification__firmware_version": "1.8.21",
            "CP_1__BootNotification__modem_iccid": "89490200001234567890",
            "CP_1__BootNotification__modem_imsi": "262011234567890",
        },
    ),
    (
        "minimal",
        {"reason": "FirmwareUpdate", "chargingStation": {"model": "Pulsar Plus", "vendorName": "Wallbox"}},
        {
            "CP_1__BootNotification__reason": "FirmwareUpdate",
            "CP_1__BootNotification__vendor_name": "Wallbox",
            "CP_1__BootNotification__model": "Pulsar Plus",
        },
    ),
]


@pytest.mark.parametrize(("name", "payload", "expected"), BOOTS, ids=[b[0] for b in BOOTS])
def test_boot_notification_keys(name: str, payload: dict[str, Any], expected: dict[str, Any]) -> None:
    """BootNotification: reason, the station's fields in snake_case and the modem's as modem_*, at receipt."""
    points = dp2.boot_notification(CP, payload, RECEIVED)
    assert as_dict(points) == expected
    assert {point.timestamp for point in points} == {RECEIVED}


def test_status_notification_key_and_timestamp() -> None:
    """StatusNotification: <cp>__StatusNotification__<evse>__<connector>__connector_status at its timestamp."""
    payload = {"timestamp": "2026-11-21T10:15:02.123Z", "connectorStatus": "Occupied", "evseId": 2, "connectorId": 1}
    [point] = dp2.status_notification(CP, payload, RECEIVED, [])
    assert point == Datapoint(
        "CP_1__StatusNotification__2__1__connector_status", "Occupied", utc_ms("2026-11-21T10:15:02.123+00:00")
    )


# -- sampled values ---------------------------------------------------------------------

SAMPLES: list[tuple[dict[str, Any], str, Any]] = [
    ({"value": 12345}, "Energy.Active.Import.Register__Wh", 12345),
    ({"value": 12.345, "unitOfMeasure": {"unit": "kWh"}}, "Energy.Active.Import.Register__kWh", 12.345),
    ({"value": 7360.5, "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "W"}}, "Power.Active.Import__W",
     7360.5),
    ({"value": 15, "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "W", "multiplier": 3}},
     "Power.Active.Import__W", 15000),
    ({"value": 231.4, "measurand": "Voltage", "phase": "L1-N", "unitOfMeasure": {"unit": "V"}}, "Voltage__L1-N__V",
     231.4),
    ({"value": 2314, "measurand": "Voltage", "phase": "L2", "unitOfMeasure": {"unit": "V", "multiplier": -1}},
     "Voltage__L2__V", 231.4),
    ({"value": 16000, "measurand": "Current.Import", "phase": "L1", "unitOfMeasure": {"unit": "A", "multiplier": -3}},
     "Current.Import__L1__A", 16),
    ({"value": 1.5, "measurand": "Current.Offered", "unitOfMeasure": {"unit": "A", "multiplier": 1}},
     "Current.Offered__A", 15.0),
    ({"value": 57, "measurand": "SoC", "location": "EV", "unitOfMeasure": {"unit": "Percent"}}, "SoC__EV__Percent", 57),
    ({"value": 31.5, "measurand": "Current.Import", "location": "Outlet", "unitOfMeasure": {"unit": "A"}},
     "Current.Import__A", 31.5),
    ({"value": 49.98, "measurand": "Frequency", "location": "Inlet", "unitOfMeasure": {"unit": "Hz"}},
     "Frequency__Inlet__Hz", 49.98),
    ({"value": 3, "measurand": "Power.Active.Import", "unitOfMeasure": {"multiplier": 3}},
     "Power.Active.Import__Wh", 3000),  # no unit: 1.6's default, Wh, whatever the measurand
]  # fmt: skip


@pytest.mark.parametrize(("sample", "suffix", "value"), SAMPLES)
def test_sampled_value_key_and_value(sample: dict[str, Any], suffix: str, value: Any) -> None:
    """A sampled value's key is 1.6's shape under the EVSE, its value value x 10^multiplier, integers kept."""
    payload = [{"timestamp": "2026-11-21T10:00:00Z", "sampledValue": [sample]}]
    [(_, point)] = dp2.sampled_readings(CP, 1, payload, RECEIVED, [])
    assert point.key == f"CP_1__MeterValues__1__{suffix}"
    assert point.value == value and type(point.value) is type(value)
    assert point.timestamp == utc_ms("2026-11-21T10:00:00+00:00")


def test_elements_are_published_oldest_first_with_their_own_timestamps() -> None:
    """A backlog of meterValue elements comes out oldest first, each at its own timestamp."""
    meter_value = [
        {"timestamp": "2026-11-21T10:02:00Z", "sampledValue": [{"value": 300}]},
        {"timestamp": "2026-11-21T10:00:00Z", "sampledValue": [{"value": 100}]},
        {"timestamp": "2026-11-21T10:01:00Z", "sampledValue": [{"value": 200}]},
    ]
    points = [point for _, point in dp2.sampled_readings(CP, 0, meter_value, RECEIVED, [])]
    assert [p.value for p in points] == [100, 200, 300]
    assert [p.timestamp for p in points] == [utc_ms(f"2026-11-21T10:0{m}:00+00:00") for m in range(3)]


@pytest.mark.parametrize(
    ("sample", "note"),
    [
        ({"value": 5, "unitOfMeasure": {"multiplier": 10**9}}, "multiplier"),
        ({"value": 1e300, "unitOfMeasure": {"multiplier": 24}}, "out of range"),
        ({"value": "junk"}, "not a number"),
    ],
)
def test_values_that_make_no_number_are_skipped_and_named(sample: dict[str, Any], note: str) -> None:
    """A multiplier beyond any meter's, an overflowing product or a non-number is skipped with a note, not computed."""
    notes: list[str] = []
    payload = [{"timestamp": "2026-11-21T10:00:00Z", "sampledValue": [sample]}]
    assert dp2.sampled_readings(CP, 1, payload, RECEIVED, notes) == []
    assert note in notes[0]


def test_a_value_that_is_not_a_number_is_skipped_with_a_note() -> None:
    """2.x values are numbers (the schema refuses a string before the mapping): anything else is skipped, named."""
    notes: list[str] = []
    payload = [{"timestamp": "2026-11-21T10:00:00Z", "sampledValue": [{"value": " 0.0"}]}]
    assert dp2.sampled_readings(CP, 1, payload, RECEIVED, notes) == []
    assert "not a number" in notes[0]


def test_empty_sampled_value_is_noted() -> None:
    """An element with an empty sampledValue is skipped, and named."""
    notes: list[str] = []
    assert dp2.sampled_readings(CP, 1, [{"timestamp": "2026-11-21T10:00:00Z", "sampledValue": []}], 0, notes) == []
    assert "empty sampledValue" in notes[0]


PARITY: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"value": "1"}, {"value": 1}),
    ({"value": "1", "measurand": "Voltage", "phase": "L1-N", "unit": "V"},
     {"value": 1, "measurand": "Voltage", "phase": "L1-N", "unitOfMeasure": {"unit": "V"}}),
    ({"value": "1", "measurand": "SoC", "location": "EV", "unit": "Percent"},
     {"value": 1, "measurand": "SoC", "location": "EV", "unitOfMeasure": {"unit": "Percent"}}),
    ({"value": "1", "measurand": "Power.Active.Import", "location": "Outlet", "unit": "kW"},
     {"value": 1, "measurand": "Power.Active.Import", "location": "Outlet", "unitOfMeasure": {"unit": "kW"}}),
]  # fmt: skip


@pytest.mark.parametrize(("v16", "v2"), PARITY)
def test_a_1_6_and_a_2_x_sample_of_the_same_meaning_share_their_key(v16: dict[str, Any], v2: dict[str, Any]) -> None:
    """The same measurand, phase, location and unit make the same key in 1.6 (connector) and 2.x (EVSE)."""
    assert dp.sample_key(CP, 1, v16) == dp2.sample_key(CP, 1, v2)


measurands = st.sampled_from(
    ["Energy.Active.Import.Register", "Power.Active.Import", "Voltage", "Current.Import", "SoC"]
)
phases = st.none() | st.sampled_from(["L1", "L2", "L3", "N", "L1-N", "L2-N", "L3-N", "L1-L2", "L2-L3", "L3-L1"])
locations = st.none() | st.sampled_from(["Body", "Cable", "EV", "Inlet", "Outlet"])
units = st.none() | st.sampled_from(["Wh", "kWh", "W", "kW", "A", "V", "Percent", "Hz"])


@given(st.lists(st.tuples(st.none() | measurands, phases, locations, units), min_size=1, max_size=20))
def test_distinct_sampled_values_get_distinct_keys(identities: list[tuple[str | None, ...]]) -> None:
    """Sampled values of distinct (measurand, phase, location, unit), defaults applied, never share a key."""
    samples = []
    for measurand, phase, location, unit in identities:
        sample: dict[str, Any] = {"value": 1}
        sample.update({"measurand": measurand} if measurand else {})
        sample.update({"phase": phase} if phase else {})
        sample.update({"location": location} if location else {})
        sample.update({"unitOfMeasure": {"unit": unit}} if unit else {})
        samples.append(sample)
    meaning = {
        (s.get("measurand", dp.DEFAULT_MEASURAND), s.get("phase"), s.get("location", "Outlet"),
         s.get("unitOfMeasure", {}).get("unit", "Wh"))
        for s in samples
    }  # fmt: skip
    keys = {dp2.sample_key(CP, 3, s) for s in samples}
    assert len(keys) == len(meaning)


numbers = st.integers(min_value=-(10**15), max_value=10**15) | st.floats(allow_nan=False, allow_infinity=False)


@given(numbers, st.integers(min_value=-30, max_value=30))
def test_every_value_is_a_finite_json_number_or_skipped(value: int | float, multiplier: int) -> None:
    """Whatever number and multiplier a station sends, the value is a finite JSON number, or skipped with a note."""
    notes: list[str] = []
    sample = {"value": value, "unitOfMeasure": {"multiplier": multiplier}}
    result = dp2.sample_value(sample, notes)
    if result is None:
        assert notes
        return
    assert isinstance(result, int | float) and not isinstance(result, bool)
    if isinstance(result, float):
        assert math.isfinite(result)
    json.dumps(result, allow_nan=False)
    if isinstance(value, int) and multiplier >= 0:
        assert result == value * 10**multiplier and type(result) is int


# -- energy registers ---------------------------------------------------------------------


def readings(*samples: dict[str, Any]) -> list[dp.Reading]:
    return dp2.sampled_readings(CP, 1, [{"timestamp": "2026-11-21T10:00:00Z", "sampledValue": list(samples)}], 0, [])


REGISTERS: list[tuple[str, list[dict[str, Any]], str, Any]] = [
    ("Wh", [{"value": 12345, "context": "Transaction.Begin"}], "Transaction.Begin", 12345),
    ("kWh to Wh", [{"value": 12.345, "unitOfMeasure": {"unit": "kWh"}}], "Transaction.Begin", 12345),
    ("multiplier and kWh", [{"value": 12345, "unitOfMeasure": {"unit": "kWh", "multiplier": -3}}],
     "Transaction.End", 12345),
    ("fractional Wh", [{"value": 1234.5}], "Transaction.End", 1234.5),
    ("the context's reading first",
     [{"value": 1, "context": "Sample.Periodic"}, {"value": 2, "context": "Transaction.End"}], "Transaction.End", 2),
    ("per phase and elsewhere are no register",
     [{"value": 5, "phase": "L1"}, {"value": 6, "location": "EV"}, {"value": 7, "measurand": "Power.Active.Import"}],
     "Transaction.End", None),
    ("not an energy unit", [{"value": 5, "unitOfMeasure": {"unit": "W"}}], "Transaction.End", None),
]  # fmt: skip


@pytest.mark.parametrize(("name", "samples", "context", "wh"), REGISTERS, ids=[r[0] for r in REGISTERS])
def test_energy_register_in_wh(name: str, samples: list[dict[str, Any]], context: str, wh: Any) -> None:
    """The overall outlet Energy.Active.Import.Register in Wh (multiplier and kWh converted), or None."""
    result = dp2.register_wh(readings(*samples), context)
    assert result == wh and type(result) is type(wh)


def test_energy_has_no_float_noise() -> None:
    """meter_stop - meter_start is exact: 12345.6 - 12000.1 Wh is 345.5 Wh."""
    assert dp2.energy_wh(12000.1, 12345.6) == 345.5
    assert dp2.energy_wh(12000, 12345) == 345


def test_voltage_readings_take_the_1_6_shape() -> None:
    """Voltages feed note_phase_voltages like 1.6's, the multiplier applied and an absent unit taken as V."""
    voltages: dict[str, float] = {}
    dp.note_phase_voltages(
        dp2.voltage_readings(
            readings(
                {
                    "value": 2301,
                    "measurand": "Voltage",
                    "phase": "L1-N",
                    "unitOfMeasure": {"unit": "V", "multiplier": -1},
                },
                {"value": 229, "measurand": "Voltage", "phase": "L2-N"},
                {"value": 0.8, "measurand": "Voltage", "phase": "L3-N", "unitOfMeasure": {"unit": "V"}},
                {"value": 16, "measurand": "Current.Import", "phase": "L1"},
            )
        ),
        voltages,
    )
    assert voltages == {"L1": 230.1, "L2": 229.0}


# -- device model -----------------------------------------------------------------------

REPORT: list[dict[str, Any]] = [
    {
        "component": {"name": "SmartChargingCtrlr"},
        "variable": {"name": "RateUnit"},
        "variableAttribute": [{"type": "Actual", "value": "A,W", "mutability": "ReadOnly"}],
    },
    {
        "component": {"name": "EVSE", "evse": {"id": 2}},
        "variable": {"name": "AvailabilityState"},
        "variableAttribute": [{"value": "Available"}],
    },
    {
        "component": {"name": "Connector", "evse": {"id": 1, "connectorId": 1}},
        "variable": {"name": "ConnectorType"},
        "variableAttribute": [{"value": "cType2"}],
    },
    {
        "component": {"name": "OCPPCommCtrlr"},
        "variable": {"name": "MessageAttempts", "instance": "TransactionEvent"},
        "variableAttribute": [{"type": "Actual", "value": "3"}, {"type": "MaxSet", "value": "10"}],
    },
    {
        "component": {"name": "TxCtrlr", "instance": "Main"},
        "variable": {"name": "EVConnectionTimeOut"},
        "variableAttribute": [{"type": "Target", "value": "120"}, {"type": "Actual"}],
    },
    {
        "component": {"name": "SecurityCtrlr"},
        "variable": {"name": "BasicAuthPassword"},
        "variableAttribute": [{"value": "s3cret-but-reported", "mutability": "ReadWrite"}],
    },
    {
        "component": {"name": "NetworkConfiguration"},
        "variable": {"name": "Token"},
        "variableAttribute": [{"value": "hidden", "mutability": "WriteOnly"}],
    },
]


def test_notify_report_publishes_actual_values_under_variable_keys() -> None:
    """NotifyReport: Actual values only, EVSE and instances in the key, secrets and WriteOnly values never."""
    at = utc_ms("2026-11-21T10:00:00+00:00")
    assert as_dict(dp2.report_points(CP, REPORT, at, [], limit=100)) == {
        "CP_1__Variable__SmartChargingCtrlr__RateUnit": "A,W",
        "CP_1__Variable__EVSE__2__AvailabilityState": "Available",
        "CP_1__Variable__Connector__1__1__ConnectorType": "cType2",
        "CP_1__Variable__OCPPCommCtrlr__MessageAttempts__TransactionEvent": "3",
    }


def test_notify_report_values_are_bounded_per_message() -> None:
    """A report with more values than the limit publishes the limit, and says so."""
    many = [
        {"component": {"name": "Ctrlr"}, "variable": {"name": f"V{i}"}, "variableAttribute": [{"value": str(i)}]}
        for i in range(50)
    ]
    notes: list[str] = []
    points = dp2.report_points(CP, many, 0, notes, limit=10)
    assert [p.value for p in points] == [str(i) for i in range(10)]
    assert "more than 10" in notes[0]


def test_variable_key_names_a_non_actual_attribute() -> None:
    """A Target (or MinSet, MaxSet) attribute gets its type as the last part of the key."""
    key = dp2.variable_key(CP, {"name": "TxCtrlr"}, {"name": "EVConnectionTimeOut"}, "Target")
    assert key == "CP_1__Variable__TxCtrlr__EVConnectionTimeOut__Target"


def test_notify_event_values_are_stamped_with_their_events_time() -> None:
    """NotifyEvent: each event's actualValue under its variable's key, at the event's timestamp."""
    events = [
        {
            "eventId": 17,
            "timestamp": "2026-11-21T10:05:00Z",
            "trigger": "Delta",
            "actualValue": "Occupied",
            "eventNotificationType": "HardWiredNotification",
            "component": {"name": "Connector", "evse": {"id": 1, "connectorId": 1}},
            "variable": {"name": "AvailabilityState"},
        },
        {
            "eventId": 18,
            "timestamp": "2026-11-21T10:06:00Z",
            "trigger": "Alerting",
            "actualValue": "changed",
            "eventNotificationType": "CustomMonitor",
            "component": {"name": "SecurityCtrlr"},
            "variable": {"name": "BasicAuthPassword"},
        },
    ]
    assert dp2.event_points(CP, events, RECEIVED, [], limit=10) == [
        Datapoint("CP_1__Variable__Connector__1__1__AvailabilityState", "Occupied", utc_ms("2026-11-21T10:05:00+00:00"))
    ]


@pytest.mark.parametrize(
    ("payload", "key", "value"),
    [
        ({"vendorId": "com.alfen", "messageId": "Status", "data": "ok"}, "CP_1__DataTransfer__com.alfen__Status", "ok"),
        ({"vendorId": "org.openchargealliance", "data": {"a": [1, 2]}}, "CP_1__DataTransfer__org.openchargealliance",
         '{"a":[1,2]}'),
        ({"vendorId": "x"}, "CP_1__DataTransfer__x", ""),
    ],
)  # fmt: skip
def test_data_transfer_is_published_as_text(payload: dict[str, Any], key: str, value: str) -> None:
    """DataTransfer (datapoints.py, every version's): 1.6's key; data that is not a string (2.x allows any JSON)
    as compact JSON text."""
    assert data_transfer(CP, payload, RECEIVED) == [Datapoint(key, value, RECEIVED)]
