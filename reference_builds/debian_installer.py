"""Debian's own installer (netboot kernel and text initrd), the yardstick for the live installer.

`debian-installer-12-netboot-amd64` is downloaded with `apt-get download` and unpacked with
`dpkg-deb -x` into the cache (never installed); only the text front end's `linux` and
`initrd.gz` are kept. `tools/bench_live` compares the live installer's size and boot time
with them.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from enginekit.cache import cache_dir
from enginekit.errors import HostError
from enginekit.process import run

PACKAGE = "debian-installer-12-netboot-amd64"
IMAGES = Path("usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64")
# The first dialog d-i shows on its serial console.
FIRST_SCREEN = "Select a language"
# As d-i's own boot menu does (quiet), with the console on the serial line.
APPEND = "console=ttyS0,115200 quiet panic=-1"


@dataclass(frozen=True)
class DebianInstaller:
    package: str  # the .deb it came from
    kernel: Path
    initrd: Path


def fetch_debian_installer() -> DebianInstaller:
    """d-i's netboot kernel and text initrd from the cache, else from Debian's package."""
    root = cache_dir("debian-installer")
    found = sorted(
        p for p in root.iterdir() if (p / "linux").is_file() and (p / "initrd.gz").is_file()
    )
    if found:
        return DebianInstaller(found[-1].name, found[-1] / "linux", found[-1] / "initrd.gz")
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        tmpdir = Path(tmp)
        tmpdir.chmod(0o755)  # apt's sandbox user must be able to write here
        run(["apt-get", "download", PACKAGE], cwd=tmpdir, timeout=900)
        debs = sorted(tmpdir.glob("*.deb"))
        if not debs:
            raise HostError(
                f"apt-get download {PACKAGE} produced no .deb", hint="run apt-get update"
            )
        unpacked = tmpdir / "x"
        run(["dpkg-deb", "-x", debs[0], unpacked])
        dest = root / debs[0].name.removesuffix(".deb")
        dest.mkdir()
        shutil.copy2(unpacked / IMAGES / "linux", dest / "linux")
        shutil.copy2(unpacked / IMAGES / "initrd.gz", dest / "initrd.gz")
    return DebianInstaller(dest.name, dest / "linux", dest / "initrd.gz")
