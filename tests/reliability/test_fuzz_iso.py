"""Fuzzing `engine-media` with damaged installer media (issue 6, "inputs that cannot break us").

A small hybrid ISO is built once by our own builder; every hypothesis example copies it and
damages one structure in place: a field or bytes of the primary or Joliet volume descriptor
(volume size, root record, path table locations, block size), the El Torito boot record and
boot catalog, directory records (including the manifest's extent and length), the path
tables, the hybrid MBR/GPT system area, the embedded isomd5 fields, or the manifest JSON
itself (structured changes and nasty documents: deep nesting, huge numbers, bad UTF-8...).
Then `engine-media inspect`, `verify` (no boots) and `md5 check` run on the copy, in-process
and (for a few examples) as the real console script. Each must exit 0 or print one clear
`error:` line, never a traceback or an internal error, never hang, and never write the file.
"""

from __future__ import annotations

import json
import shutil
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pycdlib
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commands.engine_install import main as engine_install
from commands.engine_media import main as engine_media
from reference_builds.pytest_plugin import sparse_digest

from .conftest import (
    NASTY_JSON,
    CliOutcome,
    assert_clean_outcome,
    file_sha256,
    fuzz_examples,
    json_mutation,
    json_values,
    run_console,
    run_in_process,
)

SECTOR = 2048
PVD_SECTOR = 16
ROOT_RECORD = 156  # offset of the root directory record inside a volume descriptor
BOOT_CATALOG_POINTER = 71  # inside the El Torito boot record volume descriptor
ISOMD5_AREA = 883  # the PVD's application-use area, where isomd5sum keeps its fields
COMMANDS = (("inspect",), ("inspect", "--json"), ("verify",), ("md5", "check"))


@dataclass(frozen=True)
class Field:
    """A numeric on-disk field: `width` bytes at `offset`, little, big or both-endian."""

    name: str
    offset: int
    width: int
    endian: str  # "le" | "be" | "both" (ISO 9660 7.2.3/7.3.3: LE copy then BE copy)

    def encode(self, value: int) -> list[tuple[int, bytes]]:
        value %= 1 << (8 * self.width)
        little = value.to_bytes(self.width, "little")
        big = value.to_bytes(self.width, "big")
        if self.endian == "le":
            return [(self.offset, little)]
        if self.endian == "be":
            return [(self.offset, big)]
        return [(self.offset, little), (self.offset + self.width, big)]


@dataclass(frozen=True)
class Region:
    name: str
    start: int
    length: int


@dataclass(frozen=True)
class IsoMap:
    """Where the structures of the pristine ISO are (absolute byte offsets)."""

    # repr=False: hypothesis prints a failing example's fixtures, and these are long.
    size: int
    fields: tuple[Field, ...] = field(repr=False)
    regions: tuple[Region, ...] = field(repr=False)
    manifest: Region = field(repr=False)
    manifest_doc: dict[str, Any] = field(repr=False)


def _le32(data: bytes, offset: int) -> int:
    return int(struct.unpack_from("<I", data, offset)[0])


def _descriptor_sectors(data: bytes) -> dict[str, int]:
    found: dict[str, int] = {}
    for sector in range(PVD_SECTOR, PVD_SECTOR + 16):
        head = data[sector * SECTOR : sector * SECTOR + 7]
        if head[1:6] != b"CD001":
            break
        kind = {0: "boot_record", 1: "pvd", 2: "svd", 255: "terminator"}.get(head[0])
        if kind and kind not in found:
            found[kind] = sector
    return found


def _descriptor_fields(prefix: str, base: int) -> list[Field]:
    root = base + ROOT_RECORD
    return [
        Field(f"{prefix}.volume_space_size", base + 80, 4, "both"),
        Field(f"{prefix}.logical_block_size", base + 128, 2, "both"),
        Field(f"{prefix}.path_table_size", base + 132, 4, "both"),
        Field(f"{prefix}.l_path_table", base + 140, 4, "le"),
        Field(f"{prefix}.m_path_table", base + 148, 4, "be"),
        Field(f"{prefix}.root.record_length", root, 1, "le"),
        Field(f"{prefix}.root.extent", root + 2, 4, "both"),
        Field(f"{prefix}.root.data_length", root + 10, 4, "both"),
        Field(f"{prefix}.root.flags", root + 25, 1, "le"),
    ]


def map_iso(path: Path) -> IsoMap:
    data = path.read_bytes()
    sectors = _descriptor_sectors(data)
    pvd = sectors["pvd"] * SECTOR
    svd = sectors["svd"] * SECTOR
    boot = sectors["boot_record"] * SECTOR
    catalog = _le32(data, boot + BOOT_CATALOG_POINTER) * SECTOR
    fields = _descriptor_fields("pvd", pvd) + _descriptor_fields("joliet", svd)
    fields += [
        Field("boot_record.catalog_lba", boot + BOOT_CATALOG_POINTER, 4, "le"),
        # validation entry (0), initial/default entry (32), section header (64), entry (96)
        Field("catalog.validation.checksum", catalog + 28, 2, "le"),
        Field("catalog.default.sector_count", catalog + 32 + 6, 2, "le"),
        Field("catalog.default.load_rba", catalog + 32 + 8, 4, "le"),
        Field("catalog.section.entries", catalog + 64 + 2, 2, "le"),
        Field("catalog.uefi.sector_count", catalog + 96 + 6, 2, "le"),
        Field("catalog.uefi.load_rba", catalog + 96 + 8, 4, "le"),
        Field("mbr.partition1.start", 446 + 8, 4, "le"),
        Field("mbr.partition1.sectors", 446 + 12, 4, "le"),
        Field("gpt.header.entries_lba", 512 + 72, 8, "le"),
        Field("gpt.header.entry_count", 512 + 80, 4, "le"),
    ]

    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        manifest_rec = iso.get_record(rr_path="/engine/manifest.json")
        manifest = Region(
            "manifest", manifest_rec.extent_location() * SECTOR, manifest_rec.get_data_length()
        )
        dirs = {
            name: iso.get_record(**{kind: dpath})
            for name, kind, dpath in (
                ("dir.root", "iso_path", "/"),
                ("dir.engine", "rr_path", "/engine"),
                ("dir.isolinux", "rr_path", "/isolinux"),
                ("dir.joliet_root", "joliet_path", "/"),
                ("dir.joliet_engine", "joliet_path", "/engine"),
            )
        }
    finally:
        iso.close()
    regions = [
        Region("system_area", 0, 4096),
        Region("pvd", pvd, SECTOR),
        Region("boot_record", boot, SECTOR),
        Region("joliet_svd", svd, SECTOR),
        Region("terminator", sectors["terminator"] * SECTOR, SECTOR),
        Region("boot_catalog", catalog, 128),
        Region("isomd5_fields", pvd + ISOMD5_AREA, 512),
        Region("l_path_table", _le32(data, pvd + 140) * SECTOR, 128),
        Region("m_path_table", struct.unpack_from(">I", data, pvd + 148)[0] * SECTOR, 128),
        manifest,
    ]
    for name, record in dirs.items():
        start = record.extent_location() * SECTOR
        regions.append(Region(name, start, record.get_data_length()))
    # The directory records that point at the manifest (ISO 9660 and Joliet trees): find them
    # by their both-endian extent field, then fuzz that record's extent and length.
    needle = Field("", 0, 4, "both").encode(manifest.start // SECTOR)
    pattern = needle[0][1] + needle[1][1]
    for name in ("dir.engine", "dir.joliet_engine"):
        record = dirs[name]
        start = record.extent_location() * SECTOR
        hit = data.find(pattern, start, start + record.get_data_length())
        if hit >= 2:
            fields.append(Field(f"{name}.manifest.extent", hit, 4, "both"))
            fields.append(Field(f"{name}.manifest.data_length", hit + 8, 4, "both"))
            fields.append(Field(f"{name}.manifest.record_length", hit - 2, 1, "le"))
    doc = json.loads(data[manifest.start : manifest.start + manifest.length])
    return IsoMap(len(data), tuple(fields), tuple(regions), manifest, doc)


@pytest.fixture(scope="module")
def iso_map(tiny_iso: Path) -> IsoMap:
    return map_iso(tiny_iso)


# --- mutations ----------------------------------------------------------------------------------

Patch = list[tuple[int, bytes]]


@dataclass(frozen=True)
class Mutation:
    """A description (shown by hypothesis on failure) and the bytes to write, or a new size."""

    what: str
    patch: tuple[tuple[int, bytes], ...] = ()
    truncate_to: int | None = None

    def apply(self, path: Path) -> None:
        with path.open("r+b") as stream:
            for offset, data in self.patch:
                stream.seek(offset)
                stream.write(data)
            if self.truncate_to is not None:
                stream.truncate(self.truncate_to)


def _interesting_values(iso_map: IsoMap) -> st.SearchStrategy[int]:
    sectors = iso_map.size // SECTOR
    return st.one_of(
        st.sampled_from(
            [0, 1, 2, 15, 16, 17, 18, 19, sectors - 1, sectors, sectors + 1, sectors * 2]
            + [0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 2**63, 2**64 - 1]
        ),
        st.integers(min_value=0, max_value=2**32 - 1),
    )


def field_mutations(iso_map: IsoMap) -> st.SearchStrategy[Mutation]:
    return st.builds(
        lambda where, value: Mutation(f"{where.name} = {value}", tuple(where.encode(value))),
        st.sampled_from(iso_map.fields),
        _interesting_values(iso_map),
    )


@st.composite
def byte_mutations(draw: st.DrawFn, iso_map: IsoMap) -> Mutation:
    region = draw(st.sampled_from(iso_map.regions))
    offset = draw(st.integers(min_value=0, max_value=max(0, region.length - 1)))
    data = draw(st.binary(min_size=1, max_size=min(32, region.length - offset)))
    return Mutation(
        f"{region.name}[{offset}:{offset + len(data)}] = {data.hex()}",
        ((region.start + offset, data),),
    )


def truncations(iso_map: IsoMap) -> st.SearchStrategy[Mutation]:
    cut = st.one_of(
        st.sampled_from([0, 1, 511, 32768, 34816, iso_map.manifest.start, iso_map.size - 1]),
        st.integers(min_value=0, max_value=iso_map.size - 1),
    )
    return cut.map(lambda size: Mutation(f"truncated to {size} bytes", truncate_to=size))


@st.composite
def manifest_mutations(draw: st.DrawFn, iso_map: IsoMap) -> Mutation:
    doc = json.loads(json.dumps(iso_map.manifest_doc))
    if draw(st.booleans()):
        what, encoded = json_mutation(doc, draw)
    else:
        files = doc["files"]
        index = draw(st.integers(min_value=0, max_value=len(files) - 1))
        key = draw(st.sampled_from(["path", "size", "sha256", "extra"]))
        files[index][key] = draw(
            st.one_of(
                json_values,
                st.sampled_from(["../../etc/passwd", "/abs", "", ".", "a/../../b", "x" * 300]),
                st.sampled_from([-1, 0, 2**63, 10**30]),
            )
        )
        what = f"files[{index}].{key} = {files[index][key]!r}"
        encoded = json.dumps(doc, separators=(",", ":")).encode()
    capacity = iso_map.manifest.length
    # Same length as before, so no directory record has to change: pad with JSON whitespace.
    encoded = encoded[:capacity].ljust(capacity, b" ")
    return Mutation(f"manifest {what}", ((iso_map.manifest.start, encoded),))


def mutations(iso_map: IsoMap) -> st.SearchStrategy[Mutation]:
    return st.one_of(
        field_mutations(iso_map),
        byte_mutations(iso_map),
        manifest_mutations(iso_map),
        truncations(iso_map),
    )


# --- running the commands -----------------------------------------------------------------------


FRESH_ANSWERS = """\
[eula]
accept = true
[keyboard]
layout = "us"
[registration]
mode = "standalone"
"""


@dataclass(frozen=True)
class DryRunTarget:
    """A blank 512 MiB sparse disk and fresh-install answers, for `engine-install --dry-run`."""

    disk: Path
    answers: Path


@pytest.fixture
def dry_run_target(tmp_path: Path) -> DryRunTarget:
    disk = tmp_path / "blank.img"
    with disk.open("wb") as stream:
        stream.truncate(512 * 1024 * 1024)
    answers = tmp_path / "fresh.toml"
    answers.write_text(FRESH_ANSWERS)
    return DryRunTarget(disk, answers)


def judge_medium(
    iso: Path, target: DryRunTarget, capsys: pytest.CaptureFixture[str]
) -> list[CliOutcome]:
    """Every engine-media command, then the installer's dry run with `iso` as its medium:
    clean outcomes only, and neither the medium nor the target disk is written."""
    before = (file_sha256(iso), sparse_digest(target.disk))
    outcomes = []
    for command in COMMANDS:
        outcomes.append(run_in_process("engine-media", engine_media, [*command, iso], capsys))
    dry_run = ["--media", iso, "--target", target.disk, "--answers", target.answers, "--dry-run"]
    outcomes.append(run_in_process("engine-install", engine_install, dry_run, capsys))
    for outcome in outcomes:
        assert_clean_outcome(outcome)
    assert (file_sha256(iso), sparse_digest(target.disk)) == before, "an input was written"
    return outcomes


def _mutated_copy(pristine: Path, workdir: Path, mutation: Mutation) -> Path:
    target = Path(tempfile.mkdtemp(dir=workdir)) / "mutated.iso"
    shutil.copyfile(pristine, target)
    mutation.apply(target)
    return target


def test_the_pristine_tiny_iso_passes_every_command(
    tiny_iso: Path, dry_run_target: DryRunTarget, capsys: pytest.CaptureFixture[str]
) -> None:
    """The baseline: without damage every command succeeds (so damage is what we measure)."""
    outcomes = judge_medium(tiny_iso, dry_run_target, capsys)
    assert [o.status for o in outcomes] == [0] * len(outcomes), outcomes


@settings(
    max_examples=fuzz_examples(40),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_damaged_iso_in_process(
    data: st.DataObject,
    tiny_iso: Path,
    iso_map: IsoMap,
    dry_run_target: DryRunTarget,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    mutation = data.draw(mutations(iso_map), label="mutation")
    target = _mutated_copy(tiny_iso, tmp_path, mutation)
    judge_medium(target, dry_run_target, capsys)
    shutil.rmtree(target.parent)


@settings(
    max_examples=fuzz_examples(4),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_damaged_iso_console_script(
    data: st.DataObject, tiny_iso: Path, iso_map: IsoMap, tmp_path: Path
) -> None:
    mutation = data.draw(mutations(iso_map), label="mutation")
    target = _mutated_copy(tiny_iso, tmp_path, mutation)
    before = file_sha256(target)
    for command in (("inspect",), ("verify",), ("md5", "check")):
        outcome = run_console("engine-media", *command, target, timeout=60)
        assert_clean_outcome(outcome)
        assert file_sha256(target) == before, f"{outcome.argv} wrote to its input"
    shutil.rmtree(target.parent)


@pytest.mark.parametrize("nasty", NASTY_JSON, ids=lambda b: repr(b[:24]))
def test_every_nasty_manifest(
    nasty: bytes,
    tiny_iso: Path,
    iso_map: IsoMap,
    dry_run_target: DryRunTarget,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each nasty document once, deterministically (hypothesis may not draw them all)."""
    capacity = iso_map.manifest.length
    mutation = Mutation(
        f"manifest replaced by {nasty[:40]!r}",
        ((iso_map.manifest.start, nasty[:capacity].ljust(capacity, b" ")),),
    )
    judge_medium(_mutated_copy(tiny_iso, tmp_path, mutation), dry_run_target, capsys)


# Damage that hypothesis found to escape as an internal error somewhere, kept as fixed cases.
KNOWN_DAMAGE: dict[str, Callable[[IsoMap], Mutation]] = {
    # pycdlib's struct.error on a boot file cut short (engine-media inspect/verify)
    "truncated-in-boot-file": lambda m: Mutation("truncated to 96416 bytes", truncate_to=96416),
    # pycdlib's KeyError while walking the path table (engine-install's MediumReader)
    "path-table-size-19": lambda m: Mutation(
        "pvd.path_table_size = 19",
        tuple(next(f for f in m.fields if f.name == "pvd.path_table_size").encode(19)),
    ),
    # a directory record without its Rock Ridge name: AttributeError in MediumReader's walk
    "engine-dir-record-damage": lambda m: Mutation(
        "dir.engine[356:365] = 1395c2bfcb00e98dd5",
        (
            (
                next(r for r in m.regions if r.name == "dir.engine").start + 356,
                bytes.fromhex("1395c2bfcb00e98dd5"),
            ),
        ),
    ),
}


@pytest.mark.parametrize("name", sorted(KNOWN_DAMAGE))
def test_known_damage(
    name: str,
    tiny_iso: Path,
    iso_map: IsoMap,
    dry_run_target: DryRunTarget,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    mutation = KNOWN_DAMAGE[name](iso_map)
    judge_medium(_mutated_copy(tiny_iso, tmp_path, mutation), dry_run_target, capsys)
