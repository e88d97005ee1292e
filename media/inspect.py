"""What an Engine ISO is: version, volume id, size, boot entries, hybrid layout, embedded MD5
and which media it fits on.

`inspect_iso` reads without changing anything and reports facts; judging them (pass/fail) is
`media.verify`'s job. It still refuses files that are not ISOs or are cut short, with one
clear error naming the file.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pycdlib
from pycdlib.pycdlibexception import PyCdlibException

from enginekit.errors import EngineKitError, UserInputError
from enginekit.versions import EngineVersion
from media import system_area
from media.errors import InvalidISO, InvalidManifest
from media.isomd5 import TruncatedISO
from media.isomd5 import check as md5_check

MANIFEST_RR_PATH = "/engine/manifest.json"

# Capacities from the Engine upgrade guide (shared/engine-domain.md), in bytes.
MEDIA_CAPACITY = {
    "CD": 737_280_000,
    "DVD-5": 4_700_372_992,
    "DVD-9": 8_543_666_176,
}
_PLATFORMS = {0x00: "bios", 0xEF: "uefi"}


@dataclass(frozen=True)
class BootEntry:
    platform: str  # "bios" | "uefi" (or "0xNN" for something else)
    path: str | None  # Rock Ridge path of the boot image on the medium
    lba: int  # ISO block of the boot image
    load_sectors: int  # 512-byte sectors the firmware loads (0/1 for "whole image")
    emulation: str
    bootable: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "platform": self.platform,
            "path": self.path,
            "lba": self.lba,
            "load_sectors": self.load_sectors,
            "emulation": self.emulation,
            "bootable": self.bootable,
        }


@dataclass(frozen=True)
class IsoReport:
    path: Path
    version: str | None
    volume_id: str
    size_bytes: int
    volume_bytes: int
    boot: tuple[BootEntry, ...]
    mbr: bool
    gpt: bool
    gpt_valid: bool
    gpt_problems: tuple[str, ...]
    md5: str  # "pass" | "fail" | "absent"
    fits: dict[str, bool | None]

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON form: exactly the documented keys."""
        return {
            "version": self.version,
            "volume_id": self.volume_id,
            "size_bytes": self.size_bytes,
            "boot": [b.to_dict() for b in self.boot],
            "hybrid": {"mbr": self.mbr, "gpt": self.gpt, "gpt_valid": self.gpt_valid},
            "md5": self.md5,
            "fits": dict(self.fits),
        }


def check_iso_file(path: Path) -> int:
    """Size of `path`, or one clear error if it is missing, not a regular file (a directory,
    a FIFO that would block, a device) or not readable by us."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise UserInputError(f"{path}: no such file", hint="check the ISO's path") from None
    except OSError as exc:
        raise UserInputError(
            f"{path}: cannot look at it ({exc.strerror or exc})",
            hint="check the path and the permissions of its directories",
        ) from None
    if not stat.S_ISREG(mode):
        raise UserInputError(f"{path}: not a regular file", hint="give the path of an ISO image")
    try:
        with open(path, "rb") as image:
            return os.fstat(image.fileno()).st_size
    except OSError as exc:
        raise UserInputError(
            f"{path}: cannot read it ({exc.strerror or exc})",
            hint="make the file readable for this user (chmod a+r) or run as its owner",
        ) from None


# What pycdlib lets escape on damaged or foreign images besides its own errors.
# (AttributeError/TypeError: pycdlib follows records a damaged image leaves as None.)
_DAMAGED = (
    PyCdlibException,
    struct.error,
    ValueError,
    IndexError,
    KeyError,
    UnicodeError,
    AttributeError,
    TypeError,
    RecursionError,
)


def _declared_volume_bytes(path: Path) -> int | None:
    """Volume size the primary volume descriptor declares, or None if there is no PVD."""
    with open(path, "rb") as fp:
        fp.seek(16 * 2048)
        pvd = fp.read(2048)
    if len(pvd) < 132 or pvd[0] != 1 or pvd[1:6] != b"CD001":
        return None
    blocks = int.from_bytes(pvd[80:84], "little")
    block_size = int.from_bytes(pvd[128:130], "little")
    return blocks * block_size


@contextlib.contextmanager
def open_iso(path: Path) -> Iterator[pycdlib.PyCdlib]:
    """pycdlib's view of the ISO. A missing file, a short one and anything pycdlib cannot
    read (while opening or later, inside the with block) become one clear error."""
    size = check_iso_file(path)
    declared = _declared_volume_bytes(path)
    if declared is not None and size < declared:
        raise TruncatedISO(str(path), size, declared)
    iso = pycdlib.PyCdlib()
    try:
        iso.open(str(path))
    except (*_DAMAGED, OSError) as exc:
        raise InvalidISO(
            f"{path}: not a readable ISO 9660 image ({_first_line(exc)})",
            hint="is this the right file? a truncated download or a disk image will not do",
        ) from None
    try:
        volume = volume_bytes(iso)
        if size < volume:
            raise TruncatedISO(str(path), size, volume)
        yield iso
    except _DAMAGED as exc:
        raise InvalidISO(
            f"{path}: damaged ISO 9660 structure ({_first_line(exc)})",
            hint="the image is corrupt; build or download it again",
        ) from None
    finally:
        with contextlib.suppress(*_DAMAGED, OSError):
            iso.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def volume_bytes(iso: pycdlib.PyCdlib) -> int:
    return int(iso.pvd.space_size * iso.pvd.log_block_size)


def read_iso_file(iso: pycdlib.PyCdlib, rr_path: str) -> bytes | None:
    """A small file from the medium by its Rock Ridge path, or None if it is not there."""
    out = io.BytesIO()
    try:
        iso.get_file_from_iso_fp(out, rr_path=rr_path)
    except PyCdlibException:
        return None
    return out.getvalue()


def _extent_paths(iso: pycdlib.PyCdlib) -> dict[int, str]:
    found: dict[int, str] = {}
    for dirname, _dirs, files in iso.walk(rr_path="/"):
        for name in files:
            rr = f"{dirname.rstrip('/')}/{name}"
            try:
                found.setdefault(iso.get_record(rr_path=rr).extent_location(), rr)
            except PyCdlibException:
                continue
    return found


def boot_entries(iso: pycdlib.PyCdlib) -> tuple[BootEntry, ...]:
    catalog = iso.eltorito_boot_catalog
    if catalog is None:
        return ()
    paths = _extent_paths(iso)
    entries: list[tuple[int, Any]] = [(catalog.validation_entry.platform_id, catalog.initial_entry)]
    for section in catalog.sections:
        for entry in section.section_entries:
            entries.append((section.platform_id, entry))
    media_names = {0: "none", 1: "1.2M floppy", 2: "1.44M floppy", 3: "2.88M floppy", 4: "hd"}
    result = []
    for platform_id, entry in entries:
        lba = int(entry.load_rba)
        result.append(
            BootEntry(
                platform=_PLATFORMS.get(platform_id, f"{platform_id:#04x}"),
                path=paths.get(lba),
                lba=lba,
                load_sectors=int(entry.sector_count),
                emulation=media_names.get(int(entry.boot_media_type), "unknown"),
                bootable=int(entry.boot_indicator) == 0x88,
            )
        )
    return tuple(result)


def manifest_version(iso: pycdlib.PyCdlib) -> str | None:
    """The `version` the medium's manifest claims, without judging the rest of it."""
    import json

    data = read_iso_file(iso, MANIFEST_RR_PATH)
    if data is None:
        return None
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise InvalidManifest(
            f"{MANIFEST_RR_PATH} on the medium is not JSON ({_first_line(exc)})",
            hint="the medium is damaged or not an Engine medium; run engine-media verify",
        ) from None
    version = doc.get("version") if isinstance(doc, dict) else None
    if version is None:
        return None
    try:
        return str(EngineVersion.parse(version))
    except EngineKitError:
        raise InvalidManifest(
            f"{MANIFEST_RR_PATH} on the medium: version {ascii(version)[:60]} is not an "
            "Engine version",
            hint="the medium is damaged or not an Engine medium; run engine-media verify",
        ) from None


def fits_on(size: int, usb_size: int | None) -> dict[str, bool | None]:
    fits: dict[str, bool | None] = {name: size <= cap for name, cap in MEDIA_CAPACITY.items()}
    fits["USB"] = None if usb_size is None else size <= usb_size
    return fits


def inspect_iso(path: Path, usb_size: int | None = None) -> IsoReport:
    """Read everything `engine-media inspect` shows. Raises InvalidISO for non-ISOs."""
    path = Path(path)
    with open_iso(path) as iso:
        volume_id = iso.pvd.volume_identifier.decode("ascii", "replace").strip()
        version = manifest_version(iso)
        boot = boot_entries(iso)
        vol_bytes = volume_bytes(iso)
    size = path.stat().st_size
    with open(path, "rb") as fp:
        hybrid = system_area.read_hybrid(fp, size)
    md5 = md5_check(path).status
    return IsoReport(
        path=path,
        version=version,
        volume_id=volume_id,
        size_bytes=size,
        volume_bytes=vol_bytes,
        boot=boot,
        mbr=hybrid.mbr,
        gpt=hybrid.gpt,
        gpt_valid=hybrid.gpt_valid,
        gpt_problems=hybrid.gpt_problems,
        md5=str(md5),
        fits=fits_on(size, usb_size),
    )


__all__ = ["MEDIA_CAPACITY", "BootEntry", "IsoReport", "inspect_iso", "open_iso"]
