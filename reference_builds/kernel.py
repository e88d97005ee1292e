"""Fetch a Linux kernel from Debian's generic kernel package into the cache.

The reference builds boot a real kernel: Debian's generic flavour (`linux-image-amd64`),
downloaded with `apt-get download` and unpacked with `dpkg-deb`, never installed on the host.
(Debian's cloud flavour has neither AHCI nor USB storage.) `fetch_live_kernel` keeps the
modules for the disks a laptop has and the media a technician uses, in a
`lib/modules/<release>` tree that `depmod -b` has indexed, so `modprobe` works in the live
installer. The installed reference Engine boots the same image (`fetch_kernel`) and its busybox
init loads the few of those modules that let it find its own disk, on SATA, NVMe or virtio.
A second call finds the cache and does nothing.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from enginekit.cache import cache_dir
from enginekit.errors import HostError
from enginekit.process import run, run_text
from reference_builds.cache_lock import built_once

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Kernel:
    """The installed Engine's kernel image and the modules (in load order) its init loads."""

    release: str  # e.g. 6.1.0-57-amd64
    vmlinuz: Path
    modules: tuple[Path, ...]  # .ko files, dependencies first


@functools.cache
def _resolve_package(meta_package: str) -> str:
    """The kernel package `meta_package` depends on, as apt sees it now. Asked once per
    process: `apt-cache` takes about a second, and every reference medium names the kernel."""
    out = run_text(["apt-cache", "depends", meta_package])
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Depends:") and "linux-image-" in line:
            return line.split()[1]
    raise HostError(
        f"apt does not know {meta_package}",
        hint="run 'apt-get update' (tools/setup does it) and try again",
    )


def _module_name(path: str | Path) -> str:
    """A module's name as modprobe compares them, from its file: nvme-core.ko -> nvme_core."""
    return _normal(Path(path).name.split(".ko")[0])


def _module_order(modules_dir: Path, wanted: tuple[str, ...]) -> list[str]:
    """Paths (relative to modules_dir) of the wanted modules (by name, '-' and '_' alike) and
    their deps, deps first."""
    deps: dict[str, list[str]] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        name, _, rest = line.partition(":")
        deps[name] = rest.split()
    by_name = {_module_name(p): p for p in deps}
    order: list[str] = []

    def visit(path: str) -> None:
        for dep in deps.get(path, []):
            visit(dep)
        if path not in order:
            order.append(path)

    for name in wanted:
        if _normal(name) in by_name:
            visit(by_name[_normal(name)])
    return order


@dataclass(frozen=True)
class _UnpackedKernel:
    package_file: Path  # the downloaded .deb
    unpacked: Path  # the package's tree, with modules.dep made by depmod
    release: str
    dest: Path  # <root>/<release>, made afresh, holding vmlinuz

    @property
    def modules(self) -> Path:
        return self.unpacked / "lib" / "modules" / self.release


@contextmanager
def _unpacked_kernel(package: str, root: Path) -> Iterator[_UnpackedKernel]:
    """Debian's kernel `package` downloaded with apt-get and unpacked (never installed) in a
    temporary directory under `root`, its vmlinuz copied into a fresh `root/<release>`."""
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        tmpdir = Path(tmp)
        tmpdir.chmod(0o755)  # apt's sandbox user must be able to write here
        log.info("downloading %s", package)
        run(["apt-get", "download", package], cwd=tmpdir, timeout=600)
        debs = sorted(tmpdir.glob("*.deb"))
        if not debs:
            raise HostError(
                f"apt-get download {package} produced no .deb",
                hint="check the apt sources and run 'apt-get update', then tools/setup again",
            )
        unpacked = tmpdir / "x"
        run(["dpkg-deb", "-x", debs[0], unpacked])
        vmlinuz = next((unpacked / "boot").glob("vmlinuz-*"))
        release = vmlinuz.name.removeprefix("vmlinuz-")
        # The package does not ship modules.dep (depmod makes it at install time).
        run(["depmod", "-b", unpacked, release])
        dest = root / release
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        shutil.copy2(vmlinuz, dest / "vmlinuz")
        yield _UnpackedKernel(debs[0], unpacked, release, dest)


LIVE_META_PACKAGE = "linux-image-amd64"
# What the live installer's kernel must see: SATA (AHCI), NVMe, virtio, the DVD drive and its
# file system, USB sticks behind xHCI, and the FAT of an ESP or a stick. Names as modprobe
# takes them; their dependencies come from modules.dep.
LIVE_MODULES = (
    "ahci", "libahci", "libata", "sd_mod", "scsi_mod",
    "nvme", "nvme_core",
    "virtio_blk", "virtio_pci", "virtio_scsi",
    "sr_mod", "cdrom", "isofs",
    "xhci_pci", "xhci_hcd", "usb_storage", "uas",
    # A desktop's USB keyboard, for the installer's screens on the computer's own screen.
    "usbhid", "hid_generic",
    "vfat", "fat", "nls_cp437", "nls_ascii", "nls_utf8",
    # The install engine mounts the Engine disk's ext4 slots through a loop device over the
    # disk (the same code path as for an image file); ext4 wants crc32c at mount time.
    "ext4", "crc32c_generic", "loop",
)  # fmt: skip
# The installed reference Engine boots the same kernel and finds its own disk on the same
# buses: these, loaded by its busybox init with insmod, dependencies first (all in LIVE_MODULES,
# so the live kernel's pruned tree has them).
SYSTEM_MODULES = (
    "ahci", "sd_mod", "nvme", "virtio_pci", "virtio_blk", "virtio_scsi", "ext4", "crc32c_generic",
)  # fmt: skip
# Besides modules.dep, modprobe reads these to tell built-in modules from missing ones.
_MODULE_INDEX_FILES = ("modules.order", "modules.builtin", "modules.builtin.modinfo")


@dataclass(frozen=True)
class LiveKernel:
    """The live installer's kernel: the image, and a modules tree for `modprobe -d`."""

    release: str  # e.g. 6.1.0-57-amd64
    package: str  # the .deb it came from, e.g. linux-image-6.1.0-57-amd64_6.1.192-3_amd64.deb
    vmlinuz: Path
    modules_base: Path  # holds lib/modules/<release>/ with modules.dep (depmod -b this)
    load: tuple[str, ...]  # the wanted modules that are not built in, for modprobe -a
    builtin: tuple[str, ...]  # the wanted modules the kernel has built in

    @property
    def modules_dir(self) -> Path:
        return self.modules_base / "lib" / "modules" / self.release


def _live_root() -> Path:
    return cache_dir("kernel-live")


def _normal(name: str) -> str:
    """A module name as modprobe compares them: '-' and '_' are the same."""
    return name.replace("-", "_")


def cached_live_kernel(package: str | None = None) -> LiveKernel | None:
    """The live kernel in the cache (from `package`, when given), or None."""
    root = _live_root()
    index = root / "kernel.json"
    if not index.is_file():
        return None
    data = json.loads(index.read_text())
    if package is not None and data.get("package_name") != package:
        return None
    kernel = LiveKernel(
        release=data["release"],
        package=data["package"],
        vmlinuz=root / data["vmlinuz"],
        modules_base=root / data["modules_base"],
        load=tuple(data["load"]),
        builtin=tuple(data["builtin"]),
    )
    if set(kernel.load) | set(kernel.builtin) != {_normal(m) for m in LIVE_MODULES}:
        return None  # made for another module list: prune the package again
    if kernel.vmlinuz.is_file() and (kernel.modules_dir / "modules.dep").is_file():
        return kernel
    return None


def _builtin_names(modules_dir: Path) -> set[str]:
    return {
        _module_name(line)
        for line in (modules_dir / "modules.builtin").read_text().splitlines()
        if line.strip()
    }


def _prune_modules(source: Path, dest: Path, release: str) -> tuple[list[str], list[str]]:
    """Copy the wanted modules and their deps from `source` (an unpacked package's
    lib/modules/<release>) into dest/lib/modules/<release> and index them with depmod.
    Returns (modules to load, wanted modules that are built in)."""
    builtin = _builtin_names(source)
    wanted = tuple(_normal(m) for m in LIVE_MODULES)
    present = {_module_name(p) for p in source.rglob("*.ko")}
    missing = [m for m in wanted if m not in builtin and m not in present]
    if missing:
        raise HostError(
            f"the kernel package has no module {', '.join(missing)}",
            hint=f"check that apt's {LIVE_META_PACKAGE} is Debian's generic amd64 kernel",
        )
    target = dest / "lib" / "modules" / release
    target.mkdir(parents=True)
    for rel in _module_order(source, tuple(m for m in wanted if m not in builtin)):
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / rel, target / rel)
    for name in _MODULE_INDEX_FILES:
        shutil.copy2(source / name, target / name)
    run(["depmod", "-b", dest, release])
    return [m for m in wanted if m not in builtin], [m for m in wanted if m in builtin]


def fetch_live_kernel() -> LiveKernel:
    """The live installer's kernel from the cache, else from Debian's generic kernel package
    (downloaded with apt-get, unpacked with dpkg-deb, never installed), pruned to
    LIVE_MODULES and their dependencies."""
    package = _resolve_package(LIVE_META_PACKAGE)
    return built_once(
        "kernel-live", lambda: cached_live_kernel(package), lambda: _build_live_kernel(package)
    )


def _build_live_kernel(package: str) -> LiveKernel:
    root = _live_root()
    with _unpacked_kernel(package, root) as kernel:
        release, dest, source, unpacked = (
            kernel.release,
            kernel.dest,
            kernel.modules,
            kernel.unpacked,
        )
        package_file = kernel.package_file
        for config in (unpacked / "boot").glob("config-*"):
            shutil.copy2(config, dest / config.name)
        load, builtin = _prune_modules(source, dest / "base", release)
        index = {
            "package_name": package,
            "package": package_file.name,
            "release": release,
            "vmlinuz": f"{release}/vmlinuz",
            "modules_base": f"{release}/base",
            "load": load,
            "builtin": builtin,
        }
    (root / "kernel.json").write_text(json.dumps(index, indent=2) + "\n")
    found = cached_live_kernel(package)
    if found is None:
        raise HostError("the live kernel cache is incomplete after unpacking", hint="rerun it")
    return found


def system_kernel(live: LiveKernel) -> Kernel:
    """The installed Engine's kernel: the live kernel's image and SYSTEM_MODULES (those it
    does not have built in) with their dependencies, from its pruned modules tree."""
    wanted = tuple(m for m in SYSTEM_MODULES if _normal(m) not in live.builtin)
    order = _module_order(live.modules_dir, wanted)
    return Kernel(live.release, live.vmlinuz, tuple(live.modules_dir / rel for rel in order))


def cached_kernel() -> Kernel | None:
    """The installed Engine's kernel if the live kernel is in the cache, else None."""
    live = cached_live_kernel()
    return None if live is None else system_kernel(live)


def fetch_kernel() -> Kernel:
    """The installed Engine's kernel, fetching the live kernel first if needed."""
    return system_kernel(fetch_live_kernel())


if __name__ == "__main__":
    k = fetch_kernel()
    print(f"kernel {k.release}: {k.vmlinuz} (+{len(k.modules)} modules for the installed Engine)")
