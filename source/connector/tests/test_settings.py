"""Settings.from_env: defaults, parsing, and one problem line per bad variable (INTERFACE.md 1, 2, 6)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from connector.actuators import ACTUATOR_NAMES
from connector.settings import VARIABLES, Settings, SettingsError, default_text, redis_address, usage

DEFAULTS: list[tuple[str, Any]] = [
    ("connector_name", "ocpp-connector"),
    ("mqtt_broker_host", "localhost"),
    ("mqtt_broker_port", 1883),
    ("mqtt_username", None),
    ("mqtt_password", None),
    ("send_raw_message_to_db", False),
    ("debug", False),
    ("ocpp_host", "0.0.0.0"),
    ("ocpp_port", 9000),
    ("enabled_actuators", ACTUATOR_NAMES),
    ("heartbeat_interval", 30.0),
    ("charger_heartbeat_interval", 300),
    ("ocpp_response_timeout", 60.0),
    ("ocpp_ping_interval", 60.0),
    ("charging_phases", 3),
    ("state_dir", "./state"),
    ("ocpp_max_connections", 25000),
    ("ocpp_max_unauthenticated_per_address", 50),
    ("ocpp_max_unauthenticated", 10000),
]


@pytest.mark.parametrize(("attribute", "expected"), DEFAULTS, ids=[a for a, _ in DEFAULTS])
def test_empty_environment_gives_the_documented_defaults(attribute: str, expected: Any) -> None:
    """An empty environment yields the default of every setting as INTERFACE.md section 2 lists it."""
    assert getattr(Settings.from_env({}), attribute) == expected


@pytest.mark.parametrize("value", ["", "   "], ids=["empty", "blank"])
def test_empty_values_count_as_unset(value: str) -> None:
    """A variable set to an empty or blank string falls back to its default instead of being refused."""
    env = {name: value for name in ("CONNECTOR_NAME", "MQTT_BROKER_PORT", "DEBUG", "OCPP_CONFIG", "HEARTBEAT_INTERVAL")}
    assert Settings.from_env(env) == Settings.from_env({})


PARSED: list[tuple[str, str, str, Any]] = [
    ("CONNECTOR_NAME", "wallbox-connector", "connector_name", "wallbox-connector"),
    ("MQTT_BROKER_HOST", "broker.example", "mqtt_broker_host", "broker.example"),
    ("MQTT_BROKER_PORT", "8883", "mqtt_broker_port", 8883),
    ("MQTT_BROKER_PORT", " 1884 ", "mqtt_broker_port", 1884),
    ("MQTT_BROKER_PORT", "65535", "mqtt_broker_port", 65535),
    ("MQTT_USERNAME", "bemcom", "mqtt_username", "bemcom"),
    ("MQTT_PASSWORD", "hunter2", "mqtt_password", "hunter2"),
    ("SEND_RAW_MESSAGE_TO_DB", "TRUE", "send_raw_message_to_db", True),
    ("DEBUG", "TRUE", "debug", True),
    ("OCPP_HOST", "127.0.0.1", "ocpp_host", "127.0.0.1"),
    ("OCPP_PORT", "9220", "ocpp_port", 9220),
    ("OCPP_PORT", "0", "ocpp_port", 0),
    ("OCPP_CONFIG", '["execute_trigger_message"]', "enabled_actuators", frozenset({"execute_trigger_message"})),
    ("OCPP_CONFIG", "[]", "enabled_actuators", frozenset()),
    ("OCPP_CONFIG", json.dumps(sorted(ACTUATOR_NAMES)), "enabled_actuators", ACTUATOR_NAMES),
    ("HEARTBEAT_INTERVAL", "5", "heartbeat_interval", 5.0),
    ("HEARTBEAT_INTERVAL", "0.5", "heartbeat_interval", 0.5),
    ("OCPP_CHARGER_HEARTBEAT_INTERVAL", "60", "charger_heartbeat_interval", 60),
    ("OCPP_RESPONSE_TIMEOUT", "10", "ocpp_response_timeout", 10.0),
    ("OCPP_PING_INTERVAL", "0", "ocpp_ping_interval", 0.0),
    ("CHARGING_PHASES", "1", "charging_phases", 1),
    ("CHARGING_PHASES", "3", "charging_phases", 3),
    ("STATE_DIR", "/var/lib/ocpp", "state_dir", "/var/lib/ocpp"),
    ("OCPP_MAX_UNAUTHENTICATED_PER_ADDRESS", "200", "ocpp_max_unauthenticated_per_address", 200),
    ("OCPP_MAX_UNAUTHENTICATED", "10000", "ocpp_max_unauthenticated", 10000),
    ("OCPP_ALLOWED_CHARGE_POINTS", "CP_1, ,CP_2", "allowed_charge_points", frozenset({"CP_1", "CP_2"})),
]


@pytest.mark.parametrize(
    ("variable", "raw", "attribute", "expected"),
    PARSED,
    ids=[f"{v}={r.strip() or 'blank'}"[:60] for v, r, _, _ in PARSED],
)
def test_each_variable_is_parsed(variable: str, raw: str, attribute: str, expected: Any) -> None:
    """Each variable's text becomes the typed setting it configures."""
    settings = Settings.from_env({variable: raw})
    assert getattr(settings, attribute) == expected
    assert type(getattr(settings, attribute)) is type(expected)


FLAGS = [("TRUE", True), ("FALSE", False), ("true", True), ("false", False), ("1", True), ("0", False)]


@pytest.mark.parametrize("variable", ["SEND_RAW_MESSAGE_TO_DB", "DEBUG"])
@pytest.mark.parametrize(("raw", "expected"), FLAGS, ids=[raw for raw, _ in FLAGS])
def test_booleans_accept_the_usual_spellings(variable: str, raw: str, expected: bool) -> None:
    """Boolean variables accept TRUE/FALSE in any case and 1/0."""
    settings = Settings.from_env({variable: raw})
    assert getattr(settings, variable.lower()) is expected


# (variable, bad value, what the problem line must say is accepted)
BAD: list[tuple[str, str, str]] = [
    ("MQTT_BROKER_PORT", "mqtt", "whole number"),
    ("MQTT_BROKER_PORT", "1883.5", "whole number"),
    ("MQTT_BROKER_PORT", "0", ">= 1"),
    ("MQTT_BROKER_PORT", "70000", "1..65535"),
    ("OCPP_PORT", "-1", ">= 0"),
    ("OCPP_PORT", "65536", "0..65535"),
    ("OCPP_PORT", "ninethousand", "whole number"),
    ("SEND_RAW_MESSAGE_TO_DB", "maybe", "TRUE or FALSE"),
    ("DEBUG", "2", "TRUE or FALSE"),
    ("HEARTBEAT_INTERVAL", "soon", "number >= 0.1"),
    ("HEARTBEAT_INTERVAL", "0", "number >= 0.1"),
    ("HEARTBEAT_INTERVAL", "nan", "number >= 0.1"),
    # The heartbeat payload carries `next_heartbeats_timestamp` in integer ms (section 3):
    # an infinite interval cannot be expressed there, so it is a bad setting.
    ("HEARTBEAT_INTERVAL", "inf", "number >= 0.1"),
    ("OCPP_CHARGER_HEARTBEAT_INTERVAL", "0", "whole number >= 1"),
    ("OCPP_CHARGER_HEARTBEAT_INTERVAL", "1.5", "whole number >= 1"),
    ("OCPP_RESPONSE_TIMEOUT", "0", "number >= 0.1"),
    ("OCPP_RESPONSE_TIMEOUT", "never", "number >= 0.1"),
    ("OCPP_PING_INTERVAL", "-1", "number >= 0"),
    ("CHARGING_PHASES", "2", "1 or 3"),
    ("CHARGING_PHASES", "three", "whole number"),
    ("OCPP_CONFIG", "execute_reset", "JSON list of actuator names"),
    ("OCPP_CONFIG", '"execute_trigger_message"', "JSON list of actuator names"),
    ("OCPP_CONFIG", '{"execute_trigger_message": true}', "JSON list of actuator names"),
    ("OCPP_CONFIG", "[1, 2]", "JSON list of actuator names"),
    ("OCPP_CONFIG", '["execute_trigger_message", "execute_make_coffee"]', "execute_trigger_message"),
    ("OCPP_CONFIG", '["trigger_message"]', "execute_send_charging_profile"),
    ("OCPP_ALLOWED_CHARGE_POINTS", ",", "lists no charge point"),
    ("OCPP_ALLOWED_CHARGE_POINTS", " , ,", "lists no charge point"),
    ("OCPP_ALLOWED_ID_TAGS", ",", "lists no id tag"),
    ("OCPP_MAX_UNAUTHENTICATED_PER_ADDRESS", "0", "whole number >= 1"),
    ("OCPP_MAX_UNAUTHENTICATED", "many", "whole number >= 1"),
    ("STATE_URL", "http://redis:6379", "redis://"),
    ("STATE_URL", "redis://", "no host"),
    ("STATE_URL", "redis://redis:6379/one", "not a database number"),
    ("STATE_URL", "redis://redis:99999/0", "redis://[:password@]host"),
    ("CONNECTOR_INSTANCE", "site/1", "without + # /"),
    ("CONNECTOR_INSTANCE", "a" * 65, "up to 64 printable characters"),
    ("CONNECTOR_INSTANCE", "line\nbreak", "printable"),
]


@pytest.mark.parametrize(("variable", "raw", "accepted"), BAD, ids=[f"{v}={r}"[:60] for v, r, _ in BAD])
def test_a_bad_value_gives_one_line_naming_the_variable_and_what_it_accepts(
    variable: str, raw: str, accepted: str
) -> None:
    """A bad value is refused with exactly one single-line problem that names the variable and what it accepts."""
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: raw})
    [problem] = caught.value.problems
    assert variable in problem
    assert accepted in problem
    assert "\n" not in problem


@pytest.mark.parametrize("unknown", ["execute_make_coffee", "trigger_message"], ids=["made-up", "missing-prefix"])
def test_unknown_actuator_names_are_named_in_the_problem(unknown: str) -> None:
    """OCPP_CONFIG naming an unknown actuator is refused and the problem line names the unknown one."""
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"OCPP_CONFIG": f'["execute_trigger_message", "{unknown}"]'})
    assert unknown in str(caught.value)


def test_several_bad_values_are_reported_at_once() -> None:
    """Every bad variable gets its own problem line in a single SettingsError, so one fix-up round suffices."""
    env = {
        "MQTT_BROKER_PORT": "mqtt",
        "DEBUG": "sometimes",
        "OCPP_PORT": "99999",
        "HEARTBEAT_INTERVAL": "-3",
        "OCPP_CONFIG": '["execute_nothing"]',
        "CHARGING_PHASES": "2",
        "CONNECTOR_NAME": "fine",
    }
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    problems = caught.value.problems
    named = [v for v in env if v != "CONNECTOR_NAME"]
    assert len(problems) == len(named)
    for variable in named:
        assert sum(variable in problem for problem in problems) == 1, variable
    assert all(problem in str(caught.value) for problem in problems)


SECRETS = [
    ("MQTT_PASSWORD", "Zq7-very-secret"),
    ("OCPP_BASIC_AUTH", '{"CP_1": "Zq7-very-secret"}'),
    ("STATE_URL", "redis://:Zq7-very-secret@redis:6379/0"),
]


def test_a_bad_state_url_is_refused_without_quoting_its_password() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"STATE_URL": "redis://:Zq7-very-secret@redis:port/0"})
    assert "Zq7-very-secret" not in str(caught.value)


def test_logs_show_where_redis_is_never_the_password() -> None:
    assert redis_address("redis://user:Zq7@redis:6380/2") == "redis:6380/2"
    assert redis_address("redis://redis/0?password=Zq7") == "redis:6379/0"
    assert redis_address("unix:///run/redis.sock?db=1&password=Zq7") == "unix:/run/redis.sock"


@pytest.mark.parametrize("url", ["redis://:Zq7/very@redis:6379/0", "redis://:Zq7?x@redis/0", "redis://:a@b/Zq7"])
def test_a_password_that_breaks_the_url_is_not_quoted(url: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"STATE_URL": url})
    assert "Zq7" not in str(caught.value)


def test_a_unix_socket_is_a_state_url() -> None:
    assert Settings.from_env({"STATE_URL": "unix:///run/redis.sock?db=1"}).state_url == "unix:///run/redis.sock?db=1"


def test_the_instance_name_is_the_host_name_unless_set() -> None:
    assert Settings.from_env({}).connector_instance == socket.gethostname()
    assert Settings.from_env({"CONNECTOR_INSTANCE": "connector-2"}).connector_instance == "connector-2"


@pytest.mark.parametrize(("variable", "raw"), SECRETS, ids=[v for v, _ in SECRETS])
def test_secrets_stay_out_of_the_repr(variable: str, raw: str) -> None:
    """Settings are logged in debug mode, so no secret appears in repr(settings) or str(settings)."""
    settings = Settings.from_env({variable: raw, "MQTT_USERNAME": "bemcom"})
    assert "Zq7-very-secret" not in repr(settings)
    assert "Zq7-very-secret" not in str(settings)


def test_settings_are_frozen() -> None:
    """Settings cannot be changed after they are built."""
    settings = Settings.from_env({})
    with pytest.raises(AttributeError):
        settings.debug = True  # type: ignore[misc]


class Recording(Mapping[str, str]):
    """An empty environment that notes every variable asked for."""

    def __init__(self) -> None:
        self.asked: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.asked.add(name)
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def test_the_variable_table_lists_exactly_what_is_read() -> None:
    """Every variable from_env reads is in VARIABLES (which --help prints), and nothing else is."""
    environment = Recording()
    Settings.from_env(environment)
    assert environment.asked == {variable.name for variable in VARIABLES}


@pytest.mark.parametrize("variable", [v for v in VARIABLES if v.default is None], ids=lambda v: v.name)
def test_each_default_shown_is_the_default_in_force(variable: Any) -> None:
    """The default --help shows for a variable, set explicitly, gives the same setting as leaving it unset."""
    shown = default_text(variable)
    env = {} if shown == "unset" else {variable.name: shown}
    assert getattr(Settings.from_env(env), variable.attribute) == getattr(Settings(), variable.attribute)


def test_usage_names_every_variable_with_its_default() -> None:
    """The usage text has a line for each variable with its default."""
    lines = usage().splitlines()
    for variable in VARIABLES:
        [line] = [line for line in lines if line.split()[:1] == [variable.name]]
        assert default_text(variable) in line


@pytest.mark.parametrize(
    ("setting", "brokers"),
    [
        ("broker", [("broker", 1884)]),
        ("a, b:1885 ,10.0.0.3", [("a", 1884), ("b", 1885), ("10.0.0.3", 1884)]),
        ("[fd00::1]:1886,[fd00::2],::1", [("fd00::1", 1886), ("fd00::2", 1884), ("::1", 1884)]),
    ],
)
def test_several_brokers_in_order_each_with_its_port_or_the_default(setting: str, brokers: list[Any]) -> None:
    settings = Settings.from_env({"MQTT_BROKER_HOST": setting, "MQTT_BROKER_PORT": "1884"})
    assert [tuple(b) for b in settings.mqtt_brokers] == brokers


def test_broker_addresses_read_as_operators_write_them() -> None:
    settings = Settings.from_env({"MQTT_BROKER_HOST": "a,[fd00::1]:1886"})
    assert settings.mqtt_broker_address == "a:1883,[fd00::1]:1886"


@pytest.mark.parametrize("setting", ["a,,b", "a:0", "a:70000", "a:x", "[fd00::1", "[fd00::1]x", ":1883", "a b"])
def test_a_broker_list_that_cannot_be_used_is_refused(setting: str) -> None:
    with pytest.raises(SettingsError, match="MQTT_BROKER_HOST="):
        Settings.from_env({"MQTT_BROKER_HOST": setting})
