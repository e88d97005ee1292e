"""Background tasks: a small pool that runs queued tasks (kit imports) and records each
one's state, progress and error line in the tasks table, so the console can show and cancel it.

A queued task that is cancelled never starts; a running one stops at its next checkpoint. A
task left queued or running by a server that stopped is marked failed at the next start.
Relay tasks (a kit to a remote server) are rows only here: their remote runs them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from enginekit.errors import EngineKitError
from sync_server.database import Database
from sync_server.kit_import import ImportCancelled, ImportControl, ImportedKit, import_kit
from sync_server.models import Kit, Task, TaskKind, TaskState, utc_now

log = logging.getLogger(__name__)


class TaskRunner:
    def __init__(self, db: Database, kits_dir: Path, workers: int = 1) -> None:
        self._db = db
        self._kits_dir = kits_dir
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sync-task")
        self._cancel: dict[int, threading.Event] = {}
        self._lock = threading.Lock()
        self._ended = threading.Condition()
        self._fail_leftovers()

    def _fail_leftovers(self) -> None:
        with self._db.sessions.begin() as session:
            for task in session.scalars(
                select(Task).where(
                    Task.state.in_([TaskState.QUEUED, TaskState.RUNNING]),
                    # A relay runs on its remote server, which goes on with it.
                    Task.kind != TaskKind.RELAY_KIT.value,
                )
            ):
                task.state = TaskState.FAILED.value
                task.error = "interrupted: the server stopped before the task finished"
                task.finished_at = utc_now()

    def submit_import(
        self, source: Path, display_name: str, cleanup: Callable[[bool], None]
    ) -> int:
        """Queue the import of `source`; `cleanup(succeeded)` runs when the task ends."""
        with self._db.sessions.begin() as session:
            task = Task(kind=TaskKind.IMPORT_KIT.value, source=display_name)
            session.add(task)
            session.flush()
            task_id = task.id
        with self._lock:
            self._cancel[task_id] = threading.Event()
        self._pool.submit(self._run_import, task_id, source, cleanup)
        return task_id

    def submit_scheduled(
        self, kind: TaskKind, source: str, run_at: datetime, work: Callable[[], None]
    ) -> int:
        """A task that stays queued until `run_at` (cancellable meanwhile), then runs `work`
        on its own thread, so a waiting schedule never holds up an import."""
        with self._db.sessions.begin() as session:
            task = Task(kind=kind.value, source=source)
            session.add(task)
            session.flush()
            task_id = task.id
        event = threading.Event()
        with self._lock:
            self._cancel[task_id] = event
        thread = threading.Thread(
            target=self._run_scheduled,
            args=(task_id, run_at, work, event),
            name=f"sync-task-{task_id}",
            daemon=True,
        )
        thread.start()
        return task_id

    def _run_scheduled(
        self, task_id: int, run_at: datetime, work: Callable[[], None], event: threading.Event
    ) -> None:
        try:
            if event.wait(max(0.0, (run_at - utc_now()).total_seconds())):
                return  # cancelled (or the server stops) before its time
            with self._db.sessions.begin() as session:
                task = session.get(Task, task_id)
                if task is None or task.state != TaskState.QUEUED:
                    return
                task.state, task.started_at = TaskState.RUNNING.value, utc_now()
            try:
                work()
            except EngineKitError as exc:
                self._set(task_id, state=TaskState.FAILED.value, error=exc.message)
            except Exception as exc:
                log.exception("task %d: internal error", task_id)
                self._set(task_id, state=TaskState.FAILED.value, error=f"internal error: {exc}")
            else:
                self._set(task_id, state=TaskState.SUCCEEDED.value, progress=1.0)
            self._set(task_id, finished_at=utc_now())
        finally:
            with self._lock:
                self._cancel.pop(task_id, None)
            with self._ended:
                self._ended.notify_all()

    def cancel(self, task_id: int) -> bool:
        """Ask a queued or running task to stop; False when it already finished."""
        with self._db.sessions.begin() as session:
            task = session.get(Task, task_id)
            if task is None or TaskState(task.state).finished:
                return False
            # A relay runs on its remote server: cancelled here at once, the remote learns
            # it at its next report, stops and drops its partial file.
            if task.state == TaskState.QUEUED or task.kind == TaskKind.RELAY_KIT:
                task.state = TaskState.CANCELLED.value
                task.finished_at = utc_now()
        with self._lock:
            event = self._cancel.get(task_id)
        if event is not None:
            event.set()
        with self._ended:
            self._ended.notify_all()
        return True

    def state_of(self, task_id: int) -> TaskState | None:
        with self._db.sessions() as session:
            task = session.get(Task, task_id)
            return TaskState(task.state) if task is not None else None

    def wait_finished(self, task_id: int, timeout: float) -> None:
        """Block until the task has finished, or `timeout` seconds passed."""
        with self._ended:
            self._ended.wait_for(
                lambda: (state := self.state_of(task_id)) is None or state.finished, timeout
            )

    def shutdown(self) -> None:
        with self._lock:
            for event in self._cancel.values():
                event.set()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _set(self, task_id: int, **fields: object) -> None:
        with self._db.sessions.begin() as session:
            task = session.get(Task, task_id)
            assert task is not None
            for name, value in fields.items():
                setattr(task, name, value)

    def _known_versions(self) -> set[str]:
        with self._db.sessions() as session:
            return set(session.scalars(select(Kit.version)))

    def _run_import(self, task_id: int, source: Path, cleanup: Callable[[bool], None]) -> None:
        with self._lock:
            event = self._cancel[task_id]
        succeeded = False
        try:
            with self._db.sessions.begin() as session:
                task = session.get(Task, task_id)
                assert task is not None
                if task.state != TaskState.QUEUED:
                    return  # cancelled while queued
                task.state = TaskState.RUNNING.value
                task.started_at = utc_now()
            control = ImportControl(
                progress=lambda fraction: self._set(task_id, progress=round(fraction, 3)),
                cancelled=event.is_set,
            )
            kit = import_kit(source, self._kits_dir, control, self._known_versions)
            self._record_kit(task_id, kit)
            succeeded = True
            log.info("task %d: imported Engine %s", task_id, kit.version)
        except ImportCancelled:
            self._set(task_id, state=TaskState.CANCELLED.value, finished_at=utc_now())
        except EngineKitError as exc:
            log.info("task %d failed: %s", task_id, exc.message)
            self._set(
                task_id, state=TaskState.FAILED.value, error=exc.message, finished_at=utc_now()
            )
        except Exception as exc:
            log.exception("task %d: internal error", task_id)
            self._set(
                task_id,
                state=TaskState.FAILED.value,
                error=f"internal error: {type(exc).__name__}: {exc}",
                finished_at=utc_now(),
            )
        finally:
            with self._lock:
                self._cancel.pop(task_id, None)
            cleanup(succeeded)
            with self._ended:
                self._ended.notify_all()

    def _record_kit(self, task_id: int, kit: ImportedKit) -> None:
        with self._db.sessions.begin() as session:
            row = Kit(
                version=kit.version,
                upgrade_from={"versions": list(kit.upgrade_from)},
                layout=kit.layout,
                size=kit.size,
                sha256=kit.sha256,
                file_name=kit.path.name,
            )
            session.add(row)
            session.flush()
            task = session.get(Task, task_id)
            assert task is not None
            task.state = TaskState.SUCCEEDED.value
            task.progress = 1.0
            task.kit_id = row.id
            task.finished_at = utc_now()
