"""Pure: the OCPP 1.6 handler table: each charger-initiated message -> datapoints and the answer.

A handler gets the session as a `handling.Context` and the validated CALL's wire payload
(camelCase: the mapping works in wire terms, and skipping the ocpp library's recursive case
conversion saves a large share of the per-message cost). It publishes through the context
and returns the CALLRESULT payload; work that must follow the answer goes to `Inbound.after`.
Keys and values come from datapoints.py, the one place their shapes are built.
"""

from __future__ import annotations

from typing import Any

from connector import datapoints as dp
from connector.handling import Context, Handler, Inbound, accept_boot, heartbeat, reservation_used
from connector.protocol import schema_fields

ACCEPTED = {"status": "Accepted"}


def boot_notification(ctx: Context, msg: Inbound) -> dict[str, Any]:
    return accept_boot(ctx, msg, dp.boot_notification(ctx.id, msg.payload, msg.received))


def status_notification(ctx: Context, msg: Inbound) -> dict[str, Any]:
    ctx.connector_seen(msg.payload["connectorId"])
    ctx.publish(dp.status_notification(ctx.id, msg.payload, msg.received, msg.notes))
    ctx.observed.note_status(msg.payload["connectorId"], msg.payload["status"])
    return {}


def meter_values(ctx: Context, msg: Inbound) -> dict[str, Any]:
    ctx.connector_seen(msg.payload["connectorId"])
    readings = dp.meter_readings(ctx.id, msg.payload, msg.received, msg.notes)
    points = [point for _, point in readings]
    ctx.publish(points)
    ctx.observed.note_meter(points)
    dp.note_phase_voltages(readings, ctx.voltages)
    return {}


def start_transaction(ctx: Context, msg: Inbound) -> dict[str, Any]:
    p = msg.payload
    ctx.connector_seen(p["connectorId"])
    # An id tag refused here still gets a transaction id: the charger may have started
    # already and will send StopTransaction for it (OCPP 1.6 5.16).
    record = ctx.transactions.start(ctx.id, p["connectorId"], p["idTag"], p["meterStart"], p["timestamp"])
    if ctx.transactions.active(ctx.id, record.connector_id) == record:
        ctx.publish(dp.transaction_started(ctx.id, p, record, msg.received, msg.notes))
    else:
        msg.notes.append(f"replay of transaction {record.transaction_id}, a newer one runs; published nothing")
    if "reservationId" in p:
        reservation_used(ctx, p["reservationId"], msg.received)
    return {"transactionId": record.transaction_id, "idTagInfo": ctx.id_tags.id_tag_info(p["idTag"])}


def stop_transaction(ctx: Context, msg: Inbound) -> dict[str, Any]:
    p = msg.payload
    record = ctx.transactions.stop(ctx.id, p["transactionId"])
    if record is None:
        msg.notes.append(f"transaction {p['transactionId']} is not open (a repeat, or unknown); published nothing")
    else:
        # A late stop (of a settled transaction) may come while a newer one runs there.
        running = ctx.transactions.active(ctx.id, record.connector_id)
        ctx.publish(dp.transaction_stopped(ctx.id, p, record, msg.received, msg.notes, running=running))
    return {"idTagInfo": ctx.id_tags.id_tag_info(p["idTag"])} if "idTag" in p else {}


def authorize(ctx: Context, msg: Inbound) -> dict[str, Any]:
    return {"idTagInfo": ctx.id_tags.id_tag_info(msg.payload["idTag"])}


def data_transfer(ctx: Context, msg: Inbound) -> dict[str, Any]:
    ctx.publish(dp.data_transfer(ctx.id, msg.payload, msg.received))
    return ACCEPTED


def sign_certificate(ctx: Context, msg: Inbound) -> dict[str, Any]:
    ctx.log.info("%s: SignCertificate rejected: this connector runs no certificate authority", ctx.id)
    return {"status": "Rejected"}


def notification(action: str) -> Handler:
    """A notification published field by field (the fields its 1.6 schema defines), answered empty."""
    fields = schema_fields(action)

    def handle(ctx: Context, msg: Inbound) -> dict[str, Any]:
        ctx.publish(dp.flat_notification(ctx.id, action, msg.payload, msg.received, fields=fields, notes=msg.notes))
        return {}

    return handle


HANDLERS: dict[str, Handler] = {
    "BootNotification": boot_notification,
    "Heartbeat": heartbeat,
    "StatusNotification": status_notification,
    "MeterValues": meter_values,
    "StartTransaction": start_transaction,
    "StopTransaction": stop_transaction,
    "Authorize": authorize,
    "DataTransfer": data_transfer,
    "SignCertificate": sign_certificate,
    "DiagnosticsStatusNotification": notification("DiagnosticsStatusNotification"),
    "FirmwareStatusNotification": notification("FirmwareStatusNotification"),
    "LogStatusNotification": notification("LogStatusNotification"),
    "SignedFirmwareStatusNotification": notification("SignedFirmwareStatusNotification"),
    "SecurityEventNotification": notification("SecurityEventNotification"),
}
