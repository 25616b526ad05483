"""Prometheus metrics, counted cheaply where things happen and exposed at scrape time.

The hot path (every OCPP frame) only increments plain integers and, per CALL handled,
one bucket of a latency histogram kept here: an attribute increment costs some tens of
nanoseconds, a prometheus-client Counter.inc() about ten times that (it takes a lock).
Everything else (connections, the MQTT queue, what was dropped) is read from the state
the connector keeps anyway, when Prometheus scrapes. A CollectorRegistry per Service:
tests run many services in one process. No charge point id is ever a label: fleets
have thousands, and each would be a time series of its own.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from connector import __version__
from connector.protocol import OCPP_VERSION

PREFIX = "ocpp_connector"

# Seconds from a charger's frame arriving to its values handed to the MQTT client.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

# The answers chargers give to the commands of OCPP 1.6 (each .conf's status enum), and
# `Failed` for every `Failed: <reason>`: a bounded set of label values whatever they send.
COMMAND_RESULTS = frozenset(
    {
        "Accepted",
        "Rejected",
        "NotSupported",
        "NotImplemented",
        "Scheduled",
        "RebootRequired",
        "Unlocked",
        "UnlockFailed",
        "Unknown",
        "Faulted",
        "Occupied",
        "Unavailable",
        "UnknownMessageId",
        "UnknownVendorId",
        "Failed",
    }
)
OTHER_RESULT = "Other"


def command_result(status: str) -> str:
    """The `result` label of a command's status: its OCPP word, `Failed`, or `Other`."""
    if status.startswith("Failed"):
        return "Failed"
    return status if status in COMMAND_RESULTS else OTHER_RESULT


class FrameMetrics:
    """Counts of the OCPP path: frames in and out, and the latency histogram."""

    __slots__ = ("frames_in", "frames_out", "latency_counts", "latency_sum")

    def __init__(self) -> None:
        self.frames_in = 0
        self.frames_out = 0
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)  # the last: above every bound
        self.latency_sum = 0.0

    def handed(self, seconds: float) -> None:
        """A CALL's values are with the MQTT client `seconds` after its frame arrived."""
        # bisect_left: a value equal to a bound counts in that bound's bucket (le, "<=").
        self.latency_counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds

    def cumulative_buckets(self) -> list[tuple[str, float]]:
        """Prometheus' (le, count of observations <= le) pairs, +Inf last."""
        buckets, total = [], 0
        for bound, count in zip((*map(str, LATENCY_BUCKETS), "+Inf"), self.latency_counts, strict=True):
            total += count
            buckets.append((bound, float(total)))
        return buckets


class CommandResults:
    """Commands ended, by result (a command is rare: a Counter is cheap enough)."""

    def __init__(self) -> None:
        # Every result from 0: an absent series is not a rate of 0 to Prometheus (alerts on
        # `rate(...{result="Failed"})` would see nothing until the first failure).
        self.counts: Counter[str] = Counter(dict.fromkeys([*sorted(COMMAND_RESULTS), OTHER_RESULT], 0))

    def ended(self, status: str) -> None:
        self.counts[command_result(status)] += 1


@dataclass(frozen=True)
class Sources:
    """Where the collector reads the connector's state at scrape time."""

    frames: FrameMetrics
    commands: CommandResults
    versions: Callable[[], Mapping[str, int]]  # OCPP version -> connected charge points
    mqtt_connected: Callable[[], bool]
    mqtt_delivered: Callable[[], int]  # acknowledged by the broker (QoS 0: written to it)
    mqtt_queue_depth: Callable[[], int]
    mqtt_dropped: Callable[[], int]


class ConnectorCollector(Collector):
    """Builds every connector metric from `Sources` when scraped."""

    def __init__(self, sources: Sources) -> None:
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        s = self._sources
        info = GaugeMetricFamily(f"{PREFIX}_info", "The connector's version", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        yield self._charge_points()
        messages = CounterMetricFamily(
            f"{PREFIX}_ocpp_messages", "OCPP-J frames, received (in) and sent (out)", labels=["direction"]
        )
        messages.add_metric(["in"], s.frames.frames_in)
        messages.add_metric(["out"], s.frames.frames_out)
        yield messages
        yield GaugeMetricFamily(f"{PREFIX}_mqtt_connected", "1 while the broker connection is up", s.mqtt_connected())
        yield CounterMetricFamily(
            f"{PREFIX}_mqtt_published", "MQTT messages the broker acknowledged (QoS 0: sent)", s.mqtt_delivered()
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_mqtt_queue_depth",
            "MQTT messages not yet acknowledged (in memory, spooled, in flight)",
            s.mqtt_queue_depth(),
        )
        yield CounterMetricFamily(
            f"{PREFIX}_mqtt_dropped", "MQTT messages dropped beyond MQTT_QUEUE_LIMIT", s.mqtt_dropped()
        )
        yield self._commands()
        yield HistogramMetricFamily(
            f"{PREFIX}_frame_to_mqtt_seconds",
            "Time from a charger's CALL frame arriving to its values handed to the MQTT client",
            buckets=s.frames.cumulative_buckets(),
            sum_value=s.frames.latency_sum,
        )

    def _charge_points(self) -> Metric:
        gauge = GaugeMetricFamily(
            f"{PREFIX}_charge_points_connected", "Charge points connected now", labels=["ocpp_version"]
        )
        for version, count in sorted(self._sources.versions().items()):
            gauge.add_metric([version], count)
        return gauge

    def _commands(self) -> Metric:
        counter = CounterMetricFamily(
            f"{PREFIX}_commands", "Actuator commands ended, by the charger's answer or Failed", labels=["result"]
        )
        for result, count in sorted(self._sources.commands.counts.items()):
            counter.add_metric([result], count)
        return counter


def versions_connected(sessions: Mapping[str, Any]) -> dict[str, int]:
    """Connected charge points by OCPP version, 1.6 always present (a series that vanishes alerts nobody)."""
    counts = {OCPP_VERSION: 0}
    for session in sessions.values():
        counts[session.ocpp_version] = counts.get(session.ocpp_version, 0) + 1
    return counts


def registry_for(sources: Sources, instance: str | None = None) -> CollectorRegistry:
    """A registry of this connector's metrics and its process' (CPU, memory, open files).

    `instance`: several instances run (STATE_URL); every sample carries the label
    `connector_instance`, so one Prometheus can tell them apart behind one job.
    """
    registry = CollectorRegistry()
    collectors: list[Collector] = [ConnectorCollector(sources), ProcessCollector(namespace=PREFIX, registry=None)]
    for collector in collectors:
        registry.register(collector if instance is None else Labelled(collector, {"connector_instance": instance}))
    return registry


class Labelled(Collector):
    """Another collector's metrics with constant labels added to every sample."""

    def __init__(self, inner: Collector, labels: dict[str, str]) -> None:
        self._inner = inner
        self._labels = labels

    def collect(self) -> Iterator[Metric]:
        for metric in self._inner.collect():
            metric.samples = [sample._replace(labels={**sample.labels, **self._labels}) for sample in metric.samples]
            yield metric
