"""Benchmarks of the exporter against a large Prefect database built on the real schema."""
