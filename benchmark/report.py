"""The output of `bench.py`: a table (floor, connector, ratio, target) and the JSON document.

Figures come in per server as nested dicts (phase -> figure); a missing phase (the floor
has no commands, a skipped burst) prints as `-`. Verdicts are judged only on what was
measured: the ratios need both servers. The limits are the targets of the performance
work "Performance II". With `--repeat`, the table shows the run whose CPU ratio is the
median (the lower middle one for an even count), the CPU verdict judges the median of all
runs' ratios, and "nothing lost" holds for every run.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Figures = dict[str, Any]

CPU_RATIO_LIMIT = 1.5
LATENCY_RATIO_LIMIT = 1.5
MEMORY_LIMIT_KB = 30.0
COMMAND_P99_LIMIT_MS = 25.0  # MQTT actuator value -> CALL on the charger's socket
STATUS_P99_LIMIT_MS = 50.0  # the charger's answer -> the command status on MQTT
CLOSED_LOOP_VALUES_LIMIT = 0.98  # values published per s / (answered per s x mapped)
SHUTDOWN_LIMIT_S = 5.0
PHASES = ("connect", "commands", "steady", "burst", "closed_loop")
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
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{value:,}"


def joined(*paths: str, sep: str = " / ") -> Callable[[Figures | None], str]:
    def show(figures: Figures | None) -> str:
        values = [get(figures, path) for path in paths]
        return "-" if all(v is None for v in values) else sep.join(number(v) for v in values)

    return show


def ratio_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def nonzero(path: str) -> Callable[[Figures | None], str]:
    """A figure that is 0 unless an option is on (the hogs' CPU): `-` when 0."""
    show = joined(path)
    return lambda figures: show(figures) if get(figures, path) else "-"


def fraction(path: str) -> Callable[[Figures | None], str]:
    """A figure near 1 whose second and third decimals matter (0.976 fails a limit of 0.98)."""

    def show(figures: Figures | None) -> str:
        value = get(figures, path)
        return "-" if value is None else f"{value:.3f}"

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
    Row(
        "commands: status after the charger's answer p50 / p99 / max ms",
        spread("commands.status_latency_ms"),
        target=f"p99 < {STATUS_P99_LIMIT_MS:g}",
    ),
    Row("commands: status after the MQTT publish p50 / p99 / max ms", spread("commands.status_after_publish_ms")),
    Row("commands: arrived / statuses / sent", joined("commands.arrived", "commands.statuses", "commands.sent")),
    Row(
        "commands: CPU % server / generator worker / subscriber / broker / rest",
        cpu_spread("commands"),
    ),
    Row("steady: answered / sent messages", joined("steady.messages_answered", "steady.messages_sent")),
    Row("steady: values received / expected", joined("steady.values_received", "steady.values_expected")),
    Row("steady: raw messages received / expected", joined("steady.raw_received", "steady.raw_expected")),
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
    Row("steady: raw message latency p50 / p99 / max ms", spread("steady.raw_latency_ms"), "steady.raw_latency_ms.p99"),
    Row("steady: answer latency p50 / p99 / max ms", spread("steady.answer_latency_ms")),
    Row("steady: generator send lag p99 / max ms", spread("steady.send_lag_ms", ("p99", "max"))),
    Row(
        "steady: commands beside: arrived / statuses / sent",
        joined("steady.commands.arrived", "steady.commands.statuses", "steady.commands.sent"),
    ),
    Row("steady: commands beside: latency p50 / p99 / max ms", spread("steady.commands.latency_ms")),
    Row(
        "steady: commands beside: status after answer p50 / p99 / max ms",
        spread("steady.commands.status_latency_ms"),
        target=f"p99 < {STATUS_P99_LIMIT_MS:g}",
    ),
    Row(
        "steady: CPU % server / generator worker / subscriber / broker / rest",
        cpu_spread("steady"),
    ),
    Row("steady: CPU % of the hogs, all cores", nonzero("steady.hog_cpu_percent")),
    Row("burst: answered / sent messages", joined("burst.messages_answered", "burst.messages_sent")),
    Row("burst: values received / expected", joined("burst.values_received", "burst.values_expected")),
    Row("burst: raw messages received / expected", joined("burst.raw_received", "burst.raw_expected")),
    Row("burst: messages per s, all values delivered", joined("burst.messages_per_s"), "burst.messages_per_s"),
    Row("burst: CPU per message us", joined("burst.cpu_us_per_message"), "burst.cpu_us_per_message"),
    Row("burst: value latency p50 / p99 / max ms", spread("burst.value_latency_ms")),
    Row(
        "burst: CPU % server / generator worker / subscriber / broker / rest",
        cpu_spread("burst"),
    ),
    Row(
        "closed loop: answered / sent messages",
        joined("closed_loop.messages_answered", "closed_loop.messages_sent"),
    ),
    Row(
        "closed loop: values received / expected",
        joined("closed_loop.values_received", "closed_loop.values_expected"),
    ),
    Row(
        "closed loop: raw messages received / expected",
        joined("closed_loop.raw_received", "closed_loop.raw_expected"),
    ),
    Row(
        "closed loop: answered per s / values per s",
        joined("closed_loop.answered_per_s", "closed_loop.values_per_s"),
        "closed_loop.answered_per_s",
    ),
    Row(
        "closed loop: values per s / (answered per s x mapped)",
        fraction("closed_loop.values_per_answered_value"),
        target=f">= {CLOSED_LOOP_VALUES_LIMIT:g}",
    ),
    Row(
        "closed loop: value age p50 / p90 / p99 / max ms",
        spread("closed_loop.value_latency_ms", ("p50", "p90", "p99", "max")),
        "closed_loop.value_latency_ms.p99",
        f"p99 ratio <= {LATENCY_RATIO_LIMIT:g}",
    ),
    Row(
        "closed loop: raw message latency p50 / p99 / max ms",
        spread("closed_loop.raw_latency_ms"),
        "closed_loop.raw_latency_ms.p99",
    ),
    Row(
        "closed loop: CPU per message us",
        joined("closed_loop.cpu_us_per_message"),
        "closed_loop.cpu_us_per_message",
    ),
    Row(
        "closed loop: server RSS KB start / peak / end",
        joined("closed_loop.rss_kb_start", "closed_loop.rss_kb_peak", "closed_loop.rss_kb_end"),
    ),
    Row(
        "closed loop: CPU % server / generator worker / subscriber / broker / rest",
        cpu_spread("closed_loop"),
    ),
    Row("server stderr WARNING/ERROR lines", joined("server_problems.count")),
    Row(
        "shutdown on SIGTERM s / exit code / under load",
        joined("stop.shutdown_s", "stop.exit_code", "stop.under_load"),
        target=f"<= {SHUTDOWN_LIMIT_S:g} s",
    ),
]


def cpu_ratio(run: dict[str, Figures]) -> float | None:
    """One run's steady CPU per message, connector over floor."""
    return ratio(run.get("floor"), run.get("connector"), "steady.cpu_us_per_message")


def speed_adjusted_cpu_ratio(run: dict[str, Figures]) -> float | None:
    """One run's CPU ratio with each server's CPU per message divided by its load generator's
    CPU share: the generator does the same work in both halves of a run, so its CPU tells how
    fast the machine was in each (a shared host's speed drifts by tens of percent within
    minutes). A diagnostic beside the ratio, never the verdict."""
    adjusted = []
    for target in ("floor", "connector"):
        figures = run.get(target)
        cpu, generator = get(figures, "steady.cpu_us_per_message"), get(figures, "steady.generator_cpu_percent")
        if not isinstance(cpu, int | float) or not isinstance(generator, int | float) or generator <= 0:
            return None
        adjusted.append(cpu / generator)
    floor, connector = adjusted
    return quotient(connector, floor)


def ratio(floor_figures: Figures | None, connector_figures: Figures | None, path: str) -> float | None:
    floor, connector = get(floor_figures, path), get(connector_figures, path)
    if not isinstance(floor, int | float) or not isinstance(connector, int | float):
        return None
    return quotient(connector, floor)


def quotient(figure: float, against: float) -> float | None:
    """figure / against to 2 places, or None (shown `-`) where `against` is 0: in a short run,
    less CPU than the clock's 10 ms tick is read as none."""
    return round(figure / against, 2) if against > 0 else None


class Report:
    def __init__(self, runs: list[dict[str, Figures]], load: str = "") -> None:
        """`runs`: each run's figures per server ("floor", "connector"), in the order they ran."""
        self.runs = runs
        self.cpu_ratios = [cpu_ratio(run) for run in runs]
        measured = sorted((r, i) for i, r in enumerate(self.cpu_ratios) if r is not None)
        self.median_cpu_ratio = round(statistics.median(r for r, _ in measured), 2) if measured else None
        self.speed_adjusted_ratios = [speed_adjusted_cpu_ratio(run) for run in runs]
        adjusted = [r for r in self.speed_adjusted_ratios if r is not None]
        self.median_speed_adjusted_ratio = round(statistics.median(adjusted), 2) if adjusted else None
        self.shown = measured[(len(measured) - 1) // 2][1] if measured else 0  # the median run (lower middle)
        self.floor = runs[self.shown].get("floor")
        self.connector = runs[self.shown].get("connector")
        self.load = load  # what the chargers spoke and sent: "OCPP 2.0.1: MeterValues / TransactionEvent"

    def ratio(self, path: str) -> float | None:
        return ratio(self.floor, self.connector, path)

    def ratios(self) -> dict[str, float | None]:
        return {
            "cpu_per_message": self.ratio("steady.cpu_us_per_message"),
            "p99_value_latency": self.ratio("steady.value_latency_ms.p99"),
            "memory_per_charger": self.ratio("connect.rss_kb_per_charger"),
            "burst_cpu_per_message": self.ratio("burst.cpu_us_per_message"),
            "burst_messages_per_s": self.ratio("burst.messages_per_s"),
            "p99_raw_latency": self.ratio("steady.raw_latency_ms.p99"),
            "closed_loop_answered_per_s": self.ratio("closed_loop.answered_per_s"),
            "closed_loop_p99_value_age": self.ratio("closed_loop.value_latency_ms.p99"),
            "closed_loop_cpu_per_message": self.ratio("closed_loop.cpu_us_per_message"),
        }

    def verdicts(self) -> dict[str, dict[str, Any]]:
        """Each target of the issue: the measured value, the limit, pass (None: not measured)."""
        ratios = self.ratios()
        connector = self.connector
        stop = get(connector, "stop.shutdown_s")
        checks: dict[str, tuple[Any, str, bool | None]] = {
            "cpu_per_message_ratio": judge(self.median_cpu_ratio, CPU_RATIO_LIMIT, "<="),
            "p99_latency_ratio": judge(ratios["p99_value_latency"], LATENCY_RATIO_LIMIT, "<="),
            "memory_per_charger_kb": judge(get(connector, "connect.rss_kb_per_charger"), MEMORY_LIMIT_KB, "<="),
            "command_p99_ms": judge(get(connector, "commands.latency_ms.p99"), COMMAND_P99_LIMIT_MS, "<"),
            "command_status_p99_ms": judge(get(connector, "commands.status_latency_ms.p99"), STATUS_P99_LIMIT_MS, "<"),
            "command_status_beside_load_p99_ms": judge(
                get(connector, "steady.commands.status_latency_ms.p99"), STATUS_P99_LIMIT_MS, "<"
            ),
            "closed_loop_values_per_answered": judge(
                get(connector, "closed_loop.values_per_answered_value"), CLOSED_LOOP_VALUES_LIMIT, ">="
            ),
            "closed_loop_p99_age_ratio": judge(ratios["closed_loop_p99_value_age"], LATENCY_RATIO_LIMIT, "<="),
            "shutdown_s": judge(stop if get(connector, "stop.exit_code") == 0 else None, SHUTDOWN_LIMIT_S, "<="),
            "connector_all_served": all_served([run.get("connector") for run in self.runs]),
            "floor_all_served": all_served([run.get("floor") for run in self.runs]),
        }
        return {name: {"value": value, "limit": limit, "pass": ok} for name, (value, limit, ok) in checks.items()}

    def document(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "load": self.load,
            "floor": self.floor,
            "connector": self.connector,
            "ratios": self.ratios(),
            "targets": self.verdicts(),
        }
        if len(self.runs) > 1:
            document["shown_run"] = self.shown
            document["cpu_per_message_ratios"] = self.cpu_ratios
            document["median_cpu_per_message_ratio"] = self.median_cpu_ratio
            document["speed_adjusted_cpu_per_message_ratios"] = self.speed_adjusted_ratios
            document["median_speed_adjusted_cpu_per_message_ratio"] = self.median_speed_adjusted_ratio
            document["runs"] = self.runs
        return document

    def table(self) -> str:
        header = (self.load, "floor", "connector", "ratio", "target")
        rows = [header]
        for row in ROWS:
            shown = row.show(self.floor), row.show(self.connector)
            if shown == ("-", "-"):  # a phase or figure this run does not have (its verdict says n/a)
                continue
            ratio = self.ratio(row.ratio_of) if row.ratio_of else None
            rows.append((row.label, *shown, number(ratio), row.target))
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
        lines.insert(1, "-" * len(lines[0]))
        lines += self.repeats()
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

    def repeats(self) -> list[str]:
        """With several runs: each run's steady CPU per message and ratio, and which run the table shows."""
        if len(self.runs) < 2:
            return []
        shown = self.shown + 1
        lines = ["", f"runs (steady CPU per message us, floor / connector = ratio; the table shows run {shown}):"]
        runs = zip(self.runs, self.cpu_ratios, self.speed_adjusted_ratios, strict=True)
        for i, (run, r, adjusted) in enumerate(runs):
            floor, connector = (get(run.get(t), "steady.cpu_us_per_message") for t in ("floor", "connector"))
            generators = " / ".join(
                number(get(run.get(t), "steady.generator_cpu_percent")) for t in ("floor", "connector")
            )
            lines.append(
                f"  run {i + 1}: {number(floor)} / {number(connector)} = {ratio_text(r)}"
                f"  (generator CPU % {generators}; speed-adjusted {ratio_text(adjusted)})"
            )
        lines.append(f"  median ratio: {ratio_text(self.median_cpu_ratio)}")
        adjusted_median = ratio_text(self.median_speed_adjusted_ratio)
        lines.append(f"  median speed-adjusted ratio (a diagnostic, not the verdict): {adjusted_median}")
        return lines

    def disturbances(self) -> list[str]:
        """Phases during which the rest of the machine was busy: their figures are not clean."""
        lines = []
        for name, figures in (("floor", self.floor), ("connector", self.connector)):
            for phase in PHASES:
                rest = get(figures, f"{phase}.rest_cpu_percent")
                if isinstance(rest, int | float) and rest > BUSY_MACHINE_PERCENT:
                    lines.append(
                        f"  WARNING {name} {phase}: the rest of the machine used {rest:g} % of a core"
                        " (other processes, kernel network work): figures disturbed"
                    )
        return lines


def judge(value: Any, limit: float, relation: str) -> tuple[Any, str, bool | None]:
    """(value, limit as text, whether `value relation limit`; None when not measured)."""
    if not isinstance(value, int | float):
        return None, f"{relation} {limit:g}", None
    ok = {"<=": value <= limit, "<": value < limit, ">=": value >= limit}[relation]
    return value, f"{relation} {limit:g}", ok


def all_served(runs: list[Figures | None]) -> tuple[Any, str, bool | None]:
    """Every charger booted, every message answered, every value, status and raw message
    published, in every phase of every run (the losses summed over the runs)."""
    measured = [figures for figures in runs if figures is not None]
    if not measured:
        return None, "nothing lost", None
    lost: dict[str, int] = {}
    for figures in measured:
        for name, count in losses(figures).items():
            lost[name] = lost.get(name, 0) + count
    return lost, "nothing lost", not any(lost.values())


def losses(figures: Figures) -> dict[str, int]:
    lost = {
        "not_booted": get(figures, "connect.chargers") - get(figures, "connect.booted"),
        "lost_commands": get(figures, "commands.lost") or 0,
        "lost_statuses": get(figures, "commands.lost_statuses") or 0,
    }
    for phase in ("steady", "burst", "closed_loop"):
        if phase in figures:
            lost[f"{phase}_lost_answers"] = get(figures, f"{phase}.lost_answers")
            lost[f"{phase}_lost_values"] = get(figures, f"{phase}.lost_values")
            if get(figures, f"{phase}.raw_expected") is not None:
                lost[f"{phase}_lost_raw"] = get(figures, f"{phase}.lost_raw")
    if get(figures, "steady.commands") is not None:
        lost["steady_lost_commands"] = get(figures, "steady.commands.lost")
        lost["steady_lost_statuses"] = get(figures, "steady.commands.lost_statuses")
    return lost
