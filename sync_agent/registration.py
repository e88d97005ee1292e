"""What a computer knows about itself, read from its disk without writing a byte: the probe's
`Installation`, which carries the Synchronizer registration from storage's
`/engine/config.json` (read through debugfs, so no root, no mount, no lock). The registered
server is written as the installer accepts it (`host:port`, `[v6]:port` or a URL); the identity
carries the URL the agent calls (`installer.addresses.ServerAddress.url`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from disk_images.probe import Installation, probe
from enginekit.errors import UserInputError
from enginekit.text import one_line
from installer.addresses import AddressError, parse_server


class NotRegistered(UserInputError):
    """The disk holds no Engine registered with a Synchronizer."""


@dataclass(frozen=True)
class ComputerIdentity:
    disk: Path
    installation: Installation
    server: str  # the URL to call
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
    try:
        server = parse_server(registration.server).url
    except AddressError as exc:
        raise NotRegistered(
            f"{disk}: the registered server {one_line(registration.server)!r} is not a "
            f"server address: {exc}",
            hint="register the computer again with a server such as http://HOST:PORT",
        ) from None
    return ComputerIdentity(disk, found, server, registration.token.reveal())
