"""How `engine-media usb` talks to the technician: target lines, the typed confirmation, one
progress bar per target (rate and ETA), the result table, the disk listing and its JSON.

rich is imported by the functions that draw, so building the parser stays fast.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from enginekit.errors import UserInputError
from enginekit.sizes import human_size
from media.usb import discovery, policy
from media.usb.targets import AcceptedTarget

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID
    from rich.table import Table

    from media.usb.copier import Phase
    from media.usb.copier import Progress as CopyProgress
    from media.usb.write_flow import WriteOutcome
    from media.usb.writer import TargetResult


def stdout_console() -> Console:
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    return console


def stderr_console() -> Console:
    from rich.console import Console

    console = Console(stderr=True)
    if not console.is_terminal:
        console = Console(stderr=True, width=160)
    return console


def size_text(size: int) -> str:
    """Both unit systems: sticks are sold in GB, the kernel counts GiB."""
    return f"{human_size(size)} ({size / 1000**3:.1f} GB)"


def device_json(device: discovery.BlockDeviceInfo, hidden: Sequence[str]) -> dict[str, object]:
    return {
        "path": device.path,
        "model": device.model,
        "vendor": device.vendor,
        "serial": device.serial,
        "size_bytes": device.size_bytes,
        "bus": str(device.bus),
        "removable": device.removable,
        "read_only": device.read_only,
        "mounted_partitions": [
            {"device": m.device, "mountpoint": m.mountpoint} for m in device.mounted_partitions
        ],
        "holds": sorted(str(h) for h in device.holds),
        "hidden": list(hidden),
    }


def disk_table(
    rows: Sequence[tuple[discovery.BlockDeviceInfo, Sequence[str]]], all_: bool
) -> Table:
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("DEVICE", "MODEL", "SERIAL", "SIZE", "BUS", "MOUNTED"):
        table.add_column(column, overflow="fold")
    if all_:
        table.add_column("HIDDEN BECAUSE", overflow="fold")
    for disk, hidden in rows:
        mounted = ", ".join(f"{m.device} on {m.mountpoint}" for m in disk.mounted_partitions)
        cells = [
            disk.path,
            " ".join(p for p in (disk.vendor, disk.model) if p) or "-",
            disk.serial or "-",
            size_text(disk.size_bytes),
            str(disk.bus),
            mounted or "-",
        ]
        if all_:
            cells.append("; ".join(hidden) or "-")
        table.add_row(*cells)
    return table


def ask(prompt: str) -> str:
    sys.stderr.write(prompt)
    sys.stderr.flush()
    line = sys.stdin.readline()
    if not sys.stdin.isatty():
        sys.stderr.write("\n")  # the answer was not echoed: keep the next output on its own line
    if not line:
        raise UserInputError(
            "no confirmation given; nothing was written", hint="answer the prompt, or add --yes"
        )
    return line.strip()


def show_duplicates(duplicates: Sequence[tuple[Path, Path]]) -> None:
    for other, kept in duplicates:
        sys.stderr.write(f"{other} is the same target as {kept}: it is written once\n")


def show_targets(heading: str, accepted: Sequence[AcceptedTarget]) -> None:
    """Name every target (model, serial, size), with or without a question after it."""
    err = sys.stderr
    err.write(heading + "\n")
    for target in accepted:
        if target.device is None:
            err.write(f"  {target.path}  regular file, {size_text(target.size)}\n")
        else:
            dev = target.device
            err.write(f"  {dev.path}  {dev.describe()}  {size_text(dev.size_bytes)}  {dev.bus}\n")
        if target.holds is not None:
            err.write(f"    holds {target.holds}\n")


def confirm(image: Path, image_size: int, accepted: Sequence[AcceptedTarget]) -> None:
    """Ask for 'yes' (and a large disk's name); an error when the answer is anything else."""
    err = sys.stderr
    show_targets(f"About to ERASE and write {image.name} ({human_size(image_size)}) to:", accepted)
    err.write("Everything on them will be lost.\n")
    if ask(f"Type 'yes' to erase {len(accepted)} target(s): ").lower() != "yes":
        raise UserInputError(
            "not confirmed; nothing was written",
            hint="type 'yes' in full to erase the targets, or add --yes",
        )
    for target in accepted:
        large = target.device
        if large is not None and policy.needs_large_disk_confirmation(large):
            err.write(
                f"{large.path} is {size_text(large.size_bytes)}, larger than 64 GB: this is "
                "rarely a USB stick.\n"
            )
            if ask(f"Type its name '{large.name}' to confirm it is the right disk: ") != (
                large.name
            ):
                raise UserInputError(
                    f"{large.path} not confirmed; nothing was written",
                    hint=f"type the disk's name ({large.name}) exactly, or leave it out",
                )


class ProgressDisplay:
    """One rich progress bar per target; updated from the copier threads."""

    def __init__(self, targets: Sequence[Path], total: int) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.progress: Progress = Progress(
            TextColumn("{task.fields[target]}"),
            TextColumn("{task.fields[phase]:<8}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=stderr_console(),
        )
        self._lock = threading.Lock()
        self._phase: dict[str, Phase] = {}
        self._tasks: dict[str, TaskID] = {
            str(t): self.progress.add_task(str(t), total=total, target=str(t), phase="queued")
            for t in targets
        }

    def update(self, target: str, progress: CopyProgress) -> None:
        task = self._tasks[target]
        with self._lock:
            if self._phase.get(target) is not progress.phase:
                self._phase[target] = progress.phase
                # A new phase restarts the bar so rate and ETA describe this phase only.
                self.progress.reset(
                    task, total=progress.total, target=target, phase=str(progress.phase)
                )
        self.progress.update(task, completed=progress.done)


def result_table(results: Sequence[TargetResult]) -> Table:
    from rich.table import Table

    table = Table(title="Result", title_justify="left", box=None, pad_edge=False)
    for column in ("TARGET", "STATUS", "WRITTEN", "WRITE RATE", "VERIFY", "DETAIL"):
        table.add_column(column, overflow="fold")
    for r in results:
        rate = f"{human_size(int(r.write_rate))}/s" if r.write_rate else "-"
        verified = f"{r.verify_seconds:.1f} s" if r.verify_seconds else "-"
        table.add_row(
            r.target,
            str(r.status),
            f"{human_size(r.bytes_written)} of {human_size(r.image_size)}",
            rate,
            verified,
            r.message or "-",
        )
    return table


def summary_line(outcome: WriteOutcome) -> str | None:
    """With refused targets, which ones were written after all (None when none was refused)."""
    if not outcome.refused:
        return None
    written = ", ".join(outcome.written) or "none"
    return f"written: {written}; refused: {', '.join(outcome.refused)} (left untouched)"
