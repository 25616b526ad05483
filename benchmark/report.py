"""The output of `bench.py`: a table (floor, connector, ratio, target) and the JSON document.

Figures come in per server as nested dicts (phase -> figure); a missing phase (the floor
has no commands, a skipped burst) prints as `-`. Verdicts are judged only on what was
measured: the ratios need both servers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Figures = dict[str, Any]

CPU_RATIO_LIMIT = 1.5
LATENCY_RATIO_LIMIT = 1.5
MEMORY_LIMIT_KB = 40.0
COMMAND_P99_LIMIT_MS = 50.0
# The rest of the machine (other processes, softirq) above this, in % of a core, during a
# phase: its figures are flagged as disturbed.
BUSY_MACHINE_PERCENT = 30.0


def get(figures: Figures | None, path: str) -> Any:
    """`get(f, "steady.value_latency_ms.p99")`: None where any step is missing."""
    value: Any = figures
    for step in path.split("."):
        if not isinstance(value, dict) or step not in value:
            return None
        value = value[step]
    return value


def number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{value:,}"


def joined(*paths: str, sep: str = " / ") -> Callable[[Figures | None], str]:
    def show(figures: Figures | None) -> str:
        values = [get(figures, path) for path in paths]
        return "-" if all(v is None for v in values) else sep.join(number(v) for v in values)

    return show


def spread(path: str, ranks: tuple[str, ...] = ("p50", "p99", "max")) -> Callable[[Figures | None], str]:
    return joined(*(f"{path}.{rank}" for rank in ranks))


def cpu_spread(phase: str) -> Callable[[Figures | None], str]:
    names = ("server", "generator", "subscriber", "broker", "rest")
    return joined(*(f"{phase}.{name}_cpu_percent" for name in names))


def per_period(path: str, shown: int = 10) -> Callable[[Figures | None], str]:
    """A list of figures, the first `shown` of them (all are in the JSON)."""

    def show(figures: Figures | None) -> str:
        values = get(figures, path)
        if not values:
            return "-"
        return " / ".join(number(v) for v in values[:shown]) + (" / ..." if len(values) > shown else "")

    return show


@dataclass(frozen=True)
class Row:
    label: str
    show: Callable[[Figures | None], str]
    ratio_of: str | None = None  # the figure whose connector/floor ratio is shown
    target: str = ""


ROWS = [
    Row("chargers booted / chargers", joined("connect.booted", "connect.chargers")),
    Row("connect: time s / achieved rate per s", joined("connect.connect_s", "connect.connect_rate_per_s")),
    Row("connect: boot latency p50 / p99 / max ms", spread("connect.boot_latency_ms")),
    Row(
        "connect: CPU % server / generator worker / subscriber / broker / rest",
        cpu_spread("connect"),
    ),
    Row("connect: listen queue drops, whole machine", joined("connect.listen_queue_drops")),
    Row("idle: settle after connect s", joined("connect.settle_s")),
    Row("idle: server CPU % of a core", joined("connect.idle_cpu_percent")),
    Row(
        "idle: memory per charge point KB",
        joined("connect.rss_kb_per_charger"),
        "connect.rss_kb_per_charger",
        f"<= {MEMORY_LIMIT_KB:g}",
    ),
    Row(
        "commands: latency p50 / p99 / max ms",
        spread("commands.latency_ms"),
        target=f"p99 < {COMMAND_P99_LIMIT_MS:g}",
    ),
    Row("commands: arrived / sent", joined("commands.arrived", "commands.sent")),
    Row(
        "commands: CPU % server / generator worker / subscriber / broker / rest",
        cpu_spread("commands"),
    ),
    Row("steady: answered / sent messages", joined("steady.messages_answered", "steady.messages_sent")),
    Row("steady: values received / expected", joined("steady.values_received", "steady.values_expected")),
    Row("steady: messages per s", joined("steady.messages_per_s")),
    Row(
        "steady: CPU per message us",
        joined("steady.cpu_us_per_message"),
        "steady.cpu_us_per_message",
        f"ratio <= {CPU_RATIO_LIMIT:g}",
    ),
    Row(
        "steady: value latency p50 / p90 / p99 / max ms",
        spread("steady.value_latency_ms", ("p50", "p90", "p99", "max")),
        "steady.value_latency_ms.p99",
        f"p99 ratio <= {LATENCY_RATIO_LIMIT:g}",
    ),
    Row(
        "steady: same, after the first period",
        spread("steady.value_latency_after_first_period_ms", ("p50", "p90", "p99", "max")),
        "steady.value_latency_after_first_period_ms.p99",
    ),
    Row("steady: value latency p99 per period ms", per_period("steady.value_latency_p99_per_period_ms")),
    Row("steady: answer latency p50 / p99 / max ms", spread("steady.answer_latency_ms")),
    Row("steady: generator send lag p99 / max ms", spread("steady.send_lag_ms", ("p99", "max"))),
    Row(
        "steady: CPU % server / generator worker / subscriber / broker / rest",
        cpu_spread("steady"),
    ),
    Row("burst: answered / sent messages", joined("burst.messages_answered", "burst.messages_sent")),
    Row("burst: values received / expected", joined("burst.values_received", "burst.values_expected")),
    Row("burst: messages per s, all values delivered", joined("burst.messages_per_s"), "burst.messages_per_s"),
    Row("burst: CPU per message us", joined("burst.cpu_us_per_message"), "burst.cpu_us_per_message"),
    Row("burst: value latency p50 / p99 / max ms", spread("burst.value_latency_ms")),
    Row(
        "burst: CPU % server / generator worker / subscriber / broker / rest",
        cpu_spread("burst"),
    ),
    Row("server stderr WARNING/ERROR lines", joined("server_problems.count")),
    Row("shutdown on SIGTERM s / exit code", joined("stop.shutdown_s", "stop.exit_code")),
]


class Report:
    def __init__(self, results: dict[str, Figures], load: str = "") -> None:
        self.floor = results.get("floor")
        self.connector = results.get("connector")
        self.load = load  # what the chargers spoke and sent: "OCPP 2.0.1: MeterValues / TransactionEvent"

    def ratio(self, path: str) -> float | None:
        floor, connector = get(self.floor, path), get(self.connector, path)
        if not isinstance(floor, int | float) or not isinstance(connector, int | float) or floor <= 0:
            return None
        return round(connector / floor, 2)

    def ratios(self) -> dict[str, float | None]:
        return {
            "cpu_per_message": self.ratio("steady.cpu_us_per_message"),
            "p99_value_latency": self.ratio("steady.value_latency_ms.p99"),
            "memory_per_charger": self.ratio("connect.rss_kb_per_charger"),
            "burst_cpu_per_message": self.ratio("burst.cpu_us_per_message"),
            "burst_messages_per_s": self.ratio("burst.messages_per_s"),
        }

    def verdicts(self) -> dict[str, dict[str, Any]]:
        """Each target of the issue: the measured value, the limit, pass (None: not measured)."""
        ratios = self.ratios()
        checks: dict[str, tuple[Any, str, bool | None]] = {
            "cpu_per_message_ratio": below(ratios["cpu_per_message"], CPU_RATIO_LIMIT, "<="),
            "p99_latency_ratio": below(ratios["p99_value_latency"], LATENCY_RATIO_LIMIT, "<="),
            "memory_per_charger_kb": below(get(self.connector, "connect.rss_kb_per_charger"), MEMORY_LIMIT_KB, "<="),
            "command_p99_ms": below(get(self.connector, "commands.latency_ms.p99"), COMMAND_P99_LIMIT_MS, "<"),
            "connector_all_served": all_served(self.connector),
            "floor_all_served": all_served(self.floor),
        }
        return {name: {"value": value, "limit": limit, "pass": ok} for name, (value, limit, ok) in checks.items()}

    def document(self) -> dict[str, Any]:
        return {
            "load": self.load,
            "floor": self.floor,
            "connector": self.connector,
            "ratios": self.ratios(),
            "targets": self.verdicts(),
        }

    def table(self) -> str:
        header = (self.load, "floor", "connector", "ratio", "target")
        rows = [header]
        for row in ROWS:
            ratio = self.ratio(row.ratio_of) if row.ratio_of else None
            rows.append((row.label, row.show(self.floor), row.show(self.connector), number(ratio), row.target))
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
        lines.insert(1, "-" * len(lines[0]))
        lines += ["", "targets:"]
        for name, verdict in self.verdicts().items():
            mark = {True: "PASS", False: "FAIL", None: "n/a "}[verdict["pass"]]
            lines.append(f"  {mark}  {name}: {verdict['value']} (limit {verdict['limit']})")
        lines += self.disturbances()
        for name, figures in (("floor", self.floor), ("connector", self.connector)):
            problems = get(figures, "server_problems.top") or {}
            failures = {**(get(figures, "connect.failures") or {}), **(get(figures, "steady.errors") or {})}
            for what, count in [*problems.items(), *failures.items()]:
                lines.append(f"  {name}: {count} x {what}")
        return "\n".join(line.rstrip() for line in lines)

    def disturbances(self) -> list[str]:
        """Phases during which the rest of the machine was busy: their figures are not clean."""
        lines = []
        for name, figures in (("floor", self.floor), ("connector", self.connector)):
            for phase in ("connect", "commands", "steady", "burst"):
                rest = get(figures, f"{phase}.rest_cpu_percent")
                if isinstance(rest, int | float) and rest > BUSY_MACHINE_PERCENT:
                    lines.append(
                        f"  WARNING {name} {phase}: the rest of the machine used {rest:g} % of a core"
                        " (other processes, kernel network work): figures disturbed"
                    )
        return lines


def below(value: Any, limit: float, relation: str) -> tuple[Any, str, bool | None]:
    if not isinstance(value, int | float):
        return None, f"{relation} {limit:g}", None
    return value, f"{relation} {limit:g}", value <= limit if relation == "<=" else value < limit


def all_served(figures: Figures | None) -> tuple[Any, str, bool | None]:
    """Every charger booted, every message answered, every value published, in every phase run."""
    if figures is None:
        return None, "nothing lost", None
    lost = {
        "not_booted": get(figures, "connect.chargers") - get(figures, "connect.booted"),
        "lost_commands": get(figures, "commands.lost") or 0,
    }
    for phase in ("steady", "burst"):
        if phase in figures:
            lost[f"{phase}_lost_answers"] = get(figures, f"{phase}.lost_answers")
            lost[f"{phase}_lost_values"] = get(figures, f"{phase}.lost_values")
    return lost, "nothing lost", not any(lost.values())
