"""Errors raised by the disk_images package, named by who is at fault (see enginekit.errors).

A bad or foreign disk image is the caller's input (`UserInputError`); a machine that cannot
attach a loop device or mount a filesystem is a `HostError`. The probe reports "no Engine
installation" as a result, not as an error; these are for files it cannot even read.
"""

from __future__ import annotations

from enginekit.errors import EngineKitError, HostError, UserInputError


class InvalidDiskImage(UserInputError):
    """The path is not a disk image we can use: missing, a directory, too small, truncated."""


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


class PartitionFileError(UserInputError):
    """A file inside a partition cannot be read or written (missing, not a file, bad name)."""


class LoopDeviceError(HostError):
    """A loop device could not be attached, scanned or detached."""


class MountError(HostError):
    """A filesystem could not be mounted or unmounted."""


__all__ = [
    "EngineKitError",
    "InvalidDiskImage",
    "InvalidStateFile",
    "LoopDeviceError",
    "MountError",
    "NotAnEngineInstallation",
    "PartitionFileError",
]
