"""Tiny kernels with known optimal returns, for testing learners (`catch`, `point`)."""
