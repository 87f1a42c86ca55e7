"""Measure what rendering the exposition costs: prometheus_client against the exporter's own text.

``python -m bench.render_probe [--db bench_1_0]`` runs every collector once through the real exporter,
then times ``prometheus_client.generate_latest`` over the catalog's metric families (the reference,
``devtools.reference_exposition``, fed with the samples read back from the exporter's text) against
the exporter's way: writing each result's sample lines
(``exporter.textformat.SampleWriter``, once per result as it arrives) and joining them at scrape time
(``exporter.exposition.data_segments``). It checks that both produce the same bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable

from bench.cluster import ensure_cluster, progress
from bench.run import write_config
from devtools.pgcluster import free_port
from devtools.reference_exposition import catalog_series, reference_text
from exporter import segments
from exporter.config import load_config
from exporter.exposition import data_segments
from exporter.registry import Exporter
from exporter.textformat import SampleWriter


def timed(render: Callable[[], str], rounds: int) -> tuple[float, str]:
    """Return the median milliseconds of ``render`` over ``rounds`` calls, and its last output."""
    times, text = [], ""
    for _ in range(rounds):
        started = time.perf_counter()
        text = render()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), text


async def probe(dbname: str, rounds: int) -> None:
    """Time the renderers on the results of one full refresh."""
    cluster = ensure_cluster()
    config = load_config(write_config(cluster, dbname, port=free_port(), sampler=False))
    exporter = Exporter.from_config(config)
    try:
        text = (await exporter.scrape()).body().decode()
        catalog, status = exporter.catalog, exporter.status()
        names = [t.name for t in status.targets]
        series = catalog_series(catalog, text)
        reference_ms, reference = timed(lambda: reference_text(catalog, series, names), rounds)

        metrics = [metric for spec in catalog.collectors for metric in spec.metrics]
        writers = {(t, m.name): SampleWriter(m, t) for t in names for m in metrics}

        def write_lines() -> str:
            return "".join(
                writers[(target, metric.name)].write(series.get((target, metric.name), {}).items())
                for target in names
                for metric in metrics
            )

        write_ms, _ = timed(write_lines, rounds)
        join_ms, joined = timed(lambda: segments.join(data_segments(catalog, status)).decode(), rounds)
        samples = sum(1 for line in reference.splitlines() if not line.startswith("#"))
        print(f"{samples} samples, {len(reference)} bytes; identical output: {reference == joined}")
        print(f"families + generate_latest:                  median {reference_ms:6.2f} ms")
        print(f"sample lines, as each result arrives:        median {write_ms:6.2f} ms")
        print(f"data_segments, joined (per scrape):         median {join_ms:6.2f} ms")
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
