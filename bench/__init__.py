"""Benchmarks of the bridge against the machine's ceiling (see docs/performance.md)."""
