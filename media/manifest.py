"""The Engine medium's manifest (`engine/manifest.json`): its schema and parser.

`parse_manifest` validates a whole document and reports every problem with its JSON path in
one `InvalidManifest`. Paths in a manifest are relative POSIX paths that can never leave the
medium (`path_problem`). The payload tree on disk (hashing its files, generating and checking
its manifest) is `media.payload_tree`'s job.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from enginekit.errors import UserInputError
from enginekit.text import one_line
from enginekit.versions import DiskLayout, EngineVersion
from media.errors import InvalidManifest

MANIFEST_PATH = "engine/manifest.json"
# An unattended medium's answer file (`engine-media build --answers`, `remaster`): a payload
# file like any other, listed in the manifest; the live installer runs from it.
ANSWERS_PATH = "engine/answers.toml"
PRODUCT = "Engine"
# The ISO builder adds this directory itself; payloads neither list nor carry it.
BUILDER_DIR = "isolinux"

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_KEYBOARD = re.compile(r"^[a-z]{2,3}(?:[-_][a-z0-9]{1,8})*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TOP_KEYS = (
    "product",
    "version",
    "upgrade_from",
    "pv_drivers",
    "layout",
    "eula",
    "keyboards",
    "system",
    "files",
)
_SYSTEM_KEYS = ("kernel", "initrd", "root")
_FILE_KEYS = ("path", "size", "sha256")


@dataclass(frozen=True)
class FileEntry:
    """One file of the medium: relative path, size in bytes, lower-case hex SHA-256."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class SystemPayload:
    """What the installer lays down: the installed kernel, its init, and the slot's files."""

    kernel: str  # a listed file, e.g. system/vmlinuz
    initrd: str  # a listed file, e.g. system/initrd.img
    root: str  # a directory prefix, e.g. system/root; its files go into a system slot


@dataclass(frozen=True)
class Manifest:
    """The parsed, validated `engine/manifest.json`."""

    product: str
    version: EngineVersion
    upgrade_from: tuple[EngineVersion, ...]
    pv_drivers: EngineVersion
    layout: DiskLayout
    eula: str
    keyboards: tuple[str, ...]
    system: SystemPayload
    files: tuple[FileEntry, ...]

    def file(self, path: str) -> FileEntry | None:
        """The entry for `path`, or None when the manifest does not list it."""
        for entry in self.files:
            if entry.path == path:
                return entry
        return None

    def system_root_files(self) -> tuple[FileEntry, ...]:
        """Entries under `system.root`, the files that go into a system slot."""
        prefix = self.system.root + "/"
        return tuple(e for e in self.files if e.path.startswith(prefix))

    def to_dict(self) -> dict[str, Any]:
        return {
            "product": self.product,
            "version": str(self.version),
            "upgrade_from": [str(v) for v in self.upgrade_from],
            "pv_drivers": str(self.pv_drivers),
            "layout": str(self.layout),
            "eula": self.eula,
            "keyboards": list(self.keyboards),
            "system": {
                "kernel": self.system.kernel,
                "initrd": self.system.initrd,
                "root": self.system.root,
            },
            "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in self.files],
        }

    def to_json(self) -> bytes:
        """Stable bytes: sorted keys, two-space indent, trailing newline."""
        return (json.dumps(self.to_dict(), sort_keys=True, indent=2) + "\n").encode("utf-8")


class ManifestErrors(InvalidManifest):
    """An `InvalidManifest` that keeps every problem found, each prefixed with its JSON path."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        # Problems quote untrusted key names and values: escape control characters so one
        # error stays one line on the terminal, whatever the manifest contains.
        problems = [one_line(p) for p in problems]
        super().__init__(
            f"{source}: " + "; ".join(problems),
            hint="fix the manifest (paths are relative to the medium, e.g. engine/EULA.txt) "
            "or regenerate it from the payload tree",
        )
        self.source = source
        self.problems = tuple(problems)


def path_problem(path: str) -> str | None:
    """Why `path` is not an acceptable medium path, or None when it is."""
    if path == "":
        return "is empty"
    if "\\" in path:
        return "contains a backslash (use '/')"
    if "\x00" in path:
        return "contains a NUL byte"
    if _CONTROL.search(path):
        return "contains a control character"
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        # A host name in another encoding (os.fsdecode keeps its bytes as surrogates): ISO 9660
        # extensions and the manifest are UTF-8.
        return "is not valid UTF-8"
    if path.startswith("/"):
        return "is absolute (paths are relative to the medium)"
    parts = path.split("/")
    if ".." in parts:
        return "escapes the medium"
    if "" in parts:
        return "has an empty component (no '//' or trailing '/')"
    if "." in parts:
        return "is not normalised (has a '.' component)"
    return None


class _Validator:
    """Collects problems while converting the untrusted JSON document into a Manifest."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def add(self, where: str, what: str) -> None:
        self.problems.append(f"{where}: {what}")

    def keys(self, where: str, obj: dict[str, Any], allowed: Sequence[str]) -> None:
        prefix = f"{where}." if where else ""
        for key in obj:
            if key not in allowed:
                self.add(f"{prefix}{key}", f"unknown key (allowed: {', '.join(allowed)})")
        for key in allowed:
            if key not in obj:
                self.add(f"{prefix}{key}", "missing")

    def string(self, where: str, value: Any) -> str | None:
        if not isinstance(value, str):
            self.add(where, f"must be a string, not {_type_name(value)}")
            return None
        if not value.strip():
            self.add(where, "must not be empty")
            return None
        return value

    def version(self, where: str, value: Any) -> EngineVersion | None:
        text = self.string(where, value)
        if text is None:
            return None
        try:
            return EngineVersion.parse(text)
        except UserInputError:
            self.add(where, f"{text!r} is not a version like 5.0.0")
            return None

    def path(self, where: str, value: Any) -> str | None:
        if not isinstance(value, str):
            self.add(where, f"must be a string, not {_type_name(value)}")
            return None
        problem = path_problem(value)
        if problem:
            self.add(where, f"{value!r} {problem}")
            return None
        return value

    def list_of(self, where: str, value: Any) -> list[Any] | None:
        if not isinstance(value, list):
            self.add(where, f"must be a list, not {_type_name(value)}")
            return None
        return value


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _load_json(data: bytes, source: str) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidManifest(
            f"{source}: not UTF-8 text (byte {exc.start})", hint="the manifest is JSON in UTF-8"
        ) from None
    try:
        return json.loads(text, object_pairs_hook=_reject_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise InvalidManifest(
            f"{source}: not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})",
            hint="the manifest is a JSON object, see DESIGN.md 'Reference payload'",
        ) from None
    except RecursionError:
        raise InvalidManifest(
            f"{source}: JSON nested too deeply", hint="the manifest is a flat JSON object"
        ) from None
    except ValueError as exc:
        raise InvalidManifest(
            f"{source}: {one_line(str(exc))}", hint="each key may appear only once"
        ) from None


def parse_manifest(data: bytes, source: str = MANIFEST_PATH) -> Manifest:
    """Validate a whole manifest document; raise one `InvalidManifest` listing every problem.

    `source` names the document in messages (a file path or `engine/manifest.json`).
    """
    doc = _load_json(data, source)
    if not isinstance(doc, dict):
        raise ManifestErrors(source, [f"(top): must be a JSON object, not {_type_name(doc)}"])
    v = _Validator()
    v.keys("", doc, _TOP_KEYS)

    product = v.string("product", doc["product"]) if "product" in doc else None
    if product is not None and product != PRODUCT:
        v.add("product", f"{product!r} is not {PRODUCT!r} (media for Engine only)")
    version = v.version("version", doc["version"]) if "version" in doc else None
    pv_drivers = v.version("pv_drivers", doc["pv_drivers"]) if "pv_drivers" in doc else None

    upgrade_from: list[EngineVersion] = []
    if "upgrade_from" in doc:
        items = v.list_of("upgrade_from", doc["upgrade_from"])
        for i, item in enumerate(items or []):
            parsed = v.version(f"upgrade_from[{i}]", item)
            if parsed is None:
                continue
            if parsed in upgrade_from:
                v.add(f"upgrade_from[{i}]", f"{parsed} is listed twice")
            elif version is not None and parsed >= version:
                v.add(f"upgrade_from[{i}]", f"{parsed} is not older than version {version}")
            upgrade_from.append(parsed)

    layout: DiskLayout | None = None
    if "layout" in doc:
        text = v.string("layout", doc["layout"])
        if text is not None:
            try:
                layout = DiskLayout(text)
            except ValueError:
                choices = ", ".join(str(x) for x in DiskLayout)
                v.add("layout", f"{text!r} is not a disk layout (choose one of {choices})")

    keyboards: list[str] = []
    if "keyboards" in doc:
        items = v.list_of("keyboards", doc["keyboards"])
        if items is not None and not items:
            v.add("keyboards", "must list at least one layout")
        for i, item in enumerate(items or []):
            code = v.string(f"keyboards[{i}]", item)
            if code is None:
                continue
            if not _KEYBOARD.match(code):
                v.add(f"keyboards[{i}]", f"{code!r} is not a layout code like 'us' or 'de'")
            elif code in keyboards:
                v.add(f"keyboards[{i}]", f"{code!r} is listed twice")
            keyboards.append(code)

    files: list[FileEntry] = []
    if "files" in doc:
        items = v.list_of("files", doc["files"])
        seen: dict[str, int] = {}
        for i, item in enumerate(items or []):
            entry = _file_entry(v, f"files[{i}]", item)
            if entry is None:
                continue
            if entry.path in seen:
                v.add(f"files[{i}].path", f"{entry.path!r} is already files[{seen[entry.path]}]")
                continue
            if entry.path == MANIFEST_PATH:
                v.add(f"files[{i}].path", "the manifest cannot list itself")
            elif entry.path.split("/")[0] == BUILDER_DIR:
                v.add(f"files[{i}].path", f"{entry.path!r} is inside {BUILDER_DIR}/, "
                      "which the ISO builder owns")  # fmt: skip
            seen[entry.path] = i
            files.append(entry)
        # A path cannot be both a file and a directory of another file.
        for path, i in seen.items():
            parts = path.split("/")
            for depth in range(1, len(parts)):
                parent = "/".join(parts[:depth])
                if parent in seen:
                    v.add(f"files[{i}].path", f"{path!r} is inside {parent!r}, which is a file")
                    break

    # References are checked against every path files[] names, even entries with other
    # problems, so one bad entry does not also produce "not in files" noise.
    files_given = isinstance(doc.get("files"), list)
    listed = {
        item["path"]
        for item in (doc["files"] if files_given else [])
        if isinstance(item, dict) and isinstance(item.get("path"), str)
    }
    eula = None
    if "eula" in doc:
        eula = v.path("eula", doc["eula"])
        if eula is not None and files_given and eula not in listed:
            v.add("eula", f"{eula!r} is not in files")

    system = None
    if "system" in doc:
        raw = doc["system"]
        if not isinstance(raw, dict):
            v.add("system", f"must be an object, not {_type_name(raw)}")
        else:
            v.keys("system", raw, _SYSTEM_KEYS)
            given: dict[str, str | None] = {}
            for key in _SYSTEM_KEYS:
                given[key] = v.path(f"system.{key}", raw[key]) if key in raw else None
            for key in ("kernel", "initrd"):
                member = given[key]
                if member is not None and files_given and member not in listed:
                    v.add(f"system.{key}", f"{member!r} is not in files")
            root = given["root"]
            if root is not None and files_given:
                if root in listed:
                    v.add("system.root", f"{root!r} is a file; it must be a directory")
                elif not any(p.startswith(root + "/") for p in listed):
                    v.add("system.root", f"no file in files is under {root + '/'!r}")
            kernel, initrd = given["kernel"], given["initrd"]
            if kernel is not None and initrd is not None and root is not None:
                system = SystemPayload(kernel=kernel, initrd=initrd, root=root)

    if v.problems:
        raise ManifestErrors(source, v.problems)
    # Without problems every field was present and valid; the asserts document that for mypy.
    assert product is not None
    assert version is not None
    assert pv_drivers is not None
    assert layout is not None
    assert eula is not None
    assert system is not None
    return Manifest(
        product=product,
        version=version,
        upgrade_from=tuple(upgrade_from),
        pv_drivers=pv_drivers,
        layout=layout,
        eula=eula,
        keyboards=tuple(keyboards),
        system=system,
        files=tuple(files),
    )


def _file_entry(v: _Validator, where: str, item: Any) -> FileEntry | None:
    if not isinstance(item, dict):
        v.add(where, f"must be an object, not {_type_name(item)}")
        return None
    v.keys(where, item, _FILE_KEYS)
    # Unknown keys are reported, but the entry still counts as listed so that eula/system
    # references to it do not produce follow-on errors.
    before = len(v.problems)
    path = v.path(f"{where}.path", item["path"]) if "path" in item else None
    size = item.get("size")
    if "size" in item and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        if isinstance(size, int) and not isinstance(size, bool):
            v.add(f"{where}.size", f"{size} is negative")
        else:
            v.add(f"{where}.size", f"must be a whole number of bytes, not {_type_name(size)}")
    sha = item.get("sha256")
    if "sha256" in item:
        if not isinstance(sha, str):
            v.add(f"{where}.sha256", f"must be a string, not {_type_name(sha)}")
        elif not _SHA256.match(sha):
            v.add(f"{where}.sha256", f"{sha!r} is not 64 lower-case hex digits")
    if len(v.problems) != before or path is None or "size" not in item or "sha256" not in item:
        return None
    assert isinstance(size, int)
    assert isinstance(sha, str)
    return FileEntry(path=path, size=size, sha256=sha)
