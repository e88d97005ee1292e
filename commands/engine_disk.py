"""`engine-disk`: create, inspect and boot Engine disk images.

`create` makes a blank sparse image, or with `--engine VERSION` a reference installation
through the real fresh-install path, with sample VMs; `inspect` probes an image read-only;
`boot` boots the installed disk in QEMU and completes its first boot.

`boot` handles a failed pending slot within the same command: systemd-boot has then renamed the
new entry to `+0-1`, so the command powers the disk on again at once, the old slot boots, and
the status becomes "Failed".
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from commands.medium_boot import BUSES
from disk_images.boot import DiskBootResult, boot_installed_disk
from disk_images.image import create_image, partition_json, partition_type
from disk_images.probe import Installation, NoInstallation, ProbeResult, probe
from enginekit.cli import (
    ArgumentParser,
    add_common_options,
    add_debug_option,
    add_json_option,
    positive_seconds,
    print_json,
    run_main,
)
from enginekit.errors import EngineKitError, UserInputError
from enginekit.sizes import UNITS_HELP, human_size, parse_size
from enginekit.text import one_line
from reference_builds.builds import REFERENCE_BUILDS, reference_build

DEFAULT_BOOT_TIMEOUT = 120.0
DEFAULT_SIZE = "8G"


def _add_create_and_inspect(
    subparsers: argparse._SubParsersAction,  # type: ignore[type-arg]
) -> None:
    create = subparsers.add_parser(
        "create",
        help="create a blank (unpartitioned, sparse) disk image",
        description="Create a blank, sparse raw disk image that stands in for a hard disk.",
    )
    create.add_argument("disk", type=Path, help="the image file to create")
    create.add_argument(
        "--size",
        default=DEFAULT_SIZE,
        help=f"size with a unit, e.g. 8G (GiB), 512M (MiB), 8GB (10^9 bytes), 4096B "
        f"({UNITS_HELP}; default {DEFAULT_SIZE})",
    )
    create.add_argument(
        "--force",
        action="store_true",
        help="replace an existing regular file (never one in use by a loop device, "
        "a boot, an install or QEMU, never through a symlink); the new image is built "
        "beside it and renamed over it only when complete",
    )
    create.add_argument(
        "--engine",
        metavar="VERSION",
        choices=sorted(REFERENCE_BUILDS),
        help="install the reference Engine VERSION on the new disk through the real "
        f"installer, with sample VMs (one of {', '.join(sorted(REFERENCE_BUILDS))})",
    )
    create.add_argument(
        "--no-vms", action="store_true", help="with --engine: do not add the sample VMs"
    )
    create.add_argument(
        "--synchronizer",
        metavar="URL",
        help="with --engine: register the computer with this Synchronizer (engine-sync serve)",
    )
    create.add_argument(
        "--token",
        metavar="T",
        help="with --synchronizer: the computer's token (engine-sync token create)",
    )
    add_debug_option(create)
    create.set_defaults(handler=cmd_create)

    inspect = subparsers.add_parser(
        "inspect",
        help="show partitions and the Engine installation on a disk image (read-only)",
        description="Show a disk image's partitions and the Engine installation on it, "
        "or why there is none. Never writes to the image and needs no root.",
    )
    inspect.add_argument("disk", type=Path, help="the disk image to inspect")
    add_json_option(inspect, "the partitions and the installation found")
    add_debug_option(inspect)
    inspect.set_defaults(handler=cmd_inspect)


def cmd_create(args: argparse.Namespace) -> int:
    if (args.synchronizer is None) != (args.token is None):
        raise UserInputError(
            "--synchronizer and --token go together", hint="give both, e.g. from engine-sync"
        )
    if args.synchronizer is not None and args.engine is None:
        raise UserInputError(
            "--synchronizer registers an Engine installation; it needs --engine VERSION",
            hint="e.g. engine-disk create DISK --engine 4.5.0 --synchronizer URL --token T",
        )
    if args.synchronizer is not None:
        from installer.addresses import server_problem

        problem = server_problem(args.synchronizer)
        if problem is not None:
            raise UserInputError(
                f"--synchronizer {one_line(args.synchronizer)}: not a server address: {problem}",
                hint="give host:port or a URL, e.g. http://HOST:PORT",
            )
    if args.engine is not None:
        return _create_reference(args)
    size = parse_size(args.size, "--size")
    path = create_image(args.disk, size, force=args.force)
    print(f"created {path}: {human_size(size)} blank sparse disk image")
    return 0


def result_json(path: Path, result: ProbeResult) -> dict[str, Any]:
    """The `inspect --json` document for `result`."""
    doc: dict[str, Any] = {
        "disk": str(path),
        "disk_id": result.disk_id,
        "partitions": [partition_json(p) for p in result.partitions],
        "in_use_by": list(result.in_use_by),
    }
    if isinstance(result, Installation):
        doc["engine"] = {
            "version": result.version,
            "layout": result.layout.value,
            "active_slot": result.active_slot.value if result.active_slot else None,
            "upgrade_status": result.upgrade_status.value,
            "upgrade_status_label": result.upgrade_status.label,
            "registered": result.registered,
            "disk_id": result.disk_id,
            "keyboard": result.keyboard,
            "slots": {slot.value: version for slot, version in result.slots.items()},
            "install_complete": result.install_complete,
            "boot_entries": [e.file_name for e in result.boot_entries],
            "damage": list(result.damage),
            "repairs": [{"repair": r.value, "description": r.description} for r in result.repairs],
        }
        doc["vms"] = [vm.as_json() for vm in result.vms]
        doc["unreadable_vms"] = [vm.as_json() for vm in result.unreadable_vms]
        doc["problems"] = list(result.problems)
    else:
        doc["engine"] = None
        doc["vms"] = []
        doc["unreadable_vms"] = []
        doc["reason"] = result.reason
        doc["reason_kind"] = result.kind.value
    return doc


def result_text(path: Path, result: ProbeResult) -> str:
    """`inspect` for people."""
    lines = [f"disk: {path} ({human_size(path.stat().st_size)})"]
    if result.disk_id:
        lines.append(f"disk id: {result.disk_id}")
    if result.in_use_by:
        lines.append(f"in use by: {', '.join(result.in_use_by)} (shown as the file is now)")
    if result.partitions:
        lines.append("partitions:")
        for part in result.partitions:
            name = part.name or ""
            flag = " boot" if part.bootable else ""
            lines.append(
                f"  {part.number}  start {human_size(part.start_bytes):>10}  size "
                f"{human_size(part.size_bytes):>10}  {name:<16} {partition_type(part)}{flag}"
            )
    if isinstance(result, NoInstallation):
        lines.append(f"no Engine installation: {result.reason}")
        return "\n".join(lines)
    slots = ", ".join(f"{s.value}: {v or 'empty'}" for s, v in result.slots.items())
    active = f"active slot {result.active_slot.value}" if result.active_slot else "one system slot"
    damaged = "damaged " if result.damage else ""
    lines.append(f"{damaged}Engine {result.version} ({result.layout.value}), {active} ({slots})")
    for damage in result.damage:
        lines.append(f"damaged: {damage}")
    for repair in result.repairs:
        lines.append(f"repair: {repair.description} (engine-install offers it)")
    lines.append(f"upgrade status: {result.upgrade_status.label}")
    lines.append(f"registered with Synchronizer: {'yes' if result.registered else 'no'}")
    lines.append(f"keyboard: {result.keyboard or 'not set'}")
    if not result.install_complete:
        lines.append("install complete: no (first boot has not finished)")
    if result.boot_entries:
        lines.append("boot entries: " + ", ".join(e.file_name for e in result.boot_entries))
    unreadable = f" (and {len(result.unreadable_vms)} unreadable)" if result.unreadable_vms else ""
    lines.append(f"VMs: {len(result.vms)}{unreadable}")
    for vm in result.vms:
        lines.append(
            f"  {vm.name:<20} {vm.kind:<7} PV drivers {vm.pv_drivers:<8} "
            f"published for {vm.published_for:<8} {human_size(vm.size_bytes)}"
        )
    for bad in result.unreadable_vms:
        lines.append(f"  {bad.name:<20} unreadable: {bad.reason}")
    for problem in result.problems:
        lines.append(f"warning: {problem}")
    return "\n".join(lines)


def cmd_inspect(args: argparse.Namespace) -> int:
    result = probe(args.disk)
    if args.json:
        print_json(result_json(args.disk, result))
    else:
        print(result_text(args.disk, result))
    return 0


class BootFailed(EngineKitError):
    """The disk booted no Engine at all (every attempt failed). The disk's fault (or a too
    short --timeout), not the host's: exit status 1, apart from bad input (2) and host (3)."""

    exit_status = 1


def _create_reference(args: argparse.Namespace) -> int:
    from reference_builds.disk import create_reference_disk

    reference_build(args.engine)  # one clear line for an unknown version
    size = parse_size(args.size, "--size")
    registered = ""
    if args.synchronizer is not None:
        from reference_builds.registered_disk import create_registered_disk

        create_registered_disk(
            args.disk,
            args.engine,
            size,
            args.synchronizer,
            args.token,
            force=args.force,
            with_vms=not args.no_vms,
        )
        registered = f", registered with {args.synchronizer}"
    else:
        create_reference_disk(
            args.disk, args.engine, size, force=args.force, with_vms=not args.no_vms
        )
    vms = "no VMs" if args.no_vms else "4 sample VMs (2 shared, 1 custom, 1 local)"
    print(
        f"created {args.disk}: {human_size(size)} sparse disk image with a reference "
        f"Engine {args.engine} installation and {vms}{registered}"
    )
    return 0


_SILENT_CONSOLE = "nothing: the machine printed no line on its serial console in that time"


def boot_text(result: DiskBootResult) -> str:
    lines = []
    for number, attempt in enumerate(result.attempts, start=1):
        entry = f" via {attempt.entry}" if attempt.entry else ""
        if attempt.running:
            assert attempt.slot is not None
            lines.append(
                f"boot {number}{entry}: ENGINE RUNNING version={attempt.version} "
                f"slot={attempt.slot.value} vms={attempt.vms} ({attempt.seconds:.1f} s)"
            )
        else:
            lines.append(f"boot {number}{entry}: failed: {attempt.failure}")
            lines.append(f"  console: {attempt.console_tail or _SILENT_CONSOLE}")
    for spent, back in result.restored:
        lines.append(
            f"the boot stopped before the Engine ran: the try it spent was given back "
            f"({spent} -> {back})"
        )
    if result.next_entry:
        lines.append(f"the next boot starts {result.next_entry}")
    lines += [f"warning: {warning}" for warning in result.warnings]
    if result.blessed:
        lines.append(f"first boot completed: {result.blessed} marked good")
    active = result.active_slot.value if result.active_slot else "-"
    lines.append(f"active slot: {active}; upgrade status: {result.upgrade_status.label}")
    return "\n".join(lines)


def _no_boot_hint(result: DiskBootResult, timeout: float) -> str:
    """What to do when no Engine booted: a longer --timeout when every attempt ran out of
    time (QEMU under TCG takes tens of seconds to reach the Engine), else read the console."""
    if result.attempts and all(attempt.stopped for attempt in result.attempts):
        return (
            f"every attempt ran out of its {timeout:g} s; give a longer --timeout (the default "
            "is 120 s) and see the console lines of each attempt for how far it got"
        )
    return "the console lines of each attempt show where it stopped"


def cmd_boot(args: argparse.Namespace) -> int:
    from enginekit.qemu import Firmware

    if args.medium is not None:
        import sys

        from commands.medium_boot import MediumBoot, boot_from_medium, firmware_for

        return boot_from_medium(
            MediumBoot(
                disk=args.disk,
                medium=args.medium,
                usb=args.usb,
                firmware=Firmware(args.firmware) if args.firmware else firmware_for(args.disk),
                bus=args.disk_bus or "nvme",
                timeout=args.timeout or MediumBoot.timeout,
                json=args.json,
                record=args.record,
                interactive=not args.json and sys.stdin.isatty() and sys.stdout.isatty(),
            )
        )
    for option in ("usb", "record", "firmware"):
        if getattr(args, option):
            raise UserInputError(
                f"--{option} goes with --from MEDIUM",
                hint="engine-disk boot DISK --from engine-5.0.0.iso starts it from the medium",
            )
    timeout = args.timeout or DEFAULT_BOOT_TIMEOUT
    result = boot_installed_disk(args.disk, timeout=timeout, bus=BUSES[args.disk_bus or "virtio"])
    if not args.json:
        print(boot_text(result))
    if result.fell_back:
        failed = result.failed_slot.value if result.failed_slot else "new"
        booted = result.running
        raise BootFailed(
            f"{args.disk}: the new slot {failed} did not boot; slot "
            f"{booted.slot if booted else '-'} (Engine {booted.version if booted else '-'}) "
            "booted instead and the upgrade status is now Failed",
            hint="the console lines above show where the new slot stopped; run the upgrade "
            "again from the Engine medium",
        ).with_result(result.as_json())
    if not result.ok:
        last = result.attempts[-1] if result.attempts else None
        raise BootFailed(
            f"{args.disk}: no Engine booted: {last.failure if last else 'no attempt'}",
            hint=_no_boot_hint(result, timeout),
        ).with_result(result.as_json())
    if args.json:
        print_json(result.as_json())
    return 0


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="engine-disk", description="Engine disk images.")
    add_common_options(parser)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_create_and_inspect(subparsers)

    boot = subparsers.add_parser(
        "boot",
        help="boot an installed Engine disk in QEMU and complete its first boot",
        description="Boot the Engine installed on DISK (UEFI/OVMF for gpt-ab, BIOS for mbr) "
        "and wait for ENGINE RUNNING. Then complete the first boot: the booted entry is "
        "marked good and the upgrade status becomes Blank; if a newly installed slot fails, "
        "the disk is booted again at once, falls back to the old slot, and the status "
        "becomes Failed (exit status 1). A boot that times out or is interrupted leaves the "
        "upgrade status as it was and gives back the try systemd-boot had counted. A disk "
        "whose ESP cannot boot any entry is refused before QEMU starts. Writes to DISK (boot "
        "counting happens on its ESP) and holds a lock on it meanwhile, so no install or "
        "upgrade can start on it. Exit status 1 when no Engine booted.",
    )
    boot.add_argument("disk", type=Path, help="the disk image to boot")
    boot.add_argument(
        "--from",
        dest="medium",
        type=Path,
        metavar="MEDIUM",
        help="start the computer from this installer medium (an ISO, or a stick image "
        "written by usb write) in its DVD drive: the installer runs on the console (your "
        "terminal; Ctrl-] stops the computer), then the disk boots into the new Engine",
    )
    boot.add_argument(
        "--usb", action="store_true", help="with --from: the medium is a USB stick, not a DVD"
    )
    boot.add_argument(
        "--firmware",
        choices=("bios", "uefi"),
        help="with --from: the computer's firmware (default: the one its disk boots with, "
        "uefi for gpt-ab and a blank disk, bios for mbr)",
    )
    boot.add_argument(
        "--disk-bus",
        choices=tuple(BUSES),
        help="how the disk is attached: sata (AHCI), nvme or virtio (default: nvme with "
        "--from, as in a laptop; virtio otherwise)",
    )
    boot.add_argument(
        "--record",
        type=Path,
        metavar="FILE.cast",
        help="with --from: record the console as an asciicast v2 file (asciinema play "
        "replays it), and beside it a walkthrough of the screens (FILE.walkthrough.json and "
        ".md: each screen's title, text, the answer taken, the time since power-on); new files",
    )
    add_json_option(
        boot,
        "every boot attempt and the resulting state (with --from: the "
        "installer's events, one JSON object per line, then the result)",
    )
    boot.add_argument(
        "--timeout",
        type=positive_seconds,
        default=None,
        help=f"seconds to wait for each boot (default {DEFAULT_BOOT_TIMEOUT:.0f}); with "
        "--from and no terminal, for the installer's whole run (default 1800)",
    )
    add_debug_option(boot)
    boot.set_defaults(handler=cmd_boot)
    _add_agent(subparsers)
    return parser


def _add_agent(
    subparsers: argparse._SubParsersAction,  # type: ignore[type-arg]
) -> None:
    agent = subparsers.add_parser(
        "agent",
        help="play each registered Engine's update daemon: check in, install assigned kits",
        description="For each DISK registered with a Synchronizer: check in (version, slots, "
        "upgrade status, VMs); when a kit is assigned, download it (resumable, sha256 "
        "checked), install it into the inactive slot through the installer's upgrade engine "
        "and report Installed (Reboot Required); with --reboot, boot the disk and report "
        "Blank or Failed. A refused token changes nothing on the disk. Disks run side by side "
        "(at most --jobs at a time). Exit status: 0 all fine, 1 an upgrade failed or a disk "
        "was in use, 2 a token was refused or a disk is not registered.",
    )
    agent.add_argument(
        "disks",
        type=Path,
        nargs="+",
        metavar="DISK",
        help="the registered Engine disk images whose update daemon to play",
    )
    agent.add_argument("--once", action="store_true", help="one check-in per disk, then exit")
    agent.add_argument(
        "--interval",
        type=positive_seconds,
        metavar="S",
        help="seconds between check-ins (default: what the server asks for)",
    )
    agent.add_argument("--reboot", action="store_true", help="boot the disk after installing")
    agent.add_argument(
        "--restart-vms",
        action="store_true",
        help="restart the VMs, so VM image versions already downloaded start running",
    )
    agent.add_argument("--jobs", type=int, default=2, help="disks at a time (default 2)")
    agent.add_argument(
        "--cache", type=Path, help="download cache (default $ENGINEKIT_CACHE/agent-kits)"
    )
    agent.add_argument(
        "--timeout",
        type=positive_seconds,
        default=DEFAULT_BOOT_TIMEOUT,
        help=f"seconds to wait for each boot (default {DEFAULT_BOOT_TIMEOUT:.0f})",
    )
    add_debug_option(agent)
    agent.set_defaults(handler=cmd_agent)


def cmd_agent(args: argparse.Namespace) -> int:
    from enginekit.cache import cache_dir
    from sync_agent.daemon import AgentOptions, CycleResult, run_agents

    if args.jobs < 1:
        raise UserInputError(
            f"--jobs {args.jobs}: must be at least 1", hint="e.g. --jobs 4 for four disks at once"
        )
    options = AgentOptions(
        cache=args.cache or cache_dir("agent-kits"),
        reboot=args.reboot,
        boot_timeout=args.timeout,
        restart_vms=args.restart_vms,
    )
    results = run_agents(
        args.disks,
        options,
        lambda line: print(line, flush=True),
        once=args.once,
        interval=args.interval,
        jobs=args.jobs,
    )
    if CycleResult.REFUSED in results:
        return 2
    return 1 if any(r is not CycleResult.OK for r in results) else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    return run_main(parser, lambda args: int(args.handler(args)), argv)


if __name__ == "__main__":
    raise SystemExit(main())
