"""Policy mixes: parse and expand, against a plain loop."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentlab.errors import UsageError
from agentlab.kernels.mixes import expand, parse_mix

NAMES = ("undercut", "stabilise", "costplus")


@settings(max_examples=30, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.sampled_from(NAMES), st.integers(0, 5)), min_size=1, max_size=5))
def test_parse_then_expand_lists_every_agent_in_order(mix):
    text = ",".join(f"{name}:{count}" for name, count in mix)
    if sum(c for _, c in mix) == 0:
        with pytest.raises(UsageError, match="at least one agent"):
            parse_mix(text, NAMES, "--policies")
        return
    parsed = parse_mix(text, NAMES, "--policies")
    assert parsed == tuple(mix)
    ids = []
    for name, count in mix:
        for _ in range(count):
            ids.append(NAMES.index(name))
    assert expand(parsed, NAMES) == ids


@pytest.mark.parametrize(
    ("text", "message"),
    [("pump:2", "unknown policy 'pump'"), ("undercut:x", "not an integer"), ("undercut:-1", ">= 0"),
     ("undercut:5000", "at most 4096 agents")],
)  # fmt: skip
def test_bad_mixes_are_one_line(text, message):
    with pytest.raises(UsageError, match=message):
        parse_mix(text, NAMES, "--policies")
    assert parse_mix("undercut", NAMES, "--policies") == (("undercut", 1),)  # a bare name counts one
