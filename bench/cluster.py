"""The persistent benchmark cluster under ``.cache/bench/``: created once, restarted on demand."""

from __future__ import annotations

import re
import socket
import sys
import time
from pathlib import Path

from devtools.pgcluster import HOST, PgCluster, conf_line, free_port
from devtools.prefect_env import cache_dir

PREFECT_VERSION = "3.1.15"
EXPORTER_ROLE = "prefect_exporter"
EXPORTER_PASSWORD = "bench-exporter-password"

# Sized for a 2-core machine shared with others: a realistic small production server, plus room
# for 500 idle client sessions (the sampler benchmark) and for fast bulk loading.
BENCH_SETTINGS: dict[str, str] = {
    "max_connections": "700",
    "shared_buffers": "1GB",
    "effective_cache_size": "4GB",
    "work_mem": "8MB",
    "maintenance_work_mem": "512MB",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
    "max_worker_processes": "4",
    "max_parallel_workers": "2",
    "max_parallel_workers_per_gather": "1",
    "max_parallel_maintenance_workers": "1",
    "random_page_cost": "1.1",
    "track_io_timing": "on",
    "pg_stat_statements.max": "10000",
    "pg_stat_statements.track": "top",
    "log_min_duration_statement": "-1",
}


def progress(message: str) -> None:
    """Print one progress line to stderr."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def bench_dir() -> Path:
    """Return the benchmark cache directory (``<cache>/bench``)."""
    return cache_dir() / "bench"


def cluster_dir() -> Path:
    """Return the directory of the persistent benchmark cluster."""
    return bench_dir() / "cluster"


def configured_port(cluster_base: Path) -> int | None:
    """Read the last ``port`` line that we wrote into postgresql.conf."""
    conf = cluster_base / "data" / "postgresql.conf"
    if not conf.exists():
        return None
    ports = re.findall(r"^port = '(\d+)'", conf.read_text(), flags=re.MULTILINE)
    return int(ports[-1]) if ports else None


def port_is_free(port: int) -> bool:
    """Tell whether nothing listens on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def ensure_cluster() -> PgCluster:
    """Return the running benchmark cluster, creating or starting it as needed."""
    base = cluster_dir()
    port = configured_port(base)
    if port is None:
        base.parent.mkdir(parents=True, exist_ok=True)
        progress(f"creating the benchmark cluster in {base}")
        cluster = PgCluster.create(base, settings=BENCH_SETTINGS)
    else:
        cluster = PgCluster(base, port)
    if cluster.is_running():
        return cluster
    if not port_is_free(cluster.port):
        cluster.port = free_port()
        with (cluster.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(conf_line("port", str(cluster.port)) + "\n")
    started = time.monotonic()
    cluster.start(timeout=120)
    progress(f"cluster up on {cluster.host}:{cluster.port} in {time.monotonic() - started:.1f} s")
    return cluster
