"""The `usb write` flow without its terminal: plan (check the image, examine each distinct
target), write the accepted ones, and say what came of it.

`plan_write` decides everything that can be known before a byte is written; `execute`
unmounts what was asked and runs `media.usb.writer.write_many`; `WriteOutcome.exit_status`
picks the status: 2 when a target was refused (also when others were written), 1 when a
write or its read-back failed, 0 otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from enginekit.errors import Interrupted
from enginekit.process import require_tool, run
from media.errors import TargetRefused, VerificationFailed
from media.usb import policy
from media.usb.targets import AcceptedTarget, check_image, distinct_targets, examine_target
from media.usb.writer import TargetProgress, TargetResult, TargetStatus, write_many


@dataclass(frozen=True)
class WritePlan:
    image: Path
    image_size: int
    targets: tuple[Path, ...]  # every distinct target, in the order given
    duplicates: tuple[tuple[Path, Path], ...]  # (a later name, the name kept for it)
    accepted: tuple[AcceptedTarget, ...]
    refused: tuple[tuple[Path, tuple[policy.Refusal, ...]], ...]


def plan_write(image: Path, targets: Sequence[Path], options: policy.WriteOptions) -> WritePlan:
    """Check the image and examine each target once, however many names it was given by."""
    image_size = check_image(image)
    distinct = distinct_targets(targets)
    accepted: list[AcceptedTarget] = []
    refused: list[tuple[Path, tuple[policy.Refusal, ...]]] = []
    for target, _others in distinct:
        verdict = examine_target(target, image, image_size, options)
        if isinstance(verdict, AcceptedTarget):
            accepted.append(verdict)
        else:
            refused.append((target, verdict))
    return WritePlan(
        image=image,
        image_size=image_size,
        targets=tuple(target for target, _ in distinct),
        duplicates=tuple((other, target) for target, others in distinct for other in others),
        accepted=tuple(accepted),
        refused=tuple(refused),
    )


def refusal_error(target: Path, refusals: tuple[policy.Refusal, ...]) -> TargetRefused:
    """One error per refused target: a single reason inline, several as indented details.

    The policy lists reasons most fundamental first (a partition, the system disk, ...), so
    the first one's hint is the one that helps: fixing a later reason alone would not do.
    """
    if len(refusals) == 1:
        return TargetRefused(refusals[0].line(), hint=refusals[0].hint)
    return TargetRefused(
        f"refusing {target}: {len(refusals)} reasons",
        hint=refusals[0].hint,
        details=tuple(r.reason for r in refusals),
    )


@dataclass(frozen=True)
class WriteOutcome:
    results: tuple[TargetResult, ...]  # refused and written targets, in the order given
    interrupted: bool

    @property
    def refused(self) -> list[str]:
        return [r.target for r in self.results if r.status is TargetStatus.REFUSED]

    @property
    def written(self) -> list[str]:
        return [r.target for r in self.results if r.status.succeeded]

    @property
    def failed(self) -> list[TargetResult]:
        return [
            r
            for r in self.results
            if r.status is not TargetStatus.REFUSED and not r.status.succeeded
        ]

    @property
    def exit_status(self) -> int:
        if self.refused:
            return TargetRefused.exit_status
        if self.failed or self.interrupted:
            return VerificationFailed.exit_status
        return 0


def unmount_target(target: AcceptedTarget) -> None:
    """Unmount the target's mounted partitions (deepest first; swap is left alone)."""
    if target.device is None:
        return
    umount = require_tool("umount", "mount")
    for mount in sorted(target.device.mounted_partitions, key=lambda m: -len(m.mountpoint)):
        if mount.mountpoint == "[swap]":
            continue
        run([umount, mount.mountpoint])


def execute(
    plan: WritePlan,
    options: policy.WriteOptions,
    *,
    verify: bool = True,
    on_progress: TargetProgress | None = None,
    max_rate: float | None = None,
) -> WriteOutcome:
    """Write the plan's accepted targets; the outcome lists the refused ones as well."""
    if options.unmount:
        for target in plan.accepted:
            unmount_target(target)
    report = write_many(
        plan.image,
        [t.path for t in plan.accepted],
        verify=verify,
        on_progress=on_progress,
        max_rate=max_rate,
        identities={t.path: t.identity for t in plan.accepted if t.identity is not None},
    )
    refused = refused_results(plan)
    order = {str(t): i for i, t in enumerate(plan.targets)}
    results = sorted(refused + list(report.results), key=lambda r: order.get(r.target, 0))
    return WriteOutcome(tuple(results), report.interrupted)


def refused_results(plan: WritePlan) -> list[TargetResult]:
    """A result line for each target the plan refused."""
    return [
        TargetResult(
            str(path),
            TargetStatus.REFUSED,
            plan.image_size,
            message="; ".join(r.reason for r in refusals),
        )
        for path, refusals in plan.refused
    ]


def interrupted_error(results: Sequence[TargetResult]) -> Interrupted:
    """What Ctrl-C left behind: sticks cut off mid-write will not boot; sticks stopped while
    being read back were fully written but are unproven."""
    cut = [r.target for r in results if r.status is TargetStatus.INCOMPLETE]
    unverified = [r.target for r in results if r.status is TargetStatus.NOT_VERIFIED]
    parts = []
    if cut:
        parts.append(f"{', '.join(cut)} {'is' if len(cut) == 1 else 'are'} incomplete "
                     "and will not boot")  # fmt: skip
    if unverified:
        parts.append(f"{', '.join(unverified)} {'was' if len(unverified) == 1 else 'were'} "
                     "written completely but not verified")  # fmt: skip
    if not parts:
        return Interrupted(
            "interrupted after every target had finished",
            hint="the result above shows each target's status",
        )
    hints = []
    if cut:
        hints.append(f"write {'it' if len(cut) == 1 else 'them'} again before use")
    if unverified:
        hints.append("check with 'engine-media usb verify ISO TARGET'")
    return Interrupted("interrupted: " + "; ".join(parts), hint="; ".join(hints))


__all__ = [
    "WriteOutcome",
    "WritePlan",
    "execute",
    "interrupted_error",
    "plan_write",
    "refusal_error",
    "refused_results",
    "unmount_target",
]
