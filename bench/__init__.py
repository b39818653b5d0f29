"""The benchmark suite behind `agentlab bench` (results and commands in bench/README.md)."""
