"""The FileImport watcher takes a dropped ISO only once it has stopped changing: a file still
being copied in is left for the next scan."""

from __future__ import annotations

from pathlib import Path

from sync_server.database import open_database, sqlite_url
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
