"""Learners and rollout helpers. `agentlab.rl.rollout` runs any kernel under a policy in one jitted scan."""
