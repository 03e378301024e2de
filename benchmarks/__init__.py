"""Benchmarks: every performance target, as a ratio against its reference in the same run."""
