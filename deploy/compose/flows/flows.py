"""Flows of the compose demo stack, also run by tests/test_e2e.py on a real Prefect 3.9.1."""

from __future__ import annotations

import time

from prefect import flow, get_run_logger


@flow
def hello(name: str = "prefect-db-exporter") -> str:
    """Log a greeting and finish: the steady trickle of COMPLETED runs."""
    get_run_logger().info("hello from %s", name)
    return name


@flow
def sleeper(seconds: float = 600.0) -> None:
    """Stay RUNNING for a while, logging now and then: a run to kill, or to watch heartbeats."""
    logger = get_run_logger()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        logger.info("still sleeping")
        time.sleep(min(10.0, max(0.0, end - time.monotonic())))
