"""Benchmarks: ``python -m bench.<name>``; each prints its figures (not part of the test suite)."""
