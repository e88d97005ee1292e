"""The isomd5sum-compatible checksum embedded in an ISO's Primary Volume Descriptor.

`implant()` writes, and `check()` verifies, the same 512-byte application-use text that Debian's
`implantisomd5`/`checkisomd5` (rhinstaller/isomd5sum 1.2.x) write and verify, bit for bit in both
directions: an MD5 over the image minus its last 15 sectors with the field itself taken as
spaces, plus 20 "fragment sums" taken at exactly the points where the C tools take them.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum

from enginekit.errors import UserInputError
from media.errors import InvalidISO

SECTOR_SIZE = 2048
#: The PVD is searched from sector 16 on, after the system area (MBR, GPT, isohybrid code).
SYSTEM_AREA_SIZE = 16 * SECTOR_SIZE
#: Offset and length of the application-use field inside the PVD (ECMA-119 8.4.32).
APPDATA_OFFSET = 883
APPDATA_SIZE = 512
#: The last sectors are left out of the sum: burned CDs often cannot read their last sectors.
SKIP_SECTORS = 15
FRAGMENT_COUNT = 20
#: Total length of the fragment sums text; each fragment contributes 60 / count characters.
FRAGMENT_SUM_SIZE = 60
#: The C tools read in chunks of this size and look for fragment crossings once per chunk, so
#: the fragment boundaries depend on it; we read bigger blocks but cut them at the same points.
TOOL_CHUNK_SIZE = 16 * SECTOR_SIZE
#: Our read size: big enough that per-call overhead vanishes, small enough that the two
#: alternating buffers stay in the CPU cache.
READ_BLOCK_SIZE = 1024 * 1024

_VD_PRIMARY = 1
_VD_TERMINATOR = 255
_HASH_LEN = 32
_NOTICE = "THIS IS NOT THE SAME AS RUNNING MD5SUM ON THIS ISO!!"

ProgressCallback = Callable[[int, int], None]


class Md5AlreadyImplanted(UserInputError):
    """The PVD application-use field already holds data, and force was not given."""


class Md5Status(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    ABSENT = "absent"


@dataclass(frozen=True)
class EmbeddedMd5:
    """What the application-use field says, parsed the way isomd5sum parses it."""

    md5: str
    skip_sectors: int
    supported: bool
    fragment_sums: str
    fragment_count: int
    #: Byte offset of the PVD in the image, and the image size it declares (sectors x 2048).
    pvd_offset: int
    iso_size: int
    #: The field as stored, trailing spaces stripped.
    text: str

    @property
    def hashed_length(self) -> int:
        """How many bytes from the start of the image the sums cover."""
        return max(0, self.iso_size - self.skip_sectors * SECTOR_SIZE)


@dataclass(frozen=True)
class Md5Result:
    """Outcome of `check()`. `actual` is None when the check stopped at a bad fragment."""

    status: Md5Status
    expected: str | None
    actual: str | None
    fragments_ok: bool
    #: 1-based number of the first fragment whose sum did not match, if any.
    first_bad_fragment: int | None = None
    embedded: EmbeddedMd5 | None = None

    @property
    def passed(self) -> bool:
        return self.status is Md5Status.PASS


@dataclass(frozen=True)
class _Pvd:
    offset: int
    iso_size: int
    appdata: bytes


# --- opening and locating the PVD ----------------------------------------------------------


_NOT_AN_ISO_HINT = "give the path of an .iso file or of a device holding one"
_TRUNCATED_HINT = "the image was cut short (interrupted download or copy); fetch it again"
_DAMAGED_HINT = "the image is damaged; build or fetch it again"


class TruncatedISO(InvalidISO):
    """The file is shorter than the volume its Primary Volume Descriptor declares.

    One wording for every command that notices (inspect, verify, md5): `verify` and
    `md5 check` report it as a failed verification (exit 1), like any other damage.
    """

    def __init__(self, name: str, file_size: int, declared: int) -> None:
        super().__init__(
            f"{name}: truncated: the file has {file_size} bytes but the ISO declares "
            f"{declared} bytes",
            hint=_TRUNCATED_HINT,
        )


@contextmanager
def _open(path: str | os.PathLike[str], mode: str) -> Iterator[io.FileIO]:
    name = os.fspath(path)
    try:
        if stat.S_ISDIR(os.stat(name).st_mode):
            raise InvalidISO(f"{name}: is a directory, not an ISO image", hint=_NOT_AN_ISO_HINT)
        # Unbuffered: we read into our own large buffer; a second buffer would only copy.
        handle = io.FileIO(name, mode)
    except FileNotFoundError as exc:
        raise InvalidISO(f"{name}: no such file", hint="check the path of the ISO") from exc
    except PermissionError as exc:
        raise InvalidISO(
            f"{name}: permission denied ({mode} access)",
            hint="check the file's permissions (implanting needs write access)",
        ) from exc
    except OSError as exc:
        raise InvalidISO(
            f"{name}: cannot open: {exc.strerror or exc}", hint="check the path of the ISO"
        ) from exc
    with handle:
        yield handle


def _size_of(handle: io.FileIO) -> int:
    # seek() rather than fstat(): it also gives the size of a block device (a USB stick).
    return handle.seek(0, os.SEEK_END)


def _read_pvd(handle: io.FileIO, name: str) -> _Pvd:
    """Find the Primary Volume Descriptor; InvalidISO if the file is not an ISO 9660 image."""
    file_size = _size_of(handle)
    offset = SYSTEM_AREA_SIZE
    while True:
        handle.seek(offset)
        sector = handle.read(SECTOR_SIZE)
        if len(sector) < SECTOR_SIZE:
            if offset == SYSTEM_AREA_SIZE:
                raise InvalidISO(
                    f"{name}: not an ISO 9660 image (only {file_size} bytes, "
                    f"too short for a volume descriptor)",
                    hint=_NOT_AN_ISO_HINT,
                )
            raise InvalidISO(
                f"{name}: truncated in its volume descriptors at byte {offset}",
                hint=_TRUNCATED_HINT,
            )
        if sector[1:6] != b"CD001":
            raise InvalidISO(
                f"{name}: not an ISO 9660 image (no CD001 volume descriptor at byte {offset})",
                hint=_NOT_AN_ISO_HINT,
            )
        if sector[0] == _VD_PRIMARY:
            break
        if sector[0] == _VD_TERMINATOR:
            raise InvalidISO(
                f"{name}: ISO 9660 image without a Primary Volume Descriptor",
                hint=_DAMAGED_HINT,
            )
        offset += SECTOR_SIZE
    # Volume space size is stored both-endian; the C tools read the big-endian half, the
    # standard puts the little-endian one first. A disagreement means a damaged PVD.
    size_le = int.from_bytes(sector[80:84], "little")
    size_be = int.from_bytes(sector[84:88], "big")
    if size_le != size_be:
        raise InvalidISO(
            f"{name}: damaged Primary Volume Descriptor (volume size {size_le} "
            f"little-endian vs {size_be} big-endian)",
            hint=_DAMAGED_HINT,
        )
    iso_size = size_le * SECTOR_SIZE
    if iso_size <= offset:
        raise InvalidISO(
            f"{name}: Primary Volume Descriptor declares an impossible size", hint=_DAMAGED_HINT
        )
    if file_size < iso_size:
        raise TruncatedISO(name, file_size, iso_size)
    appdata = sector[APPDATA_OFFSET : APPDATA_OFFSET + APPDATA_SIZE]
    return _Pvd(offset=offset, iso_size=iso_size, appdata=appdata)


# --- parsing the field, as utilities.c:parsepvd() does --------------------------------------


def _strtol_whole(text: bytes) -> int | None:
    """C `strtol(text, &end, 10)` that must consume all of `text` up to its first NUL."""
    text = text.split(b"\0", 1)[0]
    stripped = text.lstrip(b" \t\n\r\f\v")
    digits = stripped
    if digits[:1] in (b"+", b"-"):
        digits = digits[1:]
    if not digits:
        # strtol consumed nothing: end points at the start, which is only OK if it is empty.
        return 0 if not text else None
    if not digits.isdigit():
        return None
    return int(stripped)


def _parse_appdata(pvd: _Pvd) -> EmbeddedMd5 | None:
    """Parse the field exactly as isomd5sum does, including its tolerance and its limits."""
    # The C code terminates the field at its last byte and works on a C string.
    buf = pvd.appdata[: APPDATA_SIZE - 1] + b"\0"
    md5: bytes | None = None
    skip: int | None = None
    supported: int | None = None
    fragsums = b""
    fragcount: int | None = None

    def starts_with(index: int, token: bytes) -> bool:
        return buf[index : index + len(token)] == token

    def number_after(index: int, token: bytes) -> tuple[int, int] | None:
        index += len(token)
        if index >= APPDATA_SIZE:
            return None
        end = buf.find(b";", index)
        end = APPDATA_SIZE if end < 0 else end
        value = _strtol_whole(buf[index:end])
        return None if value is None else (value, end)

    index = 0
    while index < APPDATA_SIZE:
        if starts_with(index, b"ISO MD5SUM = "):
            index += 13
            if index + _HASH_LEN >= APPDATA_SIZE:
                return None
            md5 = buf[index : index + _HASH_LEN]
            index += _HASH_LEN
            semi = buf.find(b";", index)
            index = APPDATA_SIZE if semi < 0 else semi
        elif starts_with(index, b"SKIPSECTORS = ") and (
            found := number_after(index, b"SKIPSECTORS = ")
        ):
            skip, index = found
            if index >= APPDATA_SIZE:
                return None
        elif starts_with(index, b"RHLISOSTATUS=") and (
            found := number_after(index, b"RHLISOSTATUS=")
        ):
            supported, index = found
        elif starts_with(index, b"FRAGMENT SUMS = "):
            index += 16
            if index + FRAGMENT_SUM_SIZE >= APPDATA_SIZE:
                return None
            fragsums = buf[index : index + FRAGMENT_SUM_SIZE]
            index += FRAGMENT_SUM_SIZE
            semi = buf.find(b";", index)
            index = APPDATA_SIZE if semi < 0 else semi
        elif starts_with(index, b"FRAGMENT COUNT = ") and (
            found := number_after(index, b"FRAGMENT COUNT = ")
        ):
            fragcount, index = found
        index += 1
        if None not in (md5, skip, supported, fragcount) and fragsums:
            break
    # The tools need at least the sum and the skip count; everything else has defaults.
    if md5 is None or skip is None:
        return None
    return EmbeddedMd5(
        md5=md5.split(b"\0", 1)[0].decode("latin-1"),
        skip_sectors=skip,
        supported=bool(supported),
        fragment_sums=fragsums.split(b"\0", 1)[0].decode("latin-1"),
        fragment_count=20 if fragcount is None else fragcount,
        pvd_offset=pvd.offset,
        iso_size=pvd.iso_size,
        text=pvd.appdata.decode("latin-1").rstrip(" \0"),
    )


# --- the hashing pass shared by implant and check -------------------------------------------


def fragment_checkpoints(hashed_length: int, fragment_count: int) -> list[tuple[int, int]]:
    """Where the C tools snapshot the running MD5: a list of (end offset, fragment number).

    The tools read `TOOL_CHUNK_SIZE` chunks; after hashing the chunk that starts at `offset` they
    compute `offset * (count + 1) // length` and, when it differs from the last value, finalise
    a copy of the MD5. A chunk may jump several fragments at once on a small image; then only
    one snapshot is taken, numbered by where it landed, exactly as in the tools.
    """
    if fragment_count <= 0 or hashed_length <= 0:
        return []
    divisor = TOOL_CHUNK_SIZE * (fragment_count + 1)
    chunks = -(-hashed_length // TOOL_CHUNK_SIZE)
    points: dict[int, int] = {}
    for fragment in range(1, fragment_count + 1):
        # Smallest chunk index k with k * CHUNK * (count + 1) // length >= fragment.
        chunk = -(-(fragment * hashed_length) // divisor)
        if chunk < chunks and chunk not in points:
            points[chunk] = chunk * divisor // hashed_length
    return [
        (min((chunk + 1) * TOOL_CHUNK_SIZE, hashed_length), number)
        for chunk, number in sorted(points.items())
    ]


def _fragment_text(digest: bytes, per_fragment: int) -> str:
    # printf("%01x", byte) then keep one character: the leading hex digit of the byte
    # without zero padding (0x0a gives "a", 0x5a gives "5").
    return "".join(format(byte, "x")[0] for byte in digest[: min(per_fragment, 16)])


def _read_ahead(handle: io.FileIO, name: str, length: int) -> Iterator[tuple[int, memoryview]]:
    """Blocks of [0, length) as (offset, view), the next one read while the caller hashes.

    Two buffers alternate: a worker thread preads into one while the caller works on the
    other. Both pread and MD5 release the GIL, so reading overlaps hashing on two cores. A
    view is only valid until the next iteration.
    """
    fd = handle.fileno()
    buffers = [memoryview(bytearray(READ_BLOCK_SIZE)) for _ in range(2)]

    def fill(slot: int, offset: int) -> int:
        wanted = min(READ_BLOCK_SIZE, length - offset)
        target = buffers[slot][:wanted]
        done = 0
        while done < wanted:
            got = os.preadv(fd, [target[done:]], offset + done)
            if got <= 0:
                break
            done += got
        return done

    if length <= 0:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="isomd5-read") as reader:
        pending = reader.submit(fill, 0, 0)
        slot, position = 0, 0
        while position < length:
            got = pending.result()
            if got < min(READ_BLOCK_SIZE, length - position):
                raise InvalidISO(
                    f"{name}: truncated: no data after byte {position + got}",
                    hint=_TRUNCATED_HINT,
                )
            if position + got < length:
                pending = reader.submit(fill, 1 - slot, position + got)
            yield position, buffers[slot][:got]
            position += got
            slot = 1 - slot


def _hash_image(
    handle: io.FileIO,
    name: str,
    hashed_length: int,
    blank_from: int,
    fragment_count: int,
    on_fragment: Callable[[int, str], bool],
    progress: ProgressCallback | None,
) -> str | None:
    """MD5 of [0, hashed_length) with the 512 bytes at `blank_from` read as spaces.

    `on_fragment(number, text)` gets each fragment sum as the tools compute it; returning
    False stops the pass (the result is then None), as checkisomd5 stops at a bad fragment.
    """
    per_fragment = FRAGMENT_SUM_SIZE // fragment_count if fragment_count > 0 else 0
    checkpoints = fragment_checkpoints(hashed_length, fragment_count) if per_fragment else []
    checkpoints.reverse()  # pop() from the end gives them in file order
    blank = b" " * APPDATA_SIZE
    md5 = hashlib.md5(usedforsecurity=False)
    if progress:
        progress(0, hashed_length)
    for position, view in _read_ahead(handle, name, hashed_length):
        got = len(view)
        # Replace the embedded field (or the part of it in this block) by spaces.
        lo = max(blank_from, position)
        hi = min(blank_from + APPDATA_SIZE, position + got)
        if lo < hi:
            view[lo - position : hi - position] = blank[lo - blank_from : hi - blank_from]
        start = 0
        while checkpoints and checkpoints[-1][0] <= position + got:
            end, number = checkpoints.pop()
            md5.update(view[start : end - position])
            start = end - position
            if not on_fragment(number, _fragment_text(md5.copy().digest(), per_fragment)):
                return None
        md5.update(view[start:got])
        if progress:
            progress(position + got, hashed_length)
    return md5.hexdigest()


# --- public API -----------------------------------------------------------------------------


def read_embedded(path: str | os.PathLike[str]) -> EmbeddedMd5 | None:
    """The embedded checksum of the ISO at `path`, or None if it carries none."""
    name = os.fspath(path)
    with _open(path, "rb") as handle:
        return _parse_appdata(_read_pvd(handle, name))


def check(
    path: str | os.PathLike[str],
    *,
    progress: ProgressCallback | None = None,
    stop_at_bad_fragment: bool = True,
) -> Md5Result:
    """Verify the embedded checksum the way `checkisomd5` does; never modifies the file.

    Like the tool, the check stops at the first fragment whose sum does not match (then
    `actual` is None) unless `stop_at_bad_fragment` is False.
    """
    name = os.fspath(path)
    with _open(path, "rb") as handle:
        pvd = _read_pvd(handle, name)
        embedded = _parse_appdata(pvd)
        if embedded is None:
            return Md5Result(Md5Status.ABSENT, None, None, fragments_ok=False)
        if embedded.iso_size - embedded.skip_sectors * SECTOR_SIZE > _size_of(handle):
            raise InvalidISO(
                f"{name}: SKIPSECTORS = {embedded.skip_sectors} is out of range",
                hint="the embedded checksum is damaged; implant it again with --force",
            )
        first_bad: list[int] = []
        expected_sums = embedded.fragment_sums.encode("latin-1")
        count = embedded.fragment_count
        per_fragment = FRAGMENT_SUM_SIZE // count if 0 < count <= FRAGMENT_SUM_SIZE else 0

        def on_fragment(number: int, text: str) -> bool:
            start = (number - 1) * per_fragment
            # The tool compares against the 60 characters it copied, byte by byte.
            want = expected_sums[start : start + len(text)].decode("latin-1")
            if text != want:
                if not first_bad:
                    first_bad.append(number)
                return not stop_at_bad_fragment
            return True

        actual = _hash_image(
            handle,
            name,
            embedded.hashed_length,
            embedded.pvd_offset + APPDATA_OFFSET,
            count if per_fragment else 0,
            on_fragment,
            progress,
        )
    fragments_ok = not first_bad
    passed = fragments_ok and actual == embedded.md5
    return Md5Result(
        status=Md5Status.PASS if passed else Md5Status.FAIL,
        expected=embedded.md5,
        actual=actual,
        fragments_ok=fragments_ok,
        first_bad_fragment=first_bad[0] if first_bad else None,
        embedded=embedded,
    )


def format_appdata(md5: str, fragment_sums: str, *, supported: bool = False) -> bytes:
    """The 512-byte field implantisomd5 writes for these sums."""
    text = (
        f"ISO MD5SUM = {md5};SKIPSECTORS = {SKIP_SECTORS};RHLISOSTATUS={int(supported)};"
        f"FRAGMENT SUMS = {fragment_sums};FRAGMENT COUNT = {FRAGMENT_COUNT};{_NOTICE}"
    ).encode("ascii")
    return text.ljust(APPDATA_SIZE, b" ")


def implant(
    path: str | os.PathLike[str],
    *,
    force: bool = False,
    supported: bool = False,
    progress: ProgressCallback | None = None,
) -> str:
    """Embed the isomd5sum checksum into the ISO at `path` in place; returns the hex MD5.

    Like `implantisomd5`, refuses when the application-use field is not blank unless `force`
    (which blanks it first). Must be the last step that changes the image: the sum covers
    everything but the last 15 sectors, the system area (MBR, GPT) included.
    """
    name = os.fspath(path)
    try:
        mode = os.stat(name).st_mode
    except OSError:
        mode = None  # _open explains a missing or unreadable file
    if mode is not None and stat.S_ISBLK(mode):
        raise UserInputError(
            f"{name} is a block device; to write a stick use 'engine-media usb write'",
            hint="implant into the ISO file, then write it to the stick",
        )
    if mode is not None and not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        raise UserInputError(f"{name} is not a regular file", hint="give the path of an ISO file")
    with _open(path, "r+b") as handle:
        pvd = _read_pvd(handle, name)
        if not force and pvd.appdata != b" " * APPDATA_SIZE:
            found = "an isomd5sum checksum" if _parse_appdata(pvd) else "other data"
            raise Md5AlreadyImplanted(
                f"{name}: the ISO's application-use field already holds {found}; not implanting",
                hint="add --force to overwrite it (implantisomd5 --force does the same)",
            )
        sums: list[str] = []

        def on_fragment(_number: int, text: str) -> bool:
            sums.append(text)
            return True

        hashed_length = pvd.iso_size - SKIP_SECTORS * SECTOR_SIZE
        md5 = _hash_image(
            handle,
            name,
            hashed_length,
            pvd.offset + APPDATA_OFFSET,
            FRAGMENT_COUNT,
            on_fragment,
            progress,
        )
        assert md5 is not None  # on_fragment never stops the pass
        handle.seek(pvd.offset + APPDATA_OFFSET)
        handle.write(format_appdata(md5, "".join(sums), supported=supported))
        handle.flush()
        os.fsync(handle.fileno())
    return md5


def describe(result: Md5Result) -> str:
    """One line for people: what the check found."""
    if result.status is Md5Status.ABSENT:
        return "no embedded MD5 (implant one with 'engine-media md5 implant')"
    if result.status is Md5Status.PASS:
        return f"embedded MD5 {result.expected} matches"
    if result.first_bad_fragment is not None:
        return (
            f"embedded MD5 does not match: fragment {result.first_bad_fragment} of "
            f"{result.embedded.fragment_count if result.embedded else FRAGMENT_COUNT} differs"
        )
    return f"embedded MD5 does not match: expected {result.expected}, computed {result.actual}"


__all__ = [
    "EmbeddedMd5",
    "Md5AlreadyImplanted",
    "Md5Result",
    "Md5Status",
    "check",
    "describe",
    "format_appdata",
    "fragment_checkpoints",
    "implant",
    "read_embedded",
]
