"""The `agentlab` command line (Typer). Commands are thin: they parse, call the library, write files."""
