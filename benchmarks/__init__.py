"""Benchmarks: ``python -m benchmarks.export`` (see the README's Performance section)."""
