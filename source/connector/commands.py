"""Actuator messages from MQTT become OCPP calls; the answer lands on `<key>__status`.

Every way a command can end is published: the charger's `status`, or `Failed: <reason>`
with a WARNING that names the topic, when the value is refused, the charge point is not
connected, or no usable answer comes back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from websockets.exceptions import ConnectionClosed

from connector.actuators import OcppCall, Refusal, build_call
from connector.datapoints import Datapoint, key, now_ms
from connector.protocol import load_json
from connector.registry import ActuatorRef
from connector.session import ChargePointSession, CommandError

LOG = logging.getLogger(__name__)


def actuator_value(payload: bytes | bytearray) -> Any:
    """The `value` of a BEMCom actuator message, or a Refusal saying what is wrong."""
    try:
        message = load_json(payload)
    except ValueError:
        return Refusal("message is not JSON")
    if not isinstance(message, dict) or "value" not in message:
        return Refusal('message has no "value"')
    return message["value"]


class CommandRunner:
    def __init__(
        self,
        session_for: Callable[[str], ChargePointSession | None],
        publish: Callable[[list[Datapoint]], None],
    ) -> None:
        self._session_for = session_for
        self._publish = publish
        # The newest command per actuator key: an older one still waiting its turn is
        # dropped, so a burst of limits ends in the last, not in a queue of stale ones.
        self._newest: dict[str, object] = {}

    def submit(self, topic: str, actuator_key: str, ref: ActuatorRef | None, payload: bytes | bytearray) -> None:
        """Handle one actuator message (on the loop thread); never raises."""
        if ref is None:
            self._fail(topic, actuator_key, "no such actuator (unknown key, or not enabled in OCPP_CONFIG)")
            return
        value = actuator_value(payload)
        call = value if isinstance(value, Refusal) else build_call(ref.name, ref.connector_id, value)
        if isinstance(call, Refusal):
            self._fail(topic, actuator_key, call.reason)
            return
        session = self._session_for(ref.cp)
        if session is None:
            self._fail(topic, actuator_key, f"charge point {ref.cp} is not connected")
            return
        LOG.info("%s: %s -> %s", ref.cp, actuator_key, call.action)
        token = self._newest[actuator_key] = object()
        session.spawn(self._run(session, topic, actuator_key, call, lambda: self._newest.get(actuator_key) is token))

    async def _run(
        self,
        session: ChargePointSession,
        topic: str,
        actuator_key: str,
        call: OcppCall,
        still_wanted: Callable[[], bool],
    ) -> None:
        try:
            answer = await session.send_call(call, still_wanted)
        except CommandError as error:
            self._fail(topic, actuator_key, str(error))
            return
        except ConnectionClosed:
            self._fail(topic, actuator_key, "connection closed before the charger answered")
            return
        except asyncio.CancelledError:
            self._fail(topic, actuator_key, "connection closed before the charger answered")
            raise
        self._status(actuator_key, str(answer.get("status", "Accepted")))

    def _fail(self, topic: str, actuator_key: str, reason: str) -> None:
        LOG.warning("actuator %s (topic %s): Failed: %s", actuator_key, topic, reason)
        self._status(actuator_key, f"Failed: {reason}")

    def _status(self, actuator_key: str, status: str) -> None:
        self._publish([Datapoint(key(actuator_key, "status"), status, now_ms())])
