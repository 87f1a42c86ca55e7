"""``--check-config``: validate the config, the collector catalog and the web config, without a database.

For CI pipelines and pre-deploy hooks: everything the exporter reads before it connects is read here
the same way (the same loaders), so a file that passes starts; each problem is printed as
``file:line: key: message``.
"""

from __future__ import annotations

import sys
from typing import TextIO

from exporter.config import Config
from exporter.errors import ExporterError
from exporter.registry import load_definitions
from exporter.webconfig import load_web_config


def check_config(config: Config, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Validate what ``config`` names; print what was checked or every problem; return the exit code."""
    out, err = out or sys.stdout, err or sys.stderr
    problems: list[str] = []
    collectors = 0
    try:
        catalog, _, _ = load_definitions(config)
        collectors = len(catalog.collectors)
    except ExporterError as error:
        problems.append(str(error))
    web = "no web config"
    if config.web_config_file is not None:
        try:
            web_config = load_web_config(config.web_config_file)
            web_config.ssl_context()  # reads the certificate and key files
            web = f"web config {config.web_config_file}"
        except (ExporterError, OSError) as error:
            problems.append(f"{config.web_config_file}: {error}")
    for problem in problems:
        print(f"prefect-db-exporter: {problem}", file=err)
    if problems:
        return 1
    print(
        f"configuration ok: {config.source}, {len(config.targets)} targets, {collectors} collectors, {web}",
        file=out,
    )
    return 0
