"""Who may hold a connection: the accounting behind OCPP_MAX_CONNECTIONS and the
unauthenticated bounds. Pure; the dispatcher does the closing and the logging.

A connection is *unauthenticated* from its first byte (after TLS, so with profile 3 the
client certificate has been checked) until it passes the request checks: identity,
allow-list, HTTP Basic. Until then it costs a descriptor and some memory but holds no
charger slot, so silent sockets cannot lock honest chargers out of the fleet limit. Each
address may hold at most `per_address` of them (an IPv6 /64 counts as one address: one
host usually owns a whole /64); beyond `total`, the oldest is dropped for the newcomer,
since an honest handshake takes milliseconds while a silent one sits until its timeout.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from typing import Generic, TypeVar

Connection = TypeVar("Connection")

IPV6_HOST_PREFIX = 64


def address_key(host: str) -> str:
    """What an address bound counts by: the IPv4 address, or the /64 of an IPv6 one."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:  # a dual-stack listener sees IPv4 peers this way
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_HOST_PREFIX), strict=False))
    return str(address)


class Admission(Generic[Connection]):
    """Counts connections by state; refuses nothing itself, answers whether there is room."""

    def __init__(self, capacity: int, per_address: int, total: int) -> None:
        self.capacity = capacity  # OCPP_MAX_CONNECTIONS (or what the open files limit allows)
        self.per_address = per_address
        self.total = total
        self._pending: dict[Connection, str] = {}  # unauthenticated -> address key, oldest first
        self._per_key: Counter[str] = Counter()
        self._authenticated: set[Connection] = set()

    @property
    def authenticated(self) -> int:
        return len(self._authenticated)

    @property
    def unauthenticated(self) -> int:
        return len(self._pending)

    def unauthenticated_from(self, host: str) -> int:
        return self._per_key[address_key(host)]

    def unauthenticated_connections(self) -> list[Connection]:
        """Those not authenticated yet, oldest first (a copy: closing them changes the count)."""
        return list(self._pending)

    def arrive(self, connection: Connection, host: str) -> tuple[bool, Connection | None]:
        """Count a new connection as unauthenticated: (admitted, the oldest one to drop for it).

        Not admitted when `host` already holds `per_address` unauthenticated connections.
        """
        key = address_key(host)
        if self._per_key[key] >= self.per_address:
            return False, None
        evicted = None
        if len(self._pending) >= self.total:
            evicted = next(iter(self._pending))
            self.leave(evicted)
        self._pending[connection] = key
        self._per_key[key] += 1
        return True, evicted

    def authenticate(self, connection: Connection) -> bool:
        """It passed the request checks: count it against the fleet limit; False if full."""
        if len(self._authenticated) >= self.capacity:
            return False
        self._forget_pending(connection)
        self._authenticated.add(connection)
        return True

    def leave(self, connection: Connection) -> None:
        """Its TCP connection is gone (or going): free what it held. Idempotent."""
        self._forget_pending(connection)
        self._authenticated.discard(connection)

    def _forget_pending(self, connection: Connection) -> None:
        key = self._pending.pop(connection, None)
        if key is not None:
            self._per_key[key] -= 1
            if not self._per_key[key]:
                del self._per_key[key]  # a scan from many addresses must not grow this forever
