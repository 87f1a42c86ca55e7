"""Structured logging: one line per event, logfmt or JSON, never a DSN password."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
from typing import Any

from exporter.redaction import redact

_NEEDS_QUOTES = re.compile(r'[\s"=]')


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    fields.update(getattr(record, "fields", {}))
    if record.exc_info and record.exc_info[1] is not None:
        # str(), not repr(): repr escapes quotes, which would hide a quoted password from redact.
        error = record.exc_info[1]
        fields["exception"] = f"{type(error).__name__}: {error}"
    return {key: redact(str(value)) for key, value in fields.items()}


class LogfmtFormatter(logging.Formatter):
    """``key=value`` pairs, quoted where needed."""

    def format(self, record: logging.LogRecord) -> str:
        parts = []
        for key, value in _fields(record).items():
            shown = json.dumps(value) if _NEEDS_QUOTES.search(value) or not value else value
            parts.append(f"{key}={shown}")
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record))


def setup_logging(level: str, fmt: str) -> None:
    """Send the exporter's logs to stderr in ``fmt`` at ``level``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log would print a line per scrape.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
