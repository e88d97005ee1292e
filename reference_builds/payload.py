"""Reference Engine payloads (4.0.0, 4.5.0, 5.0.0): the live installer, the Engine, manifest.

`write_reference_payload` lays out a payload tree exactly as DESIGN.md "Reference payload and
medium layout" describes: under `boot/` the live installer's kernel and initramfs
(`live_initramfs`), under `system/` the same kernel with the Engine's busybox init, and
generated, deterministic content, so the same inputs always yield the same tree and manifest.
"""

from __future__ import annotations

import enum
import hashlib
import io
import json
import tarfile
from pathlib import Path

from enginekit.errors import UserInputError
from media.manifest import Manifest
from media.payload_tree import manifest_for_tree, write_manifest
from reference_builds.builds import ReferenceBuild, reference_build
from reference_builds.initramfs import engine_initramfs, installer_initramfs
from reference_builds.kernel import Kernel, fetch_kernel
from reference_builds.live_initramfs import LiveImage, live_image_for

PRODUCT = "Engine"


class InstallerImage(enum.StrEnum):
    """What a reference medium boots from its `boot/`."""

    LIVE = "live"  # the live installer (the real medium)
    # The kernel alone and a busybox init that prints the marker line and powers off: for
    # tests of the firmware and QEMU plumbing only, which need no installer and boot in a
    # tenth of the time under TCG (the firmware reads 2 MiB instead of 30).
    MARKER = "marker"


KEYBOARDS: dict[str, str] = {
    "us": "English (US)",
    "uk": "English (UK)",
    "de": "German",
    "fr": "French",
    "es": "Spanish",
    "it": "Italian",
    "jp": "Japanese",
}
# Later builds learned a few more layouts; it makes the keyboard screen differ per version.
EXTRA_KEYBOARDS: dict[str, dict[str, str]] = {
    "4.5.0": {"be": "Belgian", "ch": "Swiss German"},
    "5.0.0": {"be": "Belgian", "ch": "Swiss German", "nl": "Dutch", "se": "Swedish"},
}

_EULA = """\
ENGINE {version} END-USER LICENCE AGREEMENT

This is a reference build of Engine {version}, the client hypervisor, made by EngineKit for
demonstrations and tests. By installing it you accept that it is not a real product: it boots
a Linux kernel and a small init that prints a line on the serial console, and nothing more.

1. Grant. You may install Engine {version} on any number of computers, virtual or real, and
copy the installation media freely, provided this licence text travels with every copy.

2. Upgrades. Engine {version} may upgrade an existing installation of {upgrades}. Upgrade
every Engine before upgrading Synchronizer; a VM published by a newer Synchronizer may not
start on an older Engine. The paravirtual drivers shipped with this build are version {pv}.

3. No warranty. The software is provided "as is", without warranty of any kind. In no event
shall the authors be liable for any claim, damages or other liability arising from its use.

4. Data. The installer keeps your virtual machines on the storage partition when upgrading;
choosing to delete and reinstall erases them. Keep a backup.
"""


def keyboards_for(version: str) -> dict[str, str]:
    """Layout code -> display name offered by the reference build `version`."""
    reference_build(version)
    return {**KEYBOARDS, **EXTRA_KEYBOARDS.get(version, {})}


def eula_text(version: str) -> str:
    build = reference_build(version)
    upgrades = " or ".join(build.upgrade_from) if build.upgrade_from else "no earlier version"
    return _EULA.format(version=version, upgrades=upgrades, pv=build.pv_drivers)


def _deterministic_bytes(seed: str, size: int) -> bytes:
    """`size` bytes that depend only on `seed` (SHA-256 in counter mode)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def pv_drivers_tar(pv_version: str) -> bytes:
    """A small, reproducible tar standing in for the paravirtual driver bundle."""
    members = {
        "README": f"Engine paravirtual drivers {pv_version} (reference build stub).\n".encode(),
        "VERSION": f"{pv_version}\n".encode(),
        f"pv-net-{pv_version}.sys": _deterministic_bytes(f"pv-net-{pv_version}", 3072),
        f"pv-blk-{pv_version}.sys": _deterministic_bytes(f"pv-blk-{pv_version}", 2048),
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"pv-drivers-{pv_version}/{name}")
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _engined(version: str) -> str:
    return f"""#!/bin/sh
# Engine {version} management daemon (reference build stub).
echo "engined {version}: nothing to manage in a reference build"
"""


def _defaults(build: ReferenceBuild) -> bytes:
    defaults = {
        "keyboard": "us",
        "pv_drivers": build.pv_drivers,
        "registration": {"mode": "standalone", "server": None, "token": None},
        "version": str(build.version),
    }
    return (json.dumps(defaults, sort_keys=True, indent=2) + "\n").encode()


def _write(dest: Path, rel: str, data: bytes) -> None:
    target = dest / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def write_reference_payload(
    version: str,
    dest: Path,
    kernel: Kernel | None = None,
    live: LiveImage | None = None,
    installer: InstallerImage = InstallerImage.LIVE,
) -> Manifest:
    """Write the reference payload tree for `version` into `dest` and return its manifest.

    `dest` may exist but must be empty. `kernel` (the installed Engine's) defaults to the
    cached Debian kernel (`fetch_kernel()`), `live` (what the medium boots) to the live
    installer image of `version` (`live_image_for`); for the same inputs the tree is
    byte-for-byte the same every time. `installer=MARKER` puts the marker-only init under
    `boot/` instead of the live installer.
    """
    build = reference_build(version)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UserInputError(
            f"{dest}: exists and is not an empty directory",
            hint="give a new or empty directory for the payload",
        )
    kernel = kernel or fetch_kernel()
    vmlinuz = kernel.vmlinuz.read_bytes()
    if installer is InstallerImage.MARKER:
        boot_kernel, boot_initrd = vmlinuz, installer_initramfs(version)
    else:
        live = live or live_image_for(version)
        boot_kernel, boot_initrd = live.kernel.vmlinuz.read_bytes(), live.initrd.read_bytes()
    keyboards = keyboards_for(version)
    files: dict[str, bytes] = {
        "boot/vmlinuz": boot_kernel,
        "boot/initrd.img": boot_initrd,
        "engine/EULA.txt": eula_text(version).encode(),
        "engine/keyboards.json": (json.dumps(keyboards, indent=2) + "\n").encode(),
        "system/vmlinuz": vmlinuz,
        "system/initrd.img": engine_initramfs(kernel),
        "system/root/usr/lib/engine/engined": _engined(version).encode(),
        f"system/root/usr/share/engine/pv-drivers/pv-drivers-{build.pv_drivers}.tar": (
            pv_drivers_tar(build.pv_drivers)
        ),
        "system/root/etc/engine/defaults.json": _defaults(build),
    }
    dest.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        _write(dest, rel, data)
    (dest / "system/root/usr/lib/engine/engined").chmod(0o755)
    manifest = manifest_for_tree(
        dest,
        product=PRODUCT,
        version=build.version,
        upgrade_from=build.upgrade_from,
        pv_drivers=build.pv_drivers,
        layout=build.layout,
        keyboards=list(keyboards),
    )
    write_manifest(dest, manifest)
    return manifest
