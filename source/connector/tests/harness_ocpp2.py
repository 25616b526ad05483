"""OCPP 2.0.1 and 2.1 charging stations for the integration tests: the ocpp library's client
side over real WebSockets, answering whatever the connector asks.

The 1.6 `Charger` in harness.py answers with one `@on` handler per action; a 2.x station is
asked for more kinds of calls, so `Station` answers every CALL in one place: it records the
call and answers with the payload the test set for that action (camelCase, as on the wire),
`{"status": "Accepted"}` by default, validated against the version's schema by the library
on the way out. GetVariables is answered only when the test set an answer, else with the
CALLERROR NotImplemented, so tests that ignore the connector's rate-unit read see only the
calls they made.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import websockets
from ocpp.exceptions import NotImplementedError as OcppNotImplemented
from ocpp.messages import CallResult, validate_payload
from ocpp.v21 import ChargePoint as ClientV21
from ocpp.v201 import ChargePoint as ClientV201
from websockets.typing import Subprotocol

from connector.tests.harness import WAIT_S

CLIENTS = {"2.0.1": ClientV201, "2.1": ClientV21}


def station_class(version: str) -> type[Any]:
    base = CLIENTS[version]

    class Station(base):  # type: ignore[misc, valid-type]
        """A charging station of `version`, recording and answering every call."""

        def __init__(self, cp_id: str, connection: Any) -> None:
            super().__init__(cp_id, connection)
            self.received: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
            self.replies: dict[str, dict[str, Any]] = {}  # action -> answer payload (camelCase)

        async def _handle_call(self, msg: Any) -> None:
            if msg.action == "GetVariables" and "GetVariables" not in self.replies:
                error = OcppNotImplemented(details={"cause": "no GetVariables here"})
                await self._send(msg.create_call_error(error).to_json())
                return
            self.received.put_nowait((msg.action, msg.payload))
            answer = CallResult(msg.unique_id, self.replies.get(msg.action, {"status": "Accepted"}))
            answer.action = msg.action
            await validate_payload(answer, self._ocpp_version)
            await self._send(answer.to_json())

        async def next_call(self) -> tuple[str, dict[str, Any]]:
            async with asyncio.timeout(WAIT_S):
                return await self.received.get()

        async def send(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
            """Send a CALL (camelCase payload, checked by the library); the CALLRESULT payload."""
            from ocpp.messages import Call

            request = Call(unique_id=str(self._unique_id_generator()), action=action, payload=payload)
            await validate_payload(request, self._ocpp_version)
            async with self._call_lock:
                await self._send(request.to_json())
                async with asyncio.timeout(WAIT_S):
                    response = await self._get_specific_response(request.unique_id, WAIT_S)
            if response.message_type_id == 4:
                raise AssertionError(
                    f"{action} answered with CALLERROR {response.error_code}: {response.error_description}"
                )
            response.action = action
            await validate_payload(response, self._ocpp_version)
            return dict(response.payload)

    return Station


class StationLink:
    """A connected 2.x Station with its read loop running, closed on exit."""

    def __init__(
        self,
        url: str,
        cp_id: str,
        version: str = "2.0.1",
        subprotocols: list[str] | None = None,
        **options: Any,
    ) -> None:
        """`options` go to websockets.connect as they are: `ssl`, `additional_headers` (security profiles)."""
        self.url, self.cp_id, self.version = url, cp_id, version
        offered = [f"ocpp{version}"] if subprotocols is None else subprotocols
        self.subprotocols = [Subprotocol(p) for p in offered]
        self.options = options
        self._task: asyncio.Task[None]

    async def __aenter__(self) -> Any:
        self.connection = await websockets.connect(
            f"{self.url}/{self.cp_id}", subprotocols=self.subprotocols, open_timeout=WAIT_S, **self.options
        )
        self.station = station_class(self.version)(self.cp_id, self.connection)
        self._task = asyncio.create_task(self.station.start())
        return self.station

    async def __aexit__(self, *exc: object) -> None:
        await self.connection.close()
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def utc(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).isoformat(timespec="seconds").replace("+00:00", "Z")


def boot(reason: str = "PowerUp") -> dict[str, Any]:
    station = {"vendorName": "Example", "model": "Wallbox 2", "serialNumber": "SN-1", "firmwareVersion": "2.0.1-a"}
    return {"reason": reason, "chargingStation": {**station, "modem": {"iccid": "8949", "imsi": "2620"}}}


def status(evse: int, state: str = "Available", at: str = "2026-12-04T10:00:00Z") -> dict[str, Any]:
    return {"timestamp": at, "connectorStatus": state, "evseId": evse, "connectorId": 1}


def sample(value: float, measurand: str | None = None, unit: str | None = None, **more: Any) -> dict[str, Any]:
    """A SampledValue: `unit` goes into unitOfMeasure, `multiplier` with it where given."""
    entry: dict[str, Any] = {"value": value, **{k: v for k, v in more.items() if k != "multiplier"}}
    if measurand is not None:
        entry["measurand"] = measurand
    if unit is not None or "multiplier" in more:
        entry["unitOfMeasure"] = {
            k: v for k, v in (("unit", unit), ("multiplier", more.get("multiplier"))) if v is not None
        }
    return entry


def meter_values(evse: int, *samples: dict[str, Any], at: str = "2026-12-04T10:00:00Z") -> dict[str, Any]:
    return {"evseId": evse, "meterValue": [{"timestamp": at, "sampledValue": list(samples)}]}


def transaction_event(
    event: str, seq_no: int, transaction_id: str, *, evse: int | None = 1, at: str = "2026-12-04T10:00:00Z", **more: Any
) -> dict[str, Any]:
    """A TransactionEvent; `more` adds top-level fields (idToken, meterValue, offline) or transactionInfo's."""
    info_fields = {"chargingState", "stoppedReason", "remoteStartId", "timeSpentCharging"}
    info = {"transactionId": transaction_id, **{k: v for k, v in more.items() if k in info_fields}}
    trigger = {"Started": "CablePluggedIn", "Updated": "MeterValuePeriodic", "Ended": "EVCommunicationLost"}[event]
    payload: dict[str, Any] = {
        "eventType": event,
        "timestamp": at,
        "triggerReason": more.pop("triggerReason", trigger),
        "seqNo": seq_no,
        "transactionInfo": info,
        **{k: v for k, v in more.items() if k not in info_fields},
    }
    if evse is not None:
        payload["evse"] = {"id": evse, "connectorId": 1}
    return payload


def energy(wh: float, at: str = "2026-12-04T10:00:00Z", context: str = "Transaction.Begin") -> list[dict[str, Any]]:
    return [{"timestamp": at, "sampledValue": [{"value": wh, "context": context}]}]


def rate_unit_answer(value: str) -> dict[str, Any]:
    """GetVariables answer: SmartChargingCtrlr.RateUnit = value."""
    result = {
        "attributeStatus": "Accepted",
        "attributeType": "Actual",
        "attributeValue": value,
        "component": {"name": "SmartChargingCtrlr"},
        "variable": {"name": "RateUnit"},
    }
    return {"getVariableResult": [result]}


def dumps(frame: list[Any]) -> str:
    return json.dumps(frame)


class RawStation:
    """A bare WebSocket speaking a 2.x subprotocol, for frames the ocpp library would refuse to send."""

    def __init__(self, url: str, cp_id: str, version: str = "2.0.1") -> None:
        self.target, self.version = f"{url}/{cp_id}", version

    async def __aenter__(self) -> RawStation:
        offered = [Subprotocol(f"ocpp{self.version}")]
        self.connection = await websockets.connect(self.target, subprotocols=offered, open_timeout=WAIT_S)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.connection.close()

    async def exchange(self, text: str) -> Any:
        """Send a frame and return the decoded answer."""
        await self.connection.send(text)
        async with asyncio.timeout(WAIT_S):
            return json.loads(await self.connection.recv())
