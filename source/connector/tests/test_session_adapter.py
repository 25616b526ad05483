"""The session as an adapter: a version's tables served over a connection (a hand-written fake here).

What 1.6 chargers see is tested end to end in test_session*.py; these tests cover what no
1.6 charger can show: a version's own tables, 2.1's SEND and CALLRESULTERROR, and a
command for an actuator the charger's version does not carry.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosedError

from connector import ocpp16
from connector.actuators import OcppCall
from connector.charger import ChargerState
from connector.commands import CommandRunner, remember
from connector.datapoints import Datapoint
from connector.handling import Context, Inbound, OcppVersion
from connector.registry import ActuatorRef
from connector.session import ChargePointSession, fits_unbuffered
from connector.settings import Settings
from connector.transactions import TransactionStore


class FakeTransport:
    """The write buffer's size and limits as asyncio reports them; `aborted` once cut off."""

    def __init__(self, buffered: int = 0, high_water: int = 32768) -> None:
        self.buffered = buffered
        self.high_water = high_water
        self.aborted = False

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self.high_water // 4, self.high_water

    def abort(self) -> None:
        self.aborted = True


class FakeConnection:
    """Keeps what the session sends; `sent_one` is set whenever a frame goes out.

    `takes_s`: how long a send takes (a peer that reads slowly), 0: at once.
    """

    def __init__(self, takes_s: float = 0.0, transport: FakeTransport | None = None) -> None:
        self.sent: list[str] = []
        self.sent_one = asyncio.Event()
        self.takes_s = takes_s
        self.transport = transport or FakeTransport()

    async def send(self, message: str) -> None:
        if self.takes_s:
            await asyncio.sleep(self.takes_s)
        self.sent.append(message)
        self.sent_one.set()


class Events:
    def __init__(self) -> None:
        self.published: list[Datapoint] = []

    def publish(self, cp: str, points: list[Datapoint]) -> None:
        self.published += points

    def connector_seen(self, cp: str, connector_id: int) -> None:
        return None

    def booted(self, cp: str) -> None:
        return None


def heard(ctx: Context, msg: Inbound) -> dict[str, Any]:
    """A handler that publishes what it got, as a real one would."""
    ctx.publish([Datapoint(f"{ctx.id}__Heard", json.dumps(msg.payload), msg.received)])
    return {}


V21 = OcppVersion(
    name="2.1",
    subprotocol="ocpp2.1",
    handlers={"Heartbeat": heard},
    actuators={},  # carries no actuator: every command is "not available"
    central_actions=frozenset({"Reset"}),
    error_codes={"FormationViolation": "FormatViolation"},
    rate_units=ocpp16.VERSION.rate_units,
    send_frames=True,
    unknown_type_error="MessageTypeNotSupported",
    malformed_call_error="RpcFrameworkError",
)


def new_session(
    tmp_path: Path, version: OcppVersion, connection: FakeConnection | None = None, write_timeout: float = 60.0
) -> tuple[ChargePointSession, FakeConnection, Events]:
    connection, events = connection or FakeConnection(), Events()
    session = ChargePointSession(
        "CP_1",
        connection,  # type: ignore[arg-type]  # the part of ServerConnection a session uses
        events,
        TransactionStore(tmp_path),
        version=version,
        state=ChargerState(),
        id_tags=Settings.from_env({}).id_tags,
        heartbeat_interval=300,
        response_timeout=30,
        write_timeout=write_timeout,
    )
    return session, connection, events


async def test_the_session_serves_its_versions_handler_table(tmp_path: Path) -> None:
    """A CALL goes to the version's handler and is answered with what it returns, the version named on the session."""
    session, connection, events = new_session(tmp_path, V21)
    await session.handle_frame('[2,"h1","Heartbeat",{}]')
    assert connection.sent == ['[3,"h1",{}]']
    assert [p.key for p in events.published] == ["CP_1__Heard"]
    assert (session.version, session.ocpp_version) == (V21, "2.1")


async def test_a_send_reaches_its_handler_and_is_never_answered(tmp_path: Path) -> None:
    """A 2.1 SEND is handled like a CALL, but nothing goes back to the charger."""
    session, connection, events = new_session(tmp_path, V21)
    await session.handle_frame('[6,"s1","Heartbeat",{}]')
    assert [p.key for p in events.published] == ["CP_1__Heard"]
    assert connection.sent == []


async def test_a_callresulterror_is_logged_and_not_answered(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A 2.1 CALLRESULTERROR yields a WARNING naming its code; no frame goes back."""
    session, connection, _ = new_session(tmp_path, V21)
    with caplog.at_level(logging.WARNING, logger="connector.session"):
        await session.handle_frame('[5,"r1","FormatViolation","bad interval",{}]')
    assert connection.sent == []
    assert "CP_1: the charger could not use our answer r1: FormatViolation bad interval" in caplog.messages


async def test_a_2x_version_refuses_in_its_own_words(tmp_path: Path) -> None:
    """A 2.1 session answers a malformed CALL RpcFrameworkError, a payload that is not an object FormatViolation,
    an unknown message type MessageTypeNotSupported."""
    session, connection, _ = new_session(tmp_path, V21)
    await session.handle_frame('[2,"a1","Heartbeat"]')
    await session.handle_frame('[2,"a2","Heartbeat",[]]')
    await session.handle_frame('[9,"a3"]')
    codes = [json.loads(frame)[2] for frame in connection.sent]
    assert codes == ["RpcFrameworkError", "FormatViolation", "MessageTypeNotSupported"]


async def test_send_call_completes_with_the_answer_the_endpoint_matches(tmp_path: Path) -> None:
    """A call goes out as a CALL; the CALLRESULT with its id, fed as a frame, is what send_call returns."""
    session, connection, _ = new_session(tmp_path, ocpp16.VERSION)
    sending = asyncio.create_task(session.send_call(lambda: OcppCall("Reset", {"type": "Soft"})))
    await connection.sent_one.wait()
    unique_id = json.loads(connection.sent[0])[1]
    await session.handle_frame(json.dumps([3, unique_id, {"status": "Accepted"}]))
    assert await sending == (OcppCall("Reset", {"type": "Soft"}), {"status": "Accepted"})


async def test_a_rate_unit_read_cancelled_before_its_turn_is_asked_again(tmp_path: Path) -> None:
    """A read waiting behind another call when its session ends was never made: the next limit asks again."""
    session, connection, _ = new_session(tmp_path, ocpp16.VERSION)
    busy = asyncio.create_task(session.send_call(lambda: OcppCall("Reset", {"type": "Soft"})))
    await connection.sent_one.wait()  # the Reset holds the one call in flight
    reading = asyncio.create_task(session.refresh_rate_units())
    await asyncio.sleep(0)  # let the read queue behind it
    assert session.state.rate_units_asked
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
    assert not session.state.rate_units_asked
    busy.cancel()
    with pytest.raises(asyncio.CancelledError):
        await busy


async def test_a_command_the_chargers_version_does_not_carry_fails_by_name(tmp_path: Path) -> None:
    """An actuator the charger's version lacks ends in `Failed: <name> is not available in OCPP 2.1`, unsent."""
    session, connection, _ = new_session(tmp_path, V21)
    statuses: list[Datapoint] = []
    runner = CommandRunner(
        {"CP_1": session}.get,
        lambda points, cp: statuses.extend(points),
        TransactionStore(tmp_path),
        Settings.from_env({}),
    )
    ref = ActuatorRef("CP_1", "execute_reset", 0)
    runner.submit("topic/reset", "CP_1__execute_reset", ref, b'{"value": "Soft"}')
    assert [(p.key, p.value) for p in statuses] == [
        ("CP_1__execute_reset__status", "Failed: execute_reset is not available in OCPP 2.1")
    ]
    assert connection.sent == []


def test_a_2x_reservation_is_remembered_on_its_evse(tmp_path: Path) -> None:
    """An accepted 2.x ReserveNow (`id`, `evseId`, `expiryDateTime`) is recorded like a 1.6 one, and cancelled by id."""
    session, _, _ = new_session(tmp_path, V21)
    store = TransactionStore(tmp_path)
    reserve = OcppCall(
        "ReserveNow",
        {
            "id": 42,
            "expiryDateTime": "2099-11-21T12:00:00Z",
            "idToken": {"idToken": "T", "type": "Central"},
            "evseId": 2,
        },
    )
    remember(session, store, reserve, {"status": "Accepted"})
    assert store.reservation("CP_1", 2) == 42
    remember(session, store, OcppCall("CancelReservation", {"reservationId": 42}), {"status": "Accepted"})
    assert store.reservation("CP_1", 2) is None


# -- the write timeout only where a send can wait ------------------------------------------

WRITE_TIMEOUT_S = 0.05
SLOW_SEND_S = 0.2  # longer than the write timeout


async def test_a_send_that_finds_the_buffer_empty_is_not_timed(tmp_path: Path) -> None:
    """A small frame on an empty write buffer is written without a timer: even a slow send completes."""
    slow = FakeConnection(takes_s=SLOW_SEND_S)
    session, connection, _ = new_session(tmp_path, V21, slow, write_timeout=WRITE_TIMEOUT_S)
    await session.handle_frame('[2,"h1","Heartbeat",{}]')
    assert connection.sent == ['[3,"h1",{}]']
    assert not connection.transport.aborted


@pytest.mark.parametrize(
    "transport",
    [{"buffered": 1}, {"high_water": 64}],
    ids=["data already buffered", "a frame that can fill the buffer"],
)
async def test_a_send_that_can_wait_is_cut_off_in_time(tmp_path: Path, transport: dict[str, int]) -> None:
    """Where the send can wait (data buffered, or a frame near the high-water mark), a peer that takes
    nothing for write_timeout is cut off: the transport aborted, the connection closed."""
    stuck = FakeConnection(takes_s=SLOW_SEND_S, transport=FakeTransport(**transport))
    session, connection, _ = new_session(tmp_path, V21, stuck, write_timeout=WRITE_TIMEOUT_S)
    with pytest.raises(ConnectionClosedError):
        await session.handle_frame('[2,"h1","Heartbeat",{}]')
    assert connection.sent == []
    assert connection.transport.aborted


@pytest.mark.parametrize(
    ("chars", "buffered", "high_water", "expected"),
    [
        (100, 0, 32768, True),  # an answer on an idle connection: the common case
        (100, 1, 32768, False),  # something is still unsent: it may be a peer that reads nothing
        (8175, 0, 32768, True),  # 4 bytes per character, header and deflate's overhead: still below
        (8176, 0, 32768, False),  # could reach the high-water mark (a TLS transport pauses at it)
        (0, 0, 64, False),  # a high-water mark below any frame's overhead
    ],
)
def test_fits_unbuffered(chars: int, buffered: int, high_water: int, expected: bool) -> None:
    """Without waiting only onto an empty buffer, and only a frame that at 4 bytes a character stays below the mark."""
    assert fits_unbuffered(chars, buffered, high_water) is expected


async def test_a_session_keeps_no_task_set_while_no_task_runs(tmp_path: Path) -> None:
    """The set of owned tasks exists only while one runs (an empty set is 216 bytes, for every idle charger)."""
    session, _, _ = new_session(tmp_path, V21)
    finish = asyncio.Event()

    async def work() -> None:
        await finish.wait()

    session.spawn(work())
    assert session._tasks is not None and len(session._tasks) == 1
    [task] = session._tasks
    finish.set()
    await task
    await asyncio.sleep(0)  # a done callback runs in the loop iteration after the task ended
    assert session._tasks is None
    session.spawn(work())  # a new one gets a new set, and is cancelled by stop_tasks
    finish.clear()
    await session.stop_tasks()
    assert session._tasks is None
