"""The Engine files on a disk, as typed data with strict JSON (de)serialisers.

`EngineRelease` is a system slot's `/engine-release`; `EngineState` is storage's
`/engine/state.json`; `EngineConfig` is `/engine/config.json`; `VmRecord` is
`/vms/<name>/vm.json`. Parsing is strict (unknown keys, wrong types and bad values are
errors) and every error names the file it came from, so a damaged disk gives one clear line.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any

from disk_images.errors import InvalidStateFile
from disk_images.layout import VM_NAME, Slot
from enginekit.errors import UserInputError
from enginekit.secret import Secret
from enginekit.versions import EngineVersion


class UpgradeStatus(enum.StrEnum):
    """What Synchronizer's "Upgrade" column shows; the values are the exact strings users see."""

    BLANK = ""
    PENDING = "Pending"
    # Behind a remote (branch-office) server: the computer saw the update, but the kit is not
    # at its remote server yet (the main server's relay task brings it there).
    READY_TO_DOWNLOAD = "Ready to download update"
    SIGNALLED = "Signalled"
    INSTALLED_REBOOT_REQUIRED = "Installed (Reboot Required)"
    FAILED = "Failed"

    @property
    def label(self) -> str:
        return self.value or "Blank"


class VmKind(enum.StrEnum):
    SHARED = "shared"  # shared image from Synchronizer: PV drivers updated with the image
    CUSTOM = "custom"  # custom VM deployed from Synchronizer: PV drivers upgraded by hand
    LOCAL = "local"  # installed directly on the computer: PV drivers upgraded by hand

    @property
    def needs_manual_pv_upgrade(self) -> bool:
        return self is not VmKind.SHARED


class RegistrationMode(enum.StrEnum):
    SYNCHRONIZER = "synchronizer"
    STANDALONE = "standalone"


# --- strict JSON helpers --------------------------------------------------------------------


class _Reader:
    """Reads one JSON object field by field, naming `source` in every error."""

    def __init__(
        self,
        source: str,
        data: bytes | str,
        allowed: set[str],
        optional: frozenset[str] = frozenset(),
    ) -> None:
        self.source = source
        try:
            value = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidStateFile(source, f"not valid JSON: {exc}") from None
        except RecursionError:
            raise InvalidStateFile(source, "not valid JSON: nested too deeply") from None
        except ValueError as exc:  # e.g. an integer with more digits than Python converts
            raise InvalidStateFile(source, f"not valid JSON: {exc}") from None
        self.obj = self.as_object(value, "")
        unknown = sorted(set(self.obj) - allowed - optional)
        if unknown:
            raise InvalidStateFile(source, f"unknown key(s): {', '.join(unknown)}")
        missing = sorted(allowed - set(self.obj))
        if missing:
            raise InvalidStateFile(source, f"missing key(s): {', '.join(missing)}")

    def as_object(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise InvalidStateFile(self.source, f"{where or 'content'} must be a JSON object")
        return value

    def _get(self, obj: dict[str, Any], key: str, where: str) -> Any:
        if key not in obj:
            raise InvalidStateFile(self.source, f"missing key {where + key!r}")
        return obj[key]

    def string(self, key: str, obj: dict[str, Any] | None = None, where: str = "") -> str:
        value = self._get(self.obj if obj is None else obj, key, where)
        if not isinstance(value, str):
            raise InvalidStateFile(self.source, f"{where}{key} must be a string, not {value!r}")
        return value

    def opt_string(
        self, key: str, obj: dict[str, Any] | None = None, where: str = ""
    ) -> str | None:
        value = self._get(self.obj if obj is None else obj, key, where)
        if value is not None and not isinstance(value, str):
            raise InvalidStateFile(self.source, f"{where}{key} must be a string or null")
        return value

    def boolean(self, key: str) -> bool:
        value = self._get(self.obj, key, "")
        if not isinstance(value, bool):
            raise InvalidStateFile(self.source, f"{key} must be true or false, not {value!r}")
        return value

    def integer(self, key: str) -> int:
        value = self._get(self.obj, key, "")
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InvalidStateFile(self.source, f"{key} must be a whole number >= 0")
        return value

    def opt_integer(self, key: str) -> int | None:
        """An optional key: absent or null is None."""
        if self.obj.get(key) is None:
            return None
        return self.integer(key)

    def version(self, key: str, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(EngineVersion.parse(value))
        except UserInputError:
            raise InvalidStateFile(
                self.source, f"{key} {value!r} is not a version like 5.0.0"
            ) from None

    def choice(self, key: str, enum_type: type[enum.StrEnum], value: str | None) -> Any:
        if value is None:
            return None
        try:
            return enum_type(value)
        except ValueError:
            allowed = ", ".join(repr(m.value) for m in enum_type)
            raise InvalidStateFile(
                self.source, f"{key} {value!r} is not one of {allowed}"
            ) from None


def _dump(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode()


def _check_version(text: str) -> None:
    EngineVersion.parse(text)  # raises UserInputError naming the bad text


# --- the files --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EngineRelease:
    """`/engine-release` on a system slot."""

    version: str
    slot: Slot | None  # None on MBR (one system partition)
    pv_drivers: str
    product: str = "Engine"

    def __post_init__(self) -> None:
        _check_version(self.version)
        _check_version(self.pv_drivers)

    def to_json(self) -> bytes:
        return _dump(
            {
                "product": self.product,
                "version": self.version,
                "slot": self.slot.value if self.slot else None,
                "pv_drivers": self.pv_drivers,
            }
        )

    @classmethod
    def from_json(cls, data: bytes | str, source: str = "engine-release") -> EngineRelease:
        r = _Reader(source, data, {"product", "version", "slot", "pv_drivers"})
        product = r.string("product")
        if product != "Engine":
            raise InvalidStateFile(source, f"product is {product!r}, not 'Engine'")
        version = r.version("version", r.string("version"))
        pv = r.version("pv_drivers", r.string("pv_drivers"))
        slot = r.choice("slot", Slot, r.opt_string("slot"))
        assert version is not None
        assert pv is not None
        return cls(version=version, slot=slot, pv_drivers=pv, product=product)


@dataclass(frozen=True)
class EngineState:
    """`/engine/state.json` on storage: which slot runs, and where an upgrade stands."""

    active_slot: Slot | None  # None on MBR
    upgrade_status: UpgradeStatus = UpgradeStatus.BLANK
    generation: int = 1  # boot entry generation of the active slot
    pending_slot: Slot | None = None  # slot written by an upgrade not yet booted
    previous_version: str | None = None
    install_complete: bool = False

    def __post_init__(self) -> None:
        if self.generation < 0:
            raise UserInputError(
                f"generation must be >= 0, not {self.generation}",
                hint="give a generation of 0 or more",
            )
        if self.previous_version is not None:
            _check_version(self.previous_version)
        if self.pending_slot is not None and self.pending_slot is self.active_slot:
            raise UserInputError(
                "pending_slot must differ from active_slot",
                hint="give a pending slot other than the active one",
            )

    def to_json(self) -> bytes:
        return _dump(
            {
                "active_slot": self.active_slot.value if self.active_slot else None,
                "upgrade_status": self.upgrade_status.value,
                "generation": self.generation,
                "pending_slot": self.pending_slot.value if self.pending_slot else None,
                "previous_version": self.previous_version,
                "install_complete": self.install_complete,
            }
        )

    @classmethod
    def from_json(cls, data: bytes | str, source: str = "state.json") -> EngineState:
        keys = {
            "active_slot",
            "upgrade_status",
            "generation",
            "pending_slot",
            "previous_version",
            "install_complete",
        }
        r = _Reader(source, data, keys)
        active = r.choice("active_slot", Slot, r.opt_string("active_slot"))
        pending = r.choice("pending_slot", Slot, r.opt_string("pending_slot"))
        if pending is not None and pending is active:
            raise InvalidStateFile(source, "pending_slot must differ from active_slot")
        return cls(
            active_slot=active,
            upgrade_status=r.choice("upgrade_status", UpgradeStatus, r.string("upgrade_status")),
            generation=r.integer("generation"),
            pending_slot=pending,
            previous_version=r.version("previous_version", r.opt_string("previous_version")),
            install_complete=r.boolean("install_complete"),
        )


@dataclass(frozen=True)
class Registration:
    """How the computer is managed; the one definition the installer's plans use too. The
    token is a `Secret`: it never appears in repr() or str()."""

    mode: RegistrationMode
    server: str | None = None
    token: Secret | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.mode is RegistrationMode.SYNCHRONIZER:
            if not self.server or self.token is None or not self.token.reveal():
                raise UserInputError(
                    "a Synchronizer registration needs a server and a token",
                    hint="give both the server and the token",
                )
        elif self.server is not None or self.token is not None:
            raise UserInputError(
                "a standalone computer has no server or token",
                hint="leave out server and token, or register with a Synchronizer",
            )

    @property
    def registered(self) -> bool:
        return self.mode is RegistrationMode.SYNCHRONIZER


@dataclass(frozen=True)
class EngineConfig:
    """`/engine/config.json` on storage."""

    keyboard: str
    registration: Registration

    @property
    def registered(self) -> bool:
        return self.registration.registered

    def to_json(self) -> bytes:
        reg = self.registration
        token = reg.token.reveal() if reg.token is not None else None
        return _dump(
            {
                "keyboard": self.keyboard,
                "registration": {"mode": reg.mode.value, "server": reg.server, "token": token},
            }
        )

    @classmethod
    def from_json(cls, data: bytes | str, source: str = "config.json") -> EngineConfig:
        r = _Reader(source, data, {"keyboard", "registration"})
        keyboard = r.string("keyboard")
        if not keyboard:
            raise InvalidStateFile(source, "keyboard must not be empty")
        reg_obj = r.as_object(r.obj.get("registration"), "registration")
        unknown = sorted(set(reg_obj) - {"mode", "server", "token"})
        if unknown:
            raise InvalidStateFile(source, f"unknown key(s) in registration: {', '.join(unknown)}")
        mode = r.choice(
            "registration.mode", RegistrationMode, r.string("mode", reg_obj, "registration.")
        )
        server = r.opt_string("server", reg_obj, "registration.")
        token = r.opt_string("token", reg_obj, "registration.")
        try:
            registration = Registration(mode, server, Secret(token) if token is not None else None)
        except UserInputError as exc:
            raise InvalidStateFile(source, exc.message) from None
        return cls(keyboard=keyboard, registration=registration)


@dataclass(frozen=True)
class VmRecord:
    """`/vms/<name>/vm.json` on storage. `image_version` is the Synchronizer image version the
    VM runs and `pending_version` one downloaded that waits for the VM to restart; both are
    absent (None) on VMs Synchronizer never deployed, and absent keys are not written."""

    name: str
    kind: VmKind
    pv_drivers: str
    published_for: str
    image_version: int | None = None
    pending_version: int | None = None

    def __post_init__(self) -> None:
        if not VM_NAME.match(self.name):
            raise UserInputError(
                f"{self.name!r} is not a VM name",
                hint="use letters, digits, '.', '_' and '-' (at most 64)",
            )
        _check_version(self.pv_drivers)
        _check_version(self.published_for)

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind.value,
            "pv_drivers": self.pv_drivers,
            "published_for": self.published_for,
        }
        if self.image_version is not None:
            doc["image_version"] = self.image_version
        if self.pending_version is not None:
            doc["pending_version"] = self.pending_version
        return _dump(doc)

    @classmethod
    def from_json(cls, data: bytes | str, source: str = "vm.json") -> VmRecord:
        r = _Reader(
            source,
            data,
            {"name", "kind", "pv_drivers", "published_for"},
            optional=frozenset({"image_version", "pending_version"}),
        )
        name = r.string("name")
        if not VM_NAME.match(name):
            raise InvalidStateFile(source, f"name {name!r} is not a valid VM name")
        pv = r.version("pv_drivers", r.string("pv_drivers"))
        published = r.version("published_for", r.string("published_for"))
        assert pv is not None
        assert published is not None
        return cls(
            name=name,
            kind=r.choice("kind", VmKind, r.string("kind")),
            pv_drivers=pv,
            published_for=published,
            image_version=r.opt_integer("image_version"),
            pending_version=r.opt_integer("pending_version"),
        )
