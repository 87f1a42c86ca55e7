"""The HTTP endpoints, through a real aiohttp server, against a real Prefect database."""

from __future__ import annotations

import asyncio

from helpers import exporter_for, parse, serving, target_for, value

from devtools.pgcluster import TestDatabase
from exporter.catalog import load_catalog
from exporter.config import DEFAULT_QUERY_DIR


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
    names = [c.name for c in load_catalog([DEFAULT_QUERY_DIR]).collectors]
    for name in names:
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
    for collector in (c.name for c in exporter.catalog.collectors):
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
