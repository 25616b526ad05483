"""Settings: the environment turned into one frozen, validated object.

Pure: `Settings.from_env` reads a mapping, so tests pass plain dicts. Every problem is
collected before anything is raised, so an operator fixes a `.env` in one go instead of
one restart per mistake (the zigbee2mqtt habit). `VARIABLES` is the one list of what the
connector reads, with each default taken from `Settings` itself: `--help` prints it, so
the usage text cannot drift from what the code does.
"""

from __future__ import annotations

import json
import math
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar
from urllib.parse import urlsplit

from redis.connection import parse_url

from connector.actuators import ACTUATOR_NAMES
from connector.authorization import IdTagPolicy
from connector.negotiation import SUBPROTOCOLS

T = TypeVar("T")

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class Broker(NamedTuple):
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def broker_addresses(setting: str, default_port: int) -> list[Broker]:
    """`a,b:1884,[::1]:1885` -> brokers in that order; ValueError naming what is wrong."""
    brokers = []
    for entry in (part.strip() for part in setting.split(",")):
        if not entry:
            raise ValueError("an empty entry")
        host, port = entry, default_port
        if entry.startswith("["):  # an IPv6 literal, perhaps with a port
            host, bracket, rest = entry[1:].partition("]")
            if not bracket or (rest and not rest.startswith(":")):
                raise ValueError(f"{entry!r} is not [IPv6 address] or [IPv6 address]:port")
            port = _broker_port(rest[1:], entry) if rest else default_port
        elif entry.count(":") == 1:
            host, _, text = entry.partition(":")
            port = _broker_port(text, entry)
        if not host or any(c.isspace() for c in host):
            raise ValueError(f"{entry!r} has no usable host")
        brokers.append(Broker(host, port))
    return brokers


def _broker_port(text: str, entry: str) -> int:
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= 65535):
        raise ValueError(f"{entry!r} has no port 1..65535")
    return int(text)


MAX_INSTANCE_NAME = 64


def state_url_problem(url: str) -> str | None:
    """What is wrong with a STATE_URL, or None. Never quotes any part of it: the password may
    sit anywhere (after `:` and before `@`, or in `?password=`), and a password with an
    unencoded `/`, `?` or `#` shifts every part after it."""
    try:
        parts = parse_url(url)  # type: ignore[no-untyped-call]  # redis-py's own URL rules
    except ValueError:
        return "not a redis://, rediss:// or unix:// URL redis-py can read (percent-encode / ? # @ in a password)"
    if "path" in parts:  # unix://: a socket path
        return None
    if not parts.get("host"):
        return "no host"
    database = urlsplit(url).path.strip("/")
    if database and not database.isdigit():
        return "the part after the host is not a database number (percent-encode / ? # @ in a password)"
    return None


def redis_address(url: str) -> str:
    """Where a (valid) STATE_URL points, as logs may show it: host:port/db or the socket, nothing else."""
    parts = parse_url(url)  # type: ignore[no-untyped-call]
    if "path" in parts:
        return f"unix:{parts['path']}"
    return f"{parts['host']}:{parts.get('port', 6379)}/{parts.get('db', 0)}"


class SettingsError(Exception):
    """One or more variables hold values the connector cannot use."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Settings:
    connector_name: str = "ocpp-connector"
    mqtt_broker_host: str = "localhost"  # as set: one host, or several `host[:port]` separated by commas
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
    ocpp_protocols: tuple[str, ...] = SUBPROTOCOLS  # the subprotocols the connector speaks
    enabled_actuators: frozenset[str] = ACTUATOR_NAMES
    heartbeat_interval: float = 30.0
    charger_heartbeat_interval: int = 300
    ocpp_response_timeout: float = 60.0
    ocpp_ping_interval: float = 60.0
    charging_phases: int = 3
    reservation_expiry: int = 3600
    id_tags: IdTagPolicy = field(default_factory=IdTagPolicy)
    state_dir: str = "./state"
    # Several instances (INTERFACE section 10). repr=False: the URL may carry Redis's password.
    state_url: str | None = field(default=None, repr=False)
    connector_instance: str = field(default_factory=socket.gethostname)
    # Limits: far above what real fleets reach; a peer beyond one is logged and cut off.
    ocpp_max_frame_size: int = 1_048_576
    ocpp_max_connections: int = 25_000
    # Connections that have not passed the request checks yet, per remote address (an IPv6
    # /64 counts as one) and in all. 50 lets a car park behind one NAT reconnect at once:
    # a handshake takes a round trip or two, so even a few hundred chargers sharing one
    # address after a power cut rarely have 50 in flight at the same moment. The total is
    # well above the listen backlog (4096), which one accept round can take in at once in
    # a fleet's reconnect storm: those must not push each other out.
    ocpp_max_unauthenticated_per_address: int = 50
    ocpp_max_unauthenticated: int = 10_000
    ocpp_handshake_timeout: float = 30.0
    ocpp_max_message_rate: float = 1000.0  # per charge point, averaged over 10 s; 0: off
    max_keys_per_charge_point: int = 2000
    forget_after: float = 30 * 24 * 3600.0  # a charge point gone this long is forgotten
    http_host: str = "0.0.0.0"
    http_port: int | None = 8080  # the operations HTTP server; None: HTTP_PORT=off, no server

    @property
    def mqtt_brokers(self) -> tuple[Broker, ...]:
        """The brokers to try, in order: MQTT_BROKER_HOST's entries, MQTT_BROKER_PORT where none is given."""
        return tuple(broker_addresses(self.mqtt_broker_host, self.mqtt_broker_port))

    @property
    def mqtt_broker_address(self) -> str:
        """The brokers as an operator reads them: `host:port`, several separated by commas."""
        return ",".join(broker.address for broker in self.mqtt_brokers)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from environment variables, reporting every bad one at once."""
        reader = _Reader(env)
        settings = cls(
            connector_name=reader.topic_prefix("CONNECTOR_NAME", cls.connector_name),
            mqtt_broker_host=reader.brokers("MQTT_BROKER_HOST", cls.mqtt_broker_host),
            mqtt_broker_port=reader.port("MQTT_BROKER_PORT", cls.mqtt_broker_port, 1),
            mqtt_username=reader.optional("MQTT_USERNAME"),
            mqtt_password=reader.optional("MQTT_PASSWORD"),
            mqtt_queue_limit=reader.number("MQTT_QUEUE_LIMIT", cls.mqtt_queue_limit, 1, int),
            mqtt_tls_ca_file=reader.optional("MQTT_TLS_CA_FILE"),
            ocpp_basic_auth=reader.optional("OCPP_BASIC_AUTH"),
            allowed_charge_points=reader.identities("OCPP_ALLOWED_CHARGE_POINTS"),
            ocpp_tls_cert_file=reader.optional("OCPP_TLS_CERT_FILE"),
            ocpp_tls_key_file=reader.optional("OCPP_TLS_KEY_FILE"),
            ocpp_tls_ca_file=reader.optional("OCPP_TLS_CA_FILE"),
            send_raw_message_to_db=reader.flag("SEND_RAW_MESSAGE_TO_DB", cls.send_raw_message_to_db),
            debug=reader.flag("DEBUG", cls.debug),
            ocpp_host=reader.text("OCPP_HOST", cls.ocpp_host),
            ocpp_port=reader.port("OCPP_PORT", cls.ocpp_port, 0),
            ocpp_protocols=reader.protocols("OCPP_PROTOCOLS"),
            enabled_actuators=reader.actuators("OCPP_CONFIG"),
            heartbeat_interval=reader.number("HEARTBEAT_INTERVAL", cls.heartbeat_interval, 0.1, float),
            charger_heartbeat_interval=reader.number(
                "OCPP_CHARGER_HEARTBEAT_INTERVAL", cls.charger_heartbeat_interval, 1, int
            ),
            ocpp_response_timeout=reader.number("OCPP_RESPONSE_TIMEOUT", cls.ocpp_response_timeout, 0.1, float),
            ocpp_ping_interval=reader.number("OCPP_PING_INTERVAL", cls.ocpp_ping_interval, 0.0, float),
            charging_phases=reader.choice("CHARGING_PHASES", cls.charging_phases, {1, 3}),
            reservation_expiry=reader.number("OCPP_RESERVATION_EXPIRY", cls.reservation_expiry, 1, int),
            id_tags=reader.id_tags("OCPP_ALLOWED_ID_TAGS"),
            state_dir=reader.text("STATE_DIR", cls.state_dir),
            state_url=reader.state_url("STATE_URL"),
            connector_instance=reader.instance_name("CONNECTOR_INSTANCE", socket.gethostname()),
            ocpp_max_frame_size=reader.number("OCPP_MAX_FRAME_SIZE", cls.ocpp_max_frame_size, 1024, int),
            ocpp_max_connections=reader.number("OCPP_MAX_CONNECTIONS", cls.ocpp_max_connections, 1, int),
            ocpp_max_unauthenticated_per_address=reader.number(
                "OCPP_MAX_UNAUTHENTICATED_PER_ADDRESS", cls.ocpp_max_unauthenticated_per_address, 1, int
            ),
            ocpp_max_unauthenticated=reader.number("OCPP_MAX_UNAUTHENTICATED", cls.ocpp_max_unauthenticated, 1, int),
            ocpp_handshake_timeout=reader.number("OCPP_HANDSHAKE_TIMEOUT", cls.ocpp_handshake_timeout, 0.1, float),
            ocpp_max_message_rate=reader.number("OCPP_MAX_MESSAGE_RATE", cls.ocpp_max_message_rate, 0.0, float),
            max_keys_per_charge_point=reader.number(
                "OCPP_MAX_KEYS_PER_CHARGE_POINT", cls.max_keys_per_charge_point, 10, int
            ),
            forget_after=reader.number("OCPP_FORGET_AFTER", cls.forget_after, 60.0, float),
            http_host=reader.text("HTTP_HOST", cls.http_host),
            http_port=reader.port_or_off("HTTP_PORT", cls.http_port),
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

    def brokers(self, name: str, default: str) -> str:
        raw = self.text(name, default)
        try:
            broker_addresses(raw, 1883)
        except ValueError as error:
            self.problems.append(f"{name}={raw!r} is not valid: {error}; use host or host:port, several separated by ,")
            return default
        return raw

    def port_or_off(self, name: str, default: int | None) -> int | None:
        """A port (0: any free one), or None for `off`."""
        raw = self._raw(name)
        if raw is None:
            return default
        if raw.lower() == "off":
            return None
        if raw.isascii() and raw.isdigit() and int(raw) <= 65535:
            return int(raw)
        self.problems.append(f"{name}={raw!r} is not valid; use a port 0..65535 (0: any free port) or off")
        return default

    def choice(self, name: str, default: int, allowed: set[int]) -> int:
        value = self.number(name, default, min(allowed), int)
        if value not in allowed:
            options = " or ".join(str(a) for a in sorted(allowed))
            self.problems.append(f"{name}={value} is not valid; use {options}")
            return default
        return value

    def state_url(self, name: str) -> str | None:
        raw = self._raw(name)
        if raw is None:
            return None
        problem = state_url_problem(raw)
        if problem is not None:
            # The URL itself is not repeated: it may hold Redis's password.
            self.problems.append(f"{name} is not valid: {problem}; use redis://[:password@]host[:port][/db]")
            return None
        return raw

    def instance_name(self, name: str, default: str) -> str:
        value = self.text(name, default)
        # One MQTT topic level (N/instances/<instance>/state) and one Prometheus label value.
        if len(value) > MAX_INSTANCE_NAME or any(c in value for c in "+#/\0") or not value.isprintable():
            self.problems.append(
                f"{name}={value[:100]!r} is not valid; use up to {MAX_INSTANCE_NAME} printable characters"
                " without + # / or NUL"
            )
            return "connector"
        return value

    def topic_prefix(self, name: str, default: str) -> str:
        value = self.text(name, default)
        if any(c in value for c in "+#\0"):
            self.problems.append(f"{name}={value!r} is not valid; use MQTT topic text without + # or NUL")
            return default
        return value

    def id_tags(self, name: str) -> IdTagPolicy:
        raw = self._raw(name)
        if raw is None:
            return IdTagPolicy()
        policy = IdTagPolicy.allow_list(raw.split(","))
        if not policy.allowed:
            # A list of nothing would answer every Authorize with Invalid: nobody could charge.
            self.problems.append(
                f"{name}={raw!r} lists no id tag, so every tag would be refused; list tags or unset it"
            )
            return IdTagPolicy()
        return policy

    def identities(self, name: str) -> frozenset[str] | None:
        raw = self._raw(name)
        if raw is None:
            return None
        identities = frozenset(cp.strip() for cp in raw.split(",") if cp.strip())
        if not identities:
            # Set but empty would refuse every charge point with 403.
            self.problems.append(
                f"{name}={raw!r} lists no charge point, so every one would be refused; list identities or unset it"
            )
            return None
        return identities

    def protocols(self, name: str) -> tuple[str, ...]:
        raw = self._raw(name)
        if raw is None:
            return SUBPROTOCOLS
        # dict.fromkeys: duplicates dropped, the order kept (it is the order --help shows).
        names = tuple(dict.fromkeys(p.strip().lower() for p in raw.split(",") if p.strip()))
        accepted = f"use a comma-separated list from: {','.join(SUBPROTOCOLS)}"
        unknown = [p for p in names if p not in SUBPROTOCOLS]
        if unknown or not names:
            # Empty would refuse every charger; an unknown name is a typo that would do the same.
            what = f"names unknown protocols {unknown}" if unknown else "lists no protocol"
            self.problems.append(f"{name}={raw[:100]!r} {what}; {accepted}")
            return SUBPROTOCOLS
        return names

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


@dataclass(frozen=True)
class Variable:
    """One environment variable the connector reads, for `--help`."""

    name: str
    attribute: str  # the Settings field it sets; its default is shown unless `default` says otherwise
    meaning: str
    default: str | None = None  # for defaults a value cannot say ("every actuator")


VARIABLES: tuple[Variable, ...] = (
    Variable("CONNECTOR_NAME", "connector_name", "prefix of every BEMCom topic (no + # or NUL)"),
    Variable("MQTT_BROKER_HOST", "mqtt_broker_host", "broker host, or several host[:port] separated by ,"),
    Variable("MQTT_BROKER_PORT", "mqtt_broker_port", "broker port"),
    Variable("MQTT_USERNAME", "mqtt_username", "broker user name"),
    Variable("MQTT_PASSWORD", "mqtt_password", "broker password (never logged)"),
    Variable("MQTT_QUEUE_LIMIT", "mqtt_queue_limit", "messages kept while the broker is away; beyond it the oldest go"),
    Variable("MQTT_TLS_CA_FILE", "mqtt_tls_ca_file", "set: MQTT over TLS, the broker verified against this CA"),
    Variable("SEND_RAW_MESSAGE_TO_DB", "send_raw_message_to_db", "TRUE: every OCPP frame goes to N/raw_message_to_db"),
    Variable("DEBUG", "debug", "TRUE: debug logging"),
    Variable("OCPP_HOST", "ocpp_host", "address the OCPP server listens on"),
    Variable("OCPP_PORT", "ocpp_port", "port the OCPP server listens on (0: any free port, logged)"),
    Variable(
        "OCPP_PROTOCOLS",
        "ocpp_protocols",
        "comma-separated subprotocols the connector speaks; a handshake offering none of them gets HTTP 400",
    ),
    Variable("OCPP_CONFIG", "enabled_actuators", "JSON list of the enabled actuator names", "every actuator"),
    Variable("OCPP_BASIC_AUTH", "ocpp_basic_auth", 'profile 1: {"<cp>": "<password>", ...} or a file holding it'),
    Variable("OCPP_ALLOWED_CHARGE_POINTS", "allowed_charge_points", "comma-separated identities; others get 403"),
    Variable("OCPP_TLS_CERT_FILE", "ocpp_tls_cert_file", "profile 2 (with the key): the server speaks wss:// only"),
    Variable("OCPP_TLS_KEY_FILE", "ocpp_tls_key_file", "the key of OCPP_TLS_CERT_FILE"),
    Variable("OCPP_TLS_CA_FILE", "ocpp_tls_ca_file", "profile 3: chargers need a client certificate from this CA"),
    Variable("OCPP_ALLOWED_ID_TAGS", "id_tags", "comma-separated id tags allowed to charge", "unset (every tag)"),
    Variable("HEARTBEAT_INTERVAL", "heartbeat_interval", "seconds between the connector's own heartbeats"),
    Variable(
        "OCPP_CHARGER_HEARTBEAT_INTERVAL", "charger_heartbeat_interval", "heartbeat interval (s) given to chargers"
    ),
    Variable("OCPP_RESPONSE_TIMEOUT", "ocpp_response_timeout", "seconds to wait for a charger's answer to a command"),
    Variable("OCPP_PING_INTERVAL", "ocpp_ping_interval", "seconds between WebSocket pings (0: none)"),
    Variable("CHARGING_PHASES", "charging_phases", "phases (1 or 3) for converting limits between W and A"),
    Variable("OCPP_RESERVATION_EXPIRY", "reservation_expiry", "seconds a reservation lasts"),
    Variable("STATE_DIR", "state_dir", "where state that must survive restarts lives"),
    Variable(
        "STATE_URL",
        "state_url",
        "redis://[:password@]host[:port][/db]: state shared by several instances (docs/instances.md)",
    ),
    Variable(
        "CONNECTOR_INSTANCE",
        "connector_instance",
        "this instance's name, unique among instances (logs, metrics, N/instances/<name>/state)",
        "the host name",
    ),
    Variable("OCPP_MAX_FRAME_SIZE", "ocpp_max_frame_size", "largest frame (bytes) a charger may send (close 1009)"),
    Variable("OCPP_MAX_CONNECTIONS", "ocpp_max_connections", "most authenticated charger connections (then 503)"),
    Variable(
        "OCPP_MAX_UNAUTHENTICATED_PER_ADDRESS",
        "ocpp_max_unauthenticated_per_address",
        "most connections one address (IPv6: one /64) may hold before passing authentication",
    ),
    Variable(
        "OCPP_MAX_UNAUTHENTICATED",
        "ocpp_max_unauthenticated",
        "most connections in all before authentication; beyond it the oldest is dropped",
    ),
    Variable("OCPP_HANDSHAKE_TIMEOUT", "ocpp_handshake_timeout", "seconds for the TLS and WebSocket handshake"),
    Variable("OCPP_MAX_MESSAGE_RATE", "ocpp_max_message_rate", "frames/s per charger over 10 s (close 1008; 0: off)"),
    Variable("OCPP_MAX_KEYS_PER_CHARGE_POINT", "max_keys_per_charge_point", "most datapoint keys per charger"),
    Variable("OCPP_FORGET_AFTER", "forget_after", "seconds after which a charger gone is forgotten (30 days)"),
    Variable("HTTP_HOST", "http_host", "address of the operations HTTP server (/healthz, /readyz, /metrics, /)"),
    Variable("HTTP_PORT", "http_port", "its port (0: any free port, logged; off: no server)"),
)


def default_text(variable: Variable) -> str:
    """A variable's default as an operator would write it in `.env`."""
    if variable.default is not None:
        return variable.default
    value = getattr(Settings(), variable.attribute)
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def usage() -> str:
    """`--help`: what the connector is, and every variable it reads with its default."""
    width = max(len(v.name) for v in VARIABLES)
    defaults = [default_text(v) for v in VARIABLES]
    shown = max(len(d) for d in defaults)
    rows = [f"  {v.name:<{width}}  {d:<{shown}}  {v.meaning}" for v, d in zip(VARIABLES, defaults, strict=True)]
    return "\n".join(
        [
            "usage: python -m connector [--help | --version]",
            "",
            "Serves OCPP-J charge points and publishes their data over MQTT (BEMCom) until SIGINT or SIGTERM.",
            "Configured through environment variables; a .env file in the working directory fills in unset ones.",
            "",
            f"  {'variable':<{width}}  {'default':<{shown}}  meaning",
            *rows,
        ]
    )
