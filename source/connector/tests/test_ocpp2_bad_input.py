"""A hostile or broken OCPP 2.0.1 / 2.1 station over real WebSockets, a real mosquitto, the connector in
between (INTERFACE.md 7 and 8): raw frames the ocpp library would refuse to send, and what they must not
do to the connector: crash a handler, lose the station's data, leave a frame unanswered, or grow what
the connector keeps for one peer without bound.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import pytest
import websockets
from websockets.typing import Subprotocol

from connector.registry import MAX_KEY_CHARS
from connector.session import MAX_CONNECTORS_SEEN
from connector.tests.conftest import RunningConnector, command, map_datapoints, wire
from connector.tests.harness import WAIT_S, MqttProbe
from connector.tests.harness_ocpp2 import boot, dumps, status, transaction_event

VERSIONS = ["2.0.1", "2.1"]
BEYOND_FLOAT = 10**400  # a JSON integer Python reads exactly, and no float can hold


class Peer:
    """A raw 2.x station that reads in the background: its answers by id, the connector's calls in order."""

    def __init__(self, url: str, cp_id: str, version: str) -> None:
        self.target, self.version = f"{url}/{cp_id}", version
        self.calls: asyncio.Queue[list[Any]] = asyncio.Queue()
        self.answers: dict[Any, asyncio.Future[list[Any]]] = {}
        self._ids = itertools.count()

    async def __aenter__(self) -> Peer:
        offered = [Subprotocol(f"ocpp{self.version}")]
        self.connection = await websockets.connect(self.target, subprotocols=offered, open_timeout=WAIT_S)
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.connection.close()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)

    async def _read(self) -> None:
        async for text in self.connection:
            frame = json.loads(text)
            if frame[0] == 2:
                self.calls.put_nowait(frame)
            elif frame[1] in self.answers:
                self.answers[frame[1]].set_result(frame)

    async def send_call(self, action: str, payload: dict[str, Any]) -> list[Any]:
        """Send a CALL and return the frame that answers it (CALLRESULT or CALLERROR)."""
        unique_id = f"m{next(self._ids)}"
        answer: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self.answers[unique_id] = answer
        await self.connection.send(dumps([2, unique_id, action, payload]))
        async with asyncio.timeout(WAIT_S):
            return await answer

    async def next_call(self) -> list[Any]:
        async with asyncio.timeout(WAIT_S):
            return await self.calls.get()

    async def answer(self, call: list[Any], payload: dict[str, Any]) -> None:
        await self.connection.send(dumps([3, call[1], payload]))


def cp_for(version: str, what: str) -> str:
    return f"BAD_{version.replace('.', '')}_{what}"


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_voltage_beyond_float_range_loses_no_transaction_event(
    version: str, connector: RunningConnector, probe: MqttProbe
) -> None:
    """A Voltage of 10**400 V (valid JSON, no float holds it) is no plausible voltage: the TransactionEvent
    carrying it is answered, and its transaction published, instead of an InternalError that left the
    event's seqNo handled and its values lost for good."""
    cp = cp_for(version, "VOLT")
    active, tx_id = f"{connector.name}/t/active", f"{connector.name}/t/tx"
    await map_datapoints(
        probe, connector, {f"{cp}__Transaction__1__active": active, f"{cp}__Transaction__1__transaction_id": tx_id}, {}
    )
    voltage = {"value": BEYOND_FLOAT, "measurand": "Voltage", "phase": "L1-N", "unitOfMeasure": {"unit": "V"}}
    meter = [{"timestamp": "2026-12-04T10:00:00Z", "sampledValue": [voltage]}]
    async with Peer(connector.url, cp, version) as peer:
        answer = await peer.send_call("TransactionEvent", transaction_event("Started", 0, "tx-volt", meterValue=meter))
        assert answer[0] == 3, answer
        await probe.wait_value(tx_id, "tx-volt")
        await probe.wait_value(active, True)
        answer = await peer.send_call("MeterValues", {"evseId": 1, "meterValue": meter})
        assert answer[0] == 3, answer


@pytest.mark.parametrize("version", VERSIONS)
async def test_evse_ids_a_station_invents_are_tracked_only_up_to_a_bound(
    version: str, connector: RunningConnector, probe: MqttProbe
) -> None:
    """Every new evseId of a connection was remembered in the session forever (1,000 frames/s allowed:
    gigabytes a day from one station); beyond MAX_CONNECTORS_SEEN new ones are not tracked, and still answered."""
    cp = cp_for(version, "EVSES")
    async with Peer(connector.url, cp, version) as peer:
        for evse in range(MAX_CONNECTORS_SEEN + 50):
            answer = await peer.send_call("StatusNotification", status(evse + 10**9))
            assert answer[0] == 3, answer
        session = connector.service.dispatcher.sessions[cp]
        assert len(session._connectors) <= MAX_CONNECTORS_SEEN
    await probe.wait_for(
        connector.topic("logs"), lambda p: f"{cp}: more than {MAX_CONNECTORS_SEEN} connector or EVSE ids" in p["msg"]
    )


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_boot_storm_queues_at_most_one_rate_unit_read_before_a_limit(
    version: str, connector: RunningConnector, probe: MqttProbe
) -> None:
    """Each BootNotification queued one more rate-unit read behind the one in flight, each waiting out the
    response timeout: a station booting in a loop grew the connector's tasks without bound and held every
    limit behind them. Now a read waiting its turn covers the boots after it: at most two go out."""
    cp = cp_for(version, "BOOTS")
    limit = f"{cp}__execute_send_charging_profile__0"
    topics = await wire(probe, connector, limit)
    async with Peer(connector.url, cp, version) as peer:
        for _ in range(20):
            answer = await peer.send_call("BootNotification", boot())
            assert answer[2]["status"] == "Accepted"
        probe.publish(topics[limit][0], command(11000))
        reads = 0
        while True:
            call = await peer.next_call()
            if call[2] != "GetVariables":
                break
            reads += 1
            await peer.connection.send(dumps([4, call[1], "NotImplemented", "no device model here", {}]))
        assert call[2] == "SetChargingProfile"
        assert reads <= 2
        await peer.answer(call, {"status": "Accepted"})
        await probe.wait_for(topics[limit][1], lambda p: p["value"] == "Accepted")


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_key_of_a_megabyte_never_reaches_the_fleets_listing(
    version: str, connector: RunningConnector, probe: MqttProbe
) -> None:
    """Component names are the station's (maxLength is a tolerated deviation): a NotifyReport naming one of
    600,000 characters minted a key as long, listed in every available_datapoints; some hundreds of them
    took the listing past MQTT's 256 MB, and then no charger's new key was listed again. A key beyond
    MAX_KEY_CHARS is not kept, named in a WARNING; the report's other variables are published."""
    cp = cp_for(version, "LONGKEY")
    huge = "C" * 600_000
    report = {
        "requestId": 1,
        "generatedAt": "2026-12-04T10:00:00Z",
        "seqNo": 0,
        "reportData": [
            {"component": {"name": huge}, "variable": {"name": "V"}, "variableAttribute": [{"value": "1"}]},
            {
                "component": {"name": "OCPPCommCtrlr"},
                "variable": {"name": "HeartbeatInterval"},
                "variableAttribute": [{"value": "300"}],
            },
        ],
    }
    normal = f"{cp}__Variable__OCPPCommCtrlr__HeartbeatInterval"
    async with Peer(connector.url, cp, version) as peer:
        answer = await peer.send_call("NotifyReport", report)
        assert answer[0] == 3, str(answer)[:200]
    listing = await probe.wait_for(
        connector.topic("available_datapoints"), lambda p: isinstance(p, dict) and normal in p["sensor"]
    )
    assert all(len(key) <= MAX_KEY_CHARS for key in [*listing["sensor"], *listing["actuator"]])
    await probe.wait_for(connector.topic("logs"), lambda p: f"{cp}: key of 600" in p["msg"])


async def test_21_only_frame_types_on_a_201_connection_get_message_type_not_supported(
    connector: RunningConnector,
) -> None:
    """A CALLRESULTERROR (5) or SEND (6) on 2.0.1, which has neither, is answered MessageTypeNotSupported
    (OCPP-J 2.0.1 4.4), never handled as a call; the session goes on."""
    async with Peer(connector.url, cp_for("2.0.1", "TYPES"), "2.0.1") as peer:
        for frame in ([5, "r1", "InternalError", "nope", {}], [6, "s1", "Heartbeat", {}]):
            answer = peer.answers[frame[1]] = asyncio.get_running_loop().create_future()
            await peer.connection.send(dumps(frame))
            async with asyncio.timeout(WAIT_S):
                assert (await answer)[:3] == [4, frame[1], "MessageTypeNotSupported"]
        assert (await peer.send_call("Heartbeat", {}))[0] == 3


async def test_a_21_result_error_with_the_limits_id_does_not_end_the_limit(
    connector: RunningConnector, probe: MqttProbe
) -> None:
    """2.1's CALLRESULTERROR says the peer could not use *our answer*: one carrying the id of our limit in
    flight is no answer to it, and the CALLRESULT that follows is the one that counts."""
    cp = cp_for("2.1", "RESULTERROR")
    limit = f"{cp}__execute_send_charging_profile__0"
    topics = await wire(probe, connector, limit)
    async with Peer(connector.url, cp, "2.1") as peer:
        probe.publish(topics[limit][0], command(7000))
        call = await peer.next_call()
        if call[2] == "GetVariables":  # the first limit reads the rate units
            await peer.connection.send(dumps([4, call[1], "NotImplemented", "no", {}]))
            call = await peer.next_call()
        assert call[2] == "SetChargingProfile"
        await peer.connection.send(dumps([5, call[1], "InternalError", "forged", {}]))
        await peer.answer(call, {"status": "Accepted"})
        await probe.wait_for(topics[limit][1], lambda p: p["value"] == "Accepted")
    assert [p["value"] for p in probe.on(topics[limit][1])] == ["Accepted"]


@pytest.mark.parametrize("version", VERSIONS)
async def test_multipliers_and_values_out_of_range_skip_only_their_value(
    version: str, connector: RunningConnector, probe: MqttProbe
) -> None:
    """multiplier 300 or -300, 1e308 x 10^24: each such value skipped (no inf, no minutes of arithmetic),
    the message answered and its sensible value published."""
    cp = cp_for(version, "MULT")
    power = f"{connector.name}/t/power"
    await map_datapoints(probe, connector, {f"{cp}__MeterValues__1__Power.Active.Import__W": power}, {})
    samples = [
        {"value": 1, "measurand": "Current.Import", "unitOfMeasure": {"unit": "A", "multiplier": 300}},
        {"value": 1, "measurand": "Current.Offered", "unitOfMeasure": {"unit": "A", "multiplier": -300}},
        {"value": 1e308, "measurand": "Energy.Active.Import.Register", "unitOfMeasure": {"multiplier": 24}},
        {"value": 4.2, "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "W", "multiplier": 3}},
    ]
    async with Peer(connector.url, cp, version) as peer:
        meter = {"evseId": 1, "meterValue": [{"timestamp": "2026-12-04T10:00:00Z", "sampledValue": samples}]}
        assert (await peer.send_call("MeterValues", meter))[0] == 3
        await probe.wait_value(power, 4200.0)
    keys = connector.service.registry.sensors
    assert not any(k.startswith(f"{cp}__MeterValues__1__Current") or "Energy" in k for k in keys if cp in k)
