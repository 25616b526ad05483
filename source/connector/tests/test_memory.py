"""When a full garbage collection is due (the loop itself is shown by test_storm's rounds)."""

from __future__ import annotations

import platform

from pytest_mock import MockerFixture

from connector.memory import FULL_EVERY_S, M_ARENA_MAX, MIN_ENDED_FOR_FULL, full_collection_due, limit_malloc_arenas


def test_a_fleet_that_left_is_collected_at_once() -> None:
    """Many sessions ended, few open: due now, not at the hourly collection."""
    assert full_collection_due(ended=1000, open_sessions=0, since_full_s=10)
    assert full_collection_due(ended=MIN_ENDED_FOR_FULL, open_sessions=100, since_full_s=10)


def test_a_trickle_of_reconnects_waits_for_the_hourly_collection() -> None:
    """A few ended among thousands open: the one long pause is not worth it yet."""
    assert not full_collection_due(ended=MIN_ENDED_FOR_FULL - 1, open_sessions=0, since_full_s=10)
    assert not full_collection_due(ended=500, open_sessions=10_000, since_full_s=10)
    assert full_collection_due(ended=0, open_sessions=10_000, since_full_s=FULL_EVERY_S)


def test_one_malloc_arena_is_set_where_glibc_has_the_setting(mocker: MockerFixture) -> None:
    mallopt = mocker.patch("ctypes.CDLL").return_value.mallopt
    mallopt.return_value = 1
    assert limit_malloc_arenas({}) is True
    mallopt.assert_called_once_with(M_ARENA_MAX, 1)


def test_an_operators_malloc_arena_max_is_left_alone(mocker: MockerFixture) -> None:
    libc = mocker.patch("ctypes.CDLL")
    assert limit_malloc_arenas({"MALLOC_ARENA_MAX": "4"}) is False
    libc.assert_not_called()


def test_an_operators_glibc_tunable_is_left_alone(mocker: MockerFixture) -> None:
    libc = mocker.patch("ctypes.CDLL")
    assert limit_malloc_arenas({"GLIBC_TUNABLES": "glibc.malloc.arena_max=4"}) is False
    libc.assert_not_called()


def test_a_c_library_without_mallopt_is_left_alone(mocker: MockerFixture) -> None:
    del mocker.patch("ctypes.CDLL").return_value.mallopt  # musl, macOS: no such symbol
    assert limit_malloc_arenas({}) is False


def test_this_machines_c_library_takes_the_setting_if_it_is_glibc() -> None:
    """The real call, where the tests run (glibc: CI, the Docker image's Debian)."""
    assert limit_malloc_arenas({}) is (platform.libc_ver()[0] == "glibc")
