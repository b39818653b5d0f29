"""Adapters from agentlab's kernels to the APIs other libraries train with.

`agentlab.adapters.gymnasium` (extra ``gymnasium``): ``make(name, **options)`` returns a `gymnasium.Env` and
``make_vec(name, num_envs, **options)`` a `gymnasium.vector.VectorEnv` for every single-agent kernel. Each adapter
imports its library itself, so importing this package imports nothing optional.
"""
