"""A cancelled import stops at its next checkpoint and leaves nothing in the kit store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sync_server.kit_import import ImportCancelled, ImportControl, import_kit


def test_cancelled_import_removes_its_partial_copy(
    engine_medium: Callable[[str], Path], tmp_path: Path
) -> None:
    seen: list[float] = []
    control = ImportControl(progress=seen.append, cancelled=lambda: len(seen) >= 2)
    kits = tmp_path / "kits"
    with pytest.raises(ImportCancelled):
        import_kit(engine_medium("5.0.0"), kits, control, set)
    assert len(seen) == 2
    assert list(kits.iterdir()) == []
