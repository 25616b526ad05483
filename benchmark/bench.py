"""Benchmark: the connector against a bare floor, at fleet scale, on this machine.

    .venv/bin/python benchmark/bench.py --json bench.json     # the issue's targets: 10,000 chargers
    .venv/bin/python benchmark/bench.py --chargers 1000 --connect-rate 500 --duration 30   # smaller
    .venv/bin/python benchmark/bench.py --ocpp 2.0.1 --json bench-201.json   # the same in OCPP 2.0.1
    # Performance II shapes: docs/benchmark.md, "Performance II shapes", has every command
    .venv/bin/python benchmark/bench.py --chargers 2000 --connect-rate 500 --duration 30 \
        --commands 0 --rounds 0 --repeat 3 --mapped 1 [--raw]   # CPU per message, median of 3 runs

The defaults are the targets (10,000 chargers connecting at 1,000/s, a MeterValues.req
every 10 s each for 60 s, 300 commands); a full run takes about four minutes. Linux only
(/proc). Two servers run in turn, each with a fresh private mosquitto
(`max_queued_messages 0`: the broker drops nothing on the way to a slow subscriber):

- FLOOR (`benchmark/floor.py`): receives a frame, parses the JSON, publishes the 8 values
  with paho (QoS 1, retained) and answers; no validation, no mapping, no pings;
- CONNECTOR (`python -m connector`, default settings) with a datapoint_map that maps the
  8 MeterValues keys of every charger to `bench/v/<key>`, and one actuator per charger
  (`bench/a/<cp>__execute_trigger_message`).

Both are subprocesses: their CPU time (utime + stime) and memory (VmRSS) come from /proc
and exclude the load generator. The generator (`benchmark/loadgen.py`) runs `--workers`
processes of chargers speaking raw OCPP-J frames over real WebSockets; a paho subscriber
in this process receives every value message (QoS 0 by default; the counts prove it
loses none). Phases, per server:

1. connect: `--chargers` chargers connect at `--connect-rate` per second and send
   BootNotification (and answer the connector's GetConfiguration); all must boot. Then,
   once the server is quiet: its idle CPU, and idle memory per charge point =
   (RSS after connect - RSS before) / chargers.
2. commands (connector only; the floor has no actuators): all chargers idle, `--commands`
   actuator values to random chargers, `--command-rate` per second: latency from the
   MQTT publish to the TriggerMessage CALL arriving on the charger's socket, and from the
   charger sending its CALLRESULT to `<cp>__execute_trigger_message__status` arriving on
   MQTT (mapped to `bench/s/<cp>`; also shown from the MQTT publish: the whole loop).
3. steady: every charger sends a MeterValues.req (8 sampled values: energy, power, voltage
   and current of three phases) every `--period` s for `--duration` s, phases spread
   evenly over the period. The meter value's timestamp is the send time in ms, which both
   servers copy into each value message, so the subscriber's latency is MQTT arrival -
   OCPP send, per value (with up to 1 ms of timestamp truncation, alike for both); it is
   also shown for the values sent after the first period (each charger's first message
   brings new keys into the connector's registry), and as p99 per period (a backlog that
   builds up shows as a rising series). Every answer and every
   value is counted: lost answers = sent - answered (CALLRESULT), lost values = mapped x
   sent - distinct values received.
4. burst: every charger sends `--rounds` MeterValues.req one at a time (the next once
   answered), all chargers at once: the server's capacity in messages/s, counted until
   the last answer and the last value arrived (the connector answers before its queued
   values are out).
5. closed loop (`--closed-loop C`): chargers 0..C-1 each send the next MeterValues as
   soon as the last is answered, for `--duration` s: messages answered per s, values
   published per s (those arrived within the window) and their quotient over `--mapped`
   (below 1, the server answers faster than it publishes and a backlog grows), the age of
   the values (p50/p99, against the floor's), and the server's RSS sampled every 0.25 s
   (start / peak / end: whether what it holds stays bounded).
6. stop under load (`--stop-under-load`): a steady load of every charger starts again and
   half a period in the server gets SIGTERM: seconds to exit, instead of the SIGTERM after
   the load that the run ends with otherwise.

Performance II shapes (the performance work "Performance II"), options that combine with the above:

- `--mapped N` (1, 3 or 8): the connector's map names only the first N of the 8 values
  of each charger (energy; + power, voltage L1; all), the floor publishes only those
  (`floor.py --mapped`), and the values expected are N x sent.
- `--raw`: the connector runs with SEND_RAW_MESSAGE_TO_DB=TRUE, the floor publishes every
  frame in and out to `bench/raw_message_to_db` at QoS 2 in the connector's shape; the
  subscriber counts them per phase (2 x sent expected: each load message and its answer)
  and their latency (arrival - the raw message's timestamp).
- `--repeat K`: K runs, floor and connector alternating (a fresh broker and server each),
  the table shows the run whose steady CPU ratio is the median and the verdict judges the
  median ratio; "nothing lost" must hold in every run. `--commands 0 --rounds 0` keep a
  run short. Beside each run's ratio it prints a speed-adjusted one (each half's CPU per
  message over its load generator's CPU share, which is the same work in both halves: the
  machine's speed then) and their median, as a diagnostic of a drifting shared host only.
- `--broker-nodelay`: the private broker runs with `set_tcp_nodelay true`, as
  docs/deployment.md recommends and the shipped broker configurations do (small packets,
  such as the steps of a QoS 2 command, are not held back for the delayed ACK of the one
  before). Off by default: the figures above it in docs/benchmark.md were measured with
  mosquitto's defaults.
- `--aligned`: the steady sends are clock-aligned, every charger at the same instant each
  period instead of spread over it (e.g. 500 chargers, `--period 5`): latency under bursts.
- `--hog`: during the steady phase one busy loop per core at normal priority (a busy
  machine); its CPU is shown apart, not as "the rest".
- `--load-commands N`: N commands to the connector during the steady phase (from 1 s
  into it, `--command-rate` per s), with the same two latencies as the command phase: with
  `--raw --hog`, whether values and statuses wait behind raw messages.
- `--no-steady`: skip the steady phase (a closed-loop run).

The verdicts are the Performance II targets: CPU per message <= 1.5 x the floor's (median of the
runs), value p99 <= 1.5 x the floor's (steady, and the closed loop's value age), closed
loop values >= 0.98 x answered x mapped, command CALL p99 < 25 ms and status p99 < 50 ms
after the charger's answer (idle, and beside the load), <= 30 KB per charger, SIGTERM to
exit <= 5 s, nothing lost.

"CPU per message" (and its ratio) is the steady phase's: server CPU time over the phase /
messages. That is the load the targets describe, the servers run unsaturated as in
production, and the figure holds everything a message costs (WebSocket frame, parse,
validation, mapping, MQTT publish and acknowledgement, and the idle background, printed
on its own). The per-message cost depends on the rate (at 50 messages/s each costs
two to three times what it does at 1,000/s: each wake-up of the loop and of paho's
thread serves fewer messages), so the floor is measured at the same rate in the same run. The
burst figure is printed too but not judged: saturated servers batch more per wake-up,
paho's queue and the connector's outbox fill up, and both compete with the generator and
subscriber for the 2 cores, which flatters or penalises the two unevenly.

The table also shows, per phase, the CPU of the busiest generator worker (% of one core;
near 100 % means the generator sets the pace), of the subscriber, of the broker, and of
the rest of the machine (other users, kernel network work): above 30 % of a core the
phase is flagged as disturbed. Last: the server's WARNING/ERROR lines, grouped, and its
shutdown time on SIGTERM with every charger still connected.

`--ocpp 2.0.1`: the chargers speak OCPP 2.0.1 (BootNotification, the connector's
GetVariables read of the rate unit, one transaction Started after boot), and their load
message is MeterValues or TransactionEvent `Updated` in turn (charger i's k-th message:
shape (i + k) mod 2, so each period carries both), each with the same 8 values, which
make the same datapoint keys as 1.6's, under the same map. `--shape MeterValues` or
`--shape TransactionEvent` sends one of them only, for each shape's own CPU per message.
The floor serves 2.0.1 too; the verdicts are the same.

Modules: this one (options, phases, command line), `loadgen.py` (the chargers, in worker
processes), `peers.py` (server process, value subscriber, worker pool), `measure.py`
(/proc readings, percentiles), `report.py` (table, JSON, verdicts), `floor.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "source"))
from loadgen import (
    OCPP_VERSIONS,
    SAMPLES,
    SHAPES,
    BurstOrder,
    ClosedLoopOrder,
    CollectArrivals,
    CommandTimes,
    ConnectOrder,
    ConnectResult,
    LoadResult,
    Order,
    Reply,
    SteadyOrder,
    raise_fd_limit,
)
from measure import (
    CpuUse,
    Pids,
    cpu_hogs,
    cpu_seconds,
    cpu_use,
    listen_drops,
    percentiles,
    rss_kb,
    rss_series,
    wait_quiet,
)
from peers import ACTUATOR, NAME, Arrivals, Generator, Server, ValueSink, start_connector, start_floor
from report import Report

from connector.tests.harness import Mosquitto

VALUE_WAIT_S = 120.0  # values still missing this long after the last answer count as lost (not late)
COMMAND_WAIT_S = 10.0  # commands, and their statuses, still missing this long after the last count as lost
RAW_PER_MESSAGE = 2  # with raw messages on: the frame in and its answer out
STEADY_LEAD_S = 2.0  # the steady phase's first send, this long after the orders went out
MAPPED_CHOICES = (1, 3, 8)  # of the 8 sampled values, the first 1, 3 or all 8 are mapped


def slowest(published: dict[str, float], arrivals: dict[str, float], count: int = 10) -> list[list[float]]:
    """The `count` slowest commands as [s after the first was published, latency ms]: whether
    the tail is spread out or comes in clusters (something else holding the broker or loop)."""
    if not published:
        return []
    first = min(published.values())
    pairs = [(arrivals[cp] - sent, sent - first) for cp, sent in published.items() if cp in arrivals]
    return [[round(at, 2), round(latency * 1000, 1)] for latency, at in sorted(pairs, reverse=True)[:count]]


@dataclass(frozen=True)
class Options:
    chargers: int
    connect_rate: float
    period: float
    duration: float
    commands: int
    command_rate: float
    rounds: int
    workers: int
    open_timeout: float
    subscriber_qos: int
    floor_max_inflight: int
    targets: tuple[str, ...]
    json_path: Path | None
    ocpp: str = "1.6"
    shapes: tuple[str, ...] = ("MeterValues",)  # the load messages' shapes, taken in turn
    mapped: int = len(SAMPLES)  # values mapped (and published by the floor) per message
    raw: bool = False  # SEND_RAW_MESSAGE_TO_DB, and the floor publishing raw frames too
    repeat: int = 1  # alternating floor/connector runs; the median CPU ratio is judged
    aligned: bool = False  # steady sends all at the same instant each period
    hog: bool = False  # a CPU hog per core during the steady phase
    load_commands: int = 0  # commands sent to the connector during the steady phase
    closed_loop: int = 0  # chargers in the closed-loop phase; 0: no such phase
    steady: bool = True  # False: no steady phase (a closed-loop run)
    stop_under_load: bool = False  # SIGTERM while the steady load runs, not after it
    broker_nodelay: bool = False  # the broker with set_tcp_nodelay true, as docs/deployment.md recommends

    def describe(self) -> str:
        """The run's shape in a few words: the table's title."""
        words = [f"OCPP {self.ocpp}: {' / '.join(self.shapes)}", f"{self.mapped} of {len(SAMPLES)} mapped"]
        flags = {"raw": self.raw, "aligned": self.aligned, "hog": self.hog, "stop under load": self.stop_under_load}
        words += [name for name, on in flags.items() if on]
        if self.repeat > 1:
            words.append(f"{self.repeat} runs")
        return ", ".join(words)


# -- the phases ------------------------------------------------------------------------


@dataclass
class Bench:
    options: Options
    server: Server
    broker: Mosquitto
    generator: Generator
    sink: ValueSink
    control: mqtt.Client
    booted: list[str]
    hogs: list[int] = field(default_factory=list)  # pids of the CPU hogs while they run

    def cpu_use(self) -> AbstractContextManager[CpuUse]:
        assert self.broker.process is not None
        return cpu_use(Pids([self.server.process.pid], self.broker.process.pid, self.generator.pids, self.hogs))

    def raw_expected(self, messages: int) -> int:
        return RAW_PER_MESSAGE * messages if self.options.raw else 0

    def connect(self, identities: list[str]) -> dict[str, Any]:
        pid, workers = self.server.process.pid, len(self.generator)
        rss_before = rss_kb(pid)
        drops = listen_drops()
        start = time.time() + 1.0
        self.generator.send(connect_orders(self.options, identities, workers, start, self.server.url))
        time.sleep(max(0.0, start - time.time()))
        with self.cpu_use() as use:
            result = merged_connect(self.generator.replies())
        self.booted = sorted(result.booted)
        connect_s = max(result.last_booted - start, 1e-9)
        settle_s = wait_quiet(pid)
        idle_cpu = cpu_seconds(pid)
        time.sleep(3.0)
        idle_percent = (cpu_seconds(pid) - idle_cpu) / 3.0 * 100
        rss_connected = rss_kb(pid)
        return {
            **connect_figures(identities, result, connect_s, drops),
            **use.figures(),
            "settle_s": round(settle_s, 1),
            "idle_cpu_percent": round(idle_percent, 1),
            "rss_kb_before": rss_before,
            "rss_kb_connected": rss_connected,
            "rss_kb_per_charger": round((rss_connected - rss_before) / max(len(result.booted), 1), 2),
        }

    def commands(self) -> dict[str, Any]:
        """Actuator values to idle chargers: CALL latency, and the status's after the charger's answer."""
        chosen = random.Random(1).sample(self.booted, min(self.options.commands, len(self.booted)))
        self.sink.reset()
        with self.cpu_use() as use:
            published = self.publish_commands(chosen, time.time())
            figures = self.command_figures(published)
        return {**figures, **use.figures()}

    def publish_commands(self, chosen: list[str], start: float) -> dict[str, float]:
        """A TriggerMessage value to each of `chosen`, `--command-rate` per second from `start`: when each went."""
        published: dict[str, float] = {}
        for i, cp in enumerate(chosen):
            time.sleep(max(0.0, start + i / self.options.command_rate - time.time()))
            message = json.dumps({"value": "Heartbeat", "timestamp": int(time.time() * 1000)})
            published[cp] = time.time()
            self.control.publish(f"{NAME}/a/{cp}__{ACTUATOR}", message, qos=2)
        return published

    def command_times(self, chosen: dict[str, float]) -> CommandTimes:
        """When each charger got its TriggerMessage and answered it (first of each), until all answered."""
        times = CommandTimes()
        deadline = time.time() + COMMAND_WAIT_S
        while True:
            for reply in self.generator.run(CollectArrivals()):
                assert isinstance(reply.result, CommandTimes)
                times.arrivals += reply.result.arrivals
                times.answered += reply.result.answered
            if len({cp for cp, _ in times.answered}) >= len(chosen) or time.time() >= deadline:
                return times
            time.sleep(0.5)

    def command_figures(self, published: dict[str, float]) -> dict[str, Any]:
        """The commands' latencies: publish -> CALL on the socket; charger's answer -> status on MQTT."""
        times = self.command_times(published)
        arrivals, answered = first_of_each(times.arrivals), first_of_each(times.answered)
        statuses = self.sink.wait_statuses(published, COMMAND_WAIT_S)
        latencies = [arrivals[cp] - sent for cp, sent in published.items() if cp in arrivals]
        status_latencies = [statuses[cp] - answered[cp] for cp in published if cp in statuses and cp in answered]
        return {
            "sent": len(published),
            "arrived": len(latencies),
            "lost": len(published) - len(latencies),
            "latency_ms": percentiles(latencies),
            "statuses": len(status_latencies),
            "lost_statuses": len(published) - len(status_latencies),
            "status_latency_ms": percentiles(status_latencies),
            "status_after_publish_ms": percentiles(
                [statuses[cp] - sent for cp, sent in published.items() if cp in statuses]
            ),
            "slowest": slowest(published, arrivals),
        }

    def steady(self) -> dict[str, Any]:
        options = self.options
        count = max(1, round(options.duration / options.period))
        start = time.time() + STEADY_LEAD_S
        self.sink.reset()
        order = SteadyOrder(start, options.period, count, len(self.booted), options.aligned)
        with ExitStack() as during:
            self.hogs = during.enter_context(cpu_hogs((os.cpu_count() or 1) if options.hog else 0))
            during.callback(self.hogs.clear)
            self.generator.send([order] * len(self.generator))
            beside = self.commands_beside(start + 1.0)
            time.sleep(max(0.0, start - time.time()))
            with self.cpu_use() as use:
                result = merged(self.generator.replies())
                arrivals = self.sink.wait(
                    result.sent * options.mapped, VALUE_WAIT_S, "s", self.raw_expected(result.sent)
                )
            commands = beside()
        figures = load_figures(
            result, arrivals, use, mapped=options.mapped, raw_expected=self.raw_expected(result.sent), phase="s"
        )
        # Each charger's first message brings its 8 keys into the connector's registry:
        # latencies per period show that apart from a backlog that builds up.
        periods = arrivals.by_period(start, options.period, count)
        figures["value_latency_after_first_period_ms"] = percentiles([x for p in periods[1:] for x in p])
        figures["value_latency_p99_per_period_ms"] = [percentiles(p).get("p99") for p in periods]
        if commands is not None:
            figures["commands"] = commands
        return figures

    def commands_beside(self, start: float) -> Callable[[], dict[str, Any] | None]:
        """`--load-commands` to the connector from `start` on, in a thread beside the load; the
        returned function awaits them (call it once the load is done) and gives their figures."""
        if not self.options.load_commands or self.server.name != "connector":
            return lambda: None
        chosen = random.Random(2).sample(self.booted, min(self.options.load_commands, len(self.booted)))
        published: dict[str, float] = {}
        sender = threading.Thread(target=lambda: published.update(self.publish_commands(chosen, start)))
        sender.start()

        def figures() -> dict[str, Any]:
            sender.join()
            return self.command_figures(published)

        return figures

    def burst(self) -> dict[str, Any]:
        self.sink.reset()
        with self.cpu_use() as use:
            result = merged(self.generator.run(BurstOrder(self.options.rounds)))
            raw = self.raw_expected(result.sent)
            arrivals = self.sink.wait(result.sent * self.options.mapped, VALUE_WAIT_S, "b", raw)
        return load_figures(result, arrivals, use, mapped=self.options.mapped, raw_expected=raw, phase="b")

    def closed_loop(self) -> dict[str, Any]:
        """`--closed-loop` chargers each send the next message once the last is answered, for `--duration` s."""
        chargers = min(self.options.closed_loop, len(self.booted))
        mapped = self.options.mapped
        self.sink.reset()
        until = time.time() + self.options.duration
        with rss_series(self.server.process.pid) as rss, self.cpu_use() as use:
            result = merged(self.generator.run(ClosedLoopOrder(chargers, until)))
            raw = self.raw_expected(result.sent)
            arrivals = self.sink.wait(result.sent * mapped, VALUE_WAIT_S, "c", raw)
        window = max(until - result.first_send, 1e-9)
        answered_per_s = result.answered / window
        values_per_s = arrivals.arrived_by(until) / window
        return {
            "chargers": chargers,
            **load_figures(result, arrivals, use, mapped=mapped, raw_expected=raw, phase="c"),
            "answered_per_s": round(answered_per_s, 1),
            "values_per_s": round(values_per_s, 1),
            # 1.0: every answered message's values were out within the window; below, a backlog grew
            "values_per_answered_value": round(values_per_s / max(answered_per_s * mapped, 1e-9), 3),
            **rss.figures(),
            "rss_kb_series": rss.samples_kb,
        }

    def stop_under_load(self) -> dict[str, Any]:
        """SIGTERM half a period into a steady load of every charger: seconds to exit."""
        options = self.options
        start = time.time() + 1.0
        count = max(2, round(options.duration / options.period))
        order = SteadyOrder(start, options.period, count, len(self.booted), options.aligned)
        self.generator.send([order] * len(self.generator))
        time.sleep(max(0.0, start + options.period / 2 - time.time()))
        stopped = self.server.stop()
        result = merged(self.generator.replies())  # each charger's next send finds its connection closed
        return {**stopped, "under_load": True, "messages_sent_before": result.sent}


def connect_orders(
    options: Options, identities: list[str], workers: int, start: float, url: str, *, urls: dict[str, str] | None = None
) -> list[Order]:
    """One ConnectOrder per worker: charger i in worker i % workers, to `url` (or its own in `urls`)."""
    shares = [[(i, cp) for i, cp in enumerate(identities) if i % workers == w] for w in range(workers)]
    rate, timeout, ocpp, shapes = options.connect_rate, options.open_timeout, options.ocpp, options.shapes
    return [ConnectOrder(url, share, start, rate, timeout, ocpp, shapes, urls or {}) for share in shares]


def merged_connect(replies: list[Reply]) -> ConnectResult:
    """The workers' results of a connect phase as one."""
    result = ConnectResult()
    for reply in replies:
        assert isinstance(reply.result, ConnectResult)
        result.booted += reply.result.booted
        result.failures += reply.result.failures
        result.boot_latencies += reply.result.boot_latencies
        result.last_booted = max(result.last_booted, reply.result.last_booted)
    return result


def merged(replies: list[Reply]) -> LoadResult:
    """The workers' results of a load phase as one."""
    result = LoadResult(first_send=float("inf"))
    for reply in replies:
        assert isinstance(reply.result, LoadResult)
        part = reply.result
        result.first_send = min(result.first_send, part.first_send)
        result.sent += part.sent
        result.answered += part.answered
        result.answer_latencies += part.answer_latencies
        result.send_lags += part.send_lags
        result.errors += part.errors
        result.closed_chargers += part.closed_chargers
        result.last_answer = max(result.last_answer, part.last_answer)
    return result


def connect_figures(
    identities: list[str], result: ConnectResult, connect_s: float, drops_before: int
) -> dict[str, Any]:
    """What a connect phase shows whatever served it (one server here, several in instances.py)."""
    return {
        "chargers": len(identities),
        "booted": len(result.booted),
        "failures": dict(result.failures.most_common(8)),
        "connect_s": round(connect_s, 2),
        "connect_rate_per_s": round(len(result.booted) / connect_s, 1),
        "boot_latency_ms": percentiles(result.boot_latencies),
        "listen_queue_drops": listen_drops() - drops_before,
    }


def first_of_each(times: list[tuple[str, float]]) -> dict[str, float]:
    """cp -> the first time recorded for it."""
    first: dict[str, float] = {}
    for cp, when in times:
        first.setdefault(cp, when)
    return first


def load_figures(
    result: LoadResult, arrivals: Arrivals, use: CpuUse, *, mapped: int, raw_expected: int, phase: str
) -> dict[str, Any]:
    """The figures of a load phase; `phase`: the prefix of its messages' unique ids (raw messages' phase)."""
    received = len(arrivals.latencies)
    delivered = max(result.last_answer, arrivals.last)
    expected = result.sent * mapped
    raw = {}
    if raw_expected:
        raw_received = arrivals.raw_per_phase[phase]
        raw = {
            "raw_expected": raw_expected,
            "raw_received": raw_received,
            "lost_raw": raw_expected - raw_received,
            "raw_latency_ms": percentiles(arrivals.raw_latencies),
        }
    return {
        "messages_sent": result.sent,
        "messages_answered": result.answered,
        "lost_answers": result.sent - result.answered,
        "values_expected": expected,
        "values_received": received,
        "lost_values": expected - received,
        "duplicate_values": arrivals.duplicates,
        "errors": dict(result.errors.most_common(8)),
        "closed_chargers": result.closed_chargers,
        # Through the whole path: until the last answer and the last value arrived.
        "messages_per_s": round(result.answered / max(delivered - result.first_send, 1e-9), 1),
        "cpu_us_per_message": round(use.server / max(result.sent, 1) * 1e6, 1),
        "value_latency_ms": percentiles(arrivals.latencies),
        "answer_latency_ms": percentiles(result.answer_latencies),
        "send_lag_ms": percentiles(result.send_lags),
        **raw,
        **use.figures(),
    }


def run_target(target: str, options: Options) -> dict[str, Any]:
    identities = [f"CP{i:05d}" for i in range(options.chargers)]
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as cleanup:  # cleans up in reverse
        nodelay = "set_tcp_nodelay true\n" if options.broker_nodelay else ""
        broker = Mosquitto(Path(tmp), extra_config="max_queued_messages 0\n" + nodelay)
        broker.start()
        cleanup.callback(broker.stop)
        control = mqtt.Client(CallbackAPIVersion.VERSION2)
        control.connect("127.0.0.1", broker.port)
        control.loop_start()
        cleanup.callback(control.loop_stop)
        sink = ValueSink(broker.port, options.subscriber_qos, options.raw)
        cleanup.callback(sink.close)
        generator = Generator(options.workers)
        cleanup.callback(generator.stop)
        if target == "connector":
            server = start_connector(tmp, broker, control, identities, mapped=options.mapped, raw=options.raw)
        else:
            server = start_floor(broker, options.floor_max_inflight, mapped=options.mapped, raw=options.raw)
        cleanup.callback(server.stop)  # on failure; otherwise it is stopped below already
        figures = run_phases(target, Bench(options, server, broker, generator, sink, control, []), identities)
        if "stop" not in figures:  # before the generator's: the connector must close every charger itself
            figures["stop"] = {**server.stop(), "under_load": False}
        figures["server_problems"] = server.watch.problems()
        return figures


def run_phases(target: str, bench: Bench, identities: list[str]) -> dict[str, Any]:
    options = bench.options
    figures: dict[str, Any] = {}
    progress(target, f"connecting {options.chargers} OCPP {options.ocpp} chargers at {options.connect_rate:g}/s")
    figures["connect"] = bench.connect(identities)
    if target == "connector" and options.commands:
        progress(target, f"{options.commands} commands at {options.command_rate:g}/s")
        figures["commands"] = bench.commands()
    load = " / ".join(options.shapes)
    how = ", all at once" if options.aligned else ""
    how += ", CPU hogs running" if options.hog else ""
    if options.steady:
        progress(target, f"steady load: {load} every {options.period:g} s{how} for {options.duration:g} s")
        figures["steady"] = bench.steady()
    if options.rounds:
        progress(target, f"burst: {options.rounds} per charger, one at a time")
        figures["burst"] = bench.burst()
    if options.closed_loop:
        progress(target, f"closed loop: {options.closed_loop} chargers at full speed for {options.duration:g} s")
        figures["closed_loop"] = bench.closed_loop()
    if options.stop_under_load:
        progress(target, "SIGTERM under steady load")
        figures["stop"] = bench.stop_under_load()
    return figures


def progress(target: str, what: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {target}: {what}", file=sys.stderr, flush=True)


def parse_options(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add: Callable[..., Any] = parser.add_argument
    add("--chargers", type=int, default=10_000, help="charge points (default 10000)")
    add("--connect-rate", type=float, default=1000, help="connections started per second (default 1000)")
    add("--period", type=float, default=10, help="s between a charger's MeterValues in the steady phase (default 10)")
    add("--duration", type=float, default=60, help="s of steady load (default 60)")
    add("--commands", type=int, default=300, help="actuator values for the command latency; 0: skip (default 300)")
    add("--command-rate", type=float, default=20, help="actuator values per second (default 20)")
    add("--rounds", type=int, default=2, help="MeterValues per charger in the burst; 0: skip (default 2)")
    add("--workers", type=int, default=2, help="load generator processes (default 2)")
    add("--open-timeout", type=float, default=120, help="s a charger may take to connect and boot (default 120)")
    add("--subscriber-qos", type=int, choices=(0, 1), default=0, help="QoS of the value subscription (default 0)")
    add("--floor-max-inflight", type=int, default=0, help="the floor's paho max_inflight_messages (default 0: none)")
    add("--targets", default="floor,connector", help="comma-separated: floor, connector (default both)")
    add("--json", type=Path, default=None, help="also write the figures, ratios and verdicts to this file")
    add("--ocpp", choices=OCPP_VERSIONS, default="1.6", help="the chargers' OCPP version (default 1.6)")
    add(
        "--shape",
        choices=SHAPES["2.0.1"],
        default=None,
        help="2.0.1 load messages: MeterValues or TransactionEvent (default: both in turn)",
    )
    add(
        "--mapped", type=int, choices=MAPPED_CHOICES, default=8, help="of the 8 values, how many are mapped (default 8)"
    )
    add("--raw", action="store_true", help="raw messages on: SEND_RAW_MESSAGE_TO_DB, and the floor publishes them too")
    add("--repeat", type=int, default=1, help="alternating floor/connector runs; the median CPU ratio is judged")
    add("--aligned", action="store_true", help="steady: every charger sends at the same instant each period")
    add("--hog", action="store_true", help="steady: a CPU hog (busy loop, normal priority) per core runs beside it")
    add("--load-commands", type=int, default=0, help="steady: commands to the connector during the load (default 0)")
    add("--closed-loop", type=int, default=0, help="chargers of a closed-loop phase of --duration s (default 0: none)")
    add("--stop-under-load", action="store_true", help="SIGTERM the server while a steady load runs, not after it")
    add("--no-steady", dest="steady", action="store_false", help="skip the steady phase (e.g. a closed-loop run)")
    add("--broker-nodelay", action="store_true", help="the broker with set_tcp_nodelay true (docs/deployment.md)")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat takes 1 or more")
    targets = tuple(t.strip() for t in args.targets.split(",") if t.strip())
    if not targets or set(targets) - {"floor", "connector"}:
        parser.error("--targets takes floor, connector or both")
    shapes = SHAPES[args.ocpp] if args.shape is None else (args.shape,)
    if not set(shapes) <= set(SHAPES[args.ocpp]):
        parser.error(f"--shape on OCPP {args.ocpp} takes {' or '.join(SHAPES[args.ocpp])}")
    return Options(
        chargers=args.chargers,
        connect_rate=args.connect_rate,
        period=args.period,
        duration=args.duration,
        commands=args.commands,
        command_rate=args.command_rate,
        rounds=args.rounds,
        workers=args.workers,
        open_timeout=args.open_timeout,
        subscriber_qos=args.subscriber_qos,
        floor_max_inflight=args.floor_max_inflight,
        targets=targets,
        json_path=args.json,
        ocpp=args.ocpp,
        shapes=shapes,
        mapped=args.mapped,
        raw=args.raw,
        repeat=args.repeat,
        aligned=args.aligned,
        hog=args.hog,
        load_commands=args.load_commands,
        closed_loop=args.closed_loop,
        stop_under_load=args.stop_under_load,
        steady=args.steady,
        broker_nodelay=args.broker_nodelay,
    )


def main() -> None:
    options = parse_options()
    raise_fd_limit()
    # Floor, connector, floor, connector, ...: a drift of the machine touches both alike.
    runs = [{target: run_target(target, options) for target in options.targets} for _ in range(options.repeat)]
    report = Report(runs, options.describe())
    print(report.table())
    if options.json_path is not None:
        config = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()}
        document = {"options": config, **report.document()}
        options.json_path.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
