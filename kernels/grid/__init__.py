"""Grid kernels: `grid-curtailment` (emergency negotiation over load shedding after a generator trip, with the
aggregate swing equation, under-frequency relays and an authority). Sources and agentlab's framing:
docs/grid.md; the protocol is in `agentlab.kernels.grid.curtailment`."""
