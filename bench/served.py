"""The real exporter in its own process, for timing scrapes from outside: ``python -m bench.served CONFIG``.

It is ``prefect-db-exporter --config CONFIG`` (the same ``cli.serve``: HTTP server, refreshers,
signal handling) with one addition for the benchmark: SIGUSR1 makes every enabled collector of every
target run again at once, as when all their TTLs run out together. The benchmark sends it just
before a scrape, so that the scrape meets the worst moment of the background refresh in a process
that, like postgres_exporter's, does nothing but export.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from exporter import cli
from exporter.logs import setup_logging
from exporter.registry import Exporter


async def run_every_collector(exporter: Exporter) -> None:
    """Run every enabled collector of every target once more, at once (as when their TTLs run out)."""
    await asyncio.gather(
        *(
            target.run_once(c.name)
            for target in exporter.targets.values()
            for c in target.status().collectors
            if c.enabled
        )
    )


async def serve(exporter: Exporter, args: list[str]) -> None:
    """Serve as the CLI does, with SIGUSR1 re-running every collector."""
    refreshes: set[asyncio.Task[None]] = set()

    def on_usr1() -> None:
        task = asyncio.ensure_future(run_every_collector(exporter))
        refreshes.add(task)
        task.add_done_callback(refreshes.discard)

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, on_usr1)
    await cli.serve(exporter, cli.parse_args(args))


def main(argv: list[str]) -> int:
    """Run the exporter of the config file ``argv[0]`` until SIGTERM."""
    args = ["--config", argv[0]]
    config = cli.build_config(cli.parse_args(args))
    setup_logging(config.log_level, config.log_format)
    asyncio.run(serve(Exporter.from_config(config), args))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
