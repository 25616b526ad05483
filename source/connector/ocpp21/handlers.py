"""OCPP 2.1: every message a charging station may send, answered; 2.0.1's handlers where the message is the same.

Each 2.0.1 charging-station message is in 2.1 too, extended only by optional fields (and
enum values) that neither the datapoints nor the answers depend on, so its 2.0.1 handler
serves, and its answer is valid against 2.1's response schema as well (the tests check
each). Where 2.1 differs the entry is 2.1's own: the flat notifications take 2.1's field
lists, and NotifyEVChargingNeeds is answered with 2.1's `NoChargingProfile`. Then 2.1's new
charging-station messages (OCPP 2.1 Part 2; the library's v21 schemas): DER control,
periodic event streams, battery swap, priority charging, payment settlement, VAT numbers
and certificate chain status.

NotifyPeriodicEventStream is not here: 2.1 sends it as a SEND frame (type 6), which gets no
answer and is no CALL.
"""

from __future__ import annotations

from typing import Any

from connector.handling import Context, Handler, Inbound, echo_checked, utc_now_text
from connector.ocpp201 import handlers as v201
from connector.ocpp201.handlers import acknowledged, notification, refused

SCHEMAS = "2.1"  # the schemas (protocol.schema_fields) these handlers read fields from

# 2.0.1 handlers that read the request's schema: 2.1's fields instead.
FLAT_NOTIFICATIONS = (
    "FirmwareStatusNotification",
    "LogStatusNotification",
    "PublishFirmwareStatusNotification",
    "SecurityEventNotification",
    # New in 2.1, simple enough to publish as they are: a DER alarm, a DER control started
    # or stopped, priority charging switched on or off.
    "NotifyDERAlarm",
    "NotifyDERStartStop",
    "NotifyPriorityCharging",
)


def notify_ev_charging_needs(ctx: Context, inbound: Inbound) -> dict[str, Any]:
    return refused("NoChargingProfile", "no ISO 15118 charging schedules")


def get_certificate_chain_status(ctx: Context, inbound: Inbound) -> dict[str, Any]:
    """Each certificate asked about: status Failed (no OCSP or CRL service here), in the order asked."""
    now = utc_now_text()
    statuses = [
        {
            "certificateHashData": _hash_data(request["certificateHashData"]),
            "source": request["source"],
            "status": "Failed",
            "nextUpdate": now,
        }
        for request in inbound.payload["certificateStatusRequests"]
    ]
    return echo_checked("GetCertificateChainStatus", {"certificateStatus": statuses}, SCHEMAS)


def _hash_data(sent: dict[str, Any]) -> dict[str, Any]:
    # The identifying fields only: a tolerated extra field must not be echoed into our answer.
    return {name: sent[name] for name in ("hashAlgorithm", "issuerNameHash", "issuerKeyHash", "serialNumber")}


def open_periodic_event_stream(ctx: Context, inbound: Inbound) -> dict[str, Any]:
    return refused("Rejected", "no periodic event streams")


def pull_dynamic_schedule_update(ctx: Context, inbound: Inbound) -> dict[str, Any]:
    return refused("Rejected", "no dynamic charging profiles")


def vat_number_validation(ctx: Context, inbound: Inbound) -> dict[str, Any]:
    p = inbound.payload
    echoed = {"vatNumber": p["vatNumber"], **({"evseId": p["evseId"]} if "evseId" in p else {})}
    return echo_checked("VatNumberValidation", refused("Rejected", "no VAT number validation", **echoed), SCHEMAS)


HANDLERS: dict[str, Handler] = {
    **v201.HANDLERS,
    **{action: notification(action, SCHEMAS) for action in FLAT_NOTIFICATIONS},
    "NotifyEVChargingNeeds": notify_ev_charging_needs,
    "BatterySwap": acknowledged,
    "ClosePeriodicEventStream": acknowledged,
    "GetCertificateChainStatus": get_certificate_chain_status,
    "NotifySettlement": acknowledged,  # a payment's settlement: no datapoint (payment data stays out of MQTT)
    "OpenPeriodicEventStream": open_periodic_event_stream,
    "PullDynamicScheduleUpdate": pull_dynamic_schedule_update,
    "ReportDERControl": acknowledged,
    "VatNumberValidation": vat_number_validation,
}
