"""The simulator's physics (simulator/model.py): power under limits, energy, SoC, currents; time stepped by hand."""

from __future__ import annotations

import random

import pytest

from connector.simulator.model import (
    BATTERY_WH,
    CHARGE_POINT_MAX,
    MAX_POWER_W,
    NOMINAL_VOLTAGE,
    TX,
    TX_DEFAULT,
    ChargerModel,
    Limits,
    Period,
    Profile,
)

T0 = 1_796_342_400.0  # 2026-12-04T00:00:00Z
HOUR = 3600.0


def profile(
    limit: float,
    unit: str = "W",
    *,
    profile_id: int = 1,
    purpose: str = TX_DEFAULT,
    stack_level: int = 0,
    connector_id: int = 1,
    phases: int | None = None,
    **schedule: object,
) -> Profile:
    return Profile(
        profile_id,
        connector_id,
        stack_level,
        purpose,
        unit,
        (Period(0.0, limit, phases),),
        **schedule,  # type: ignore[arg-type]
    )


def charging(soc: float = 30.0) -> ChargerModel:
    """A model with a car plugged in at T0 with `soc` %."""
    model = ChargerModel(random.Random(1))
    model.plug_in(T0, "TAG")
    assert model.car is not None
    model.car.soc = soc
    return model


def test_without_a_limit_the_car_gets_the_chargers_maximum() -> None:
    """A car below 80 % draws the charger's 11 kW when no profile limits it."""
    assert charging().power_w(T0) == MAX_POWER_W


def test_no_car_no_power() -> None:
    """Without a car plugged in nothing flows, whatever the limit."""
    model = ChargerModel(random.Random(1))
    assert model.power_w(T0) == 0.0
    assert model.charging_state(T0) is None


def test_a_power_limit_caps_the_power() -> None:
    """A TxDefaultProfile of 4200 W makes the charger draw 4200 W."""
    model = charging()
    model.limits.install(profile(4200))
    assert model.power_w(T0) == 4200


def test_a_current_limit_is_converted_with_its_own_voltage_and_three_phases() -> None:
    """10 A is 10 A x the mean of the charger's last phase voltages x 3."""
    model = charging()
    model.voltages = (228.0, 230.0, 232.0)
    model.limits.install(profile(10, "A"))
    assert model.power_w(T0) == pytest.approx(10 * 230.0 * 3)


def test_a_limit_above_the_maximum_changes_nothing() -> None:
    """A limit of 22 kW leaves an 11 kW charger at 11 kW."""
    model = charging()
    model.limits.install(profile(22000))
    assert model.power_w(T0) == MAX_POWER_W


def test_the_lowest_limit_of_all_purposes_wins() -> None:
    """ChargePointMax 6 kW, TxDefault 8 kW and Tx 5 kW together: 5 kW; without the Tx one, 6 kW."""
    model = charging()
    model.limits.install(profile(6000, profile_id=1, purpose=CHARGE_POINT_MAX, connector_id=0))
    model.limits.install(profile(8000, profile_id=2, purpose=TX_DEFAULT))
    model.limits.install(profile(5000, profile_id=3, purpose=TX))
    assert model.power_w(T0) == 5000
    model.limits.clear(profile_id=3)
    assert model.power_w(T0) == 6000


def test_a_limit_in_amperes_and_one_in_watts_compare_in_watts() -> None:
    """16 A (about 11 kW) against 7 kW on connector 0: 7 kW wins."""
    model = charging()
    model.limits.install(profile(16, "A", profile_id=1))
    model.limits.install(profile(7000, profile_id=2, connector_id=0))
    assert model.power_w(T0) == 7000


def test_within_one_purpose_the_highest_stack_level_is_in_effect() -> None:
    """TxDefault 4 kW at stack level 0 and 9 kW at level 1 on one connector: 9 kW (OCPP 1.6 3.13.2)."""
    model = charging()
    model.limits.install(profile(4000, profile_id=1, stack_level=0))
    model.limits.install(profile(9000, profile_id=2, stack_level=1))
    assert model.power_w(T0) == 9000


def test_a_profile_with_the_same_id_replaces_the_last() -> None:
    """Each new limit under one profile id replaces the last, also a higher one."""
    model = charging()
    model.limits.install(profile(3000, profile_id=1001))
    model.limits.install(profile(7000, profile_id=1001))
    assert (len(model.limits), model.power_w(T0)) == (1, 7000)


def test_a_profile_in_the_same_slot_replaces_the_last() -> None:
    """Same purpose, stack level and connector under another id: the new one replaces the old one."""
    model = charging()
    model.limits.install(profile(3000, profile_id=1))
    model.limits.install(profile(7000, profile_id=2))
    assert (len(model.limits), model.power_w(T0)) == (1, 7000)


def test_clearing_matches_every_criterion_given() -> None:
    """Clear by id and connector removes only that profile; clear without criteria removes all."""
    limits = Limits()
    limits.install(profile(3000, profile_id=1001, connector_id=1))
    limits.install(profile(5000, profile_id=7, connector_id=0))
    assert limits.clear(profile_id=1001, connector_id=0) == 0
    assert limits.clear(profile_id=1001, connector_id=1) == 1
    assert limits.clear() == 1
    assert len(limits) == 0


def test_clearing_the_limit_returns_to_the_maximum() -> None:
    """After its only profile is cleared the charger draws its maximum again."""
    model = charging()
    model.limits.install(profile(2000))
    model.limits.clear(connector_id=1)
    assert model.power_w(T0) == MAX_POWER_W


def test_tx_profiles_end_with_the_transaction() -> None:
    """Unplugging removes TxProfiles and keeps TxDefaultProfiles."""
    model = charging()
    model.limits.install(profile(2000, profile_id=1, purpose=TX))
    model.limits.install(profile(5000, profile_id=2, purpose=TX_DEFAULT))
    model.unplug(T0 + 1)
    model.plug_in(T0 + 2, "TAG")
    assert (len(model.limits), model.power_w(T0 + 2)) == (1, 5000)


def test_energy_counts_the_power_actually_delivered() -> None:
    """Half an hour at 11 kW, then half an hour under a 4 kW limit: 7500 Wh more on the register."""
    model = charging()
    start = model.energy_wh
    model.advance(T0 + HOUR / 2)
    model.limits.install(profile(4000))
    model.advance(T0 + HOUR)
    assert model.energy_wh - start == pytest.approx(11000 / 2 + 4000 / 2)


def test_energy_stands_still_without_a_car() -> None:
    """An idle charger's register does not move."""
    model = ChargerModel(random.Random(1))
    start = model.energy_wh
    model.advance(T0)
    model.advance(T0 + HOUR)
    assert model.energy_wh == start


def test_soc_rises_with_the_energy_charged() -> None:
    """An hour at 11 kW into a 60 kWh battery adds 11000/60000 of it to the SoC."""
    model = charging(soc=20.0)
    model.advance(T0 + HOUR)
    assert model.car is not None
    assert model.car.soc == pytest.approx(20.0 + 11000 / BATTERY_WH * 100)


def test_above_80_percent_the_car_takes_less() -> None:
    """At 90 % the car takes half the charger's maximum; at 100 % nothing, and it is SuspendedEV."""
    assert charging(soc=90.0).power_w(T0) == pytest.approx(MAX_POWER_W / 2)
    full = charging(soc=100.0)
    assert (full.power_w(T0), full.charging_state(T0)) == (0.0, "SuspendedEV")


def test_a_zero_limit_suspends_charging_by_the_charger() -> None:
    """A 0 W limit: nothing flows and the state is SuspendedEVSE."""
    model = charging()
    model.limits.install(profile(0))
    assert (model.power_w(T0), model.charging_state(T0)) == (0.0, "SuspendedEVSE")


def test_a_sample_splits_the_power_over_the_phases() -> None:
    """Each phase carries P / (3 x its voltage), voltages within a few volts of 230."""
    model = charging()
    model.limits.install(profile(6900))
    sample = model.sample(T0 + 10)
    assert sample.power_w == 6900
    assert all(abs(v - NOMINAL_VOLTAGE) <= 6 for v in sample.voltages)
    assert sample.currents == pytest.approx(tuple(6900 / (3 * v) for v in sample.voltages))


def test_a_single_phase_limit_puts_the_current_on_l1() -> None:
    """A 16 A limit for one phase: about 3.7 kW, all of it on L1."""
    model = charging()
    model.limits.install(profile(16, "A", phases=1))
    sample = model.sample(T0 + 10)
    assert sample.currents[0] == pytest.approx(16, rel=0.03)
    assert sample.currents[1:] == (0.0, 0.0)


def test_a_relative_schedule_counts_from_the_start_of_the_transaction() -> None:
    """Periods 0 s: 3 kW, 600 s: 6 kW; ten minutes into the transaction the second is in effect."""
    model = charging()
    periods = (Period(0.0, 3000), Period(600.0, 6000))
    model.limits.install(Profile(1, 1, 0, TX_DEFAULT, "W", periods))
    assert (model.power_w(T0 + 599), model.power_w(T0 + 600)) == (3000, 6000)


def test_an_absolute_profile_holds_only_while_valid() -> None:
    """An Absolute profile valid until T0 + 1 h limits before that, not after."""
    model = charging()
    model.limits.install(profile(2000, kind="Absolute", start=T0, valid_to=T0 + HOUR))
    assert (model.power_w(T0 + 10), model.power_w(T0 + HOUR)) == (2000, MAX_POWER_W)


def test_a_daily_profile_recurs() -> None:
    """A daily profile limiting the first hour of each day limits again a day later, not in between."""
    model = charging()
    day = 86_400.0
    model.limits.install(profile(1500, kind="Recurring", recurrency="Daily", start=T0, duration_s=HOUR))
    assert [model.power_w(T0 + t) for t in (60, 2 * HOUR, day + 60)] == [1500, MAX_POWER_W, 1500]


def test_the_meter_of_each_charger_starts_elsewhere_and_repeats_with_its_seed() -> None:
    """Two seeds, two meter readings; the same seed, the same reading."""
    first, again, other = (ChargerModel(random.Random(seed)).energy_wh for seed in ("SIM-1", "SIM-1", "SIM-2"))
    assert first == again != other
