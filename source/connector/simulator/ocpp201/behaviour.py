"""What a simulated OCPP 2.0.1 charging station says of its own accord, in 2.0.1's messages (the loop is
`simulator.behaviour`).

BootNotification (reason PowerUp, RemoteReset after a Reset, Triggered when asked),
StatusNotification of EVSE 1 connector 1, MeterValues, Heartbeat, and each transaction as
TransactionEvents: Started (with the idToken, the EVSE and the register), Updated when its
charging state changes or when asked, Ended (with the register and the stopped reason);
seqNo counts up per transaction, across reconnects.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ocpp.v201 import call

from connector import __version__
from connector.simulator.behaviour import MODEL, VENDOR
from connector.simulator.behaviour import Behaviour as Loop
from connector.simulator.model import Sample
from connector.simulator.ocpp201.payloads import (
    EVSE_ID,
    DeviceModel,
    connector_status,
    energy_reading,
    evse,
    meter_value,
    profile_from_wire,
)
from connector.simulator.station import AUTO_ID_TAG, Send, StartCharging, Station
from connector.simulator.words import time_text

LOG = logging.getLogger(__name__)

# The stoppedReason of each way a transaction ends, and the triggerReason that goes with it.
TRIGGER_OF_STOP = {"Remote": "RemoteStop", "ImmediateReset": "ResetCommand", "DeAuthorized": "Deauthorized"}
REBOOT_REASON = "RemoteReset"  # BootNotification's reason after a Reset


@dataclass
class Transaction:
    """A transaction's events so far: its id (the station's own) and the next seqNo."""

    transaction_id: str
    seq_no: int = 0
    charging_state: str | None = None  # the last one reported
    remote_start_id: int | None = None

    def next_seq_no(self) -> int:
        self.seq_no += 1
        return self.seq_no - 1


@dataclass
class Memory:
    """What the station remembers beyond `Station` across connections, in 2.0.1's terms."""

    transaction: Transaction | None = None
    boot_reason: str = "PowerUp"


@dataclass
class Behaviour(Loop):
    """What a 2.0.1 charging station with one EVSE says of its own accord."""

    AUTO_START: ClassVar[StartCharging] = StartCharging(AUTO_ID_TAG, token_type="ISO14443")  # a card held up

    station: Station[DeviceModel]
    memory: Memory = field(default_factory=Memory)

    def _boot_request(self) -> call.BootNotification:
        station = {
            "vendor_name": VENDOR,
            "model": MODEL,
            "serial_number": self.name[:25],
            "firmware_version": __version__,
        }
        return call.BootNotification(charging_station=station, reason=self.memory.boot_reason)

    async def _boot(self) -> None:
        await super()._boot()
        self.memory.boot_reason = "PowerUp"  # until the next Reset

    def _heartbeat_request(self) -> call.Heartbeat:
        return call.Heartbeat()

    def _status_now(self) -> str:
        return connector_status(self.station)

    async def _send_status(self, status: str) -> None:
        request = call.StatusNotification(
            timestamp=time_text(time.time()), connector_status=status, evse_id=EVSE_ID, connector_id=1
        )
        await self._call(request)

    async def _report_status(self, force: bool = False) -> None:
        """The connector's status, and the transaction's charging state when it changed (ChargingStateChanged)."""
        await super()._report_status(force)
        transaction = self.memory.transaction
        state = self.station.model.charging_state(time.time())
        if transaction is not None and state is not None and state != transaction.charging_state:
            await self._updated("ChargingStateChanged")

    async def _meter_values(self, at: float, context: str) -> None:
        sample = self.station.model.sample(time.time())
        reading = meter_value(sample, at, context, self.station.configuration.measurands())
        await self._call(call.MeterValues(evse_id=EVSE_ID, meter_value=[reading]))

    async def _send(self, trigger: Send) -> None:
        match trigger.message:
            case "BootNotification":
                self.memory.boot_reason = "Triggered"
                await self._boot()
            case "Heartbeat":
                await self._call(call.Heartbeat())
            case "MeterValues":
                await self._meter_values(time.time(), "Trigger")
            case "StatusNotification":
                await self._report_status(force=True)
            case "TransactionEvent":
                await self._updated("Trigger", with_sample=True)
            case "LogStatusNotification":
                await self._call(call.LogStatusNotification(status="Idle"))
            case "FirmwareStatusNotification":
                await self._call(call.FirmwareStatusNotification(status="Idle"))

    # -- transactions ------------------------------------------------------------------

    async def _start(self, intent: StartCharging) -> None:
        """A car plugs in: Occupied, TransactionEvent Started, then charging (or Ended if the idToken is refused)."""
        model, now = self.station.model, time.time()
        if model.car is not None or not self.station.operative:
            LOG.info("%s: not starting for %s: busy or unavailable by now", self.name, intent.id_tag)
            return
        car = model.plug_in(now, intent.id_tag)
        await self._report_status()  # Occupied, before the transaction has a charging state to report
        # A fresh UUID, not one from the seeded randomness: a restarted simulator must not
        # repeat an id (with its seqNos) that the CSMS has seen.
        car.transaction_id = str(uuid.uuid4())
        transaction = Transaction(car.transaction_id, remote_start_id=intent.remote_start_id)
        self.memory.transaction = transaction
        answer = await self._started(transaction, intent, model.sample(now), now)
        self.station.reservation = None
        status = (answer.id_token_info or {}).get("status", "Accepted") if answer is not None else "Accepted"
        if status != "Accepted":
            LOG.info("%s: idToken %s not accepted (%s)", self.name, intent.id_tag, status)
            await self._stop("DeAuthorized")
            return
        self._install_tx_profile(intent.profile, car.transaction_id)
        LOG.info(
            "%s: transaction %s started for idToken %s -> power now %.0f W",
            self.name,
            car.transaction_id,
            intent.id_tag,
            model.power_w(time.time()),
        )

    async def _started(self, transaction: Transaction, intent: StartCharging, sample: Sample, now: float) -> Any:
        """TransactionEvent Started; its answer, or None for a CALLERROR (the transaction goes on, as on a station)."""
        transaction.charging_state = self.station.model.charging_state(now)
        info = self._transaction_info(transaction)
        if intent.remote_start_id is not None:
            info["remote_start_id"] = intent.remote_start_id
        request = call.TransactionEvent(
            event_type="Started",
            timestamp=time_text(now),
            trigger_reason="RemoteStart" if intent.remote_start_id is not None else "Authorized",
            seq_no=transaction.next_seq_no(),
            transaction_info=info,
            meter_value=[energy_reading(sample, now, "Transaction.Begin")],
            evse=evse(),
            id_token={"id_token": intent.id_tag, "type": intent.token_type},
            reservation_id=intent.reservation_id,
        )
        return await self._call(request)

    def _install_tx_profile(self, profile: dict[str, Any] | None, transaction_id: str) -> None:
        """RequestStartTransaction's chargingProfile, for the transaction it started."""
        if profile is None:
            return
        try:
            parsed = profile_from_wire(EVSE_ID, profile, transaction_id)
        except ValueError as error:
            LOG.warning("%s: the remote start's charging profile has a date it cannot read: %s", self.name, error)
            return
        refusal = self.station.install(parsed, time.time(), outlet="EVSE")
        if refusal is not None:
            LOG.warning("%s: the remote start's charging profile is not used: %s", self.name, refusal)

    async def _updated(self, trigger_reason: str, with_sample: bool = False) -> None:
        """TransactionEvent Updated with the charging state now (and the meter, when asked for)."""
        transaction, now = self.memory.transaction, time.time()
        if transaction is None:
            return
        transaction.charging_state = self.station.model.charging_state(now)
        readings = None
        if with_sample:
            sample = self.station.model.sample(now)
            readings = [meter_value(sample, now, trigger_reason, self.station.configuration.measurands())]
        request = call.TransactionEvent(
            event_type="Updated",
            timestamp=time_text(now),
            trigger_reason=trigger_reason,
            seq_no=transaction.next_seq_no(),
            transaction_info=self._transaction_info(transaction),
            meter_value=readings,
        )
        await self._call(request)

    @staticmethod
    def _transaction_info(transaction: Transaction) -> dict[str, Any]:
        info: dict[str, Any] = {"transaction_id": transaction.transaction_id}
        if transaction.charging_state is not None:
            info["charging_state"] = transaction.charging_state
        return info

    async def _stop(self, reason: str) -> None:
        """TransactionEvent Ended with the register and `reason` (a stoppedReason); then what waited for the end."""
        model, now, transaction = self.station.model, time.time(), self.memory.transaction
        if model.car is None or transaction is None:
            return
        sample = model.sample(now)
        car = model.unplug(now)
        assert car is not None
        self.memory.transaction = None
        request = call.TransactionEvent(
            event_type="Ended",
            timestamp=time_text(now),
            trigger_reason=TRIGGER_OF_STOP.get(reason, "StopAuthorized"),
            seq_no=transaction.next_seq_no(),
            transaction_info={
                **self._transaction_info(transaction),
                "charging_state": "Idle",
                "stopped_reason": reason,
            },
            meter_value=[energy_reading(sample, now, "Transaction.End")],
        )
        await self._call(request)
        energy = math.floor(sample.energy_wh) - car.meter_start
        LOG.info("%s: transaction %s stopped (%s): %d Wh", self.name, transaction.transaction_id, reason, energy)
        self.station.transaction_ended()
        if self.station.reset_scheduled is not None:
            await self._reboot(self.station.reset_scheduled)

    async def _reboot(self, kind: str) -> None:
        self.station.reset_scheduled = None
        await self._stop("ImmediateReset")  # OnIdle comes here only without a transaction
        self.memory.boot_reason = REBOOT_REASON
        self._go_down(kind)
