"""Transaction ids, open transactions and open reservations per charge point, under STATE_DIR.

Ids must be unique per charge point, also across restarts of the connector. Two guards:
the last id handed out is persisted (one small file per charge point, replaced
atomically), and a new id is never below the seconds since 2020, so even a lost state
directory does not reissue an old id unless the clock went backwards. The number stays
far below 2**31 for decades: chargers often store it as a signed 32-bit integer.

A connector runs one transaction at a time. A transaction whose StopTransaction never came
(the charger rebooted, or lost it) is *settled* when the charger shows it cannot stop it any
more: by a new StartTransaction on that connector, or by a BootNotification (all of the
charger's). Settled is no longer active (no remote stop is sent for it), but still
stoppable for a while: chargers send the StopTransaction of an interrupted transaction
(reason PowerLoss, Reboot) from their offline queue *after* their BootNotification, and its
energy must count. Settled records are capped per charger and dropped when old, so the
state file stays bounded.

Reservations share the id sequence (the charger keeps both kinds of id) and the file: a
reservation made before a restart can still be cancelled or used after it. An expired one
is forgotten when next looked at, as the charger itself drops it at its expiry date.

OCPP 2.0.1 and 2.1 transactions (the charger's string ids, on EVSEs) live in the same
records and file, and settle the same way. Their TransactionEvents carry a seqNo per
transaction; the seqNos handled are kept (as runs, bounded: see `SeqNos`) while the
transaction is open or settled and for a while after it ended, so an event re-sent after a
lost answer, also after a restart of the connector, is recognised and published once.

File names: the percent-encoded identity, or for one too long for a file name its SHA-256
in the subfolder `hashed/`, so that no identity maps to another's file; each file names its
identity inside, checked on load. Versions up to 0.1.0 put hashed names in the main folder
with no identity inside; such files are moved to `hashed/` when the store is created (see
`_move_legacy_hashed_files`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import re
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from connector.datapoints import AnyTransaction, EvseTransaction, TransactionRecord
from connector.limits import Throttled
from connector.seq_journal import SeqJournal

LOG = logging.getLogger(__name__)

ID_EPOCH = 1577836800  # 2020-01-01T00:00:00Z
MAX_NAME = 200
HASHED = "hashed"  # subfolder of the files named by hash
LEGACY_HASHED_NAME = re.compile(r"[0-9a-f]{64}\.json")  # how versions <= 0.1.0 named them
SETTLED_KEEP_S = 7 * 24 * 3600.0  # a settled transaction's late StopTransaction still counts this long
MAX_SETTLED = 20  # per charge point: the newest settled transactions stay stoppable
MAX_OPEN = 100  # per charge point: beyond, the oldest open ones are settled (a charger inventing connector ids)
MAX_ENDED = 20  # per charge point: ended 2.x transactions whose seqNos are still recognised (a re-sent Ended)
ENDED_KEEP_S = SETTLED_KEEP_S  # ... and for how long: a charger re-sends within minutes, an offline queue within days
MAX_SEQ_RUNS = 16  # per 2.x transaction: runs of consecutive seqNos kept (see SeqNos)
# seqNos journaled for a charge point (see `_journal_seq_no`) before its state file is
# written whole again and its journal emptied: bounds the journal's size and its replay.
MAX_JOURNAL_LINES = 256
JOURNAL_LOST_REPORT_S = 60.0  # at most one ERROR a minute for journal rows whose commit failed

EventOutcome = Literal["opened", "updated", "superseded"]  # what a 2.x Started/Updated event did (see `running`)


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


@dataclass(frozen=True)
class Settled:
    """A transaction the charger can no longer stop: not active, but its late stop still counts."""

    record: AnyTransaction
    at: float  # seconds since 1970, when it was settled


class SeqNos:
    """The seqNos handled of one 2.x transaction, as runs `[first, last]` of consecutive ones, ascending.

    A charger numbers a transaction's events 0, 1, 2, ... (OCPP 2.0.1 E01), so a
    transaction of thousands of events is one run. A charger skipping numbers makes gaps;
    beyond MAX_SEQ_RUNS runs the lowest gap is closed: a seqNo in it counts as handled. That
    loses at most an old event that never came, and never publishes one twice.
    """

    def __init__(self, runs: Iterable[Iterable[int]] = ()) -> None:
        self.runs: list[list[int]] = []
        for first, last in runs:
            if not (isinstance(first, int) and isinstance(last, int) and first <= last):
                raise ValueError(f"seqNo run [{first!r}, {last!r}]")
            self.add_run(first, last)

    def __contains__(self, seq_no: int) -> bool:
        return any(first <= seq_no <= last for first, last in self.runs)

    def add(self, seq_no: int) -> None:
        self.add_run(seq_no, seq_no)

    def add_run(self, first: int, last: int) -> None:
        merged = [first, last]
        kept = []
        for run in self.runs:
            if run[1] + 1 < merged[0] or merged[1] + 1 < run[0]:
                kept.append(run)
            else:  # overlapping or adjacent: one run
                merged = [min(run[0], merged[0]), max(run[1], merged[1])]
        kept.append(merged)
        kept.sort()
        if len(kept) > MAX_SEQ_RUNS:
            kept[0:2] = [[kept[0][0], kept[1][1]]]
        self.runs = kept


class StateUnavailableError(Exception):
    """The shared store (STATE_URL) did not take, or give, what a charger's answer depends on."""


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
    """Per charge point: the last id issued, the transactions not yet stopped, and the settled ones."""

    def __init__(self, state_dir: str | Path, clock: Callable[[], float] = time.time) -> None:
        self._dir = Path(state_dir) / "transactions"
        self._clock = clock
        self._last_id: dict[str, int] = {}
        # By transaction id: ours (int) for 1.6, the charger's (str) for 2.x.
        self._open: dict[str, dict[int | str, AnyTransaction]] = {}
        self._settled: dict[str, dict[int | str, Settled]] = {}
        self._reservations: dict[str, dict[int, Reservation]] = {}  # by connector id
        # OCPP 2.x: seqNos handled, by transaction id (open, settled or ended), and the ended
        # transactions still recognised, with when they ended (seconds since 1970).
        self._seq_nos: dict[str, dict[str, SeqNos]] = {}
        self._ended: dict[str, dict[str, float]] = {}
        # Lines in each charge point's seqNo journal since its state file was last written.
        self._journaled: dict[str, int] = {}
        self._journal = SeqJournal(self._dir, on_lost=self._journal_lost)
        self._lost_reports = Throttled(JOURNAL_LOST_REPORT_S)
        # The journal's operations ("read", "append", "clear") failing now: each logged once,
        # again only after it has worked in between (state files are written whole meanwhile).
        self._journal_failing: set[str] = set()
        self._move_legacy_hashed_files()

    # -- the session's side: files need no preparing and are written before a call returns

    def unsaved(self, cp: str) -> bool:
        """Whether the charger's writes are not yet where they must be before it is answered."""
        return False

    async def prepare(self, cp: str) -> None:
        """Before a charger is served (shared_transactions reads its state from Redis here)."""

    async def saved(self, cp: str | None = None) -> None:
        """Return once what the charger (None: any) is about to be told is stored."""

    def left(self, cp: str) -> None:
        """The charger's connection ended (this store keeps it: one instance serves everyone)."""

    def connectors(self, cp: str) -> Collection[int]:
        """Connector (EVSE) ids another instance saw of the charger (several instances); none here."""
        return ()

    def connector_seen(self, cp: str, connector_id: int) -> None:
        """A connector (EVSE) id the charger named (several instances record it)."""

    def start(self, cp: str, connector_id: int, id_tag: str, meter_start: int, started: str = "") -> TransactionRecord:
        """A new transaction, now the only one open on its connector: any other still open there
        (its stop lost) is settled, since a connector runs one transaction at a time.

        A replay (a charger that never got our answer sends the same StartTransaction again,
        timestamp and all) gets the id already issued. It is open again if it was settled
        meanwhile (by a reboot: the charger still holds it), unless a newer transaction runs
        on its connector: then it changes nothing.
        """
        self._load(cp)
        candidate = TransactionRecord(0, connector_id, id_tag, meter_start, started)
        replayed = self._replayed(cp, candidate)
        if replayed is not None and self._newer_on_connector(cp, replayed):
            return replayed
        record = replayed or replace(candidate, transaction_id=self._next_id(cp))
        self._settled[cp].pop(record.transaction_id, None)
        self._open[cp][record.transaction_id] = record
        self._settle(cp, "a new start on its connector", self._others_on(cp, record))
        self._settle(cp, f"more than {MAX_OPEN} open", self._surplus(cp, record))
        self._save(cp)
        return record

    def settle_all(self, cp: str) -> list[AnyTransaction]:
        """After a BootNotification: the charger holds none of its transactions any more. The settled ones."""
        self._load(cp)
        settled = self._settle(cp, "BootNotification", list(self._open[cp].values()))
        if settled:
            self._save(cp)
        return settled

    def new_id(self, cp: str) -> int:
        """A fresh id from the same sequence (reservations use it), persisted."""
        issued = self._next_id(cp)
        self._save(cp)
        return issued

    def _next_id(self, cp: str) -> int:
        self._load(cp)
        self._last_id[cp] = max(self._last_id[cp] + 1, self._floor())
        return self._last_id[cp]

    def _replayed(self, cp: str, candidate: TransactionRecord) -> TransactionRecord | None:
        if not candidate.started:  # without the charger's timestamp a repeat cannot be told from a new start
            return None
        known = itertools.chain(self._open[cp].values(), (s.record for s in self._settled[cp].values()))
        ours = (r for r in known if isinstance(r, TransactionRecord))  # not a 2.x one of the same charger
        return next((r for r in ours if replace(r, transaction_id=0) == candidate), None)

    def _newer_on_connector(self, cp: str, record: AnyTransaction) -> bool:
        rank = self._rank(cp)
        return any(rank(r.transaction_id) > rank(record.transaction_id) for r in self._others_on(cp, record))

    def _rank(self, cp: str) -> Callable[[int | str], tuple[int, int]]:
        """Age order of transaction ids: 1.6 ids (ours) ascend as issued; 2.x ids (the
        charger's strings) carry no order, so they rank by when they were first opened, after
        every 1.6 one (a charger moves from 1.6 to 2.x, rarely back)."""
        position = {t: i for i, t in enumerate(self._open[cp]) if isinstance(t, str)}

        def rank(transaction_id: int | str) -> tuple[int, int]:
            if isinstance(transaction_id, int):
                return (0, transaction_id)
            return (1, position.get(transaction_id, -1))

        return rank

    def _others_on(self, cp: str, current: AnyTransaction) -> list[AnyTransaction]:
        on_connector = (r for r in self._open[cp].values() if r.connector_id == current.connector_id)
        return [r for r in on_connector if r.transaction_id != current.transaction_id]

    def _surplus(self, cp: str, current: AnyTransaction) -> list[AnyTransaction]:
        surplus = len(self._open[cp]) - MAX_OPEN
        if surplus <= 0:
            return []
        others = sorted((t for t in self._open[cp] if t != current.transaction_id), key=self._rank(cp))
        return [self._open[cp][t] for t in others[:surplus]]

    def _settle(self, cp: str, reason: str, records: list[AnyTransaction]) -> list[AnyTransaction]:
        for record in records:
            del self._open[cp][record.transaction_id]
            self._settled[cp][record.transaction_id] = Settled(record, self._clock())
            LOG.info(
                "%s: transaction %s on connector %d settled (%s): no longer active; a late stop still counts",
                cp,
                record.transaction_id,
                record.connector_id,
                reason,
            )
        if records:
            self._prune_settled(cp)
        return records

    def _prune_settled(self, cp: str) -> None:
        """Keep the newest MAX_SETTLED settled records younger than SETTLED_KEEP_S."""
        horizon = self._clock() - SETTLED_KEEP_S
        young = (s for s in self._settled[cp].values() if s.at > horizon)
        rank = self._rank(cp)
        kept = sorted(young, key=lambda s: (s.at, rank(s.record.transaction_id)))[-MAX_SETTLED:]
        self._settled[cp] = {s.record.transaction_id: s for s in kept}

    def stop(self, cp: str, transaction_id: int | str) -> TransactionRecord | None:
        """The record of an open or settled transaction, now closed; None if neither (a repeat, or unknown).

        OCPP 1.6 (a 2.x id, a string, finds nothing: 2.x transactions end through `ended`).
        """
        if not isinstance(transaction_id, int):
            return None
        self._load(cp)
        record = self._open[cp].pop(transaction_id, None) or self._late_stop(cp, transaction_id)
        if record is not None:
            self._save(cp)
        # Ids that are ints are ours: only 1.6 records have them.
        return record if isinstance(record, TransactionRecord) else None

    def _late_stop(self, cp: str, transaction_id: int) -> AnyTransaction | None:
        """A settled transaction's record, taken out: its StopTransaction came after all."""
        self._prune_settled(cp)  # one settled too long ago is forgotten, also while we run
        settled = self._settled[cp].pop(transaction_id, None)
        if settled is None:
            return None
        LOG.info("%s: StopTransaction for settled transaction %d: counted", cp, transaction_id)
        return settled.record

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

    def active(self, cp: str, connector_id: int) -> AnyTransaction | None:
        """The transaction open on the connector (2.x: the EVSE; settled ones are not), if any."""
        self._load(cp)
        # The newest: state files of earlier versions may hold several open on one connector.
        on_connector = [r for r in self._open[cp].values() if r.connector_id == connector_id]
        if len(on_connector) <= 1:
            return on_connector[0] if on_connector else None
        rank = self._rank(cp)
        return max(on_connector, key=lambda r: rank(r.transaction_id))

    # -- OCPP 2.x: the charger's transactions, told apart by its string ids ------------------

    def repeated(self, cp: str, transaction_id: str, seq_no: int) -> bool:
        """Whether a TransactionEvent with this seqNo was handled already (a re-send)."""
        self._load(cp)
        seen = self._seq_nos[cp].get(transaction_id)
        return seen is not None and seq_no in seen

    def known(self, cp: str, transaction_id: str) -> EvseTransaction | None:
        """A 2.x transaction's record while it is open or settled."""
        self._load(cp)
        settled = self._settled[cp].get(transaction_id)
        record = self._open[cp].get(transaction_id) or (settled.record if settled else None)
        return record if isinstance(record, EvseTransaction) else None

    def has_ended(self, cp: str, transaction_id: str) -> bool:
        """Whether a 2.x transaction's Ended event came (and is still remembered, see MAX_ENDED)."""
        self._load(cp)
        return transaction_id in self._ended[cp]

    def running(self, cp: str, record: EvseTransaction, seq_no: int) -> EventOutcome:
        """A 2.x Started or Updated event: the record (new, or with fields it brought) is
        open on its EVSE, the only one there; the seqNo is handled.

        Returns "opened" (new to the store, or settled and open again: a charger that still
        sends events holds it), "updated" (open already) or "superseded": settled, and a newer
        transaction runs on its EVSE, so it stays settled.
        """
        self._load(cp)
        transaction_id = record.transaction_id
        earlier = self._open[cp].get(transaction_id)
        outcome: EventOutcome
        if earlier is None and transaction_id in self._settled[cp]:
            outcome = self._resume(cp, record)
        else:
            outcome = "opened" if earlier is None else "updated"
            self._open[cp][transaction_id] = record
            if earlier is None or earlier.connector_id != record.connector_id:
                self._settle(cp, "a new transaction on its EVSE", self._others_on(cp, record))
                self._settle(cp, f"more than {MAX_OPEN} open", self._surplus(cp, record))
        self._note_seq_no(cp, transaction_id, seq_no)
        if earlier == record:
            self._journal_seq_no(cp, transaction_id, seq_no)  # the usual Updated event: one line
        else:
            self._save(cp)
        return outcome

    def _resume(self, cp: str, record: EvseTransaction) -> EventOutcome:
        if any(r.connector_id == record.connector_id for r in self._open[cp].values()):
            self._settled[cp][record.transaction_id] = replace(self._settled[cp][record.transaction_id], record=record)
            return "superseded"
        del self._settled[cp][record.transaction_id]
        self._open[cp][record.transaction_id] = record
        LOG.info("%s: settled transaction %s sends events again: active again", cp, record.transaction_id)
        return "opened"

    def ended(self, cp: str, transaction_id: str, seq_no: int) -> EvseTransaction | None:
        """A 2.x Ended event: the transaction's record, open or settled, now closed (None if
        neither: never seen); its seqNos stay recognised for a while (MAX_ENDED, ENDED_KEEP_S)."""
        self._load(cp)
        settled = self._settled[cp].pop(transaction_id, None)
        record = self._open[cp].pop(transaction_id, None) or (settled.record if settled else None)
        if record is not None:
            LOG.info("%s: transaction %s ended%s", cp, transaction_id, " (it was settled)" if settled else "")
        self._ended[cp][transaction_id] = self._clock()
        self._note_seq_no(cp, transaction_id, seq_no)
        self._prune_ended(cp)
        self._save(cp)
        return record if isinstance(record, EvseTransaction) else None

    def _note_seq_no(self, cp: str, transaction_id: str, seq_no: int) -> None:
        self._seq_nos[cp].setdefault(transaction_id, SeqNos()).add(seq_no)

    def _journal_seq_no(self, cp: str, transaction_id: str, seq_no: int) -> None:
        """Record a seqNo handled, nothing else having changed, for a restart of the connector.

        Writing the whole state file (a temporary file and a rename) for each of a fleet's
        periodic TransactionEvents cost ~350 us a message; a row in the journal
        (`seq_journal`) costs a fraction of that. Committed within `seq_journal.COMMIT_AFTER_S`
        on the loop, it then survives the connector's death, like the file without fsync, not
        the machine's; `_load` replays it, `_save` empties it.
        """
        if self._journaled.get(cp, 0) >= MAX_JOURNAL_LINES:
            self._save(cp, durable=False)
            return
        if self._append_journal(cp, json.dumps([transaction_id, seq_no])):
            self._journaled[cp] = self._journaled.get(cp, 0) + 1
        else:
            self._save(cp, durable=False)  # a directory not created yet, or a full disk: the whole file

    def _append_journal(self, cp: str, line: str) -> bool:
        """Append one line to the charge point's journal; False if it could not be."""
        try:
            self._journal.append(cp, line)
        except (sqlite3.Error, OSError) as error:
            self._journal_failure("append", "could not journal a seqNo (the state file is written instead)", error)
            return False
        self._journal_failing.discard("append")
        return True

    def _replay_journal(self, cp: str) -> None:
        """Add the seqNos of the charge point's journal."""
        try:
            # Never more than MAX_JOURNAL_LINES are newer than the state file (see `_empty_journal`).
            lines = self._journal.lines(cp, MAX_JOURNAL_LINES + 1)
        except (sqlite3.Error, OSError) as error:
            # Once, not per charge point: a lasting fault would log for each of a fleet's loads.
            self._journal_failure("read", "could not read the seqNo journal (those seqNos are not known)", error)
            # Rows it could not read are not counted: journal no more past them, write the file whole.
            self._journaled[cp] = MAX_JOURNAL_LINES
            return
        self._journal_failing.discard("read")
        if lines:
            self._replay(cp, lines)

    def _empty_journal(self, cp: str) -> None:
        """Empty the charge point's journal: its state file holds the seqNos now.

        If that fails, the count stays: the charge point journals no more than MAX_JOURNAL_LINES
        rows past it (each later event writes the state file whole, and tries again), so the
        journal stays bounded and a replay of its newest rows reads every one newer than the file.
        """
        if self._journaled.get(cp) and self._clear_journal(cp):
            del self._journaled[cp]

    def _clear_journal(self, cp: str) -> bool:
        """Drop the charge point's journal rows; False if that could not be done."""
        try:
            self._journal.clear(cp)
        except (sqlite3.Error, OSError) as error:
            # Harmless but for the space: rows left hold seqNos the state file knows already.
            self._journal_failure("clear", "could not empty a charge point's seqNo journal", error)
            return False
        self._journal_failing.discard("clear")
        return True

    def _journal_lost(self, cps: set[str], error: Exception) -> None:
        """Rows that waited for their commit are gone: their charge points' state files take the seqNos."""
        if self._lost_reports.ready():  # a commit is tried every COMMIT_AFTER_S: not an ERROR each
            LOG.error(
                "could not commit seqNo journal rows in %s (%s); %d charge points' state files written instead",
                self._journal.path,
                error,
                len(cps),
            )
        for cp in cps:
            if cp in self._last_id:  # still in memory (`forget` commits before it lets one go)
                self._save(cp, durable=False)

    def _journal_failure(self, operation: str, what: str, error: Exception) -> None:
        if operation not in self._journal_failing:
            self._journal_failing.add(operation)
            LOG.error("%s in %s (%s); not logged again until it works again", what, self._journal.path, error)

    def close(self) -> None:
        """At shutdown: commit the journal's waiting rows and close its database."""
        self._journal.close()

    def _replay(self, cp: str, lines: list[str]) -> None:
        """Add the seqNos of journal lines (one that is not a line of ours: skipped)."""
        for line in lines:
            entry = _journal_entry(line)
            if entry is not None:
                self._note_seq_no(cp, *entry)
        self._journaled[cp] = max(len(lines), 1)  # the next save empties it
        self._prune_seq_nos(cp)

    def _prune_ended(self, cp: str) -> None:
        """Keep the newest MAX_ENDED ended transactions younger than ENDED_KEEP_S."""
        horizon = self._clock() - ENDED_KEEP_S
        young = sorted((at, t) for t, at in self._ended[cp].items() if at > horizon)
        self._ended[cp] = {t: at for at, t in young[-MAX_ENDED:]}

    def _prune_seq_nos(self, cp: str) -> None:
        """Forget the seqNos of transactions no longer open, settled or remembered as ended."""
        tracked = self._seq_nos[cp]
        for transaction_id in list(tracked):
            if not (
                transaction_id in self._open[cp]
                or transaction_id in self._settled[cp]
                or transaction_id in self._ended[cp]
            ):
                del tracked[transaction_id]

    # -- files -------------------------------------------------------------------------

    def forget(self, cp: str) -> None:
        """Drop a charge point gone for long from memory, and its file when nothing in it matters.

        The file stays while a transaction or reservation is open (its stop may still come),
        and while the last id issued is above the clock floor (only the file keeps later ids
        unique then); otherwise the floor alone keeps new ids above every old one.
        """
        self._load(cp)
        keep = self._open[cp] or self._reservations[cp] or self._last_id[cp] >= self._floor()
        if keep:
            self._journal.commit()  # its waiting rows, while a failure can still save them in its file
            self._journaled.pop(cp, None)  # its rows stay, to be replayed (and counted) when it is loaded again
        for memory in (self._last_id, self._open, self._settled, self._reservations, self._seq_nos, self._ended):
            memory.pop(cp, None)
        if not keep:
            self._drop_state(cp)

    def _drop_state(self, cp: str) -> None:
        if self._journaled.pop(cp, 0):
            self._clear_journal(cp)
        self._path(cp).unlink(missing_ok=True)

    def _floor(self) -> int:
        return int(self._clock()) - ID_EPOCH

    def _path(self, cp: str) -> Path:
        # Percent-encoding is injective and makes any identity a safe file name. One too long
        # for the file system (255 bytes) is named by its hash instead, in a folder of its own:
        # in the main folder, an identity equal to that hex string would share the file.
        name = quote(cp, safe="")
        if len(name) <= MAX_NAME:
            return self._dir / f"{name}.json"
        return self._dir / HASHED / f"{hashlib.sha256(cp.encode()).hexdigest()}.json"

    def _load(self, cp: str) -> None:
        if cp in self._last_id:
            return
        self._last_id[cp], self._open[cp], self._settled[cp], self._reservations[cp] = 0, {}, {}, {}
        self._seq_nos[cp], self._ended[cp] = {}, {}
        self._read_state(cp)

    # The persistence of one charge point's state: these files here; Redis in
    # shared_transactions.SharedTransactionStore, which overrides these four and `_next_id`.

    def _read_state(self, cp: str) -> None:
        """Adopt the charge point's stored state (`_take`) and seqNo journal, if any."""
        path = self._path(cp)
        try:
            state = _read_object(path)
            if self._belongs_to(cp, path, state):
                self._take(cp, state)
        except FileNotFoundError:
            pass
        except (ValueError, KeyError, TypeError) as error:
            LOG.error("%s: transaction state %s unreadable (%s); starting afresh", cp, path, error)
        self._replay_journal(cp)

    def _take(self, cp: str, state: dict[str, Any]) -> None:
        """Adopt a state file's content; ValueError, KeyError or TypeError, adopting nothing, if malformed."""
        last_id = int(state["last_id"])
        records = [_record(r) for r in state["open"]]
        settled = [Settled(_record(s["record"]), float(s["at"])) for s in state.get("settled", [])]
        reservations = [Reservation(**r) for r in state.get("reservations", [])]  # older files: none
        seq_nos = {str(t): SeqNos(runs) for t, runs in _mapping(state, "seq_nos").items()}  # 2.x; older files: none
        ended = {str(t): float(at) for t, at in _mapping(state, "ended").items()}
        self._last_id[cp] = last_id
        self._open[cp] = {r.transaction_id: r for r in records}
        self._settled[cp] = {s.record.transaction_id: s for s in settled}
        self._reservations[cp] = {r.connector_id: r for r in reservations}
        self._seq_nos[cp], self._ended[cp] = seq_nos, ended
        self._prune_settled(cp)
        self._prune_ended(cp)

    def _belongs_to(self, cp: str, path: Path, state: dict[str, Any]) -> bool:
        """Whether a state file is this charge point's: it names the identity, or an earlier
        version wrote it under a name that only this identity maps to."""
        owner = state.get("identity")
        if owner == cp:
            return True
        if owner is not None:
            LOG.error("%s: state file %s is that of %.100r; starting afresh", cp, path, owner)
            return False
        if path.parent == self._dir and LEGACY_HASHED_NAME.fullmatch(path.name):
            # Left in place by the migration (see _move_legacy_hashed_files): a longer identity's.
            LOG.error("%s: state file %s has a hashed name and no identity inside; starting afresh", cp, path)
            return False
        return True

    def _move_legacy_hashed_files(self) -> None:
        """Move state files named by hash in the main folder (versions <= 0.1.0) to `hashed/`.

        Such a file belongs to the long identity whose hash it is named by, or to an identity
        equal to that hex string, or (the collision this layout ends) to both; the file
        cannot tell. It goes to the long identity: an identity that merely equals the hash
        must never stop another charger's transaction. Such an identity starts afresh (its
        ids stay unique through the clock floor). Runs once per start; a file of this
        version names its identity inside and stays where it is.
        """
        try:
            candidates = [p for p in self._dir.iterdir() if LEGACY_HASHED_NAME.fullmatch(p.name)]
        except FileNotFoundError:
            return  # nothing stored yet
        except OSError as error:
            LOG.error("could not list %s (%s); state files named by hash not moved", self._dir, error)
            return
        moved = sum(self._move_if_legacy(path) for path in candidates)
        if moved:
            LOG.info(
                "moved %d transaction state files named by hash to %s (layout of an earlier version)",
                moved,
                self._dir / HASHED,
            )

    def _move_if_legacy(self, path: Path) -> bool:
        try:
            if "identity" in _read_object(path):
                return False  # this version's file of an identity that is a 64-digit hex string
        except (OSError, ValueError, TypeError):
            pass  # unreadable: moved all the same, its owner's load reports it
        target = self._dir / HASHED / path.name
        if target.exists():
            LOG.error("state file %s left in place: %s exists (written since the layout changed)", path, target)
            return False
        try:
            target.parent.mkdir(exist_ok=True)
            os.replace(path, target)
        except OSError as error:
            LOG.error("could not move state file %s to %s (%s)", path, target, error)
            return False
        return True

    def _save(self, cp: str, *, durable: bool = True) -> None:
        """Persist; on failure keep serving from memory (ids stay unique while we run).

        `durable`: flushed to the disk before the rename (fsync). Without it the file
        survives the connector's death (the kernel holds the data), not the machine's.
        """
        self._prune_seq_nos(cp)
        self._write_state(cp, self._state(cp), durable)

    def _state(self, cp: str) -> dict[str, Any]:
        """The charge point's state as stored (a JSON object)."""
        state: dict[str, Any] = {
            "identity": cp,
            "last_id": self._last_id[cp],
            "open": [asdict(r) for r in self._open[cp].values()],
            "settled": [{"record": asdict(s.record), "at": s.at} for s in self._settled[cp].values()],
            "reservations": [asdict(r) for r in self._reservations[cp].values()],
        }
        if self._seq_nos[cp] or self._ended[cp]:  # OCPP 2.x only: 1.6 files stay as they were
            state["seq_nos"] = {t: seen.runs for t, seen in self._seq_nos[cp].items()}
            state["ended"] = self._ended[cp]
        return state

    def _write_state(self, cp: str, state: dict[str, Any], durable: bool) -> None:
        path = self._path(cp)
        temporary = path.with_suffix(".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with temporary.open("w") as file:
                file.write(json.dumps(state))  # dumps: the C encoder; dump writes piecewise in Python
                if durable:
                    file.flush()
                    os.fsync(file.fileno())
            os.replace(temporary, path)
            self._empty_journal(cp)  # the file holds its seqNos now
        except OSError as error:
            LOG.error("%s: could not save transaction state to %s (%s); kept in memory only", cp, path, error)


def _journal_entry(line: str) -> tuple[str, int] | None:
    """A journal line `["<transaction id>", <seqNo>]`, or None where it is not one."""
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if not (isinstance(entry, list) and len(entry) == 2):
        return None
    transaction_id, seq_no = entry
    # Any integer: the schema sets no minimum, and the store keeps what a charger sent.
    if isinstance(transaction_id, str) and isinstance(seq_no, int) and not isinstance(seq_no, bool):
        return transaction_id, seq_no
    return None


def _mapping(state: dict[str, Any], name: str) -> dict[str, Any]:
    """A state file's object under `name` ({} if absent); TypeError if it is no object."""
    value = state.get(name, {})
    if not isinstance(value, dict):
        raise TypeError(f"{name} is a JSON {type(value).__name__}, not an object")
    return value


def _record(fields: dict[str, Any]) -> AnyTransaction:
    """A stored transaction: a 2.x one has the charger's string id, a 1.6 one our int."""
    if isinstance(fields.get("transaction_id"), str):
        return EvseTransaction(**fields)
    return TransactionRecord(**fields)


def _read_object(path: Path) -> dict[str, Any]:
    """A state file's JSON object; ValueError or TypeError if it holds none, OSError if unreadable."""
    state = json.loads(path.read_bytes())
    if not isinstance(state, dict):
        raise TypeError(f"a JSON {type(state).__name__}, not an object")
    return state
