"""`agentlab simulate grid-curtailment`: many shortfall events under a mix of scripted participants.

    agentlab simulate grid-curtailment --policies solver:2,bounded:3 --events 4096 --deadline 6 --param shortfall=0.1

Flags of the shared `simulate` command, read for this kernel: ``--policies`` the participants' families (one
participant per count, classes cycling critical, residential, commercial, industrial, interruptible), ``--events``
(alias of ``--episodes``) the number of independent events, ``--deadline`` (alias of ``--steps``) the deadline in
rounds (0: the kernel's 6), ``--param`` numeric overrides: any scalar `GridParams` or `PolicyParams` field,
``shortfall`` (sets both ends of the shortfall range), ``load_<class>`` (MW) and ``voll_<class>`` ($/MWh), each
checked against its declaration beside the kernel's params. The command has no ``--dlc`` or ``--buyers``.

The run, its metrics, summary and plots are `agentlab.studies.grid.run_grid` (imported when the command runs, so the
command line starts without JAX).
"""

from __future__ import annotations

from agentlab.cli.simulate import SimulateRequest, SimulationResult, Simulator, register
from agentlab.kernels.grid.names import POLICIES


def _run(request: SimulateRequest) -> SimulationResult:
    from agentlab.studies import grid

    return grid.run_grid(request)


def _validate(request: SimulateRequest) -> None:
    from agentlab.studies import grid

    grid.validate_grid(request)


register(
    Simulator(
        kernel="grid-curtailment",
        roles=(("participant", POLICIES),),
        default_policies="solver:2,bounded:3",
        default_buyers="",
        run=_run,
        validate=_validate,
        headline=("compromise_rate", "authority_rate", "automatic_rate"),
        description="Emergency load-shedding negotiation after a generator trip (Andric 2026): outcome shares "
        "(compromise / authority decision / automatic shedding), VoLL cost, frequency, entropy and concession arcs. "
        "--events (--episodes): independent events; --deadline (--steps): rounds; --param: e.g. "
        "shortfall=0.1,price_cap=15000,onset_s=0 (a trip),load_critical=900.",
    )
)
