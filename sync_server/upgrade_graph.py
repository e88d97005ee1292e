"""Upgrade paths as a graph, decided when a kit is assigned rather than on the computer.

Nodes are Engine versions; each kit adds edges from every version in its `upgrade_from` to its
own version. A computer may be assigned a kit only if its running version has a direct edge to
the kit. Otherwise the first step of the shortest path (or, without one, the oldest newer
version the kit accepts) is the barrier it must pass through first, as Cincinnati's barrier
releases are.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from enginekit.versions import EngineVersion


@dataclass(frozen=True)
class PathDecision:
    allowed: bool
    reason: str = ""
    barrier: str | None = None


def _path(edges: Mapping[str, set[str]], start: str, goal: str) -> list[str] | None:
    queue: deque[list[str]] = deque([[start]])
    seen = {start}
    while queue:
        path = queue.popleft()
        for nxt in sorted(edges.get(path[-1], ())):
            if nxt == goal:
                return [*path, nxt]
            if nxt not in seen:
                seen.add(nxt)
                queue.append([*path, nxt])
    return None


def decide(
    running: str, target: str, target_from: Sequence[str], kits: Iterable[tuple[str, Sequence[str]]]
) -> PathDecision:
    """May a computer running `running` be assigned the kit `target` (accepting
    `target_from`), given every kit the server knows as (version, upgrade_from)?"""
    now, goal = EngineVersion.parse(running), EngineVersion.parse(target)
    if now == goal:
        return PathDecision(False, f"the computer already runs Engine {running}")
    if goal < now:
        return PathDecision(False, f"Engine {target} is a downgrade from {running}")
    if running in target_from:
        return PathDecision(True)
    edges: dict[str, set[str]] = {}
    for version, sources in [*kits, (target, target_from)]:
        for source in sources:
            edges.setdefault(source, set()).add(version)
    path = _path(edges, running, target)
    if path is not None:
        barrier = path[1]
    else:
        newer = sorted(
            (EngineVersion.parse(v) for v in target_from if now < EngineVersion.parse(v)),
        )
        if not newer:
            accepted = ", ".join(target_from) or "none"
            return PathDecision(
                False,
                f"Engine {target} cannot upgrade Engine {running} (it upgrades from {accepted})",
            )
        barrier = str(newer[0])
    return PathDecision(
        False,
        f"Engine {running} cannot upgrade to {target} directly: {barrier} is a barrier; "
        f"assign the {barrier} kit first",
        barrier=barrier,
    )
