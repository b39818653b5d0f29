"""Adapters from agentlab's kernels to the APIs other libraries train with.

`agentlab.adapters.gymnasium` (extra ``gymnasium``): ``make(name, **options)`` returns a `gymnasium.Env` and
``make_vec(name, num_envs, **options)`` a `gymnasium.vector.VectorEnv` for every single-agent kernel;
`agentlab.adapters.pettingzoo` (extra ``pettingzoo``): ``parallel_env(name, **options)`` a `pettingzoo.ParallelEnv`
for every multi-agent kernel. Each adapter
imports its library itself, so importing this package imports nothing optional.
"""
