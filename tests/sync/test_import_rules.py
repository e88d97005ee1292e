"""Who may import whom in the Synchronizer packages: the server imports no installer code (nor
the agent, scaffolding or commands); the agent uses the installer's engine and its one
server-address rule, never its screens or front ends."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(package: str) -> set[str]:
    found: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
    return found


def test_sync_server_imports_no_installer_code() -> None:
    forbidden = ("installer", "sync_agent", "reference_builds", "commands")
    bad = {m for m in _imports("sync_server") if m.split(".")[0] in forbidden}
    assert bad == set()


def test_sync_agent_uses_the_engine_not_the_screens() -> None:
    bad = {
        m
        for m in _imports("sync_agent")
        if m.split(".")[0] in ("reference_builds", "commands")
        or (
            m.startswith("installer")
            and m.split(".")[1:2] not in (["engine"], ["plan"], ["addresses"])
        )
    }
    assert bad == set()
