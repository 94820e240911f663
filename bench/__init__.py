"""Benchmarks: run by hand, never part of the test suite (see docs/benchmarks.md)."""
