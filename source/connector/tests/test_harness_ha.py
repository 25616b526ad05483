"""The harness's redis-server and HAProxy test configuration: what the tests of several instances stand on.

Redis is spoken to in raw RESP, so these checks need no client library.
"""

from __future__ import annotations

import socket

import pytest

from connector.tests.harness import WAIT_S
from connector.tests.harness_ha import (
    SHIPPED_HAPROXY_CFG,
    TEST_MAXCONN,
    Backend,
    RedisServer,
    haproxy_test_config,
)


def redis_command(port: int, *words: str) -> bytes:
    """One command in RESP; the server's whole first reply (small replies arrive in one read)."""
    request = f"*{len(words)}\r\n" + "".join(f"${len(w)}\r\n{w}\r\n" for w in words)
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as sock:
        sock.sendall(request.encode())
        return sock.recv(65536)


def test_redis_server_answers_on_its_url_and_saves_nothing(redis_server: RedisServer) -> None:
    """The server answers PING on the port of its `redis://127.0.0.1:PORT/0` url, with snapshots and AOF off."""
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    assert redis_command(redis_server.port, "PING") == b"+PONG\r\n"
    assert redis_command(redis_server.port, "CONFIG", "GET", "appendonly").endswith(b"$2\r\nno\r\n")
    assert redis_command(redis_server.port, "CONFIG", "GET", "save").endswith(b"$0\r\n\r\n")


def test_a_killed_redis_server_loses_its_data_and_restarts_on_the_same_port(redis_server: RedisServer) -> None:
    """kill() ends the server at once (connections refused); start() brings it back empty on the same port."""
    assert redis_command(redis_server.port, "SET", "k", "v") == b"+OK\r\n"
    redis_server.kill()
    with pytest.raises(ConnectionRefusedError):
        redis_command(redis_server.port, "PING")
    redis_server.start()
    assert redis_command(redis_server.port, "GET", "k") == b"$-1\r\n"


def test_haproxy_test_config_changes_only_addresses_and_ports() -> None:
    """The test configuration is the shipped one with the bind, the servers, maxconn and a stats socket replaced."""
    backends = [Backend("connector-3", "127.0.0.1", 4003, 5003), Backend("extra", "127.0.0.1", 4009, 5009)]
    shipped = SHIPPED_HAPROXY_CFG.read_text()
    config = haproxy_test_config(shipped, 4000, backends, 4999)
    assert "    bind 127.0.0.1:4000\n" in config
    assert "    server connector-3 127.0.0.1:4003 id 3 port 5003\n" in config
    assert "    server extra 127.0.0.1:4009 id 4 port 5009\n" in config
    assert "connector-1:9000" not in config and "connector-2:9000" not in config
    replaced = ("#", "server ", "bind ", "maxconn ")
    kept = [line for line in shipped.splitlines() if line.strip() and not line.strip().startswith(replaced)]
    assert set(kept) <= set(config.splitlines())
    assert f"    maxconn {TEST_MAXCONN}" in config.splitlines()
