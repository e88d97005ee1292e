"""The live installer's userland: Debian packages extracted by mmdebstrap into the cache.

`mmdebstrap --variant=extract` resolves the dependencies of the packages we name with apt and
unpacks them without running a maintainer script, so the tree is built the way Debian builds
its own images and nothing here resolves dependencies by hand. The tree is merged-/usr like a
bookworm system. It is cached under a key made of the package list and the versions apt would
pick for them, so a second build downloads nothing and an archive update builds a new tree.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from enginekit.cache import cache_dir
from enginekit.errors import HostError
from enginekit.process import require_tool, run, run_text
from reference_builds.cache_lock import built_once

log = logging.getLogger(__name__)

SUITE = "bookworm"
# The programs the installer runs, a shell and its basics (busybox), modprobe (kmod), the
# Python that runs EngineKit, and the UEFI boot loader a fresh install puts on the ESP
# (systemd-boot-efi). Their dependencies are apt's business.
DEBIAN_PACKAGES = (
    "python3", "e2fsprogs", "util-linux", "fdisk", "mtools", "dosfstools", "kmod",
    "busybox-static", "systemd-boot-efi",
)  # fmt: skip
SOURCES_CANDIDATES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))
MERGED_USR_HOOK = Path("/usr/share/mmdebstrap/hooks/merged-usr")


@dataclass(frozen=True)
class Userland:
    """An extracted tree in the cache and the package versions it was made from."""

    root: Path
    key: str
    versions: dict[str, str]  # the named packages and the version apt chose for each


def _sources() -> Path:
    for candidate in SOURCES_CANDIDATES:
        if candidate.is_file():
            return candidate
    raise HostError(
        "no apt sources list on this machine",
        hint="mmdebstrap takes its Debian mirror from /etc/apt/sources.list.d/debian.sources",
    )


def candidate_versions(packages: tuple[str, ...] = DEBIAN_PACKAGES) -> dict[str, str]:
    """The version apt would pick for each package (`apt-cache policy`), or a HostError."""
    out = run_text(["apt-cache", "policy", *packages])
    versions: dict[str, str] = {}
    current = None
    for line in out.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            current = line[:-1]
        elif current and line.strip().startswith("Candidate:"):
            version = line.split(":", 1)[1].strip()
            if version != "(none)":
                versions[current] = version
    missing = [p for p in packages if p not in versions]
    if missing:
        raise HostError(
            f"apt knows no version of {', '.join(missing)}",
            hint="run 'apt-get update' (tools/setup does it) and try again",
        )
    return versions


def userland_key(versions: dict[str, str]) -> str:
    blob = json.dumps({"suite": SUITE, "packages": versions}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _userland_dir(key: str) -> Path:
    return cache_dir("live-userland") / key


def cached_userland(versions: dict[str, str]) -> Userland | None:
    key = userland_key(versions)
    base = _userland_dir(key)
    if (base / "done.json").is_file() and (base / "root").is_dir():
        return Userland(root=base / "root", key=key, versions=versions)
    return None


def fetch_userland(packages: tuple[str, ...] = DEBIAN_PACKAGES) -> Userland:
    """The extracted tree for `packages` from the cache, else built with mmdebstrap."""
    versions = candidate_versions(packages)
    return built_once(
        "live-userland",
        lambda: cached_userland(versions),
        lambda: _build_userland(packages, versions),
    )


def _build_userland(packages: tuple[str, ...], versions: dict[str, str]) -> Userland:
    mmdebstrap = require_tool("mmdebstrap", "mmdebstrap")
    key = userland_key(versions)
    base = _userland_dir(key)
    with tempfile.TemporaryDirectory(dir=base.parent) as tmp:
        tree = Path(tmp) / "root"
        log.info("extracting %s with mmdebstrap", " ".join(packages))
        run(
            [
                mmdebstrap,
                "--variant=extract",
                "--quiet",
                f"--hook-dir={MERGED_USR_HOOK}",
                f"--include={','.join(packages)}",
                SUITE,
                tree,
                _sources(),
            ],
            timeout=1800,
        )
        if base.exists():
            shutil.rmtree(base)
        base.mkdir()
        tree.rename(base / "root")
    (base / "done.json").write_text(json.dumps(versions, indent=2, sort_keys=True) + "\n")
    return Userland(root=base / "root", key=key, versions=versions)


if __name__ == "__main__":
    land = fetch_userland()
    print(f"userland {land.key}: {land.root}")
