"""Build a hybrid Engine installer ISO from a payload directory (pycdlib).

The ISO is ISO 9660 (interchange level 3) with Rock Ridge 1.09 and Joliet, two El Torito
entries (BIOS isolinux with a boot-info-table, UEFI with a FAT ESP image) and a hybrid system
area (isohybrid MBR plus a valid GPT, see `media.system_area`) so the same file boots as a CD
or as a raw USB disk on BIOS and UEFI. The isomd5sum checksum is implanted last. File data is
streamed, and the output appears only on success: it is written to a temporary file next to
the target and renamed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pycdlib

from enginekit.errors import EngineKitError, HostError, InternalError
from media import eltorito, system_area
from media.errors import InvalidPayload

log = logging.getLogger(__name__)

# pycdlib copies file data in chunks of this size; large chunks keep the copy near disk speed.
COPY_BLOCKSIZE = 4 * 1024 * 1024
ISO_DEPTH_LIMIT = 8  # ISO 9660 allows 8 directory levels (root included)
JOLIET_NAME_MAX = 64
_D_CHARS = re.compile(r"[^A-Z0-9_]")
_JOLIET_BAD = re.compile(r"[*/:;?\\]")

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class BuildResult:
    path: Path
    version: str
    volume_id: str
    size_bytes: int
    seconds: float


def volume_id_for(version: str) -> str:
    """`5.0.0` -> `ENGINE_5_0_0` (d-characters only, as ISO 9660 wants)."""
    return "ENGINE_" + _D_CHARS.sub("_", version.upper())


@dataclass(frozen=True)
class _Node:
    rel: PurePosixPath  # path in the payload / on the medium (Rock Ridge names)
    iso_path: str  # ISO 9660 path (mangled, upper case)
    joliet_path: str
    is_dir: bool
    source: Path | None  # host file for regular files


class _NameTable:
    """Per-directory unique ISO 9660 and Joliet names for the real (Rock Ridge) names."""

    def __init__(self) -> None:
        self._iso: dict[str, set[str]] = {}
        self._joliet: dict[str, set[str]] = {}

    @staticmethod
    def _unique(candidate: str, taken: set[str], limit: int, split_ext: bool) -> str:
        name = candidate
        counter = 1
        while name.upper() in taken:
            suffix = f"~{counter}"
            if split_ext and "." in candidate:
                base, ext = candidate.rsplit(".", 1)
                name = f"{base[: limit - len(suffix) - len(ext) - 1]}{suffix}.{ext}"
            else:
                name = candidate[: limit - len(suffix)] + suffix
            counter += 1
        taken.add(name.upper())
        return name

    def iso_name(self, parent: str, name: str, is_dir: bool) -> str:
        taken = self._iso.setdefault(parent, set())
        if is_dir:
            clean = _D_CHARS.sub("_", name.upper())[:31] or "_"
            return self._unique(clean, taken, 31, split_ext=False)
        base, dot, ext = name.rpartition(".")
        if not dot:
            base, ext = name, ""
        base = _D_CHARS.sub("_", base.upper())[:22]
        ext = _D_CHARS.sub("_", ext.upper())[:7]
        if not base and not ext:
            base = "_"
        return self._unique(f"{base}.{ext}", taken, 30, split_ext=True)

    def joliet_name(self, parent: str, name: str) -> str:
        taken = self._joliet.setdefault(parent, set())
        clean = _JOLIET_BAD.sub("_", name)[:JOLIET_NAME_MAX]
        return self._unique(clean, taken, JOLIET_NAME_MAX, split_ext=False)


def _walk_payload(root: Path) -> Iterator[tuple[PurePosixPath, Path, bool]]:
    """(relative path, host path, is_dir) for everything under root, parents first, sorted.
    Only directories and regular files are allowed on the medium."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        here = Path(dirpath)
        for name in dirnames + sorted(filenames):
            host = here / name
            rel = PurePosixPath(host.relative_to(root).as_posix())
            mode = host.lstat().st_mode
            if stat.S_ISDIR(mode):
                yield rel, host, True
            elif stat.S_ISREG(mode):
                yield rel, host, False
            else:
                kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
                raise InvalidPayload(
                    f"{host}: {kind}; a payload may hold only directories and regular files",
                    hint="replace links with copies of the files",
                )


class HybridIsoBuilder:
    """Turn a payload tree (with engine/manifest.json) into a bootable hybrid ISO."""

    def __init__(
        self,
        payload: Path,
        *,
        progress: ProgressCallback | None = None,
        blocksize: int = COPY_BLOCKSIZE,
    ) -> None:
        self.payload = Path(payload)
        self.progress = progress
        self.blocksize = blocksize

    # -- checks -----------------------------------------------------------------------------

    def _check_payload(self) -> str:
        """Validate the payload against its manifest; return the version it carries."""
        from media.manifest import check_payload_tree

        if not self.payload.is_dir():
            what = "does not exist" if not self.payload.exists() else "is not a directory"
            raise InvalidPayload(
                f"payload {self.payload} {what}",
                hint="give a directory holding engine/manifest.json and the files it lists",
            )
        manifest = check_payload_tree(self.payload)
        version = str(manifest.version)
        for rel in eltorito.BUILDER_PATHS:
            if (self.payload / rel).exists():
                raise InvalidPayload(
                    f"{self.payload / rel}: the payload already has a file the builder adds",
                    hint=f"remove it; the builder writes {', '.join(eltorito.BUILDER_PATHS)}",
                )
        for rel in ("boot/vmlinuz", "boot/initrd.img"):
            if not (self.payload / rel).is_file():
                raise InvalidPayload(
                    f"{self.payload / rel} is missing",
                    hint="an installer payload needs boot/vmlinuz and boot/initrd.img",
                )
        return version

    # -- tree -------------------------------------------------------------------------------

    def _nodes(self, boot: eltorito.BootFiles) -> list[_Node]:
        names = _NameTable()
        iso_of: dict[PurePosixPath, str] = {PurePosixPath("."): ""}
        joliet_of: dict[PurePosixPath, str] = {PurePosixPath("."): ""}
        nodes: list[_Node] = []

        def add(rel: PurePosixPath, source: Path | None, is_dir: bool) -> None:
            if len(rel.parts) > ISO_DEPTH_LIMIT - (0 if is_dir else 1):
                raise InvalidPayload(
                    f"{self.payload / rel}: nested deeper than ISO 9660 allows "
                    f"({ISO_DEPTH_LIMIT} levels)",
                    hint="flatten the payload tree",
                )
            parent = rel.parent
            iso_parent, joliet_parent = iso_of[parent], joliet_of[parent]
            iso_name = names.iso_name(iso_parent, rel.name, is_dir)
            joliet_name = names.joliet_name(joliet_parent, rel.name)
            iso_path = f"{iso_parent}/{iso_name}" + ("" if is_dir else ";1")
            joliet_path = f"{joliet_parent}/{joliet_name}"
            if is_dir:
                iso_of[rel] = iso_path
                joliet_of[rel] = joliet_path
            nodes.append(_Node(rel, iso_path, joliet_path, is_dir, source))

        added_dirs: set[PurePosixPath] = set()
        for rel, host, is_dir in _walk_payload(self.payload):
            add(rel, None if is_dir else host, is_dir)
            if is_dir:
                added_dirs.add(rel)
        extra = {
            eltorito.ISOLINUX_BIN_PATH: boot.isolinux_bin,
            eltorito.LDLINUX_PATH: boot.ldlinux_c32,
            eltorito.ISOLINUX_CFG_PATH: boot.isolinux_cfg,
            eltorito.ESP_IMAGE_PATH: boot.esp_image,
        }
        for rel_text, host in extra.items():
            rel = PurePosixPath(rel_text)
            if rel.parent not in added_dirs:
                add(rel.parent, None, True)
                added_dirs.add(rel.parent)
            add(rel, host, False)
        return nodes

    def _compose(self, volume_id: str, nodes: list[_Node]) -> pycdlib.PyCdlib:
        iso = pycdlib.PyCdlib()
        iso.new(
            interchange_level=3,
            sys_ident="LINUX",
            vol_ident=volume_id,
            rock_ridge="1.09",
            joliet=3,
            app_ident_str="ENGINEKIT",
        )
        for node in nodes:
            if node.is_dir:
                iso.add_directory(
                    iso_path=node.iso_path, rr_name=node.rel.name, joliet_path=node.joliet_path
                )
            else:
                assert node.source is not None
                iso.add_file(
                    str(node.source),
                    iso_path=node.iso_path,
                    rr_name=node.rel.name,
                    joliet_path=node.joliet_path,
                )
        by_rel = {str(n.rel): n for n in nodes}
        catalog = eltorito.BOOT_CATALOG_PATH
        iso.add_eltorito(
            by_rel[eltorito.ISOLINUX_BIN_PATH].iso_path,
            bootcatfile="/" + catalog.upper() + ";1",
            rr_bootcatname=PurePosixPath(catalog).name,
            joliet_bootcatfile="/" + catalog,
            boot_load_size=4,
            platform_id=0,
            boot_info_table=True,
            media_name="noemul",
        )
        iso.add_eltorito(
            by_rel[eltorito.ESP_IMAGE_PATH].iso_path,
            bootcatfile="/" + catalog.upper() + ";1",
            rr_bootcatname=PurePosixPath(catalog).name,
            joliet_bootcatfile="/" + catalog,
            platform_id=0xEF,
            efi=True,
            media_name="noemul",
        )
        return iso

    # -- build ------------------------------------------------------------------------------

    def build(self, out: Path) -> BuildResult:
        """Write the ISO to `out` (atomically) and return what was built."""
        started = time.monotonic()
        out = Path(out)
        version = self._check_payload()
        volume_id = volume_id_for(version)
        if out.is_dir():
            raise InvalidPayload(f"output {out} is a directory", hint="give a file name")
        if not out.parent.is_dir():
            raise InvalidPayload(
                f"output directory {out.parent} does not exist", hint="create it first"
            )
        with contextlib.ExitStack() as stack:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="enginekit-iso-")))
            boot = eltorito.prepare_boot_files(
                work, self.payload / "boot/vmlinuz", self.payload / "boot/initrd.img"
            )
            nodes = self._nodes(boot)
            iso = self._compose(volume_id, nodes)
            stack.callback(iso.close)
            fd, partial_name = tempfile.mkstemp(
                prefix=f".{out.name}.", suffix=".partial", dir=out.parent
            )
            os.close(fd)
            partial = Path(partial_name)
            try:
                iso.write(
                    str(partial),
                    blocksize=self.blocksize,
                    progress_cb=self._progress if self.progress else None,
                )
                by_rel = {str(n.rel): n for n in nodes}
                isolinux_block = iso.get_record(
                    iso_path=by_rel[eltorito.ISOLINUX_BIN_PATH].iso_path
                ).extent_location()
                esp_block = iso.get_record(
                    iso_path=by_rel[eltorito.ESP_IMAGE_PATH].iso_path
                ).extent_location()
                iso_blocks = partial.stat().st_size // system_area.ISO_BLOCK
                layout = system_area.plan_layout(
                    system_area.padded_volume_blocks(iso_blocks),
                    isolinux_block,
                    esp_block,
                    boot.esp_image.stat().st_size,
                )
                system_area.write_system_area(partial, layout, boot.isohybrid_mbr.read_bytes())
                from media.isomd5 import implant

                implant(partial)
                partial.chmod(0o644)
                os.replace(partial, out)
            except BaseException as exc:
                partial.unlink(missing_ok=True)
                if isinstance(exc, (EngineKitError, KeyboardInterrupt)):
                    raise
                if isinstance(exc, pycdlib.pycdlibexception.PyCdlibException):
                    raise InternalError(f"pycdlib refused the medium: {exc}") from exc
                if isinstance(exc, OSError):
                    raise HostError(f"cannot write {out}: {exc.strerror or exc}") from exc
                raise
        return BuildResult(
            path=out,
            version=version,
            volume_id=volume_id,
            size_bytes=out.stat().st_size,
            seconds=time.monotonic() - started,
        )

    def _progress(self, done: int, total: int, opaque: object = None) -> None:
        if self.progress is not None:
            self.progress(done, total)


def build_iso(payload: Path, out: Path, progress: ProgressCallback | None = None) -> BuildResult:
    """Convenience: `HybridIsoBuilder(payload).build(out)`."""
    return HybridIsoBuilder(payload, progress=progress).build(out)


__all__ = ["BuildResult", "HybridIsoBuilder", "build_iso", "volume_id_for"]
