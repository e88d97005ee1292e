"""Write one image to several targets at once and report per target.

Each target gets its own thread running an `ImageCopier` (write, then read-back verify); the
I/O calls release the GIL, so sticks on different ports fill in parallel. A target that fails
(refused by the kernel's view, I/O error, mismatch) ends only its own thread. Ctrl-C in the
waiting thread sets the shared stop event; every copier stops within one chunk and its result
says whether the stick was left incomplete.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from enginekit.errors import EngineKitError
from media.errors import TargetRefused
from media.usb.blockdev import open_target
from media.usb.copier import CHUNK_SIZE, ImageCopier, Phase, Progress, WriteInterrupted


class TargetStatus(enum.StrEnum):
    OK = "ok"
    UNVERIFIED = "written, not verified"  # --no-verify
    VERIFY_FAILED = "verify failed"
    FAILED = "failed"
    INCOMPLETE = "incomplete"  # stopped by Ctrl-C during the write
    NOT_VERIFIED = "stopped during verify"
    REFUSED = "refused"

    @property
    def succeeded(self) -> bool:
        return self in (TargetStatus.OK, TargetStatus.UNVERIFIED)


@dataclass(frozen=True)
class TargetResult:
    target: str
    status: TargetStatus
    image_size: int
    bytes_written: int = 0
    write_seconds: float = 0.0
    verify_seconds: float = 0.0
    first_bad_offset: int | None = None
    message: str = ""

    @property
    def write_rate(self) -> float:
        """Bytes per second of the write phase (0 when nothing was timed)."""
        return self.bytes_written / self.write_seconds if self.write_seconds > 0 else 0.0


@dataclass(frozen=True)
class WriteReport:
    results: tuple[TargetResult, ...]
    interrupted: bool

    @property
    def all_succeeded(self) -> bool:
        return not self.interrupted and all(r.status.succeeded for r in self.results)


TargetProgress = Callable[[str, Progress], None]


def write_one(
    image: Path,
    target: Path,
    *,
    verify: bool = True,
    on_progress: TargetProgress | None = None,
    stop: threading.Event | None = None,
    max_rate: float | None = None,
    chunk_size: int = CHUNK_SIZE,
    identity: str | None = None,
) -> TargetResult:
    """Write and verify one target; never raises for a target-level failure.

    `identity` is what `discovery.device_identity` said when the target was checked; the
    write refuses a block device that is no longer that medium.
    """
    name = str(target)
    image_size = image.stat().st_size
    written = 0
    write_seconds = 0.0

    def report(progress: Progress) -> None:
        if on_progress is not None:
            on_progress(name, progress)

    try:
        copier = ImageCopier(
            image,
            open_target(target, identity),
            chunk_size=chunk_size,
            on_progress=report,
            stop=stop,
            max_rate=max_rate,
        )
        result = copier.write()
        written, write_seconds = result.bytes_written, result.seconds
        if not verify:
            return TargetResult(name, TargetStatus.UNVERIFIED, image_size, written, write_seconds)
        checked = copier.verify()
    except WriteInterrupted as exc:
        status = TargetStatus.NOT_VERIFIED if exc.phase is Phase.VERIFY else TargetStatus.INCOMPLETE
        return TargetResult(
            name,
            status,
            image_size,
            written or exc.done,
            write_seconds,
            message=exc.message,
        )
    except EngineKitError as exc:
        status = TargetStatus.REFUSED if isinstance(exc, TargetRefused) else TargetStatus.FAILED
        return TargetResult(name, status, image_size, written, write_seconds, message=exc.message)
    except OSError as exc:
        return TargetResult(
            name,
            TargetStatus.FAILED,
            image_size,
            written,
            write_seconds,
            message=f"{name}: {exc.strerror or exc}",
        )
    if not checked.ok:
        return TargetResult(
            name,
            TargetStatus.VERIFY_FAILED,
            image_size,
            written,
            write_seconds,
            checked.seconds,
            first_bad_offset=checked.first_bad_offset,
            message=checked.detail,
        )
    return TargetResult(name, TargetStatus.OK, image_size, written, write_seconds, checked.seconds)


def write_many(
    image: Path,
    targets: Sequence[Path],
    *,
    verify: bool = True,
    on_progress: TargetProgress | None = None,
    stop: threading.Event | None = None,
    max_rate: float | None = None,
    chunk_size: int = CHUNK_SIZE,
    poll: Callable[[], None] | None = None,
    identities: Mapping[Path, str] | None = None,
) -> WriteReport:
    """Write `image` to every target concurrently; results in the order of `targets`.

    Ctrl-C (KeyboardInterrupt in this thread) stops all copiers cleanly and is reported as
    `interrupted` rather than raised, so the caller can still show what each target holds.
    `poll` is called a few times a second while waiting (e.g. to refresh a display).
    """
    stop = stop or threading.Event()
    interrupted = False
    with ThreadPoolExecutor(max_workers=max(1, len(targets)), thread_name_prefix="usb") as pool:
        futures: list[Future[TargetResult]] = [
            pool.submit(
                write_one,
                image,
                target,
                verify=verify,
                on_progress=on_progress,
                stop=stop,
                max_rate=max_rate,
                chunk_size=chunk_size,
                identity=(identities or {}).get(target),
            )
            for target in targets
        ]
        while not all(f.done() for f in futures):
            try:
                if poll is not None:
                    poll()
                # Returns as soon as the last target finishes; the timeout keeps Ctrl-C and
                # `poll` responsive.
                wait(futures, timeout=0.1)
            except KeyboardInterrupt:
                # Keep waiting: the copiers finish their current chunk and return results.
                interrupted = True
                stop.set()
        results = tuple(f.result() for f in futures)
    return WriteReport(results, interrupted or stop.is_set())
