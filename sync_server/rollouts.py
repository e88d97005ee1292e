"""Staged rollouts on the database: create one (targets checked like `assign`, the ones that
cannot take the kit listed as skipped with the reason), feed the state machine
(`sync_server.rollout_state`) each stage's tally, and apply its answer: start the stages it
reached (Pending assignments for their members), hold the Pending ones while paused, withdraw
them when cancelled.

Every change goes through `apply`, inside the caller's transaction; check-ins and status
reports call `on_contact`, so a rollout moves when its computers talk, with no clock of its
own. A target succeeded when its assignment is Blank and the computer runs the kit's version
(the new slot booted and was committed); Failed is failed, whatever the reason.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from disk_images.state import UpgradeStatus
from sync_server.api_common import ApiError, active_assignment, kit_or_404, row_or_404
from sync_server.eligibility import Graph, assignment_of, kit_graph, refusal
from sync_server.models import Assignment, Computer, Kit, Rollout, RolloutTarget, utc_now
from sync_server.rollout_schemas import (
    RolloutDoc,
    RolloutRequest,
    RolloutStageDoc,
    RolloutTargetDoc,
)
from sync_server.rollout_state import (
    RolloutEvent,
    RolloutPosition,
    RolloutRefused,
    RolloutState,
    StageTally,
    Thresholds,
    parse_stages,
    stage_name,
    stage_sizes,
    transition,
)

NOT_OFFERED = "not offered: the rollout was cancelled"


class TargetOutcome(enum.StrEnum):
    WAITING = "waiting"  # its stage has not started
    SKIPPED = "skipped"
    NOT_OFFERED = "not offered"  # the rollout was cancelled before its stage or its offer
    PENDING = "pending"
    IN_FLIGHT = "in flight"  # Signalled or Installed (Reboot Required)
    SUCCEEDED = "succeeded"
    FAILED = "failed"


def target_outcome(
    target: RolloutTarget, assignment: Assignment | None, computer: Computer, kit: Kit
) -> TargetOutcome:
    if target.skipped:
        return TargetOutcome.SKIPPED
    if assignment is None:
        return TargetOutcome.NOT_OFFERED if target.note else TargetOutcome.WAITING
    status = UpgradeStatus(assignment.status)
    if status is UpgradeStatus.FAILED:
        return TargetOutcome.FAILED
    if status is UpgradeStatus.PENDING:
        return TargetOutcome.PENDING
    if status is UpgradeStatus.BLANK and computer.running_version == kit.version:
        return TargetOutcome.SUCCEEDED
    return TargetOutcome.IN_FLIGHT


def _target_refusal(session: Session, computer: Computer, kit: Kit, graph: Graph) -> str | None:
    why = refusal(session, computer, kit, graph)
    if why is not None:
        return why
    active = active_assignment(session, computer.id)
    if active is not None:
        return (
            f"Engine {kit.version} is already assigned outside this rollout "
            f"(status {UpgradeStatus(active.status).label})"
        )
    return None


def _thresholds(rollout: Rollout) -> Thresholds:
    return Thresholds(success=rollout.success_threshold, error=rollout.error_threshold)


def _sizes(rollout: Rollout) -> list[int]:
    return [int(s) for s in rollout.stages.get("sizes", [])]


def _position(rollout: Rollout) -> RolloutPosition:
    return RolloutPosition(
        state=RolloutState(rollout.state),
        stage=rollout.stage,
        reason=rollout.reason,
        acknowledged=tuple(int(n) for n in rollout.acknowledged.get("failures", [])),
        override=rollout.override,
    )


def _rows(
    session: Session, rollout: Rollout
) -> Sequence[tuple[RolloutTarget, Assignment | None, Computer]]:
    query = (
        select(RolloutTarget, Assignment, Computer)
        .join(Computer, Computer.id == RolloutTarget.computer_id)
        .outerjoin(Assignment, Assignment.id == RolloutTarget.assignment_id)
        .where(RolloutTarget.rollout_id == rollout.id)
        .order_by(RolloutTarget.stage.is_(None), RolloutTarget.stage, RolloutTarget.computer_id)
    )
    return [(t, a, c) for t, a, c in session.execute(query).all()]


def _tallies(session: Session, rollout: Rollout, kit: Kit) -> list[StageTally]:
    """Each stage's members, succeeded and failed (as `target_outcome` judges them), counted
    by the database in one GROUP BY: a check-in of a target of a rollout over thousands of
    computers reads a row per stage, not a row per target."""
    count = len(_sizes(rollout)) + 1
    members, succeeded, failed = [0] * count, [0] * count, [0] * count
    status = Assignment.status
    query = (
        select(
            RolloutTarget.stage,
            func.count(),
            func.count(
                case(
                    (
                        (status == UpgradeStatus.BLANK.value)
                        & (Computer.running_version == kit.version),
                        1,
                    )
                )
            ),
            func.count(case((status == UpgradeStatus.FAILED.value, 1))),
        )
        .join(Computer, Computer.id == RolloutTarget.computer_id)
        .outerjoin(Assignment, Assignment.id == RolloutTarget.assignment_id)
        .where(
            RolloutTarget.rollout_id == rollout.id,
            RolloutTarget.stage.is_not(None),
            RolloutTarget.skipped.is_(False),
        )
        .group_by(RolloutTarget.stage)
    )
    for stage, in_stage, stage_succeeded, stage_failed in session.execute(query).all():
        assert stage is not None  # filtered above
        at = stage
        members[at], succeeded[at], failed[at] = in_stage, stage_succeeded, stage_failed
    return [StageTally(m, s, f) for m, s, f in zip(members, succeeded, failed, strict=True)]


def _start_stage(session: Session, rollout: Rollout, kit: Kit, index: int) -> None:
    """Pending assignments for the stage's members; one that cannot take the kit any more
    (assigned another kit since, upgraded by hand) is skipped with the reason."""
    graph = kit_graph(session)
    members = session.scalars(
        select(RolloutTarget).where(
            RolloutTarget.rollout_id == rollout.id,
            RolloutTarget.stage == index,
            RolloutTarget.skipped.is_(False),
        )
    )
    for target in members:
        computer = session.get(Computer, target.computer_id)
        assert computer is not None
        why = _target_refusal(session, computer, kit, graph)
        if why is not None:
            target.skipped, target.note = True, f"skipped when its stage started: {why}"
            continue
        row = assignment_of(session, kit, computer)
        if row is None:
            row = Assignment(kit_id=kit.id, computer_id=computer.id, status="")
            session.add(row)
        row.status, row.detail, row.rollout_id = UpgradeStatus.PENDING.value, "", rollout.id
        row.updated_at = utc_now()
        session.flush()
        target.assignment_id = row.id


def _withdraw(session: Session, rollout: Rollout) -> None:
    """Cancelled: the Pending assignments go (those computers were never Signalled) and the
    stages not started are not offered; what is in flight completes."""
    for target in session.scalars(
        select(RolloutTarget).where(
            RolloutTarget.rollout_id == rollout.id, RolloutTarget.skipped.is_(False)
        )
    ):
        row = session.get(Assignment, target.assignment_id) if target.assignment_id else None
        if row is None:
            target.note = NOT_OFFERED
        elif row.status == UpgradeStatus.PENDING and row.rollout_id == rollout.id:
            target.assignment_id, target.note = None, NOT_OFFERED
            session.flush()
            session.delete(row)


def apply(session: Session, rollout: Rollout, event: RolloutEvent) -> None:
    """Move `rollout` on `event` and carry out what the state machine decided.
    RolloutRefused when the event does not apply in its state."""
    kit = session.get(Kit, rollout.kit_id)
    assert kit is not None
    thresholds = _thresholds(rollout)
    position = transition(_position(rollout), event, _tallies(session, rollout, kit), thresholds)
    # Starting a stage can skip members, which changes its tally: judge again until stable.
    while position.stage > rollout.stage:
        for index in range(rollout.stage + 1, position.stage + 1):
            _start_stage(session, rollout, kit, index)
        rollout.stage = position.stage
        tallies = _tallies(session, rollout, kit)
        position = transition(position, RolloutEvent.PROGRESS, tallies, thresholds)
    if position.state is RolloutState.CANCELLED and rollout.state != RolloutState.CANCELLED:
        _withdraw(session, rollout)
    if position != _position(rollout):
        rollout.state, rollout.reason = position.state.value, position.reason
        rollout.acknowledged = {"failures": list(position.acknowledged)}
        rollout.override = position.override
        rollout.updated_at = utc_now()


def act(session: Session, rollout_id: int, event: RolloutEvent) -> Rollout:
    """The operator's pause, resume or cancel (409 with the reason when it does not apply)."""
    rollout = rollout_or_404(session, rollout_id, lock=True)
    try:
        apply(session, rollout, event)
    except RolloutRefused as exc:
        raise ApiError(
            409,
            f"rollout {rollout_id}: cannot {event.value}: {exc}",
            hint=f"engine-sync rollout status {rollout_id} shows its state",
        ) from None
    return rollout


def on_contact(session: Session, computer_id: int) -> None:
    """A computer checked in or reported: re-judge every running rollout it is part of."""
    running = session.scalars(
        select(Rollout)
        .join(RolloutTarget, RolloutTarget.rollout_id == Rollout.id)
        .where(RolloutTarget.computer_id == computer_id, Rollout.state == RolloutState.RUNNING)
        .with_for_update()
    ).all()
    for rollout in running:
        apply(session, rollout, RolloutEvent.PROGRESS)


def holds_offer(session: Session, assignment: Assignment) -> bool:
    """A Pending assignment of a paused rollout is not offered until it resumes."""
    if assignment.rollout_id is None or assignment.status != UpgradeStatus.PENDING:
        return False
    rollout = session.get(Rollout, assignment.rollout_id)
    return rollout is not None and rollout.state == RolloutState.PAUSED


def rollout_or_404(session: Session, rollout_id: int, *, lock: bool = False) -> Rollout:
    hint = "engine-sync rollout list lists them"
    return row_or_404(session, Rollout, rollout_id, "rollout", hint, lock=lock)


def create_rollout(session: Session, body: RolloutRequest) -> Rollout:
    """The rollout, its test group started. 404 for unknown computers, 409 when a test
    computer cannot take the kit, 422 when the stages do not fit the remaining targets."""
    kit = kit_or_404(session, body.kit_id)
    graph = kit_graph(session)
    test_ids = list(dict.fromkeys(body.test_group))
    if body.computers is None:
        other_ids = list(session.scalars(select(Computer.id).order_by(Computer.id)))
    else:
        other_ids = list(dict.fromkeys(body.computers))
    other_ids = [c for c in other_ids if c not in test_ids]
    unknown = [c for c in [*test_ids, *other_ids] if session.get(Computer, c) is None]
    if unknown:
        raise ApiError(
            404,
            f"no computer {', '.join(map(str, unknown))}",
            hint="engine-sync computers lists the computers",
        )
    problems: list[str] = []
    skipped: list[tuple[int, str]] = []
    eligible: list[tuple[int, str]] = []
    for computer_id in test_ids:
        computer = session.get(Computer, computer_id)
        assert computer is not None
        if (why := _target_refusal(session, computer, kit, graph)) is not None:
            problems.append(f"computer {computer.id} ({computer.name}): {why}")
    if problems:
        raise ApiError(
            409,
            f"the test group cannot take Engine {kit.version}: {len(problems)} refused",
            hint="choose test computers that can take the kit (engine-sync computers)",
            details=tuple(problems),
        )
    for computer_id in other_ids:
        computer = session.get(Computer, computer_id)
        assert computer is not None
        why = _target_refusal(session, computer, kit, graph)
        (eligible if why is None else skipped).append((computer_id, why or ""))
    specs = parse_stages(body.stages)
    try:
        sizes = stage_sizes(specs, len(eligible))
    except ValueError as exc:
        raise ApiError(422, f"the stages do not fit: {exc}", hint="e.g. 30%,60%,100%") from None
    rollout = Rollout(
        name=body.name or f"Engine {kit.version}",
        kit_id=kit.id,
        state=RolloutState.RUNNING.value,
        stages={"specs": [str(s) for s in specs], "sizes": sizes},
        success_threshold=body.success_threshold,
        error_threshold=body.error_threshold,
        acknowledged={"failures": []},
    )
    session.add(rollout)
    session.flush()
    for computer_id in test_ids:
        session.add(RolloutTarget(rollout_id=rollout.id, computer_id=computer_id, stage=0))
    queue = iter(eligible)
    for index, size in enumerate(sizes, start=1):
        for _ in range(size):
            computer_id, _why = next(queue)
            session.add(RolloutTarget(rollout_id=rollout.id, computer_id=computer_id, stage=index))
    for computer_id, why in skipped:
        session.add(
            RolloutTarget(rollout_id=rollout.id, computer_id=computer_id, skipped=True, note=why)
        )
    session.flush()
    _start_stage(session, rollout, kit, 0)
    apply(session, rollout, RolloutEvent.PROGRESS)
    return rollout


def rollout_doc(session: Session, rollout: Rollout) -> RolloutDoc:
    kit = session.get(Kit, rollout.kit_id)
    assert kit is not None
    rows = _rows(session, rollout)
    tallies = _tallies(session, rollout, kit)
    specs = [None, *rollout.stages.get("specs", [])]
    stages = [
        RolloutStageDoc(
            index=index,
            name=stage_name(index),
            reach=specs[index],
            members=tally.members,
            succeeded=tally.succeeded,
            failed=tally.failed,
            started=index <= rollout.stage,
        )
        for index, tally in enumerate(tallies)
    ]
    targets = []
    for target, assignment, computer in rows:
        status = assignment.status if assignment is not None else None
        targets.append(
            RolloutTargetDoc(
                computer_id=computer.id,
                computer_name=computer.name,
                stage=target.stage,
                skipped=target.skipped,
                note=target.note,
                status=status,
                status_label=UpgradeStatus(status).label if status is not None else None,
                detail=assignment.detail if assignment is not None else "",
                outcome=target_outcome(target, assignment, computer, kit).value,
            )
        )
    return RolloutDoc(
        id=rollout.id,
        name=rollout.name,
        kit_id=kit.id,
        kit_version=kit.version,
        state=rollout.state,
        reason=rollout.reason,
        stage=rollout.stage,
        success_threshold=rollout.success_threshold,
        error_threshold=rollout.error_threshold,
        created_at=rollout.created_at,
        updated_at=rollout.updated_at,
        stages=stages,
        targets=targets,
    )
