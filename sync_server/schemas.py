"""The JSON documents of the API (pydantic models); FastAPI derives `/openapi.json` from them.

Field names are the API's contract with `engine-sync` and the agent: add fields, never rename.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field, field_validator


class ErrorDoc(BaseModel):
    error: str
    hint: str | None = None
    details: list[str] = Field(default_factory=list)


class KitDoc(BaseModel):
    id: int
    kind: str
    version: str
    upgrade_from: list[str]
    layout: str
    size: int
    sha256: str
    imported_at: datetime


class TaskDoc(BaseModel):
    id: int
    kind: str
    state: str
    progress: float
    source: str
    error: str | None
    kit_id: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    note: str = ""  # e.g. a cancelled Daily Roll-Up Backup that must be rescheduled


MAX_NAME_LENGTH = 200


class TokenRequest(BaseModel):
    """No name: the computer is named by its disk id at its first check-in."""

    name: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)

    @field_validator("name")
    @classmethod
    def _printable_name(cls, name: str | None) -> str | None:
        if name is not None and (not name.strip() or not name.isprintable()):
            raise ValueError("a name is printable text, not empty and without control characters")
        return name


class TokenDoc(BaseModel):
    id: int
    name: str
    role: str
    computer_id: int | None
    created_at: datetime
    revoked: bool


class NewTokenDoc(TokenDoc):
    token: str  # shown once; the server keeps only its SHA-256


class VmDoc(BaseModel):
    name: str
    kind: str
    pv_drivers: str
    published_for: str
    image_version: int | None = None  # the Synchronizer image version the VM runs
    pending_version: int | None = None  # downloaded; waits for the VM to restart


class AssignmentDoc(BaseModel):
    id: int
    kit_id: int
    kit_version: str
    computer_id: int
    status: str  # disk_images.state.UpgradeStatus value ("" is Blank)
    status_label: str
    detail: str
    updated_at: datetime


class ComputerDoc(BaseModel):
    id: int
    name: str
    disk_id: str | None
    running_version: str
    active_slot: str | None
    slots: dict[str, str | None]
    engine_status: str
    vms: list[VmDoc]
    first_contact: datetime
    last_contact: datetime
    assignments: list[AssignmentDoc]
    site: str | None = None  # the remote server it checks in through; None: the main server


class AssignRequest(BaseModel):
    computers: list[int] = Field(min_length=1)
    retry: bool = Field(default=False, description="offer again a kit that failed there")


class CheckinRequest(BaseModel):
    disk_id: str | None = None
    version: str
    active_slot: str | None = None
    slots: dict[str, str | None] = Field(default_factory=dict)
    upgrade_status: str = ""
    vms: list[VmDoc] = Field(default_factory=list)
    vm_failures: dict[str, str] = Field(default_factory=dict)  # VM name: why it failed


class UpdateOffer(BaseModel):
    """An assigned kit, as the computer sees it at check-in."""

    assignment_id: int
    kit_id: int
    version: str
    size: int
    sha256: str
    status: str
    download: str  # path of the kit file on this server (HTTP Range supported)


class VmOffer(BaseModel):
    """A VM image version for the computer to deploy (its Engine can run it)."""

    name: str
    kind: str
    version: int
    published_for: str
    pv_drivers: str


class CheckinResponse(BaseModel):
    computer_id: int
    checkin_interval: float
    update: UpdateOffer | None
    vms: list[VmOffer] = Field(default_factory=list)


class StatusReport(BaseModel):
    status: str
    detail: str = Field(default="", max_length=500)


class SiteRequest(BaseModel):
    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)

    @field_validator("name")
    @classmethod
    def _printable_name(cls, name: str) -> str:
        if not name.strip() or not name.isprintable():
            raise ValueError("a name is printable text, not empty and without control characters")
        return name


class SiteDoc(BaseModel):
    """A remote (branch-office) server as the main server knows it."""

    id: int
    name: str
    version: str | None  # the Synchronizer version it reported; None: never contacted
    running: bool  # it said so at a recent contact
    last_contact: datetime | None
    kits: list[str]  # the Engine versions complete in its cache
    computers: int  # checking in through it
    relays: list[TaskDoc]  # its relay tasks still queued or running


class NewSiteDoc(SiteDoc):
    token: str  # the site token, shown once; the server keeps only its SHA-256


class SiteContact(BaseModel):
    """What a remote server says about itself at each contact."""

    version: str | None = None  # None at its first contact after a start: it adopts ours
    running: bool = True  # False: its last word before it stops
    contact_interval: float = Field(default=10.0, gt=0)
    kits: list[int] = Field(default_factory=list)  # the kit ids complete in its cache


class RelayJob(BaseModel):
    task_id: int
    kit_id: int
    version: str
    size: int
    sha256: str
    download: str  # the kit's file on the main server (HTTP Range supported)


class SiteContactAnswer(BaseModel):
    name: str
    synchronizer_version: str
    relays: list[RelayJob]


class RelayReport(BaseModel):
    """The remote's progress on one relay: bytes in its partial file, or the end."""

    received: int = Field(ge=0)
    resumed_from: int = Field(default=0, ge=0)
    complete: bool = False  # the whole kit arrived and matched its sha256
    error: str | None = Field(default=None, max_length=1000)


class RelayState(BaseModel):
    state: str  # the task's state: "cancelled" tells the remote to stop and drop its partial
