"""The one input boundary: Bound declarations and the memory check."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentlab import limits
from agentlab.errors import UsageError

PROBABILITY = limits.Bound("p", float, low=0, high=1)
SHARE = limits.Bound("shortfall", float, low=0, high=1, low_open=True, high_open=True, unit="share of load")
COUNT = limits.Bound("--episodes", int, low=1, high=limits.MAX_INDEX)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**30), 10**30)))
def test_a_value_passes_exactly_when_it_is_finite_and_in_range(value):
    """Against the definition written out: finite, 0 < x < 1."""
    inside = isinstance(value, (int, float)) and math.isfinite(value) and 0 < value < 1
    if inside:
        assert SHARE.check(value) == float(value)
    else:
        with pytest.raises(UsageError) as error:
            SHARE.check(value)
        message = str(error.value)
        assert message.startswith("shortfall must be a finite number in (0, 1) (share of load), got")
        assert "\n" not in message


@pytest.mark.parametrize("value", [True, "x", "nan", None, [1], 1.5, 0, -3, 2**31, 10**25])
def test_integers_refuse_what_is_not_a_count(value):
    with pytest.raises(UsageError, match=r"--episodes must be an integer in \[1, 2\.14748e\+09\]"):
        COUNT.check(value)


def test_conversions_and_closed_ends():
    assert COUNT.check("12") == 12 and COUNT.check(3.0) == 3
    assert PROBABILITY.check(0) == 0.0 and PROBABILITY.check(1) == 1.0 and PROBABILITY.check("0.5") == 0.5
    with pytest.raises(UsageError, match=r"\[0, 1\]"):
        PROBABILITY.check(1.0000001)
    assert limits.check_all({"p": "0.25", "other": "x"}, {"p": PROBABILITY}) == {"p": 0.25, "other": "x"}
    with pytest.raises(UsageError, match="^--param p must be"):
        limits.check_all({"p": "nan"}, {"p": PROBABILITY}, "--param")


def test_memory_check_refuses_with_estimate_and_limit(monkeypatch):
    monkeypatch.setattr(limits, "available_memory", lambda: 10 * 2**30)
    limits.check_memory(7 * 2**30, "a run")  # under 80%
    with pytest.raises(UsageError, match=r"a run needs about 9\.0 GiB of memory, more than the 8\.0 GiB .*--markets"):
        limits.check_memory(9 * 2**30, "a run", "lower --markets")
    with pytest.raises(UsageError):
        limits.check_memory(float("inf"), "a run")
    assert limits.available_memory() > 2**20  # this machine reports something plausible
