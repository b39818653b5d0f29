"""Grid kernels: `grid-curtailment` (emergency negotiation over load shedding after a generator trip, with the
aggregate swing equation, under-frequency relays and an authority). Sources and agentlab's framing:
../shared/reference/grid-curtailment.md; the protocol is in `agentlab.kernels.grid.curtailment`."""
