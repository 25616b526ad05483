"""OCPP 2.0.1: every message a charging station may send, answered; its values as datapoints.

`HANDLERS` maps each charging-station-initiated action (OCPP 2.0.1 Part 2, the messages
whose sender is the Charging Station) to a `handling.Handler`. A handler receives a
schema-checked wire payload and returns the CALLRESULT payload: the answer a CSMS without
the feature gives where the connector has none (DataTransfer `UnknownVendorId`,
SignCertificate `Rejected`, ...), with `statusInfo.reasonCode` `UnsupportedRequest`
(Part 2 Appendices, reason codes) so the refusal says why.

2.1 reuses these functions where its messages are the same (ocpp21/handlers.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from connector import datapoints as dp
from connector.datapoints import Datapoint, EvseTransaction
from connector.handling import Context, Handler, Inbound, accept_boot, heartbeat, reservation_used
from connector.ocpp201 import datapoints as dp2
from connector.protocol import schema_fields

SCHEMAS = "2.0.1"  # the schemas (protocol.schema_fields) these handlers read fields from

# Values one NotifyReport or NotifyEvent may publish. A station's report comes in parts
# of some tens of variables; the registry caps a charge point's keys in all
# (OCPP_MAX_KEYS_PER_CHARGE_POINT), this bounds the work one frame costs.
MAX_VARIABLES_PER_MESSAGE = 1000
# The schema allows 36 characters (a UUID); a longer id is a tolerated deviation, but one
# of thousands would be stored with every event of its transaction.
MAX_TRANSACTION_ID = 255
MAX_STORED_TEXT = 255  # an idToken or timestamp kept in the transaction store

UNSUPPORTED = {"reasonCode": "UnsupportedRequest"}


def refused(status: str, why: str, **fields: Any) -> dict[str, Any]:
    """A business refusal: the status, and `statusInfo` saying it is a request this CSMS does not support."""
    return {"status": status, "statusInfo": {**UNSUPPORTED, "additionalInfo": why}, **fields}


# -- provisioning, availability ---------------------------------------------------------


def boot_notification(ctx: Context, inbound: Inbound) -> dict[str, Any]:
    return accept_boot(ctx, inbound, dp2.boot_notification(ctx.id, inbound.payload, inbound.received))


def status_notification(ctx: Context, inbound: Inbound) -> dict[str, Any]:
    p = inbound.payload
    ctx.connector_seen(p["evseId"])
    ctx.publish(dp2.status_notification(ctx.id, p, inbound.received, inbound.notes))
    ctx.observed.note_status(p["evseId"], p["connectorStatus"])
    return {}


# -- metering ---------------------------------------------------------------------------


def meter_values(ctx: Context, inbound: Inbound) -> dict[str, Any]:
    p = inbound.payload
    ctx.connector_seen(p["evseId"])
    readings = dp2.sampled_readings(ctx.id, p["evseId"], p["meterValue"], inbound.received, inbound.notes)
    points = [point for _, point in readings]
    ctx.publish(points)
    ctx.observed.note_meter(points)
    dp.note_phase_voltages(dp2.voltage_readings(readings), ctx.voltages)
    return {}


# -- authorization, transactions --------------------------------------------------------


def authorize(ctx: Context, inbound: Inbound) -> dict[str, Any]:
    return {"idTokenInfo": id_token_info(ctx, inbound.payload["idToken"])}


def id_token_info(ctx: Context, token: dict[str, Any]) -> dict[str, str]:
    """The id-tag policy's answer for a 2.x IdToken. `NoAuthorization` (a free-vend station's
    empty token: nobody to identify) is Accepted whatever the allow-list holds: refused, a
    station that stops on an invalid id would end every one of its transactions."""
    if token.get("type") == "NoAuthorization":
        return {"status": "Accepted"}
    return ctx.id_tags.id_tag_info(token["idToken"])


def transaction_event(ctx: Context, inbound: Inbound) -> dict[str, Any]:
    """A transaction's Started, Updated or Ended event: its sampled values, then its fields.

    An event whose seqNo was handled (a re-send after a lost answer, also across restarts)
    publishes nothing again; it is answered all the same.
    """
    p = inbound.payload
    info = p["transactionInfo"]
    transaction_id: str = info["transactionId"]
    answer = {"idTokenInfo": id_token_info(ctx, p["idToken"])} if "idToken" in p else {}
    if len(transaction_id) > MAX_TRANSACTION_ID:
        inbound.notes.append(f"transactionId longer than {MAX_TRANSACTION_ID} characters; event not handled")
        return answer
    if ctx.transactions.repeated(ctx.id, transaction_id, p["seqNo"]):
        inbound.notes.append(f"seqNo {p['seqNo']} of transaction {transaction_id[:40]!r} again; published nothing")
        return answer
    if ctx.transactions.has_ended(ctx.id, transaction_id):
        inbound.notes.append(f"event for transaction {transaction_id[:40]!r}, which has ended; published nothing")
        return answer
    known = ctx.transactions.known(ctx.id, transaction_id)
    evse = _event_evse(p, known, inbound.notes)
    ctx.connector_seen(evse)
    event = Event(
        p,
        evse,
        dp2.sampled_readings(ctx.id, evse, p.get("meterValue") or [], inbound.received, inbound.notes),
        dp.parse_time(p["timestamp"], inbound.received, inbound.notes),
    )
    points = _ended(ctx, event) if p["eventType"] == "Ended" else _running(ctx, event, known)
    _publish_event(ctx, event, points)
    return answer


@dataclass(frozen=True)
class Event:
    """A TransactionEvent being handled: its payload, EVSE, sampled values and time."""

    payload: dict[str, Any]
    evse: int
    readings: list[dp.Reading]
    at: int  # ms, the event's timestamp


def _event_evse(payload: dict[str, Any], known: EvseTransaction | None, notes: list[str]) -> int:
    """The event's EVSE; without one, that of the transaction's earlier events (INTERFACE.md 8)."""
    if "evse" in payload:
        return int(payload["evse"]["id"])
    if known is not None:
        return known.connector_id
    notes.append("TransactionEvent without evse for a transaction not seen before; filed under EVSE 0")
    return 0


def _running(ctx: Context, event: Event, known: EvseTransaction | None) -> list[Datapoint]:
    """A Started or Updated event: the transaction's record kept; its fields that are news."""
    p, evse = event.payload, event.evse
    info = p["transactionInfo"]
    before = known or EvseTransaction(info["transactionId"], evse, started=str(p["timestamp"])[:MAX_STORED_TEXT])
    meter_start = before.meter_start
    if meter_start is None and p["eventType"] == "Started":
        meter_start = dp2.register_wh(event.readings, "Transaction.Begin")
    after = replace(before, connector_id=evse, id_tag=before.id_tag or _id_token(p), meter_start=meter_start)
    outcome = ctx.transactions.running(ctx.id, after, p["seqNo"])
    if outcome == "opened":  # new, or settled and sending events again
        fields = dp2.running_fields(after, info)
    elif outcome == "updated":
        fields = dp2.updated_fields(before, after, info)
    else:  # superseded: a newer transaction runs on the EVSE, and its keys stay that one's
        fields = {}
    return dp2.transaction_points(ctx.id, evse, fields, event.at)


def _ended(ctx: Context, event: Event) -> list[Datapoint]:
    """An Ended event: the stop fields; then, where a newer transaction runs on the EVSE (this
    one had been settled), that one's fields at its start, so the keys end describing what runs."""
    p, evse, at = event.payload, event.evse, event.at
    info = p["transactionInfo"]
    record = ctx.transactions.ended(ctx.id, info["transactionId"], p["seqNo"])
    meter_start = record.meter_start if record else None
    meter_stop = dp2.register_wh(event.readings, "Transaction.End")
    fields = dp2.ended_fields(info["transactionId"], meter_start, meter_stop, info)
    if record is None and "idToken" in p:  # first heard of at its end
        fields["id_tag"] = _id_token(p)
    points = dp2.transaction_points(ctx.id, evse, fields, at)
    running = ctx.transactions.active(ctx.id, evse)
    if isinstance(running, EvseTransaction):
        started = dp.parse_time(running.started, at, []) if running.started else at
        points += dp2.transaction_points(ctx.id, evse, dp2.running_fields(running, {}), started)
    return points


def _id_token(p: dict[str, Any]) -> str:
    return str(p["idToken"]["idToken"])[:MAX_STORED_TEXT] if "idToken" in p else ""


def _publish_event(ctx: Context, event: Event, points: list[Datapoint]) -> None:
    """The sampled values first (each at its own time), then the transaction's fields."""
    samples = [point for _, point in event.readings]
    if samples:
        ctx.observed.note_meter(samples)
        if not event.payload.get("offline"):  # an offline event's voltages are old: not this connection's supply
            dp.note_phase_voltages(dp2.voltage_readings(event.readings), ctx.voltages)
    ctx.publish(samples + points)
    if "reservationId" in event.payload:
        reservation_used(ctx, event.payload["reservationId"], event.at)


def reservation_status_update(ctx: Context, inbound: Inbound) -> dict[str, Any]:
    """A reservation expired or was removed: `<cp>__Reservation__<evse>__status`, as 1.6's keys."""
    p = inbound.payload
    ended_on = ctx.transactions.end_reservation(ctx.id, p["reservationId"])
    if not ended_on:
        inbound.notes.append(f"reservation {p['reservationId']} is not known; published nothing")
    ctx.publish(dp.reservation_status(ctx.id, ended_on, p["reservationUpdateStatus"], inbound.received))
    return {}


# -- device model, notifications ----------------------------------------------------------


def notify_report(ctx: Context, inbound: Inbound) -> dict[str, Any]:
    p = inbound.payload
    at = dp.parse_time(p["generatedAt"], inbound.received, inbound.notes)
    data = p.get("reportData") or []
    ctx.publish(dp2.report_points(ctx.id, data, at, inbound.notes, limit=MAX_VARIABLES_PER_MESSAGE))
    return {}


def notify_event(ctx: Context, inbound: Inbound) -> dict[str, Any]:
    data = inbound.payload["eventData"]
    ctx.publish(dp2.event_points(ctx.id, data, inbound.received, inbound.notes, limit=MAX_VARIABLES_PER_MESSAGE))
    return {}


def notification(action: str, version: str = SCHEMAS) -> Handler:
    """Status-style notifications: the request's scalar fields (those the version's schema
    defines) as `<cp>__<action>__<field>`, as 1.6's `datapoints.flat_notification`."""
    fields = schema_fields(action, version)

    def handle(ctx: Context, inbound: Inbound) -> dict[str, Any]:
        p, notes = inbound.payload, inbound.notes
        ctx.publish(dp.flat_notification(ctx.id, action, p, inbound.received, fields=fields, notes=notes))
        return {}

    handle.__name__ = f"notification_{action}"
    return handle


def acknowledged(ctx: Context, inbound: Inbound) -> dict[str, Any]:
    """A notification the connector has no datapoints for: the empty answer that acknowledges it."""
    return {}


def data_transfer(ctx: Context, inbound: Inbound) -> dict[str, Any]:
    """Published as 1.6's; answered UnknownVendorId: the connector knows no vendor's extensions."""
    ctx.publish(dp.data_transfer(ctx.id, inbound.payload, inbound.received))
    return {"status": "UnknownVendorId"}


# -- features this CSMS does not offer -----------------------------------------------------


def sign_certificate(ctx: Context, inbound: Inbound) -> dict[str, Any]:
    ctx.log.info("%s: SignCertificate rejected: this connector runs no certificate authority", ctx.id)
    return refused("Rejected", "no certificate authority")


def get_15118_ev_certificate(ctx: Context, inbound: Inbound) -> dict[str, Any]:
    return refused("Failed", "no ISO 15118 contract certificate service", exiResponse="")


def get_certificate_status(ctx: Context, inbound: Inbound) -> dict[str, Any]:
    return refused("Failed", "no OCSP service")


def notify_ev_charging_needs(ctx: Context, inbound: Inbound) -> dict[str, Any]:
    return refused("Rejected", "no ISO 15118 charging schedules")


def notify_ev_charging_schedule(ctx: Context, inbound: Inbound) -> dict[str, Any]:
    # Accepted: the EV's schedule breaks no limit of ours (Rejected would make the station
    # renegotiate it, for nothing). Limits reach it as charging profiles.
    return {"status": "Accepted"}


HANDLERS: dict[str, Handler] = {
    "Authorize": authorize,
    "BootNotification": boot_notification,
    "ClearedChargingLimit": acknowledged,
    "DataTransfer": data_transfer,
    "FirmwareStatusNotification": notification("FirmwareStatusNotification"),
    "Get15118EVCertificate": get_15118_ev_certificate,
    "GetCertificateStatus": get_certificate_status,
    "Heartbeat": heartbeat,
    "LogStatusNotification": notification("LogStatusNotification"),
    "MeterValues": meter_values,
    "NotifyChargingLimit": acknowledged,
    "NotifyCustomerInformation": acknowledged,
    "NotifyDisplayMessages": acknowledged,
    "NotifyEVChargingNeeds": notify_ev_charging_needs,
    "NotifyEVChargingSchedule": notify_ev_charging_schedule,
    "NotifyEvent": notify_event,
    "NotifyMonitoringReport": acknowledged,
    "NotifyReport": notify_report,
    "PublishFirmwareStatusNotification": notification("PublishFirmwareStatusNotification"),
    "ReportChargingProfiles": acknowledged,
    "ReservationStatusUpdate": reservation_status_update,
    "SecurityEventNotification": notification("SecurityEventNotification"),
    "SignCertificate": sign_certificate,
    "StatusNotification": status_notification,
    "TransactionEvent": transaction_event,
}
