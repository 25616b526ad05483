"""Benchmark: the connector against a bare floor, at fleet scale, on this machine.

    .venv/bin/python benchmark/bench.py --json bench.json     # the issue's targets: 10,000 chargers
    .venv/bin/python benchmark/bench.py --chargers 1000 --connect-rate 500 --duration 30   # smaller
    .venv/bin/python benchmark/bench.py --ocpp 2.0.1 --json bench-201.json   # the same in OCPP 2.0.1

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
   MQTT publish to the TriggerMessage CALL arriving on the charger's socket.
3. steady: every charger sends a MeterValues.req (8 sampled values: energy, power, voltage
   and current of three phases) every `--period` s for `--duration` s, phases spread
   evenly over the period. The meter value's timestamp is the send time in ms, which both
   servers copy into each value message, so the subscriber's latency is MQTT arrival -
   OCPP send, per value (with up to 1 ms of timestamp truncation, alike for both); it is
   also shown for the values sent after the first period (each charger's first message
   brings new keys into the connector's registry), and as p99 per period (a backlog that
   builds up shows as a rising series). Every answer and every
   value is counted: lost answers = sent - answered (CALLRESULT), lost values = 8 x sent -
   distinct values received.
4. burst: every charger sends `--rounds` MeterValues.req one at a time (the next once
   answered), all chargers at once: the server's capacity in messages/s, counted until
   the last answer and the last value arrived (the connector answers before its queued
   values are out).

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
import random
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "source"))
from loadgen import (
    OCPP_VERSIONS,
    SHAPES,
    BurstOrder,
    CollectArrivals,
    ConnectOrder,
    ConnectResult,
    LoadResult,
    Order,
    Reply,
    SteadyOrder,
    raise_fd_limit,
)
from measure import CpuUse, Pids, cpu_seconds, cpu_use, listen_drops, percentiles, rss_kb, wait_quiet
from peers import ACTUATOR, NAME, Arrivals, Generator, Server, ValueSink, start_connector, start_floor
from report import Report

from connector.tests.harness import Mosquitto

VALUES_PER_MESSAGE = 8
VALUE_WAIT_S = 120.0  # values still missing this long after the last answer count as lost (not late)


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

    def cpu_use(self) -> AbstractContextManager[CpuUse]:
        assert self.broker.process is not None
        return cpu_use(Pids(self.server.process.pid, self.broker.process.pid, self.generator.pids))

    def connect(self, identities: list[str]) -> dict[str, Any]:
        pid, workers = self.server.process.pid, len(self.generator)
        rss_before = rss_kb(pid)
        drops = listen_drops()
        start = time.time() + 1.0
        shares = [[(i, cp) for i, cp in enumerate(identities) if i % workers == w] for w in range(workers)]
        rate, timeout = self.options.connect_rate, self.options.open_timeout
        ocpp, shapes = self.options.ocpp, self.options.shapes
        orders: list[Order] = [
            ConnectOrder(self.server.url, share, start, rate, timeout, ocpp, shapes) for share in shares
        ]
        self.generator.send(orders)
        time.sleep(max(0.0, start - time.time()))
        with self.cpu_use() as use:
            replies = self.generator.replies()
        result = ConnectResult()
        for reply in replies:
            assert isinstance(reply.result, ConnectResult)
            result.booted += reply.result.booted
            result.failures += reply.result.failures
            result.boot_latencies += reply.result.boot_latencies
            result.last_booted = max(result.last_booted, reply.result.last_booted)
        self.booted = sorted(result.booted)
        connect_s = max(result.last_booted - start, 1e-9)
        settle_s = wait_quiet(pid)
        idle_cpu = cpu_seconds(pid)
        time.sleep(3.0)
        idle_percent = (cpu_seconds(pid) - idle_cpu) / 3.0 * 100
        rss_connected = rss_kb(pid)
        return {
            "chargers": len(identities),
            "booted": len(result.booted),
            "failures": dict(result.failures.most_common(8)),
            "connect_s": round(connect_s, 2),
            "connect_rate_per_s": round(len(result.booted) / connect_s, 1),
            "boot_latency_ms": percentiles(result.boot_latencies),
            "listen_queue_drops": listen_drops() - drops,
            **use.figures(),
            "settle_s": round(settle_s, 1),
            "idle_cpu_percent": round(idle_percent, 1),
            "rss_kb_before": rss_before,
            "rss_kb_connected": rss_connected,
            "rss_kb_per_charger": round((rss_connected - rss_before) / max(len(result.booted), 1), 2),
        }

    def commands(self) -> dict[str, Any]:
        chosen = random.Random(1).sample(self.booted, min(self.options.commands, len(self.booted)))
        published: dict[str, float] = {}
        with self.cpu_use() as use:
            start = time.time()
            for i, cp in enumerate(chosen):
                time.sleep(max(0.0, start + i / self.options.command_rate - time.time()))
                message = json.dumps({"value": "Heartbeat", "timestamp": int(time.time() * 1000)})
                published[cp] = time.time()
                self.control.publish(f"{NAME}/a/{cp}__{ACTUATOR}", message, qos=2)
            arrivals: dict[str, float] = {}
            deadline = time.time() + 10
            while len(arrivals) < len(chosen) and time.time() < deadline:
                time.sleep(0.5)
                for reply in self.generator.run(CollectArrivals()):
                    assert isinstance(reply.result, list)
                    for cp, arrived in reply.result:
                        arrivals.setdefault(cp, arrived)
        latencies = [arrivals[cp] - sent for cp, sent in published.items() if cp in arrivals]
        return {
            "sent": len(published),
            "arrived": len(latencies),
            "lost": len(published) - len(latencies),
            "latency_ms": percentiles(latencies),
            **use.figures(),
        }

    def steady(self) -> dict[str, Any]:
        count = max(1, round(self.options.duration / self.options.period))
        start = time.time() + 2.0
        self.sink.reset()
        self.generator.send([SteadyOrder(start, self.options.period, count, len(self.booted))] * len(self.generator))
        time.sleep(max(0.0, start - time.time()))
        with self.cpu_use() as use:
            result = merged(self.generator.replies())
            arrivals = self.sink.wait(result.sent * VALUES_PER_MESSAGE, VALUE_WAIT_S)
        figures = load_figures(result, arrivals, use)
        # Each charger's first message brings its 8 keys into the connector's registry:
        # latencies per period show that apart from a backlog that builds up.
        periods = arrivals.by_period(start, self.options.period, count)
        figures["value_latency_after_first_period_ms"] = percentiles([x for p in periods[1:] for x in p])
        figures["value_latency_p99_per_period_ms"] = [percentiles(p).get("p99") for p in periods]
        return figures

    def burst(self) -> dict[str, Any]:
        self.sink.reset()
        with self.cpu_use() as use:
            result = merged(self.generator.run(BurstOrder(self.options.rounds)))
            arrivals = self.sink.wait(result.sent * VALUES_PER_MESSAGE, VALUE_WAIT_S)
        return load_figures(result, arrivals, use)


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


def load_figures(result: LoadResult, arrivals: Arrivals, use: CpuUse) -> dict[str, Any]:
    received = len(arrivals.latencies)
    delivered = max(result.last_answer, arrivals.last)
    expected = result.sent * VALUES_PER_MESSAGE
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
        **use.figures(),
    }


def run_target(target: str, options: Options) -> dict[str, Any]:
    identities = [f"CP{i:05d}" for i in range(options.chargers)]
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as cleanup:  # cleans up in reverse
        broker = Mosquitto(Path(tmp), extra_config="max_queued_messages 0\n")
        broker.start()
        cleanup.callback(broker.stop)
        control = mqtt.Client(CallbackAPIVersion.VERSION2)
        control.connect("127.0.0.1", broker.port)
        control.loop_start()
        cleanup.callback(control.loop_stop)
        sink = ValueSink(broker.port, options.subscriber_qos)
        cleanup.callback(sink.close)
        generator = Generator(options.workers)
        cleanup.callback(generator.stop)
        if target == "connector":
            server = start_connector(tmp, broker, control, identities)
        else:
            server = start_floor(broker, options.floor_max_inflight)
        cleanup.callback(server.stop)  # on failure; otherwise it is stopped below already
        figures = run_phases(target, Bench(options, server, broker, generator, sink, control, []), identities)
        figures["stop"] = server.stop()  # before the generator's: the connector must close every charger itself
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
    progress(target, f"steady load: {load} every {options.period:g} s for {options.duration:g} s")
    figures["steady"] = bench.steady()
    if options.rounds:
        progress(target, f"burst: {options.rounds} per charger, one at a time")
        figures["burst"] = bench.burst()
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
    args = parser.parse_args(argv)
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
    )


def main() -> None:
    options = parse_options()
    raise_fd_limit()
    results = {target: run_target(target, options) for target in options.targets}
    report = Report(results, f"OCPP {options.ocpp}: {' / '.join(options.shapes)}")
    print(report.table())
    if options.json_path is not None:
        config = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()}
        document = {"options": config, **report.document()}
        options.json_path.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
