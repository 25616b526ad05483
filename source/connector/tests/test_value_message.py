"""The BEMCom sensor message's fast encoding: byte for byte what json.dumps makes (INTERFACE.md 3)."""

from __future__ import annotations

import enum
import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.value_message import scalar_json, value_message

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),  # lone surrogates included: "\ud800" is valid JSON text
)


def reference(value: Any, timestamp: Any) -> bytes:
    return json.dumps({"value": value, "timestamp": timestamp}, allow_nan=False).encode()


@given(value=SCALARS, timestamp=st.integers(min_value=0, max_value=2**53))
def test_a_scalar_value_is_encoded_as_json_dumps_does(value: Any, timestamp: int) -> None:
    """Any JSON scalar with an integer timestamp gives json.dumps's bytes exactly."""
    assert value_message(value, timestamp) == reference(value, timestamp)


class Level(enum.IntEnum):
    HIGH = 3


@pytest.mark.parametrize(
    "value",
    [Level.HIGH, [1, "a"], {"a": 1.5}, 10**40, -0.0, 1e16, 5e-324, "é€😀"],
    ids=["IntEnum", "list", "object", "large int", "negative zero", "large float", "tiny float", "non-ASCII"],
)
def test_other_values_are_encoded_as_json_dumps_does(value: Any) -> None:
    """Subclasses of scalars, lists and objects take json.dumps itself; edge numbers and non-ASCII text agree too."""
    assert value_message(value, 1) == reference(value, 1)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_value_that_is_not_json_raises(value: float) -> None:
    """NaN and infinities raise ValueError, as json.dumps with allow_nan=False does: no broken message goes out."""
    with pytest.raises(ValueError):
        value_message(value, 1)
    with pytest.raises(ValueError):
        scalar_json(value)
