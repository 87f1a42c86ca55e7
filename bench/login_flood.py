"""Scrapes and the sampler under a flood of wrong basic-auth passwords (issue: failed logins stall the loop).

``python -m bench.login_flood`` starts the real ``prefect-db-exporter`` process with a web config
(one user, a bcrypt hash of cost 12) against a database with Prefect's schema in the persistent
benchmark cluster, then, from this process with aiohttp:

1. idle: Prometheus-style scrapes (the right credentials, ``X-Prometheus-Scrape-Timeout-Seconds``)
   every ``--interval`` seconds for ``--seconds``;
2. flood: the same scrapes while ``--clients`` clients send wrong passwords back to back.

It prints the scrape p99 of both phases, the sampler's ticks, overruns and errors in each (read from
``/metrics``), and whether the targets hold: flood p99 at most twice the idle p99, and no sampler tick missed
(as many ticks as seconds, less one for the phase edges; no overrun, no error).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
from prometheus_client.parser import text_string_to_metric_families

from bench.cluster import EXPORTER_PASSWORD, PREFECT_VERSION, bench_dir, ensure_cluster, progress
from bench.run import EXPORTER_CLI, PASSWORD_ENV, percentile, stop_process, summary, write_config
from devtools.paths import ROLE_SCRIPT
from devtools.pgcluster import PgCluster, free_port
from devtools.prefect_env import ensure_template

DATABASE = "login_flood"
USER, PASSWORD = "prometheus", "bench-scrape-password"
BCRYPT_COST = 12
TARGET_P99_RATIO = 2.0


def auth(user: str, password: str) -> dict[str, str]:
    """An Authorization header for HTTP basic auth."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def ensure_flood_database(cluster: PgCluster) -> None:
    """Create the benchmark's database (Prefect's schema, no rows) with the exporter role, once."""
    if cluster.database_exists(DATABASE):
        return
    cluster.create_database(DATABASE, template=ensure_template(cluster, PREFECT_VERSION))
    cluster.psql("", DATABASE, file=ROLE_SCRIPT, variables={"exporter_password": EXPORTER_PASSWORD})


@contextmanager
def exporter_process(cluster: PgCluster, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``prefect-db-exporter`` with the sampler on and basic auth; yield the process."""
    config = write_config(cluster, DATABASE, port=port, sampler=True)
    web = bench_dir() / "config" / "login-flood-web.yml"
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=BCRYPT_COST)).decode()
    web.write_text(f"basic_auth_users:\n  {USER}: '{hashed}'\n", encoding="utf-8")
    log = (bench_dir() / "login-flood-exporter.log").open("w")
    env = {**os.environ, PASSWORD_ENV: EXPORTER_PASSWORD}
    command = [str(EXPORTER_CLI), "--config", str(config), "--web.config.file", str(web)]
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        stop_process(process)
        log.close()


def metric_value(body: str, name: str) -> float | None:
    """The sum of every sample of ``name`` (one target here), or None when absent."""
    found = [
        sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if sample.name == name
    ]
    return sum(found) if found else None


def sampler_counters(body: str) -> dict[str, float]:
    """The sampler's ticks, overruns and errors from a /metrics body."""
    return {
        "ticks": metric_value(body, "prefect_db_sampler_samples_total") or 0.0,
        "overruns": metric_value(body, "prefect_db_sampler_overruns_total") or 0.0,
        "errors": metric_value(body, "prefect_db_sampler_errors_total") or 0.0,
    }


async def scrape(session: aiohttp.ClientSession, url: str) -> tuple[float, str]:
    """One Prometheus-style scrape with the right credentials; return (milliseconds, body)."""
    headers = {**auth(USER, PASSWORD), "X-Prometheus-Scrape-Timeout-Seconds": "10"}
    started = time.perf_counter()
    async with session.get(url, headers=headers) as response:
        body = await response.text()
        if response.status != 200:
            raise RuntimeError(f"scrape answered {response.status}: {body[:200]}")
    return (time.perf_counter() - started) * 1000, body


async def scrape_phase(
    session: aiohttp.ClientSession, url: str, seconds: float, interval: float
) -> dict[str, Any]:
    """Scrape every ``interval`` for ``seconds``; return the latencies and the sampler's progress."""
    _, body = await scrape(session, url)
    before, started = sampler_counters(body), time.monotonic()
    times: list[float] = []
    while time.monotonic() - started < seconds:
        tick = time.monotonic()
        elapsed, body = await scrape(session, url)
        times.append(elapsed)
        await asyncio.sleep(max(0.0, interval - (time.monotonic() - tick)))
    after, duration = sampler_counters(body), time.monotonic() - started
    sampler = {key: after[key] - before[key] for key in after}
    return {
        "scrapes": summary(times),
        "p99_ms": percentile(times, 99),
        "seconds": duration,
        "sampler": sampler,
    }


async def flood(url: str, clients: int, stop: asyncio.Event) -> dict[str, Any]:
    """``clients`` clients sending wrong passwords back to back until ``stop``; return what they got."""
    statuses: dict[int, int] = {}
    latencies: list[float] = []

    async def client(number: int, session: aiohttp.ClientSession) -> None:
        headers = auth(USER, f"wrong-password-{number}")
        while not stop.is_set():
            started = time.perf_counter()
            async with session.get(url, headers=headers) as response:
                await response.read()
                statuses[response.status] = statuses.get(response.status, 0) + 1
            latencies.append((time.perf_counter() - started) * 1000)

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=120)
    ) as session:
        await asyncio.gather(*(client(n, session) for n in range(clients)))
    return {"responses": statuses, "answers": summary(latencies) if latencies else {}}


async def measure(base: str, clients: int, seconds: float, interval: float) -> dict[str, Any]:
    """The idle phase, then the flood phase; return both."""
    url = f"{base}/metrics"
    async with aiohttp.ClientSession() as session:
        deadline = time.monotonic() + 60
        while True:  # the exporter is up and its first refresh is done
            try:
                _, body = await scrape(session, url)
                if metric_value(body, "prefect_db_up") == 1.0:
                    break
            except (aiohttp.ClientError, RuntimeError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the exporter did not come up within 60 s")
            await asyncio.sleep(0.5)
        await asyncio.sleep(3)  # let the sampler settle into its interval
        progress(f"idle: scraping every {interval:g} s for {seconds:g} s")
        idle = await scrape_phase(session, url, seconds, interval)
        progress(f"flood: {clients} wrong-password clients while scraping for {seconds:g} s")
        stop = asyncio.Event()
        flooding = asyncio.create_task(flood(url, clients, stop))
        await asyncio.sleep(1)  # the flood is under way before the measured phase starts
        flooded = await scrape_phase(session, url, seconds, interval)
        stop.set()
        flood_result = await flooding
    return {"idle": idle, "flood": {**flooded, "wrong_password_clients": flood_result}}


def verdict(results: dict[str, Any]) -> dict[str, Any]:
    """Whether the targets are met."""
    idle, flooded = results["idle"], results["flood"]
    ratio = flooded["p99_ms"] / idle["p99_ms"] if idle["p99_ms"] else float("inf")

    def no_tick_missed(phase: dict[str, Any]) -> bool:
        sampler = phase["sampler"]
        return bool(
            sampler["ticks"] >= int(phase["seconds"]) - 1
            and sampler["overruns"] == 0
            and sampler["errors"] == 0
        )

    return {
        "p99_ratio": round(ratio, 2),
        "p99_within_2x": ratio <= TARGET_P99_RATIO,
        "sampler_missed_no_tick": no_tick_missed(idle) and no_tick_missed(flooded),
    }


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between scrapes")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    cluster = ensure_cluster()
    ensure_flood_database(cluster)
    port = free_port()
    with exporter_process(cluster, port) as process:
        results = asyncio.run(measure(f"http://127.0.0.1:{port}", args.clients, args.seconds, args.interval))
        if process.poll() is not None:
            raise RuntimeError(f"the exporter exited with {process.returncode}")
    results["targets"] = verdict(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    idle, flooded, targets = results["idle"], results["flood"], results["targets"]
    print(f"scrape p99 idle: {idle['p99_ms']:.1f} ms ({idle['scrapes']['n']} scrapes)")
    print(
        f"scrape p99 under a flood of {args.clients} wrong-password clients: {flooded['p99_ms']:.1f} ms "
        f"({flooded['scrapes']['n']} scrapes; {targets['p99_ratio']}x idle)"
    )
    print(f"wrong-password answers: {flooded['wrong_password_clients']}")
    for name in ("idle", "flood"):
        sampler = results[name]["sampler"]
        print(
            f"sampler during {name} ({results[name]['seconds']:.1f} s): {sampler['ticks']:.0f} ticks, "
            f"{sampler['overruns']:.0f} overruns, {sampler['errors']:.0f} errors"
        )
    print(
        f"target scrape p99 under flood <= {TARGET_P99_RATIO:g}x idle: "
        f"{'met' if targets['p99_within_2x'] else 'not met'}"
    )
    print(f"target sampler misses no tick: {'met' if targets['sampler_missed_no_tick'] else 'not met'}")
    sys.exit(0 if targets["p99_within_2x"] and targets["sampler_missed_no_tick"] else 1)


if __name__ == "__main__":
    main()
