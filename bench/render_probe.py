"""Measure what rendering the exposition costs, and what a direct text renderer would cost.

``python -m bench.render_probe [--db bench_1_0]`` runs every collector once through the real exporter,
then times ``prometheus_client.generate_latest`` over the catalog's metric families (what
``exporter.exposition.render`` does today) against a plain string renderer written here, and checks
that both produce byte-identical text. It is evidence for a proposed change of ``exporter/``, which
this benchmark does not edit.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Sequence

from prometheus_client import generate_latest
from prometheus_client.utils import floatToGoString

from bench.cluster import ensure_cluster, progress
from bench.run import write_config
from devtools.pgcluster import free_port
from exporter.catalog import Catalog
from exporter.collection import TargetCollector
from exporter.config import load_config
from exporter.exposition import _Families, data_metrics
from exporter.service import Exporter


def escape(value: str) -> str:
    """Escape a label value as the text format requires."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def direct_text(catalog: Catalog, collectors: Sequence[TargetCollector]) -> str:
    """Render the catalog's metrics straight from the collectors' results, as generate_latest would."""
    fresh = [(c.name, c.fresh_results()) for c in collectors if c.up]
    out: list[str] = []
    for spec in catalog.collectors:
        for metric in spec.metrics:
            doc = metric.help.replace("\\", r"\\").replace("\n", r"\n")
            out.append(f"# HELP {metric.name} {doc}\n# TYPE {metric.name} {metric.type}\n")
            names = ("target", *metric.labels)
            for target, results in fresh:
                result = results.get(spec.name)
                if result is None or not result.ok:
                    continue
                for values, value in result.samples.get(metric.name, {}).items():
                    pairs = sorted(zip(names, (target, *values), strict=True))
                    labels = ",".join(f'{k}="{escape(v)}"' for k, v in pairs)
                    rendered: str = floatToGoString(value)  # type: ignore[no-untyped-call]
                    out.append(f"{metric.name}{{{labels}}} {rendered}\n")
    return "".join(out)


async def probe(dbname: str, rounds: int) -> None:
    """Time both renderers on the results of one full refresh."""
    cluster = ensure_cluster()
    config = load_config(write_config(cluster, dbname, port=free_port(), sampler=False))
    exporter = Exporter.from_config(config)
    try:
        await exporter.scrape()
        current: list[float] = []
        direct: list[float] = []
        text_current = text_direct = ""
        for _ in range(rounds):
            started = time.perf_counter()
            families = list(data_metrics(exporter.catalog, exporter.targets))
            text_current = generate_latest(_Families(families)).decode()
            middle = time.perf_counter()
            text_direct = direct_text(exporter.catalog, exporter.targets)
            current.append((middle - started) * 1000)
            direct.append((time.perf_counter() - middle) * 1000)
        samples = sum(1 for line in text_current.splitlines() if not line.startswith("#"))
        same = text_current == text_direct
        print(f"{samples} samples, {len(text_current)} bytes; identical output: {same}")
        print(f"families + generate_latest: median {statistics.median(current):6.2f} ms")
        print(f"direct text renderer:       median {statistics.median(direct):6.2f} ms")
    finally:
        await exporter.close()


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="bench_1_0")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)
    progress(f"render probe on {args.db}")
    asyncio.run(probe(args.db, args.rounds))


if __name__ == "__main__":
    main()
