"""Benchmarks of inq_hw: run ``python -m benches`` (they print figures; they are not tests)."""
