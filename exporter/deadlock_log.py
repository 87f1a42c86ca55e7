"""Follow the PostgreSQL server log and attribute each ``deadlock detected`` to Prefect operations.

``pg_stat_database.deadlocks`` says how many deadlocks happened, not between whom. The server log
does: the DETAIL of a deadlock error lists every process involved with the statement it ran. The
three log formats are understood: ``stderr`` (any ``log_line_prefix``), ``csvlog`` and ``jsonlog``.
The path may be a glob (``/var/log/postgresql/postgresql-*.log``): the newest match is followed,
across rotation and truncation. Reading starts at the end of the file found at start-up, so
deadlocks that happened before the exporter started are not counted.
"""

from __future__ import annotations

import asyncio
import csv
import glob
import io
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from exporter.operations import Classifier
from exporter.status import ServerLogStatus

log = logging.getLogger(__name__)

DEADLOCK_SQLSTATE = "40P01"
_PROCESS_STATEMENT = re.compile(r"^\s*Process (\d+): (.*)$")
_CSV_FIELDS = {"database": 2, "state": 12, "message": 13, "detail": 14}
READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class Deadlock:
    """One deadlock from the log: the statements of the processes involved, by pid."""

    database: str | None
    statements: dict[int, str]


def statements_from_detail(detail: str) -> dict[int, str]:
    """Return {pid: statement} from a deadlock DETAIL text (statements may span lines)."""
    statements: dict[int, str] = {}
    current: int | None = None
    for line in detail.splitlines():
        match = _PROCESS_STATEMENT.match(line)
        if match:
            current = int(match.group(1))
            statements[current] = match.group(2)
        elif current is not None and not line.lstrip().startswith("Process "):
            statements[current] += "\n" + line.strip()
    return statements


def detect_format(path: str) -> str:
    """Guess the log format from the file name."""
    if path.endswith(".csv"):
        return "csvlog"
    if path.endswith(".json"):
        return "jsonlog"
    return "stderr"


class _StderrParser:
    """Deadlocks in stderr-format logs: an ERROR line, then a DETAIL line with tab-indented continuations."""

    def __init__(self) -> None:
        self._pending = ""
        self._awaiting_detail = False
        self._detail: list[str] | None = None

    def feed(self, text: str) -> Iterator[Deadlock]:
        lines = (self._pending + text).split("\n")
        self._pending = lines.pop()
        for line in lines:
            yield from self._line(line)

    def _line(self, line: str) -> Iterator[Deadlock]:
        if self._detail is not None:
            if line.startswith("\t"):
                self._detail.append(line[1:])
                return
            yield Deadlock(None, statements_from_detail("\n".join(self._detail)))
            self._detail = None
        if "ERROR:  deadlock detected" in line:
            self._awaiting_detail = True
        elif self._awaiting_detail and "DETAIL:  " in line:
            self._detail = [line.split("DETAIL:  ", 1)[1]]
            self._awaiting_detail = False


class _CsvParser:
    """Deadlocks in csvlog files: one CSV record per event, quoted fields may span lines."""

    def __init__(self) -> None:
        self._pending = ""

    def feed(self, text: str) -> Iterator[Deadlock]:
        data = self._pending + text
        end = _complete_records_end(data)
        self._pending = data[end:]
        for record in csv.reader(io.StringIO(data[:end])):
            if len(record) > _CSV_FIELDS["detail"] and record[_CSV_FIELDS["state"]] == DEADLOCK_SQLSTATE:
                yield Deadlock(
                    record[_CSV_FIELDS["database"]], statements_from_detail(record[_CSV_FIELDS["detail"]])
                )


def _complete_records_end(data: str) -> int:
    """Return the offset just after the last newline that ends a CSV record (outside quotes)."""
    quoted, end = False, 0
    for index, char in enumerate(data):
        if char == '"':
            quoted = not quoted
        elif char == "\n" and not quoted:
            end = index + 1
    return end


class _JsonParser:
    """Deadlocks in jsonlog files: one JSON object per line."""

    def __init__(self) -> None:
        self._pending = ""

    def feed(self, text: str) -> Iterator[Deadlock]:
        lines = (self._pending + text).split("\n")
        self._pending = lines.pop()
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("state_code") == DEADLOCK_SQLSTATE:
                yield Deadlock(event.get("dbname"), statements_from_detail(str(event.get("detail", ""))))


class _Parser(Protocol):
    def feed(self, text: str) -> Iterator[Deadlock]: ...


# One parser per format of config.SERVER_LOG_FORMATS (a unit test holds them together).
_PARSERS: dict[str, Callable[[], _Parser]] = {
    "stderr": _StderrParser,
    "csvlog": _CsvParser,
    "jsonlog": _JsonParser,
}


class DeadlockLog:
    """Follows one server log and counts deadlocks by the operations of the processes involved."""

    def __init__(
        self, pattern: str, classifier: Classifier, database: str, log_format: str | None = None
    ) -> None:
        self.pattern = pattern
        self.classifier = classifier
        self.database = database
        self.format = log_format or detect_format(pattern)
        # Every operation starts at 0, so that the first deadlock is an increase rate() can see.
        self.by_operation: Counter[str] = Counter(dict.fromkeys(classifier.operations, 0))
        self.deadlocks = 0
        self.following: str | None = None
        self.last_error: str | None = None
        self._parser = _PARSERS[self.format]()
        self._inode: int | None = None
        self._offset = 0
        self._task: asyncio.Task[None] | None = None

    def adopt_counters(self, old: DeadlockLog) -> None:
        """Carry the counters of the follower this one replaces (on reload) over to this one."""
        self.by_operation.update(old.by_operation)
        self.deadlocks += old.deadlocks

    def status(self) -> ServerLogStatus:
        """Return what the follower reads and has counted."""
        return ServerLogStatus(
            pattern=self.pattern,
            format=self.format,
            following=self.following,
            last_error=self.last_error,
            deadlocks=self.deadlocks,
            by_operation=dict(self.by_operation),
        )

    def _newest(self) -> str | None:
        matches = glob.glob(self.pattern)
        return max(matches, key=os.path.getmtime) if matches else None

    def poll(self, *, first: bool = False) -> None:
        """Read what the log gained since the last poll (at the first poll, skip to its end)."""
        path = self._newest()
        if path is None:
            self.last_error = f"no file matches {self.pattern}"
            return
        try:
            stat = os.stat(path)
            if path != self.following or stat.st_ino != self._inode or stat.st_size < self._offset:
                # A new file (rotation) or a truncated one: read it from the start, unless starting up.
                self.following, self._inode = path, stat.st_ino
                self._offset = stat.st_size if first else 0
                self._parser = _PARSERS[self.format]()
            with open(path, "rb") as handle:
                handle.seek(self._offset)
                data = handle.read(READ_CHUNK)
        except OSError as error:
            self.last_error = f"{path}: {error.strerror}"
            return
        self._offset += len(data)
        self.last_error = None
        for deadlock in self._parser.feed(data.decode("utf-8", errors="replace")):
            self._count(deadlock)

    def _count(self, deadlock: Deadlock) -> None:
        if deadlock.database is not None and deadlock.database != self.database:
            return
        self.deadlocks += 1
        for operation in sorted({self.classifier.classify(s) for s in deadlock.statements.values()}):
            self.by_operation[operation] += 1

    def start(self, interval: float = 1.0) -> None:
        """Follow the log in the background."""
        self.poll(first=True)
        self._task = asyncio.create_task(self._loop(interval), name=f"deadlock-log-{Path(self.pattern).name}")

    async def _loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.poll()

    async def stop(self) -> None:
        """Stop following."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
