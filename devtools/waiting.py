"""Waiting for a condition of a live stack (Prefect server, workers, Prometheus): one loop for the
benchmarks and the tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def until(
    what: str,
    check: Callable[[], Awaitable[T | None]],
    timeout: float,
    interval: float = 1.0,
    error: type[Exception] = TimeoutError,
) -> T:
    """Await ``check()`` until it returns something truthy and return it; raise ``error`` after ``timeout``.

    Benchmarks let the TimeoutError say which step of a run failed; tests pass AssertionError.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise error(f"{what}: not within {timeout:g}s")
        await asyncio.sleep(interval)
