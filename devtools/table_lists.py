"""Write exporter/labels.py's list of Prefect tables into the collector files that spell it out in SQL.

``python -m devtools.table_lists`` (part of ``make docs``) rewrites every ``VALUES`` list introduced by
the marker comment below; ``--check`` only reports the files that differ. The SQL files keep the list
literally so that they still run as they are in psql.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from exporter.config import DEFAULT_QUERY_DIR
from exporter.labels import prefect_tables_sql

MARKER = "-- the Prefect tables of exporter/labels.py (make docs writes this list)"
_BLOCK = re.compile(
    r"(?P<head>VALUES " + re.escape(MARKER) + r"\n)(?P<rows>.*?)(?P<tail>\n(?P<indent> *)\) AS t \(name\))",
    re.S,
)


def synced(text: str) -> str:
    """Return ``text`` with every marked table list replaced by the current one."""

    def replace(match: re.Match[str]) -> str:
        rows = prefect_tables_sql(match.group("indent") + " " * 8)
        return match.group("head") + rows + match.group("tail")

    return _BLOCK.sub(replace, text)


def files_with_lists(query_dir: Path = DEFAULT_QUERY_DIR) -> list[Path]:
    """Return the collector files that carry a marked table list."""
    return [path for path in sorted(query_dir.glob("*.sql")) if MARKER in path.read_text(encoding="utf-8")]


def main() -> int:
    """Rewrite the lists (or, with ``--check``, fail when one is out of date)."""
    check = "--check" in sys.argv[1:]
    stale = []
    for path in files_with_lists():
        text = path.read_text(encoding="utf-8")
        if synced(text) != text:
            stale.append(path)
            if not check:
                path.write_text(synced(text), encoding="utf-8")
                print(f"wrote {path}")
    if check and stale:
        print("out of date (run make docs): " + ", ".join(str(p) for p in stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
