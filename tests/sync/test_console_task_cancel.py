"""Cancel a running task from its properties page, in a real headless Chromium against a real
server: an Engine ISO streamed into FileImport through a named pipe keeps its import Running
for as long as the test holds the pipe (no sleeps, no timing luck); Cancel shows Cancelled,
and the task really stops: it closes the pipe (the writer gets EPIPE) and leaves no partial
copy and no kit."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from reference_builds.media import reference_iso

from .conftest import RunningServer, running_server
from .console_browser import console_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHUNK = 64 * 1024


class PipeFeeder:
    """Writes the ISO's first MiB into the pipe, then, once `go` is set, zeros until the
    reader closes its end (`stopped` is set when the write fails with EPIPE). `pipe` is
    where the import claimed it (FileImport/.importing/...)."""

    def __init__(self, pipe: Path, iso: Path) -> None:
        self.pipe, self.iso = pipe, iso
        self.go, self.stopped = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._feed, daemon=True)

    def _feed(self) -> None:
        try:
            with self.pipe.open("wb", buffering=0) as out:  # waits for the import to open it
                with self.iso.open("rb") as src:
                    out.write(src.read(1024 * 1024))
                self.go.wait()
                while True:
                    out.write(bytes(CHUNK))
        except BrokenPipeError:
            self.stopped.set()

    def release(self) -> None:
        """If the reader never came, open the pipe's read end once so the writer ends."""
        if self.thread.is_alive():
            self.go.set()
            fd = os.open(self.pipe, os.O_RDONLY | os.O_NONBLOCK)
            os.close(fd)
        self.thread.join(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("console-cancel")
    # --scan-interval: the console's Import step, not the folder watcher, starts the import.
    with running_server(root / "sync-data", root / "server.log", "--scan-interval", "3600") as s:
        yield s


def test_a_running_import_is_cancelled_from_its_properties_page(
    server: RunningServer, tmp_path: Path
) -> None:
    os.mkfifo(server.data / "FileImport" / "streamed.iso")
    feeder: PipeFeeder | None = None
    try:
        with console_in(tmp_path, server.url, server.admin_token) as console:
            console.follow("#import")
            console.follow("#next")
            assert console.text("#file option") == "streamed.iso"
            console.follow("#finish")
            (claimed,) = (server.data / "FileImport" / ".importing").glob("*-streamed.iso")
            feeder = PipeFeeder(claimed, reference_iso("5.0.0"))
            feeder.thread.start()
            console.wait(lambda _d: console.attr("#task-state", "data-state") == "running", 30)
            assert "must be rescheduled" in console.text("#cancel-warning")
            console.shot("22-task-running")
            with server.admin() as admin:
                (task,) = admin.get("/api/v1/tasks")
                assert task["state"] == "running"
            feeder.go.set()  # the import reads on, never to an end, until it is cancelled
            console.follow("#cancel")
            assert console.text("#summary") == f"Task {task['id']} was cancelled."
            assert console.attr("#task-state", "data-state") == "cancelled"
            console.shot("23-task-running-cancelled")
        feeder.thread.join(30)
        assert feeder.stopped.is_set()  # the import closed the pipe: it stopped reading
        with server.admin() as admin:
            assert admin.get(f"/api/v1/tasks/{task['id']}")["state"] == "cancelled"
            assert admin.get("/api/v1/kits") == []
        assert list((server.data / "kits").glob("*")) == []
    finally:
        if feeder is not None:
            feeder.release()
