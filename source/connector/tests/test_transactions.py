"""TransactionStore: ids unique per charge point, also across restarts (INTERFACE.md 5, 6)."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connector.datapoints import TransactionRecord
from connector.transactions import ID_EPOCH, MAX_OPEN, MAX_SETTLED, SETTLED_KEEP_S, TransactionStore

NOW = 1_795_000_000.0  # a fixed wall clock in 2026, in seconds since 1970
FLOOR = int(NOW) - ID_EPOCH  # seconds since 2020-01-01: no id may be below this


class Clock:
    """A settable wall clock, so tests move time instead of sleeping."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def store_in(directory: Path, clock: Clock | None = None) -> TransactionStore:
    return TransactionStore(directory, clock=clock or Clock())


def test_many_starts_in_the_same_second_get_unique_ids(tmp_path: Path) -> None:
    """Hundreds of starts within one second on one charge point all get different ids."""
    store = store_in(tmp_path)
    ids = [store.start("CP_1", 1, "TAG", 0).transaction_id for _ in range(300)]
    assert len(set(ids)) == len(ids)


def test_ids_are_unique_across_connectors(tmp_path: Path) -> None:
    """Starts alternating between two connectors of one charge point never share an id."""
    store = store_in(tmp_path)
    ids = [store.start("CP_1", connector, "TAG", 0).transaction_id for _ in range(50) for connector in (1, 2)]
    assert len(set(ids)) == len(ids)


def test_ids_survive_a_restart(tmp_path: Path) -> None:
    """A new store on the same state directory, at the same second, continues above every id issued before."""
    before = store_in(tmp_path)
    issued = {before.start("CP_1", c, "TAG", 0).transaction_id for c in (1, 2, 1, 2)}
    after = store_in(tmp_path)
    later = {after.start("CP_1", c, "TAG", 0).transaction_id for c in (1, 2)}
    assert not issued & later
    assert min(later) > max(issued)


def test_open_transactions_survive_a_restart(tmp_path: Path) -> None:
    """A transaction started before a restart can be found and stopped after it."""
    record = store_in(tmp_path).start("CP_1", 2, "04A2B3C4D5E6F7", 1234000)
    after = store_in(tmp_path)
    assert after.active("CP_1", 2) == record
    assert after.stop("CP_1", record.transaction_id) == record


@pytest.mark.parametrize(
    "now",
    [NOW, NOW + 0.999, float(ID_EPOCH + 1), 1_900_000_000.5],
    ids=["2026", "2026-fraction", "2020-01-01T00:00:01", "2030"],
)
def test_ids_never_go_below_the_seconds_since_2020(tmp_path: Path, now: float) -> None:
    """With an empty state directory, the first id is at least the whole seconds since 2020-01-01 UTC."""
    record = store_in(tmp_path, Clock(now)).start("CP_1", 1, "TAG", 0)
    assert record.transaction_id >= int(now) - ID_EPOCH
    assert record.transaction_id < 2**31


def test_a_lost_state_directory_does_not_reissue_ids(tmp_path: Path) -> None:
    """Ids issued before the state was lost stay unique as long as the clock moved on."""
    clock = Clock()
    first = {store_in(tmp_path / "old", clock).start("CP_1", 1, "TAG", 0).transaction_id for _ in range(5)}
    clock.now += 10
    second = store_in(tmp_path / "new", clock).start("CP_1", 1, "TAG", 0).transaction_id
    assert second not in first
    assert second > max(first)


def test_ids_keep_rising_when_the_clock_jumps_back(tmp_path: Path) -> None:
    """If the clock goes backwards while running, ids still rise above the last one issued."""
    clock = Clock()
    store = store_in(tmp_path, clock)
    first = store.start("CP_1", 1, "TAG", 0).transaction_id
    clock.now -= 3600
    assert store.start("CP_1", 1, "TAG", 0).transaction_id > first


def test_charge_points_have_independent_sequences(tmp_path: Path) -> None:
    """Each charge point's ids are unique on their own; another charge point's starts do not disturb them."""
    store = store_in(tmp_path)
    ids: dict[str, list[int]] = {"CP_1": [], "CP_2": []}
    for _ in range(20):
        for cp, issued in ids.items():
            issued.append(store.start(cp, 1, "TAG", 0).transaction_id)
    for issued in ids.values():
        assert len(set(issued)) == len(issued)


def test_start_returns_the_record(tmp_path: Path) -> None:
    """start returns a record holding the new id, connector, id tag and meter start."""
    record = store_in(tmp_path).start("CP_1", 3, "04A2B3C4D5E6F7", 1234000)
    assert record == TransactionRecord(record.transaction_id, 3, "04A2B3C4D5E6F7", 1234000)


def test_stop_returns_the_record_once(tmp_path: Path) -> None:
    """stop returns the open record the first time and None every time after, also after a restart."""
    store = store_in(tmp_path)
    record = store.start("CP_1", 1, "TAG", 100)
    assert store.stop("CP_1", record.transaction_id) == record
    assert store.stop("CP_1", record.transaction_id) is None
    assert store_in(tmp_path).stop("CP_1", record.transaction_id) is None


STOP_UNKNOWN = [("never started", 12345), ("zero", 0), ("negative", -1)]


@pytest.mark.parametrize("transaction_id", [t for _, t in STOP_UNKNOWN], ids=[n for n, _ in STOP_UNKNOWN])
def test_stop_of_an_unknown_transaction_is_none(tmp_path: Path, transaction_id: int) -> None:
    """Stopping an id that is not open returns None and leaves the open ones alone."""
    store = store_in(tmp_path)
    record = store.start("CP_1", 1, "TAG", 0)
    assert store.stop("CP_1", transaction_id) is None
    assert store.active("CP_1", 1) == record


def test_active_finds_the_open_transaction_of_a_connector(tmp_path: Path) -> None:
    """active returns the open record of the asked connector, and None once it is stopped or for another connector."""
    store = store_in(tmp_path)
    one = store.start("CP_1", 1, "A", 0)
    two = store.start("CP_1", 2, "B", 0)
    assert (store.active("CP_1", 1), store.active("CP_1", 2), store.active("CP_1", 3)) == (one, two, None)
    store.stop("CP_1", one.transaction_id)
    assert store.active("CP_1", 1) is None
    assert store.active("CP_2", 2) is None


CORRUPT: list[tuple[str, bytes]] = [
    ("not JSON", b"{last_id: 3"),
    ("truncated", b'{"last_id": 1795'),
    ("empty file", b""),
    ("a list", b"[1, 2, 3]"),
    ("null", b"null"),
    ("last_id missing", b'{"open": []}'),
    ("last_id not a number", b'{"last_id": "many", "open": []}'),
    ("open not a list", b'{"last_id": 5, "open": 7}'),
    ("open record malformed", b'{"last_id": 5, "open": [{"transaction_id": 5}]}'),
    ("not UTF-8", b"\xff\xfe\x00garbage"),
]


@pytest.mark.parametrize("content", [c for _, c in CORRUPT], ids=[n for n, _ in CORRUPT])
def test_a_corrupt_state_file_is_logged_and_recovered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    """An unreadable state file is logged as an error naming the charge point, and ids start afresh from the clock."""
    store_in(tmp_path).start("CP_1", 1, "TAG", 0)
    [state_file] = (tmp_path / "transactions").glob("*.json")
    state_file.write_bytes(content)
    with caplog.at_level(logging.ERROR, logger="connector.transactions"):
        record = store_in(tmp_path, Clock(NOW + 60)).start("CP_1", 1, "TAG", 0)
    assert record.transaction_id >= FLOOR + 60
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "CP_1" in errors[0].getMessage()
    assert store_in(tmp_path).active("CP_1", 1) == record


IDENTITIES = [
    "CP_1",
    "site/A/CP 1",
    "../../etc/passwd",
    "a__b",
    "a b",
    "a%2Fb",
    "a/b",
    ".",
    "..",
    "Ladesäule Nord 1",
]


@pytest.mark.parametrize("cp", IDENTITIES)
def test_identities_are_stored_safely(tmp_path: Path, cp: str) -> None:
    """Any identity, with `/`, `__`, spaces or dots, stays inside the state directory and is read back after restart."""
    state = tmp_path / "state"
    record = store_in(state).start(cp, 1, "TAG", 0)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files
    assert all(state / "transactions" in p.parents for p in files)
    assert store_in(state).active(cp, 1) == record


def test_similar_identities_do_not_share_state(tmp_path: Path) -> None:
    """Identities that differ only in how `/`, `%`, `_` or spaces are written keep separate transactions."""
    store = store_in(tmp_path)
    for cp in IDENTITIES:
        store.start(cp, 1, cp, 0)
    restarted = store_in(tmp_path)
    for cp in IDENTITIES:
        record = restarted.active(cp, 1)
        assert record is not None
        assert record.id_tag == cp


def test_a_long_non_ascii_identity_is_stored(tmp_path: Path) -> None:
    """A 48-character identity in non-Latin script (OCPP 2.0.1's maximum identity length) is stored and read back."""
    cp = "充电桩-" * 12
    record = store_in(tmp_path).start(cp, 1, "TAG", 0)
    assert store_in(tmp_path).active(cp, 1) == record


def test_a_replayed_start_gets_the_id_already_issued(tmp_path: Path) -> None:
    """The same StartTransaction again (timestamp and all) is a replay: same id, no second open transaction."""
    store = TransactionStore(tmp_path)
    first = store.start("CP_1", 1, "TAG", 100, "2026-11-21T10:00:00Z")
    again = store.start("CP_1", 1, "TAG", 100, "2026-11-21T10:00:00Z")
    later = store.start("CP_1", 1, "TAG", 100, "2026-11-21T11:00:00Z")
    assert again == first
    assert later.transaction_id != first.transaction_id


def test_the_active_transaction_is_the_newest_open_one(tmp_path: Path) -> None:
    """With an older start whose stop was lost, the connector's active transaction is the newest."""
    store = TransactionStore(tmp_path)
    stale = store.start("CP_1", 1, "TAG", 100, "2026-11-21T10:00:00Z")
    current = store.start("CP_1", 1, "TAG", 200, "2026-11-21T11:00:00Z")
    active = store.active("CP_1", 1)
    assert active is not None and active.transaction_id == current.transaction_id > stale.transaction_id


def test_reservations_survive_a_restart(tmp_path: Path) -> None:
    """A reservation recorded before a restart is still open on its connector after it, until it ends."""
    store_in(tmp_path).reserve("CP_1", 2, 77, "2026-11-21T12:00:00Z")
    after = store_in(tmp_path)
    assert after.reservation("CP_1", 2) == 77
    assert after.reservation("CP_1", 1) is None
    assert after.end_reservation("CP_1", 77) == [2]
    assert store_in(tmp_path).reservation("CP_1", 2) is None


def test_an_expired_reservation_is_forgotten(tmp_path: Path) -> None:
    """At its expiry date a reservation is no longer open (the charger drops it then too), also after a restart."""
    clock = Clock(datetime(2026, 11, 21, 11, 59, tzinfo=UTC).timestamp())
    store = store_in(tmp_path, clock)
    store.reserve("CP_1", 1, 5, "2026-11-21T12:00:00Z")
    store.reserve("CP_1", 2, 6, "2026-11-21T12:00:00")  # no offset: UTC, as OCPP means
    assert (store.reservation("CP_1", 1), store.reservation("CP_1", 2)) == (5, 6)
    clock.now += 60
    assert (store.reservation("CP_1", 1), store.reservation("CP_1", 2)) == (None, None)
    assert store_in(tmp_path, clock).reservation("CP_1", 1) is None


def test_a_reservation_with_an_unreadable_expiry_stays_until_it_ends(tmp_path: Path) -> None:
    """An expiry date sent raw through execute_ocpp_call that does not parse never expires here; it can be cancelled."""
    store = store_in(tmp_path)
    store.reserve("CP_1", 1, 5, "next tuesday")
    assert store_in(tmp_path).reservation("CP_1", 1) == 5
    assert store.end_reservation("CP_1", 5) == [1]


# -- settled transactions (a stop that never came) ----------------------------------------


def test_a_new_start_settles_the_open_transaction_of_its_connector(tmp_path: Path) -> None:
    """A second start on a connector makes the first no longer active; other connectors keep theirs."""
    store = store_in(tmp_path)
    orphan = store.start("CP_1", 1, "TAG", 100, "2026-11-21T10:00:00Z")
    other = store.start("CP_1", 2, "TAG", 100, "2026-11-21T10:00:00Z")
    current = store.start("CP_1", 1, "TAG", 200, "2026-11-21T11:00:00Z")
    assert store.active("CP_1", 1) == current
    assert store.active("CP_1", 2) == other
    assert store_in(tmp_path).active("CP_1", 1) == current
    assert orphan.transaction_id != current.transaction_id


def test_a_boot_settles_every_open_transaction(tmp_path: Path) -> None:
    """settle_all returns every open transaction of the charger; none is active after it, also after a restart."""
    store = store_in(tmp_path)
    one = store.start("CP_1", 1, "A", 0)
    two = store.start("CP_1", 2, "B", 0)
    elsewhere = store.start("CP_2", 1, "C", 0)
    assert sorted(store.settle_all("CP_1"), key=lambda r: r.connector_id) == [one, two]
    assert (store.active("CP_1", 1), store.active("CP_1", 2)) == (None, None)
    assert store.settle_all("CP_1") == []
    assert store_in(tmp_path).active("CP_1", 1) is None
    assert store.active("CP_2", 1) == elsewhere


def test_a_settled_transaction_can_still_be_stopped_once(tmp_path: Path) -> None:
    """A StopTransaction coming after the settling (from the charger's queue) finds the record once, restart or not."""
    store = store_in(tmp_path)
    by_boot = store.start("CP_1", 1, "A", 100)
    store.settle_all("CP_1")
    by_start = store.start("CP_1", 2, "B", 100, "2026-11-21T10:00:00Z")
    store.start("CP_1", 2, "B", 300, "2026-11-21T11:00:00Z")
    restarted = store_in(tmp_path)
    assert restarted.stop("CP_1", by_boot.transaction_id) == by_boot
    assert restarted.stop("CP_1", by_start.transaction_id) == by_start
    assert restarted.stop("CP_1", by_boot.transaction_id) is None
    assert store_in(tmp_path).stop("CP_1", by_start.transaction_id) is None


def test_a_replayed_start_of_a_settled_transaction_is_open_again(tmp_path: Path) -> None:
    """A start repeated identically after the boot settled it gets the id already issued and is active again."""
    store = store_in(tmp_path)
    first = store.start("CP_1", 1, "TAG", 100, "2026-11-21T10:00:00Z")
    store.settle_all("CP_1")
    again = store.start("CP_1", 1, "TAG", 100, "2026-11-21T10:00:00Z")
    assert again == first
    assert store.active("CP_1", 1) == first


def test_a_replay_after_a_newer_start_changes_nothing(tmp_path: Path) -> None:
    """A start repeated identically after a newer one began on its connector gets its old id; the newer stays active."""
    store = store_in(tmp_path)
    first = store.start("CP_1", 1, "TAG", 100, "2026-11-21T10:00:00Z")
    newer = store.start("CP_1", 1, "TAG", 200, "2026-11-21T11:00:00Z")
    assert store.start("CP_1", 1, "TAG", 100, "2026-11-21T10:00:00Z") == first
    assert store.active("CP_1", 1) == newer


def saved_state(directory: Path, cp: str) -> dict[str, object]:
    state: dict[str, object] = json.loads((directory / "transactions" / f"{cp}.json").read_text())
    return state


def test_settled_transactions_are_capped_per_charge_point(tmp_path: Path) -> None:
    """A charger that never sends StopTransaction leaves at most MAX_SETTLED settled records; the newest stay."""
    store = store_in(tmp_path)
    records = [store.start("CP_1", 1, "TAG", n, f"2026-11-21T10:00:{n:02}Z") for n in range(MAX_SETTLED + 10)]
    state = saved_state(tmp_path, "CP_1")
    assert len(state["settled"]) == MAX_SETTLED  # type: ignore[arg-type]
    assert len(state["open"]) == 1  # type: ignore[arg-type]
    restarted = store_in(tmp_path)
    assert restarted.stop("CP_1", records[0].transaction_id) is None
    assert restarted.stop("CP_1", records[-2].transaction_id) == records[-2]


def test_settled_transactions_are_dropped_when_old(tmp_path: Path) -> None:
    """A settled transaction is forgotten SETTLED_KEEP_S after it was settled, while running and after a restart."""
    clock = Clock()
    store = store_in(tmp_path, clock)
    one, two = store.start("CP_1", 1, "A", 0), store.start("CP_1", 2, "B", 0)
    store.settle_all("CP_1")
    clock.now += SETTLED_KEEP_S + 1
    assert store.stop("CP_1", one.transaction_id) is None
    restarted = store_in(tmp_path, clock)
    assert restarted.stop("CP_1", two.transaction_id) is None
    restarted.start("CP_1", 1, "C", 0)
    assert saved_state(tmp_path, "CP_1")["settled"] == []


def test_open_transactions_are_capped_per_charge_point(tmp_path: Path) -> None:
    """Starts on more than MAX_OPEN connectors settle the oldest open ones, so the state stays bounded."""
    store = store_in(tmp_path)
    records = [store.start("CP_1", connector, "TAG", 0) for connector in range(1, MAX_OPEN + 3)]
    assert len(saved_state(tmp_path, "CP_1")["open"]) == MAX_OPEN  # type: ignore[arg-type]
    assert (store.active("CP_1", 1), store.active("CP_1", 2)) == (None, None)
    assert store.active("CP_1", MAX_OPEN + 2) == records[-1]
    assert store.stop("CP_1", records[0].transaction_id) == records[0]


# -- file names: one identity, one file ---------------------------------------------------

LONG = "充电桩-" * 30  # percent-encoded, far beyond MAX_NAME: named by its hash
LONG_HASH = hashlib.sha256(LONG.encode()).hexdigest()


def test_an_identity_equal_to_a_long_ones_hash_has_its_own_state(tmp_path: Path) -> None:
    """The identity that is the hex SHA-256 of a long identity neither sees nor stops the long one's transaction."""
    store = store_in(tmp_path)
    store.new_id(LONG)  # the sequences are per identity: make the two ids differ
    long_one = store.start(LONG, 1, "LONG", 0)
    hex_one = store.start(LONG_HASH, 1, "HEX", 0)
    restarted = store_in(tmp_path)
    assert restarted.active(LONG, 1) == long_one
    assert restarted.active(LONG_HASH, 1) == hex_one
    assert restarted.stop(LONG_HASH, long_one.transaction_id) is None
    assert restarted.active(LONG, 1) == long_one


def test_a_state_file_of_another_identity_is_not_taken(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A file at a charge point's path that names another identity inside is logged as an error and not used."""
    store_in(tmp_path).start("CP_2", 1, "TAG", 0)
    files = tmp_path / "transactions"
    (files / "CP_2.json").rename(files / "CP_1.json")
    with caplog.at_level(logging.ERROR, logger="connector.transactions"):
        assert store_in(tmp_path).active("CP_1", 1) is None
    assert [r.getMessage() for r in caplog.records if "CP_1" in r.getMessage()]


def legacy_file(directory: Path, name: str, record: TransactionRecord) -> None:
    """A state file as versions <= 0.1.0 wrote it: no identity inside, hashed names in the main folder."""
    (directory / "transactions").mkdir(parents=True, exist_ok=True)
    state = {"last_id": record.transaction_id, "open": [asdict(record)], "reservations": []}
    (directory / "transactions" / name).write_text(json.dumps(state))


def test_an_earlier_versions_hashed_file_is_found_by_its_long_identity_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An old layout's hash-named file is moved once, logged, and found by the long identity, never by the hex one."""
    record = TransactionRecord(FLOOR - 10, 1, "LONG", 500)
    legacy_file(tmp_path, f"{LONG_HASH}.json", record)
    with caplog.at_level(logging.INFO, logger="connector.transactions"):
        store = store_in(tmp_path)
        assert store.active(LONG_HASH, 1) is None
        assert store.stop(LONG_HASH, record.transaction_id) is None
        assert store.active(LONG, 1) == record
        store_in(tmp_path)
    moves = [r for r in caplog.records if r.getMessage().startswith("moved 1 transaction state files")]
    assert len(moves) == 1
    assert store_in(tmp_path).stop(LONG, record.transaction_id) == record


def test_an_earlier_versions_plain_file_is_still_read(tmp_path: Path) -> None:
    """A state file written by an earlier version under a percent-encoded name (no identity inside) is its charger's."""
    record = TransactionRecord(FLOOR - 10, 2, "TAG", 500)
    legacy_file(tmp_path, "site%2FCP%201.json", record)
    assert store_in(tmp_path).active("site/CP 1", 2) == record


def test_a_hex_identitys_own_file_is_not_moved(tmp_path: Path) -> None:
    """A file this version wrote for an identity that is a 64-digit hex string stays its own across restarts."""
    record = store_in(tmp_path).start(LONG_HASH, 1, "HEX", 0)
    assert store_in(tmp_path).active(LONG_HASH, 1) == record
    assert not (tmp_path / "transactions" / "hashed").exists()


def test_forget_keeps_the_file_only_while_something_in_it_matters(tmp_path: Path) -> None:
    """A forgotten charge point's file goes once nothing is open and the clock floor covers its ids."""
    clock = Clock()
    store = store_in(tmp_path, clock)
    started = store.start("CP_OPEN", 1, "TAG", 0, "2024-01-01T00:00:00Z")
    store.start("CP_DONE", 1, "TAG", 0, "2024-01-01T00:00:00Z")
    store.stop("CP_DONE", store.active("CP_DONE", 1).transaction_id)  # type: ignore[union-attr]
    clock.now += 10
    store.forget("CP_OPEN")
    store.forget("CP_DONE")
    files = {path.name for path in (tmp_path / "transactions").glob("*.json")}
    assert files == {"CP_OPEN.json"}
    assert store_in(tmp_path, clock).active("CP_OPEN", 1) == started
    assert store.start("CP_DONE", 1, "TAG", 0).transaction_id > started.transaction_id
