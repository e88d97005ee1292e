"""Errors raised by the disk_images package, named by who is at fault (see enginekit.errors).

A bad or foreign disk image is the caller's input (`UserInputError`); a machine that cannot
attach a loop device or mount a filesystem is a `HostError`. The probe reports "no Engine
installation" as a result, not as an error; these are for files it cannot even read.
"""

from __future__ import annotations

from enginekit.errors import EngineKitError, HostError, UserInputError


class InvalidDiskImage(UserInputError):
    """The path is not a disk image we can use: missing, a directory, too small, truncated."""

    default_hint = (
        "give the path of a disk image file, e.g. one made with 'engine-disk create DISK --size 8G'"
    )


class InvalidStateFile(UserInputError):
    """An Engine file on the disk (engine-release, state.json, config.json, vm.json) is broken.

    `path` is the file inside its partition, e.g. `storage:/engine/state.json`.
    """

    def __init__(self, path: str, problem: str, hint: str | None = None) -> None:
        super().__init__(
            f"{path}: {problem}",
            hint=hint or "the installation is damaged; reinstall Engine or repair the file",
        )
        self.path = path
        self.problem = problem


class NotAnEngineInstallation(UserInputError):
    """An operation needs an Engine installation and the disk does not hold one."""

    default_hint = (
        "'engine-disk inspect DISK' shows what the disk holds; install Engine "
        "on it with engine-install"
    )


class PartitionFileError(UserInputError):
    """A file inside a partition cannot be read or written (missing, not a file, bad name)."""

    default_hint = (
        "the installation on the disk is damaged; 'engine-disk inspect DISK' "
        "shows what was found, engine-install can repair it"
    )


class LoopDeviceError(HostError):
    """A loop device could not be attached, scanned or detached."""

    default_hint = (
        "loop devices need root and a free loop device; run as root, and see "
        "'losetup --list' for devices in use"
    )


class MountError(HostError):
    """A filesystem could not be mounted or unmounted."""

    default_hint = "mounting a disk image needs root and ext4 in the kernel; run as root"


__all__ = [
    "EngineKitError",
    "InvalidDiskImage",
    "InvalidStateFile",
    "LoopDeviceError",
    "MountError",
    "NotAnEngineInstallation",
    "PartitionFileError",
]
