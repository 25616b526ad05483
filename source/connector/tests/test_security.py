"""Security profiles 1 to 3 and MQTT credentials and TLS, against real handshakes and a real broker."""

from __future__ import annotations

import asyncio
import base64
import getpass
import json
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
import websockets
from websockets.datastructures import Headers
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from connector.security import Security, SecurityConfigError, basic_auth_refusal, load
from connector.settings import Settings
from connector.tests.conftest import start_connector
from connector.tests.harness import WAIT_S, MqttProbe, frame, free_port, mosquitto_binary, run_connector, wait_for_port

PASSWORDS = {"CP_1": "s3cret-Zq7", "CP_2": "other"}
OCPP16 = [Subprotocol("ocpp1.6")]


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


NOT_UTF8 = "Basic " + base64.b64encode(b"CP_1:s3cret-\xff\xfe").decode()


@pytest.mark.parametrize(
    ("identity", "headers", "refused"),
    [
        ("CP_1", [basic("CP_1", "s3cret-Zq7")], None),
        ("CP_1", [basic("CP_1", "s3cret-Zq8")], "wrong identity or password"),
        ("CP_1", [basic("CP_2", "other")], "wrong identity or password"),
        ("CP_9", [basic("CP_9", "anything")], "wrong identity or password"),
        ("CP_1", [], "no HTTP Basic credentials"),
        ("CP_1", ["Bearer abc"], "no HTTP Basic credentials"),
        ("CP_1", ["Basic !!!"], "malformed HTTP Basic credentials"),
        ("CP_1", ["Basic " + base64.b64encode(b"CP_1").decode()], "malformed HTTP Basic credentials"),
        ("CP_1", [basic("CP_1", "s3cret-Zq7:extra")], "wrong identity or password"),
        ("CP_1", [NOT_UTF8], "wrong identity or password"),
        ("CP_1", [basic("CP_1", "s3cret-Zq7"), basic("CP_1", "s3cret-Zq7")], "more than one Authorization header"),
    ],
    ids=[
        "right",
        "wrong-password",
        "other-identity",
        "unknown",
        "none",
        "bearer",
        "garbage",
        "no-colon",
        "extra",
        "not-utf8",
        "two-headers",
    ],
)
def test_basic_auth_per_charge_point(identity: str, headers: list[str], refused: str | None) -> None:
    """Profile 1: the user must be the identity and the password its own; the reason never holds a secret."""
    security = Security(passwords=PASSWORDS, allowed=None, ocpp_tls=None, mqtt_ca_file=None)
    request_headers = Headers([("Authorization", header) for header in headers])
    assert basic_auth_refusal(security, identity, request_headers) == refused


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OCPP_BASIC_AUTH": '{"CP_1": 5}'}, "OCPP_BASIC_AUTH must be a JSON object"),
        ({"OCPP_BASIC_AUTH": "{not json, s3cret"}, "OCPP_BASIC_AUTH must be a JSON object"),
        ({"OCPP_BASIC_AUTH": "/no/such/file"}, "nor a readable file (No such file or directory)"),
        ({"OCPP_BASIC_AUTH": "CP_1:s3cret-pw"}, "nor a readable file (No such file or directory)"),
        ({"OCPP_BASIC_AUTH": "s3cret\0pw"}, "nor a readable file (not a file name)"),
        ({"OCPP_BASIC_AUTH": "{}"}, "OCPP_BASIC_AUTH lists no charge point"),
        (
            {"OCPP_BASIC_AUTH": '{"CP_1": "s3cret"}', "OCPP_ALLOWED_CHARGE_POINTS": "CP_2,CP_3"},
            "have no charge point in common",
        ),
        ({"OCPP_TLS_CERT_FILE": "/no/cert"}, "must be set together"),
        ({"OCPP_TLS_CA_FILE": "/no/ca"}, "OCPP_TLS_CA_FILE needs"),
        ({"OCPP_TLS_CERT_FILE": "/no/cert", "OCPP_TLS_KEY_FILE": "/no/key"}, "OCPP_TLS_CERT_FILE=/no/cert"),
        ({"MQTT_TLS_CA_FILE": "/no/ca"}, "MQTT_TLS_CA_FILE=/no/ca is not a readable file"),
    ],
)
def test_unusable_security_settings_are_refused_at_start(env: dict[str, str], message: str) -> None:
    """A security setting that cannot be used stops the start, naming the variable and never a password."""
    with pytest.raises(SecurityConfigError) as error:
        load(Settings.from_env(env))
    assert message in str(error.value)
    assert "s3cret" not in str(error.value)


def test_basic_auth_from_a_file(tmp_path: Path) -> None:
    """OCPP_BASIC_AUTH may name a file holding the JSON object."""
    path = tmp_path / "passwords.json"
    path.write_text(json.dumps(PASSWORDS))
    assert load(Settings.from_env({"OCPP_BASIC_AUTH": str(path)})).passwords == PASSWORDS


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"OCPP_BASIC_AUTH": '{"CP_1": ["s3cret-Zq7"]}'}, "OCPP_BASIC_AUTH must be a JSON object"),
        ({"OCPP_BASIC_AUTH": "CP_1:s3cret-Zq7"}, "OCPP_BASIC_AUTH is neither"),
        ({"OCPP_BASIC_AUTH": "{}"}, "OCPP_BASIC_AUTH lists no charge point"),
        (
            {"OCPP_BASIC_AUTH": '{"CP_1": "s3cret-Zq7"}', "OCPP_ALLOWED_CHARGE_POINTS": "CP_2"},
            "no charge point in common",
        ),
        ({"OCPP_ALLOWED_CHARGE_POINTS": ",", "MQTT_PASSWORD": "s3cret-Zq7"}, "OCPP_ALLOWED_CHARGE_POINTS=',' lists no"),
        ({"OCPP_ALLOWED_ID_TAGS": " , ", "MQTT_PASSWORD": "s3cret-Zq7"}, "OCPP_ALLOWED_ID_TAGS=',' lists no id tag"),
        ({"MQTT_PASSWORD": "s3cret-Zq7", "MQTT_BROKER_PORT": "mqtt"}, "MQTT_BROKER_PORT"),
    ],
    ids=["not-strings", "user-colon-password", "empty-object", "nobody-in-common", "no-identity", "no-id-tag", "port"],
)
def test_a_setting_that_admits_no_one_or_holds_a_secret_exits_2_without_echoing_it(
    tmp_path: Path, env: dict[str, str], named: str
) -> None:
    """The process exits 2 with one stderr line naming the problem, and no password (basic auth, MQTT) in it."""
    import os

    code, stderr = run_connector({**os.environ, **env, "STATE_DIR": str(tmp_path / "s")}, tmp_path)
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1 and named in stderr
    assert "s3cret" not in stderr


async def test_profile_1_refuses_before_the_websocket_opens(settings_env: dict[str, str], probe: MqttProbe) -> None:
    """Wrong or missing credentials get HTTP 401 (with a logged reason, no password); right ones are served."""
    running = await start_connector(
        {**settings_env, "OCPP_BASIC_AUTH": json.dumps(PASSWORDS), "OCPP_ALLOWED_CHARGE_POINTS": "CP_1,CP_2"}, probe
    )
    try:
        for header in ({}, {"Authorization": basic("CP_1", "wrong")}):
            with pytest.raises(InvalidStatus) as refused:
                await websockets.connect(f"{running.url}/CP_1", subprotocols=OCPP16, additional_headers=header)
            assert refused.value.response.status_code == 401
            assert refused.value.response.headers["WWW-Authenticate"].startswith("Basic")
        with pytest.raises(InvalidStatus) as forbidden:
            await websockets.connect(
                f"{running.url}/CP_3",
                subprotocols=OCPP16,
                additional_headers={"Authorization": basic("CP_3", "x")},
            )
        assert forbidden.value.response.status_code == 403
        async with websockets.connect(
            f"{running.url}/CP_1",
            subprotocols=OCPP16,
            additional_headers={"Authorization": basic("CP_1", "s3cret-Zq7")},
        ) as ws:
            await ws.send(json.dumps([2, "h", *frame("heartbeat")]))
            assert json.loads(await ws.recv())[:2] == [3, "h"]
        # The wrong password is the second 401 within 10 s: counted in the next 401 line, not logged now.
        expected = {"CP_1: refused: no HTTP Basic credentials", "CP_3: refused: not in OCPP_ALLOWED_CHARGE_POINTS"}

        def logged() -> list[str]:
            return [p["msg"] for p in probe.on(running.topic("logs"))]

        await probe.wait_until(lambda: expected <= set(logged()))
        logs = logged()
    finally:
        await running.stop()
    assert not any("s3cret" in line for line in logs)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def write_tls_files(ca: trustme.CA, directory: Path) -> dict[str, str]:
    """A server certificate for 127.0.0.1 from `ca`, its key and the CA, as files: name -> path."""
    server = ca.issue_cert("127.0.0.1", "localhost")
    files = {"cert": directory / "server.pem", "key": directory / "server.key", "ca": directory / "ca.pem"}
    server.cert_chain_pems[0].write_to_path(str(files["cert"]))
    server.private_key_pem.write_to_path(str(files["key"]))
    ca.cert_pem.write_to_path(str(files["ca"]))
    return {name: str(path) for name, path in files.items()}


@pytest.fixture
def tls_files(ca: trustme.CA, tmp_path: Path) -> Iterator[dict[str, str]]:
    yield write_tls_files(ca, tmp_path)


def client_context(ca: trustme.CA, with_certificate: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    if with_certificate:
        ca.issue_cert("cp1.chargers.example").configure_cert(context)
    return context


async def test_profile_2_serves_wss_only(
    settings_env: dict[str, str], probe: MqttProbe, tls_files: dict[str, str], ca: trustme.CA
) -> None:
    """With certificate and key the server speaks wss:// (verified against the operator's CA) and not ws://."""
    running = await start_connector(
        {**settings_env, "OCPP_TLS_CERT_FILE": tls_files["cert"], "OCPP_TLS_KEY_FILE": tls_files["key"]}, probe
    )
    port = running.service.dispatcher.port
    try:
        async with websockets.connect(
            f"wss://127.0.0.1:{port}/CP_1",
            subprotocols=OCPP16,
            ssl=client_context(ca, False),
        ) as ws:
            await ws.send(json.dumps([2, "h", *frame("heartbeat")]))
            assert json.loads(await ws.recv())[:2] == [3, "h"]
        with pytest.raises(Exception):  # noqa: B017 - a plain handshake on a TLS port fails, however it fails
            await websockets.connect(f"ws://127.0.0.1:{port}/CP_1", subprotocols=OCPP16, open_timeout=WAIT_S)
    finally:
        await running.stop()


def profile_3(settings_env: dict[str, str], tls_files: dict[str, str]) -> dict[str, str]:
    """The test environment with security profile 3: wss:// and client certificates from the test CA."""
    return {
        **settings_env,
        "OCPP_TLS_CERT_FILE": tls_files["cert"],
        "OCPP_TLS_KEY_FILE": tls_files["key"],
        "OCPP_TLS_CA_FILE": tls_files["ca"],
    }


async def test_profile_3_requires_a_client_certificate_from_the_ca(
    settings_env: dict[str, str], probe: MqttProbe, tls_files: dict[str, str], ca: trustme.CA
) -> None:
    """With OCPP_TLS_CA_FILE a charger without a certificate signed by that CA cannot connect; one with it can."""
    env = profile_3(settings_env, tls_files)
    running = await start_connector(env, probe)
    url = f"wss://127.0.0.1:{running.service.dispatcher.port}/CP_1"
    try:
        with pytest.raises((ssl.SSLError, ConnectionError, websockets.exceptions.InvalidMessage)):
            async with websockets.connect(url, subprotocols=OCPP16, ssl=client_context(ca, False)) as ws:
                await ws.send(json.dumps([2, "h", *frame("heartbeat")]))
                await ws.recv()
        async with websockets.connect(url, subprotocols=OCPP16, ssl=client_context(ca, True)) as ws:
            await ws.send(json.dumps([2, "h", *frame("heartbeat")]))
            assert json.loads(await ws.recv())[:2] == [3, "h"]
    finally:
        await running.stop()


@pytest.fixture
def secured_broker(tls_files: dict[str, str], tmp_path: Path) -> Iterator[tuple[int, int]]:
    """A mosquitto that demands a password: a plain listener (for the probe) and a TLS one."""
    passwords = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "bemcom", "mqtt-Zq7"], check=True)
    plain_port, tls_port = free_port(), free_port()
    config = tmp_path / "mosquitto.conf"
    config.write_text(
        # `user`: started as root, mosquitto would drop to its own user and lose access to tmp_path.
        f"user {getpass.getuser()}\n"
        f"per_listener_settings false\nallow_anonymous false\npassword_file {passwords}\npersistence false\n"
        f"listener {plain_port} 127.0.0.1\n"
        f"listener {tls_port} 127.0.0.1\ncafile {tls_files['ca']}\ncertfile {tls_files['cert']}\n"
        f"keyfile {tls_files['key']}\n"
    )
    log = (tmp_path / "mosquitto.log").open("w")
    broker = subprocess.Popen([mosquitto_binary(), "-c", str(config)], stderr=log, stdout=log)
    try:
        wait_for_port(plain_port)
        wait_for_port(tls_port)
        yield plain_port, tls_port
    finally:
        broker.terminate()
        broker.wait(timeout=WAIT_S)


async def test_mqtt_with_credentials_and_tls(
    settings_env: dict[str, str], tls_files: dict[str, str], secured_broker: tuple[int, int], connector_name: str
) -> None:
    """With MQTT_USERNAME/MQTT_PASSWORD and MQTT_TLS_CA_FILE the connector reaches a broker that demands both."""
    plain_port, tls_port = secured_broker
    probe = MqttProbe(plain_port, credentials=("bemcom", "mqtt-Zq7"))  # the plain listener, for watching
    await probe.subscribe(f"{connector_name}/#")
    env = {
        **settings_env,
        "MQTT_BROKER_PORT": str(tls_port),
        "MQTT_USERNAME": "bemcom",
        "MQTT_PASSWORD": "mqtt-Zq7",
        "MQTT_TLS_CA_FILE": tls_files["ca"],
    }
    running = await start_connector(env, probe)  # returns once the connector logged over TLS
    await running.stop()
    logs = [p["msg"] for p in probe.on(f"{connector_name}/logs")]
    probe.close()
    assert any(line.startswith("connected to MQTT broker") for line in logs)
    assert not any("mqtt-Zq7" in line for line in logs)


async def test_silent_sockets_on_a_tls_port_are_bounded_per_address(
    settings_env: dict[str, str], probe: MqttProbe, tls_files: dict[str, str], ca: trustme.CA
) -> None:
    """Sockets that never start TLS count as unauthenticated from their first byte: beyond the per-address
    bound they are closed at once, and a charger from another address is served over wss://."""
    env = {
        **settings_env,
        "OCPP_TLS_CERT_FILE": tls_files["cert"],
        "OCPP_TLS_KEY_FILE": tls_files["key"],
        "OCPP_MAX_UNAUTHENTICATED_PER_ADDRESS": "3",
    }
    running = await start_connector(env, probe)
    port = running.service.dispatcher.port
    silent = [await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.2", 0)) for _ in range(5)]
    try:
        async with asyncio.timeout(WAIT_S):
            beyond = [await reader.read() for reader, _ in silent[3:]]
        async with websockets.connect(
            f"wss://127.0.0.1:{port}/CP_1", subprotocols=OCPP16, ssl=client_context(ca, False)
        ) as ws:
            await ws.send(json.dumps([2, "h", *frame("heartbeat")]))
            assert json.loads(await ws.recv())[:2] == [3, "h"]
        held = running.service.dispatcher.gate.admission.unauthenticated_from("127.0.0.2")
    finally:
        for _, writer in silent:
            writer.close()
        await running.stop()
    assert beyond == [b"", b""]
    assert held == 3


async def test_a_failed_tls_handshake_is_logged(
    settings_env: dict[str, str], probe: MqttProbe, tls_files: dict[str, str], ca: trustme.CA
) -> None:
    """Profile 3: a charger without a client certificate is refused and a WARNING says its TLS handshake failed."""
    env = profile_3(settings_env, tls_files)
    running = await start_connector(env, probe)
    try:
        with pytest.raises((ssl.SSLError, ConnectionError, websockets.exceptions.InvalidMessage)):
            url = f"wss://127.0.0.1:{running.service.dispatcher.port}/CP_1"
            async with websockets.connect(url, subprotocols=OCPP16, ssl=client_context(ca, False)) as ws:
                await ws.recv()
        log = await probe.wait_for(running.topic("logs"), lambda p: "TLS handshake failed" in p["msg"])
        assert running.service.dispatcher.gate.admission.unauthenticated == 0
    finally:
        await running.stop()
    assert log["msg"].startswith("connection from 127.0.0.1 dropped") and log["level"] == 30
