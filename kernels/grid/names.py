"""The names of grid-curtailment's participants, policies and outcomes, in code order (a name's index is its code).

JAX-free, so the command line lists and parses them without loading the kernel."""

CLASSES = ("critical", "residential", "commercial", "industrial", "interruptible")  # participant classes, cycling
POLICIES = ("solver", "bounded", "sampler", "prorata")  # scripted participants (`policies.policy_ids`)
OUTCOMES = ("ongoing", "compromise", "authority_decision", "automatic_shedding")  # `GridState.outcome` codes 0..3
