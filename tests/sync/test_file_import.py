"""The FileImport watcher takes a dropped ISO only once it has stopped changing: a file still
being copied in is left for the next scan. An ISO may also be streamed in through a named
pipe."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select

from sync_server.database import open_database, sqlite_url
from sync_server.models import Kit, TaskState
from sync_server.state import ServerState
from sync_server.tasks import TaskRunner


def test_a_dropped_iso_is_taken_at_the_scan_after_it_stopped_changing(tmp_path: Path) -> None:
    db = open_database(sqlite_url(tmp_path))
    runner = TaskRunner(db, tmp_path / "kits")
    state = ServerState(tmp_path, db, runner)
    try:
        dropped = state.file_import / "engine.iso"
        state.file_import.mkdir()
        dropped.write_bytes(b"first half")
        assert state.scan_file_import(require_stable=True) == []
        with dropped.open("ab") as more:
            more.write(b" and the rest")
        assert state.scan_file_import(require_stable=True) == []
        (task_id,) = state.scan_file_import(require_stable=True)
        runner.wait_finished(task_id, 60)
        assert not dropped.exists()
        assert (state.file_import / "engine.iso.failed").read_bytes() == b"first half and the rest"
    finally:
        runner.shutdown()
        db.close()


def test_an_iso_streamed_through_a_named_pipe_becomes_a_kit(
    tmp_path: Path, engine_medium: Callable[[str], Path]
) -> None:
    db = open_database(sqlite_url(tmp_path))
    runner = TaskRunner(db, tmp_path / "kits")
    state = ServerState(tmp_path, db, runner)
    try:
        state.file_import.mkdir()
        pipe = state.file_import / "streamed.iso"
        os.mkfifo(pipe)
        assert state.file_import_isos() == ["streamed.iso"]
        task_id = state.import_dropped("streamed.iso")
        assert task_id is not None
        (claimed,) = (state.file_import / ".importing").glob("*-streamed.iso")
        with claimed.open("wb") as out, engine_medium("5.0.0").open("rb") as iso:
            shutil.copyfileobj(iso, out)
        runner.wait_finished(task_id, 120)
        assert runner.state_of(task_id) is TaskState.SUCCEEDED
        with db.sessions() as session:
            assert list(session.scalars(select(Kit.version))) == ["5.0.0"]
    finally:
        runner.shutdown()
        db.close()
