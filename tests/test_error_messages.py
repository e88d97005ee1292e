"""What every error a user can see is made of: a hint, and no nested parentheses.

These read the source: every place that constructs an EngineKitError subclass (raised,
returned or passed on) is found with `ast`, so an error added later without a hint fails here
before any user meets it. A class may carry a `default_hint` when its name alone says what to
do (an internal error, a loop device that cannot be attached); a class without one needs a
hint at every construction site.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from enginekit.errors import EngineKitError, InternalError, UserInputError
from enginekit.text import parenthesis_depth

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = (
    "enginekit",
    "media",
    "disk_images",
    "installer",
    "commands",
    "reference_builds",
    "sync_server",
    "sync_agent",
)


@dataclass(frozen=True)
class ErrorClass:
    bases: tuple[str, ...]
    default_hint: bool  # assigns `default_hint` in its body
    init_gives_hint: bool | None  # None: no own __init__; else whether super() gets a hint


def _sources() -> Iterator[tuple[Path, ast.Module]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path, ast.parse(path.read_text(encoding="utf-8"), str(path))


def _name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _gives_hint(call: ast.Call) -> bool:
    for keyword in call.keywords:
        if keyword.arg is None:  # **kwargs: cannot tell, count it as given
            return True
        if keyword.arg == "hint":
            return not (isinstance(keyword.value, ast.Constant) and keyword.value.value is None)
    return len(call.args) >= 2


def _error_classes() -> dict[str, ErrorClass]:
    found: dict[str, ErrorClass] = {}
    for _, tree in _sources():
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            default_hint = any(
                isinstance(stmt, ast.Assign | ast.AnnAssign)
                and any(
                    _name(t) == "default_hint"
                    for t in (stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target])
                )
                for stmt in node.body
            )
            init_gives_hint: bool | None = None
            for stmt in node.body:
                if isinstance(stmt, ast.FunctionDef) and stmt.name == "__init__":
                    init_gives_hint = any(
                        isinstance(call, ast.Call)
                        and isinstance(call.func, ast.Attribute)
                        and call.func.attr == "__init__"
                        and _gives_hint(call)
                        for call in ast.walk(stmt)
                    )
            # `class ArgumentParser(argparse.ArgumentParser)` names another class: drop it.
            bases = tuple(b for b in map(_name, node.bases) if b and b != node.name)
            found[node.name] = ErrorClass(bases, default_hint, init_gives_hint)

    def derives(name: str) -> bool:
        if name == "EngineKitError":
            return True
        return any(derives(b) for b in found.get(name, ErrorClass((), False, None)).bases)

    return {name: cls for name, cls in found.items() if derives(name)}


def _hinted_by_class(name: str, classes: dict[str, ErrorClass]) -> bool:
    """Whether constructing `name` gives a hint without the caller's help."""
    cls = classes.get(name)
    if cls is None or name == "EngineKitError":
        return False
    if cls.default_hint:
        return True
    if cls.init_gives_hint is not None:
        return cls.init_gives_hint
    return any(_hinted_by_class(base, classes) for base in cls.bases)


def _constructions() -> Iterator[tuple[str, str, ast.Call]]:
    classes = _error_classes()
    for path, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _name(node.func) in classes:
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                yield where, str(_name(node.func)), node


def test_every_error_raised_has_a_hint() -> None:
    classes = _error_classes()
    missing = [
        f"{where}: {name}(...) has no hint"
        for where, name, call in _constructions()
        if not _hinted_by_class(name, classes) and not _gives_hint(call)
    ]
    assert missing == []


def _literal_text(node: ast.expr) -> str | None:
    """The text of a string literal, an f-string's fixed parts with each value as `X`, or
    of the parts of a `+` concatenation; None for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            str(part.value) if isinstance(part, ast.Constant) else "X" for part in node.values
        )
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _literal_text(node.left), _literal_text(node.right)
        if left is not None or right is not None:
            return (left or "X") + (right or "X")
    return None


def test_no_message_or_hint_nests_parentheses() -> None:
    nested = []
    for where, name, call in _constructions():
        texts = [*call.args[:2], *(k.value for k in call.keywords if k.arg in ("hint", "message"))]
        for node in texts:
            text = _literal_text(node)
            if text is not None and parenthesis_depth(text) > 1:
                nested.append(f"{where}: {name}: {text}")
    assert nested == []


def test_an_error_without_a_hint_at_its_site_takes_its_class_hint() -> None:
    assert InternalError("an invariant broke").hint == InternalError.default_hint
    assert UserInputError("bad", hint="do this").hint == "do this"
    assert EngineKitError.default_hint is None


@pytest.mark.parametrize(
    ("text", "depth"), [("a (b) c", 1), ("a (b (c)) d", 2), ("(a) (b)", 1), ("none", 0)]
)
def test_parenthesis_depth(text: str, depth: int) -> None:
    assert parenthesis_depth(text) == depth


def test_a_state_file_that_is_not_json_reads_without_nested_parentheses() -> None:
    from disk_images.errors import InvalidStateFile
    from disk_images.state import EngineState

    with pytest.raises(InvalidStateFile) as caught:
        EngineState.from_json(b"not json", "storage:/engine/state.json")
    assert "not valid JSON" in caught.value.message
    assert parenthesis_depth(caught.value.message) <= 1, caught.value.message


def test_a_reason_shown_inside_a_message_is_not_put_in_parentheses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A probe reason carries its own parentheses: `inspect` shows it after a colon."""
    from commands import engine_disk
    from disk_images.image import MIB, TableType, create_image, partition_image
    from disk_images.layout import engine_partitions
    from enginekit.versions import DiskLayout

    disk = tmp_path / "cut.img"
    create_image(disk, 600 * MIB)
    partition_image(disk, TableType.GPT, engine_partitions(DiskLayout.GPT_AB, 600 * MIB))
    os.truncate(disk, 300 * MIB)
    assert engine_disk.main(["inspect", str(disk)]) == 0
    out = capsys.readouterr().out
    assert "truncated image (" in out
    assert all(parenthesis_depth(line) <= 1 for line in out.splitlines()), out
