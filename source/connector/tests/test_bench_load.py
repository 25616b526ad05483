"""The benchmark's chargers and floor (benchmark/): valid OCPP frames, and every load shape makes the same keys."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from ocpp.messages import MessageType, get_validator

sys.path.append(str(Path(__file__).resolve().parents[3] / "benchmark"))  # after the packages: shadows none
loadgen: ModuleType = importlib.import_module("loadgen")
floor: ModuleType = importlib.import_module("floor")

MS = 1_764_000_000_123  # 2025-11-24T16:00:00.123Z
CP = "CP00042"


def charger(version: str, index: int = 0) -> Any:
    """A charger of the generator, not connected: enough to build its frames."""
    return loadgen.Charger(index, CP, loadgen.Fleet(), version, loadgen.SHAPES[version])


def validate(message_type: MessageType, action: str, version: str, payload: dict[str, Any]) -> None:
    get_validator(message_type, action, version).validate(payload)


@pytest.mark.parametrize(
    ("version", "frame"),
    [
        ("1.6", loadgen.BOOTS["1.6"]),
        ("2.0.1", loadgen.BOOTS["2.0.1"]),
        ("1.6", loadgen.meter_values_frame("s0", MS)),
        ("2.0.1", loadgen.meter_values_frame("s0", MS, "2.0.1")),
        ("2.0.1", loadgen.transaction_started_frame(CP, MS)),
        ("2.0.1", loadgen.transaction_updated_frame("s1", MS, CP, 7)),
    ],
)
def test_charger_calls_are_valid(version: str, frame: str) -> None:
    """Every CALL the generator's chargers send is a CALL frame whose payload the version's schema accepts."""
    message_type, _, action, payload = json.loads(frame)
    assert message_type == loadgen.CALL
    validate(MessageType.Call, action, version, payload)


@pytest.mark.parametrize(
    ("version", "action", "request_payload"),
    [
        ("1.6", "GetConfiguration", {"key": ["ChargingScheduleAllowedChargingRateUnit"]}),
        ("1.6", "TriggerMessage", {"requestedMessage": "Heartbeat"}),
        (
            "2.0.1",
            "GetVariables",
            {"getVariableData": [{"component": {"name": "SmartChargingCtrlr"}, "variable": {"name": "RateUnit"}}]},
        ),
        ("2.0.1", "TriggerMessage", {"requestedMessage": "Heartbeat"}),
    ],
)
def test_answers_to_the_server_are_valid(version: str, action: str, request_payload: dict[str, Any]) -> None:
    """The generator answers the rate-unit read and TriggerMessage with payloads the version's schema accepts."""
    validate(MessageType.Call, action, version, request_payload)
    validate(MessageType.CallResult, action, version, loadgen.ANSWERS[version][action](request_payload))


def test_get_variables_answer_names_both_units_and_nothing_else() -> None:
    """GetVariables gets `A,W` for SmartChargingCtrlr.RateUnit, in order, and an unknown status for anything else."""
    wanted = [
        {"component": {"name": "SmartChargingCtrlr"}, "variable": {"name": "RateUnit"}},
        {"component": {"name": "SmartChargingCtrlr"}, "variable": {"name": "Enabled"}},
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
    ]
    answer = loadgen.get_variables_answer({"getVariableData": wanted})
    validate(MessageType.CallResult, "GetVariables", "2.0.1", answer)
    results = answer["getVariableResult"]
    assert [(r["attributeStatus"], r.get("attributeValue")) for r in results] == [
        ("Accepted", "A,W"),
        ("UnknownVariable", None),
        ("UnknownComponent", None),
    ]
    assert [(r["component"], r["variable"]) for r in results] == [(w["component"], w["variable"]) for w in wanted]


def test_floor_boot_answer_is_valid_in_both_versions() -> None:
    """The floor's one BootNotification answer is valid in 1.6 and 2.0.1."""
    for version in ("1.6", "2.0.1"):
        validate(MessageType.CallResult, "BootNotification", version, floor.boot_answer())


def test_load_shapes_alternate_per_charger_and_seq_no_rises() -> None:
    """A 2.0.1 charger's load messages alternate from its index's shape on, and its events' seqNo counts up from 1."""
    one = charger("2.0.1", index=1)
    messages = [json.loads(one.load_frame(f"s{k}", MS)) for k in range(4)]
    assert [m[2] for m in messages] == ["TransactionEvent", "MeterValues", "TransactionEvent", "MeterValues"]
    assert [m[3]["seqNo"] for m in messages if m[2] == "TransactionEvent"] == [1, 2]
    assert json.loads(charger("2.0.1", index=0).load_frame("s0", MS))[2] == "MeterValues"
    assert {json.loads(charger("1.6", index).load_frame("s0", MS))[2] for index in range(3)} == {"MeterValues"}


class Recorder:
    """Stands in for the floor's paho client: keeps what it was asked to publish."""

    def __init__(self) -> None:
        self.published: list[tuple[str, dict[str, Any]]] = []
        self.on_publish: Any = None

    def publish(self, topic: str, payload: str, qos: int, retain: bool) -> None:
        self.published.append((topic, json.loads(payload)))


@pytest.mark.parametrize(
    ("version", "frame"),
    [
        ("1.6", loadgen.meter_values_frame("s0", MS)),
        ("2.0.1", loadgen.meter_values_frame("s0", MS, "2.0.1")),
        ("2.0.1", loadgen.transaction_updated_frame("s1", MS, CP, 1)),
    ],
)
def test_floor_publishes_every_shape_under_the_mapped_keys(version: str, frame: str) -> None:
    """The floor turns each load shape into the 8 keys the connector's map names, with the values and the send time."""
    client = Recorder()
    _, _, action, payload = json.loads(frame)
    values = floor.meter_values_of(version == "1.6", action, payload)
    floor.Floor("bench", client).publish_meter_values(CP, *values)
    assert [topic for topic, _ in client.published] == [f"bench/v/{key}" for key in loadgen.sensor_keys(CP)]
    assert [message["value"] for _, message in client.published] == [float(s[3]) for s in loadgen.SAMPLES]
    assert {message["timestamp"] for _, message in client.published} == {MS}


def test_floor_publishes_nothing_for_a_started_event() -> None:
    """The Started event carries no values, so the floor publishes none for it."""
    _, _, action, payload = json.loads(loadgen.transaction_started_frame(CP, MS))
    values = floor.meter_values_of(False, action, payload)
    assert values is not None
    assert values[1] == []


def test_floor_applies_the_2_0_1_multiplier_and_unit_default() -> None:
    """A 2.0.1 value is scaled by 10^multiplier, and a value without unitOfMeasure is in Wh."""
    assert floor.sample_201({"value": 1.5, "unitOfMeasure": {"unit": "W", "multiplier": 3}}) == (1500.0, "W")
    assert floor.sample_201({"value": 12}) == (12.0, "Wh")
