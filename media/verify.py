"""Verify an Engine ISO so a technician can rely on it: structure, El Torito, hybrid layout,
embedded MD5, manifest and every file, and optionally four real boots in QEMU.

`verify_iso` returns a `VerifyReport` listing every check with what it found; the medium is
good only when all of them hold. With `boot=True` the ISO is booted on four paths (BIOS and
UEFI, each from a CD drive and from a hard disk) and each must print the installer's marker
line with the manifest's version and the right firmware within the timeout.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from enginekit.errors import EngineKitError
from enginekit.qemu import BootSpec, Drive, DriveKind, Firmware, QemuMachine
from media import system_area
from media.inspect import boot_entries, open_iso, volume_bytes
from media.iso_builder import volume_id_for
from media.isomd5 import Md5Status
from media.isomd5 import check as md5_check
from media.medium_content import content_problems
from media.reader import MediumReader

MARKER = re.compile(r"ENGINE INSTALLER BOOTED version=(\S+) firmware=(\S+)")
FAILURE = re.compile(r"Kernel panic|No bootable device|Boot failed|not a bootable disk")
# The medium boots the live installer (about 30 MiB through the firmware), which takes
# minutes under TCG on a loaded machine.
BOOT_TIMEOUT = 300.0

# The four ways a technician's machine may start the medium.
BOOT_PATHS: tuple[tuple[Firmware, DriveKind], ...] = (
    (Firmware.BIOS, DriveKind.CDROM),
    (Firmware.BIOS, DriveKind.DISK),
    (Firmware.UEFI, DriveKind.CDROM),
    (Firmware.UEFI, DriveKind.DISK),
)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


@dataclass(frozen=True)
class BootPathResult:
    firmware: str
    drive: str
    ok: bool
    seconds: float
    marker: str | None  # the marker line as printed, if any
    problem: str | None  # why it failed, for people
    console_tail: str  # last console lines, kept on failure

    @property
    def name(self) -> str:
        return f"{self.firmware} from {'CD' if self.drive == 'cdrom' else self.drive}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.name,
            "firmware": self.firmware,
            "drive": self.drive,
            "ok": self.ok,
            "seconds": round(self.seconds, 1),
            "marker": self.marker,
            "problem": self.problem,
            "console_tail": self.console_tail if not self.ok else "",
        }


@dataclass(frozen=True)
class VerifyReport:
    path: Path
    version: str | None
    checks: tuple[Check, ...]
    boots: tuple[BootPathResult, ...]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks) and all(b.ok for b in self.boots)

    def failures(self) -> list[str]:
        """One short phrase per failed check or boot path."""
        found = [f"{c.name}: {c.detail}" for c in self.checks if not c.ok]
        found += [f"boot {b.name}: {b.problem}" for b in self.boots if not b.ok]
        return found

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "version": self.version,
            "ok": self.ok,
            "checks": [c.to_dict() for c in self.checks],
            "boots": [b.to_dict() for b in self.boots],
        }


def _structure_check(path: Path) -> tuple[Check, Check, str]:
    """(structure, el torito, volume id). Raises InvalidISO for non-ISOs and short files."""
    with open_iso(path) as iso:
        volume_id = iso.pvd.volume_identifier.decode("ascii", "replace").strip()
        extras = [name for name, has in (("Rock Ridge", iso.has_rock_ridge()),
                                         ("Joliet", iso.has_joliet())) if has]  # fmt: skip
        missing = {"Rock Ridge", "Joliet"} - set(extras)
        size = volume_bytes(iso)
        structure = Check(
            "structure",
            not missing,
            f"ISO 9660 + {' + '.join(extras) or 'no extensions'}, volume {volume_id!r}, "
            f"{size} bytes" + (f"; missing {', '.join(sorted(missing))}" if missing else ""),
        )
        entries = boot_entries(iso)
    platforms = {e.platform for e in entries if e.bootable}
    want = {"bios", "uefi"}
    eltorito = Check(
        "el torito",
        want <= platforms,
        ", ".join(f"{e.platform} {e.path or f'LBA {e.lba}'}" for e in entries)
        + (f"; missing {', '.join(sorted(want - platforms))}" if not want <= platforms else "")
        if entries
        else "no El Torito boot catalog",
    )
    return structure, eltorito, volume_id


def _hybrid_check(path: Path) -> Check:
    with open(path, "rb") as fp:
        info = system_area.read_hybrid(fp, path.stat().st_size)
    problems = list(info.gpt_problems)
    if not info.mbr:
        problems.insert(0, "no MBR")
    elif not info.isohybrid:
        problems.insert(0, "the MBR has no isohybrid boot code")
    if not info.gpt:
        problems.append("no GPT")
    detail = (
        "isohybrid MBR + GPT (primary and backup valid)" if not problems else "; ".join(problems)
    )
    return Check("hybrid", not problems, detail)


def _md5_check(path: Path) -> Check:
    result = md5_check(path)
    if result.status is Md5Status.PASS:
        return Check("md5", True, f"embedded MD5 {result.expected} matches")
    if result.status is Md5Status.ABSENT:
        return Check("md5", False, "no embedded MD5")
    where = f" (fragment {result.first_bad_fragment} differs)" if result.first_bad_fragment else ""
    return Check("md5", False, f"embedded MD5 does not match the image{where}")


def _manifest_checks(path: Path, volume_id: str) -> tuple[list[Check], str | None]:
    try:
        reader = MediumReader.open(path)
    except EngineKitError as exc:
        return [Check("manifest", False, exc.message), Check("files", False, "not checked")], None
    except RecursionError:
        # json.loads on a hostile, deeply nested document (media.manifest lets it through).
        detail = f"{path}:/engine/manifest.json nests too deeply to be a manifest"
        return [Check("manifest", False, detail), Check("files", False, "not checked")], None
    with reader:
        manifest = reader.manifest
        version = str(manifest.version)
        expected_id = volume_id_for(version)
        found = [] if volume_id == expected_id else [
            f"volume id is {volume_id!r}, expected {expected_id!r}"
        ]  # fmt: skip
        problems = reader.verify_files()
        if not problems:  # a damaged file is reported once, under "files"
            found += content_problems(manifest, lambda rel: _read_or_none(reader, rel))
        checks = [
            Check(
                "manifest",
                not found,
                f"{manifest.product} {version}, {len(manifest.files)} files"
                + "".join(f"; {problem}" for problem in found),
            )
        ]
        total = sum(e.size for e in manifest.files)
        if problems:
            checks.append(Check("files", False, "; ".join(p.describe() for p in problems)))
        else:
            checks.append(
                Check("files", True, f"{len(manifest.files)} files, {total} bytes, sha256 match")
            )
    return checks, version


def _read_or_none(reader: MediumReader, rel: str) -> bytes | None:
    return reader.read_bytes(rel) if reader.exists(rel) else None


def boot_path(
    iso: Path,
    firmware: Firmware,
    kind: DriveKind,
    version: str,
    timeout: float = BOOT_TIMEOUT,
    cancel: threading.Event | None = None,
) -> BootPathResult:
    """Boot the ISO one way and judge the marker line it prints (version and firmware)."""
    cancel = cancel or threading.Event()
    spec = BootSpec(firmware, (Drive(iso, kind, snapshot=kind is not DriveKind.CDROM),))
    started = time.monotonic()
    matched: str | None = None
    problem: str | None = None
    with QemuMachine(spec) as machine:
        deadline = started + timeout
        while True:
            # Short waits so a Ctrl-C (cancel) stops every machine promptly.
            line, stopped, _ = machine.wait_for(MARKER, 0.5, FAILURE)
            if line is not None:
                matched = line
                break
            if stopped:
                problem = "the machine stopped without printing the marker"
                break
            failed = FAILURE.search(machine.console())
            if failed:
                problem = f"boot failed: {failed.group(0)}"
                break
            if cancel.is_set():
                problem = "cancelled"
                break
            if time.monotonic() > deadline:
                problem = f"no marker within {timeout:.0f} s"
                break
        console = machine.console()
    seconds = time.monotonic() - started
    found = MARKER.search(matched) if matched is not None else None
    if found is not None:
        got_version, got_firmware = found.group(1), found.group(2)
        if got_version != version:
            problem = f"printed version={got_version}, expected {version}"
        elif got_firmware != str(firmware):
            problem = f"printed firmware={got_firmware}, expected {firmware}"
    lines = [ln for ln in console.splitlines() if ln.strip()]
    return BootPathResult(
        firmware=str(firmware),
        drive=str(kind),
        ok=problem is None,
        seconds=seconds,
        marker=found.group(0) if found is not None else None,
        problem=problem,
        console_tail=" | ".join(lines[-6:]),
    )


def boot_all_paths(
    iso: Path, version: str, timeout: float = BOOT_TIMEOUT, parallel: int = 4
) -> tuple[BootPathResult, ...]:
    """Boot the four paths (concurrently) and return one result per path, in order."""
    cancel = threading.Event()
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        futures = [
            pool.submit(boot_path, iso, fw, kind, version, timeout, cancel)
            for fw, kind in BOOT_PATHS
        ]
        try:
            return tuple(f.result() for f in futures)
        except BaseException:
            cancel.set()
            raise


def verify_iso(
    path: Path,
    boot: bool = False,
    *,
    timeout: float = BOOT_TIMEOUT,
    progress: Progress | None = None,
) -> VerifyReport:
    """Run every check on the ISO at `path`. Raises InvalidISO only when the file is not an
    ISO at all or is cut short; every other finding is a check in the report."""
    path = Path(path)

    def step(text: str) -> None:
        if progress is not None:
            progress(text)

    step("structure and El Torito")
    structure, eltorito, volume_id = _structure_check(path)
    step("hybrid MBR and GPT")
    hybrid = _hybrid_check(path)
    step("embedded MD5")
    md5 = _md5_check(path)
    step("manifest and files")
    manifest_checks, version = _manifest_checks(path, volume_id)
    checks = (structure, eltorito, hybrid, md5, *manifest_checks)
    boots: tuple[BootPathResult, ...] = ()
    if boot:
        if version is None:
            checks += (Check("boot", False, "not attempted: the manifest names no version"),)
        else:
            step("booting BIOS/UEFI from CD and disk")
            boots = boot_all_paths(path, version, timeout)
    return VerifyReport(path=path, version=version, checks=checks, boots=boots)
