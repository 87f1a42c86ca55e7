"""The HTTP endpoints, through a real aiohttp server, against a real Prefect database."""

from __future__ import annotations

import asyncio
import gzip

from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from helpers import exporter_for, parse, serving, target_for, value
from prometheus_client.openmetrics import parser as openmetrics_parser

from devtools.pgcluster import TestDatabase
from exporter.catalog import load_catalog
from exporter.config import DEFAULT_QUERY_DIR
from exporter.web import make_app


async def test_metrics_endpoint_serves_every_collector(prefect_db: TestDatabase) -> None:
    exporter = exporter_for(target_for(prefect_db, name="prod"))
    async with serving(exporter) as (http, base):
        async with http.get(f"{base}/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain; version=")
            series = parse(await response.text())
    assert value(series, "prefect_db_up", target="prod") == 1.0
    assert value(series, "prefect_db_prefect_schema_present", target="prod") == 1.0
    assert value(series, "prefect_db_exporter_build_info") == 1.0
    # Every built-in collector, opt-in ones aside (the test templates have pg_stat_statements).
    for name in (c.name for c in load_catalog([DEFAULT_QUERY_DIR]).collectors if c.enabled):
        enabled = value(series, "prefect_db_exporter_collector_enabled", target="prod", collector=name)
        success = value(series, "prefect_db_exporter_collector_success", target="prod", collector=name)
        assert enabled == 1.0, name
        assert success == 1.0, name
    assert value(series, "process_resident_memory_bytes") is not None


async def test_health_ready_and_status_page(prefect_db: TestDatabase) -> None:
    exporter = exporter_for(target_for(prefect_db, name="prod"))
    password = target_for(prefect_db).password_env
    async with serving(exporter) as (http, base):
        async with http.get(f"{base}/healthz") as response:
            assert response.status == 200
        async with http.get(f"{base}/readyz") as response:
            assert response.status == 200, await response.text()
        async with http.get(f"{base}/") as response:
            page = await response.text()
            assert response.status == 200
    assert "prod" in page and "flow_runs" in page and "Prefect schema revision" in page
    assert password is not None
    import os

    assert os.environ[password] not in page


async def test_bad_requests_get_4xx(prefect_db: TestDatabase) -> None:
    exporter = exporter_for(target_for(prefect_db, name="prod"))
    async with serving(exporter) as (http, base):
        async with http.get(f"{base}/nope") as response:
            assert response.status == 404
        async with http.post(f"{base}/metrics", data=b"x") as response:
            assert response.status == 405
        async with http.get(f"{base}/metrics", params={"target": "other"}) as response:
            assert response.status == 400
            assert "unknown target 'other'; known targets: prod" in await response.text()
        async with http.get(f"{base}/metrics", params={"target": "prod"}) as response:
            assert response.status == 200


async def test_concurrent_scrapes_share_one_collection(prefect_db: TestDatabase) -> None:
    exporter = exporter_for(target_for(prefect_db, name="prod"))

    async def get(http: object, url: str) -> str:
        async with http.get(url) as response:  # type: ignore[attr-defined]
            return str(await response.text())

    async with serving(exporter) as (http, base):
        bodies = await asyncio.gather(*(get(http, f"{base}/metrics") for _ in range(20)))
        last = parse(await get(http, f"{base}/metrics"))
    assert all("prefect_db_up" in body for body in bodies)
    # 21 scrapes within every collector's TTL: each query ran exactly once.
    for collector in (c.name for c in exporter.catalog.collectors if c.enabled):
        runs = value(
            last, "prefect_db_exporter_queries_total", target="prod", collector=collector, status="success"
        )
        assert runs == 1.0, collector


async def test_metrics_answer_with_up_0_when_the_database_refuses(prefect_db: TestDatabase) -> None:
    target = target_for(prefect_db, name="prod", password_env=None)
    exporter = exporter_for(target)  # no password at all: authentication fails
    async with serving(exporter) as (http, base):
        async with http.get(f"{base}/metrics") as response:
            assert response.status == 200
            series = parse(await response.text())
        async with http.get(f"{base}/readyz") as response:
            assert response.status == 503
            assert "password authentication failed" in await response.text()
    assert value(series, "prefect_db_up", target="prod") == 0.0
    assert value(series, "prefect_db_connections") is None


# What a Prometheus 2.x server sends (scrape_protocols left at their default).
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


async def test_a_scraper_that_accepts_gzip_gets_the_same_metrics_gzipped(prefect_db: TestDatabase) -> None:
    exporter = exporter_for(target_for(prefect_db, name="prod"))
    async with serving(exporter) as (_, base), ClientSession(auto_decompress=False) as raw:
        async with raw.get(f"{base}/metrics", headers={"Accept-Encoding": "gzip"}) as response:
            assert response.status == 200
            assert response.headers["Content-Encoding"] == "gzip"
            assert "Accept-Encoding" in response.headers["Vary"]
            compressed = await response.read()
        async with raw.get(f"{base}/metrics", headers={"Accept-Encoding": "identity"}) as response:
            assert "Content-Encoding" not in response.headers
            plain = await response.read()
    unpacked = gzip.decompress(compressed)
    # Each result's samples and each family header are deflated apart (once, not per scrape): on a
    # test database, where headers are most of the text, that gives 3.5x rather than 5x.
    assert len(compressed) < len(unpacked) / 3
    catalog_lines = [b"prefect_db_flow_runs", b"prefect_db_work_queue"]
    for text in (unpacked, plain):
        assert all(line in text for line in catalog_lines)
    assert value(parse(unpacked.decode()), "prefect_db_up", target="prod") == 1.0


async def test_prometheus_asking_for_openmetrics_gets_a_valid_openmetrics_document(
    prefect_db: TestDatabase,
) -> None:
    exporter = exporter_for(target_for(prefect_db, name="prod"))
    async with serving(exporter) as (http, base):
        async with http.get(f"{base}/metrics", headers={"Accept": PROMETHEUS_ACCEPT}) as response:
            assert (
                response.headers["Content-Type"]
                == "application/openmetrics-text; version=1.0.0; charset=utf-8"
            )
            document = await response.text()
        async with http.get(f"{base}/metrics", headers={"Accept": "text/plain;version=0.0.4"}) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=")
            text = await response.text()
    assert document.endswith("\n# EOF\n") and document.count("# EOF") == 1
    assert "# EOF" not in text
    # prometheus_client's OpenMetrics parser is strict: it fails on a counter family named *_total,
    # a unit its family name does not end in, a misplaced # EOF or a bad escape.
    families = {f.name: f for f in openmetrics_parser.text_string_to_metric_families(document)}
    queries = families["prefect_db_exporter_queries"]
    assert queries.type == "counter" and {s.name for s in queries.samples} == {
        "prefect_db_exporter_queries_total"
    }
    assert families["prefect_db_exporter_collector_duration_seconds"].unit == "seconds"
    assert (
        families["prefect_db_temp_bytes"].unit == "bytes"
        and families["prefect_db_temp_bytes"].type == "counter"
    )
    assert families["prefect_db_exporter_build_info"].type == "gauge"
    # The same catalog series with the same values as the text format (both scrapes are within the TTL).
    catalog = {m.name for c in exporter.catalog.collectors for m in c.metrics}
    from_text = {k: v for k, v in parse(text).items() if k[0] in catalog}
    from_openmetrics = {
        (s.name, frozenset(s.labels.items())): s.value
        for f in families.values()
        for s in f.samples
        if s.name in catalog
    }
    assert from_text and from_openmetrics == from_text


async def test_the_telemetry_path_moves_the_metrics(prefect_db: TestDatabase) -> None:
    exporter = exporter_for(target_for(prefect_db, name="prod"))
    server = TestServer(make_app(exporter, telemetry_path="/prefect-metrics"), host="127.0.0.1")
    await server.start_server()
    try:
        async with ClientSession() as http:
            base = str(server.make_url("")).rstrip("/")
            async with http.get(f"{base}/prefect-metrics") as response:
                assert response.status == 200 and "prefect_db_up" in await response.text()
            async with http.get(f"{base}/metrics") as response:
                assert response.status == 404
            async with http.get(f"{base}/") as response:
                assert "href='/prefect-metrics'" in await response.text()
    finally:
        await server.close()
