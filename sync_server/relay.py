"""The remote server's side of a relay: contact the main server every `interval` seconds
(what it runs, the kits in its cache), and run the relay tasks the answer lists, one at a
time: download the kit with HTTP Range into `kits/kit-<id>-<sha256>.partial` at the site's
bandwidth, report progress, check size and sha256, then rename it to `.iso`.

A cut link (the main server unreachable, or this process killed) leaves the partial file;
the next try resumes at its size. A relay cancelled on the main server is seen at the next
report: the download stops and the partial file is removed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from enginekit.errors import EngineKitError
from sync_server.client import SyncClient
from sync_server.digests import file_sha256
from sync_server.schemas import RelayJob, RelayReport, RelayState, SiteContact, SiteContactAnswer

log = logging.getLogger(__name__)
REPORT_EVERY = 0.25  # seconds between progress reports during a transfer
CANCELLED = "cancelled"


@dataclass(frozen=True)
class RemoteCache:
    """The kits complete at this site, by kit id."""

    kits_dir: Path

    def final(self, job: RelayJob) -> Path:
        return self.kits_dir / f"kit-{job.kit_id}-{job.sha256}.iso"

    def partial(self, job: RelayJob) -> Path:
        return self.kits_dir / f"kit-{job.kit_id}-{job.sha256}.partial"

    def kit_file(self, kit_id: int) -> Path | None:
        found = sorted(self.kits_dir.glob(f"kit-{kit_id}-*.iso"))
        return found[0] if found else None

    def kit_ids(self) -> list[int]:
        ids = []
        for path in self.kits_dir.glob("kit-*-*.iso"):
            number = path.name.split("-")[1]
            if number.isdigit():
                ids.append(int(number))
        return sorted(ids)


class RelayWorker:
    def __init__(
        self, upstream: SyncClient, cache: RemoteCache, rate: int | None, interval: float
    ) -> None:
        self._upstream = upstream
        self._cache = cache
        self._rate = rate
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="relay", daemon=True)
        self.version: str | None = None  # the main server's, adopted at the first contact

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop, then tell the main server this remote stopped (best effort)."""
        self._stop.set()
        self._thread.join()
        try:
            self._contact(running=False)
        except EngineKitError as exc:
            log.warning("could not tell the main server this remote stops: %s", exc.message)

    def _contact(self, *, running: bool) -> SiteContactAnswer:
        body = SiteContact(
            version=self.version,
            running=running,
            contact_interval=self._interval,
            kits=self._cache.kit_ids(),
        )
        answer = SiteContactAnswer.model_validate(
            self._upstream.post("/api/v1/sites/self/contact", body.model_dump())
        )
        if self.version is None:
            self.version = answer.synchronizer_version
            log.info("site %s: runs Synchronizer %s", answer.name, self.version)
        return answer

    def _loop(self) -> None:
        while not self._stop.is_set():
            busy = False
            try:
                answer = self._contact(running=True)
                for job in answer.relays:
                    if self._stop.is_set():
                        break
                    busy = self._relay(job) or busy
            except EngineKitError as exc:
                log.warning("relay: %s (tried again in %g s)", exc.message, self._interval)
            if not busy:
                self._stop.wait(self._interval)

    def _report(self, job: RelayJob, report: RelayReport) -> str:
        state = RelayState.model_validate(
            self._upstream.post(f"/api/v1/sites/self/relays/{job.task_id}", report.model_dump())
        )
        return state.state

    def _relay(self, job: RelayJob) -> bool:
        """True when the relay ended (complete, cancelled or failed): look for the next."""
        final, partial = self._cache.final(job), self._cache.partial(job)
        self._cache.kits_dir.mkdir(parents=True, exist_ok=True)
        if final.is_file():
            self._report(job, RelayReport(received=job.size, complete=True))
            return True
        if partial.exists() and partial.stat().st_size > job.size:
            partial.unlink()
        have = partial.stat().st_size if partial.exists() else 0
        if have:
            log.info("relay of Engine %s: resuming at byte %d of %d", job.version, have, job.size)
        if self._report(job, RelayReport(received=have, resumed_from=have)) == CANCELLED:
            partial.unlink(missing_ok=True)
            return True
        cancelled = False
        last = time.monotonic()

        def go_on(size: int) -> bool:
            nonlocal cancelled, last
            if self._stop.is_set():
                return False
            now = time.monotonic()
            if now - last >= REPORT_EVERY:
                last = now
                cancelled = self._report(job, RelayReport(received=size)) == CANCELLED
            return not cancelled

        self._upstream.download(job.download, partial, rate=self._rate, go_on=go_on)
        if cancelled:
            log.info("relay of Engine %s cancelled on the main server", job.version)
            partial.unlink(missing_ok=True)
            return True
        if self._stop.is_set():
            return False  # the partial stays: the next start resumes it
        size = partial.stat().st_size if partial.exists() else 0
        if size < job.size:
            return False  # the link broke off: the next contact resumes
        if size != job.size or file_sha256(partial) != job.sha256:
            partial.unlink(missing_ok=True)
            self._report(
                job,
                RelayReport(
                    received=size,
                    error=f"the kit relayed does not match the main server's sha256 "
                    f"({size} of {job.size} bytes); the partial file was removed",
                ),
            )
            return True
        os.replace(partial, final)
        log.info("relay of Engine %s complete (%d bytes)", job.version, job.size)
        self._report(job, RelayReport(received=job.size, complete=True))
        return True
