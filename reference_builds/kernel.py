"""Fetch a Linux kernel from Debian's cloud kernel package into the cache.

The reference Engine builds boot a real kernel. We take it from Debian's
`linux-image-*-cloud-amd64` package with `apt-get download` and unpack it with `dpkg-deb`,
never installing it on the host. Only the kernel image and the few modules the Engine init
needs (virtio block devices) are kept. A second call finds the cache and does nothing.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from enginekit.cache import cache_dir
from enginekit.errors import HostError
from enginekit.process import run, run_text

log = logging.getLogger(__name__)

META_PACKAGE = "linux-image-cloud-amd64"
# Modules the installed Engine's init loads to see its own virtio disk, with their deps.
WANTED_MODULES = ("virtio_blk", "virtio_pci", "virtio_scsi", "sd_mod")


@dataclass(frozen=True)
class Kernel:
    """A kernel image in the cache and the modules (in load order) that go with it."""

    release: str  # e.g. 6.1.0-56-cloud-amd64
    vmlinuz: Path
    modules: tuple[Path, ...]  # .ko files, dependencies first


def _kernel_root() -> Path:
    return cache_dir("kernel")


def cached_kernel() -> Kernel | None:
    """The kernel already in the cache, or None."""
    index = _kernel_root() / "kernel.json"
    if not index.is_file():
        return None
    data = json.loads(index.read_text())
    root = _kernel_root()
    kernel = Kernel(
        release=data["release"],
        vmlinuz=root / data["vmlinuz"],
        modules=tuple(root / m for m in data["modules"]),
    )
    if kernel.vmlinuz.is_file() and all(m.is_file() for m in kernel.modules):
        return kernel
    return None


def _resolve_package() -> str:
    out = run_text(["apt-cache", "depends", META_PACKAGE])
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Depends:") and "linux-image-" in line:
            return line.split()[1]
    raise HostError(
        f"apt does not know {META_PACKAGE}",
        hint="run 'apt-get update' (tools/setup does it) and try again",
    )


def _module_order(modules_dir: Path, wanted: tuple[str, ...]) -> list[str]:
    """Paths (relative to modules_dir) of wanted modules and their deps, deps first."""
    deps: dict[str, list[str]] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        name, _, rest = line.partition(":")
        deps[name] = rest.split()
    by_stem = {Path(p).name.split(".ko")[0]: p for p in deps}
    order: list[str] = []

    def visit(path: str) -> None:
        for dep in deps.get(path, []):
            visit(dep)
        if path not in order:
            order.append(path)

    for stem in wanted:
        if stem in by_stem:
            visit(by_stem[stem])
    return order


def fetch_kernel() -> Kernel:
    """Return the cached kernel, downloading and unpacking Debian's package if needed."""
    found = cached_kernel()
    if found:
        return found
    package = _resolve_package()
    root = _kernel_root()
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        tmpdir = Path(tmp)
        tmpdir.chmod(0o755)  # apt's sandbox user must be able to write here
        log.info("downloading %s", package)
        run(["apt-get", "download", package], cwd=tmpdir, timeout=600)
        debs = sorted(tmpdir.glob("*.deb"))
        if not debs:
            raise HostError(
                f"apt-get download {package} produced no .deb",
                hint="check the apt sources; 'apt-get download' needs the package to be available",
            )
        unpacked = tmpdir / "x"
        run(["dpkg-deb", "-x", debs[0], unpacked])
        vmlinuz = next((unpacked / "boot").glob("vmlinuz-*"))
        release = vmlinuz.name.removeprefix("vmlinuz-")
        modules_dir = unpacked / "lib" / "modules" / release
        # The package does not ship modules.dep (depmod makes it at install time).
        run(["depmod", "-b", unpacked, release])
        dest = root / release
        if dest.exists():
            shutil.rmtree(dest)
        (dest / "modules").mkdir(parents=True)
        shutil.copy2(vmlinuz, dest / "vmlinuz")
        kept = []
        for rel in _module_order(modules_dir, WANTED_MODULES):
            target = dest / "modules" / Path(rel).name
            shutil.copy2(modules_dir / rel, target)
            kept.append(str(target.relative_to(root)))
    index = {"release": release, "vmlinuz": f"{release}/vmlinuz", "modules": kept}
    (root / "kernel.json").write_text(json.dumps(index, indent=2) + "\n")
    found = cached_kernel()
    if found is None:
        raise HostError("the kernel cache is incomplete after unpacking", hint="rerun tools/setup")
    return found


if __name__ == "__main__":
    k = fetch_kernel()
    print(f"kernel {k.release}: {k.vmlinuz} (+{len(k.modules)} modules)")
