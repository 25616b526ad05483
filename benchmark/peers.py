"""The peers of a benchmark run: the server under test, the value subscriber, the generator.

Topics under `NAME`: `v/<key>` the mapped values, `s/<cp>` the status of the charger's
TriggerMessage actuator, `a/<cp>__execute_trigger_message` that actuator, and
`raw_message_to_db` where raw messages are on (the floor's as the connector's).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from loadgen import Order, Reply, StopOrder, mapped_paths, phase_of, sensor_keys, worker_main
from paho.mqtt.enums import CallbackAPIVersion

from connector.tests.harness import Mosquitto

NAME = "bench"  # CONNECTOR_NAME: the topic prefix
# The connector of this checkout, not the one a virtual environment has installed (an
# editable install points at one checkout; a git worktree's benchmark must run its own).
SOURCE = Path(__file__).resolve().parents[1] / "source"
ACTUATOR = "execute_trigger_message"  # the one actuator mapped per charger
STOP_WAIT_S = 30.0  # a server not gone this long after SIGTERM is killed
LAST_LINES = 20  # of a killed server's stderr, kept in its figures
VALUES, STATUSES, RAW = f"{NAME}/v/", f"{NAME}/s/", f"{NAME}/raw_message_to_db"


class StderrWatch:
    """Drains a server's stderr (so it never blocks), waits for lines, collects problems."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._drain, args=(process,), daemon=True).start()

    def _drain(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        for line in process.stderr:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    if found := re.search(pattern, line):
                        return found
                seen = len(self.lines)
                if not self._changed.wait(max(0.0, deadline - time.monotonic())):
                    raise TimeoutError(f"server never logged {pattern!r}; last lines: {self.lines[-5:]}")

    def problems(self) -> dict[str, Any]:
        """WARNING, ERROR and traceback lines, grouped with identities and numbers masked."""
        with self._changed:
            lines = [line for line in self.lines if re.search(r" (WARNING|ERROR|CRITICAL) |Traceback", line)]
        patterns = Counter(re.sub(r"\d+", "N", line.split(" ", 2)[-1].strip())[:160] for line in lines)
        return {"count": len(lines), "top": dict(patterns.most_common(8))}


@dataclass
class Server:
    name: str
    process: subprocess.Popen[str]
    watch: StderrWatch
    port: int
    stopped: dict[str, Any] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def stop(self) -> dict[str, Any]:
        """SIGTERM; how long the server took to exit (the connector closes every charger first)."""
        if self.stopped is None:
            started = time.monotonic()
            self.process.terminate()
            try:
                code = self.process.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                code = self.process.wait()
            self.stopped = {"shutdown_s": round(time.monotonic() - started, 2), "exit_code": code}
            if code == -signal.SIGKILL:  # what it did last before it hung: where to look
                self.stopped["last_lines"] = [line.rstrip() for line in self.watch.lines[-LAST_LINES:]]
        return self.stopped


def launch(name: str, command: list[str], ready: str, **popen: Any) -> Server:
    """Start a server; once it logged `ready` (its group 1: the port), the Server. Killed on failure."""
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, **popen)
    watch = StderrWatch(process)
    try:
        return Server(name, process, watch, int(watch.wait_for(ready).group(1)))
    except BaseException:
        process.kill()
        raise


def datapoint_map(identities: list[str], mapped: int) -> dict[str, dict[str, str]]:
    """The first `mapped` of each charger's 8 value keys, its actuator's status, and the actuator."""
    sensors = {key: f"{VALUES}{key}" for cp in identities for key in sensor_keys(cp)[:mapped]}
    statuses = {f"{cp}__{ACTUATOR}__status": f"{STATUSES}{cp}" for cp in identities}
    actuators = {f"{NAME}/a/{cp}__{ACTUATOR}": f"{cp}__{ACTUATOR}" for cp in identities}
    return {"sensor": sensors | statuses, "actuator": actuators}


def start_connector(
    tmp: str,
    broker: Mosquitto,
    control: mqtt.Client,
    identities: list[str],
    *,
    mapped: int = 8,
    raw: bool = False,
    more_env: dict[str, str] | None = None,
) -> Server:
    """`python -m connector` with the bench's map applied; `more_env` adds or overrides settings
    (several instances: STATE_URL, CONNECTOR_INSTANCE, STATE_DIR of their own)."""
    env = {
        **os.environ,
        "CONNECTOR_NAME": NAME,
        "MQTT_BROKER_HOST": "127.0.0.1",
        "MQTT_BROKER_PORT": str(broker.port),
        "OCPP_HOST": "127.0.0.1",
        "OCPP_PORT": "0",
        "HTTP_PORT": "0",
        "STATE_DIR": str(Path(tmp) / "state"),
        # Every load-generated charger connects from 127.0.0.1, like a fleet behind a load
        # balancer: the per-address bound of unauthenticated connections is set for that.
        "OCPP_MAX_UNAUTHENTICATED_PER_ADDRESS": "100000",
        "SEND_RAW_MESSAGE_TO_DB": "TRUE" if raw else "FALSE",
        "PYTHONPATH": os.pathsep.join([str(SOURCE), *filter(None, [os.environ.get("PYTHONPATH")])]),
        **(more_env or {}),
    }
    command = [sys.executable, "-m", "connector"]
    server = launch("connector", command, r"OCPP server listening on ws://[\d.]+:(\d+)", env=env, cwd=tmp)
    try:
        server.watch.wait_for("connected to MQTT broker")
        if "STATE_URL" in env:  # its name claimed among the instances: it may serve chargers
            server.watch.wait_for("serving with the others through Redis")
        mapping = datapoint_map(identities, mapped)
        # Retained, as BEMCom publishes it: heard even if it beats the connector's subscription.
        control.publish(f"{NAME}/datapoint_map", json.dumps(mapping), qos=2, retain=True).wait_for_publish(60)
        server.watch.wait_for("datapoint_map applied", timeout=120)
    except BaseException:
        server.stop()
        raise
    return server


def start_floor(broker: Mosquitto, max_inflight: int, *, mapped: int = 8, raw: bool = False) -> Server:
    floor = Path(__file__).with_name("floor.py")
    command = [sys.executable, str(floor), "--name", NAME, "--mqtt-port", str(broker.port)]
    command += ["--max-inflight", str(max_inflight), "--mapped", ",".join(mapped_paths(mapped))]
    command += ["--raw"] if raw else []
    return launch("floor", command, r"floor listening on ws://[\d.]+:(\d+)")


@dataclass
class Arrivals:
    """The value messages of one phase."""

    latencies: list[float] = field(default_factory=list)  # s, one per distinct value message
    sent: list[float] = field(default_factory=list)  # the same values' send times (their timestamps)
    last: float = 0.0  # when the last one arrived
    duplicates: int = 0
    statuses: dict[str, float] = field(default_factory=dict)  # cp -> when its last command status arrived
    raw_per_phase: Counter[str] = field(default_factory=Counter)  # distinct raw messages by unique id's phase
    raw_latencies: list[float] = field(default_factory=list)  # s, raw message arrival - its timestamp

    def arrived_by(self, until: float) -> int:
        """How many values had arrived by `until`."""
        return sum(sent + latency <= until for sent, latency in zip(self.sent, self.latencies, strict=True))

    def by_period(self, start: float, period: float, count: int) -> list[list[float]]:
        """The latencies of the values sent in each period of the steady phase."""
        periods: list[list[float]] = [[] for _ in range(count)]
        for sent, latency in zip(self.sent, self.latencies, strict=True):
            periods[min(count - 1, max(0, int((sent - start) // period)))].append(latency)
        return periods


class ValueSink:
    """Receives the value messages (latency = arrival - the value's timestamp, the send time),
    the command statuses (their arrival) and, with `raw`, the raw messages (counted per phase)."""

    def __init__(self, port: int, qos: int, raw: bool = False) -> None:
        self._changed = threading.Condition()
        self.reset()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe([(f"{VALUES}#", qos), (f"{STATUSES}#", qos), *([(RAW, qos)] if raw else [])])
        self.client.loop_start()
        if not subscribed.wait(10):
            raise TimeoutError("the value subscriber was never subscribed")

    def reset(self) -> None:
        """Forget what arrived: a new phase begins."""
        with self._changed:
            self.arrivals = Arrivals()
            self.seen: set[str] = set()  # "topic timestamp": strings, which the GC need not traverse
            self.raw_seen: set[str] = set()  # "cp direction unique-id"
            self._awaited = IDLE  # wake the waiter once this many arrived

    def wait(self, total: int, timeout: float, raw_phase: str = "", raw_total: int = 0) -> Arrivals:
        """What arrived once `total` distinct values (and `raw_total` raw messages of the phase
        whose unique ids begin `raw_phase`) have, or `timeout` s passed."""
        deadline = time.monotonic() + timeout
        with self._changed:
            self._awaited = (total, raw_phase, raw_total)
            while not self._all_arrived() and self._changed.wait(max(0.0, deadline - time.monotonic())):
                pass
            self._awaited = IDLE
            return self.arrivals

    def wait_statuses(self, cps: Iterable[str], timeout: float) -> dict[str, float]:
        """When each charger's command status arrived, once all of `cps` have one (or `timeout` s passed)."""
        wanted = set(cps)
        deadline = time.monotonic() + timeout
        with self._changed:
            while not wanted <= self.arrivals.statuses.keys() and self._changed.wait(
                max(0.0, deadline - time.monotonic())
            ):
                pass
            return dict(self.arrivals.statuses)

    def _all_arrived(self) -> bool:
        values, raw_phase, raw = self._awaited
        return len(self.arrivals.latencies) >= values and self.arrivals.raw_per_phase[raw_phase] >= raw

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        arrived = time.time()
        if message.retain:  # a message from before the subscription, not news
            return
        if message.topic.startswith(VALUES):
            self._on_value(message, arrived)
        elif message.topic.startswith(STATUSES):
            with self._changed:
                self.arrivals.statuses[message.topic.removeprefix(STATUSES)] = arrived
                self._changed.notify_all()  # a status wait wakes on each: they are few
        elif message.topic == RAW:
            self._on_raw(message, arrived)

    def _on_raw(self, message: mqtt.MQTTMessage, arrived: float) -> None:
        raw = json.loads(message.payload)["payload"]
        unique_id = str(json.loads(raw["raw_message"])[1])
        seen = f"{raw['charge_point_id']} {raw['direction']} {unique_id}"
        with self._changed:
            if seen in self.raw_seen:
                return
            self.raw_seen.add(seen)
            self.arrivals.raw_per_phase[phase_of(unique_id)] += 1
            self.arrivals.raw_latencies.append(arrived - raw["timestamp"] / 1000)
            if self._all_arrived():
                self._changed.notify()

    def _on_value(self, message: mqtt.MQTTMessage, arrived: float) -> None:
        timestamp: int = json.loads(message.payload)["timestamp"]
        seen = f"{message.topic} {timestamp}"
        with self._changed:
            if seen in self.seen:
                self.arrivals.duplicates += 1
                return
            self.seen.add(seen)
            self.arrivals.latencies.append(arrived - timestamp / 1000)
            self.arrivals.sent.append(timestamp / 1000)
            self.arrivals.last = arrived
            if self._all_arrived():  # not each time: that would wake the waiter 8000 times/s
                self._changed.notify()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


IDLE = (sys.maxsize, "", 0)  # no one waits: (values, raw messages' phase, raw messages)


class Generator:
    """The worker processes of `loadgen`, charger i in worker i % workers."""

    def __init__(self, workers: int) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of this process's threads
        self._pipes = []
        self._processes = []
        for _ in range(workers):
            mine, theirs = context.Pipe()
            process = context.Process(target=worker_main, args=(theirs,), daemon=True)
            process.start()
            self._pipes.append(mine)
            self._processes.append(process)

    def __len__(self) -> int:
        return len(self._pipes)

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self._processes if process.pid is not None]

    def send(self, orders: list[Order]) -> None:
        for pipe, order in zip(self._pipes, orders, strict=True):
            pipe.send(order)

    def replies(self) -> list[Reply]:
        replies: list[Reply] = [pipe.recv() for pipe in self._pipes]
        return replies

    def run(self, order: Order) -> list[Reply]:
        self.send([order] * len(self))
        return self.replies()

    def stop(self) -> None:
        for pipe in self._pipes:
            pipe.send(StopOrder())
        for pipe, process in zip(self._pipes, self._processes, strict=True):
            if pipe.poll(30):
                pipe.recv()
            process.join(5)
            if process.is_alive():
                process.terminate()
