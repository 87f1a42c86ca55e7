"""Hold N idle client connections open to a database until stdin closes (a helper of bench.run).

``python -m bench.idle_clients DSN COUNT`` prints ``ready N`` once every connection is open, then
waits; closing its stdin (or SIGTERM) ends it. It runs in its own process so that the connections
cost the measured exporter process nothing.
"""

from __future__ import annotations

import asyncio
import sys

import asyncpg

CONNECT_CONCURRENCY = 20


async def hold(dsn: str, count: int) -> None:
    """Open ``count`` connections, report, and keep them idle until stdin reaches EOF."""
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one() -> asyncpg.Connection:
        """Open one connection, a few at a time."""
        async with gate:
            return await asyncpg.connect(dsn, server_settings={"application_name": "bench-idle-client"})

    connections = await asyncio.gather(*(one() for _ in range(count)))
    print(f"ready {len(connections)}", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    await asyncio.gather(*(c.close() for c in connections), return_exceptions=True)


def main() -> None:
    """Command-line entry point."""
    dsn, count = sys.argv[1], int(sys.argv[2])
    asyncio.run(hold(dsn, count))


if __name__ == "__main__":
    main()
