"""Build a hybrid Engine installer ISO from a payload directory (pycdlib).

The ISO is ISO 9660 (interchange level 3) with Rock Ridge 1.09 and Joliet, two El Torito
entries (BIOS isolinux with a boot-info-table, UEFI with a FAT ESP image) and a hybrid system
area (isohybrid MBR plus a valid GPT, see `media.system_area`) so the same file boots as a CD
or as a raw USB disk on BIOS and UEFI. pycdlib lays the image out; `media.iso_writer` writes
it in one pass that also checks every payload file's SHA-256 against the manifest and computes
the isomd5sum checksum, implanted as the very last write. The output appears only on success:
it is written to a partial file next to the target and published by `enginekit.outputs`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, cast

import pycdlib

from enginekit.errors import HostError, InternalError
from enginekit.outputs import NewOutput, check_new_output, partial_prefix, publish
from enginekit.scratch import create_owned_partial, scratch_tree, sweep_owned_partials
from media import eltorito, system_area
from media.errors import InvalidPayload
from media.iso_writer import ImageStreamer, MetadataCapture, StreamedFile, ZeroSource, coalesce
from media.isomd5 import APPDATA_OFFSET, APPDATA_SIZE, SKIP_SECTORS, format_appdata
from media.manifest import MANIFEST_PATH, Manifest
from media.medium_content import content_problems

log = logging.getLogger(__name__)

# pycdlib copies file data in chunks of this size; large chunks keep the copy near disk speed.
COPY_BLOCKSIZE = 4 * 1024 * 1024
ISO_DEPTH_LIMIT = 8  # ISO 9660 allows 8 directory levels (root included)
JOLIET_NAME_MAX = 64
_D_CHARS = re.compile(r"[^A-Z0-9_]")
_JOLIET_BAD = re.compile(r"[*/:;?\\]")

ProgressCallback = Callable[[int, int], None]
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


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
        """`candidate`, cut to `limit` UTF-8 bytes and made unique among `taken` with a
        numbered suffix; limits count bytes, as pycdlib checks Joliet names in UTF-8."""
        name = _fit(candidate, limit, split_ext)
        counter = 1
        while name.upper() in taken:
            suffix = f"_{counter}" if limit < JOLIET_NAME_MAX else f"~{counter}"
            if split_ext and "." in candidate:
                base, ext = candidate.rsplit(".", 1)
                name = _fit(f"{base}.{ext}", limit, split_ext, suffix)
            else:
                name = _cut(candidate, limit - len(suffix)) + suffix
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
        """The Joliet name: the Rock Ridge name, cut like genisoimage does when it is too long
        (the extension kept), so Windows still sees the file; Rock Ridge keeps the full name."""
        taken = self._joliet.setdefault(parent, set())
        clean = _JOLIET_BAD.sub("_", name)
        return self._unique(clean, taken, JOLIET_NAME_MAX, split_ext=True)


def _cut(text: str, limit: int) -> str:
    """The longest prefix of `text` whose UTF-8 form fits in `limit` bytes (whole characters)."""
    return text.encode("utf-8", "surrogateescape")[: max(0, limit)].decode("utf-8", "ignore")


def _fit(name: str, limit: int, split_ext: bool, suffix: str = "") -> str:
    """`name` plus `suffix` in at most `limit` UTF-8 bytes, keeping a short extension whole."""
    if not suffix and len(name.encode("utf-8", "surrogateescape")) <= limit:
        return name
    base, dot, ext = name.rpartition(".")
    if split_ext and dot and base and len(ext.encode("utf-8")) + 1 + len(suffix) < limit // 2:
        room = limit - len(ext.encode("utf-8")) - 1 - len(suffix)
        return f"{_cut(base, room)}{suffix}.{ext}"
    return _cut(name, limit - len(suffix)) + suffix


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

    def _check_payload(self) -> Manifest:
        """Validate the payload against its manifest without hashing: every listed file is
        there with its size, nothing unlisted. The SHA-256 sums are checked while the image
        is written (one read of each file), and a mismatch fails the build."""
        from media.payload_tree import load_tree_manifest, payload_files

        if not self.payload.is_dir():
            what = "does not exist" if not self.payload.exists() else "is not a directory"
            raise InvalidPayload(
                f"payload {self.payload} {what}",
                hint="give a directory holding engine/manifest.json and the files it lists",
            )
        manifest = load_tree_manifest(self.payload)
        for rel in eltorito.BUILDER_PATHS:
            if (self.payload / rel).exists():
                raise InvalidPayload(
                    f"{self.payload / rel}: the payload already has a file the builder adds",
                    hint=f"remove it; the builder writes {', '.join(eltorito.BUILDER_PATHS)}",
                )
        problems: list[str] = []
        for entry in manifest.files:
            full = self.payload / entry.path
            if not full.is_file() or full.is_symlink():
                problems.append(f"{entry.path}: missing")
            elif (size := full.stat().st_size) != entry.size:
                problems.append(f"{entry.path}: size is {size}, manifest says {entry.size}")
        listed = {e.path for e in manifest.files}
        problems += [
            f"{rel}: not listed in {MANIFEST_PATH}"
            for rel in payload_files(self.payload)
            if rel not in listed
        ]
        for rel in ("boot/vmlinuz", "boot/initrd.img"):
            if rel not in listed:
                problems.append(f"{rel}: missing (an installer payload needs it)")
        self._fail_if(problems)
        content = content_problems(manifest, self._read_payload_file)
        if content:
            raise InvalidPayload(
                f"{self.payload}: " + "; ".join(content),
                hint="the installer shows these files: fix them, then regenerate the manifest",
            )
        return manifest

    def _read_payload_file(self, rel: str) -> bytes | None:
        full = self.payload / rel
        return full.read_bytes() if full.is_file() and not full.is_symlink() else None

    def _fail_if(self, problems: list[str]) -> None:
        if problems:
            more = f"; and {len(problems) - 10} more" if len(problems) > 10 else ""
            raise InvalidPayload(
                f"{self.payload}: " + "; ".join(problems[:10]) + more,
                hint="restore the files or regenerate the manifest from the tree",
            )

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
            **dict(zip(eltorito.MENU_MODULE_PATHS, boot.menu_modules, strict=True)),
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

    def _compose(
        self, volume_id: str, nodes: list[_Node], streamed: dict[str, int]
    ) -> pycdlib.PyCdlib:
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
            elif str(node.rel) in streamed:
                # Payload data is streamed by ImageStreamer; pycdlib only lays it out.
                size = streamed[str(node.rel)]
                iso.add_fp(
                    cast(BinaryIO, ZeroSource(size)),
                    size,
                    iso_path=node.iso_path,
                    rr_name=node.rel.name,
                    joliet_path=node.joliet_path,
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
        esp = by_rel[eltorito.ESP_IMAGE_PATH].source
        assert esp is not None
        esp_sectors = -(-esp.stat().st_size // 512)
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
            # The load size field has 16 bits; an ESP over 32 MiB is announced with 1, which
            # UEFI firmware (EDK2) reads as "up to the end of the medium", as xorriso does.
            boot_load_size=esp_sectors if esp_sectors <= 0xFFFF else 1,
            platform_id=0xEF,
            efi=True,
            media_name="noemul",
        )
        return iso

    # -- build ------------------------------------------------------------------------------

    def build(self, out: Path, *, force: bool = False) -> BuildResult:
        """Write the ISO to `out` and return what was built. `out` appears only complete,
        by link() (a file that appeared meanwhile is never replaced), or with `force` by
        rename() over the file checked at the start (see `enginekit.outputs`)."""
        started = time.monotonic()
        out = Path(out)
        output = check_output(out, force=force, payload=self.payload)
        manifest = self._check_payload()
        version = str(manifest.version)
        volume_id = volume_id_for(version)
        sweep_stale_partials(out)
        with contextlib.ExitStack() as stack:
            work = stack.enter_context(scratch_tree("iso"))
            boot = eltorito.prepare_boot_files(
                work, self.payload / "boot/vmlinuz", self.payload / "boot/initrd.img"
            )
            nodes = self._nodes(boot)
            builder_files = set(eltorito.BUILDER_PATHS)
            streamed = {
                str(n.rel): n.source.stat().st_size
                for n in nodes
                if n.source is not None and str(n.rel) not in builder_files
            }
            iso = self._compose(volume_id, nodes, streamed)
            stack.callback(iso.close)
            fd, partial = self._write_image(iso, nodes, streamed, boot, manifest, out)
            try:
                publish(partial, output, "the ISO")
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
            finally:
                os.close(fd)
        return BuildResult(
            path=out,
            version=version,
            volume_id=volume_id,
            size_bytes=out.stat().st_size,
            seconds=time.monotonic() - started,
        )

    def _write_image(
        self,
        iso: pycdlib.PyCdlib,
        nodes: list[_Node],
        streamed: dict[str, int],
        boot: eltorito.BootFiles,
        manifest: Manifest,
        out: Path,
    ) -> tuple[int, Path]:
        """Write the finished image (MD5 implanted) to a partial file next to `out`; return
        it with its fd, which holds the ownership lock until the caller publishes it."""
        block = system_area.ISO_BLOCK
        by_rel = {str(n.rel): n for n in nodes}

        def offset_of(rel: str) -> int:
            return int(iso.get_record(iso_path=by_rel[rel].iso_path).extent_location()) * block

        # pycdlib writes the metadata (and the small builder files) into memory.
        files = [
            StreamedFile(rel, by_rel[rel].source or Path(), offset_of(rel), size)
            for rel, size in streamed.items()
            if size > 0  # an empty file has no extent of its own
        ]
        capture = MetadataCapture((f.offset, f.offset + -(-f.size // block) * block) for f in files)
        iso.write_fp(cast(BinaryIO, capture), blocksize=COPY_BLOCKSIZE)
        layout = system_area.plan_layout(
            system_area.padded_volume_blocks(int(iso.pvd.space_size)),
            offset_of(eltorito.ISOLINUX_BIN_PATH) // block,
            offset_of(eltorito.ESP_IMAGE_PATH) // block,
            boot.esp_image.stat().st_size,
        )
        total = layout.total_sectors * system_area.SECTOR
        writes = list(capture.writes)
        # The volume covers the padding and the backup GPT; the MD5 field starts blank.
        for vd in [*iso.pvds, *iso.svds]:
            vd_offset = int(vd.extent_location()) * block
            writes.append((vd_offset + 80, system_area.volume_size_field(total // block)))
        pvd_offset = int(iso.pvd.extent_location()) * block
        writes.append((pvd_offset + APPDATA_OFFSET, b" " * APPDATA_SIZE))
        writes += system_area.system_area_writes(layout, boot.isohybrid_mbr.read_bytes())

        # Tagged name + flock: the next build of the same OUT removes only what a killed one
        # left (no lock held), never a live build's partial.
        fd, partial = create_owned_partial(out.parent, _partial_prefix(out))
        try:
            streamer = ImageStreamer(
                fd, total, total - SKIP_SECTORS * block, progress=self.progress
            )
            result = streamer.stream(coalesce(writes), files)
            changed = [
                f"{e.path}: sha256 differs from the manifest (file changed)"
                for e in manifest.files
                if result.sha256.get(e.path, _EMPTY_SHA256) != e.sha256
            ]
            self._fail_if(changed)
            os.pwrite(
                fd, format_appdata(result.md5, result.fragment_sums), pvd_offset + APPDATA_OFFSET
            )
            os.fchmod(fd, 0o644)
        except BaseException as exc:
            os.close(fd)
            partial.unlink(missing_ok=True)
            if isinstance(exc, pycdlib.pycdlibexception.PyCdlibException):
                raise InternalError(f"pycdlib refused the medium: {exc}") from exc
            if isinstance(exc, OSError):
                raise HostError(
                    f"cannot write {out}: {exc.strerror or exc}",
                    hint="check the free space and permissions of the output's directory",
                ) from exc
            raise
        return fd, partial


def _partial_prefix(out: Path) -> str:
    return partial_prefix(out)


def check_output(
    out: Path, *, force: bool = False, payload: Path | None = None, medium: Path | None = None
) -> NewOutput:
    """The output rule of every new-file writer (`enginekit.outputs`): never a link, a
    directory, a device, the payload or a file inside it, the medium read from, a file in
    use; an existing file only with `force`."""
    return check_new_output(
        out,
        force=force,
        inputs=(("the payload", payload), ("the input medium", medium)),
        block_device_advice="to write a stick use 'engine-media usb write'",
        block_device_hint=f"build to a file first: engine-media build ... -o engine.iso, then "
        f"engine-media usb write engine.iso {out}",
    )


def sweep_stale_partials(out: Path) -> int:
    """Remove `.OUT.enginekit-partial.<pid>.<random>` files next to `out` whose builder died
    (nobody holds their lock); return how many went. Live builds' partials and every other
    name stay."""
    return sweep_owned_partials(out.parent, _partial_prefix(out))


def build_iso(
    payload: Path, out: Path, progress: ProgressCallback | None = None, *, force: bool = False
) -> BuildResult:
    """Convenience: `HybridIsoBuilder(payload).build(out)`."""
    return HybridIsoBuilder(payload, progress=progress).build(out, force=force)


__all__ = [
    "BuildResult",
    "HybridIsoBuilder",
    "build_iso",
    "check_output",
    "sweep_stale_partials",
    "volume_id_for",
]
