"""Transaction ids, open transactions and open reservations per charge point, under STATE_DIR.

Ids must be unique per charge point, also across restarts of the connector. Two guards:
the last id handed out is persisted (one small file per charge point, replaced
atomically), and a new id is never below the seconds since 2020, so even a lost state
directory does not reissue an old id unless the clock went backwards. The number stays
far below 2**31 for decades: chargers often store it as a signed 32-bit integer.

Reservations share the id sequence (the charger keeps both kinds of id) and the file: a
reservation made before a restart can still be cancelled or used after it. An expired one
is forgotten when next looked at, as the charger itself drops it at its expiry date.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from connector.datapoints import TransactionRecord

LOG = logging.getLogger(__name__)

ID_EPOCH = 1577836800  # 2020-01-01T00:00:00Z
MAX_NAME = 200


@dataclass(frozen=True)
class Reservation:
    reservation_id: int
    connector_id: int
    expires: float | None  # seconds since 1970; None: an expiry date we could not read


def _epoch_seconds(date_time: str) -> float | None:
    """OCPP dateTime text to seconds since 1970 (UTC where no offset is given), None if unreadable.

    Our own ReserveNow sends a clean value, but one sent through execute_ocpp_call may not be.
    """
    try:
        parsed = datetime.fromisoformat(date_time)
    except (TypeError, ValueError):
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


class StateDirError(Exception):
    """STATE_DIR cannot hold the connector's state."""


def check_state_dir(state_dir: str | Path) -> None:
    """Create STATE_DIR and prove it writable now, not at the first StartTransaction."""
    probe = Path(state_dir) / "transactions" / ".writable"
    try:
        probe.parent.mkdir(parents=True, exist_ok=True)
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise StateDirError(f"STATE_DIR={state_dir} is not a writable directory ({error.strerror or error})") from None


class TransactionStore:
    """Per charge point: the last id issued and the transactions not yet stopped."""

    def __init__(self, state_dir: str | Path, clock: Callable[[], float] = time.time) -> None:
        self._dir = Path(state_dir) / "transactions"
        self._clock = clock
        self._last_id: dict[str, int] = {}
        self._open: dict[str, dict[int, TransactionRecord]] = {}
        self._reservations: dict[str, dict[int, Reservation]] = {}  # by connector id

    def start(self, cp: str, connector_id: int, id_tag: str, meter_start: int, started: str = "") -> TransactionRecord:
        """A new transaction; or, for a replay of an open one (a charger that never got our
        answer sends the same StartTransaction again, timestamp and all), the id already issued."""
        self._load(cp)
        candidate = TransactionRecord(0, connector_id, id_tag, meter_start, started)
        for record in self._open[cp].values():
            if started and replace(record, transaction_id=0) == candidate:
                return record
        record = replace(candidate, transaction_id=self._next_id(cp))
        self._open[cp][record.transaction_id] = record
        self._save(cp)
        return record

    def new_id(self, cp: str) -> int:
        """A fresh id from the same sequence (reservations use it), persisted."""
        issued = self._next_id(cp)
        self._save(cp)
        return issued

    def _next_id(self, cp: str) -> int:
        self._load(cp)
        floor = int(self._clock()) - ID_EPOCH
        self._last_id[cp] = max(self._last_id[cp] + 1, floor)
        return self._last_id[cp]

    def stop(self, cp: str, transaction_id: int) -> TransactionRecord | None:
        """The record of an open transaction, now closed; None if it is not open."""
        self._load(cp)
        record = self._open[cp].pop(transaction_id, None)
        if record is not None:
            self._save(cp)
        return record

    def reserve(self, cp: str, connector_id: int, reservation_id: int, expiry_date: str) -> None:
        """Record a reservation the charger accepted (it replaces any other on the connector)."""
        self._load(cp)
        expires = _epoch_seconds(expiry_date)
        self._reservations[cp][connector_id] = Reservation(reservation_id, connector_id, expires)
        self._save(cp)

    def reservation(self, cp: str, connector_id: int) -> int | None:
        """The id of the reservation open on the connector, if any and not expired."""
        self._load(cp)
        found = self._reservations[cp].get(connector_id)
        if found is not None and found.expires is not None and found.expires <= self._clock():
            self.end_reservation(cp, found.reservation_id)
            return None
        return found.reservation_id if found else None

    def end_reservation(self, cp: str, reservation_id: int) -> list[int]:
        """Forget a reservation (cancelled, used or expired); the connectors it was on."""
        self._load(cp)
        ended = [c for c, r in self._reservations[cp].items() if r.reservation_id == reservation_id]
        for connector_id in ended:
            del self._reservations[cp][connector_id]
        if ended:
            self._save(cp)
        return ended

    def active(self, cp: str, connector_id: int) -> TransactionRecord | None:
        self._load(cp)
        # The newest: an older one left open (its stop lost) is not what runs now.
        on_connector = [r for r in self._open[cp].values() if r.connector_id == connector_id]
        return max(on_connector, key=lambda r: r.transaction_id, default=None)

    def _path(self, cp: str) -> Path:
        # Percent-encoding makes any identity a safe file name; one too long for the file
        # system (255 bytes) is named by its hash instead.
        name = quote(cp, safe="")
        if len(name) > MAX_NAME:
            name = hashlib.sha256(cp.encode()).hexdigest()
        return self._dir / f"{name}.json"

    def _load(self, cp: str) -> None:
        if cp in self._last_id:
            return
        self._last_id[cp], self._open[cp], self._reservations[cp] = 0, {}, {}
        try:
            state = json.loads(self._path(cp).read_text())
            self._last_id[cp] = int(state["last_id"])
            records = (TransactionRecord(**r) for r in state["open"])
            self._open[cp] = {r.transaction_id: r for r in records}
            reservations = (Reservation(**r) for r in state.get("reservations", []))  # older files: none
            self._reservations[cp] = {r.connector_id: r for r in reservations}
        except FileNotFoundError:
            pass
        except (ValueError, KeyError, TypeError) as error:
            LOG.error("%s: transaction state %s unreadable (%s); starting afresh", cp, self._path(cp), error)

    def _save(self, cp: str) -> None:
        """Persist; on failure keep serving from memory (ids stay unique while we run)."""
        state = {
            "last_id": self._last_id[cp],
            "open": [asdict(r) for r in self._open[cp].values()],
            "reservations": [asdict(r) for r in self._reservations[cp].values()],
        }
        path = self._path(cp)
        temporary = path.with_suffix(".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with temporary.open("w") as file:
                json.dump(state, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except OSError as error:
            LOG.error("%s: could not save transaction state to %s (%s); kept in memory only", cp, path, error)
