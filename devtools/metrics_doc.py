"""Generate docs/metrics.md from the collector catalog: ``python -m devtools.metrics_doc``."""

from __future__ import annotations

import sys
from pathlib import Path

from devtools import table_lists
from exporter.catalog import Catalog, load_catalog
from exporter.config import DEFAULT_QUERY_DIR
from exporter.selfmetrics import group

DOC_PATH = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"


def _labels(labels: tuple[str, ...] | list[str]) -> str:
    return ", ".join(f"`{label}`" for label in labels) or "—"


def _gates(catalog: Catalog, name: str) -> str:
    requires = catalog.get(name).requires
    parts = []
    if requires.server_version_min:
        parts.append(f"server_version_num ≥ {requires.server_version_min}")
    if requires.server_version_max:
        parts.append(f"server_version_num ≤ {requires.server_version_max}")
    if requires.tables:
        parts.append("tables " + ", ".join(f"`{t}`" for t in requires.tables))
    for table, columns in requires.columns.items():
        parts.append("columns " + ", ".join(f"`{table}.{c}`" for c in columns))
    if requires.alembic_revisions:
        parts.append("alembic revision in " + ", ".join(requires.alembic_revisions))
    return "; ".join(parts) or "none"


def render(catalog: Catalog) -> str:
    """Return the Markdown reference of every metric."""
    lines = [
        "# Metrics",
        "",
        "Generated from `queries/*.sql` and the exporter's built-in metrics by",
        "`python -m devtools.metrics_doc`; a test fails when this file and the catalog drift apart.",
        "Every metric carries a `target` label (the target's name in the config).",
        "",
        "Series grow with work pools, queues and states, never with runs, deployments or workers: by",
        "default there is **no series per worker** (worker names are new for every worker process, every",
        "Kubernetes pod). Per-worker series come from the opt-in collector `worker_heartbeats`, turned on",
        "with `collectors.enable: [worker_heartbeats]`; it reads recently seen workers only and caps them",
        "per pool. Opt-in collectors are marked *opt-in* below. When a metric has more series than",
        "`max_series_per_metric`, the rest are folded into one series labelled `other`; the series kept",
        "stay the same from scrape to scrape while they exist.",
        "",
        "## Exporter health",
        "",
        "| metric | type | labels | meaning |",
        "|---|---|---|---|",
    ]
    lines += [f"| `{m.name}` | {m.type} | {_labels(m.labels)} | {m.help} |" for m in group("health")]
    lines += [
        "",
        "## Sampler and server log",
        "",
        "Counted between scrapes by the sampler (`pg_stat_activity` about once a second) and, when",
        "`server_log` is configured, by reading the PostgreSQL server log. See docs/sampler.md.",
        "",
        "| metric | type | labels | meaning |",
        "|---|---|---|---|",
    ]
    lines += [f"| `{m.name}` | {m.type} | {_labels(m.labels)} | {m.help} |" for m in group("sampler")]
    for spec in catalog.collectors:
        lines += [
            "",
            f"## Collector `{spec.name}`",
            "",
            f"{spec.description}",
            "",
            f"Source: `queries/{spec.path.name}` · TTL {spec.ttl:g} s · timeout {spec.timeout:g} s · "
            f"gates: {_gates(catalog, spec.name)}"
            + (" · incremental (counts new rows only)" if spec.incremental else "")
            + ("" if spec.enabled else " · *opt-in* (`collectors.enable`)"),
            "",
            "| metric | type | labels | meaning |",
            "|---|---|---|---|",
        ]
        for metric in spec.metrics:
            labels = _labels(["target", *metric.labels])
            lines.append(f"| `{metric.name}` | {metric.type} | {labels} | {metric.help} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    """Write docs/metrics.md (or check it with ``--check``)."""
    text = render(load_catalog([DEFAULT_QUERY_DIR]))
    if "--check" in sys.argv[1:]:
        if DOC_PATH.read_text(encoding="utf-8") != text:
            print("docs/metrics.md is out of date: run python -m devtools.metrics_doc", file=sys.stderr)
            return 1
        return 0
    DOC_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {DOC_PATH}")
    return table_lists.main()


if __name__ == "__main__":
    sys.exit(main())
