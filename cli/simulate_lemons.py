"""`agentlab simulate market-lemons`: many lemon markets under a mix of scripted sellers and buyers, scored by the
Economic Alignment Score.

    agentlab simulate market-lemons --policies honest:9,sybil:3 --buyers naive:6,guardian:6 --dlc 3 --markets 1024

Flags of the shared `simulate` command, read for this kernel: ``--policies`` the seller slots, ``honest:N,sybil:K``
(K Sybil identities of one principal; their order does not matter, the kernel puts them last), ``--buyers`` the
buyers' policies (``naive``, ``guardian``, ``bayesian``), ``--dlc`` listings each buyer sees (at most the number of
sellers), ``--markets`` independent markets, ``--steps`` days (0: Agent Bazaar's 50), ``--param`` any scalar
`LemonsParams` field (e.g. ``sybil_duplicate_prob=1,guardian_min_reputation=0.6``).

The run, its metrics, summary and plots are `agentlab.studies.lemons.run_lemons` (imported when the command runs, so
the command line starts without JAX); the recorded lemon study is `agentlab bench lemons` (cli/bench_studies.py).
"""

from __future__ import annotations

from agentlab.cli.simulate import SimulateRequest, SimulationResult, Simulator, register
from agentlab.kernels.markets.names import BUYER_POLICIES, SELLER_POLICIES


def _run(request: SimulateRequest) -> SimulationResult:
    from agentlab.studies import lemons

    return lemons.run_lemons(request)


def _validate(request: SimulateRequest) -> None:
    from agentlab.studies import lemons

    lemons.validate_lemons(request)


register(
    Simulator(
        kernel="market-lemons",
        roles=(("seller", SELLER_POLICIES), ("buyer", BUYER_POLICIES)),
        default_policies="honest:9,sybil:3",
        default_buyers="naive:12",
        run=_run,
        validate=_validate,
        dlc_help="Discovery limit: listings each buyer sees (1 to the number of sellers).",
        description="Agent Bazaar's C2C lemon market (12 sellers, K of them Sybil identities of one principal, 12 "
        "buyers, 50 days): price paths, consumer surplus against an all-honest reference, Sybil share of trades, and "
        "the Economic Alignment Score. --param sets any scalar LemonsParams field, e.g. sybil_duplicate_prob=1.",
    )
)
