"""The load generator of `bench.py`: charge points over real WebSockets, in worker processes.

Each worker process runs one asyncio loop holding its share of the chargers (charger `i`
of `N` goes to worker `i % W`, so every worker's share is spread evenly over time) and
obeys orders from the orchestrator over a pipe: connect, report command times, steady
load (spread over the period or clock-aligned), burst, closed loop, stop. Replies carry
what was measured; the orchestrator reads the workers' CPU time from /proc, to tell when
the generator, not the server, is the limit.

Chargers speak raw OCPP-J frames (no ocpp library, no schema checks, compression off, no
WebSocket pings of their own) to keep the generator light, in OCPP 1.6 or 2.0.1 (one
version per run). A charger answers every CALL of the server at once: the rate-unit read
the connector makes after boot (1.6 GetConfiguration, 2.0.1 GetVariables of
`SmartChargingCtrlr.RateUnit`: both units), TriggerMessage with Accepted (the CALL's arrival
and the time the answer went out are recorded: the command latency, and the origin of the
command status's latency), anything else with a NotImplemented CALLERROR. Times are
`time.time()`, the same clock in every process on the machine.

The load is the same 8 sampled values in every message. On 1.6 they come in MeterValues;
on 2.0.1 in MeterValues and in TransactionEvent `Updated` of the one transaction each
charger starts after boot (`--shape` picks one, or both alternating: charger i's k-th
message has shape (i + k) mod 2, so every period carries both). Every shape yields the
same datapoint keys (`sensor_keys`), so one datapoint map serves every run. A charger's
load messages carry strictly rising ms timestamps (a value's identity on MQTT is its topic
and timestamp), even in a closed loop that sends several per ms.

The unique ids of the load messages name their phase (`s<k>` steady, `b<k>` burst, `c<k>`
closed loop), so raw messages on MQTT can be counted per phase (`phase_of`).
"""

from __future__ import annotations

import asyncio
import gc
import json
import resource
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.typing import Subprotocol

CALL, CALLRESULT, CALLERROR = 2, 3, 4
OCPP_VERSIONS = ("1.6", "2.0.1")
SUBPROTOCOLS = {"1.6": Subprotocol("ocpp1.6"), "2.0.1": Subprotocol("ocpp2.0.1")}
# The shapes of the load messages each version can send.
SHAPES = {"1.6": ("MeterValues",), "2.0.1": ("MeterValues", "TransactionEvent")}
BOOT_PAYLOADS = {
    "1.6": {"chargePointVendor": "Bench", "chargePointModel": "M"},
    "2.0.1": {"reason": "PowerUp", "chargingStation": {"vendorName": "Bench", "model": "M"}},
}
BOOTS = {version: json.dumps([CALL, "boot", "BootNotification", payload]) for version, payload in BOOT_PAYLOADS.items()}
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


def sampled_value(version: str, measurand: str, phase: str | None, unit: str, value: str) -> dict[str, Any]:
    """One sampled value as the version writes it: 1.6 a string and `unit`, 2.0.1 a number and `unitOfMeasure`."""
    if version == "1.6":
        shaped: dict[str, Any] = {"value": value, "unit": unit}
    else:
        shaped = {"value": float(value), "unitOfMeasure": {"unit": unit}}
    return shaped | {"context": "Sample.Periodic", "measurand": measurand} | ({"phase": phase} if phase else {})


# The 8 values as JSON text, per version: built once, spliced into every load message.
SAMPLED_VALUES = {
    version: json.dumps([sampled_value(version, *sample) for sample in SAMPLES], separators=(",", ":"))
    for version in OCPP_VERSIONS
}
ANSWER_GRACE_S = 60.0  # how long answers are awaited after the last send of a phase


def sample_path(measurand: str, phase: str | None) -> str:
    """The part of a value's key between the connector id and the unit: `<measurand>[__<phase>]`."""
    return f"{measurand}__{phase}" if phase else measurand


def mapped_paths(mapped: int) -> list[str]:
    """The paths of the first `mapped` of the 8 sampled values: those a `--mapped` run maps."""
    return [sample_path(measurand, phase) for measurand, phase, _, _ in SAMPLES[:mapped]]


def phase_of(unique_id: str) -> str:
    """The phase a load message's unique id names (`s12` -> `s`); other ids stay whole (`boot`)."""
    return unique_id.rstrip("0123456789")


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


def meter_value(version: str, ms: int) -> str:
    """The 8 values as one meter value stamped `ms`: the MQTT subscriber's latency origin."""
    return f'{{"timestamp":"{iso_ms(ms)}","sampledValue":{SAMPLED_VALUES[version]}}}'


def meter_values_frame(unique_id: str, ms: int, version: str = "1.6") -> str:
    """A MeterValues CALL of connector (1.6) or EVSE (2.0.1) 1."""
    where = "connectorId" if version == "1.6" else "evseId"
    return f'[{CALL},"{unique_id}","MeterValues",{{"{where}":1,"meterValue":[{meter_value(version, ms)}]}}]'


def transaction_id(cp: str) -> str:
    return f"{cp}-tx"


def transaction_started_frame(cp: str, ms: int) -> str:
    """The 2.0.1 TransactionEvent Started of the charger's one transaction (seqNo 0, no values)."""
    payload = {
        "eventType": "Started",
        "timestamp": iso_ms(ms),
        "triggerReason": "CablePluggedIn",
        "seqNo": 0,
        "transactionInfo": {"transactionId": transaction_id(cp)},
        "evse": {"id": 1},
    }
    return json.dumps([CALL, "start", "TransactionEvent", payload])


def transaction_updated_frame(unique_id: str, ms: int, cp: str, seq_no: int) -> str:
    """A 2.0.1 TransactionEvent Updated carrying the 8 values stamped `ms`."""
    event = (
        f'"eventType":"Updated","timestamp":"{iso_ms(ms)}","triggerReason":"MeterValuePeriodic","seqNo":{seq_no},'
        f'"transactionInfo":{{"transactionId":"{transaction_id(cp)}"}},"evse":{{"id":1}}'
    )
    return f'[{CALL},"{unique_id}","TransactionEvent",{{{event},"meterValue":[{meter_value("2.0.1", ms)}]}}]'


def rate_units_answer(payload: dict[str, Any]) -> dict[str, Any]:
    """GetConfiguration (1.6): the rate units the connector reads after boot, both of them."""
    return {
        "configurationKey": [
            {"key": "ChargingScheduleAllowedChargingRateUnit", "readonly": True, "value": "Current,Power"}
        ]
    }


def get_variables_answer(payload: dict[str, Any]) -> dict[str, Any]:
    """GetVariables (2.0.1): `SmartChargingCtrlr.RateUnit` is `A,W` (both units); nothing else is known."""
    results = []
    for wanted in payload["getVariableData"]:
        component, variable = wanted["component"], wanted["variable"]
        if component["name"] != "SmartChargingCtrlr":
            results.append({"attributeStatus": "UnknownComponent", "component": component, "variable": variable})
        elif variable["name"] != "RateUnit":
            results.append({"attributeStatus": "UnknownVariable", "component": component, "variable": variable})
        else:
            results.append(
                {"attributeStatus": "Accepted", "attributeValue": "A,W", "component": component, "variable": variable}
            )
    return {"getVariableResult": results}


def accepted(payload: dict[str, Any]) -> dict[str, Any]:
    return {"status": "Accepted"}


# Per version: the server's action -> our answer's payload; anything else is NotImplemented.
ANSWERS: dict[str, dict[str, Callable[[dict[str, Any]], dict[str, Any]]]] = {
    "1.6": {"GetConfiguration": rate_units_answer, "TriggerMessage": accepted},
    "2.0.1": {"GetVariables": get_variables_answer, "TriggerMessage": accepted},
}


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
    ocpp: str = "1.6"  # the version the chargers speak
    shapes: tuple[str, ...] = ("MeterValues",)  # of their load messages, taken in turn
    # identity -> the server it connects to, where not `url` (several instances, each on its port)
    urls: dict[str, str] = field(default_factory=dict)

    def url_of(self, cp: str) -> str:
        return self.urls.get(cp, self.url)


@dataclass(frozen=True)
class CollectArrivals:
    """Hand over the TriggerMessage arrivals and answers recorded since the last collection."""


@dataclass(frozen=True)
class SteadyOrder:
    start: float  # charger i sends at start + i / total * period + k * period, k < count
    period: float
    count: int
    total: int
    aligned: bool = False  # every charger at start + k * period: clock-aligned sampling


@dataclass(frozen=True)
class ClosedLoopOrder:
    chargers: int  # the chargers of global index below this take part
    until: float  # each sends its next message as soon as the last is answered, until then


@dataclass(frozen=True)
class BurstOrder:
    rounds: int  # each charger sends this many, one at a time, answer awaited in between


@dataclass(frozen=True)
class StopOrder:
    pass


Order = ConnectOrder | CollectArrivals | SteadyOrder | BurstOrder | ClosedLoopOrder | StopOrder


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


@dataclass
class CommandTimes:
    arrivals: list[tuple[str, float]] = field(default_factory=list)  # (cp, TriggerMessage CALL arrived)
    answered: list[tuple[str, float]] = field(default_factory=list)  # (cp, its CALLRESULT sent)


Result = ConnectResult | LoadResult | CommandTimes | None


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
    def __init__(self, index: int, cp: str, fleet: Fleet, ocpp: str, shapes: tuple[str, ...]) -> None:
        self.index = index  # in the whole fleet, across workers: spreads the steady sends
        self.cp = cp
        self.fleet = fleet
        self.ocpp = ocpp
        self.shapes = shapes
        self.ws: ClientConnection | None = None
        self.pending: dict[str, asyncio.Future[float]] = {}  # unique id -> answer arrival time
        self.closed = False
        self.loads = 0  # load messages built so far: picks the next one's shape
        self.last_ms = 0  # the last load message's timestamp: the next one's is later
        self.seq_no = 0  # of the transaction's last event (2.0.1)

    async def connect(self, url: str) -> None:
        self.ws = await connect(
            f"{url}/{self.cp}",
            subprotocols=[SUBPROTOCOLS[self.ocpp]],
            compression=None,
            ping_interval=None,
            open_timeout=None,  # bounded by the caller's timeout
            close_timeout=2,
            proxy=None,
        )
        self.fleet.spawn(self.read())

    async def boot(self) -> float:
        """BootNotification, then (2.0.1) the Started of the transaction the load updates; when boot was answered."""
        booted = await (await self.call("boot", BOOTS[self.ocpp]))
        if "TransactionEvent" in self.shapes:
            await (await self.call("start", transaction_started_frame(self.cp, int(time.time() * 1000))))
        return booted

    def load_frame(self, unique_id: str, ms: int) -> str:
        """The next load message, its values stamped `ms` (or 1 ms after the last): the shapes in turn."""
        ms = self.last_ms = max(ms, self.last_ms + 1)
        shape = self.shapes[(self.index + self.loads) % len(self.shapes)]  # offset by the charger's index
        self.loads += 1
        if shape == "MeterValues":
            return meter_values_frame(unique_id, ms, self.ocpp)
        self.seq_no += 1
        return transaction_updated_frame(unique_id, ms, self.cp, self.seq_no)

    async def call(self, unique_id: str, frame: str) -> asyncio.Future[float]:
        """Send a CALL; the future resolves to the time its CALLRESULT arrived."""
        assert self.ws is not None
        answer = asyncio.get_running_loop().create_future()
        self.pending[unique_id] = answer
        try:
            await self.ws.send(frame)
        except ConnectionClosed:
            # Nobody will await this answer: marked retrieved (or cancelled), so a server that
            # closes connections does not flood stderr with "exception was never retrieved".
            self.pending.pop(unique_id, None)
            if answer.done():
                answer.exception()
            else:
                answer.cancel()
            raise
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
        _, unique_id, action, payload = message
        if action == "TriggerMessage":
            self.fleet.commands.arrivals.append((self.cp, arrived))
        answer = ANSWERS[self.ocpp].get(action)
        if answer is None:
            reply: list[Any] = [CALLERROR, unique_id, "NotImplemented", "", {}]
        else:
            reply = [CALLRESULT, unique_id, answer(payload)]
        await self.ws.send(json.dumps(reply))
        if action == "TriggerMessage":  # the origin of the command status's latency on MQTT
            self.fleet.commands.answered.append((self.cp, time.time()))

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


class Fleet:
    """One worker's chargers and the phases they run."""

    def __init__(self) -> None:
        self.chargers: list[Charger] = []
        self.commands = CommandTimes()  # of the TriggerMessages since the last collection
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self, order: Order) -> Result:
        if isinstance(order, ConnectOrder):
            return await self.connect(order)
        if isinstance(order, CollectArrivals):
            commands, self.commands = self.commands, CommandTimes()
            return commands
        if isinstance(order, SteadyOrder):
            return await self.steady(order)
        if isinstance(order, BurstOrder):
            rounds = order.rounds
            return await self.one_at_a_time(self.chargers, "b", lambda k: k < rounds)
        if isinstance(order, ClosedLoopOrder):
            taking_part = [charger for charger in self.chargers if charger.index < order.chargers]
            until = order.until
            return await self.one_at_a_time(taking_part, "c", lambda k: time.time() < until)
        await asyncio.gather(*(charger.close() for charger in self.chargers), return_exceptions=True)
        return None

    async def connect(self, order: ConnectOrder) -> ConnectResult:
        result = ConnectResult()

        async def boot(index: int, cp: str) -> None:
            charger, started = Charger(index, cp, self, order.ocpp, order.shapes), time.time()
            try:
                async with asyncio.timeout(order.open_timeout):
                    await charger.connect(order.url_of(cp))
                    booted = await charger.boot()
            except (OSError, TimeoutError, WebSocketException, CallFailedError) as error:
                result.failures[describe(error)] += 1
                await charger.close()
                return
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
            offset = 0.0 if order.aligned else charger.index / order.total
            for k in range(order.count):
                scheduled = order.start + (offset + k) * order.period
                delay = scheduled - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent = time.time()
                result.send_lags.append(sent - scheduled)
                try:
                    answers.append((sent, await charger.call(f"s{k}", charger.load_frame(f"s{k}", int(sent * 1000)))))
                except ConnectionClosed as error:
                    result.errors[describe(error)] += 1
                    return
                result.sent += 1

        await asyncio.gather(*(send_all(charger) for charger in self.chargers))
        await self._collect(answers, result)
        return result

    async def one_at_a_time(self, chargers: list[Charger], prefix: str, more: Callable[[int], bool]) -> LoadResult:
        """Each charger sends its k-th message (id `<prefix><k>`) while `more(k)`, the next once answered."""
        result = LoadResult(closed_chargers=sum(charger.closed for charger in chargers))
        result.first_send = time.time()
        answers: list[tuple[float, asyncio.Future[float]]] = []

        async def send_one_at_a_time(charger: Charger) -> None:
            k = 0
            while more(k):
                sent, unique_id = time.time(), f"{prefix}{k}"
                k += 1
                try:
                    answer = await charger.call(unique_id, charger.load_frame(unique_id, int(sent * 1000)))
                    result.sent += 1
                    answers.append((sent, answer))
                    async with asyncio.timeout(ANSWER_GRACE_S):
                        await answer
                except (ConnectionClosed, CallFailedError, TimeoutError) as error:
                    result.errors[describe(error)] += 1
                    return

        await asyncio.gather(*(send_one_at_a_time(charger) for charger in chargers))
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
            elif answer.cancelled():  # its wait timed out: asking for its exception would raise
                result.errors["no answer within the grace period"] += 1
            elif (error := answer.exception()) is not None:
                result.errors[describe(error)] += 1
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
