"""Scale-out benchmark: one fleet served by 1, 2 and 3 connector instances sharing one Redis.

    .venv/bin/python benchmark/instances.py --json instances.json          # 3000 chargers, 1, 2, 3 instances
    .venv/bin/python benchmark/instances.py --baseline --repeat 2           # + one process without Redis; twice
    .venv/bin/python benchmark/instances.py --ocpp 2.0.1 --shape TransactionEvent   # a seqNo to Redis per message

For each instance count N in `--instances` (in turn; `--repeat K` runs the whole list K
times, alternating), with a fresh private mosquitto and a fresh redis-server (no
persistence) each time: N connector processes (`python -m connector`, the bench's map, the
same CONNECTOR_NAME and STATE_URL, each its own CONNECTOR_INSTANCE, ports and STATE_DIR).
`--baseline` adds one run of a single process without STATE_URL (state in files, no Redis).

The chargers (bench.py's load generator, `loadgen.py`) connect straight to their
instance's port: charger `<id>` to instance crc32(<id>) mod N (`--spread hash`, uneven like
a load balancer's hash) or index mod N (`--spread round-robin`). No HAProxy takes part:
what is measured is the instances and Redis, not the balancer. Phases:

1. connect: every charger connects and boots (`--connect-rate` per s); per instance the
   chargers it was given, booted and holds in Redis (`held:<instance>`), its RSS before and
   after, and memory per charger; Redis's memory per charger.
2. idle: `--idle` s with every charger connected and quiet: CPU of the instances and of
   Redis, Redis commands per s (the instances' signs of life and their checks of each other).
3. steady: bench.py's steady phase itself (`Bench.steady`): every charger sends a
   MeterValues.req with 8 values every `--period` s for `--duration` s; the subscriber
   counts every value on MQTT. CPU per message of all instances together, of Redis, and of
   both; Redis commands per message by command; value latency; chargers served (values
   arrived from them); each instance's RSS after it. CPU and Redis commands also after the
   first period (sampled in a thread): each charger's first message brings new keys, which
   the instances save to Redis and tell each other; after it, what the fleet costs from then on.
4. SIGTERM to each instance: seconds to exit (one that hangs is aborted, its thread stacks
   kept in the JSON: `peers.Server.abort`).

The ratios compare CPU per message against N = 1 (with Redis) and against the baseline.
Everything (generator, subscriber, broker, Redis, up to 3 instances) shares this machine's
cores, so the figure is a cost per message, not a claim of throughput: more instances on
2 cores serve no more messages. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import redis
from bench import STEADY_LEAD_S, Bench, connect_figures, connect_orders, merged_connect, progress
from bench import Options as BenchOptions
from instances_report import SETUP, summary, table
from loadgen import OCPP_VERSIONS, SHAPES, raise_fd_limit
from measure import CpuUse, Pids, cpu_seconds, cpu_use, listen_drops, rss_kb, wait_quiet
from paho.mqtt.enums import CallbackAPIVersion
from peers import NAME, VALUES, Generator, Server, ValueSink, start_connector

from connector.shared import prefix
from connector.tests.harness import Mosquitto
from connector.tests.harness_ha import RedisServer

SPREADS = ("hash", "round-robin")
SAMPLE_S = 0.25  # how often the steady phase's CPU and Redis calls are sampled
OURS = ("info", "scard")  # Redis commands this script sends, left out of the instances' counts


@dataclass(frozen=True)
class Options:
    load: BenchOptions  # chargers, rates, period, duration, OCPP version, shapes: as bench.py's
    counts: tuple[int, ...]  # instance counts, each run in turn
    baseline: bool  # also one process without STATE_URL
    repeat: int
    spread: str  # how chargers are given to instances: SPREADS
    idle_s: float


def instance_of(index: int, cp: str, count: int, spread: str) -> int:
    """The instance (0 .. count-1) charger `cp` (the index-th) connects to."""
    if spread == "round-robin":
        return index % count
    return zlib.crc32(cp.encode()) % count  # stable across runs, unlike hash()


# -- one point: N instances (or the baseline) under the same load ---------------------


@dataclass
class ScaleBench(Bench):
    """bench.py's Bench whose server is several instances and whose CPU counts them all and Redis."""

    instances: list[Server] = field(default_factory=list)
    redis_server: RedisServer | None = None
    last_use: CpuUse = field(default_factory=CpuUse)  # of the last phase measured

    @contextmanager
    def cpu_use(self) -> Iterator[CpuUse]:
        assert self.broker.process is not None
        redis_pids = [self.redis_server.process.pid] if self.redis_server and self.redis_server.process else []
        pids = Pids(
            [s.process.pid for s in self.instances], self.broker.process.pid, self.generator.pids, [], redis_pids
        )
        with cpu_use(pids) as use:
            yield use
        self.last_use = use


class RedisWatch:
    """What the instances ask of Redis: commands by name, memory, and which instance holds whom."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.empty_memory = self.used_memory()  # before any instance started

    def bytes_per_charger(self, chargers: int) -> int:
        """Redis's memory beyond an empty one's, per charger."""
        return (self.used_memory() - self.empty_memory) // max(chargers, 1)

    def calls(self) -> Counter[str]:
        """The instances' calls so far by command (those inside Lua scripts counted under their own
        names too); not our own INFO and SCARD, which the connector never sends."""
        stats = self.client.info("commandstats")
        calls = Counter({name.removeprefix("cmdstat_"): int(s["calls"]) for name, s in stats.items()})
        return calls - Counter({name: calls[name] for name in OURS})

    def used_memory(self) -> int:
        return int(self.client.info("memory")["used_memory"])

    def held(self, instance: str) -> int:
        return int(self.client.scard(f"{prefix(NAME)}held:{instance}"))

    def close(self) -> None:
        self.client.close()


def instance_name(k: int) -> str:
    return f"bench-{k + 1}"


def start_instances(tmp: Path, count: int, bench_parts: dict[str, Any], state_url: str | None) -> list[Server]:
    """`count` connector processes, one after the other (each claims its name in Redis first)."""
    servers = []
    for k in range(count):
        env = {"STATE_DIR": str(tmp / f"state-{k + 1}")}
        if state_url is not None:
            env |= {"STATE_URL": state_url, "CONNECTOR_INSTANCE": instance_name(k)}
        servers.append(start_connector(str(tmp), **bench_parts, more_env=env))
    return servers


def connect(bench: ScaleBench, identities: list[str], given: list[int], watch: RedisWatch | None) -> dict[str, Any]:
    """Every charger to its instance; per instance what it was given, booted, holds, and its memory."""
    pids = [server.process.pid for server in bench.instances]
    rss_before = [rss_kb(pid) for pid in pids]
    drops = listen_drops()
    calls = watch.calls() if watch else Counter[str]()
    urls = {cp: bench.instances[k].url for cp, k in zip(identities, given, strict=True)}
    start = time.time() + 1.0
    orders = connect_orders(bench.options, identities, len(bench.generator), start, bench.instances[0].url, urls=urls)
    bench.generator.send(orders)
    time.sleep(max(0.0, start - time.time()))
    with bench.cpu_use() as use:
        result = merged_connect(bench.generator.replies())
    bench.booted = sorted(result.booted)
    boots = max(len(result.booted), 1)
    redis_per_boot = {}
    if watch:
        done = watch.calls() - calls
        redis_per_boot = {"redis_commands_per_boot": {name: round(n / boots, 2) for name, n in done.most_common()}}
    settle_s = sum(wait_quiet(pid) for pid in pids)
    booted = set(result.booted)
    per_instance = []
    for k, pid in enumerate(pids):
        mine = [cp for cp, at in zip(identities, given, strict=True) if at == k]
        rss = rss_kb(pid)
        per_instance.append(
            {
                "instance": instance_name(k),
                "chargers": len(mine),
                "booted": sum(cp in booted for cp in mine),
                "held_in_redis": watch.held(instance_name(k)) if watch else None,
                "rss_kb_before": rss_before[k],
                "rss_kb_connected": rss,
                "rss_kb_per_charger": round((rss - rss_before[k]) / max(len(mine), 1), 2),
            }
        )
    connect_s = max(result.last_booted - start, 1e-9)
    return {
        **connect_figures(identities, result, connect_s, drops),
        "cpu_us_per_boot": round(use.server / boots * 1e6, 1),
        "redis_cpu_us_per_boot": round(use.redis / boots * 1e6, 1),
        **redis_per_boot,
        **use.figures(),
        "settle_s": round(settle_s, 1),
        "per_instance": per_instance,
        "redis_bytes_per_charger": watch.bytes_per_charger(len(result.booted)) if watch else None,
    }


def idle(bench: ScaleBench, seconds: float, watch: RedisWatch | None) -> dict[str, Any]:
    """Every charger connected and quiet: what the instances and Redis cost by themselves."""
    calls = watch.calls() if watch else Counter[str]()
    with bench.cpu_use() as use:
        time.sleep(seconds)
    figures: dict[str, Any] = {
        "instances_cpu_percent": round(use.server / use.wall * 100, 1),
        "redis_cpu_percent": use.redis_percent,
    }
    if watch:
        figures["redis_commands_per_s"] = round((watch.calls() - calls).total() / use.wall, 1)
    return figures


@dataclass(frozen=True)
class Sample:
    at: float
    instances_cpu_s: float
    redis_cpu_s: float
    calls: Counter[str]


class Sampler:
    """CPU of the instances and Redis, and Redis's calls, every SAMPLE_S in a thread: the
    figures of a window within a phase (the steady phase after its first period)."""

    def __init__(self, bench: ScaleBench, watch: RedisWatch | None) -> None:
        self._pids = [server.process.pid for server in bench.instances]
        self._redis = bench.redis_server.process.pid if bench.redis_server and bench.redis_server.process else None
        self._watch = watch
        self.samples: list[Sample] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            redis_cpu = cpu_seconds(self._redis) if self._redis else 0.0
            calls = self._watch.calls() if self._watch else Counter[str]()
            self.samples.append(Sample(time.time(), sum(cpu_seconds(p) for p in self._pids), redis_cpu, calls))
            if self._done.wait(SAMPLE_S):
                return

    def window(self, start: float, end: float, messages: int) -> dict[str, Any]:
        """Per message over [start, end] (the samples nearest to each end): CPU, Redis's calls by command."""
        first = min(self.samples, key=lambda s: abs(s.at - start))
        last = min(self.samples, key=lambda s: abs(s.at - end))
        per = max(messages, 1)
        calls = last.calls - first.calls
        return {
            "window_s": round(last.at - first.at, 2),
            "messages": messages,
            "cpu_us_per_message": round((last.instances_cpu_s - first.instances_cpu_s) / per * 1e6, 1),
            "redis_cpu_us_per_message": round((last.redis_cpu_s - first.redis_cpu_s) / per * 1e6, 1),
            "redis_commands_per_s": round(calls.total() / max(last.at - first.at, 1e-9), 1),
            "redis_commands_per_message": {name: round(n / per, 4) for name, n in calls.most_common()},
        }


def steady(bench: ScaleBench, watch: RedisWatch | None) -> dict[str, Any]:
    """bench.py's steady phase, with the instances' and Redis's CPU and Redis's commands per message,
    over the whole phase and after its first period (each charger's first message brings new
    keys: registry saves, Redis writes), which is what a fleet costs from then on."""
    calls = watch.calls() if watch else Counter[str]()
    load = bench.options
    with Sampler(bench, watch) as sampler:
        start = time.time() + STEADY_LEAD_S  # as Bench.steady schedules its first send
        figures = bench.steady()
    count = max(1, round(load.duration / load.period))
    later = figures["messages_sent"] * (count - 1) // count  # sent after the first period, on schedule
    figures["after_first_period"] = sampler.window(start + load.period, start + count * load.period, later)
    use, sent = bench.last_use, max(figures["messages_sent"], 1)
    served = {seen.split(" ", 1)[0].removeprefix(VALUES).split("__MeterValues__", 1)[0] for seen in bench.sink.seen}
    figures |= {
        "chargers_served": len(served),
        "instance_cpu_s": [round(s, 2) for s in use.per_server],
        "instances_cpu_s": round(use.server, 2),
        "redis_cpu_s": round(use.redis, 2),
        "redis_cpu_percent": use.redis_percent,
        "redis_cpu_us_per_message": round(use.redis / sent * 1e6, 1),
        "cpu_us_per_message_with_redis": round((use.server + use.redis) / sent * 1e6, 1),
        # Each instance holds the whole fleet's keys (the listing is the fleet's): after the
        # first period every charger's meter value keys are known to every instance.
        "rss_kb_after": [rss_kb(server.process.pid) for server in bench.instances],
    }
    if watch:
        done = watch.calls() - calls
        figures["redis_commands_per_s"] = round(done.total() / use.wall, 1)
        figures["redis_commands_per_message"] = {name: round(n / sent, 3) for name, n in done.most_common()}
        figures["redis_bytes_per_charger"] = watch.bytes_per_charger(len(bench.booted))
    return figures


def run_point(count: int, state: bool, options: Options) -> dict[str, Any]:
    """One point: `count` instances (with Redis when `state`) serving the whole fleet, from fresh peers."""
    load = options.load
    identities = [f"CP{i:05d}" for i in range(load.chargers)]
    given = [instance_of(i, cp, count, options.spread) for i, cp in enumerate(identities)]
    label = f"{count} instance{'s' if count > 1 else ''}" if state else "baseline"
    with tempfile.TemporaryDirectory() as tmp_dir, ExitStack() as cleanup:  # cleans up in reverse
        tmp = Path(tmp_dir)
        broker = Mosquitto(tmp, extra_config="max_queued_messages 0\n")
        broker.start()
        cleanup.callback(broker.stop)
        redis_server, watch = None, None
        if state:
            (tmp / "redis").mkdir()
            redis_server = RedisServer(tmp / "redis")
            redis_server.start()
            cleanup.callback(redis_server.stop)
            watch = RedisWatch(redis_server.url)
            cleanup.callback(watch.close)
        control = mqtt.Client(CallbackAPIVersion.VERSION2)
        control.connect("127.0.0.1", broker.port)
        control.loop_start()
        cleanup.callback(control.loop_stop)
        sink = ValueSink(broker.port, load.subscriber_qos)
        cleanup.callback(sink.close)
        generator = Generator(load.workers)
        cleanup.callback(generator.stop)
        progress(label, f"starting {count} connector process{'es' if count > 1 else ''}")
        parts = {"broker": broker, "control": control, "identities": identities, "mapped": load.mapped}
        instances = start_instances(tmp, count, parts, redis_server.url if redis_server else None)
        for server in instances:
            cleanup.callback(server.stop)  # on failure; otherwise they are stopped below already
        bench = ScaleBench(load, instances[0], broker, generator, sink, control, [], [], instances, redis_server)
        figures: dict[str, Any] = {"label": label, "instances": count, "state_url": state, "spread": options.spread}
        progress(label, f"connecting {load.chargers} OCPP {load.ocpp} chargers at {load.connect_rate:g}/s")
        figures["connect"] = connect(bench, identities, given, watch)
        figures["idle"] = idle(bench, options.idle_s, watch)
        progress(label, f"steady load: {' / '.join(load.shapes)} every {load.period:g} s for {load.duration:g} s")
        figures["steady"] = steady(bench, watch)
        figures["stop"] = [server.stop() for server in instances]  # before the generator's: each closes its own
        figures["server_problems"] = [server.watch.problems() for server in instances]
        return figures


def parse_options(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add: Callable[..., Any] = parser.add_argument
    add("--chargers", type=int, default=3000, help="charge points, spread over the instances (default 3000)")
    add("--instances", default="1,2,3", help="comma-separated instance counts, run in turn (default 1,2,3)")
    add("--baseline", action="store_true", help="also one process without STATE_URL (no Redis)")
    add("--repeat", type=int, default=1, help="run the whole list this many times, alternating (default 1)")
    add("--spread", choices=SPREADS, default="hash", help="charger -> instance: crc32 of the identity or index")
    add("--connect-rate", type=float, default=500, help="connections started per second (default 500)")
    add("--period", type=float, default=10, help="s between a charger's load messages (default 10)")
    add("--duration", type=float, default=60, help="s of steady load (default 60)")
    add("--idle", type=float, default=3, help="s of the idle measurement after connecting (default 3)")
    add("--ocpp", choices=OCPP_VERSIONS, default="1.6", help="the chargers' OCPP version (default 1.6)")
    add("--shape", choices=SHAPES["2.0.1"], default=None, help="2.0.1 load messages (default: both in turn)")
    add("--mapped", type=int, choices=(1, 3, 8), default=8, help="of the 8 values, how many are mapped (default 8)")
    add("--workers", type=int, default=2, help="load generator processes (default 2)")
    add("--open-timeout", type=float, default=120, help="s a charger may take to connect and boot (default 120)")
    add("--json", type=Path, default=None, help="also write every run's figures, the summary and ratios here")
    args = parser.parse_args(argv)
    try:
        counts = tuple(int(n) for n in args.instances.split(",") if n.strip())
    except ValueError:
        parser.error("--instances takes comma-separated counts, e.g. 1,2,3")
    if not counts or min(counts) < 1 or args.repeat < 1:
        parser.error("--instances takes counts of 1 or more; --repeat 1 or more")
    shapes = SHAPES[args.ocpp] if args.shape is None else (args.shape,)
    if not set(shapes) <= set(SHAPES[args.ocpp]):
        parser.error(f"--shape on OCPP {args.ocpp} takes {' or '.join(SHAPES[args.ocpp])}")
    load = BenchOptions(
        chargers=args.chargers,
        connect_rate=args.connect_rate,
        period=args.period,
        duration=args.duration,
        commands=0,
        command_rate=1,
        rounds=0,
        workers=args.workers,
        open_timeout=args.open_timeout,
        subscriber_qos=0,
        floor_max_inflight=0,
        targets=("connector",),
        json_path=args.json,
        ocpp=args.ocpp,
        shapes=shapes,
        mapped=args.mapped,
    )
    return Options(load, counts, args.baseline, args.repeat, args.spread, args.idle)


def points(options: Options) -> list[tuple[int, bool]]:
    """(instances, with Redis) of every run, in order: the baseline first in each round."""
    one_round = [(1, False)] if options.baseline else []
    one_round += [(count, True) for count in options.counts]
    return one_round * options.repeat


def main() -> None:
    options = parse_options()
    raise_fd_limit()
    cores = len(os.sched_getaffinity(0))
    runs = [run_point(count, state, options) for count, state in points(options)]
    rows = summary(runs)
    load = options.load
    title = (
        f"{load.chargers} chargers, OCPP {load.ocpp}: {' / '.join(load.shapes)} every {load.period:g} s for "
        f"{load.duration:g} s, {load.mapped} of 8 values mapped, chargers given to instances by {options.spread}"
    )
    print(table(rows, title, cores))
    if options.load.json_path is not None:
        config = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()}
        config["load"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options.load).items()}
        document = {
            "options": config,
            "setup": SETUP.format(cores=cores),
            # Per point: its runs' CPU per message, the ratios, and which of `runs` the table shows.
            "summary": [
                {k: v for k, v in row.items() if k != "shown"} | {"shown_run": runs.index(row["shown"])} for row in rows
            ],
            "runs": runs,
        }
        options.load.json_path.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
