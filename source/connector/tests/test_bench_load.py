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
peers: ModuleType = importlib.import_module("peers")
report: ModuleType = importlib.import_module("report")

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
        self.qos: list[int] = []
        self.on_publish: Any = None

    def publish(self, topic: str, payload: str, qos: int, retain: bool = False) -> None:
        self.published.append((topic, json.loads(payload)))
        self.qos.append(qos)


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


@pytest.mark.parametrize("mapped", [1, 3, 8])
def test_floor_publishes_only_the_mapped_values_the_connector_is_mapped(mapped: int) -> None:
    """With `--mapped N` the floor publishes exactly the N keys the connector's map names, in order."""
    client = Recorder()
    _, _, action, payload = json.loads(loadgen.meter_values_frame("s0", MS))
    only = frozenset(loadgen.mapped_paths(mapped))
    floor.Floor("bench", client, only).publish_meter_values(CP, *floor.meter_values_of(True, action, payload))
    mapping = peers.datapoint_map([CP], mapped)
    sensor_topics = [topic for key, topic in mapping["sensor"].items() if not key.endswith("__status")]
    assert [topic for topic, _ in client.published] == sensor_topics
    assert len(sensor_topics) == mapped


def test_datapoint_map_names_the_trigger_status_and_actuator_of_each_charger() -> None:
    """The bench's map sends each charger's TriggerMessage status to `bench/s/<cp>` and takes its actuator."""
    mapping = peers.datapoint_map(["A", "B"], 1)
    assert mapping["sensor"]["A__execute_trigger_message__status"] == "bench/s/A"
    assert mapping["actuator"] == {
        "bench/a/A__execute_trigger_message": "A__execute_trigger_message",
        "bench/a/B__execute_trigger_message": "B__execute_trigger_message",
    }


def test_floor_raw_message_has_the_connectors_shape_at_qos_2() -> None:
    """A raw frame goes out on the raw lane at QoS 2 as INTERFACE.md's raw_message_to_db payload."""
    values, raw = Recorder(), Recorder()
    frame = loadgen.meter_values_frame("s0", MS)
    floor.Floor("bench", values, None, raw).publish_raw(CP, "in", frame)
    assert values.published == []
    [(topic, message)] = raw.published
    assert (topic, raw.qos) == ("bench/raw_message_to_db", [2])
    assert set(message) == {"payload", "connector_version"}
    assert set(message["payload"]) == {"raw_message", "timestamp", "charge_point_id", "direction"}
    assert (message["payload"]["raw_message"], message["payload"]["charge_point_id"]) == (frame, CP)
    assert message["payload"]["direction"] == "in"


def test_load_timestamps_rise_even_within_one_ms() -> None:
    """Two load messages built in the same ms get distinct, rising timestamps: values stay distinct on MQTT."""
    one = charger("1.6")
    stamps = [json.loads(one.load_frame(f"c{k}", MS))[3]["meterValue"][0]["timestamp"] for k in range(3)]
    assert stamps == ["2025-11-24T16:00:00.123Z", "2025-11-24T16:00:00.124Z", "2025-11-24T16:00:00.125Z"]


def test_phase_of_a_unique_id() -> None:
    """Load ids name their phase by prefix; other ids (boot) stay whole."""
    assert [loadgen.phase_of(i) for i in ("s0", "s12", "b3", "c7", "boot")] == ["s", "s", "b", "c", "boot"]


def run_figures(
    floor_us: float, connector_us: float, lost_values: int = 0, generators: tuple[float, float] = (3.0, 3.0)
) -> dict[str, Any]:
    """One run's figures, as far as the report's CPU ratio and losses read them; `generators`:
    the load generator's CPU % in the floor's and the connector's half."""

    def server(us: float, lost: int, generator: float) -> dict[str, Any]:
        steady = {"cpu_us_per_message": us, "lost_answers": 0, "lost_values": lost, "generator_cpu_percent": generator}
        return {"connect": {"chargers": 2, "booted": 2}, "steady": steady}

    return {"floor": server(floor_us, 0, generators[0]), "connector": server(connector_us, lost_values, generators[1])}


def test_report_judges_the_median_ratio_and_shows_the_median_run() -> None:
    """Of three runs, the CPU verdict takes the median ratio, the table that run, and a loss in any run fails."""
    runs = [run_figures(100, 200), run_figures(100, 120), run_figures(100, 140, lost_values=3)]
    verdicts = report.Report(runs).verdicts()
    assert verdicts["cpu_per_message_ratio"]["value"] == 1.4
    assert verdicts["cpu_per_message_ratio"]["pass"] is True
    assert verdicts["connector_all_served"]["value"]["steady_lost_values"] == 3
    assert verdicts["connector_all_served"]["pass"] is False
    assert report.Report(runs).shown == 2


@pytest.mark.parametrize(
    ("value", "relation", "expected"),
    [(0.98, ">=", True), (0.979, ">=", False), (25.0, "<", False), (24.9, "<", True), (None, "<=", None)],
)
def test_judge_relations(value: float | None, relation: str, expected: bool | None) -> None:
    """A figure is judged by its relation to the limit, and not at all when it was not measured."""
    limit = 0.98 if relation == ">=" else 25.0
    assert report.judge(value, limit, relation)[2] is expected


def test_the_speed_adjusted_ratio_is_shown_beside_the_verdict_and_never_judged() -> None:
    """Each server's CPU per message over its generator's CPU share: a run whose connector half
    found the machine 1.5x slower (the generator used 1.5x the CPU) shows 1.2x for 1.8x; the
    verdict stays the plain median."""
    runs = [run_figures(100, 180, generators=(3.0, 4.5)), run_figures(100, 130), run_figures(100, 200)]
    table = report.Report(runs)
    assert table.speed_adjusted_ratios == [1.2, 1.3, 2.0]
    assert table.median_speed_adjusted_ratio == 1.3
    assert table.verdicts()["cpu_per_message_ratio"]["value"] == 1.8
    assert "median speed-adjusted ratio (a diagnostic, not the verdict): 1.3" in table.table()
