"""Prometheus exporter for the PostgreSQL database behind a self-hosted Prefect Server."""

__version__ = "0.1.0"
