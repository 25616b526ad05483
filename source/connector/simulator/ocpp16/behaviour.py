"""What a simulated OCPP 1.6 charger says of its own accord, in 1.6's messages (the loop is `simulator.behaviour`).

BootNotification, StatusNotification of connector 1 (and 0 when asked), MeterValues with
the transaction's id, Heartbeat, and transactions as StartTransaction / StopTransaction.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from ocpp.v16 import call

from connector import __version__
from connector.simulator.behaviour import MODEL, VENDOR
from connector.simulator.behaviour import Behaviour as Loop
from connector.simulator.ocpp16.payloads import (
    CONNECTOR_ID,
    Configuration,
    charge_point_status,
    connector_status,
    energy_reading,
    meter_value,
    profile_from_wire,
)
from connector.simulator.station import Send, StartCharging, Station
from connector.simulator.words import time_text

LOG = logging.getLogger(__name__)


@dataclass
class Behaviour(Loop):
    """What a 1.6 charger with one connector says of its own accord."""

    station: Station[Configuration]

    def _boot_request(self) -> call.BootNotification:
        return call.BootNotification(
            charge_point_vendor=VENDOR,
            charge_point_model=MODEL,
            charge_point_serial_number=self.name[:25],
            firmware_version=__version__,
        )

    def _heartbeat_request(self) -> call.Heartbeat:
        return call.Heartbeat()

    def _status_now(self) -> str:
        return connector_status(self.station, time.time())

    async def _send_status(self, status: str) -> None:
        await self._status(status)

    async def _status(self, status: str, connector_id: int = CONNECTOR_ID) -> None:
        request = call.StatusNotification(
            connector_id=connector_id, error_code="NoError", status=status, timestamp=time_text(time.time())
        )
        await self._call(request)
        if connector_id == CONNECTOR_ID:
            self._reported = status  # also Preparing and Finishing, which the loop's status never is

    async def _meter_values(self, at: float, context: str) -> None:
        model = self.station.model
        sample = model.sample(time.time())
        reading = meter_value(sample, at, context, self.station.configuration.measurands())
        transaction_id = model.car.transaction_id if model.car else None
        await self._call(call.MeterValues(CONNECTOR_ID, [reading], transaction_id))

    async def _send(self, trigger: Send) -> None:
        match trigger.message:
            case "BootNotification":
                await self._boot()
            case "Heartbeat":
                await self._call(call.Heartbeat())
            case "MeterValues":
                await self._meter_values(time.time(), "Trigger")
            case "StatusNotification" if trigger.outlet_id == 0:
                await self._status(charge_point_status(self.station), 0)
            case "StatusNotification":
                await self._report_status(force=True)
            case "DiagnosticsStatusNotification":
                await self._call(call.DiagnosticsStatusNotification(status="Idle"))
            case "FirmwareStatusNotification":
                await self._call(call.FirmwareStatusNotification(status="Idle"))

    # -- transactions ------------------------------------------------------------------

    async def _start(self, intent: StartCharging) -> None:
        """A car plugs in: Preparing, StartTransaction, then charging (or stopping if the id tag is refused)."""
        model, now = self.station.model, time.time()
        if model.car is not None or not self.station.operative:
            LOG.info("%s: not starting for %s: busy or unavailable by now", self.name, intent.id_tag)
            return
        car = model.plug_in(now, intent.id_tag)
        await self._status("Preparing")
        request = call.StartTransaction(
            CONNECTOR_ID, intent.id_tag, car.meter_start, time_text(now), reservation_id=intent.reservation_id
        )
        answer = await self._call(request)
        if answer is None:
            model.unplug(time.time())
            return
        car.transaction_id = answer.transaction_id
        self.station.reservation = None
        if answer.id_tag_info.get("status") != "Accepted":
            LOG.info("%s: id tag %s not accepted (%s)", self.name, intent.id_tag, answer.id_tag_info.get("status"))
            await self._stop("DeAuthorized")
            return
        self._install_tx_profile(intent.profile)
        LOG.info(
            "%s: transaction %d started for id tag %s -> power now %.0f W",
            self.name,
            car.transaction_id,
            intent.id_tag,
            model.power_w(time.time()),
        )

    def _install_tx_profile(self, profile: dict[str, Any] | None) -> None:
        """RemoteStartTransaction's chargingProfile, now that the transaction has its id."""
        if profile is None:
            return
        car = self.station.model.car
        try:
            parsed = profile_from_wire(CONNECTOR_ID, {**profile, "transaction_id": car and car.transaction_id})
        except ValueError as error:
            LOG.warning("%s: the remote start's charging profile has a date it cannot read: %s", self.name, error)
            return
        refusal = self.station.install(parsed, time.time())
        if refusal is not None:
            LOG.warning("%s: the remote start's charging profile is not used: %s", self.name, refusal)

    async def _stop(self, reason: str) -> None:
        """StopTransaction with the register and the reason; Finishing, then the status the loop reports."""
        model, now = self.station.model, time.time()
        if model.car is None:
            return
        sample = model.sample(now)
        car = model.unplug(now)
        assert car is not None
        await self._status("Finishing")
        if car.transaction_id is not None:
            request = call.StopTransaction(
                meter_stop=math.floor(sample.energy_wh),
                timestamp=time_text(now),
                transaction_id=car.transaction_id,
                reason=reason,
                id_tag=car.id_tag,
                transaction_data=[energy_reading(sample, now, "Transaction.End")],
            )
            await self._call(request)
            energy = math.floor(sample.energy_wh) - car.meter_start
            LOG.info("%s: transaction %d stopped (%s): %d Wh", self.name, car.transaction_id, reason, energy)
        self.station.transaction_ended()

    async def _reboot(self, kind: str) -> None:
        await self._stop(f"{kind}Reset")
        self._go_down(kind)
