"""The installer's modules import downwards only: the answer-file checks do not load the UI
(the validators sit below both), and the API front end does not import the unattended one
(which drives it)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from types import ModuleType

from enginekit.process import run


def modules_after(statement: str) -> set[str]:
    proc = run(
        [sys.executable, "-c", f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"],
        timeout=60,
    )
    return set(proc.stdout.decode().split())


def test_answer_files_do_not_load_the_screens_or_a_prompt_library() -> None:
    loaded = modules_after("import installer.answers")
    assert "installer.screens" not in loaded
    assert "questionary" not in loaded
    assert "prompt_toolkit" not in loaded


def imported_by(module: ModuleType) -> set[str]:
    """Every module `module` imports anywhere in its source, function bodies included."""
    assert module.__file__ is not None
    tree = ast.parse(Path(module.__file__).read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_the_api_front_end_does_not_import_the_unattended_one() -> None:
    import installer.frontends.api
    import installer.frontends.unattended

    assert "installer.frontends.unattended" not in imported_by(installer.frontends.api)
    assert "installer.frontends.api" in imported_by(installer.frontends.unattended)
