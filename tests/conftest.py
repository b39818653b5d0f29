"""Shared fixtures: compiled kernels are cached per configuration so each compiles once per session."""

from __future__ import annotations

import functools
import os

import jax
import pytest
from hypothesis import settings

from agentlab.kernels import make

settings.register_profile("agentlab", deadline=None, max_examples=15, derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "agentlab"))

ATARI = ("asterix", "breakout", "freeway", "seaquest", "space-invaders")


@functools.cache
def compiled(name: str, auto_reset: bool = True, full_action_set: bool = False):
    """``(env, params, reset, step)`` with `reset` and `step` jitted (and so compiled once per
    params structure) for the plain game; pass other params to the same functions."""
    options = {"full_action_set": True} if full_action_set else {}
    env, params = make(name, auto_reset=auto_reset, **options)
    return env, params, jax.jit(env.reset), jax.jit(env.step)


@functools.cache
def compiled_rollout(name: str, steps: int, batch: int):
    """A jitted batched rollout under uniformly random actions, `vmap` over lanes.

    ``rollout(keys (batch,), params) -> (obs (batch, steps, ...), rewards, terminated, truncated)``,
    one lane's step keys are ``split(lane_key, steps)``."""
    from agentlab.rl.rollout import random_rollout

    env, params = make(name)
    fn = jax.jit(jax.vmap(lambda key, p: random_rollout(env, p, key, steps), in_axes=(0, None)))
    return env, params, fn


@pytest.fixture(params=ATARI)
def atari_name(request):
    return request.param
