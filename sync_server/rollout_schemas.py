"""The rollout documents of the API (pydantic models), beside `sync_server.schemas`.

Field names are the API's contract with `engine-sync` and the console: add, never rename.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field, field_validator

from sync_server.rollout_state import parse_stages
from sync_server.schemas import MAX_NAME_LENGTH


class RolloutRequest(BaseModel):
    kit_id: int
    name: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    test_group: list[int] = Field(min_length=1, description="computer ids deployed first")
    computers: list[int] | None = Field(
        default=None, description="the other targets (default: every registered computer)"
    )
    stages: list[str] = Field(
        min_length=1,
        description='cumulative reach of each stage over the remaining targets: "30%" or a '
        "count; the last stage reaches all of them",
    )
    success_threshold: float = Field(
        ge=0,
        le=100,
        description="percent of a stage that must succeed before the next stage starts",
    )
    error_threshold: float = Field(
        gt=0, le=100, description="percent of a stage whose failure pauses the rollout"
    )

    @field_validator("stages")
    @classmethod
    def _stages(cls, stages: list[str]) -> list[str]:
        return [str(spec) for spec in parse_stages(stages)]

    @field_validator("name")
    @classmethod
    def _printable_name(cls, name: str | None) -> str | None:
        if name is not None and (not name.strip() or not name.isprintable()):
            raise ValueError("a name is printable text, not empty and without control characters")
        return name


class RolloutTargetDoc(BaseModel):
    computer_id: int
    computer_name: str
    stage: int | None  # 0 is the test group; None: skipped at create
    skipped: bool
    note: str  # why it was skipped or not offered
    status: str | None  # its Upgrade column (UpgradeStatus value); None before its stage
    status_label: str | None
    detail: str
    outcome: str  # waiting, skipped, not offered, pending, in flight, succeeded, failed


class RolloutStageDoc(BaseModel):
    index: int
    name: str  # "test group", "stage 1", ...
    reach: str | None  # the stage spec ("30%", "2"); None for the test group
    members: int
    succeeded: int
    failed: int
    started: bool


class RolloutDoc(BaseModel):
    id: int
    name: str
    kit_id: int
    kit_version: str
    state: str  # RolloutState value
    reason: str  # why it paused (or was cancelled)
    stage: int
    success_threshold: float
    error_threshold: float
    created_at: datetime
    updated_at: datetime
    stages: list[RolloutStageDoc]
    targets: list[RolloutTargetDoc]
