"""Admission: unauthenticated connections bounded per address and in all; only authenticated ones fill the fleet."""

from __future__ import annotations

import pytest

from connector.admission import Admission, address_key


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("not-an-address", "not-an-address"),
    ],
)
def test_an_ipv6_host_counts_by_its_64_and_ipv4_by_its_address(host: str, key: str) -> None:
    """An IPv6 peer is counted by its /64 (one host's usual share), an IPv4 one (mapped or not) by its address."""
    assert address_key(host) == key


def test_one_address_holds_at_most_its_bound_of_unauthenticated_connections() -> None:
    """Beyond `per_address` an address's new connection is not admitted; another address still is."""
    admission: Admission[str] = Admission(capacity=10, per_address=2, total=100)
    assert admission.arrive("a1", "192.0.2.1") == (True, None)
    assert admission.arrive("a2", "192.0.2.1") == (True, None)
    assert admission.arrive("a3", "192.0.2.1") == (False, None)
    assert admission.arrive("b1", "192.0.2.2") == (True, None)
    admission.leave("a1")
    assert admission.arrive("a4", "192.0.2.1") == (True, None)
    assert admission.unauthenticated_from("192.0.2.1") == 2


def test_only_authenticated_connections_count_against_the_capacity() -> None:
    """Unauthenticated connections leave the fleet capacity free; beyond it authentication is refused."""
    admission: Admission[str] = Admission(capacity=2, per_address=50, total=100)
    for number in range(20):
        admission.arrive(f"silent{number}", "192.0.2.9")
    for name in ("cp1", "cp2", "cp3"):
        admission.arrive(name, "192.0.2.1")
    assert admission.authenticate("cp1") and admission.authenticate("cp2")
    assert not admission.authenticate("cp3")
    assert (admission.authenticated, admission.unauthenticated) == (2, 21)
    admission.leave("cp1")
    assert admission.authenticate("cp3")
    assert admission.unauthenticated_from("192.0.2.1") == 0


def test_beyond_the_total_the_oldest_unauthenticated_connection_is_dropped() -> None:
    """With `total` unauthenticated open, a newcomer is admitted and the oldest is named for dropping."""
    admission: Admission[str] = Admission(capacity=10, per_address=50, total=3)
    for name in ("old", "mid", "new"):
        admission.arrive(name, f"198.51.100.{len(name)}")
    admission.authenticate("mid")  # authenticated ones are never dropped for this
    admission.arrive("x", "203.0.113.1")
    assert admission.arrive("y", "203.0.113.2") == (True, "old")
    assert admission.unauthenticated == 3 and admission.authenticated == 1
    admission.leave("old")  # its connection_lost comes later: nothing counted twice
    assert admission.unauthenticated == 3


def test_leaving_forgets_an_address_entirely() -> None:
    """Once an address holds nothing it is not kept: a scan from many addresses leaves no trace."""
    admission: Admission[str] = Admission(capacity=10, per_address=5, total=100)
    for number in range(1000):
        admission.arrive(f"c{number}", f"10.0.{number // 256}.{number % 256}")
        admission.leave(f"c{number}")
    assert admission.unauthenticated == 0
    assert not admission._per_key
