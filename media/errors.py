"""Errors raised by the media package, named by who is at fault (see enginekit.errors)."""

from __future__ import annotations

from enginekit.errors import EngineKitError, HostError, UserInputError


class InvalidPayload(UserInputError):
    """A payload directory cannot be built: no manifest, missing or changed files."""


class InvalidManifest(UserInputError):
    """engine/manifest.json is missing, not JSON, or breaks the schema."""


class InvalidISO(UserInputError):
    """The file is not an ISO we can read, or its structure is broken (the medium's fault)."""


class VerificationFailed(UserInputError):
    """The medium reads fine but does not match what it claims (checksums, sizes, boot).

    Exit status 1, not 2: the input was valid, the check it asked for came out negative
    (2 is reserved for bad input)."""

    exit_status = 1


class TargetRefused(UserInputError):
    """A USB write target was refused by a safety rule (system disk, mounted, too small...)."""

    default_hint = (
        "choose another target; 'engine-media usb list --all' shows every disk and why it is hidden"
    )


class DeviceError(HostError):
    """A block device failed underneath us (I/O error, vanished)."""

    default_hint = (
        "the device failed or was unplugged; check the stick and its cable, then write it again"
    )


__all__ = [
    "DeviceError",
    "EngineKitError",
    "InvalidISO",
    "InvalidManifest",
    "InvalidPayload",
    "TargetRefused",
    "VerificationFailed",
]
