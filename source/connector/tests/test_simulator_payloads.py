"""The simulator's OCPP 1.6 words (simulator/ocpp16/payloads.py) and its command line (simulator/options.py)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from ocpp.messages import Call, validate_payload

from connector import datapoints as dp
from connector.simulator.model import TX, Car, Sample
from connector.simulator.ocpp16.payloads import Configuration, meter_value, profile_from_wire
from connector.simulator.options import Options, parse
from connector.simulator.station import profile_refusal
from connector.simulator.words import MEASURANDS, parse_time, time_text

T0 = 1_796_342_400.0  # 2026-12-04T00:00:00Z
SAMPLE = Sample(4200.04, 1234567.8, (229.5, 230.0, 231.2), (6.1, 6.08, 6.05), 42.9)


def wire_profile(**changes: Any) -> dict[str, Any]:
    """csChargingProfiles as the connector sends it, in the ocpp library's snake_case (limits as Decimal)."""
    return {
        "charging_profile_id": 1001,
        "stack_level": 0,
        "charging_profile_purpose": "TxDefaultProfile",
        "charging_profile_kind": "Relative",
        "charging_schedule": {
            "charging_rate_unit": "W",
            "charging_schedule_period": [{"start_period": 0, "limit": Decimal("4200.0")}],
        },
        **changes,
    }


def test_times_are_utc_with_z() -> None:
    """A time goes out as UTC with a Z suffix, to the millisecond, and comes back the same."""
    assert time_text(T0 + 0.2) == "2026-12-04T00:00:00.200Z"
    assert parse_time("2026-12-04T01:00:00+01:00") == T0
    assert parse_time("2026-12-04T00:00:00") == T0  # no offset: UTC


async def test_a_meter_value_is_schema_valid_and_maps_to_the_interface_keys() -> None:
    """The sample becomes a MeterValues.req the 1.6 schema accepts, with power, energy, per-phase values and SoC."""
    element = meter_value(SAMPLE, T0, "Sample.Periodic", MEASURANDS)
    payload = json.loads(json.dumps({"connectorId": 1, "meterValue": [wire(element)]}))
    await validate_payload(Call("1", "MeterValues", payload), "1.6")
    readings = {point.key: point.value for _, point in dp.meter_readings("SIM-1", payload, 0, [])}
    assert readings == {
        "SIM-1__MeterValues__1__Energy.Active.Import.Register__Wh": 1234567,
        "SIM-1__MeterValues__1__Power.Active.Import__W": 4200.0,
        "SIM-1__MeterValues__1__Current.Import__L1__A": 6.1,
        "SIM-1__MeterValues__1__Current.Import__L2__A": 6.08,
        "SIM-1__MeterValues__1__Current.Import__L3__A": 6.05,
        "SIM-1__MeterValues__1__Voltage__L1-N__V": 229.5,
        "SIM-1__MeterValues__1__Voltage__L2-N__V": 230.0,
        "SIM-1__MeterValues__1__Voltage__L3-N__V": 231.2,
        "SIM-1__MeterValues__1__SoC__EV__Percent": 42,
    }


def wire(element: dict[str, Any]) -> dict[str, Any]:
    """A meterValue element as the ocpp library puts it on the wire (sampled values have no snake_case keys)."""
    return {"timestamp": element["timestamp"], "sampledValue": element["sampled_value"]}


def test_only_the_measurands_configured_are_sampled() -> None:
    """MeterValuesSampledData = Power.Active.Import: one sampled value, the power."""
    element = meter_value(SAMPLE, T0, "Trigger", ("Power.Active.Import",))
    assert element["sampled_value"] == [
        {"value": "4200.0", "context": "Trigger", "measurand": "Power.Active.Import", "unit": "W"}
    ]


def test_a_profile_from_the_wire() -> None:
    """The connector's TxDefaultProfile becomes a Profile with its id, purpose, unit and one period."""
    profile = profile_from_wire(1, wire_profile())
    assert (profile.profile_id, profile.purpose, profile.unit, profile.kind) == (
        1001,
        "TxDefaultProfile",
        "W",
        "Relative",
    )
    assert [(p.start_s, p.limit) for p in profile.periods] == [(0.0, 4200.0)]


@pytest.mark.parametrize(
    ("connector_id", "changes", "reason"),
    [
        (2, {}, "no connector 2"),
        (1, {"charging_profile_purpose": "ChargePointMaxProfile"}, "belongs on connector 0"),
        (1, {"charging_profile_purpose": TX}, "needs a transaction"),
        (1, {"charging_profile_purpose": TX, "transaction_id": 9}, "not the one in progress"),
        (1, {"stack_level": 9}, "above the highest it supports, 8"),
    ],
)
def test_profiles_a_real_charger_refuses(connector_id: int, changes: dict[str, Any], reason: str) -> None:
    """Unknown connector, misplaced ChargePointMax, TxProfile outside its transaction, too high a stack: refused."""
    car = Car(T0, 0, 30.0, "TAG", transaction_id=7) if "transaction_id" in changes else None
    refusal = profile_refusal(profile_from_wire(connector_id, wire_profile(**changes)), car)
    assert refusal is not None and reason in refusal


def test_a_tx_profile_for_the_running_transaction_is_taken() -> None:
    """A TxProfile naming the transaction in progress is accepted."""
    car = Car(T0, 0, 30.0, "TAG", transaction_id=7)
    assert (
        profile_refusal(profile_from_wire(1, wire_profile(charging_profile_purpose=TX, transaction_id=7)), car) is None
    )


def test_the_configuration_names_the_rate_units_and_the_sample_interval() -> None:
    """GetConfiguration names the allowed rate units and MeterValueSampleInterval, and unknown keys apart."""
    known, unknown = Configuration(0.2).entries(
        ["ChargingScheduleAllowedChargingRateUnit", "MeterValueSampleInterval", "NoSuchKey"]
    )
    assert [(e["key"], e["value"], e["readonly"]) for e in known] == [
        ("ChargingScheduleAllowedChargingRateUnit", "Current,Power", True),
        ("MeterValueSampleInterval", "0.2", False),
    ]
    assert unknown == ["NoSuchKey"]


@pytest.mark.parametrize(
    ("key", "value", "status"),
    [
        ("MeterValueSampleInterval", "5", "Accepted"),
        ("MeterValueSampleInterval", "often", "Rejected"),
        ("MeterValuesSampledData", "Power.Active.Import,SoC", "Accepted"),
        ("MeterValuesSampledData", "Power.Reactive.Import", "Rejected"),
        ("NumberOfConnectors", "2", "Rejected"),
        ("AuthorizationKey", "secret", "NotSupported"),
    ],
)
def test_configuration_changes(key: str, value: str, status: str) -> None:
    """ChangeConfiguration: a sensible value Accepted, read-only or nonsense Rejected, unknown keys NotSupported."""
    configuration = Configuration(10)
    before = configuration.entries([key])[0]
    assert configuration.change(key, value) == status
    after = configuration.entries([key])[0]
    assert after == ([{**before[0], "value": value}] if status == "Accepted" else before)


def test_options_default_to_one_charger_every_10_s() -> None:
    """Only --url given: one charger SIM-1, OCPP 1.6, every 10 s, its URL the connector's plus its identity."""
    options = parse(["--url", "ws://127.0.0.1:9000/"])
    assert options == Options("ws://127.0.0.1:9000/", 1, "1.6", 10.0, "SIM")
    assert options.url_of("SIM-1") == "ws://127.0.0.1:9000/SIM-1"


def test_options_take_ocpp_2_0_1() -> None:
    """--ocpp 2.0.1 simulates OCPP 2.0.1 charging stations."""
    assert parse(["--url", "ws://h:1", "--ocpp", "2.0.1"]).ocpp == "2.0.1"


def test_options_name_the_chargers_with_the_prefix() -> None:
    """--chargers 3 --prefix LAB: LAB-1, LAB-2, LAB-3, each percent-encoded in its URL."""
    options = parse(["--url", "ws://h:1/ocpp", "--chargers", "3", "--prefix", "LAB 7"])
    assert options.names() == ["LAB 7-1", "LAB 7-2", "LAB 7-3"]
    assert options.url_of("LAB 7-1") == "ws://h:1/ocpp/LAB%207-1"


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        ([], "--url"),
        (["--url", "http://h:9000"], "ws://HOST:PORT"),
        (["--url", "ws://h:port"], "no URL"),
        (["--url", "ws://h:1", "--chargers", "0"], "1 to 100000"),
        (["--url", "ws://h:1", "--interval", "-1"], "seconds > 0"),
        (["--url", "ws://h:1", "--interval", "nan"], "seconds > 0"),
        (["--url", "ws://h:1", "--ocpp", "2.1"], "must be one of 1.6, 2.0.1"),
        (["--url", "ws://h:1", "--ocpp", "1.5"], "must be one of 1.6, 2.0.1"),
        (["--url", "ws://h:1", "--prefix", ""], "printable"),
        (["--url", "ws://h:1", "--bogus"], "unrecognized"),
    ],
)
def test_a_bad_argument_exits_2_with_one_line(
    arguments: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each bad argument ends with status 2 and one stderr line that says what is wrong."""
    with pytest.raises(SystemExit) as exit_:
        parse(arguments)
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and said in lines[0], lines
