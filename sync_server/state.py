"""What one running server holds: its data directory, database, task runner and the
FileImport folder, which a watcher thread scans for dropped ISOs.

Data directory layout: `sync.db` (SQLite, WAL), `admin-token` (0600), `console-secret`
(0600, the key that signs console sessions), `kits/` (imported
ISOs, named `engine-<version>-<sha256 prefix>.iso`), `FileImport/` (drop ISOs here, or a
named pipe an ISO is streamed into; one being
imported is moved to `FileImport/.importing/`, a failed one comes back as `<name>.failed`).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from sync_server.database import Database
from sync_server.kit_import import importable
from sync_server.models import Token
from sync_server.tasks import TaskRunner
from sync_server.tokens import TokenRole, new_token, token_digest

log = logging.getLogger(__name__)

ADMIN_TOKEN_FILE = "admin-token"


def ensure_admin_token(data_dir: Path, db: Database) -> Path:
    """Write DIR/admin-token (mode 0600) at first start; make sure the database knows it."""
    path = data_dir / ADMIN_TOKEN_FILE
    if path.exists():
        token = path.read_text(encoding="ascii").strip()
    else:
        token = new_token()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(token + "\n")
    digest = token_digest(token)
    with db.sessions.begin() as session:
        known = session.scalars(select(Token).where(Token.digest == digest)).first()
        if known is None:
            session.add(Token(name="admin", role=TokenRole.ADMIN.value, digest=digest))
    return path


@dataclass
class ServerState:
    data_dir: Path
    db: Database
    runner: TaskRunner
    checkin_interval: float = 60.0
    _seen: dict[str, tuple[int, int]] = field(default_factory=dict)
    _scan_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def kits_dir(self) -> Path:
        return self.data_dir / "kits"

    @property
    def file_import(self) -> Path:
        return self.data_dir / "FileImport"

    def scan_file_import(self, *, require_stable: bool) -> list[int]:
        """Start an import for each `*.iso` in FileImport. With `require_stable`, only for
        files whose size and mtime are what the previous scan saw (no longer being copied)."""
        started = []
        claimed = self.file_import / ".importing"
        claimed.mkdir(parents=True, exist_ok=True)
        with self._scan_lock:
            for path in sorted(self.file_import.glob("*.iso")):
                if not importable(path):
                    continue
                stat = path.stat()
                now = (stat.st_size, stat.st_mtime_ns)
                if require_stable and self._seen.get(path.name) != now:
                    self._seen[path.name] = now
                    continue
                self._seen.pop(path.name, None)
                started.append(self._claim_and_import(path))
        return started

    def file_import_isos(self) -> list[str]:
        """The names of the ISOs waiting in FileImport (the console's "Specify file" list)."""
        return sorted(p.name for p in self.file_import.glob("*.iso") if importable(p))

    def import_dropped(self, name: str) -> int | None:
        """Start the import of one ISO in FileImport by its name; None if it is not there
        (any more)."""
        if name not in self.file_import_isos():
            return None
        (self.file_import / ".importing").mkdir(parents=True, exist_ok=True)
        with self._scan_lock:
            path = self.file_import / name
            if not importable(path):
                return None
            self._seen.pop(name, None)
            return self._claim_and_import(path)

    def _claim_and_import(self, path: Path) -> int:
        moved = self.file_import / ".importing" / f"{os.urandom(4).hex()}-{path.name}"
        os.rename(path, moved)
        return self.runner.submit_import(moved, path.name, _dropped_cleanup(moved, path))


def _dropped_cleanup(moved: Path, original: Path) -> _Cleanup:
    return _Cleanup(moved, original)


@dataclass(frozen=True)
class _Cleanup:
    """A dropped ISO is removed once imported; one that failed goes back as `<name>.failed`."""

    moved: Path
    original: Path

    def __call__(self, succeeded: bool) -> None:
        try:
            if succeeded:
                self.moved.unlink(missing_ok=True)
            else:
                os.replace(self.moved, self.original.with_name(self.original.name + ".failed"))
        except OSError as exc:
            log.warning("FileImport: could not tidy %s: %s", self.moved.name, exc.strerror)


class FileImportWatcher:
    """Scans FileImport every `interval` seconds until stopped."""

    def __init__(self, state: ServerState, interval: float) -> None:
        self._state = state
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="file-import", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._state.scan_file_import(require_stable=True)
            except OSError as exc:
                log.warning("FileImport scan failed: %s", exc)
