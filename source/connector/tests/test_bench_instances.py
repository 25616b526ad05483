"""The scale-out benchmark (benchmark/instances.py): runs end to end, spreads chargers, reports ratios."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from connector.shared import ALIVE_TTL_S

BENCHMARK = Path(__file__).resolve().parents[3] / "benchmark"
sys.path.append(str(BENCHMARK))  # after the packages: shadows none
instances: ModuleType = importlib.import_module("instances")
instances_report: ModuleType = importlib.import_module("instances_report")
loadgen: ModuleType = importlib.import_module("loadgen")

CHARGERS = 12


def test_runs_baseline_and_one_and_two_instances_end_to_end(tmp_path: Path) -> None:
    """A tiny run of the baseline, 1 and 2 instances serves every charger and writes every figure the issue asks for."""
    out = tmp_path / "instances.json"
    command = [sys.executable, str(BENCHMARK / "instances.py"), "--chargers", str(CHARGERS), "--instances", "1,2"]
    # Idle, and load after the first period, as long as an instance may go without a sign of
    # life to Redis: a shorter window could fall between two and count no command (seen
    # with 0.5 s idle, and with the 1 s left after the first period of a 2 s load).
    command += ["--baseline", "--connect-rate", "100", "--period", "1", "--duration", str(1 + ALIVE_TTL_S)]
    command += ["--idle", str(ALIVE_TTL_S)]
    done = subprocess.run([*command, "--json", str(out)], capture_output=True, text=True, timeout=130, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "no HAProxy" in done.stdout
    assert "not a throughput claim" in done.stdout
    document = json.loads(out.read_text())
    assert [row["label"] for row in document["summary"]] == ["baseline", "1 instance", "2 instances"]
    runs = {run["label"]: run for run in document["runs"]}
    for label, count in (("baseline", 1), ("1 instance", 1), ("2 instances", 2)):
        assert_served(runs[label], count)
    assert_redis_figures(runs["2 instances"])
    assert runs["baseline"]["steady"]["redis_cpu_s"] == 0
    assert [i["held_in_redis"] for i in runs["baseline"]["connect"]["per_instance"]] == [None]
    one, two = document["summary"][1], document["summary"][2]
    assert one["cpu_ratio_to_n1"] == 1.0
    assert {"cpu_ratio_to_n1", "cpu_ratio_to_baseline", "cpu_with_redis_ratio_to_baseline"} <= two.keys()
    assert document["runs"][two["shown_run"]]["label"] == "2 instances"


def assert_served(run: dict[str, Any], count: int) -> None:
    """Every charger booted on its instance and had its values published; per instance figures for each."""
    connect, steady = run["connect"], run["steady"]
    assert run["instances"] == count
    assert connect["booted"] == CHARGERS
    assert len(connect["per_instance"]) == count
    assert sum(i["booted"] for i in connect["per_instance"]) == CHARGERS
    assert all(i["rss_kb_connected"] > 0 for i in connect["per_instance"])
    assert steady["messages_answered"] == steady["messages_sent"] > 0
    assert steady["lost_values"] == 0
    assert steady["chargers_served"] == CHARGERS
    assert len(steady["instance_cpu_s"]) == len(steady["rss_kb_after"]) == count
    assert steady["cpu_us_per_message"] > 0
    assert {"p50", "p99"} <= steady["value_latency_ms"].keys()
    assert len(run["stop"]) == count
    assert all(stop["exit_code"] == 0 for stop in run["stop"])


def assert_redis_figures(run: dict[str, Any]) -> None:
    """With Redis: each instance holds its chargers there, and Redis's CPU, commands and memory are counted."""
    connect, steady = run["connect"], run["steady"]
    assert [i["held_in_redis"] for i in connect["per_instance"]] == [i["chargers"] for i in connect["per_instance"]]
    assert connect["redis_commands_per_boot"]["evalsha"] >= 1  # taking a charger is a Lua script
    assert "info" not in steady["redis_commands_per_message"]  # ours, not the instances'
    assert run["idle"]["redis_commands_per_s"] > 0  # the instances' signs of life
    assert steady["redis_bytes_per_charger"] > 0
    assert "redis_cpu_us_per_message" in steady
    assert "cpu_us_per_message_with_redis" in steady
    later = steady["after_first_period"]
    assert 0 < later["messages"] < steady["messages_sent"]
    assert later["cpu_us_per_message"] >= 0  # a second of a tiny load: maybe not one clock tick of CPU
    assert later["redis_commands_per_s"] > 0


def test_chargers_go_to_one_instance_each_by_hash_or_in_turn() -> None:
    """An identity always lands on the same instance by hash; round robin takes the index in turn."""
    identities = [f"CP{i:05d}" for i in range(300)]
    hashed = [instances.instance_of(i, cp, 3, "hash") for i, cp in enumerate(identities)]
    assert hashed == [instances.instance_of(i, cp, 3, "hash") for i, cp in enumerate(identities)]
    assert set(hashed) == {0, 1, 2}
    assert [instances.instance_of(i, cp, 3, "round-robin") for i, cp in enumerate(identities[:4])] == [0, 1, 2, 0]
    assert {instances.instance_of(i, cp, 1, "hash") for i, cp in enumerate(identities)} == {0}


def test_a_connect_order_sends_each_charger_to_its_own_server() -> None:
    """A charger named in `urls` connects there; the others to the order's url."""
    order = loadgen.ConnectOrder("ws://a", [(0, "X"), (1, "Y")], 0.0, 1.0, 1.0, urls={"Y": "ws://b"})
    assert (order.url_of("X"), order.url_of("Y")) == ("ws://a", "ws://b")


def point(label: str, count: int, state: bool, us: float, with_redis: float) -> dict[str, Any]:
    """A run's figures as far as the summary reads them; after the first period, 90 % of the phase's."""
    later = {"cpu_us_per_message": us * 0.9, "redis_cpu_us_per_message": (with_redis - us) * 0.9}
    steady = {"cpu_us_per_message": us, "cpu_us_per_message_with_redis": with_redis, "after_first_period": later}
    return {"label": label, "instances": count, "state_url": state, "steady": steady}


def test_summary_shows_the_median_run_and_ratios_to_one_instance_and_the_baseline() -> None:
    """Repeated runs of a point: the median one is shown; ratios divide by 1 instance's and the baseline's."""
    runs = [
        point("baseline", 1, False, 400, 400),
        point("1 instance", 1, True, 500, 520),
        point("2 instances", 2, True, 700, 730),
        point("2 instances", 2, True, 600, 624),
        point("2 instances", 2, True, 650, 676),
    ]
    rows = {row["label"]: row for row in instances_report.summary(runs)}
    assert list(rows) == ["baseline", "1 instance", "2 instances"]
    two = rows["2 instances"]
    assert two["shown"] is runs[4]
    assert two["cpu_us_per_message_runs"] == [700, 600, 650]
    assert (two["cpu_ratio_to_n1"], two["cpu_with_redis_ratio_to_n1"]) == (1.3, 1.3)
    assert (two["cpu_ratio_to_baseline"], rows["baseline"]["cpu_ratio_to_baseline"]) == (1.62, 1.0)
    assert two["cpu_later_ratio_to_n1"] == 1.3


def test_a_point_that_read_no_cpu_gives_no_ratio() -> None:
    """A short run may read 0 CPU after its first period (under the clock's 10 ms tick): no ratio, no division by 0."""
    runs = [point("baseline", 1, False, 400, 400), point("1 instance", 1, True, 500, 520)]
    runs[1]["steady"]["after_first_period"] = {"cpu_us_per_message": 0.0, "redis_cpu_us_per_message": 0.0}
    rows = {row["label"]: row for row in instances_report.summary(runs)}
    assert rows["baseline"]["cpu_later_ratio_to_n1"] is None
    assert rows["1 instance"]["cpu_later_ratio_to_baseline"] == 0.0
    assert rows["baseline"]["cpu_ratio_to_n1"] == 0.8
