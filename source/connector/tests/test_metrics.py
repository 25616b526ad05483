"""/metrics: Prometheus exposition from the connector's own state, cheap on the OCPP path."""

from __future__ import annotations

import json

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from connector.metrics import (
    COMMAND_RESULTS,
    LATENCY_BUCKETS,
    CommandResults,
    FrameMetrics,
    Sources,
    command_result,
    registry_for,
    versions_connected,
)
from connector.tests.conftest import RunningConnector, command, wire
from connector.tests.harness import ChargerLink, MqttProbe, http_request, send
from connector.tests.test_ops_http import ops_port

CP = "CP_metrics_1"
TRIGGER = f"{CP}__execute_trigger_message"

# What the interface names (section 9), by family name as the parser reports it, and type.
REQUIRED = {
    "ocpp_connector_charge_points_connected": "gauge",
    "ocpp_connector_ocpp_messages": "counter",
    "ocpp_connector_mqtt_published": "counter",
    "ocpp_connector_mqtt_queue_depth": "gauge",
    "ocpp_connector_mqtt_dropped": "counter",
    "ocpp_connector_commands": "counter",
    "ocpp_connector_frame_to_mqtt_seconds": "histogram",
}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by (name, sorted labels)."""
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert isinstance(sample, Sample)
            found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


async def scrape(connector: RunningConnector) -> str:
    answer = await http_request(ops_port(connector), "/metrics")
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/plain; version=")
    return answer.body.decode()


async def test_metrics_count_what_happened(connector: RunningConnector, probe: MqttProbe) -> None:
    """After a boot, a status, meter values and two commands, every required metric says so, all prefixed."""
    async with ChargerLink(connector.url, CP) as charger:
        for frame in ("boot_notification", "status_available", "meter_values_8"):
            await send(charger, frame)
        ((cmd, status),) = (await wire(probe, connector, TRIGGER)).values()
        charger.answers["TriggerMessage"] = "Rejected"
        probe.publish(cmd, command(3))
        await probe.wait_value(status, "Rejected")
        probe.publish(cmd, command(99))  # refused before it reaches the charger
        await probe.wait_for(status, lambda p: str(p.get("value")).startswith("Failed"))
        text = await scrape(connector)
    families = {family.name: family.type for family in text_string_to_metric_families(text)}
    assert all(name.startswith("ocpp_connector_") for name in families), families
    assert REQUIRED.items() <= families.items()
    values = samples(text)
    assert values["ocpp_connector_charge_points_connected", (("ocpp_version", "1.6"),)] == 1
    assert values["ocpp_connector_frame_to_mqtt_seconds_count", ()] == 3  # the three CALLs
    assert values["ocpp_connector_commands_total", (("result", "Rejected"),)] == 1
    assert values["ocpp_connector_commands_total", (("result", "Failed"),)] == 1
    assert values["ocpp_connector_ocpp_messages_total", (("direction", "in"),)] >= 4  # 3 CALLs, 1 answer
    assert values["ocpp_connector_ocpp_messages_total", (("direction", "out"),)] >= 4  # 3 answers, 1 CALL
    assert values["ocpp_connector_mqtt_published_total", ()] > 0
    assert values["ocpp_connector_mqtt_dropped_total", ()] == 0
    assert values["ocpp_connector_mqtt_queue_depth", ()] >= 0
    assert values["ocpp_connector_mqtt_connected", ()] == 1


async def test_no_charge_point_identity_appears_in_the_metrics(connector: RunningConnector) -> None:
    """With a charge point connected and metered, its identity is nowhere in /metrics (no label of it)."""
    async with ChargerLink(connector.url, CP) as charger:
        await send(charger, "boot_notification")
        await send(charger, "meter_values_8")
        text = await scrape(connector)
    assert "ocpp_connector_charge_points_connected" in text
    assert CP not in text


def test_the_latency_histogram_is_cumulative_with_inclusive_bounds() -> None:
    """An observation equal to a bound counts in that bucket; buckets accumulate up to +Inf."""
    metrics = FrameMetrics()
    for seconds in (LATENCY_BUCKETS[0], LATENCY_BUCKETS[0] * 1.01, 99.0):
        metrics.handed(seconds)
    buckets = dict(metrics.cumulative_buckets())
    assert buckets[str(LATENCY_BUCKETS[0])] == 1
    assert buckets[str(LATENCY_BUCKETS[1])] == 2
    assert buckets[str(LATENCY_BUCKETS[-1])] == 2
    assert buckets["+Inf"] == 3
    assert metrics.latency_sum == pytest.approx(LATENCY_BUCKETS[0] * 2.01 + 99.0)


@pytest.mark.parametrize(
    ("status", "result"),
    [
        ("Accepted", "Accepted"),
        ("Unlocked", "Unlocked"),
        ("Failed: charge point CP_1 is not connected", "Failed"),
        ("accepted", "Other"),  # whatever a charger invents stays within the set
        ("<script>", "Other"),
        (json.dumps({"status": "Accepted"}), "Other"),
    ],
)
def test_command_results_are_a_bounded_set(status: str, result: str) -> None:
    """The result label is a status word of OCPP 1.6, Failed, or Other: never the charger's free text."""
    assert command_result(status) == result
    assert result in COMMAND_RESULTS | {"Other"}


def fixed_sources(frames: FrameMetrics, commands: CommandResults) -> Sources:
    return Sources(
        frames=frames,
        commands=commands,
        versions=lambda: {"1.6": 2},
        mqtt_connected=lambda: True,
        mqtt_delivered=lambda: 7,
        mqtt_queue_depth=lambda: 0,
        mqtt_dropped=lambda: 0,
    )


def test_each_service_has_a_registry_of_its_own() -> None:
    """Two registries (two services in one process) count independently and both expose every family."""
    first, second = FrameMetrics(), FrameMetrics()
    first.frames_in = 5
    registries = [registry_for(fixed_sources(frames, CommandResults())) for frames in (first, second)]
    name, labels = "ocpp_connector_ocpp_messages_total", {"direction": "in"}
    values = [registry.get_sample_value(name, labels) for registry in registries]
    assert values == [5, 0]


def test_versions_connected_always_names_1_6() -> None:
    """With no charge point connected the gauge still has its 1.6 series, at 0."""
    assert versions_connected({}) == {"1.6": 0}


def test_every_command_result_is_exposed_from_0_before_any_command() -> None:
    """Before any command, ocpp_connector_commands_total has a series at 0 for each result (Failed among them)."""
    registry = registry_for(fixed_sources(FrameMetrics(), CommandResults()))
    assert registry.get_sample_value("ocpp_connector_commands_total", {"result": "Failed"}) == 0
    assert registry.get_sample_value("ocpp_connector_commands_total", {"result": "Accepted"}) == 0
