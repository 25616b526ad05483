"""Measuring on Linux, from /proc: CPU time and memory of processes, the machine's load.

CPU use over a phase is taken for every process around the server too (generator
workers, subscriber, broker) and for the rest of the machine, so a figure disturbed by a
busy neighbour or a saturated generator says so. The CPU hogs of `--hog` (one busy loop per
core, at normal priority: a busy machine on purpose) are counted on their own, not as
"the rest".
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
QUIET_CPU_FRACTION = 0.05  # a server is idle once it uses less than this of a core


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def rss_kb(pid: int) -> int:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    assert match
    return int(match.group(1))


def percentiles(seconds: list[float], scale: float = 1000.0) -> dict[str, float]:
    """p50/p90/p99/max (nearest rank) of durations in s, in ms by default."""
    if not seconds:
        return {}
    ordered = sorted(seconds)
    rank = {f"p{p}": ordered[min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1)] for p in (50, 90, 99)}
    return {name: round(value * scale, 2) for name, value in {**rank, "max": ordered[-1]}.items()}


def machine_busy_seconds() -> float:
    """CPU time the whole machine spent busy (user, nice, system, irq, softirq, steal)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / TICKS


def listen_drops() -> int:
    """SYNs or handshakes the kernel dropped because a listen queue was full (all of this netns)."""
    header, values = (line.split() for line in Path("/proc/net/netstat").read_text().splitlines()[:2])
    counters = dict(zip(header[1:], values[1:], strict=True))
    return int(counters["ListenOverflows"]) + int(counters["ListenDrops"])


@dataclass(frozen=True)
class Pids:
    servers: list[int]  # the server's processes: one, or several instances of the connector
    broker: int
    workers: list[int]
    hogs: list[int] = field(default_factory=list)
    redis: list[int] = field(default_factory=list)  # the instances' shared Redis: counted apart, not as "the rest"


@dataclass
class CpuUse:
    """CPU use over one phase: the server in s, the processes around it in % of one core."""

    server: float = 0.0  # all the server's processes together
    wall: float = 0.0
    per_server: list[float] = field(default_factory=list)  # s, each server process (several instances)
    redis: float = 0.0  # s, the shared Redis
    server_percent: float = 0.0
    generator_percent: float = 0.0  # the busiest worker: near 100 %, the generator sets the pace
    subscriber_percent: float = 0.0  # this process: the value subscriber's paho thread, mostly
    broker_percent: float = 0.0
    rest_percent: float = 0.0  # the rest of the machine: other users, and kernel softirq work
    hog_percent: float = 0.0  # all CPU hogs together (--hog), in % of one core
    redis_percent: float = 0.0

    def figures(self) -> dict[str, float]:
        return {f"{name}_cpu_percent": getattr(self, f"{name}_percent") for name in PROCESS_NAMES}


PROCESS_NAMES = ("server", "generator", "subscriber", "broker", "rest", "hog")


@contextmanager
def cpu_use(pids: Pids) -> Iterator[CpuUse]:
    def snapshot() -> tuple[float, ...]:
        return (
            time.time(),
            machine_busy_seconds(),
            time.process_time(),
            cpu_seconds(pids.broker),
            sum(cpu_seconds(pid) for pid in pids.hogs),
            sum(cpu_seconds(pid) for pid in pids.redis),
            *(cpu_seconds(pid) for pid in pids.servers),
            *(cpu_seconds(pid) for pid in pids.workers),
        )

    use = CpuUse()
    before = snapshot()
    yield use
    wall, machine, mine, broker, hogs, redis, *processes = (b - a for a, b in zip(before, snapshot(), strict=True))
    servers, workers = processes[: len(pids.servers)], processes[len(pids.servers) :]
    server = sum(servers)
    use.server, use.wall, use.per_server, use.redis = server, wall, servers, redis

    def percent(seconds: float) -> float:
        return round(seconds / wall * 100, 1)

    use.server_percent = percent(server)
    use.generator_percent = percent(max(workers))
    use.subscriber_percent = percent(mine)
    use.broker_percent = percent(broker)
    use.hog_percent = percent(hogs)
    use.redis_percent = percent(redis)
    # Not below 0: over a short phase, tick rounding can make ours exceed the machine's.
    use.rest_percent = max(0.0, percent(machine - server - broker - mine - hogs - redis - sum(workers)))


def wait_quiet(pid: int, window: float = 1.0, limit: float = 120.0) -> float:
    """Seconds until the server uses less than QUIET_CPU_FRACTION of a core over `window`."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        before = cpu_seconds(pid)
        time.sleep(window)
        if cpu_seconds(pid) - before < QUIET_CPU_FRACTION * window:
            break
    return time.monotonic() - started


@contextmanager
def cpu_hogs(count: int) -> Iterator[list[int]]:
    """`count` processes that each keep a core busy (a bare loop, normal priority); their pids."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield [hog.pid for hog in hogs]
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


@dataclass
class RssSeries:
    """A process's RSS sampled every `interval` s over a phase: whether its memory stays bounded."""

    samples_kb: list[int] = field(default_factory=list)

    def figures(self) -> dict[str, int]:
        if not self.samples_kb:
            return {}
        first, peak, last = self.samples_kb[0], max(self.samples_kb), self.samples_kb[-1]
        return {"rss_kb_start": first, "rss_kb_peak": peak, "rss_kb_end": last, "rss_kb_growth": peak - first}


@contextmanager
def rss_series(pid: int, interval: float = 0.25) -> Iterator[RssSeries]:
    series = RssSeries([rss_kb(pid)])
    done = threading.Event()

    def sample() -> None:
        while not done.wait(interval):
            series.samples_kb.append(rss_kb(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield series
    finally:
        done.set()
        sampler.join()
        series.samples_kb.append(rss_kb(pid))
