"""The output of `instances.py`: per point (baseline, 1, 2, 3 instances) a column of the table, and the ratios.

With `--repeat`, a point has several runs: the table shows the one whose CPU per message
is the median (the lower middle one for an even count) and lists every run's figure, to
show the spread; the ratios are the shown runs'.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from report import get, number, quotient, ratio_text

Point = dict[str, Any]  # one run's figures, as instances.run_point gives them
Row = dict[str, Any]  # one point of the summary: label, runs, spread, ratios, the run shown

KILLED = -9  # the exit code of a server killed after it did not stop on SIGTERM
BUSY_MACHINE_PERCENT = 30.0  # the rest of the machine above this (% of a core): the run was disturbed
SETUP = (
    "chargers connect straight to their instance's port (no HAProxy in this measurement); generator, "
    "subscriber, broker, Redis and instances share this machine's {cores} cores: CPU per message is a cost, "
    "not a throughput claim"
)


def cpu(point: Point, with_redis: bool = False) -> float:
    """The steady phase's CPU per message, µs: the instances', or the instances' and Redis's."""
    key = "cpu_us_per_message_with_redis" if with_redis else "cpu_us_per_message"
    return float(point["steady"][key])


def cpu_later(point: Point) -> float:
    """The instances' and Redis's CPU per message after the first period (no new keys any more), µs."""
    later = point["steady"]["after_first_period"]
    return float(later["cpu_us_per_message"] + later["redis_cpu_us_per_message"])


def median_point(points: list[Point]) -> Point:
    """Of repeated runs of one point, the one whose CPU per message is the median (the lower middle)."""
    ordered = sorted(points, key=cpu)
    return ordered[(len(ordered) - 1) // 2]


def summary(runs: list[Point]) -> list[Row]:
    """Per point (baseline first, then by instance count): the run shown, every run's CPU, the ratios."""
    by_label: dict[str, list[Point]] = {}
    for point in sorted(runs, key=lambda p: (p["state_url"], p["instances"])):
        by_label.setdefault(point["label"], []).append(point)
    shown = {label: median_point(points) for label, points in by_label.items()}
    against = {"n1": shown.get("1 instance"), "baseline": shown.get("baseline")}
    rows = []
    for label, point in shown.items():
        row: Row = {"label": label, "runs": len(by_label[label]), "shown": point}
        row["cpu_us_per_message_runs"] = [cpu(p) for p in by_label[label]]
        row["cpu_later_us_per_message_runs"] = [cpu_later(p) for p in by_label[label]]
        for name, other in against.items():
            if other is not None:
                row[f"cpu_ratio_to_{name}"] = quotient(cpu(point), cpu(other))
                row[f"cpu_with_redis_ratio_to_{name}"] = quotient(cpu(point, True), cpu(other, True))
                row[f"cpu_later_ratio_to_{name}"] = quotient(cpu_later(point), cpu_later(other))
        rows.append(row)
    return rows


def figure(*paths: str) -> Callable[[Row], str]:
    """Figures of the run shown, `a / b`; the items of a list likewise."""

    def shown(row: Row) -> str:
        values = [get(row["shown"], path) for path in paths]
        items = values[0] if len(values) == 1 and isinstance(values[0], list) else values
        return " / ".join(number(value) for value in items)

    return shown


def of_row(key: str) -> Callable[[Row], str]:
    """A figure of the point, not of its run: a list's items joined."""

    def shown(row: Row) -> str:
        value = row.get(key)
        return " / ".join(number(v) for v in value) if isinstance(value, list) else number(value)

    return shown


def ratio(key: str) -> Callable[[Row], str]:
    return lambda row: ratio_text(row.get(key))


def each_instance(key: str, scale: float = 1.0) -> Callable[[Row], str]:
    """A connect figure of each instance, `a / b / c`."""

    def shown(row: Row) -> str:
        values = [i[key] for i in row["shown"]["connect"]["per_instance"]]
        return " / ".join(number(v if v is None or scale == 1 else round(v * scale, 1)) for v in values)

    return shown


def megabytes(path: str) -> Callable[[Row], str]:
    """A list of KB figures of the run shown, in MB."""

    def shown(row: Row) -> str:
        return " / ".join(number(round(kb / 1024, 1)) for kb in get(row["shown"], path) or [])

    return shown


def top(path: str, shown: int = 5) -> Callable[[Row], str]:
    """The first commands of a `{command: calls}` figure (all are in the JSON)."""

    def text(row: Row) -> str:
        calls: dict[str, float] = get(row["shown"], path) or {}
        return ", ".join(f"{name} {n:g}" for name, n in list(calls.items())[:shown]) or "-"

    return text


def disturbed(row: Row) -> str:
    """Whether other work on the machine (the rest) took more than BUSY_MACHINE_PERCENT of a core."""
    rest = get(row["shown"], "steady.rest_cpu_percent") or 0.0
    return "DISTURBED" if rest > BUSY_MACHINE_PERCENT else "quiet"


def shutdowns(row: Row) -> str:
    """Seconds from SIGTERM to exit per instance; `killed` where it had not exited after 30 s."""

    def one(stop: dict[str, Any]) -> str:
        code = stop["exit_code"]
        return number(stop["shutdown_s"]) + (" killed" if code == KILLED else f" exit {code}" if code else "")

    return " / ".join(one(stop) for stop in row["shown"]["stop"])


def problems(row: Row) -> str:
    return number(sum(p["count"] for p in row["shown"]["server_problems"]))


TABLE: list[tuple[str, Callable[[Row], str]]] = [
    ("runs of this point", of_row("runs")),
    ("chargers booted / chargers", figure("connect.booted", "connect.chargers")),
    ("chargers per instance", each_instance("chargers")),
    ("  held in Redis, per instance", each_instance("held_in_redis")),
    ("chargers served (values arrived)", figure("steady.chargers_served")),
    ("connect: CPU per boot us, instances / Redis", figure("connect.cpu_us_per_boot", "connect.redis_cpu_us_per_boot")),
    ("connect: Redis commands per boot, top", top("connect.redis_commands_per_boot")),
    ("RSS per instance MB, connected", each_instance("rss_kb_connected", 1 / 1024)),
    ("memory per charger KB, per instance", each_instance("rss_kb_per_charger")),
    ("RSS per instance MB, after the load", megabytes("steady.rss_kb_after")),
    ("Redis memory per charger bytes, after the load", figure("steady.redis_bytes_per_charger")),
    ("idle: CPU % instances / Redis", figure("idle.instances_cpu_percent", "idle.redis_cpu_percent")),
    ("idle: Redis commands per s", figure("idle.redis_commands_per_s")),
    ("steady: answered / sent messages", figure("steady.messages_answered", "steady.messages_sent")),
    ("steady: values received / expected", figure("steady.values_received", "steady.values_expected")),
    ("steady: messages per s", figure("steady.messages_per_s")),
    ("steady: CPU s, all instances / Redis", figure("steady.instances_cpu_s", "steady.redis_cpu_s")),
    ("steady: CPU s per instance", figure("steady.instance_cpu_s")),
    ("steady: CPU per message us, instances", figure("steady.cpu_us_per_message")),
    ("  every run of this point", of_row("cpu_us_per_message_runs")),
    ("  ratio to 1 instance", ratio("cpu_ratio_to_n1")),
    ("  ratio to the baseline", ratio("cpu_ratio_to_baseline")),
    ("steady: CPU per message us, Redis", figure("steady.redis_cpu_us_per_message")),
    ("steady: CPU per message us, instances + Redis", figure("steady.cpu_us_per_message_with_redis")),
    ("  ratio to 1 instance", ratio("cpu_with_redis_ratio_to_n1")),
    ("  ratio to the baseline", ratio("cpu_with_redis_ratio_to_baseline")),
    ("steady: Redis commands per s", figure("steady.redis_commands_per_s")),
    ("steady: Redis commands per message, top", top("steady.redis_commands_per_message")),
    (
        "after the 1st period: CPU per message us, instances / Redis",
        figure("steady.after_first_period.cpu_us_per_message", "steady.after_first_period.redis_cpu_us_per_message"),
    ),
    ("  instances + Redis, every run", of_row("cpu_later_us_per_message_runs")),
    ("  ratio to 1 instance", ratio("cpu_later_ratio_to_n1")),
    ("  ratio to the baseline", ratio("cpu_later_ratio_to_baseline")),
    ("after the 1st period: Redis commands per s", figure("steady.after_first_period.redis_commands_per_s")),
    ("after the 1st period: Redis commands per message", top("steady.after_first_period.redis_commands_per_message")),
    ("steady: value latency p50 / p99 ms", figure("steady.value_latency_ms.p50", "steady.value_latency_ms.p99")),
    ("steady: value latency p99 per period ms", figure("steady.value_latency_p99_per_period_ms")),
    (
        "steady: CPU % generator worker / subscriber / broker / rest",
        figure(
            "steady.generator_cpu_percent",
            "steady.subscriber_cpu_percent",
            "steady.broker_cpu_percent",
            "steady.rest_cpu_percent",
        ),
    ),
    ("steady: the machine", disturbed),
    ("shutdown s per instance", shutdowns),
    ("WARNING/ERROR lines, all instances", problems),
]


def table(rows: list[Row], title: str, cores: int) -> str:
    """The table: a column per point, then the setup's caveat."""
    header = ["", *(row["label"] for row in rows)]
    lines = [[label, *(shown(row) for row in rows)] for label, shown in TABLE]
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    text = [title, ""]
    for line in [header, *lines]:
        text.append("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
    return "\n".join([*text, "", SETUP.format(cores=cores) + "."])
