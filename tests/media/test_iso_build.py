"""The hybrid ISO builder: round trip (build, inspect, verify, reopen and read back), outside
oracles for the layout (xorriso's El Torito / system-area report, `sgdisk -v`, checkisomd5),
atomic output, refused payloads, and hypothesis on payload trees."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import re
import shutil
import signal
import stat
import sys
from pathlib import Path
from typing import Any

import pycdlib
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enginekit.cache import cache_dir
from enginekit.errors import UserInputError
from enginekit.process import run, run_text
from media import iso_builder
from media.errors import InvalidPayload
from media.inspect import MEDIA_CAPACITY, fits_on, inspect_iso
from media.iso_builder import HybridIsoBuilder, build_iso, volume_id_for
from media.iso_writer import ImageStreamer, MetadataCapture, coalesce
from media.manifest import parse_manifest
from media.reader import MediumReader
from media.system_area import read_hybrid
from media.verify import verify_iso

from .conftest import BlockNode, SmallPayload, write_small_payload


def _xorriso_report(iso: Path) -> str:
    proc = run(
        ["xorriso", "-indev", iso, "-report_el_torito", "plain", "-report_system_area", "plain"]
    )
    return (proc.stdout + proc.stderr).decode("utf-8", "replace")


def _read_rr(iso: pycdlib.PyCdlib, path: str) -> bytes:
    out = io.BytesIO()
    iso.get_file_from_iso_fp(out, rr_path=path)
    return out.getvalue()


def test_reference_round_trip(reference_iso_5: Path) -> None:
    report = inspect_iso(reference_iso_5, usb_size=8 * 1024**3)
    data = report.to_dict()
    assert list(data) == ["version", "volume_id", "size_bytes", "boot", "hybrid", "md5", "fits"]
    assert data["version"] == "5.0.0"
    assert data["volume_id"] == "ENGINE_5_0_0"
    assert data["size_bytes"] == reference_iso_5.stat().st_size
    assert [b["platform"] for b in data["boot"]] == ["bios", "uefi"]
    assert data["boot"][0]["path"] == "/isolinux/isolinux.bin"
    assert data["hybrid"] == {"mbr": True, "gpt": True, "gpt_valid": True}
    assert data["md5"] == "pass"
    assert data["fits"] == {"CD": True, "DVD-5": True, "DVD-9": True, "USB": True}
    assert inspect_iso(reference_iso_5, usb_size=1024 * 1024).fits["USB"] is False

    verified = verify_iso(reference_iso_5, boot=False)
    assert verified.ok, verified.failures()
    assert [c.name for c in verified.checks] == [
        "structure", "el torito", "hybrid", "md5", "manifest", "files",
    ]  # fmt: skip

    # Reopen with pycdlib and read every manifest file back through Rock Ridge and Joliet.
    iso = pycdlib.PyCdlib()
    iso.open(str(reference_iso_5))
    try:
        manifest = parse_manifest(_read_rr(iso, "/engine/manifest.json"))
        for entry in manifest.files:
            data_rr = _read_rr(iso, "/" + entry.path)
            assert len(data_rr) == entry.size
            assert hashlib.sha256(data_rr).hexdigest() == entry.sha256
        joliet = io.BytesIO()
        iso.get_file_from_iso_fp(joliet, joliet_path="/engine/EULA.txt")
        assert joliet.getvalue() == _read_rr(iso, "/engine/EULA.txt")
        cfg = _read_rr(iso, "/isolinux/isolinux.cfg").decode()
        assert "MENU LABEL Install Engine" in cfg
        assert "SERIAL 0 115200" in cfg
        assert "APPEND console=tty0 console=ttyS0 panic=-1" in cfg
        assert iso.pvd.volume_identifier.decode().strip() == "ENGINE_5_0_0"
    finally:
        iso.close()


def test_xorriso_sees_both_boot_images_and_a_hybrid_mbr_gpt(reference_iso_5: Path) -> None:
    text = _xorriso_report(reference_iso_5)
    assert re.search(r"^El Torito boot img :\s+1\s+BIOS\s+y\s+none\b", text, re.M), text
    assert re.search(r"^El Torito boot img :\s+2\s+UEFI\s+y\s+none\b", text, re.M), text
    assert re.search(r"^El Torito img opts :\s+1\s+boot-info-table", text, re.M), text
    assert re.search(r"^El Torito img path :\s+2\s+/isolinux/efiboot.img", text, re.M)
    summary = re.search(r"^System area summary: (.*)$", text, re.M)
    assert summary is not None, text
    assert "MBR" in summary.group(1)
    assert "isohybrid" in summary.group(1)
    assert "GPT" in summary.group(1)
    assert re.search(r"^MBR partition\s+:\s+1\s+0x00\s+0xee\s+1\b", text, re.M), text
    # The ESP partition is the El Torito UEFI image (xorriso maps it back to the file).
    assert re.search(r"^GPT partition path :\s+\d+\s+/isolinux/efiboot.img", text, re.M), text
    bad = [
        ln
        for ln in text.splitlines()
        if re.search(r"WARNING|FAILURE|SORRY|FATAL|\berror\b", ln, re.IGNORECASE)
    ]
    assert bad == []


def test_sgdisk_finds_no_problem(reference_iso_5: Path) -> None:
    out = run_text(["sgdisk", "-v", reference_iso_5])
    assert "No problems found" in out, out
    assert not re.search(r"Warning|Caution|Problem", out), out
    table = run_text(["sgdisk", "-p", reference_iso_5])
    assert re.search(r"EF00\s+EFI boot", table), table


def test_gpt_primary_and_backup_agree(reference_iso_5: Path) -> None:
    size = reference_iso_5.stat().st_size
    with open(reference_iso_5, "rb") as fp:
        info = read_hybrid(fp, size)
        assert info.gpt_valid, info.gpt_problems
        fp.seek(512)
        primary = fp.read(512)
        fp.seek(size - 512)
        backup = fp.read(512)
    assert backup[:8] == b"EFI PART"
    # Same disk GUID and entry CRC; own and alternate LBAs swapped.
    assert primary[56:72] == backup[56:72]
    assert primary[88:92] == backup[88:92]
    assert primary[24:32] == backup[32:40]
    assert primary[32:40] == backup[24:32]


def test_a_broken_gpt_is_reported(reference_iso_copy: Path) -> None:
    with open(reference_iso_copy, "r+b") as fp:
        fp.seek(reference_iso_copy.stat().st_size - 512 + 40)  # backup header: first usable LBA
        fp.write(b"\xff")
    report = inspect_iso(reference_iso_copy)
    assert report.gpt
    assert not report.gpt_valid
    assert any("backup" in p for p in report.gpt_problems)


def test_checkisomd5_accepts_our_implant(reference_iso_5: Path) -> None:
    proc = run(["checkisomd5", "--verbose", reference_iso_5], check=False)
    assert proc.returncode == 0, proc.stderr
    assert b"the result is: PASS" in proc.stderr


def test_volume_id_from_version() -> None:
    assert volume_id_for("5.0.0") == "ENGINE_5_0_0"
    assert volume_id_for("4.10.2") == "ENGINE_4_10_2"


def test_output_is_atomic_on_failure(
    small_payload: SmallPayload, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C in the middle of writing the image leaves neither OUT nor a partial file."""
    payload = small_payload({"system/root/big.bin": os.urandom(3 * 1024 * 1024)})
    out = tmp_path / "out" / "x.iso"
    out.parent.mkdir()
    emit = ImageStreamer._emit
    calls = []

    def interrupted_midway(self: ImageStreamer, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return emit(self, *args, **kwargs)

    monkeypatch.setattr(ImageStreamer, "_emit", interrupted_midway)
    with pytest.raises(KeyboardInterrupt):
        build_iso(payload, out)
    assert list(out.parent.iterdir()) == []


def test_a_file_changed_after_its_manifest_fails_the_build(
    small_payload: SmallPayload, tmp_path: Path
) -> None:
    """Same size, different bytes: caught by the SHA-256 computed while writing."""
    payload = small_payload({"system/root/data.bin": b"A" * 5000})
    (payload / "system/root/data.bin").write_bytes(b"B" * 5000)
    with pytest.raises(InvalidPayload, match=r"system/root/data\.bin: sha256 differs"):
        build_iso(payload, tmp_path / "x.iso")
    assert list(tmp_path.glob("*.iso")) == []
    assert list(tmp_path.glob(".*enginekit-partial*")) == []


def test_rebuild_replaces_output(small_payload: SmallPayload, tmp_path: Path) -> None:
    payload = small_payload()
    out = tmp_path / "x.iso"
    out.write_bytes(b"old")
    result = build_iso(payload, out, force=True)
    assert result.size_bytes == out.stat().st_size > 1024 * 1024
    assert sorted(p.name for p in tmp_path.iterdir() if ".enginekit-partial." in p.name) == []


def test_builder_refuses_its_own_paths_in_the_payload(small_payload: SmallPayload) -> None:
    payload = small_payload()
    (payload / "isolinux").mkdir()
    (payload / "isolinux/isolinux.cfg").write_text("DEFAULT evil\n")
    with pytest.raises(InvalidPayload, match=r"isolinux\.cfg"):
        HybridIsoBuilder(payload).build(payload.parent / "x.iso")


def test_builder_refuses_symlinks(small_payload: SmallPayload, tmp_path: Path) -> None:
    payload = small_payload()
    os.symlink("/etc/passwd", payload / "engine" / "link")
    with pytest.raises(InvalidPayload, match="symbolic link"):
        build_iso(payload, tmp_path / "x.iso")
    assert not (tmp_path / "x.iso").exists()


def test_large_file_is_streamed(small_payload: SmallPayload, tmp_path: Path) -> None:
    """A file bigger than the copy block size arrives intact (pycdlib copies it in chunks)."""
    big = os.urandom(iso_builder.COPY_BLOCKSIZE + 12345)
    payload = small_payload({"system/root/big.bin": big})
    out = tmp_path / "big.iso"
    build_iso(payload, out)
    with MediumReader.open(out) as reader:
        assert reader.read_bytes("system/root/big.bin") == big
        assert reader.verify_files() == []


# Names that need mangling for ISO 9660 (case, dots, spaces, long, unicode) but are fine for
# Rock Ridge and Joliet.
_name = st.text(alphabet=st.sampled_from("abAB19_-. é~"), min_size=1, max_size=24).filter(
    lambda s: s not in {".", ".."} and not s.startswith(" ") and not s.endswith(" ")
)
_tree = st.dictionaries(
    st.lists(_name, min_size=1, max_size=3).map(lambda parts: "extra/" + "/".join(parts)),
    st.binary(max_size=3000),
    max_size=6,
)


def _prefix_free(files: dict[str, bytes]) -> bool:
    """No path is also a directory of another path (a file and a dir cannot share a name)."""
    paths = set(files)
    return not any(p != q and q.startswith(p + "/") for p in paths for q in paths)


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(files=_tree.filter(_prefix_free))
def test_random_payload_trees_round_trip(tmp_path_factory: pytest.TempPathFactory,
                                         files: dict[str, bytes]) -> None:  # fmt: skip
    work = tmp_path_factory.mktemp("tree")
    payload = write_small_payload(work / "payload", files)
    out = work / "tree.iso"
    build_iso(payload, out)
    report = verify_iso(out, boot=False)
    assert report.ok, report.failures()
    with MediumReader.open(out) as reader:
        for rel, data in files.items():
            assert reader.read_bytes(rel) == data
        listed = {e.path for e in reader.manifest.files}
        assert set(files) <= listed
    shutil.rmtree(work)


def test_capacities_are_the_guide_figures() -> None:
    assert MEDIA_CAPACITY == {"CD": 737_280_000, "DVD-5": 4_700_372_992, "DVD-9": 8_543_666_176}
    # inspect reports each of them, plus the USB stick given with --usb-size.
    assert fits_on(MEDIA_CAPACITY["CD"], None) == {
        "CD": True, "DVD-5": True, "DVD-9": True, "USB": None
    }  # fmt: skip


def test_metadata_capture_skips_payload_regions_and_later_writes_win() -> None:
    capture = MetadataCapture([(100, 200)])
    capture.seek(90)
    capture.write(b"x" * 20)  # 90..110: keeps 90..100 only
    capture.seek(150)
    capture.write(b"y" * 10)  # inside the region: dropped
    capture.seek(195)
    capture.write(b"z" * 10)  # keeps 200..205
    assert capture.writes == [(90, b"x" * 10), (200, b"z" * 5)]
    assert capture.seek(0, io.SEEK_END) == 205
    clusters = coalesce([(0, b"aaaa"), (2, b"bb"), (10, b"c"), (4, b"d")])
    assert clusters == [(0, bytearray(b"aabbd")), (10, bytearray(b"c"))]


def test_an_esp_over_32_mib_is_announced_as_whole_medium(
    small_payload: SmallPayload, tmp_path: Path
) -> None:
    """The El Torito load size has 16 bits: a big ESP gets 1 ("to the end", as xorriso)."""
    payload = small_payload({"boot/initrd.img": bytes(34 * 1024 * 1024)})
    out = tmp_path / "big-esp.iso"
    build_iso(payload, out)
    uefi = [b for b in inspect_iso(out).boot if b.platform == "uefi"]
    assert [b.load_sectors for b in uefi] == [1]
    assert "No problems found" in run_text(["sgdisk", "-v", out])


def test_reference_cache_is_keyed_and_safe_in_parallel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from reference_builds.live_initramfs import live_image_for
    from reference_builds.media import reference_iso, reference_iso_name

    live = live_image_for("4.5.0")
    other_live = dataclasses.replace(live, initrd=live.initrd.with_name("initrd-other.cpio.zst"))
    names = {
        reference_iso_name("5.0.0", "k1", live),
        reference_iso_name("5.0.0", "k2", live),
        reference_iso_name("4.5.0", "k1", live),
        reference_iso_name("4.5.0", "k1", other_live),
    }
    assert len(names) == 4
    assert all(n.startswith("engine-") for n in names)
    # A private cache, with the kernel entry of the real one so nothing is downloaded.
    real_cache = cache_dir()
    monkeypatch.setenv("ENGINEKIT_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    for entry in ("kernel-live", "live-userland", "live-initramfs"):
        os.symlink(real_cache / entry, tmp_path / "cache" / entry)
    with ThreadPoolExecutor(2) as pool:
        paths = list(pool.map(reference_iso, ["4.5.0", "4.5.0"]))
    assert paths[0] == paths[1]
    assert [p.name for p in (tmp_path / "cache/media").glob("*.iso")] == [paths[0].name]
    assert inspect_iso(paths[0]).version == "4.5.0"


def test_names_that_collide_in_iso9660_all_arrive(
    small_payload: SmallPayload, tmp_path: Path
) -> None:
    """`a.txt`, `A.txt`, `a_txt`, `a txt`: one ISO 9660 name each, real names via Rock Ridge."""
    files = {f"extra/{name}": name.encode() for name in ("a.txt", "A.txt", "a_txt", "a txt")}
    files |= {"extra/d.x/f": b"1", "extra/D_X/f": b"2"}
    out = tmp_path / "collide.iso"
    build_iso(small_payload(files), out)
    with MediumReader.open(out) as reader:
        for rel, data in files.items():
            assert reader.read_bytes(rel) == data
    assert verify_iso(out).ok


@pytest.mark.root
def test_a_block_device_output_is_refused_and_left_alone(
    small_payload: SmallPayload, tmp_path: Path, block_node: BlockNode
) -> None:
    # Not replaced by a regular file (a temp next to OUT, then os.replace), nor written.
    node = block_node.path
    payload = small_payload()
    with pytest.raises(UserInputError, match="is a block device; to write a stick use") as err:
        build_iso(payload, node)
    assert "engine-media usb write" in err.value.message
    assert stat.S_ISBLK(node.lstat().st_mode)
    assert node.lstat().st_rdev == block_node.rdev
    assert block_node.backing.read_bytes() == bytes(1 << 20)
    chardev = tmp_path / "fakechr"
    os.mknod(chardev, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # like /dev/null
    with pytest.raises(UserInputError, match="is not a regular file"):
        build_iso(payload, chardev)
    assert stat.S_ISCHR(chardev.lstat().st_mode)
    assert [p.name for p in tmp_path.iterdir() if ".enginekit-partial." in p.name] == []


_KILLED_BUILD = """
import os, signal, sys
from pathlib import Path
from media.iso_builder import build_iso
from media.iso_writer import ImageStreamer

emit = ImageStreamer._emit
calls = []

def killed_midway(self, *args, **kwargs):
    calls.append(1)
    if len(calls) == 3:
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup code runs
    return emit(self, *args, **kwargs)

ImageStreamer._emit = killed_midway
build_iso(Path(sys.argv[1]), Path(sys.argv[2]))
"""


def test_a_killed_builds_partial_is_removed_by_the_next_build(
    small_payload: SmallPayload, tmp_path: Path
) -> None:
    payload = small_payload({"system/root/big.bin": os.urandom(3 * 1024 * 1024)})
    out = tmp_path / "x.iso"
    proc = run([sys.executable, "-c", _KILLED_BUILD, payload, out], check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    (left,) = [p for p in tmp_path.iterdir() if ".enginekit-partial." in p.name]
    assert left.name.startswith(".x.iso.enginekit-partial.")
    assert left.stat().st_size > 0
    assert not out.exists()
    # A live builder's partial (locked by its owner) and other names are not touched, even
    # one that looks like another output's partial with a dead-looking number in it.
    from enginekit.scratch import create_owned_partial

    live_fd, live = create_owned_partial(tmp_path, ".x.iso.enginekit-partial.")
    other = tmp_path / ".x.iso.2026.iso.99999999.abcd1234.partial"
    other.write_bytes(b"not ours to judge")
    try:
        build_iso(payload, out)
    finally:
        os.close(live_fd)
    assert not left.exists()
    assert live.exists()
    assert other.exists()
    assert out.stat().st_size > 1024 * 1024


def test_long_non_ascii_names_keep_their_full_rock_ridge_name(
    small_payload: SmallPayload, tmp_path: Path
) -> None:
    """Joliet counts a name's length in bytes: a 40-character accented file name (80 bytes)
    and a directory named likewise are cut for Joliet only, with the extension kept, and
    xorriso extracts them under their full names."""
    long_file = "extra/" + "é" * 40 + ".txt"
    long_dir = "extra/" + "ü" * 30 + "-données/f.bin"
    twins = {f"extra/{'ß' * 35}{n}.txt": n.encode() for n in "ab"}  # the same once cut
    files = {long_file: b"file", long_dir: b"in a long directory", **twins}
    out = tmp_path / "long-names.iso"
    build_iso(small_payload(files), out)
    with MediumReader.open(out) as reader:
        assert {rel: reader.read_bytes(rel) for rel in files} == files
    assert verify_iso(out).ok
    iso = pycdlib.PyCdlib()
    iso.open(str(out))
    try:
        joliet = [name for _, dirs, names in iso.walk(joliet_path="/") for name in dirs + names]
    finally:
        iso.close()
    assert all(len(name.encode("utf-8")) <= 64 for name in joliet)
    assert len({n for n in joliet if n.startswith("ß")}) == 2
    assert any(n.startswith("é") and n.endswith(".txt") for n in joliet)
    extracted = tmp_path / "x"
    run(["xorriso", "-indev", out, "-osirrox", "on", "-extract", "/extra", extracted])
    for rel, data in files.items():
        assert (extracted / rel.removeprefix("extra/")).read_bytes() == data


def test_runs_of_zeros_are_holes_in_the_built_medium(tmp_path: Path) -> None:
    """A zero-filled payload file (a VM image's unused space) is a hole in the ISO, not 64 MiB
    written; the medium still reads back, verifies and passes checkisomd5 byte for byte."""
    payload = write_small_payload(
        tmp_path / "payload", {"system/root/empty.img": bytes(64 * 1024 * 1024)}
    )
    iso = tmp_path / "sparse.iso"
    build_iso(payload, iso)
    info = iso.stat()
    assert info.st_blocks * 512 < 8 * 1024 * 1024 < info.st_size
    assert verify_iso(iso).ok
    run(["checkisomd5", str(iso)])
    with MediumReader.open(iso) as reader:
        assert reader.read_bytes("system/root/empty.img") == bytes(64 * 1024 * 1024)
