"""Pure: how OCPP 2.1 carries each actuator: 2.0.1's entries wherever the message is the same.

Checked schema by schema (tests/test_ocpp21_actuators.py validates every call built here
against 2.1's schemas), 2.1 differs in what these calls carry only in:
- IdTokenType.idToken: up to 255 characters, not 36 (RequestStartTransaction, ReserveNow);
- TriggerMessage: one more message, SignV2G20Certificate; CustomTrigger needs a
  customTrigger text as well, so it goes through execute_ocpp_call;
- SetVariables: attributeValue up to 2500 characters, not 1000;
- execute_ocpp_call: 2.1's actions and schemas.
Everything else (charging profiles, GetVariables, DataTransfer, ...) is 2.0.1's entry: the
2.1 schemas add optional fields and lower bounds that these calls meet as they are.
"""

from __future__ import annotations

from dataclasses import replace

from ocpp.v21.enums import MessageTriggerEnumType

from connector.actuators import TRIGGER_MESSAGE, Build, Translation, ocpp_call
from connector.ocpp201 import actuators as v201
from connector.ocpp201.variables import set_variables

OCPP_VERSION = "2.1"
ID_TOKEN_LENGTH = 255  # IdTokenType.idToken, 2.1
TRIGGER_NAMES = tuple(str(name) for name in MessageTriggerEnumType if name != "CustomTrigger")

# 2.1's new CSMS -> Charging Station messages (OCPP 2.1 Part 2) on top of 2.0.1's.
CENTRAL_ACTIONS = v201.CENTRAL_ACTIONS | frozenset(
    {
        "AFRRSignal",
        "AdjustPeriodicEventStream",
        "ChangeTransactionTariff",
        "ClearDERControl",
        "ClearTariffs",
        "GetDERControl",
        "GetPeriodicEventStream",
        "GetTariffs",
        "NotifyAllowedEnergyTransfer",
        "NotifyWebPaymentStarted",
        "RequestBatterySwap",
        "SetDERControl",
        "SetDefaultTariff",
        "UpdateDynamicSchedule",
        "UsePriorityCharging",
    }
)


def _with_build(name: str, build: Build) -> Translation:
    """2.0.1's entry with another build: the answer mapping and status stay 2.0.1's."""
    return replace(v201.TRANSLATIONS[name], build=build)


TRANSLATIONS: dict[str, Translation] = {
    **v201.TRANSLATIONS,
    TRIGGER_MESSAGE: _with_build(TRIGGER_MESSAGE, v201.trigger_message(TRIGGER_NAMES)),
    "execute_remote_start_transaction": _with_build(
        "execute_remote_start_transaction", v201.remote_start(ID_TOKEN_LENGTH)
    ),
    "execute_reserve_now": _with_build("execute_reserve_now", v201.reserve_now(ID_TOKEN_LENGTH)),
    "execute_change_configuration": _with_build("execute_change_configuration", set_variables(OCPP_VERSION)),
    "execute_ocpp_call": _with_build("execute_ocpp_call", ocpp_call(OCPP_VERSION, CENTRAL_ACTIONS, v201.id_token_of)),
}
