"""Settings: the environment turned into one frozen, validated object.

Pure: `Settings.from_env` reads a mapping, so tests pass plain dicts. Every problem is
collected before anything is raised, so an operator fixes a `.env` in one go instead of
one restart per mistake (the zigbee2mqtt habit).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from connector.actuators import ACTUATOR_NAMES
from connector.authorization import IdTagPolicy

T = TypeVar("T")

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class SettingsError(Exception):
    """One or more variables hold values the connector cannot use."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Settings:
    connector_name: str = "ocpp-connector"
    mqtt_broker_host: str = "localhost"
    mqtt_broker_port: int = 1883
    mqtt_username: str | None = None
    # repr=False: settings are logged at start-up in debug mode; secrets must not be.
    mqtt_password: str | None = field(default=None, repr=False)
    mqtt_queue_limit: int = 1_000_000
    mqtt_tls_ca_file: str | None = None
    # repr=False: a JSON object of passwords, or the path of a file holding one.
    ocpp_basic_auth: str | None = field(default=None, repr=False)
    allowed_charge_points: frozenset[str] | None = None
    ocpp_tls_cert_file: str | None = None
    ocpp_tls_key_file: str | None = None
    ocpp_tls_ca_file: str | None = None
    send_raw_message_to_db: bool = False
    debug: bool = False
    ocpp_host: str = "0.0.0.0"
    ocpp_port: int = 9000
    enabled_actuators: frozenset[str] = ACTUATOR_NAMES
    heartbeat_interval: float = 30.0
    charger_heartbeat_interval: int = 300
    ocpp_response_timeout: float = 60.0
    ocpp_ping_interval: float = 60.0
    charging_phases: int = 3
    reservation_expiry: int = 3600
    id_tags: IdTagPolicy = field(default_factory=IdTagPolicy)
    state_dir: str = "./state"
    # Limits: far above what real fleets reach; a peer beyond one is logged and cut off.
    ocpp_max_frame_size: int = 1_048_576
    ocpp_max_connections: int = 25_000
    ocpp_handshake_timeout: float = 30.0
    ocpp_max_message_rate: float = 1000.0  # per charge point, averaged over 10 s; 0: off
    max_keys_per_charge_point: int = 2000
    forget_after: float = 30 * 24 * 3600.0  # a charge point gone this long is forgotten

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from environment variables, reporting every bad one at once."""
        reader = _Reader(env)
        settings = cls(
            connector_name=reader.topic_prefix("CONNECTOR_NAME", cls.connector_name),
            mqtt_broker_host=reader.text("MQTT_BROKER_HOST", cls.mqtt_broker_host),
            mqtt_broker_port=reader.port("MQTT_BROKER_PORT", cls.mqtt_broker_port, 1),
            mqtt_username=reader.optional("MQTT_USERNAME"),
            mqtt_password=reader.optional("MQTT_PASSWORD"),
            mqtt_queue_limit=reader.number("MQTT_QUEUE_LIMIT", 1_000_000, 1, int),
            mqtt_tls_ca_file=reader.optional("MQTT_TLS_CA_FILE"),
            ocpp_basic_auth=reader.optional("OCPP_BASIC_AUTH"),
            allowed_charge_points=reader.identities("OCPP_ALLOWED_CHARGE_POINTS"),
            ocpp_tls_cert_file=reader.optional("OCPP_TLS_CERT_FILE"),
            ocpp_tls_key_file=reader.optional("OCPP_TLS_KEY_FILE"),
            ocpp_tls_ca_file=reader.optional("OCPP_TLS_CA_FILE"),
            send_raw_message_to_db=reader.flag("SEND_RAW_MESSAGE_TO_DB", False),
            debug=reader.flag("DEBUG", False),
            ocpp_host=reader.text("OCPP_HOST", cls.ocpp_host),
            ocpp_port=reader.port("OCPP_PORT", cls.ocpp_port, 0),
            enabled_actuators=reader.actuators("OCPP_CONFIG"),
            heartbeat_interval=reader.number("HEARTBEAT_INTERVAL", 30.0, 0.1, float),
            charger_heartbeat_interval=reader.number("OCPP_CHARGER_HEARTBEAT_INTERVAL", 300, 1, int),
            ocpp_response_timeout=reader.number("OCPP_RESPONSE_TIMEOUT", 60.0, 0.1, float),
            ocpp_ping_interval=reader.number("OCPP_PING_INTERVAL", 60.0, 0.0, float),
            charging_phases=reader.choice("CHARGING_PHASES", 3, {1, 3}),
            reservation_expiry=reader.number("OCPP_RESERVATION_EXPIRY", 3600, 1, int),
            id_tags=reader.id_tags("OCPP_ALLOWED_ID_TAGS"),
            state_dir=reader.text("STATE_DIR", cls.state_dir),
            ocpp_max_frame_size=reader.number("OCPP_MAX_FRAME_SIZE", cls.ocpp_max_frame_size, 1024, int),
            ocpp_max_connections=reader.number("OCPP_MAX_CONNECTIONS", cls.ocpp_max_connections, 1, int),
            ocpp_handshake_timeout=reader.number("OCPP_HANDSHAKE_TIMEOUT", cls.ocpp_handshake_timeout, 0.1, float),
            ocpp_max_message_rate=reader.number("OCPP_MAX_MESSAGE_RATE", cls.ocpp_max_message_rate, 0.0, float),
            max_keys_per_charge_point=reader.number(
                "OCPP_MAX_KEYS_PER_CHARGE_POINT", cls.max_keys_per_charge_point, 10, int
            ),
            forget_after=reader.number("OCPP_FORGET_AFTER", cls.forget_after, 60.0, float),
        )
        if reader.problems:
            raise SettingsError(reader.problems)
        return settings


class _Reader:
    """Reads typed variables and collects a problem line for each bad one."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self.problems: list[str] = []

    def _raw(self, name: str) -> str | None:
        value = self._env.get(name)
        return None if value is None or value.strip() == "" else value.strip()

    def text(self, name: str, default: str) -> str:
        return self._raw(name) or default

    def optional(self, name: str) -> str | None:
        return self._raw(name)

    def flag(self, name: str, default: bool) -> bool:
        raw = self._raw(name)
        if raw is None:
            return default
        if raw.lower() in _TRUE | _FALSE:
            return raw.lower() in _TRUE
        self.problems.append(f"{name}={raw!r} is not a boolean; use TRUE or FALSE")
        return default

    def number(self, name: str, default: T, minimum: float, kind: Callable[[str], T]) -> T:
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            value = kind(raw)
            # isfinite refuses inf and NaN (no interval or port can be either).
            valid = math.isfinite(value) and value >= minimum  # type: ignore[arg-type, operator]
        except (ValueError, OverflowError):
            valid = False
        if not valid:
            noun = "a whole number" if kind is int else "a number"
            self.problems.append(f"{name}={raw!r} is not valid; use {noun} >= {minimum:g}")
            return default
        return value

    def port(self, name: str, default: int, minimum: int) -> int:
        value = self.number(name, default, minimum, int)
        if value > 65535:
            self.problems.append(f"{name}={value} is not valid; use a port {minimum}..65535")
            return default
        return value

    def choice(self, name: str, default: int, allowed: set[int]) -> int:
        value = self.number(name, default, min(allowed), int)
        if value not in allowed:
            options = " or ".join(str(a) for a in sorted(allowed))
            self.problems.append(f"{name}={value} is not valid; use {options}")
            return default
        return value

    def topic_prefix(self, name: str, default: str) -> str:
        value = self.text(name, default)
        if any(c in value for c in "+#\0"):
            self.problems.append(f"{name}={value!r} is not valid; use MQTT topic text without + # or NUL")
            return default
        return value

    def id_tags(self, name: str) -> IdTagPolicy:
        raw = self._raw(name)
        return IdTagPolicy() if raw is None else IdTagPolicy.allow_list(raw.split(","))

    def identities(self, name: str) -> frozenset[str] | None:
        raw = self._raw(name)
        return None if raw is None else frozenset(cp.strip() for cp in raw.split(",") if cp.strip())

    def actuators(self, name: str) -> frozenset[str]:
        raw = self._raw(name)
        if raw is None:
            return ACTUATOR_NAMES
        accepted = f"use a JSON list of actuator names from: {', '.join(sorted(ACTUATOR_NAMES))}"
        try:
            names = json.loads(raw)
        except ValueError:
            names = None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            self.problems.append(f"{name} is not a JSON list of names; {accepted}")
            return ACTUATOR_NAMES
        unknown = sorted(set(names) - ACTUATOR_NAMES)
        if unknown:
            self.problems.append(f"{name} names unknown actuators {unknown}; {accepted}")
            return ACTUATOR_NAMES
        return frozenset(names)
