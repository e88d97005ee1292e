"""Fuzzing the disk probe and the commands built on it with damaged Engine disks.

Every hypothesis example takes a sparse copy of a real reference 4.5.0 disk (made by the
installer through the pytest plugin) and damages one thing: a field or bytes of the primary
or backup GPT header or partition entries (with the CRCs left wrong, or recomputed so that
the damage gets past the checksum), or one Engine file written in place with `debugfs -w`
(`/engine-release` of a slot, `/engine/state.json`, `/engine/config.json`, a VM's
`vm.json`): a structured JSON change, a nasty document, random bytes, a huge file, the file
removed or replaced by a directory. Then `probe()`, `engine-disk inspect` (text and JSON) and
an unattended `engine-install --dry-run` upgrade with the 5.0.0 medium must each end in a
valid result, "no Engine installation (reason)" or one clear error line, never a traceback or
a hang, and none of them may change a byte of the image.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commands.engine_disk import main as engine_disk_main
from commands.engine_install import main as engine_install
from disk_images.layout import CONFIG_PATH, RELEASE_PATH, STATE_PATH, vm_json_path
from disk_images.probe import Installation, NoInstallation, probe
from enginekit.process import require_tool, run
from reference_builds.disk import SAMPLE_VMS
from reference_builds.pytest_plugin import sparse_digest

from .conftest import (
    IN_PROCESS_TIMEOUT,
    CliOutcome,
    assert_clean_outcome,
    fuzz_examples,
    json_mutation,
    run_console,
    run_in_process,
    watchdog,
)

pytestmark = [pytest.mark.root, pytest.mark.slow]

SECTOR = 512
GPT_HEADER_SIZE = 92
ENTRY_SIZE = 128
UPGRADE_ANSWERS = """\
[eula]
accept = true
[existing]
action = "upgrade"
[finish]
reboot = false
"""


@dataclass(frozen=True)
class DiskMap:
    """Where things are on the pristine reference disk."""

    size: int
    partitions: dict[str, int]  # partition name -> byte offset
    files: dict[str, bytes]  # "<partition>:<path>" -> pristine content


# Which Engine files we damage, as (partition name, path).
ENGINE_FILES = (
    ("engine-system-a", RELEASE_PATH),
    ("engine-system-b", RELEASE_PATH),
    ("engine-storage", STATE_PATH),
    ("engine-storage", CONFIG_PATH),
    ("engine-storage", vm_json_path(SAMPLE_VMS[0].name)),
    ("engine-storage", vm_json_path(SAMPLE_VMS[3].name)),
)


@pytest.fixture(scope="module")
def medium() -> Path:
    from reference_builds.media import reference_iso

    return reference_iso("5.0.0")


@pytest.fixture
def answers(tmp_path: Path) -> Path:
    path = tmp_path / "upgrade.toml"
    path.write_text(UPGRADE_ANSWERS)
    return path


@pytest.fixture
def disk_factory(engine_disk: Callable[..., Path]) -> Callable[[], Path]:
    """A fresh sparse copy of the pristine reference 4.5.0 disk (with VMs) per call."""
    counter = 0

    def make() -> Path:
        nonlocal counter
        counter += 1
        return engine_disk("4.5.0", size="2G", name=f"fuzz-{counter}.img")

    return make


@pytest.fixture
def disk_map(disk_factory: Callable[[], Path]) -> DiskMap:
    from disk_images.ext4_reader import read_ext4_files

    image = disk_factory()
    found = probe(image)
    assert isinstance(found, Installation), found
    partitions = {p.name or str(p.number): p.start_bytes for p in found.partitions}
    files: dict[str, bytes] = {}
    for part, path in ENGINE_FILES:
        content = read_ext4_files(image, partitions[part], [path])[path]
        assert content is not None, f"{part}:{path}"
        files[f"{part}:{path}"] = content
    mapped = DiskMap(image.stat().st_size, partitions, files)
    image.unlink()
    return mapped


# --- damage ----------------------------------------------------------------------------------


def write_at(image: Path, offset: int, data: bytes) -> None:
    with image.open("r+b") as stream:
        stream.seek(offset)
        stream.write(data)


def fix_gpt_crcs(image: Path, header_lba: int) -> None:
    """Recompute a GPT header's entry-array and header CRCs (where the header allows)."""
    with image.open("r+b") as stream:
        stream.seek(header_lba * SECTOR)
        header = bytearray(stream.read(SECTOR))
        header_size, _crc = struct.unpack_from("<II", header, 12)
        (entries_lba,) = struct.unpack_from("<Q", header, 72)
        count, size = struct.unpack_from("<II", header, 80)
        if 0 < count * size <= 1024 * 1024 and entries_lba * SECTOR < 1 << 48:
            stream.seek(entries_lba * SECTOR)
            array = stream.read(count * size)
            if len(array) == count * size:
                struct.pack_into("<I", header, 88, zlib.crc32(array))
        if GPT_HEADER_SIZE <= header_size <= SECTOR:
            header[16:20] = bytes(4)
            struct.pack_into("<I", header, 16, zlib.crc32(header[:header_size]))
        stream.seek(header_lba * SECTOR)
        stream.write(header)


# (name, offset inside the header, width in bytes)
HEADER_FIELDS = (
    ("signature", 0, 8),
    ("revision", 8, 4),
    ("header_size", 12, 4),
    ("my_lba", 24, 8),
    ("alternate_lba", 32, 8),
    ("first_usable_lba", 40, 8),
    ("last_usable_lba", 48, 8),
    ("entries_lba", 72, 8),
    ("entry_count", 80, 4),
    ("entry_size", 84, 4),
)
ENTRY_FIELDS = (
    ("type_guid", 0, 16),
    ("first_lba", 32, 8),
    ("last_lba", 40, 8),
    ("attributes", 48, 8),
    ("name", 56, 72),
)


@dataclass(frozen=True)
class GptDamage:
    where: str  # "primary" | "backup" | "both"
    part: str  # "header" | "entry <n>"
    field: str
    data: bytes
    fix_crcs: bool

    def apply(self, image: Path, size: int) -> None:
        last_lba = size // SECTOR - 1
        # "both": the same damage in both copies, CRCs fixed, so that it gets past the
        # primary/backup comparison and reaches the checks of what the entries mean.
        copies = ["primary", "backup"] if self.where == "both" else [self.where]
        for where in copies:
            header_lba = 1 if where == "primary" else last_lba
            entries_lba = 2 if where == "primary" else last_lba - 32
            if self.part == "header":
                base = header_lba * SECTOR
            else:
                base = entries_lba * SECTOR + int(self.part.split()[1]) * ENTRY_SIZE
            offset = {name: off for name, off, _ in HEADER_FIELDS + ENTRY_FIELDS}[self.field]
            write_at(image, base + offset, self.data)
            if self.fix_crcs or self.where == "both":
                fix_gpt_crcs(image, header_lba)


@st.composite
def gpt_damage(draw: st.DrawFn, disk_size: int) -> GptDamage:
    where = draw(st.sampled_from(["primary", "backup", "both", "both"]))
    sectors = disk_size // SECTOR
    if draw(st.booleans()):
        part = "header"
        name, _off, width = draw(st.sampled_from(HEADER_FIELDS))
    else:
        part = f"entry {draw(st.sampled_from([0, 1, 2, 3, 4, 127]))}"
        name, _off, width = draw(st.sampled_from(ENTRY_FIELDS))
    if width in (4, 8) and draw(st.integers(0, 3)) > 0:
        value = draw(
            st.one_of(
                st.sampled_from(
                    [
                        0,
                        1,
                        2,
                        33,
                        34,
                        2048,
                        sectors - 34,
                        sectors - 2,
                        sectors - 1,
                        sectors,
                        sectors + 1,
                        sectors * 2,
                        2**31,
                        2**32 - 1,
                        2**63,
                        2**64 - 1,
                    ]
                ),
                st.integers(min_value=0, max_value=2 ** (8 * width) - 1),
            )
        )
        data = (value % 2 ** (8 * width)).to_bytes(width, "little")
    else:
        data = draw(st.binary(min_size=1, max_size=width))
    return GptDamage(where, part, name, data, fix_crcs=draw(st.booleans()))


def debugfs_commands(image: Path, offset: int, commands: list[str]) -> None:
    debugfs = require_tool("debugfs", "e2fsprogs")
    run(
        [debugfs, "-w", "-f", "-", f"{image}?offset={offset}"],
        input=("\n".join(commands) + "\n").encode(),
        timeout=60,
    )


@dataclass(frozen=True)
class FileDamage:
    partition: str
    path: str
    what: str
    content: bytes | None  # None: no content written (removed, or a directory)
    make_dir: bool = False

    def apply(self, image: Path, disk: DiskMap, workdir: Path) -> None:
        parent, _, name = self.path.rpartition("/")
        commands = [f"cd {parent or '/'}", f"rm {name}"]
        if self.make_dir:
            commands.append(f"mkdir {name}")
        elif self.content is not None:
            host = workdir / "content.bin"
            host.write_bytes(self.content)
            commands.append(f"write {host} {name}")
        debugfs_commands(image, disk.partitions[self.partition], commands)


@st.composite
def file_damage(draw: st.DrawFn, disk: DiskMap) -> FileDamage:
    partition, path = draw(st.sampled_from(ENGINE_FILES))
    pristine = disk.files[f"{partition}:{path}"]
    kind = draw(st.sampled_from(["json", "json", "json", "bytes", "flip", "huge", "rm", "dir"]))
    if kind == "json":
        what, content = json_mutation(json.loads(pristine), draw)
        return FileDamage(partition, path, what, content)
    if kind == "bytes":
        content = draw(st.binary(max_size=300))
        return FileDamage(partition, path, f"random bytes {content[:40]!r}", content)
    if kind == "flip":
        index = draw(st.integers(0, len(pristine) - 1))
        flipped = bytearray(pristine)
        flipped[index] ^= draw(st.integers(1, 255))
        return FileDamage(partition, path, f"byte {index} flipped", bytes(flipped))
    if kind == "huge":
        content = b'{"version": "' + b"9" * (8 * 1024 * 1024) + b'"}'
        return FileDamage(partition, path, "8 MiB document", content)
    if kind == "rm":
        return FileDamage(partition, path, "removed", None)
    return FileDamage(partition, path, "replaced by a directory", None, make_dir=True)


# --- judging -------------------------------------------------------------------------------


def judge(
    image: Path, medium: Path, answers: Path, capsys: pytest.CaptureFixture[str]
) -> list[CliOutcome]:
    """Probe, inspect and dry-run `image`: clean outcomes only, and the image never changes."""
    before = sparse_digest(image)
    with watchdog(IN_PROCESS_TIMEOUT, f"probe({image})"):
        found = probe(image)
    assert isinstance(found, Installation | NoInstallation)
    if isinstance(found, NoInstallation):
        assert found.reason, found
        assert "\n" not in found.reason, found
    assert sparse_digest(image) == before, "probe() wrote to the image"

    outcomes = []
    for prog, main, argv in (
        ("engine-disk", engine_disk_main, ["inspect", "--json", image]),
        ("engine-disk", engine_disk_main, ["inspect", image]),
        (
            "engine-install",
            engine_install,
            ["--media", medium, "--target", image, "--answers", answers, "--dry-run"],
        ),
    ):
        outcome = run_in_process(prog, main, argv, capsys)
        assert_clean_outcome(outcome)
        if "--json" in outcome.argv and outcome.status == 0:
            report = json.loads(outcome.out)
            assert report["disk_id"] == found.disk_id, outcome.describe()
        assert sparse_digest(image) == before, f"{outcome.argv} wrote to the image"
        outcomes.append(outcome)
    return outcomes


def test_pristine_reference_disk_baseline(
    disk_factory: Callable[[], Path],
    medium: Path,
    answers: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Undamaged, the disk is an Engine 4.5.0 and the dry run plans the upgrade."""
    image = disk_factory()
    found = probe(image)
    assert isinstance(found, Installation)
    assert found.version == "4.5.0"
    outcomes = judge(image, medium, answers, capsys)
    assert [o.status for o in outcomes] == [0, 0, 0], outcomes[-1].describe()
    assert "mode: upgrade" in outcomes[-1].out


FUZZ_SETTINGS = settings(
    max_examples=fuzz_examples(12),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ_SETTINGS
@given(data=st.data())
def test_damaged_gpt(
    data: st.DataObject,
    disk_factory: Callable[[], Path],
    disk_map: DiskMap,
    medium: Path,
    answers: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    damage = data.draw(gpt_damage(disk_map.size), label="damage")
    image = disk_factory()
    try:
        damage.apply(image, disk_map.size)
        judge(image, medium, answers, capsys)
    finally:
        image.unlink()


@FUZZ_SETTINGS
@given(data=st.data())
def test_damaged_engine_files(
    data: st.DataObject,
    disk_factory: Callable[[], Path],
    disk_map: DiskMap,
    medium: Path,
    answers: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    damage = data.draw(file_damage(disk_map), label="damage")
    image = disk_factory()
    try:
        damage.apply(image, disk_map, tmp_path)
        judge(image, medium, answers, capsys)
    finally:
        image.unlink()


@pytest.mark.parametrize(
    "nasty",
    [
        b"[" * 3000 + b"]" * 3000,
        b'{"generation": ' + b"1" * 5000 + b"}",
        b"\xff\xfe{\x00}\x00",
        b'{"version": "5.0.0", "\\nerror: injected": 1}',
    ],
    ids=["deep-nesting", "5000-digit-int", "utf16-bom", "newline-in-key"],
)
def test_nasty_state_file(
    nasty: bytes,
    disk_factory: Callable[[], Path],
    disk_map: DiskMap,
    medium: Path,
    answers: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The documents most likely to escape a JSON reader's error handling, deterministically."""
    image = disk_factory()
    FileDamage("engine-storage", STATE_PATH, "nasty", nasty).apply(image, disk_map, tmp_path)
    judge(image, medium, answers, capsys)


def test_keyboard_with_a_lone_surrogate(
    disk_factory: Callable[[], Path],
    disk_map: DiskMap,
    medium: Path,
    answers: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A config whose keyboard is valid JSON but cannot be printed as UTF-8."""
    config = json.loads(disk_map.files[f"engine-storage:{CONFIG_PATH}"])
    config["keyboard"] = "\ud800"
    content = json.dumps(config).encode()
    image = disk_factory()
    FileDamage("engine-storage", CONFIG_PATH, "surrogate", content).apply(image, disk_map, tmp_path)
    judge(image, medium, answers, capsys)


@settings(
    max_examples=fuzz_examples(3),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_damaged_disk_console_scripts(
    data: st.DataObject,
    disk_factory: Callable[[], Path],
    disk_map: DiskMap,
    medium: Path,
    answers: Path,
    tmp_path: Path,
) -> None:
    """The same through the real console scripts, in their own processes, with a timeout."""
    damage: GptDamage | FileDamage = data.draw(
        st.one_of(gpt_damage(disk_map.size), file_damage(disk_map)), label="damage"
    )
    image = disk_factory()
    try:
        if isinstance(damage, GptDamage):
            damage.apply(image, disk_map.size)
        else:
            damage.apply(image, disk_map, tmp_path)
        before = sparse_digest(image)
        inspect = run_console("engine-disk", "inspect", "--json", image, timeout=60)
        assert_clean_outcome(inspect)
        if inspect.status == 0:
            json.loads(inspect.out)
        dry_run = run_console(
            "engine-install",
            *("--media", medium, "--target", image, "--answers", answers, "--dry-run"),
            timeout=120,
        )
        assert_clean_outcome(dry_run)
        assert sparse_digest(image) == before
    finally:
        image.unlink()
