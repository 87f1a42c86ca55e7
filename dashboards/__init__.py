"""Grafana dashboards for the exporter, built as code, and their linter."""
