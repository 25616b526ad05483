"""ocpp21/actuators.py: OCPP 2.1 takes 2.0.1's actuator entries where the messages are the same (INTERFACE.md 8)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from ocpp.messages import MessageType, get_validator
from ocpp.v21.enums import Action

from connector.actuators import ACTUATORS, ChargerFacts, OcppCall, Refusal
from connector.authorization import IdTagPolicy
from connector.ocpp21.actuators import CENTRAL_ACTIONS, TRANSLATIONS
from connector.ocpp201 import actuators as v201
from connector.ocpp201 import rate_units
from connector.tests.test_ocpp201_actuators import (
    CHARGING_STATION_ACTIONS,
    FACTS,
    VALID,
    VALID_IDS,
    rate_unit_answer,
)

VERSION = "2.1"
# The entries 2.1 builds its own way; every other one is 2.0.1's, the same object.
OWN = {
    "execute_trigger_message",
    "execute_remote_start_transaction",
    "execute_reserve_now",
    "execute_change_configuration",
    "execute_ocpp_call",
}


def build(name: str, evse_id: int, value: Any, facts: ChargerFacts = FACTS) -> OcppCall | Refusal:
    return TRANSLATIONS[name].build(value, evse_id, facts)


def schema_errors(call: OcppCall, version: str = VERSION) -> list[str]:
    validator = get_validator(MessageType.Call, call.action, version)
    return [error.message for error in validator.iter_errors(call.payload)]


def test_every_actuator_has_a_2_1_translation() -> None:
    """The 2.1 table carries every actuator of the catalogue, and nothing else."""
    assert set(TRANSLATIONS) == set(ACTUATORS)


@pytest.mark.parametrize("name", sorted(set(ACTUATORS) - OWN))
def test_entries_whose_messages_are_the_same_are_2_0_1s(name: str) -> None:
    """Where 2.1's message carries the same as 2.0.1's, 2.1 uses 2.0.1's entry itself."""
    assert TRANSLATIONS[name] is v201.TRANSLATIONS[name]


@pytest.mark.parametrize("name", sorted(OWN))
def test_entries_of_their_own_keep_2_0_1s_answer_mapping_and_status(name: str) -> None:
    """2.1's own entries differ in the build only: the answer and its status are read as in 2.0.1."""
    assert TRANSLATIONS[name] is not v201.TRANSLATIONS[name]
    assert TRANSLATIONS[name].answer is v201.TRANSLATIONS[name].answer
    assert TRANSLATIONS[name].status is v201.TRANSLATIONS[name].status


@pytest.mark.parametrize(("name", "evse_id", "value", "call"), VALID, ids=VALID_IDS)
def test_values_valid_in_2_0_1_become_the_same_schema_valid_2_1_call(
    name: str, evse_id: int, value: Any, call: OcppCall
) -> None:
    """Every value 2.0.1 sends becomes the same call in 2.1, and it passes the OCPP 2.1 CALL schema."""
    built = build(name, evse_id, value)
    assert built == call
    assert schema_errors(built) == []


TOKEN_255 = "e" * 255
# (actuator, EVSE id, value) that 2.1 sends and 2.0.1 refuses
ONLY_2_1: list[tuple[str, int, Any]] = [
    ("execute_remote_start_transaction", 1, TOKEN_255),
    ("execute_reserve_now", 1, TOKEN_255),
    ("execute_trigger_message", 0, "SignV2G20Certificate"),
    ("execute_change_configuration", 0, f"SecurityCtrlr.Identity={'i' * 2000}"),
    ("execute_ocpp_call", 0, '{"action": "GetTariffs", "payload": {"evseId": 1}}'),
    ("execute_ocpp_call", 0, '{"action": "ClearTariffs", "payload": {}}'),
    ("execute_ocpp_call", 0, '{"action": "Reset", "payload": {"type": "ImmediateAndResume"}}'),
]


@pytest.mark.parametrize(("name", "evse_id", "value"), ONLY_2_1, ids=[f"{n[8:]}-{v!r}"[:50] for n, _, v in ONLY_2_1])
def test_what_only_2_1_takes_is_sent_to_2_1_and_refused_for_2_0_1(name: str, evse_id: int, value: Any) -> None:
    """Longer id tokens and attribute values, SignV2G20Certificate and 2.1's new messages reach 2.1 chargers only."""
    call = build(name, evse_id, value)
    assert isinstance(call, OcppCall), call
    assert schema_errors(call) == []
    assert isinstance(v201.TRANSLATIONS[name].build(value, evse_id, FACTS), Refusal)


def test_a_2_1_id_token_is_sent_whole_as_a_central_token() -> None:
    """A 255-character id tag goes out as it is, type Central, with the EVSE and a fresh remoteStartId."""
    call = build("execute_remote_start_transaction", 2, TOKEN_255)
    assert call == OcppCall(
        "RequestStartTransaction",
        {"idToken": {"idToken": TOKEN_255, "type": "Central"}, "remoteStartId": 17, "evseId": 2},
    )


# (actuator, EVSE id, value, facts, what the refusal says)
REFUSED: list[tuple[str, int, Any, ChargerFacts, str]] = [
    ("execute_remote_start_transaction", 1, "e" * 256, FACTS, "an id tag of at most 255 characters, got 256"),
    ("execute_reserve_now", 1, "e" * 256, FACTS, "at most 255 characters, got 256"),
    (
        "execute_remote_start_transaction",
        1,
        "DEADBEEF",
        ChargerFacts(id_tag_allowed=IdTagPolicy.allow_list(["04A2B3C4"]).allows),
        "id tag 'DEADBEEF' is not allowed (OCPP_ALLOWED_ID_TAGS)",
    ),
    ("execute_trigger_message", 0, "CustomTrigger", FACTS, "SignV2G20Certificate"),  # needs a customTrigger text
    ("execute_trigger_message", 0, 6, FACTS, "1 LogStatusNotification"),
    (
        "execute_change_configuration",
        0,
        f"SecurityCtrlr.Identity={'i' * 2501}",
        FACTS,
        "SetVariables payload breaks the OCPP 2.1 schema: setVariableData/0/attributeValue: must be at most 2500",
    ),
    ("execute_ocpp_call", 0, '{"action": "NotifySettlement"}', FACTS, "one a central system sends in OCPP 2.1"),
    ("execute_ocpp_call", 0, '{"action": "BatterySwap"}', FACTS, "one a central system sends in OCPP 2.1"),
    (
        "execute_ocpp_call",
        0,
        json.dumps(
            {
                "action": "RequestStartTransaction",
                "payload": {"idToken": {"idToken": "a", "type": "Central"}, "remoteStartId": 1, "evseId": 0},
            }
        ),
        FACTS,
        "RequestStartTransaction payload breaks the OCPP 2.1 schema: evseId: must be at least 1",
    ),
    (
        "execute_ocpp_call",
        0,
        json.dumps(
            {
                "action": "RequestStartTransaction",
                "payload": {"idToken": {"idToken": "DEADBEEF", "type": "ISO14443"}, "remoteStartId": 1},
            }
        ),
        ChargerFacts(id_tag_allowed=IdTagPolicy.allow_list(["04A2B3C4"]).allows),
        "id tag 'DEADBEEF' is not allowed",
    ),
]


@pytest.mark.parametrize(
    ("name", "evse_id", "value", "facts", "reason"), REFUSED, ids=[f"{n[8:]}-{v!r}"[:50] for n, _, v, _, _ in REFUSED]
)
def test_bad_values_are_refused_against_2_1s_rules(
    name: str, evse_id: int, value: Any, facts: ChargerFacts, reason: str
) -> None:
    """2.1's own limits and schemas refuse what they refuse, with a reason that says which."""
    refusal = build(name, evse_id, value, facts)
    assert isinstance(refusal, Refusal), refusal
    assert reason in refusal.reason


def test_a_secret_beyond_2_1s_limit_is_not_quoted() -> None:
    """A SetVariables value beyond 2.1's 2500 characters is refused without quoting it."""
    refusal = build("execute_change_configuration", 0, f"SecurityCtrlr.BasicAuthPassword={'C0FFEE5EC12E7' * 200}")
    assert isinstance(refusal, Refusal)
    assert "C0FFEE" not in refusal.reason


CHARGING_STATION_ACTIONS_2_1 = {
    "BatterySwap",
    "ClosePeriodicEventStream",
    "GetCertificateChainStatus",
    "NotifyDERAlarm",
    "NotifyDERStartStop",
    "NotifyPriorityCharging",
    "NotifySettlement",
    "OpenPeriodicEventStream",
    "PullDynamicScheduleUpdate",
    "ReportDERControl",
    "VatNumberValidation",
}


def test_the_central_actions_are_2_1s_csms_messages() -> None:
    """execute_ocpp_call sends 2.0.1's CSMS messages and 2.1's new ones, none a station sends."""
    station = CHARGING_STATION_ACTIONS | CHARGING_STATION_ACTIONS_2_1
    assert {action.value for action in Action} == CENTRAL_ACTIONS | station
    assert not CENTRAL_ACTIONS & station
    assert v201.CENTRAL_ACTIONS < CENTRAL_ACTIONS


def test_the_rate_unit_read_serves_2_1_as_it_is() -> None:
    """SmartChargingCtrlr.RateUnit is read the same way in 2.1: the call and its answer are 2.1-valid."""
    call = rate_units.RATE_UNITS.call()
    assert schema_errors(call) == []
    answer = rate_unit_answer(value="W")
    assert list(get_validator(MessageType.CallResult, "GetVariables", VERSION).iter_errors(answer)) == []
    assert rate_units.RATE_UNITS.units(call, answer) == frozenset({"W"})
