"""Multi-agent kernels. `coordination` is the small reference kernel of the multi-agent contract."""
