"""compose.yaml, compose.ha.yaml and the configurations they mount, checked without a Docker engine.

There is no Docker engine where these tests run, so the compose file is checked as data:
against the Compose Specification's JSON schema (check-jsonschema ships it), and for what
a schema cannot see: named volumes declared, references between services resolved, files
it mounts or builds from present, settings the connector knows; for compose.ha.yaml also
that it agrees with deploy/haproxy.cfg. The broker configuration in deploy/ is run for
real by the mosquitto the tests use anyway (deploy/haproxy.cfg by test_haproxy.py).
"""

from __future__ import annotations

import getpass
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.settings import VARIABLES, Settings
from connector.tests.harness import WAIT_S, Mosquitto, MqttProbe, mosquitto_binary, wait_for_port

REPO = Path(__file__).resolve().parents[3]
COMPOSE_FILE = REPO / "compose.yaml"
COMPOSE_HA_FILE = REPO / "compose.ha.yaml"
COMPOSE_FILES = [COMPOSE_FILE, COMPOSE_HA_FILE]
HAPROXY_CFG = REPO / "deploy" / "haproxy.cfg"
INSTANCES = ["connector-1", "connector-2", "connector-3"]
MOSQUITTO_CONF = REPO / "deploy" / "mosquitto.conf"
VENV_BIN = Path(sys.executable).parent
HTTP_PORT = 8080  # the operations server's default port (HTTP_PORT)
SIMULATOR_COMMAND = ["python", "-m", "connector.simulator", "--url", "ws://ocpp-connector:9000", "--chargers", "3"]


def compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    """The file as Compose reads it (YAML anchors and `<<` merge keys resolved)."""
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict)
    return document


def services(path: Path = COMPOSE_FILE) -> dict[str, dict[str, Any]]:
    found = compose(path)["services"]
    assert isinstance(found, dict)
    return found


each_compose_file = pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda path: path.name)


def volume_sources(service: dict[str, Any]) -> list[str]:
    """The source of each volume a service mounts, short (`src:dst[:mode]`) or long syntax."""
    sources = []
    for entry in service.get("volumes", []):
        sources.append(entry.split(":", 1)[0] if isinstance(entry, str) else str(entry.get("source", "")))
    return sources


def is_bind_mount(source: str) -> bool:
    """Compose reads a source that starts like a path as a host path, anything else as a volume name."""
    return source.startswith((".", "/", "~"))


def dependencies(service: dict[str, Any]) -> list[str]:
    """The services one depends on, in list or mapping form."""
    depends_on = service.get("depends_on", [])
    return list(depends_on) if isinstance(depends_on, dict | list) else []


def container_ports(service: dict[str, Any]) -> set[int]:
    """The container side of each published port (`host:container` or `container`)."""
    return {int(str(entry).rsplit(":", 1)[-1].split("/")[0]) for entry in service.get("ports", [])}


@each_compose_file
def test_compose_file_follows_the_compose_specification(path: Path) -> None:
    """check-jsonschema finds the compose file valid against the Compose Specification's schema."""
    result = subprocess.run(
        [str(VENV_BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=WAIT_S * 6,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@each_compose_file
def test_every_named_volume_is_declared_and_every_declared_one_used(path: Path) -> None:
    """Each named volume a service mounts is declared at the top level, and none is declared in vain."""
    used = {s for service in services(path).values() for s in volume_sources(service) if not is_bind_mount(s)}
    declared = set(compose(path).get("volumes") or {})
    assert used, "the connector's state and the broker's data belong in named volumes"
    assert used == declared


@each_compose_file
def test_every_bind_mounted_file_exists(path: Path) -> None:
    """Each host path a service mounts is a file or directory of the repository."""
    for name, service in services(path).items():
        for source in volume_sources(service):
            if is_bind_mount(source):
                assert (REPO / source).exists(), f"{name} mounts {source}, which is not in the repository"


@each_compose_file
def test_every_service_has_an_image_or_a_build_whose_dockerfile_exists(path: Path) -> None:
    """Each service names an image or a build, and each build's context and Dockerfile exist."""
    for name, service in services(path).items():
        assert "image" in service or "build" in service, name
        build = service.get("build")
        if build is not None:
            context = REPO / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            assert context.is_dir(), name
            assert (context / dockerfile).is_file(), name


@each_compose_file
def test_depends_on_names_existing_services(path: Path) -> None:
    """Every service a service depends on is defined in the file."""
    for name, service in services(path).items():
        for dependency in dependencies(service):
            assert dependency in services(path), f"{name} depends on {dependency}, which is not a service"


def test_only_the_simulator_waits_for_the_demo_profile() -> None:
    """`docker compose up` starts broker and connector; the simulator only with `--profile demo`."""
    profiles = {name: service.get("profiles", []) for name, service in services().items()}
    assert profiles == {"mosquitto": [], "ocpp-connector": [], "simulator": ["demo"]}


def test_connector_publishes_its_ocpp_and_operations_ports() -> None:
    """The connector's container publishes the OCPP port and the operations HTTP port it listens on by default."""
    assert container_ports(services()["ocpp-connector"]) == {Settings().ocpp_port, HTTP_PORT}


def test_connector_reaches_the_broker_service_by_name() -> None:
    """The connector's broker host is the mosquitto service and its port the one deploy/mosquitto.conf listens on."""
    environment = services()["ocpp-connector"]["environment"]
    listener = re.search(r"^listener (\d+)$", MOSQUITTO_CONF.read_text(), re.MULTILINE)
    assert listener is not None
    assert environment["MQTT_BROKER_HOST"] == "mosquitto"
    assert environment["MQTT_BROKER_HOST"] in dependencies(services()["ocpp-connector"])
    assert int(environment["MQTT_BROKER_PORT"]) == int(listener.group(1))
    assert container_ports(services()["mosquitto"]) == {int(listener.group(1))}


def test_connector_environment_names_only_known_variables() -> None:
    """Every variable compose sets for the connector is one the connector reads (a typo would be ignored silently)."""
    known = {variable.name for variable in VARIABLES}
    assert set(services()["ocpp-connector"]["environment"]) <= known


def test_connector_state_lives_in_a_volume() -> None:
    """STATE_DIR lies inside a volume mounted into the connector, so transaction ids outlive the container."""
    service = services()["ocpp-connector"]
    targets = [str(entry).split(":")[1] for entry in service["volumes"]]
    state_dir = service["environment"]["STATE_DIR"]
    assert any(state_dir == target or state_dir.startswith(target.rstrip("/") + "/") for target in targets)


def test_simulator_runs_the_documented_command_against_the_connector_service() -> None:
    """The simulator runs the connector's image with three chargers against the connector service's OCPP port."""
    simulator = services()["simulator"]
    assert simulator["command"] == SIMULATOR_COMMAND
    assert simulator["image"] == services()["ocpp-connector"]["image"]
    assert "ocpp-connector" in dependencies(simulator)
    assert f"ws://ocpp-connector:{Settings().ocpp_port}" in simulator["command"]


def shipped_config_on(port: int, data: Path) -> str:
    """deploy/mosquitto.conf as shipped, with only what is this machine's changed: port, data folder, user.

    In the image mosquitto starts as root, which owns /mosquitto/data to the user it then
    switches to; here it runs as whoever runs the tests, so that it can write to tmp_path.
    """
    text = MOSQUITTO_CONF.read_text()
    text = re.sub(r"^listener \d+$", f"listener {port} 127.0.0.1", text, count=1, flags=re.MULTILINE)
    text = re.sub(r"^persistence_location .*$", f"persistence_location {data}/", text, count=1, flags=re.MULTILINE)
    return f"{text}user {getpass.getuser()}\n"


@dataclass
class ShippedBroker(Mosquitto):
    """A mosquitto run with deploy/mosquitto.conf instead of the harness's own configuration."""

    def start(self) -> None:
        data = self.directory / "data"
        data.mkdir(exist_ok=True)
        config = self.directory / "shipped.conf"
        config.write_text(shipped_config_on(self.port, data))
        with (self.directory / "mosquitto.log").open("ab") as log:
            self.process = subprocess.Popen([mosquitto_binary(), "-c", str(config)], stdout=log, stderr=log)
        wait_for_port(self.port)


async def test_shipped_broker_config_keeps_retained_values_across_a_restart(tmp_path: Path) -> None:
    """mosquitto runs with deploy/mosquitto.conf, admits anonymous clients, keeps a retained value across a restart."""
    shipped_broker = ShippedBroker(tmp_path)
    shipped_broker.start()
    try:
        publisher = MqttProbe(shipped_broker.port)
        publisher.publish("site/cp1/power", {"value": 7400, "timestamp": 1}, qos=1, retain=True)
        publisher.close()
        shipped_broker.stop()
        assert (tmp_path / "data" / "mosquitto.db").is_file()
        shipped_broker.start()
        subscriber = MqttProbe(shipped_broker.port)
        await subscriber.subscribe("site/#")
        assert await subscriber.wait_for("site/cp1/power") == {"value": 7400, "timestamp": 1}
        subscriber.close()
    finally:
        shipped_broker.stop()


def test_the_demo_simulator_has_no_health_check_of_the_connectors() -> None:
    """The simulator runs the connector's image but serves no /healthz: its inherited HEALTHCHECK is off."""
    assert services()["simulator"]["healthcheck"] == {"disable": True}


def test_unauthenticated_ports_are_published_on_this_machine_only() -> None:
    """The anonymous demo broker and the operations server are published on 127.0.0.1, OCPP on every address."""
    published = {name: [str(p) for p in service.get("ports", [])] for name, service in services().items()}
    assert published["mosquitto"] == ["127.0.0.1:1883:1883"]
    assert "127.0.0.1:8080:8080" in published["ocpp-connector"]
    assert "9000:9000" in published["ocpp-connector"]


# -- compose.ha.yaml: three instances behind HAProxy, state in Redis ----------------------


def ha_services() -> dict[str, dict[str, Any]]:
    return services(COMPOSE_HA_FILE)


def haproxy_servers() -> dict[str, str]:
    """The `server NAME ADDRESS ...` lines of deploy/haproxy.cfg: name -> address."""
    return dict(re.findall(r"^\s*server\s+(\S+)\s+(\S+)", HAPROXY_CFG.read_text(), re.MULTILINE))


def test_ha_instances_are_one_connector_sharing_one_state_store() -> None:
    """Three instances of the connector's image: one CONNECTOR_NAME, each its own CONNECTOR_INSTANCE, one STATE_URL."""
    found = ha_services()
    instances = {name: found[name] for name in INSTANCES}
    assert {s["image"] for s in instances.values()} == {services()["ocpp-connector"]["image"]}
    assert {s["environment"]["CONNECTOR_NAME"] for s in instances.values()} == {"ocpp-connector"}
    assert [s["environment"]["CONNECTOR_INSTANCE"] for s in instances.values()] == INSTANCES
    assert {s["environment"]["STATE_URL"] for s in instances.values()} == {"redis://redis:6379/0"}
    for service in instances.values():
        assert {"mosquitto", "redis"} <= set(dependencies(service))
        assert "ports" not in service, "instances are reached through HAProxy only"


def test_ha_instances_name_only_known_variables() -> None:
    """Every variable compose.ha.yaml sets for an instance is one the connector reads."""
    known = {variable.name for variable in VARIABLES}
    for name in INSTANCES:
        assert set(ha_services()[name]["environment"]) <= known, name


def test_ha_instances_keep_their_own_state_dir_in_their_own_volume() -> None:
    """Each instance's STATE_DIR lies in a named volume that no other instance mounts."""
    sources = []
    for name in INSTANCES:
        service = ha_services()[name]
        (entry,) = service["volumes"]
        source, target = entry.split(":")[:2]
        assert service["environment"]["STATE_DIR"].startswith(target.rstrip("/") + "/")
        sources.append(source)
    assert len(set(sources)) == len(INSTANCES)


def test_haproxy_balances_over_exactly_the_instances_on_their_ports() -> None:
    """deploy/haproxy.cfg names each instance service at its OCPP port and checks /readyz on its HTTP_PORT."""
    assert haproxy_servers() == {name: f"{name}:{Settings().ocpp_port}" for name in INSTANCES}
    for name in INSTANCES:
        environment = ha_services()[name]["environment"]
        assert int(environment["OCPP_PORT"]) == Settings().ocpp_port
        assert int(environment["HTTP_PORT"]) == HTTP_PORT
    assert re.search(rf"^\s*default-server check port {HTTP_PORT} ", HAPROXY_CFG.read_text(), re.MULTILINE)


def test_haproxy_service_publishes_ocpp_and_runs_the_shipped_config() -> None:
    """HAProxy publishes 9000 everywhere, runs deploy/haproxy.cfg where its image reads it, after the instances."""
    haproxy = ha_services()["haproxy"]
    assert [str(p) for p in haproxy["ports"]] == [f"{Settings().ocpp_port}:{Settings().ocpp_port}"]
    assert re.search(rf"^\s*bind :{Settings().ocpp_port}$", HAPROXY_CFG.read_text(), re.MULTILINE)
    assert "./deploy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in haproxy["volumes"]
    assert set(dependencies(haproxy)) == set(INSTANCES)


def test_ha_redis_keeps_the_state_across_its_own_restart() -> None:
    """Redis writes its append-only file into a named volume: the fleet's state outlives a Redis restart."""
    redis = ha_services()["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert volume_sources(redis) == ["redis-data"] and redis["volumes"] == ["redis-data:/data"]
    assert "ports" not in redis


def test_ha_unauthenticated_ports_are_published_on_this_machine_only() -> None:
    """Only OCPP (HAProxy) is published on every address; the anonymous broker on 127.0.0.1; Redis nowhere."""
    published = {name: [str(p) for p in service.get("ports", [])] for name, service in ha_services().items()}
    assert {name: ports for name, ports in published.items() if ports} == {
        "mosquitto": ["127.0.0.1:1883:1883"],
        "haproxy": ["9000:9000"],
    }
