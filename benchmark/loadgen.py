"""The load generator of `bench.py`: charge points over real WebSockets, in worker processes.

Each worker process runs one asyncio loop holding its share of the chargers (charger `i`
of `N` goes to worker `i % W`, so every worker's share is spread evenly over time) and
obeys orders from the orchestrator over a pipe: connect, report command arrivals, steady
load, burst, stop. Replies carry what was measured; the orchestrator reads the workers'
CPU time from /proc, to tell when the generator, not the server, is the limit.

Chargers speak raw OCPP-J frames (no ocpp library, no schema checks, compression off, no
WebSocket pings of their own) to keep the generator light. A charger answers every CALL
of the server at once: GetConfiguration with the rate units (the connector reads them
after boot), TriggerMessage with Accepted (its arrival time is recorded: the command
latency), anything else with a NotImplemented CALLERROR. Times are `time.time()`, the
same clock in every process on the machine.
"""

from __future__ import annotations

import asyncio
import gc
import json
import resource
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.typing import Subprotocol

OCPP16 = Subprotocol("ocpp1.6")
CALL, CALLRESULT, CALLERROR = 2, 3, 4
RATE_UNITS_ANSWER = {
    "configurationKey": [{"key": "ChargingScheduleAllowedChargingRateUnit", "readonly": True, "value": "Current,Power"}]
}
BOOT = json.dumps([CALL, "boot", "BootNotification", {"chargePointVendor": "Bench", "chargePointModel": "M"}])
# (measurand, phase, unit, value): energy, power, and voltage and current of three phases.
SAMPLES = [
    ("Energy.Active.Import.Register", None, "Wh", "1234567"),
    ("Power.Active.Import", None, "W", "11040.5"),
    ("Voltage", "L1-N", "V", "231.2"),
    ("Voltage", "L2-N", "V", "230.8"),
    ("Voltage", "L3-N", "V", "229.9"),
    ("Current.Import", "L1", "A", "16.02"),
    ("Current.Import", "L2", "A", "15.98"),
    ("Current.Import", "L3", "A", "16.00"),
]
SAMPLED_VALUES = json.dumps(
    [
        {"value": value, "context": "Sample.Periodic", "measurand": measurand, "unit": unit}
        | ({"phase": phase} if phase else {})
        for measurand, phase, unit, value in SAMPLES
    ],
    separators=(",", ":"),
)
ANSWER_GRACE_S = 60.0  # how long answers are awaited after the last send of a phase


def sensor_keys(cp: str) -> list[str]:
    """The datapoint keys (interface section 4) of the 8 values of one MeterValues.req."""
    return [
        "__".join([cp, "MeterValues", "1", measurand, *([phase] if phase else []), unit])
        for measurand, phase, unit, _ in SAMPLES
    ]


def iso_ms(ms: int) -> str:
    """ms since the epoch as OCPP's date-time: UTC, milliseconds, `Z`."""
    seconds, milli = divmod(ms, 1000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{milli:03d}Z"


def meter_values_frame(unique_id: str, ms: int) -> str:
    """A MeterValues.req whose meter value is stamped `ms`: the MQTT subscriber's latency origin."""
    meter_value = f'{{"timestamp":"{iso_ms(ms)}","sampledValue":{SAMPLED_VALUES}}}'
    return f'[{CALL},"{unique_id}","MeterValues",{{"connectorId":1,"meterValue":[{meter_value}]}}]'


def raise_fd_limit() -> None:
    """10,000 sockets need more descriptors than the usual soft limit of 1024."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# -- orders (orchestrator -> worker) and results (worker -> orchestrator) --------------


@dataclass(frozen=True)
class ConnectOrder:
    url: str
    chargers: list[tuple[int, str]]  # (global index, identity)
    start: float  # charger i starts connecting at start + i / rate
    rate: float
    open_timeout: float


@dataclass(frozen=True)
class CollectArrivals:
    """Hand over the TriggerMessage arrivals recorded since the last collection."""


@dataclass(frozen=True)
class SteadyOrder:
    start: float  # charger i sends at start + i / total * period + k * period, k < count
    period: float
    count: int
    total: int


@dataclass(frozen=True)
class BurstOrder:
    rounds: int  # each charger sends this many, one at a time, answer awaited in between


@dataclass(frozen=True)
class StopOrder:
    pass


Order = ConnectOrder | CollectArrivals | SteadyOrder | BurstOrder | StopOrder


@dataclass
class ConnectResult:
    booted: list[str] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    boot_latencies: list[float] = field(default_factory=list)  # s, connect start -> boot answer
    last_booted: float = 0.0


@dataclass
class LoadResult:
    sent: int = 0
    answered: int = 0
    answer_latencies: list[float] = field(default_factory=list)  # s, send -> answer on the socket
    send_lags: list[float] = field(default_factory=list)  # s, scheduled -> actual send (steady)
    errors: Counter[str] = field(default_factory=Counter)
    closed_chargers: int = 0  # connections found closed when the phase began
    first_send: float = 0.0
    last_answer: float = 0.0


Result = ConnectResult | LoadResult | list[tuple[str, float]] | None


@dataclass(frozen=True)
class Reply:
    result: Result
    wall_s: float  # how long the order took


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:120]


class CallFailedError(Exception):
    """The server answered a CALLERROR, or the connection closed before an answer."""


# -- the chargers ----------------------------------------------------------------------


class Charger:
    def __init__(self, index: int, cp: str, fleet: Fleet) -> None:
        self.index = index  # in the whole fleet, across workers: spreads the steady sends
        self.cp = cp
        self.fleet = fleet
        self.ws: ClientConnection | None = None
        self.pending: dict[str, asyncio.Future[float]] = {}  # unique id -> answer arrival time
        self.closed = False

    async def connect(self, url: str) -> None:
        self.ws = await connect(
            f"{url}/{self.cp}",
            subprotocols=[OCPP16],
            compression=None,
            ping_interval=None,
            open_timeout=None,  # bounded by the caller's timeout
            close_timeout=2,
            proxy=None,
        )
        self.fleet.spawn(self.read())

    async def call(self, unique_id: str, frame: str) -> asyncio.Future[float]:
        """Send a CALL; the future resolves to the time its CALLRESULT arrived."""
        assert self.ws is not None
        answer = asyncio.get_running_loop().create_future()
        self.pending[unique_id] = answer
        await self.ws.send(frame)
        return answer

    async def read(self) -> None:
        assert self.ws is not None
        try:
            async for frame in self.ws:
                arrived = time.time()
                message = json.loads(frame)
                if message[0] == CALL:
                    await self.answer(message, arrived)
                    continue
                answer = self.pending.pop(message[1], None)
                if answer is None or answer.done():
                    continue
                if message[0] == CALLRESULT:
                    answer.set_result(arrived)
                else:
                    answer.set_exception(CallFailedError(f"CALLERROR {message[2]}"))
        except ConnectionClosed:
            pass
        finally:
            self.closed = True
            for answer in self.pending.values():
                if not answer.done():
                    answer.set_exception(CallFailedError("connection closed before the answer"))
            self.pending.clear()

    async def answer(self, message: list[Any], arrived: float) -> None:
        assert self.ws is not None
        _, unique_id, action, _ = message
        if action == "TriggerMessage":
            self.fleet.arrivals.append((self.cp, arrived))
            reply: list[Any] = [CALLRESULT, unique_id, {"status": "Accepted"}]
        elif action == "GetConfiguration":
            reply = [CALLRESULT, unique_id, RATE_UNITS_ANSWER]
        else:
            reply = [CALLERROR, unique_id, "NotImplemented", "", {}]
        await self.ws.send(json.dumps(reply))

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


class Fleet:
    """One worker's chargers and the phases they run."""

    def __init__(self) -> None:
        self.chargers: list[Charger] = []
        self.arrivals: list[tuple[str, float]] = []  # (cp, time) of each TriggerMessage
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self, order: Order) -> Result:
        if isinstance(order, ConnectOrder):
            return await self.connect(order)
        if isinstance(order, CollectArrivals):
            arrivals, self.arrivals = self.arrivals, []
            return arrivals
        if isinstance(order, SteadyOrder):
            return await self.steady(order)
        if isinstance(order, BurstOrder):
            return await self.burst(order)
        await asyncio.gather(*(charger.close() for charger in self.chargers), return_exceptions=True)
        return None

    async def connect(self, order: ConnectOrder) -> ConnectResult:
        result = ConnectResult()

        async def boot(index: int, cp: str) -> None:
            charger, started = Charger(index, cp, self), time.time()
            try:
                async with asyncio.timeout(order.open_timeout):
                    await charger.connect(order.url)
                    await (await charger.call("boot", BOOT))
            except (OSError, TimeoutError, WebSocketException, CallFailedError) as error:
                result.failures[describe(error)] += 1
                await charger.close()
                return
            booted = time.time()
            self.chargers.append(charger)
            result.booted.append(cp)
            result.boot_latencies.append(booted - started)
            result.last_booted = max(result.last_booted, booted)

        connecting = []
        for index, cp in order.chargers:
            delay = order.start + index / order.rate - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            connecting.append(asyncio.create_task(boot(index, cp)))
        await asyncio.gather(*connecting)
        # The connections live until the end: keep the collector from traversing them
        # again and again (its pauses would show as latency).
        gc.freeze()
        return result

    async def steady(self, order: SteadyOrder) -> LoadResult:
        result = LoadResult(closed_chargers=sum(charger.closed for charger in self.chargers))
        result.first_send = order.start
        answers: list[tuple[float, asyncio.Future[float]]] = []

        async def send_all(charger: Charger) -> None:
            for k in range(order.count):
                scheduled = order.start + (charger.index / order.total + k) * order.period
                delay = scheduled - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent = time.time()
                result.send_lags.append(sent - scheduled)
                try:
                    answers.append((sent, await charger.call(f"s{k}", meter_values_frame(f"s{k}", int(sent * 1000)))))
                except ConnectionClosed as error:
                    result.errors[describe(error)] += 1
                    return
                result.sent += 1

        await asyncio.gather(*(send_all(charger) for charger in self.chargers))
        await self._collect(answers, result)
        return result

    async def burst(self, order: BurstOrder) -> LoadResult:
        result = LoadResult(closed_chargers=sum(charger.closed for charger in self.chargers))
        result.first_send = time.time()
        answers: list[tuple[float, asyncio.Future[float]]] = []

        async def send_one_at_a_time(charger: Charger) -> None:
            for k in range(order.rounds):
                sent = time.time()
                try:
                    answer = await charger.call(f"b{k}", meter_values_frame(f"b{k}", int(sent * 1000)))
                    result.sent += 1
                    answers.append((sent, answer))
                    async with asyncio.timeout(ANSWER_GRACE_S):
                        await answer
                except (ConnectionClosed, CallFailedError, TimeoutError) as error:
                    result.errors[describe(error)] += 1
                    return

        await asyncio.gather(*(send_one_at_a_time(charger) for charger in self.chargers))
        await self._collect(answers, result)
        return result

    @staticmethod
    async def _collect(answers: list[tuple[float, asyncio.Future[float]]], result: LoadResult) -> None:
        """Await the answers still outstanding (bounded), then count them."""
        outstanding = [answer for _, answer in answers if not answer.done()]
        if outstanding:
            await asyncio.wait(outstanding, timeout=ANSWER_GRACE_S)
        for sent, answer in answers:
            if not answer.done():
                result.errors["no answer within the grace period"] += 1
                answer.cancel()
            elif answer.cancelled() or answer.exception() is not None:
                result.errors[describe(answer.exception() or CallFailedError("cancelled"))] += 1
            else:
                arrived = answer.result()
                result.answered += 1
                result.answer_latencies.append(arrived - sent)
                result.last_answer = max(result.last_answer, arrived)


# -- the worker process ----------------------------------------------------------------


def worker_main(pipe: Connection) -> None:
    """Entry point of a worker process: obey orders until StopOrder."""
    raise_fd_limit()
    asyncio.run(obey(pipe))


async def obey(pipe: Connection) -> None:
    fleet = Fleet()
    loop = asyncio.get_running_loop()
    while True:
        order: Order = await loop.run_in_executor(None, pipe.recv)
        started = time.time()
        result = await fleet.run(order)
        pipe.send(Reply(result, time.time() - started))
        if isinstance(order, StopOrder):
            return
