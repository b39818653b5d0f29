"""Studies over the kernels: what `agentlab simulate KERNEL` and the lemon study compute, as functions a notebook
can call (`run_crash(SimulateRequest(...)) -> SimulationResult`, `lemon_study(markets=64)`); the commands in
`agentlab.cli` only parse, check, write the run directory and print.

- `simulation`: the request and result every simulation shares (JAX-free);
- `crash`: market-crash's metrics, summary and figures; `lemons`: market-lemons's, and the lemon study;
- `grid`: grid-curtailment's outcome split, offers and frequency.
"""
