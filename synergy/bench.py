"""Monte Carlo throughput: ``agentlab bench synergy --fan-in B --depth L`` (numbers for bench/README.md).

Leaf evaluations per second (one leaf's outcome in one trial; CONTRACT.md's unit) of the full-tree
sampler, compile excluded (`agentlab.timing.compile_only`), blocking on results, median of `repeats`
timed calls after a warm-up, each with fresh chunk seeds."""

from __future__ import annotations

import statistics

import numpy as np

from agentlab import limits, timing
from agentlab.limits import Bound

# The numeric inputs of `leaf_throughput` (the command line checks its flags through them).
BOUNDS = {
    "fan_in": Bound("--fan-in", int, low=2, high=64, unit="children per aggregator"),
    "depth": Bound("--depth", int, low=1, high=30, unit="levels below the root"),
    "n_words": Bound("--words", int, low=1, high=4096, unit="uint32 words of 32 trials per configuration"),
    "configs": Bound("--configs", int, low=1, high=4096, unit="configurations per call"),
    "repeats": Bound("--repeats", int, low=1, high=10_000, unit="timed calls (median reported)"),
}


def leaf_bytes(b: int, depth: int, n_words: int, configs: int) -> float:
    """Estimated peak memory of one call: the leaves' words (uint32) of every configuration, about 4 times over
    (draws, votes and temporaries)."""
    return 4.0 * 4 * configs * float(b) ** depth * n_words


def check(b: int, depth: int, n_words: int = 64, configs: int = 8, repeats: int = 5) -> None:
    """Every argument through its Bound, then the memory of one call (`leaf_bytes`); bad -> `UsageError`."""
    for name, value in zip(BOUNDS, (b, depth, n_words, configs, repeats)):
        BOUNDS[name].check(value)
    limits.check_memory(
        leaf_bytes(b, depth, n_words, configs),
        f"a full tree of fan-in {b} and depth {depth} ({float(b) ** depth:,.0f} leaves) x {configs} configurations",
        "lower --depth, --words or --configs",
    )


def leaf_throughput(b: int = 3, depth: int = 9, n_words: int = 64, configs: int = 8, repeats: int = 5) -> dict:
    from agentlab.synergy import montecarlo as mc

    fn = mc.compiled_full_tree(b, depth, n_words)
    seeds = mc.config_seeds(0, range(configs))
    args = [np.full(configs, v, np.float32) for v in (0.05, 0.39, 0.9)]
    compiled, compile_seconds = timing.compile_only(fn, mc._chunk_seeds(seeds, 0), *args)
    times = timing.time_interleaved(
        {"full_tree": compiled}, lambda name, k: (mc._chunk_seeds(seeds, k), *args), repeats
    )
    leaves = configs * b**depth * 32 * n_words
    return {
        "fan_in": b,
        "depth": depth,
        "leaves_per_tree": b**depth,
        "trials_per_call": 32 * n_words * configs,
        "compile_seconds": compile_seconds,
        "leaf_evaluations_per_second": leaves / statistics.median(times["full_tree"]),
    }
