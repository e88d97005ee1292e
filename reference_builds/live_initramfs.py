"""The live installer's initramfs: a Debian userland, EngineKit and its wheels, in one cpio.

The kernel unpacks the archive into its RAM-backed rootfs, so the installer runs the same from
a DVD and from a stick and needs no root file system of its own. The archive holds:

- the tree `live_userland` extracted with mmdebstrap, without what an installer never reads
  (documentation, man pages, locales, the iconv modules but the code page mtools needs,
  apt's state, unused stdlib packages);
- the generic kernel's pruned modules tree (`kernel.fetch_live_kernel`), for modprobe;
- EngineKit's packages from this checkout and the pure-Python wheels they import at run time,
  taken from the project's venv (installed there from PyPI);
- every Python module compiled ahead to an unchecked-hash .pyc in place of its source (no
  compile at boot, no timestamps), when the build's Python matches the target's
  (`PythonForm`; sources only is the other choice, smaller but compiled at each boot);
- an /init that mounts the kernel file systems, prints the installer marker, loads the
  drivers, lists the block devices, checks the medium when the boot menu's check entry was
  chosen (`commands.engine_live_check`), runs `commands.engine_live`, then powers off.

The initramfs is two archives back to back (the kernel unpacks both): the large base above,
cached under a key of the package versions and these rules, and EngineKit with the /init,
small and rebuilt whenever the code changes. Both are written by the deterministic newc writer
in `initramfs` and compressed with the codec measured to give the best size and boot time
(see DESIGN.md).
"""

from __future__ import annotations

import enum
import functools
import gzip
import hashlib
import importlib.metadata
import importlib.util
import lzma
import marshal
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from enginekit.cache import cache_dir
from enginekit.errors import HostError
from enginekit.process import require_tool, run
from enginekit.versions import EngineVersion
from media.boot_menu import ENTRY_OPTION, KERNEL_OPTIONS, BootEntry
from reference_builds.cache_lock import built_once, remove_stale, used
from reference_builds.initramfs import FAILED_MARKER, INSTALLER_MARKER, NewcArchive
from reference_builds.kernel import LiveKernel, fetch_live_kernel
from reference_builds.live_userland import Userland, fetch_userland

REPO_ROOT = Path(__file__).resolve().parents[1]
# EngineKit's product packages and the programs; never the reference-build scaffolding.
ENGINEKIT_PACKAGES = ("enginekit", "media", "disk_images", "installer", "commands")
# The distributions EngineKit imports on the installer's path (pyudev serves only USB writing
# from a running host and needs libudev: it stays out).
WHEELS = (
    "pycdlib", "questionary", "prompt_toolkit", "wcwidth", "rich", "markdown-it-py",
    "mdurl", "pygments",
)  # fmt: skip
SITE_DIR = "usr/lib/python3/dist-packages"
# Trees of the Debian userland an installer never reads.
PRUNED_DIRS = (
    "dev", "usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale",
    "usr/share/lintian", "usr/share/bash-completion", "usr/share/bug", "usr/share/perl5",
    "usr/share/zoneinfo", "usr/share/common-licenses", "usr/include",
    "var/cache", "var/lib/apt", "var/log",
)  # fmt: skip
# glibc's iconv modules: only the DOS code page mtools converts FAT names with (it refuses to
# open a FAT filesystem without it) and the index files that name the modules.
GCONV_DIR = "usr/lib/x86_64-linux-gnu/gconv"
GCONV_KEPT = ("gconv-modules", "gconv-modules.cache", "gconv-modules.d", "IBM850.so")
PRUNED_STDLIB = (
    "test", "tkinter", "idlelib", "ensurepip", "lib2to3", "pydoc_data", "turtledemo",
    "distutils", "venv", "config-{version}-x86_64-linux-gnu", "unittest", "sqlite3",
)  # fmt: skip
# Busybox applets the init needs that the Debian packages do not provide.
APPLETS = ("sh", "mount", "umount", "mkdir", "cat", "ls", "sleep", "usleep", "sync",
           "poweroff", "tail")  # fmt: skip
EXTRA_DIRS = ("proc", "sys", "run", "mnt")
ENTRY_MODULE = "commands.engine_live"
CHECK_MODULE = "commands.engine_live_check"  # the boot menu's check entry
LIVE_APPEND = KERNEL_OPTIONS  # what the medium's boot menu gives, less the entry


class Compression(enum.StrEnum):
    """Codecs the generic kernel unpacks (CONFIG_RD_GZIP, _XZ, _ZSTD are all =y)."""

    GZIP = "gzip"
    XZ = "xz"
    ZSTD = "zstd"

    @property
    def suffix(self) -> str:
        return {"gzip": "gz", "xz": "xz", "zstd": "zst"}[self.value]

    def compress(self, data: bytes) -> bytes:
        if self is Compression.GZIP:
            return gzip.compress(data, compresslevel=9, mtime=0)
        if self is Compression.XZ:
            # The kernel's xz decoder checks CRC32 only.
            return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32, preset=9)
        zstd = require_tool("zstd", "zstd")
        with tempfile.TemporaryDirectory() as tmp:
            source = Path(tmp) / "initrd.cpio"
            source.write_bytes(data)
            target = Path(tmp) / "initrd.zst"
            run([zstd, "-q", "-19", "-T0", source, "-o", target], timeout=1800)
            return target.read_bytes()


DEFAULT_COMPRESSION = Compression.ZSTD


class PythonForm(enum.StrEnum):
    """How Python modules are shipped: compiled ahead (no sources) or as sources."""

    BYTECODE = "bytecode"  # unchecked-hash .pyc in place of each .py: nothing compiled at boot
    SOURCE = "source"  # .py only: smaller, but each boot compiles what it imports


@dataclass(frozen=True)
class LiveImage:
    """What the live installer boots: the kernel and the initramfs, both in the cache."""

    kernel: LiveKernel
    initrd: Path
    compression: Compression
    append: str = LIVE_APPEND


def live_init_script(version: str | EngineVersion, modules: tuple[str, ...]) -> str:
    """The live /init: marker first, then drivers, the block devices, EngineKit, power off."""
    checked = EngineVersion.parse(str(version))  # also keeps shell syntax out of the script
    for name in modules:
        if not name.replace("_", "").isalnum():
            raise HostError(
                f"odd kernel module name {name!r} in the live kernel",
                hint="remove the live kernel from the cache (kernel-live/) and build again",
            )
    marker = INSTALLER_MARKER.format(version=checked, firmware="$firmware")
    failed = FAILED_MARKER.format(reason="$1")
    return f"""#!/bin/sh
# Engine {checked} live installer init, generated by EngineKit (reference_builds.live_initramfs).
export PATH=/usr/sbin:/usr/bin

halt_now() {{
    sync
    poweroff -f
    echo o > /proc/sysrq-trigger
    sleep 30
}}

fail() {{
    echo "{failed}"
    halt_now
}}

mount -t proc proc /proc || fail mount-proc
mount -t sysfs sysfs /sys || fail mount-sysfs
mount -t devtmpfs devtmpfs /dev || fail mount-devtmpfs
# Pseudo-terminals, for the installer shown on the screen as well (enginekit.console_mirror).
mkdir -p /dev/pts
mount -t devpts devpts /dev/pts || fail mount-devpts
# Keep kernel messages from splitting our lines on the serial console.
echo 1 > /proc/sys/kernel/printk
if [ -d /sys/firmware/efi ]; then firmware=uefi; else firmware=bios; fi
# The boot menu leaves the cursor on its last line: the marker starts a line of its own.
echo
echo "{marker}"

modprobe -a {" ".join(modules)} || fail modprobe

# Controllers find their disks asynchronously and there is no udev to say when they are done:
# wait until the list of block devices has not changed for 1.5 s (at most 15 s). usb-storage
# waits a second (delay_use) before it scans a stick; a shorter window misses the stick.
seen=
same=0
tries=150
while [ "$same" -lt 15 ] && [ "$tries" -gt 0 ]; do
    now=$(ls /sys/block)
    if [ "$now" = "$seen" ]; then same=$((same + 1)); else same=0; seen=$now; fi
    tries=$((tries - 1))
    usleep 100000
done
echo "ENGINE BLOCK DEVICES $(echo $seen)"

# The boot menu's check entry: the embedded MD5 over the raw medium first; a damaged medium
# stops here and installs nothing.
case " $(cat /proc/cmdline) " in
*" {ENTRY_OPTION}={BootEntry.CHECK.value} "*)
    python3 -m {CHECK_MODULE} --version {checked} || fail medium-check ;;
esac

python3 -m {ENTRY_MODULE} || fail engine-live
halt_now
"""


# --- collecting the files ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Member:
    path: str  # inside the archive, no leading slash
    source: Path  # on this machine


def _python_version(tree: Path) -> str:
    found = sorted(p.name.removeprefix("python") for p in (tree / "usr/lib").glob("python3.*"))
    if len(found) != 1:
        raise HostError(
            f"{tree}: expected one usr/lib/python3.X in the userland, found {found}",
            hint="remove the userland from the cache (live-userland/) and build again",
        )
    return found[0]


def _pruned(tree: Path) -> Callable[[str], bool]:
    version = _python_version(tree)
    stdlib = f"usr/lib/python{version}"
    dirs = PRUNED_DIRS + tuple(f"{stdlib}/{d.format(version=version)}" for d in PRUNED_STDLIB)
    prefixes = tuple(d + "/" for d in dirs)

    def pruned(rel: str) -> bool:
        if rel.startswith(prefixes) or "__pycache__" in rel.split("/"):
            return True
        if rel.startswith(GCONV_DIR + "/"):
            return rel.removeprefix(GCONV_DIR + "/").split("/")[0] not in GCONV_KEPT
        return rel.endswith(".pyc")

    return pruned


def _walk(top: Path) -> Iterator[Path]:
    """Every path under `top`, parents before children, in a stable order."""
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        base = Path(dirpath)
        for name in sorted(dirnames + filenames):
            yield base / name


def _wheel_files(name: str) -> Iterator[tuple[str, Path]]:
    """(path relative to site-packages, file) for one installed distribution."""
    dist = importlib.metadata.distribution(name)
    for entry in dist.files or ():
        rel = PurePosixPath(str(entry))
        if rel.parts[0] == ".." or "__pycache__" in rel.parts or rel.suffix == ".pyc":
            continue  # console scripts in the venv's bin, and the host's bytecode
        source = Path(str(dist.locate_file(entry)))
        if source.is_file():
            yield str(rel), source


def _enginekit_files() -> Iterator[tuple[str, Path]]:
    for package in ENGINEKIT_PACKAGES:
        for path in _walk(REPO_ROOT / package):
            rel = path.relative_to(REPO_ROOT)
            if path.is_file() and "__pycache__" not in rel.parts and path.suffix != ".pyc":
                yield rel.as_posix(), path


def _pyc(source: bytes, target_path: str) -> bytes:
    """An unchecked-hash .pyc (PEP 552) of `source`, as `target_path` in the guest."""
    code = compile(source, "/" + target_path, "exec", dont_inherit=True)
    flags = 0b01  # hash-based, source not checked
    return (
        importlib.util.MAGIC_NUMBER
        + flags.to_bytes(4, "little")
        + importlib.util.source_hash(source)
        + marshal.dumps(code)
    )


class _Builder:
    def __init__(self, compile_python: bool) -> None:
        self.archive = NewcArchive()
        self.dirs: set[str] = set()
        self.compile_python = compile_python

    def dir(self, path: str, perm: int = 0o755) -> None:
        parts = PurePosixPath(path).parts
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if sub not in self.dirs:
                self.dirs.add(sub)
                self.archive.add_dir(sub, perm if i == len(parts) else 0o755)

    def file(self, path: str, data: bytes, perm: int) -> None:
        self.dir(str(PurePosixPath(path).parent))
        if self.compile_python and path.endswith(".py"):
            try:
                self.archive.add_file(path + "c", _pyc(data, path), 0o644)
                return
            except (SyntaxError, ValueError):
                pass  # not a module Python can import (a template, test data): keep it as is
        self.archive.add_file(path, data, perm)

    def copy(self, path: str, source: Path) -> None:
        info = source.lstat()
        perm = stat.S_IMODE(info.st_mode)
        if stat.S_ISDIR(info.st_mode):
            self.dir(path, perm)
        elif stat.S_ISLNK(info.st_mode):
            self.dir(str(PurePosixPath(path).parent))
            self.archive.add_symlink(path, os.readlink(source))
        elif stat.S_ISREG(info.st_mode):
            self.file(path, source.read_bytes(), perm)
        # Device nodes and sockets of the extracted tree are not copied: devtmpfs has them.


# Bump when base_archive() lays the tree out differently: the cached base segments go stale.
BASE_LAYOUT = 2


def _base_key(
    userland: Userland, kernel: LiveKernel, compression: Compression, form: PythonForm
) -> str:
    """What the base segment is made of: a change to any of these makes a new segment."""
    wheels = {name: importlib.metadata.version(name) for name in WHEELS}
    rules = (
        BASE_LAYOUT, PRUNED_DIRS, GCONV_KEPT, PRUNED_STDLIB, APPLETS, EXTRA_DIRS,
        sys.version_info[:2],
    )  # fmt: skip
    modules = (kernel.load, kernel.builtin)  # a new module list repacks the modules tree
    blob = repr(
        (userland.key, kernel.package, modules, wheels, rules, compression.value, form.value)
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def base_archive(userland: Userland, kernel: LiveKernel, compile_python: bool) -> bytes:
    """The newc archive of everything but EngineKit: the Debian userland, the kernel's
    modules, the wheels. It changes only with the packages, so it is compressed once."""
    tree = userland.root
    builder = _Builder(compile_python=compile_python)
    pruned = _pruned(tree)
    for path in _walk(tree):
        rel = path.relative_to(tree).as_posix()
        if rel == "dev":
            builder.dir("dev")
        elif not pruned(rel):
            builder.copy(rel, path)
    builder.archive.add_char_device("dev/console", 5, 1)
    builder.archive.add_char_device("dev/null", 1, 3, 0o666)
    for directory in EXTRA_DIRS:
        builder.dir(directory)
    for applet in APPLETS:
        if not any((tree / d / applet).exists() for d in ("usr/bin", "usr/sbin")):
            builder.archive.add_symlink(f"usr/bin/{applet}", "busybox")
    modules = f"usr/lib/modules/{kernel.release}"
    for path in _walk(kernel.modules_dir):
        builder.copy(f"{modules}/{path.relative_to(kernel.modules_dir).as_posix()}", path)
    builder.dir(SITE_DIR)
    for name in WHEELS:
        for rel, source in _wheel_files(name):
            builder.file(f"{SITE_DIR}/{rel}", source.read_bytes(), 0o644)
    return builder.archive.to_bytes()


def enginekit_archive(
    version: str | EngineVersion, kernel: LiveKernel, compile_python: bool
) -> bytes:
    """The newc archive laid over the base: EngineKit's packages and the /init."""
    builder = _Builder(compile_python=compile_python)
    builder.dirs.update(PurePosixPath(SITE_DIR).parents[i].as_posix() for i in range(3))
    builder.dirs.add(SITE_DIR)  # these are in the base segment already
    for rel, source in _enginekit_files():
        builder.file(f"{SITE_DIR}/{rel}", source.read_bytes(), 0o644)
    builder.archive.add_file("init", live_init_script(version, kernel.load).encode(), 0o755)
    return builder.archive.to_bytes()


def _cached_segment(name: str, compression: Compression, make: Callable[[], bytes]) -> Path:
    out = cache_dir("live-initramfs") / f"{name}.cpio.{compression.suffix}"

    def build() -> Path:
        partial = out.with_name(out.name + ".partial")
        partial.write_bytes(compression.compress(make()))
        partial.rename(out)
        return out

    return built_once(f"live-initramfs-{out.name}", lambda: used(out), build)


def build_live_image(
    version: str | EngineVersion,
    compression: Compression = DEFAULT_COMPRESSION,
    python_form: PythonForm = PythonForm.BYTECODE,
) -> LiveImage:
    """The live installer's kernel and initramfs, built (or found) in the cache.

    The initramfs is two compressed newc archives back to back, which the kernel unpacks one
    after the other: the large base (cached by what it is made of) and EngineKit with the
    init (small, rebuilt when the code changes). Bytecode needs the build's Python to be the
    target's minor version; otherwise sources are shipped."""
    kernel = fetch_live_kernel()
    userland = fetch_userland()
    host_python = f"{sys.version_info.major}.{sys.version_info.minor}"
    if _python_version(userland.root) != host_python:
        python_form = PythonForm.SOURCE
    compile_python = python_form is PythonForm.BYTECODE
    base = _cached_segment(
        f"base-{_base_key(userland, kernel, compression, python_form)}",
        compression,
        lambda: base_archive(userland, kernel, compile_python),
    )
    top = enginekit_archive(version, kernel, compile_python)
    top_path = _cached_segment(
        f"enginekit-{hashlib.sha256(top).hexdigest()[:16]}", compression, lambda: top
    )
    out = cache_dir("live-initramfs") / f"initrd-{base.name.split('.')[0]}-{top_path.name}"

    def join() -> Path:
        partial = out.with_name(out.name + ".partial")
        partial.write_bytes(base.read_bytes() + top_path.read_bytes())
        partial.rename(out)
        # Each change of EngineKit's code makes a new image (~22 MB) and top segment; those of
        # every version and form share these names, and go only once unused for a day.
        for pattern, current in (("initrd-*", out), ("enginekit-*", top_path), ("base-*", base)):
            remove_stale(out.parent, pattern, keep=current)
        return out

    initrd = built_once(f"live-initramfs-{out.name}", lambda: used(out), join)
    return LiveImage(kernel=kernel, initrd=initrd, compression=compression)


@functools.cache
def live_image_for(version: str) -> LiveImage:
    """`build_live_image(version)` with the defaults, once per process: finding the cached
    image asks apt for the package versions and recompiles EngineKit, a few seconds that
    every reference medium and payload of a test session would pay again."""
    return build_live_image(version)


if __name__ == "__main__":
    form = PythonForm(sys.argv[2]) if len(sys.argv) > 2 else PythonForm.BYTECODE
    image = build_live_image(sys.argv[1] if len(sys.argv) > 1 else "5.0.0", python_form=form)
    size = image.kernel.vmlinuz.stat().st_size + image.initrd.stat().st_size
    print(f"live kernel {image.kernel.vmlinuz}\nlive initrd {image.initrd} ({size} bytes total)")
