"""deploy/haproxy.cfg, run for real: one identity one instance, and what happens when one goes.

HAProxy runs the shipped configuration (harness_ha.haproxy_test_config changes only
addresses and ports) in front of three stand-in instances (stub_instance.py: processes
that greet each WebSocket with their name and answer /readyz), so every assertion is about
the balancing settings that ship, measured over real WebSockets.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidHandshake, InvalidStatus
from websockets.protocol import State

from connector.tests.conftest import RunningConnector, StartHAProxy
from connector.tests.harness import WAIT_S, ChargerLink, send
from connector.tests.harness_ha import SHIPPED_HAPROXY_CFG, Backend, HAProxy, StubInstance, all_up, installed, until

IDENTITIES_32 = [f"CP-{n:03}" for n in range(32)]
IDENTITIES_64 = [f"CP-{n:03}" for n in range(64)]
NAMES = ["connector-1", "connector-2", "connector-3"]
# The shipped checks: every 1 s, out after 2 failures, so an instance is out within ~2 s;
# 5 s leaves room for a loaded machine without letting "a few intervals" become minutes.
TAKEN_OUT_S = 5.0
# Without `option redispatch 1` the first retry waits a second on the dead instance.
REDISPATCH_S = 0.9

Routes = dict[str, str]  # identity -> the instance it reached


@pytest.fixture
def instances(tmp_path: Path) -> Iterator[list[StubInstance]]:
    """Three stand-in instances named like the shipped cfg's servers, started side by side."""
    stubs = [StubInstance(tmp_path, name) for name in NAMES]
    for stub in stubs:
        stub.launch()
    try:
        for stub in stubs:
            stub.wait_ready()
        yield stubs
    finally:
        for stub in stubs:
            stub.stop()


async def open_as(
    proxy: HAProxy, identity: str, query: str = "", tls: ssl.SSLContext | None = None
) -> tuple[ClientConnection, str]:
    """A charger's WebSocket through HAProxy; (the connection, the instance that greeted it)."""
    connection = await websockets.connect(f"{proxy.url}/{identity}{query}", ssl=tls, open_timeout=WAIT_S)
    async with asyncio.timeout(WAIT_S):
        greeting = json.loads(await connection.recv())
    assert greeting["path"] == f"/{identity}{query}", "the path must reach the instance unchanged"
    return connection, str(greeting["instance"])


async def reached(proxy: HAProxy, identity: str, query: str = "") -> str:
    """The instance that a connection for `identity` reaches (the connection is closed again)."""
    connection, instance = await open_as(proxy, identity, query)
    await connection.close()
    return instance


async def routes(proxy: HAProxy, identities: list[str], query: str = "") -> Routes:
    found = await asyncio.gather(*(reached(proxy, identity, query) for identity in identities))
    return dict(zip(identities, found, strict=True))


async def closed(connection: ClientConnection, within: float) -> None:
    async with asyncio.timeout(within):
        await connection.wait_closed()


def test_shipped_config_passes_haproxy_check() -> None:
    """`haproxy -c` accepts deploy/haproxy.cfg as shipped, also where its compose service names do not resolve."""
    result = subprocess.run(
        [installed("haproxy", "/usr/sbin/haproxy"), "-c", "-f", str(SHIPPED_HAPROXY_CFG)],
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Configuration file is valid" in result.stdout


async def test_one_identity_always_reaches_the_same_instance(
    instances: list[StubInstance], start_haproxy: StartHAProxy
) -> None:
    """Each of 32 identities reaches the same instance on every connection, and all three instances get some."""
    proxy = start_haproxy([stub.backend for stub in instances])
    first = await routes(proxy, IDENTITIES_32)
    assert await routes(proxy, IDENTITIES_32) == first
    assert await routes(proxy, IDENTITIES_32) == first
    assert set(first.values()) == set(NAMES)


async def test_a_query_string_does_not_change_the_routing(
    instances: list[StubInstance], start_haproxy: StartHAProxy
) -> None:
    """An identity reaches the same instance with or without a query string, whatever it holds."""
    proxy = start_haproxy([stub.backend for stub in instances])
    plain = await routes(proxy, IDENTITIES_32)
    assert await routes(proxy, IDENTITIES_32, "?token=a") == plain
    assert await routes(proxy, IDENTITIES_32, "?token=b&x=CP-999") == plain


async def test_an_instance_answering_503_is_taken_out_and_its_chargers_move(
    instances: list[StubInstance], start_haproxy: StartHAProxy
) -> None:
    """/readyz 503: within a few checks its chargers are cut and reach the others; no other charger moves."""
    proxy = start_haproxy([stub.backend for stub in instances])
    await until(lambda: all_up(proxy), WAIT_S)
    before = await routes(proxy, IDENTITIES_32)
    draining = [identity for identity, instance in before.items() if instance == "connector-2"]
    held, _ = await open_as(proxy, draining[0])
    instances[1].set_ready(False)
    started = time.monotonic()
    await closed(held, TAKEN_OUT_S)  # on-marked-down shutdown-sessions
    assert time.monotonic() - started < TAKEN_OUT_S
    assert proxy.server_status()["connector-2"].startswith("DOWN")
    after = await routes(proxy, IDENTITIES_32)
    assert {after[identity] for identity in draining} <= {"connector-1", "connector-3"}
    assert {i: r for i, r in after.items() if i not in draining} == {
        i: r for i, r in before.items() if i not in draining
    }


async def test_chargers_of_a_killed_instance_reconnect_to_the_others_at_once(
    instances: list[StubInstance], start_haproxy: StartHAProxy
) -> None:
    """SIGKILL one instance: its chargers' first reconnects reach the others at once; the rest stay connected."""
    proxy = start_haproxy([stub.backend for stub in instances])
    await until(lambda: all_up(proxy), WAIT_S)
    held = {identity: await open_as(proxy, identity) for identity in IDENTITIES_32}
    victims = [identity for identity, (_, instance) in held.items() if instance == "connector-2"]
    instances[1].kill()
    await asyncio.gather(*(closed(held[identity][0], WAIT_S) for identity in victims))
    started = time.monotonic()
    moved = await routes(proxy, victims)
    # The first attempt of every charger succeeds, and fast: a failed connect goes to
    # another instance at once (`option redispatch 1`), not after a second's wait.
    assert time.monotonic() - started < REDISPATCH_S
    assert set(moved.values()) <= {"connector-1", "connector-3"}
    survivors = [connection for identity, (connection, _) in held.items() if identity not in victims]
    assert all(connection.state is State.OPEN for connection in survivors)
    # Once the health check has taken it out, they still reach the others. Not always the
    # same one as just now: a redispatch walks the hash ring differently from the ring
    # without connector-2 (docs/instances.md), so a charger may move once more when it
    # next reconnects.
    await until(lambda: proxy.server_status()["connector-2"].startswith("DOWN"), TAKEN_OUT_S)
    assert set((await routes(proxy, victims)).values()) <= {"connector-1", "connector-3"}
    await asyncio.gather(*(connection.close() for connection in survivors))


async def test_removing_an_instance_moves_only_its_chargers(
    instances: list[StubInstance], start_haproxy: StartHAProxy
) -> None:
    """Of 64 identities, dropping connector-2 from the servers moves just its own; adding it back restores all."""
    three = [stub.backend for stub in instances]
    before = await routes(start_haproxy(three), IDENTITIES_64)
    without = await routes(start_haproxy([three[0], three[2]]), IDENTITIES_64)
    moved = {identity for identity in IDENTITIES_64 if without[identity] != before[identity]}
    assert moved == {identity for identity, instance in before.items() if instance == "connector-2"}
    assert moved, "connector-2 had no identities: the test shows nothing"
    assert await routes(start_haproxy(three), IDENTITIES_64) == before


async def test_a_real_connector_behind_the_shipped_config_serves_a_charger(
    connector: RunningConnector, start_haproxy: StartHAProxy
) -> None:
    """HAProxy's check finds the connector's real /readyz healthy, and an OCPP 1.6 charger boots through it."""
    service = connector.service
    ocpp_port = service.dispatcher.port
    assert ocpp_port is not None and service.ops_http is not None and service.ops_http.port is not None
    backend = Backend("connector-1", "127.0.0.1", ocpp_port, service.ops_http.port)
    proxy = start_haproxy([backend])
    await until(lambda: all_up(proxy), WAIT_S)
    async with ChargerLink(proxy.url, "CP_behind_haproxy") as charger:
        answer = await send(charger, "boot_notification")
    assert answer.status == "Accepted"


# -- TLS terminated at HAProxy: the variants deploy/haproxy.cfg carries as comments ------


SHIPPED_CERTS = "/usr/local/etc/haproxy/certs/"


def shipped_comment(start: str) -> list[str]:
    """The commented-out lines of deploy/haproxy.cfg that start (after `#   `) with `start`."""
    return re.findall(rf"^\s*#   ({re.escape(start)}.*)$", SHIPPED_HAPROXY_CFG.read_text(), re.MULTILINE)


@dataclass
class Profile3:
    """The operator's CA and server certificate, the chargers' CA, written where HAProxy reads them."""

    directory: Path
    operator: trustme.CA = field(default_factory=trustme.CA)
    chargers: trustme.CA = field(default_factory=trustme.CA)

    def bind_options(self) -> str:
        """The shipped profile 3 bind line's options, its certificate paths pointed at this test's files."""
        (line,) = [line for line in shipped_comment("bind :9000 ssl") if "verify required" in line]
        self.operator.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
            str(self.directory / "server.pem")
        )
        self.chargers.cert_pem.write_to_path(str(self.directory / "chargers-ca.pem"))
        return line.removeprefix("bind :9000 ").replace(SHIPPED_CERTS, f"{self.directory}/")

    def charger(self, common_name: str | None, ca: trustme.CA | None = None) -> ssl.SSLContext:
        """A charger's TLS settings: trusts the operator, shows a certificate for `common_name` (None: none)."""
        context = ssl.create_default_context()
        self.operator.configure_trust(context)
        if common_name is not None:
            (ca or self.chargers).issue_cert(common_name, common_name=common_name).configure_cert(context)
        return context


def log_of(proxy: HAProxy) -> str:
    """HAProxy's log so far (it says why it refused a TLS handshake)."""
    return (proxy.directory / "haproxy.log").read_text()


async def refused(proxy: HAProxy, identity: str, tls: ssl.SSLContext) -> BaseException:
    with pytest.raises((OSError, InvalidHandshake)) as failure:
        connection, _ = await open_as(proxy, identity, tls=tls)
        await connection.close()
    return failure.value


async def test_profile_3_at_haproxy_admits_only_chargers_with_a_certificate_of_their_ca(
    instances: list[StubInstance], start_haproxy: StartHAProxy, tmp_path: Path
) -> None:
    """The shipped profile 3 bind line: a certificate of the chargers' CA gets in; none, or another CA's, does not."""
    pki = Profile3(tmp_path)
    proxy = start_haproxy([stub.backend for stub in instances], bind_options=pki.bind_options())
    connection, instance = await open_as(proxy, "CP-001", tls=pki.charger("CP-001"))
    await connection.close()
    assert instance in NAMES
    await refused(proxy, "CP-001", pki.charger(None))
    await until(lambda: "SSL handshake failure" in log_of(proxy), WAIT_S)
    await refused(proxy, "CP-001", pki.charger("CP-001", ca=trustme.CA()))
    await until(lambda: "SSL client certificate not trusted" in log_of(proxy), WAIT_S)


async def test_profile_3_identity_rule_admits_a_certificate_only_for_its_own_identity(
    instances: list[StubInstance], start_haproxy: StartHAProxy, tmp_path: Path
) -> None:
    """With the shipped optional rules a certificate for CP-001 opens /CP-001 (any prefix), never /CP-002: 403."""
    pki = Profile3(tmp_path)
    rules = "".join(f"\n    {line}" for line in shipped_comment("http-request"))
    proxy = start_haproxy([stub.backend for stub in instances], bind_options=pki.bind_options(), rules=rules)
    tls = pki.charger("CP-001")
    for path in ("CP-001", "ocpp/CP-001", "CP%2D001"):
        connection, _ = await open_as(proxy, path, tls=tls)
        await connection.close()
    failure = await refused(proxy, "CP-002", tls)
    assert isinstance(failure, InvalidStatus) and failure.response.status_code == 403
