"""Boot a machine in QEMU (TCG) and read what it prints on its serial console.

`QemuMachine` is a context manager: the QEMU process is killed and reaped on exit, on an
exception and on Ctrl-C, and its scratch directory (serial log, QEMU's own output, OVMF
variable store) is removed; the directory carries our PID, so the next machine removes one a
SIGKILLed process left (`enginekit.scratch`). `boot()` is the one-call form: start, wait for
a line matching a pattern (or for the guest to power off, or a timeout), and return a
`BootResult`.

Every file reaches QEMU as a JSON `-blockdev` (drives, OVMF code and variables) or as an
option that takes the whole argument as its name (`-kernel`, `-initrd`, `-serial file:`),
never inside a `key=value,...` string: a disk named `victim,snapshot=off` is that file.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from enginekit.errors import HostError, InternalError, MissingCapability, UserInputError
from enginekit.process import require_tool, run, spawn
from enginekit.scratch import scratch_tree

SCRATCH_KIND = "qemu"

OVMF_CODE_CANDIDATES = ("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_CODE.fd")
OVMF_VARS_CANDIDATES = ("/usr/share/OVMF/OVMF_VARS_4M.fd", "/usr/share/OVMF/OVMF_VARS.fd")


class Firmware(enum.StrEnum):
    BIOS = "bios"
    UEFI = "uefi"


class DriveKind(enum.StrEnum):
    CDROM = "cdrom"  # an optical drive (AHCI/IDE CD)
    DISK = "disk"  # a hard disk (virtio-blk)
    USB = "usb"  # a USB mass-storage stick behind an xHCI controller
    SATA = "sata"  # a hard disk on the machine's AHCI controller (a laptop's SATA disk)
    NVME = "nvme"  # an NVMe SSD


@dataclass(frozen=True)
class Drive:
    path: Path
    kind: DriveKind
    # When True the guest writes go to a throw-away overlay, the file is untouched.
    snapshot: bool = False


@dataclass(frozen=True)
class BootSpec:
    firmware: Firmware
    drives: tuple[Drive, ...]
    memory_mb: int = 512
    # Direct kernel boot (bypasses the bootloader); for tests of an initramfs alone.
    kernel: Path | None = None
    initrd: Path | None = None
    append: str = ""
    # The second serial port (the guest's ttyS1) written to this file: the live installer's
    # JSON events. None: the machine has one serial port.
    events_log: Path | None = None
    # The console (ttyS0) also on this Unix socket, for a person at a terminal
    # (`enginekit.console_relay`): QEMU starts the guest once a client has connected, and
    # still logs the console for `wait_for`.
    console_socket: Path | None = None
    # A screen and a keyboard: standard VGA (no window is opened) and the PS/2 keyboard,
    # reached through QMP: `QemuMachine.screen_text()` reads what a text-mode screen shows,
    # `QemuMachine.press_keys()` types. False: the machine has no display at all.
    screen: bool = False


@dataclass(frozen=True)
class BootResult:
    spec: BootSpec
    output: str  # everything the serial console printed
    matched: str | None  # the line that matched the wanted pattern, if any
    powered_off: bool  # the guest stopped QEMU by itself (poweroff/reboot with -no-reboot)
    timed_out: bool
    seconds: float
    lines: list[str] = field(default_factory=list)

    def tail(self, n: int = 5) -> str:
        """Last non-empty lines of the console, for error messages."""
        clean = [ln for ln in _strip_ansi(self.output).splitlines() if ln.strip()]
        return " | ".join(clean[-n:])


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1bc")


def _strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def _first_existing(candidates: tuple[str, ...], what: str) -> Path:
    for c in candidates:
        if Path(c).is_file():
            return Path(c)
    raise MissingCapability(f"{what} not found", hint="run tools/setup (or: apt-get install ovmf)")


def _absolute(path: Path) -> str:
    """The path as QEMU must get it: absolute (QEMU may not share our working directory
    forever), not resolved (a link names the file the user named), and valid UTF-8."""
    text = os.path.abspath(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UserInputError(
            f"{os.fsdecode(path)!r}: QEMU cannot be given a file name that is not valid UTF-8",
            hint="rename the file (or link it under a UTF-8 name) and try again",
        ) from None
    return text


def _file_node(path: Path, read_only: bool) -> dict[str, object]:
    # QEMU's `file` driver opens regular files only; a stick is a `host_device`.
    try:
        device = stat.S_ISBLK(os.stat(path).st_mode)
    except OSError:
        device = False  # QEMU names the missing file itself
    driver = "host_device" if device else "file"
    return {"driver": driver, "filename": _absolute(path), "read-only": read_only}


def _raw_node(node: str, path: Path, *, read_only: bool) -> str:
    """A `-blockdev` in JSON syntax: the file name is one JSON string, so commas, `=`,
    spaces or a `json:` prefix in it are never read as QEMU options (as in `-drive file=`)."""
    doc = {
        "driver": "raw",
        "node-name": node,
        "read-only": read_only,
        "file": _file_node(path, read_only),
    }
    return json.dumps(doc, ensure_ascii=False)


def _size_of(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.lseek(fd, 0, os.SEEK_END)  # a block device's st_size is 0
    finally:
        os.close(fd)


def _snapshot_node(node: str, path: Path, overlay: Path) -> str:
    """Guest writes go to a qcow2 overlay in our scratch directory; `path` is opened
    read-only as its backing file (named here, not in the overlay, so nothing re-parses it)."""
    qemu_img = require_tool("qemu-img", "qemu-utils")
    run([qemu_img, "create", "-q", "-f", "qcow2", str(overlay), str(_size_of(path))])
    doc = {
        "driver": "qcow2",
        "node-name": node,
        "file": _file_node(overlay, False),
        "backing": {"driver": "raw", "read-only": True, "file": _file_node(path, True)},
    }
    return json.dumps(doc, ensure_ascii=False)


VGA_TEXT_MEMORY = 0xB8000  # a colour VGA's text-mode memory, as the CPU sees it
VGA_TEXT_SIZE = 0x8000
VGA_COLUMNS = 80


def _qmp_option(path: Path) -> str:
    # Inside a key=value list a comma is written twice (QEMU's option syntax).
    return f"unix:{_absolute(path).replace(',', ',,')},server=on,wait=off"


class _QmpClient:
    """QEMU's machine protocol over its Unix socket: one JSON object per line; after the
    greeting and `qmp_capabilities`, each command gets a `return` or an `error` (events
    in between are skipped)."""

    def __init__(self, path: Path, running: Callable[[], bool]) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        deadline = time.monotonic() + 30
        while True:
            try:
                self._sock.connect(str(path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if not running() or time.monotonic() > deadline:
                    self._sock.close()
                    raise HostError(
                        "the machine stopped before its QMP socket could be reached",
                        hint="see the console output for why it stopped",
                    ) from None
                time.sleep(0.05)
        self._sock.settimeout(30)
        self._lines = self._sock.makefile("rb")
        self._reply()  # the greeting
        self.command("qmp_capabilities")

    def _reply(self) -> dict[str, object]:
        while True:
            line = self._lines.readline()
            if not line:
                raise HostError("QEMU closed its QMP socket", hint="the machine stopped")
            message = json.loads(line)
            if "event" not in message:
                return dict(message)

    def command(self, name: str, **arguments: object) -> object:
        request = {"execute": name, **({"arguments": arguments} if arguments else {})}
        self._sock.sendall(json.dumps(request).encode() + b"\n")
        reply = self._reply()
        if "error" in reply:
            raise InternalError(f"QMP {name}: {reply['error']}")
        return reply.get("return")

    def close(self) -> None:
        self._lines.close()
        self._sock.close()


class QemuMachine:
    """A running QEMU guest. Use as a context manager; read the console with `wait_for`."""

    def __init__(self, spec: BootSpec) -> None:
        self.spec = spec
        self._tmp: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._resources = contextlib.ExitStack()
        self.serial_log: Path | None = None
        self.qemu_log: Path | None = None  # QEMU's own stdout and stderr
        self.started = 0.0
        self._qmp_client: _QmpClient | None = None

    def _argv(self, tmp: Path) -> list[str]:
        qemu = require_tool("qemu-system-x86_64", "qemu-system-x86")
        spec = self.spec
        assert self.serial_log is not None
        argv: list[str] = [
            qemu,
            "-machine", "q35",
            "-accel", os.environ.get("ENGINEKIT_QEMU_ACCEL", "tcg"),
            "-m", str(spec.memory_mb),
            "-nodefaults",
            "-display", "none",
            "-vga", "std" if spec.screen else "none",
            *self._console_options(),
            *(("-serial", f"file:{_absolute(spec.events_log)}") if spec.events_log else ()),
            *(("-qmp", _qmp_option(self._qmp_path(tmp))) if spec.screen else ()),
            "-monitor", "none",
            "-no-reboot",
            "-boot", "menu=off,strict=on",
        ]  # fmt: skip
        machine = "q35"
        if spec.firmware is Firmware.UEFI:
            code = _first_existing(OVMF_CODE_CANDIDATES, "OVMF firmware")
            vars_src = _first_existing(OVMF_VARS_CANDIDATES, "OVMF variable store")
            vars_copy = tmp / "OVMF_VARS.fd"
            shutil.copyfile(vars_src, vars_copy)
            argv += [
                "-blockdev", _raw_node("pflash0", code, read_only=True),
                "-blockdev", _raw_node("pflash1", vars_copy, read_only=False),
            ]  # fmt: skip
            machine += ",pflash0=pflash0,pflash1=pflash1"
        argv[argv.index("-machine") + 1] = machine
        has_usb = any(d.kind is DriveKind.USB for d in spec.drives)
        if has_usb:
            argv += ["-device", "qemu-xhci,id=xhci"]
        ahci_ports = 0  # q35's AHCI controller: ports ide.0 to ide.5, one drive each
        for i, drive in enumerate(spec.drives):
            node = f"drive{i}"
            port = ""
            if drive.kind in (DriveKind.CDROM, DriveKind.SATA):
                port = f",bus=ide.{ahci_ports}"
                ahci_ports += 1
            # With -kernel QEMU reserves boot index 0 for the kernel: no drive may claim one.
            boot_index = "" if spec.kernel else f",bootindex={i}"
            if drive.kind is DriveKind.CDROM:
                argv += ["-blockdev", _raw_node(node, drive.path, read_only=True)]
                argv += ["-device", f"ide-cd,drive={node}{port}{boot_index}"]
                continue
            if drive.snapshot:
                argv += ["-blockdev", _snapshot_node(node, drive.path, tmp / f"{node}.qcow2")]
            else:
                argv += ["-blockdev", _raw_node(node, drive.path, read_only=False)]
            if drive.kind is DriveKind.DISK:
                argv += ["-device", f"virtio-blk-pci,drive={node}{boot_index}"]
            elif drive.kind is DriveKind.SATA:  # q35's built-in AHCI controller
                argv += ["-device", f"ide-hd,drive={node}{port}{boot_index}"]
            elif drive.kind is DriveKind.NVME:
                argv += ["-device", f"nvme,drive={node},serial=engine{i}{boot_index}"]
            else:
                argv += ["-device", f"usb-storage,bus=xhci.0,drive={node}{boot_index}"]
        if spec.kernel:
            # -kernel, -initrd and -serial file: take the rest of the argument as the name.
            argv += ["-kernel", _absolute(spec.kernel)]
            if spec.initrd:
                argv += ["-initrd", _absolute(spec.initrd)]
            argv += ["-append", spec.append or "console=ttyS0 panic=-1"]
        return argv

    @staticmethod
    def _qmp_path(tmp: Path) -> Path:
        return tmp / "qmp.sock"

    def _qmp(self) -> _QmpClient:
        if not self.spec.screen or self._tmp is None:
            raise InternalError(
                "this machine has no screen or keyboard", hint="boot it with BootSpec(screen=True)"
            )
        if self._qmp_client is None:
            self._qmp_client = _QmpClient(self._qmp_path(self._tmp), self.running)
        return self._qmp_client

    def screen_text(self) -> str:
        """What the screen shows in VGA text mode (a BIOS computer's console): the rows of
        the text memory at 0xB8000, trailing blanks cut. The console scrolls by moving its
        start within that memory, so the rows on view are among these, not always first. A
        frame buffer (UEFI) holds pixels, not text: its screen reads as blank rows."""
        assert self._tmp is not None
        dump = self._tmp / "vga-text.bin"
        self._qmp().command("pmemsave", val=VGA_TEXT_MEMORY, size=VGA_TEXT_SIZE, filename=str(dump))
        cells = dump.read_bytes()[0::2]  # each cell: the character, then its colours
        rows = [cells[i : i + VGA_COLUMNS] for i in range(0, len(cells), VGA_COLUMNS)]
        return "\n".join(row.decode("cp437").rstrip(" \0") for row in rows)

    def press_keys(self, *keys: str) -> None:
        """Press and release each key on the keyboard, in order (QEMU's key names: "ret",
        "esc", "down", "a"...)."""
        for key in keys:
            self._qmp().command("send-key", keys=[{"type": "qcode", "data": key}])

    def _console_options(self) -> tuple[str, ...]:
        assert self.serial_log is not None
        if self.spec.console_socket is None:
            return ("-serial", f"file:{_absolute(self.serial_log)}")
        # Inside a key=value list a comma is written twice (QEMU's option syntax).
        sock = _absolute(self.spec.console_socket).replace(",", ",,")
        log = _absolute(self.serial_log).replace(",", ",,")
        chardev = f"socket,id=console,path={sock},server=on,wait=on,logfile={log}"
        return ("-chardev", chardev, "-serial", "chardev:console")

    def __enter__(self) -> QemuMachine:
        # Until QEMU runs, a failure (no QEMU, no OVMF, Ctrl-C) unwinds here: __exit__ is
        # not called when __enter__ raises.
        with contextlib.ExitStack() as stack:
            self._tmp = stack.enter_context(scratch_tree(SCRATCH_KIND))
            self.serial_log = self._tmp / "serial.log"
            self.serial_log.touch()
            self.qemu_log = self._tmp / "qemu.log"
            argv = self._argv(self._tmp)
            self.started = time.monotonic()
            # A file, not a pipe: nobody reads QEMU's output until it exits, and a full
            # 64 KiB pipe would stall it.
            with open(self.qemu_log, "wb") as output:
                self._proc = spawn(argv, stdout=output.fileno(), stderr=subprocess.STDOUT)
            self._resources = stack.pop_all()
        return self

    def console(self) -> str:
        if self.serial_log is None or not self.serial_log.exists():
            return ""
        return _strip_ansi(self.serial_log.read_bytes().decode("utf-8", "replace"))

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def qemu_stderr(self) -> str:
        """What QEMU itself printed (errors such as an unreadable drive); empty while running."""
        if self._proc is None or self.qemu_log is None or self.running():
            return ""
        try:
            return self.qemu_log.read_bytes().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_for(
        self,
        pattern: re.Pattern[str],
        timeout: float,
        fail: re.Pattern[str] | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> tuple[str | None, bool, bool]:
        """Wait until a console line matches `pattern`, the guest stops, or `timeout` passes.

        Returns (matched line or None, powered_off, timed_out). A line matching `fail`
        (e.g. a kernel panic) ends the wait early with no match; `stop` returning True ends
        it as the timeout does (the caller's seam for "stop the machine at this point").
        """
        deadline = time.monotonic() + timeout
        while True:
            text = self.console()
            for line in text.splitlines():
                if pattern.search(line):
                    return line.strip(), False, False
                if fail is not None and fail.search(line):
                    return None, False, False
            if not self.running():
                text = self.console()
                for line in text.splitlines():
                    if pattern.search(line):
                        return line.strip(), True, False
                return None, True, False
            if time.monotonic() > deadline or (stop is not None and stop()):
                return None, False, True
            time.sleep(0.1)

    def wait_exit(self, timeout: float) -> bool:
        if self._proc is None:
            return True
        try:
            self._proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._qmp_client is not None:
            self._qmp_client.close()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        self._resources.close()


def boot(
    spec: BootSpec,
    pattern: str | re.Pattern[str],
    timeout: float = 120.0,
    fail: str | re.Pattern[str] | None = r"Kernel panic|No bootable device|Boot failed",
    stop: Callable[[], bool] | None = None,
    power_off_wait: float = 10.0,
) -> BootResult:
    """Boot `spec` and wait for a console line matching `pattern`. Never raises on a failed
    boot: the result says what happened; raising is the caller's choice.

    After a match the guest has `power_off_wait` seconds to power off by itself (a guest
    that ends its run there: its last writes reach the disk files) before it is killed;
    0 kills at once a guest that would go on, e.g. an installer waiting for keys."""
    want = re.compile(pattern) if isinstance(pattern, str) else pattern
    bad = re.compile(fail) if isinstance(fail, str) else fail
    with QemuMachine(spec) as machine:
        matched, powered_off, timed_out = machine.wait_for(want, timeout, bad, stop)
        if matched is not None and not powered_off and power_off_wait > 0:
            powered_off = machine.wait_exit(power_off_wait)
        output = machine.console()
        if not machine.running():
            err = machine.qemu_stderr()
            if err.strip() and matched is None:
                output += "\n[qemu] " + err.strip()
        seconds = time.monotonic() - machine.started
    return BootResult(
        spec=spec,
        output=output,
        matched=matched,
        powered_off=powered_off,
        timed_out=timed_out,
        seconds=seconds,
        lines=output.splitlines(),
    )
