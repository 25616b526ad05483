"""Which OCPP version a charger is served in: negotiation.py's rule, OCPP_PROTOCOLS, and real
handshakes with `<cp>__ocpp_version` on MQTT (INTERFACE.md section 8)."""

from __future__ import annotations

import pytest
import websockets
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from connector.negotiation import OCPP16, SUBPROTOCOLS, VERSION_NAMES, negotiate, version_name
from connector.settings import VARIABLES, Settings, SettingsError, default_text, usage
from connector.tests.conftest import RunningConnector, map_datapoints, start_connector
from connector.tests.harness import WAIT_S, ChargerLink, MqttProbe, send

ALL = ("ocpp2.1", "ocpp2.0.1", "ocpp1.6")


@pytest.mark.parametrize(
    ("offered", "spoken", "chosen"),
    [
        (["ocpp2.0.1", "ocpp1.6"], ALL, "ocpp2.0.1"),  # the charger's preference, not ours
        (["ocpp1.6", "ocpp2.0.1"], ALL, "ocpp1.6"),
        (["ocpp2.1", "ocpp2.0.1", "ocpp1.6"], ALL, "ocpp2.1"),
        (["ocpp2.0", "ocpp2.0.1"], ALL, "ocpp2.0.1"),  # unknown names are skipped
        (["ocpp2.1", "ocpp1.6"], ("ocpp2.0.1", "ocpp1.6"), "ocpp1.6"),  # 2.1 switched off
        ([], ALL, "ocpp1.6"),  # no header: OCPP 1.6
        ([], ("ocpp2.1", "ocpp2.0.1"), None),  # ... unless 1.6 is switched off
        (["ocpp2.0", "ocpp1.5"], ALL, None),
        (["ocpp1.6"], ("ocpp2.0.1",), None),
        (["OCPP1.6"], ALL, None),  # subprotocol names are case-sensitive tokens (RFC 6455 4.1)
    ],
)
def test_negotiate_picks_the_chargers_first_spoken_protocol(
    offered: list[str], spoken: tuple[str, ...], chosen: str | None
) -> None:
    """The first offered protocol that OCPP_PROTOCOLS lists wins; no offer means 1.6; nothing spoken refuses."""
    assert negotiate(offered, spoken) == chosen


@pytest.mark.parametrize(
    ("subprotocol", "name"), [("ocpp1.6", "1.6"), ("ocpp2.0.1", "2.0.1"), ("ocpp2.1", "2.1"), (None, "1.6")]
)
def test_version_name_is_the_sensor_value(subprotocol: str | None, name: str) -> None:
    """Each subprotocol maps to the `<cp>__ocpp_version` value; a connection without one is 1.6."""
    assert version_name(subprotocol) == name


@pytest.mark.parametrize(
    ("raw", "protocols"),
    [
        ("ocpp1.6", ("ocpp1.6",)),
        (" ocpp2.0.1 , ocpp1.6 ", ("ocpp2.0.1", "ocpp1.6")),
        ("OCPP2.1,ocpp2.1,ocpp1.6", ("ocpp2.1", "ocpp1.6")),  # case and duplicates forgiven
        ("", ALL),  # empty is unset, like every variable
    ],
)
def test_ocpp_protocols_is_read_in_order(raw: str, protocols: tuple[str, ...]) -> None:
    """OCPP_PROTOCOLS is a comma-separated list, kept in order."""
    assert Settings.from_env({"OCPP_PROTOCOLS": raw}).ocpp_protocols == protocols


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("ocpp2.0.1,ocpp1.5", "OCPP_PROTOCOLS='ocpp2.0.1,ocpp1.5' names unknown protocols ['ocpp1.5']"),
        (" , ", "OCPP_PROTOCOLS=',' lists no protocol"),
    ],
)
def test_bad_ocpp_protocols_is_a_configuration_error(raw: str, problem: str) -> None:
    """An unknown protocol or a list of none is reported with what the variable accepts."""
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"OCPP_PROTOCOLS": raw})
    assert caught.value.problems == [f"{problem}; use a comma-separated list from: ocpp2.1,ocpp2.0.1,ocpp1.6"]


def test_ocpp_protocols_default_is_every_version_and_in_help() -> None:
    """The default speaks every version, and --help shows it as it would be written in .env."""
    assert Settings().ocpp_protocols == SUBPROTOCOLS == ALL
    variable = next(v for v in VARIABLES if v.name == "OCPP_PROTOCOLS")
    assert default_text(variable) == "ocpp2.1,ocpp2.0.1,ocpp1.6"
    assert "OCPP_PROTOCOLS" in usage()


async def negotiated(connector: RunningConnector, cp: str, offered: list[str]) -> str | None:
    """The subprotocol the connector answers a real handshake offering `offered` with."""
    subprotocols = [Subprotocol(p) for p in offered] or None
    async with websockets.connect(f"{connector.url}/{cp}", subprotocols=subprotocols, open_timeout=WAIT_S) as ws:
        return ws.subprotocol


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        (["ocpp2.0.1", "ocpp1.6"], "ocpp2.0.1"),
        (["ocpp1.6", "ocpp2.0.1"], "ocpp1.6"),
        (["ocpp2.1", "ocpp2.0.1"], "ocpp2.1"),
        ([], None),  # no header offered, none answered: served as 1.6 (see test_ocpp_server)
    ],
)
async def test_handshake_chooses_in_the_chargers_order(
    connector: RunningConnector, offered: list[str], chosen: str | None
) -> None:
    """A real handshake is answered with the charger's first protocol that the connector speaks."""
    assert await negotiated(connector, "CP_N", offered) == chosen


async def test_without_ocpp16_a_headerless_charger_is_refused(settings_env: dict[str, str], probe: MqttProbe) -> None:
    """With OCPP_PROTOCOLS leaving ocpp1.6 out, a handshake without subprotocol (1.6) and one offering
    ocpp1.6 get HTTP 400, while ocpp2.0.1 is served."""
    running = await start_connector({**settings_env, "OCPP_PROTOCOLS": "ocpp2.1,ocpp2.0.1"}, probe)
    try:
        for offered in ([], ["ocpp1.6"]):
            with pytest.raises(InvalidStatus) as refused:
                await negotiated(running, "CP_OLD", offered)
            assert refused.value.response.status_code == 400
        log = await probe.wait_for(running.topic("logs"), lambda p: "CP_OLD: refused handshake" in p["msg"])
        assert "OCPP_PROTOCOLS is ocpp2.1,ocpp2.0.1" in log["msg"]
        assert await negotiated(running, "CP_NEW", ["ocpp2.0.1", "ocpp1.6"]) == "ocpp2.0.1"
    finally:
        await running.stop()


async def test_ocpp_version_is_published_before_connected_and_follows_a_reconnect(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """`<cp>__ocpp_version` is published with `connected = true`, before it, and a charger that comes
    back in another version publishes the new one."""
    version, connected = connector.topic("v/CP_V/version"), connector.topic("v/CP_V/connected")
    await map_datapoints(probe, connector, {"CP_V__ocpp_version": version, "CP_V__connected": connected}, {})
    since = len(probe.messages)
    async with ChargerLink(connector.url, "CP_V", subprotocols=["ocpp2.0.1", "ocpp1.6"]):
        await probe.wait_for(connected, lambda p: p["value"] is True, since=since)
    await probe.wait_for(connected, lambda p: p["value"] is False, since=since)
    again = len(probe.messages)
    async with ChargerLink(connector.url, "CP_V", subprotocols=[]) as charger:
        await send(charger, "heartbeat")  # a headerless charger is served as 1.6
    await probe.wait_for(connected, lambda p: p["value"] is False, since=again)
    ours = [(topic, payload["value"]) for topic, payload, _ in probe.messages[since:] if topic in (version, connected)]
    first, second = [(version, "2.0.1"), (connected, True)], [(version, "1.6"), (connected, True)]
    assert ours == [*first, (connected, False), *second, (connected, False)]


def test_the_names_negotiation_knows_are_the_versions_served() -> None:
    """negotiation.py names the versions without importing their tables (settings.py reads it at start): its list
    must be exactly versions.SERVED's, in the same order, with the same default, or a version would be offered
    that cannot be served (or served that cannot be chosen)."""
    from connector import versions  # the tables, imported here only

    assert tuple(VERSION_NAMES.items()) == tuple((v.subprotocol, v.name) for v in versions.SERVED)
    assert versions.DEFAULT_SUBPROTOCOL == OCPP16
