"""Benchmarks: each module prints a table and is run from the repository root (python -m bench.NAME)."""
