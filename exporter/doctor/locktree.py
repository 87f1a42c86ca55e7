"""Who blocks whom: the sessions of ``pg_blocking_pids`` as a forest, the root blockers at the top."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Node:
    """One session in the lock tree, with the sessions it blocks."""

    pid: int
    row: Mapping[str, Any]
    children: tuple[Node, ...]

    def size(self) -> int:
        """The sessions in this subtree, this one included."""
        return 1 + sum(c.size() for c in self.children)

    def walk(self, depth: int = 0) -> list[tuple[int, Node]]:
        """Return (depth, node) for this subtree, depth first."""
        found = [(depth, self)]
        for child in self.children:
            found.extend(child.walk(depth + 1))
        return found


def lock_forest(sessions: Sequence[Mapping[str, Any]]) -> tuple[Node, ...]:
    """Return the lock trees of ``sessions`` (rows with ``pid`` and ``blocked_by``), largest first.

    A root blocks others and waits for nobody. A waiter blocked by several sessions (the holder and
    the waiters queued ahead of it) hangs under the one that is deepest in the queue, so that a
    queue behind an ACCESS EXCLUSIVE lock reads as a chain. In a cycle (a deadlock not yet broken)
    nobody is free: the session with the oldest transaction is taken as the root.
    """
    by_pid = {int(r["pid"]): r for r in sessions}
    blockers = {pid: [b for b in (r["blocked_by"] or ()) if b != pid] for pid, r in by_pid.items()}
    involved = {pid for pid, bs in blockers.items() if bs} | {b for bs in blockers.values() for b in bs}
    depth: dict[int, int] = {}

    def depth_of(pid: int, seen: frozenset[int]) -> int:
        if pid in depth:
            return depth[pid]
        ups = [b for b in blockers.get(pid, ()) if b not in seen]
        found = 1 + max((depth_of(b, seen | {pid}) for b in ups), default=-1)
        depth[pid] = found
        return found

    for pid in sorted(involved):
        depth_of(pid, frozenset())
    parent: dict[int, int] = {}
    for pid in involved:
        ups = [b for b in blockers.get(pid, ()) if b in involved]
        if ups:
            parent[pid] = max(ups, key=lambda b: (depth.get(b, 0), -b))
    roots = [pid for pid in involved if pid not in parent]
    if not roots and involved:
        roots = [_oldest(involved, by_pid)]
    # Break cycles: a root's own parent link is dropped.
    for root in roots:
        parent.pop(root, None)
    children: dict[int, list[int]] = {}
    for pid, up in parent.items():
        children.setdefault(up, []).append(pid)

    def build(pid: int, seen: frozenset[int]) -> Node:
        kids = [k for k in sorted(children.get(pid, ())) if k not in seen]
        row = by_pid.get(pid, {"pid": pid, "blocked_by": []})
        return Node(pid, row, tuple(build(k, seen | {pid}) for k in kids))

    trees = [build(root, frozenset()) for root in roots]
    return tuple(sorted((t for t in trees if t.children), key=lambda t: (-t.size(), t.pid)))


def _oldest(pids: set[int], by_pid: Mapping[int, Mapping[str, Any]]) -> int:
    def age(pid: int) -> float:
        value = by_pid.get(pid, {}).get("xact_age_seconds")
        return float(value) if value is not None else 0.0

    return max(sorted(pids), key=age)
