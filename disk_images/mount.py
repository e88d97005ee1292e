"""Mounts as context managers, made in a private mount namespace so they cannot outlive us.

`Mount` mounts one filesystem and unmounts it on exit (retrying while busy, lazily as a last
resort); `MountStack` creates mount points under a fresh temp dir and unmounts everything in
reverse order on success, exception or Ctrl-C. Mount points are removed with `rmdir` only,
never a recursive delete, so a mount that failed to go away can never lose its files.

Why a private namespace: after a SIGKILL no Python code runs, so a mount made in the host's
namespace would stay forever and keep its loop device busy. Before its first mount, the calling
thread moves into a mount namespace of its own (`unshare(CLONE_NEWNS)`, then `/` made
recursively private so nothing propagates out). When the process dies the kernel drops that
namespace and every mount in it; the loop devices (autoclear, see `disk_images.loop`) then see
their last close and detach themselves. Other processes never see these mounts; child
processes we start (mkfs, extlinux, cp) inherit the namespace and do. The namespace belongs to
the calling *thread*: do the mounting and the file access from the same thread. Set
`ENGINEKIT_SHARED_MOUNTS=1` to mount in the host namespace instead (to look at a mount from
another shell while debugging; then a SIGKILL does leave the mount behind).
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from disk_images.errors import MountError
from enginekit.errors import CommandFailed
from enginekit.process import require_tool, run
from enginekit.scratch import scratch_dir

log = logging.getLogger(__name__)
T = TypeVar("T")

_CLONE_NEWNS = 0x00020000
_MS_REC = 0x4000
_MS_PRIVATE = 1 << 18
_namespace_lock = threading.Lock()
_our_namespaces: set[str] = set()


def _thread_namespace() -> str:
    return os.readlink("/proc/thread-self/ns/mnt")


def private_mount_namespace() -> None:
    """Move the calling thread into a private mount namespace (once; later calls do nothing)."""
    if os.environ.get("ENGINEKIT_SHARED_MOUNTS") == "1":
        return
    with _namespace_lock:
        if _thread_namespace() in _our_namespaces:
            return
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(_CLONE_NEWNS) != 0:
            err = ctypes.get_errno()
            raise MountError(
                f"cannot create a private mount namespace: {os.strerror(err)}",
                hint="mounting needs root (CAP_SYS_ADMIN); "
                "or set ENGINEKIT_SHARED_MOUNTS=1 to mount in the host namespace",
            )
        if libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
            err = ctypes.get_errno()
            raise MountError(f"cannot make / private in our namespace: {os.strerror(err)}")
        _our_namespaces.add(_thread_namespace())
        log.debug("thread %s now in private mount namespace", threading.get_ident())


def is_mountpoint(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) > 1 and fields[1].replace("\\040", " ") == target:
                return True
    return False


class Mount:
    """`with Mount(device, mountpoint):` mounts `device` there and unmounts it on exit."""

    def __init__(
        self,
        device: Path,
        mountpoint: Path,
        *,
        fstype: str = "ext4",
        read_only: bool = False,
        options: Sequence[str] = (),
    ) -> None:
        self.device = Path(device)
        self.mountpoint = Path(mountpoint)
        self.fstype = fstype
        self.read_only = read_only
        self.options = tuple(options)
        self._mounted = False

    def __enter__(self) -> Mount:
        private_mount_namespace()
        mount = require_tool("mount", "mount")
        opts = ["ro" if self.read_only else "rw", *self.options]
        try:
            run(
                [mount, "-t", self.fstype, "-o", ",".join(opts), self.device, self.mountpoint],
                timeout=60,
            )
        except CommandFailed as exc:
            raise MountError(
                f"cannot mount {self.device} ({self.fstype}) on {self.mountpoint}: "
                f"{exc.stderr.strip().splitlines()[-1] if exc.stderr.strip() else exc.message}",
                hint=exc.hint,
            ) from None
        self._mounted = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.unmount()

    def unmount(self) -> None:
        if not self._mounted:
            return
        umount = require_tool("umount", "mount")
        for attempt in range(5):
            proc = run([umount, self.mountpoint], check=False, timeout=60)
            if proc.returncode == 0 or not is_mountpoint(self.mountpoint):
                self._mounted = False
                return
            log.debug("umount %s busy (attempt %d)", self.mountpoint, attempt + 1)
            time.sleep(0.1 * (attempt + 1))
        # Still busy (an open file somewhere): detach it now; the kernel finishes when idle.
        proc = run([umount, "--lazy", self.mountpoint], check=False)
        if proc.returncode != 0:
            raise MountError(
                f"cannot unmount {self.mountpoint}",
                hint=(proc.stderr or b"").decode("utf-8", "replace").strip() or None,
            )
        self._mounted = False
        log.warning("%s was busy; unmounted lazily", self.mountpoint)


class MountStack:
    """Several mounts under one temp dir, unmounted in reverse order of mounting.

    `with MountStack() as mounts: root = mounts.mount(dev, "slot-a")`.
    """

    def __init__(self, parent: Path | None = None) -> None:
        self._parent = parent
        self._stack = ExitStack()
        self.root: Path | None = None
        self._created: list[Path] = []

    def __enter__(self) -> MountStack:
        self.root = scratch_dir("mnt", self._parent)
        self._stack.callback(self._remove_mountpoints)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stack.__exit__(exc_type, exc, tb)

    def mount(
        self,
        device: Path,
        name: str,
        *,
        fstype: str = "ext4",
        read_only: bool = False,
        options: Sequence[str] = (),
    ) -> Path:
        if self.root is None:
            raise MountError("MountStack used outside its with-block")
        mountpoint = self.root / name
        mountpoint.mkdir()
        self._created.append(mountpoint)
        self._stack.enter_context(
            Mount(device, mountpoint, fstype=fstype, read_only=read_only, options=options)
        )
        return mountpoint

    def enter(self, context: AbstractContextManager[T]) -> T:
        """Add any other context manager (e.g. a LoopDevice) to be released in order."""
        return self._stack.enter_context(context)

    def _remove_mountpoints(self) -> None:
        # rmdir only: if something is somehow still mounted, rmdir fails and no file is lost.
        for mountpoint in reversed(self._created):
            try:
                mountpoint.rmdir()
            except FileNotFoundError:
                pass  # it was inside another mount, gone with it
            except OSError as exc:
                log.warning("cannot remove mount point %s: %s", mountpoint, exc.strerror)
        if self.root is not None:
            try:
                self.root.rmdir()
            except OSError as exc:
                log.warning("cannot remove %s: %s", self.root, exc.strerror)
