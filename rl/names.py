"""The learners' JAX-free name lists: what the library's configs validate against and what the command line offers
as choices (`agentlab --help` lists them without importing JAX or numba).

One list per choice; the learner modules import them from here.
"""

from __future__ import annotations

#: `train mamql --algo`: MAMQL (Haynam et al. 2025), joint-critic IQ-Learn, behavioural cloning.
MAMQL_ALGOS = ("mamql", "iq-joint", "bc")
#: `train mamql --mode`: phi of the inverse soft-Q objective: the paper's chi^2, or phi(x) = x (recovers the soft Q).
MAMQL_MODES = ("chi2", "exact")
#: `train offline --algo`: TD3+BC (Fujimoto & Gu 2021), IQL (Kostrikov et al. 2021).
OFFLINE_ALGOS = ("td3bc", "iql")
#: `train offline --synthetic`: the synthetic transitions mixed into each batch.
SYNTHETIC = ("none", "unguided", "pgd", "worldmodel")
#: `train qlearn --backend`: numba (parallel sessions on the CPU) or JAX (sessions in lockstep).
QLEARN_BACKENDS = ("numba", "jax")
