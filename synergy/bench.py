"""Monte Carlo throughput: ``python -m agentlab.synergy.bench`` (numbers for bench/README.md).

Leaf evaluations per second (one leaf's outcome in one trial; CONTRACT.md's unit) of the full-tree
sampler, compile excluded, blocking on results, median of 5 timed calls."""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np


def leaf_throughput(b: int = 3, depth: int = 9, n_words: int = 64, configs: int = 8, repeats: int = 5) -> dict:
    from agentlab.synergy import montecarlo as mc

    fn = mc.compiled_full_tree(b, depth, n_words)
    seeds = mc.config_seeds(0, range(configs))
    args = [np.full(configs, v, np.float32) for v in (0.05, 0.39, 0.9)]
    start = time.perf_counter()
    fn(mc._chunk_seeds(seeds, 0), *args).block_until_ready()
    compile_seconds = time.perf_counter() - start
    times = []
    for k in range(repeats):
        chunk = mc._chunk_seeds(seeds, k + 1)
        start = time.perf_counter()
        fn(chunk, *args).block_until_ready()
        times.append(time.perf_counter() - start)
    leaves = configs * b**depth * 32 * n_words
    return {
        "fan_in": b,
        "depth": depth,
        "leaves_per_tree": b**depth,
        "trials_per_call": 32 * n_words * configs,
        "compile_seconds": compile_seconds,
        "leaf_evaluations_per_second": leaves / statistics.median(times),
    }


if __name__ == "__main__":
    b, depth = (int(a) for a in sys.argv[1:3]) if len(sys.argv) > 2 else (3, 9)
    print(leaf_throughput(b, depth))
