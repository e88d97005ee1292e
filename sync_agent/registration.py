"""What a computer knows about itself, read from its disk without writing a byte: the probe's
`Installation`, which carries the Synchronizer registration from storage's
`/engine/config.json` (read through debugfs, so no root, no mount, no lock).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from disk_images.probe import Installation, probe
from enginekit.errors import UserInputError


class NotRegistered(UserInputError):
    """The disk holds no Engine registered with a Synchronizer."""


@dataclass(frozen=True)
class ComputerIdentity:
    disk: Path
    installation: Installation
    server: str
    token: str = field(repr=False)


def read_identity(disk: Path) -> ComputerIdentity:
    found = probe(disk)
    if not isinstance(found, Installation):
        raise NotRegistered(
            f"{disk}: no Engine installation ({found.reason})",
            hint="engine-disk create DISK --engine 4.5.0 --synchronizer URL --token T",
        )
    registration = found.registration
    if registration is None or not registration.registered:
        raise NotRegistered(
            f"{disk}: Engine {found.version} is not registered with a Synchronizer",
            hint="only registered computers check in; install with [registration] "
            'mode = "synchronizer"',
        )
    assert registration.server is not None
    assert registration.token is not None
    return ComputerIdentity(disk, found, registration.server, registration.token.reveal())
