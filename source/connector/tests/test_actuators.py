"""build_call: actuator values become schema-valid OCPP 1.6 calls or refusals (INTERFACE.md 4, 7)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ocpp.messages import MessageType

from connector.actuators import (
    ACTUATOR_NAMES,
    MAX_LIMIT,
    SEND_CHARGING_PROFILE,
    SEND_CHARGING_PROFILE_CURRENT,
    TRIGGER_MESSAGE,
    OcppCall,
    Refusal,
    build_call,
)
from connector.protocol import check_payload

TRIGGER_NAMES = [
    "BootNotification",
    "DiagnosticsStatusNotification",
    "FirmwareStatusNotification",
    "Heartbeat",
    "MeterValues",
    "StatusNotification",
]


def assert_schema_valid(call: OcppCall) -> None:
    verdict = check_payload(call.action, call.payload, MessageType.Call)
    assert verdict.refusal is None, verdict.refusal
    assert not verdict.tolerated, verdict.tolerated


def set_profile(connector_id: int, value: Any) -> OcppCall:
    call = build_call(SEND_CHARGING_PROFILE, connector_id, value)
    assert isinstance(call, OcppCall), call
    assert call.action == "SetChargingProfile"
    return call


def profile_of(call: OcppCall) -> dict[str, Any]:
    profile: dict[str, Any] = call.payload["csChargingProfiles"]
    return profile


def limit_of(call: OcppCall) -> Any:
    return profile_of(call)["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"]


# (value from MQTT, the limit in W that reaches the charger)
LIMITS: list[tuple[Any, float]] = [
    (11000, 11000.0),
    (11000.0, 11000.0),
    ("11000", 11000.0),
    (" 2300 ", 2300.0),
    ("1e3", 1000.0),
    (0, 0.0),
    ("0", 0.0),
    (0.0, 0.0),
    (1.1, 1.1),
    (3680.75, 3680.7),
    ("7.99", 7.9),
    (4140.19, 4140.1),
    (0.05, 0.0),
    (0.09999, 0.0),
    ("22000.0999", 22000.0),
]


@pytest.mark.parametrize(("value", "limit"), LIMITS, ids=[repr(v) for v, _ in LIMITS])
def test_power_limit_is_sent_rounded_down_to_a_tenth(value: Any, limit: float) -> None:
    """A number or numeric string >= 0 becomes a SetChargingProfile limit in W, rounded down to 0.1."""
    call = set_profile(1, value)
    assert limit_of(call) == pytest.approx(limit, abs=1e-9)
    assert limit_of(call) <= float(value)
    assert profile_of(call)["chargingSchedule"]["chargingRateUnit"] == "W"


@pytest.mark.parametrize(("value", "limit"), LIMITS, ids=[repr(v) for v, _ in LIMITS])
def test_set_charging_profile_payload_is_schema_valid(value: Any, limit: float) -> None:
    """Every SetChargingProfile payload built from a valid value passes the OCPP 1.6 schema untouched."""
    del limit
    assert_schema_valid(set_profile(2, value))


@pytest.mark.parametrize("connector_id", [0, 1, 2, 7])
def test_the_profile_is_the_connectors_one_tx_default_profile(connector_id: int) -> None:
    """The limit goes to the addressed connector as a TxDefaultProfile in effect until the next value."""
    call = set_profile(connector_id, 7400)
    profile = profile_of(call)
    assert call.payload["connectorId"] == connector_id
    assert profile["chargingProfilePurpose"] == "TxDefaultProfile"
    assert "validTo" not in profile
    assert "duration" not in profile["chargingSchedule"]
    assert profile["chargingSchedule"]["chargingSchedulePeriod"][0]["startPeriod"] == 0


@pytest.mark.parametrize("connector_id", [0, 1, 2])
def test_repeated_values_reuse_the_same_profile_id(connector_id: int) -> None:
    """Each new value on a connector carries the same profile id, so it replaces the previous limit."""
    ids = {profile_of(set_profile(connector_id, value))["chargingProfileId"] for value in (11000, "3680", 0, 1.5)}
    assert len(ids) == 1


def test_each_connector_has_its_own_profile_id() -> None:
    """Different connectors get different profile ids, so a limit on one never replaces another's."""
    ids = [profile_of(set_profile(connector_id, 11000))["chargingProfileId"] for connector_id in range(5)]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("connector_id", [0, 1, 3])
def test_null_clears_the_connectors_profile(connector_id: int) -> None:
    """None becomes a schema-valid ClearChargingProfile.req for exactly the profile id the limits use."""
    call = build_call(SEND_CHARGING_PROFILE, connector_id, None)
    assert isinstance(call, OcppCall), call
    assert call.action == "ClearChargingProfile"
    assert call.payload["id"] == profile_of(set_profile(connector_id, 11000))["chargingProfileId"]
    assert call.payload.get("connectorId", connector_id) == connector_id
    assert_schema_valid(call)


REFUSED_LIMITS: list[Any] = [
    -1,
    -0.1,
    "-5",
    math.nan,
    math.inf,
    -math.inf,
    "nan",
    "inf",
    "Infinity",
    True,
    False,
    "eleven",
    "",
    "0x10",
    {"value": 11000},
    [11000],
]


@pytest.mark.parametrize("value", REFUSED_LIMITS, ids=[repr(v) for v in REFUSED_LIMITS])
def test_bad_power_limits_are_refused_with_a_reason(value: Any) -> None:
    """Negative, non-finite, boolean, non-numeric and structured values are refused with a reason naming the value."""
    refusal = build_call(SEND_CHARGING_PROFILE, 1, value)
    assert isinstance(refusal, Refusal), refusal
    assert refusal.reason
    assert repr(value)[:20] in refusal.reason


HUGE_LIMITS: list[Any] = [1e20, 1e30, 1.7e308, 10**400, "1e30", "9" * 400]


@pytest.mark.parametrize("value", HUGE_LIMITS, ids=["1e20", "1e30", "1.7e308", "10**400", "'1e30'", "'9'*400"])
def test_huge_power_limits_are_sent_or_refused_never_raise(value: Any) -> None:
    """An absurdly large limit from MQTT is refused with its prefix quoted; it never raises."""
    call = build_call(SEND_CHARGING_PROFILE, 1, value)
    assert isinstance(call, Refusal)
    assert call.reason.startswith("value must be ")
    assert f"got {value!r:.10}" in call.reason and len(call.reason) < 120


@given(st.floats(min_value=0, max_value=MAX_LIMIT["W"], allow_nan=False, allow_infinity=False))
def test_rounding_never_exceeds_the_asked_limit(value: float) -> None:
    """For any limit, the one sent is at most the one asked and less than 0.1 below it, and is schema-valid."""
    call = set_profile(1, value)
    sent = limit_of(call)
    assert sent <= value
    assert value - sent < 0.1 + 1e-9 * max(1.0, value)
    assert_schema_valid(call)


TRIGGERS: list[tuple[Any, str]] = [
    *[(number, name) for number, name in enumerate(TRIGGER_NAMES)],
    *[(str(number), name) for number, name in enumerate(TRIGGER_NAMES)],
    *[(name, name) for name in TRIGGER_NAMES],
    ("heartbeat", "Heartbeat"),
    ("METERVALUES", "MeterValues"),
    ("statusNotification", "StatusNotification"),
    (" bootnotification ", "BootNotification"),
    (3.0, "Heartbeat"),  # the JSON number 3, written as 3.0 by some clients
]


@pytest.mark.parametrize(("value", "requested"), TRIGGERS, ids=[repr(v) for v, _ in TRIGGERS])
def test_trigger_message_accepts_numbers_digits_and_names(value: Any, requested: str) -> None:
    """0..5, "0".."5" and the message names in any case become a schema-valid TriggerMessage.req."""
    call = build_call(TRIGGER_MESSAGE, 0, value)
    assert isinstance(call, OcppCall), call
    assert call.action == "TriggerMessage"
    assert call.payload["requestedMessage"] == requested
    assert_schema_valid(call)


REFUSED_TRIGGERS: list[Any] = [
    6,
    -1,
    "6",
    "-1",
    3.5,
    True,
    False,
    None,
    "",
    "Reset",
    "Meter Values",
    "²",
    "9" * 5000,
    [3],
    {"value": 3},
]


@pytest.mark.parametrize("value", REFUSED_TRIGGERS, ids=[repr(v)[:20] for v in REFUSED_TRIGGERS])
def test_bad_trigger_values_are_refused_with_the_choices(value: Any) -> None:
    """Anything but 0..5 or a triggerable message name is refused with a reason listing the choices."""
    refusal = build_call(TRIGGER_MESSAGE, 0, value)
    assert isinstance(refusal, Refusal), refusal
    assert all(name in refusal.reason for name in TRIGGER_NAMES)


RATE_UNITS = [
    ("Current", frozenset({"A"})),
    ("Power", frozenset({"W"})),
    ("Current,Power", frozenset({"A", "W"})),
    ("current, power", frozenset({"A", "W"})),
    ("Current;Power", frozenset({"A", "W"})),
    ("", None),
    ("Amps", None),
    (None, None),
]


@pytest.mark.parametrize(("text", "units"), RATE_UNITS, ids=[str(t) for t, _ in RATE_UNITS])
def test_allowed_rate_units_as_chargers_send_them(text: object, units: frozenset[str] | None) -> None:
    """ChargingScheduleAllowedChargingRateUnit is read in every spelling seen; nothing recognisable is unknown."""
    from connector.ocpp16.rate_units import parse_rate_units

    assert parse_rate_units(text) == units


CONVERSIONS = [
    # (value, unit asked, allowed, voltages measured, phases, expected limit, expected unit)
    (11000, "W", frozenset({"A"}), (), 3, 15.9, "A"),  # 11000 / (230 * 3) = 15.94
    (11000, "W", frozenset({"A"}), (240.0,), 3, 15.2, "A"),  # 11000 / 720 = 15.27
    (11000, "W", frozenset({"A"}), (231.0, 229.0), 3, 15.8, "A"),  # the highest: 11000 / 693 = 15.87
    (3680, "W", frozenset({"A"}), (), 1, 16.0, "A"),
    (16, "A", frozenset({"W"}), (), 3, 11040.0, "W"),
    (16, "A", frozenset({"W"}), (231.3,), 1, 3700.8, "W"),
    (16, "A", frozenset({"W"}), (231.0, 229.0), 3, 10992.0, "W"),  # the lowest: 16 * 229 * 3
    (11000, "W", frozenset({"A", "W"}), (240.0,), 3, 11000.0, "W"),
    (16, "A", None, (), 3, 16.0, "A"),  # not known: sent as asked
    (10_000_000, "W", frozenset({"W"}), (), 3, 10_000_000.0, "W"),  # the largest power limit
    (10_000, "A", frozenset({"A"}), (), 3, 10_000.0, "A"),  # the largest current limit
]


@pytest.mark.parametrize(("value", "unit", "allowed", "voltages", "phases", "limit", "sent_unit"), CONVERSIONS)
def test_limits_are_converted_to_a_unit_the_charger_allows(
    value: float,
    unit: str,
    allowed: frozenset[str] | None,
    voltages: tuple[float, ...],
    phases: int,
    limit: float,
    sent_unit: str,
) -> None:
    """W <-> A over the measured voltage that gives the smaller limit (else 230 V), rounded down to 0.1."""
    from connector.actuators import SEND_CHARGING_PROFILE, SEND_CHARGING_PROFILE_CURRENT, ChargerFacts

    name = SEND_CHARGING_PROFILE if unit == "W" else SEND_CHARGING_PROFILE_CURRENT
    facts = ChargerFacts(allowed_rate_units=allowed, voltages=voltages, phases=phases)
    call = build_call(name, 1, value, facts)
    assert isinstance(call, OcppCall)
    schedule = call.payload["csChargingProfiles"]["chargingSchedule"]
    assert schedule["chargingRateUnit"] == sent_unit
    assert schedule["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": limit}]


def test_a_floating_phase_does_not_weaken_a_power_limit() -> None:
    """The issue's MeterValues (231, 229, 0.8 V) make 11,000 W go out as 15.8 A, not 4,583 A."""
    from connector.actuators import SEND_CHARGING_PROFILE, ChargerFacts
    from connector.datapoints import note_phase_voltages, sampled_readings

    samples = [
        {"measurand": "Voltage", "phase": phase, "unit": "V", "value": volts}
        for phase, volts in (("L1-N", "231"), ("L2-N", "229"), ("L3-N", "0.8"))
    ]
    voltages: dict[str, float] = {}
    note_phase_voltages(
        sampled_readings("CP", 1, [{"timestamp": "2026-12-04T10:00:00Z", "sampledValue": samples}], 0, []), voltages
    )
    facts = ChargerFacts(allowed_rate_units=frozenset({"A"}), voltages=tuple(voltages.values()))
    call = build_call(SEND_CHARGING_PROFILE, 1, 11000, facts)
    assert isinstance(call, OcppCall)
    limit = call.payload["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"]
    assert limit == 15.8 == math.floor(11000 / (231 * 3) * 10) / 10


LIMITS_BEYOND: list[tuple[str, Any, frozenset[str] | None, tuple[float, ...], str]] = [
    # (actuator, value, allowed units, voltages, what the refusal says)
    (SEND_CHARGING_PROFILE, 1e308, None, (), "at most 10000000 W"),
    (SEND_CHARGING_PROFILE, 10_000_000.1, frozenset({"W"}), (), "at most 10000000 W"),
    (SEND_CHARGING_PROFILE_CURRENT, 10_000.1, None, (), "at most 10000 A"),
    (SEND_CHARGING_PROFILE, 9_000_000, frozenset({"A"}), (), "is 13043 A for this charger, beyond 10000 A"),
]


@pytest.mark.parametrize(("name", "value", "allowed", "voltages", "reason"), LIMITS_BEYOND)
def test_limits_beyond_any_charger_are_refused(
    name: str, value: Any, allowed: frozenset[str] | None, voltages: tuple[float, ...], reason: str
) -> None:
    """A limit above 10 MW or 10 kA, as asked or as converted, is refused, not sent as no limit at all."""
    from connector.actuators import ChargerFacts

    refusal = build_call(name, 1, value, ChargerFacts(allowed_rate_units=allowed, voltages=voltages))
    assert isinstance(refusal, Refusal)
    assert reason in refusal.reason


ODD_VALUES = [
    ("execute_ocpp_call", '{"action": [1], "payload": {}}', "action must be one a central system sends"),
    ("execute_ocpp_call", {"action": {"a": 1}}, "action must be one a central system sends"),
    ("execute_ocpp_call", '{"action": "SetChargingProfile", "payload": {"limit": NaN}}', "value must be JSON text"),
    ("execute_data_transfer", '{"vendor_id": "v", "data": {"a": Infinity}}', "value must be JSON text"),
    ("execute_get_composite_schedule", 1e20, "1..2147483647"),
    ("execute_get_composite_schedule", 2**31, "1..2147483647"),
    ("execute_send_charging_profile", "1_000", "value must be a number"),
    ("execute_send_charging_profile", "١٢", "value must be a number"),
]


@pytest.mark.parametrize(("name", "value", "reason"), ODD_VALUES, ids=[f"{n}-{v!r}"[:60] for n, v, _ in ODD_VALUES])
def test_odd_values_are_refused_not_raised(name: str, value: Any, reason: str) -> None:
    """Values that are JSON but odd (unhashable action, NaN, out-of-range integers, Python-only numbers) are refused."""
    refused = build_call(name, 1, value)
    assert isinstance(refused, Refusal) and reason in refused.reason


@pytest.mark.parametrize("allowed", [frozenset({"A"}), frozenset({"W"})], ids=["A-only", "W-only"])
@pytest.mark.parametrize("value", [1e308, "1e308", 1.7976931348623157e308])
def test_huge_limits_on_converting_chargers_are_refused_or_sent(allowed: frozenset[str], value: Any) -> None:
    """A limit whose W<->A conversion overflows is refused with a reason, never raised."""
    from connector.actuators import SEND_CHARGING_PROFILE, SEND_CHARGING_PROFILE_CURRENT, ChargerFacts

    for name in (SEND_CHARGING_PROFILE, SEND_CHARGING_PROFILE_CURRENT):
        result = build_call(name, 1, value, ChargerFacts(allowed_rate_units=allowed))
        assert isinstance(result, OcppCall | Refusal)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("execute_remote_start_transaction", "DEADBEEF"),
        ("execute_reserve_now", "DEADBEEF"),
        ("execute_ocpp_call", '{"action": "RemoteStartTransaction", "payload": {"idTag": "DEADBEEF"}}'),
        (
            "execute_ocpp_call",
            json.dumps(
                {
                    "action": "ReserveNow",
                    "payload": {
                        "connectorId": 1,
                        "expiryDate": "2026-11-21T12:00:00Z",
                        "idTag": "DEADBEEF",
                        "reservationId": 5,
                    },
                }
            ),
        ),
    ],
    ids=["remote-start", "reserve-now", "ocpp-call-remote-start", "ocpp-call-reserve-now"],
)
def test_the_id_tag_policy_applies_to_every_way_of_starting_or_reserving(name: str, value: Any) -> None:
    """A tag outside OCPP_ALLOWED_ID_TAGS is refused for remote starts and reservations, generic calls included."""
    from connector.actuators import ChargerFacts
    from connector.authorization import IdTagPolicy

    facts = ChargerFacts(id_tag_allowed=IdTagPolicy.allow_list(["04A2B3C4"]).allows)
    refused = build_call(name, 1, value, facts)
    assert isinstance(refused, Refusal) and "is not allowed" in refused.reason


# -- refusals quote a short prefix, never a secret ---------------------------------------

MEGABYTE = "x" * 1_000_000


@pytest.mark.parametrize("name", sorted(ACTUATOR_NAMES))
def test_a_megabyte_value_is_refused_in_a_few_words(name: str) -> None:
    """A 1 MB value is refused with a reason of at most 300 characters, or (where any value will do) sent."""
    result = build_call(name, 1, MEGABYTE)
    assert isinstance(result, OcppCall) or len(result.reason) <= 300, result


def test_a_cut_value_is_quoted_with_its_length() -> None:
    """A long value is quoted as its first 40 characters and its length."""
    refusal = build_call(TRIGGER_MESSAGE, 0, "Reboot" + MEGABYTE)
    assert isinstance(refusal, Refusal)
    assert refusal.reason.endswith(f"got {('Reboot' + MEGABYTE)[:40]!r}... (1000006 characters)")


SECRET = "0xC0FFEE5EC12E7"
SECRET_VALUES: list[tuple[str, Any]] = [
    ("execute_change_configuration", f"AuthorizationKey {SECRET}"),  # no "=": where would the secret start?
    ("execute_change_configuration", f"AuthorizationKey:{SECRET}"),
    ("execute_change_configuration", f"AuthorizationKey={SECRET * 40}"),  # beyond maxLength 500
    ("execute_ocpp_call", json.dumps({"action": "ChangeConfiguration", "payload": {"key": "AuthorizationKey"}})),
    (
        "execute_ocpp_call",
        json.dumps({"action": "ChangeConfiguration", "payload": {"key": "AuthorizationKey", "value": [SECRET]}}),
    ),
    (
        "execute_ocpp_call",
        json.dumps({"action": "ChangeConfiguration", "payload": {"key": "AuthorizationKey", "value": SECRET * 40}}),
    ),
    ("execute_data_transfer", json.dumps({"vendor_id": SECRET * 20, "data": "password"})),
]


@pytest.mark.parametrize(("name", "value"), SECRET_VALUES)
def test_refusals_never_quote_a_secret(name: str, value: Any) -> None:
    """A mistyped AuthorizationKey, or an operator's payload the schema refuses, is refused without its value."""
    refusal = build_call(name, 0, value)
    assert isinstance(refusal, Refusal), refusal
    assert SECRET[2:] not in refusal.reason


def test_an_operators_number_beyond_any_range_is_refused() -> None:
    """A limit of 10**400 in an execute_ocpp_call SetChargingProfile is refused, not sent."""
    profile = {
        "chargingProfileId": 1,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": {"chargingRateUnit": "W", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10**400}]},
    }
    value = json.dumps({"action": "SetChargingProfile", "payload": {"connectorId": 1, "csChargingProfiles": profile}})
    refusal = build_call("execute_ocpp_call", 0, value)
    assert refusal == Refusal("SetChargingProfile payload breaks the OCPP 1.6 schema: a number is out of range")
