"""Create a process work pool and deployments of this folder's flows on a Prefect server.

Runs with Prefect's own Python (``PREFECT_API_URL`` set): the compose ``prefect-deploy`` service
runs ``python register.py`` once; ``tests/test_e2e.py`` passes a JSON configuration
(``{"pool": ..., "deployments": [...]}``) to create its own. Idempotent: an existing pool is kept
and deployments are updated. Prints ``{deployment name: id}`` as JSON on its last line.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from prefect import flow, get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists
from prefect.workers.process import ProcessWorker

FLOWS_DIR = Path(__file__).resolve().parent

DEFAULT_CONFIG: dict[str, Any] = {
    "pool": "compose-pool",
    "deployments": [
        # A short run every two minutes keeps transitions, polls and logs flowing.
        {"name": "hello", "entrypoint": "flows.py:hello", "interval": 120},
        # Run on demand (UI or `prefect deployment run sleeper/sleeper`), e.g. to kill its process.
        # Heartbeats every 30 s (Prefect's minimum; the default is 180 s) feed the zombie metrics.
        {
            "name": "sleeper",
            "entrypoint": "flows.py:sleeper",
            "job_variables": {"env": {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"}},
        },
    ],
}


async def ensure_pool(name: str) -> None:
    """Create a process work pool with Prefect's default job template unless it exists."""
    template = ProcessWorker.get_default_base_job_template()
    async with get_client() as client:
        try:
            await client.create_work_pool(
                work_pool=WorkPoolCreate(name=name, type="process", base_job_template=template)
            )
        except ObjectAlreadyExists:
            pass


def register(config: dict[str, Any]) -> dict[str, str]:
    """Create the pool and every deployment of ``config``; return their ids by name."""
    asyncio.run(ensure_pool(config["pool"]))
    ids: dict[str, str] = {}
    for spec in config["deployments"]:
        source = flow.from_source(source=str(FLOWS_DIR), entrypoint=spec["entrypoint"])
        deployment_id = source.deploy(
            name=spec["name"],
            work_pool_name=config["pool"],
            work_queue_name=spec.get("queue"),
            job_variables=spec.get("job_variables") or {},
            interval=spec.get("interval"),
            build=False,
            push=False,
            print_next_steps=False,
        )
        ids[spec["name"]] = str(deployment_id)
    return ids


def main() -> int:
    """Register the default or the given configuration and print the deployment ids."""
    config = json.loads(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_CONFIG
    print(json.dumps(register(config)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
