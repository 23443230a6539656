"""Bundles of manifests as uploaded: plain files and archives (.tar, .tar.gz/.tgz, .zip) of a folder.

`expand_bundle` turns the upload into the list of `(file name, bytes)` the validation engine
reads. Archives are read in memory with the standard library and never extracted to disk. Inside
an archive only `*.yaml`, `*.yml` and `*.json` count (hidden files and other files are skipped);
the names inside the archive become the file names of findings. An archive is refused, with a
finding saying why, when a member has an absolute path or `..`, is a link or a device, when it
holds more than `MAX_BUNDLE_FILES` files, or when its content would expand beyond
`MAX_BUNDLE_BYTES` (a zip bomb); sizes are checked before anything is decompressed.
"""

from __future__ import annotations

import bz2
import io
import lzma
import posixpath
import stat
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Any

from policies.validation import Finding
from policies.validation.codes import finding
from policies.validation.limits import KIB, MAX_BUNDLE_BYTES, MIB

MAX_BUNDLE_FILES = 500
"""Files (of any type) in the archives of one bundle."""
MAX_ARCHIVE_ENTRIES = 4 * MAX_BUNDLE_FILES
"""Entries of any kind, directories included, so that no archive is slow to list."""
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")
MAX_TAR_HEADER_BYTES = 64 * KIB
"""One pax or GNU long-name header member (a path needs a few hundred bytes)."""
ARCHIVE_DEADLINE_SECONDS = 10.0
"""Wall-clock time one archive may take to list and read."""

# Finding codes of the bundle layer (their catalogue entries are in policies.validation.codes).
TOO_LARGE = "MG0001"
UNSAFE_MEMBER = "MG0020"
UNREADABLE_ARCHIVE = "MG0021"
TOO_MANY_FILES = "MG0022"


class _Refused(Exception):
    def __init__(self, finding: Finding):
        super().__init__(finding.message)
        self.finding = finding


def _finding(code: str, message: str, file: str) -> Finding:
    return finding(code, message, file=file)


@dataclass
class _Budget:
    files: int = 0
    entries: int = 0
    size: int = 0
    names: set[str] = field(default_factory=set)

    def admit_entry(self, archive: str) -> None:
        self.entries += 1
        if self.entries > MAX_ARCHIVE_ENTRIES:
            raise _Refused(
                _finding(
                    TOO_MANY_FILES,
                    f"the archive holds more than {MAX_ARCHIVE_ENTRIES} entries: bundle only the folder of manifests",
                    archive,
                )
            )

    def admit_file(self, archive: str, member: str, size: int) -> None:
        self.files += 1
        if self.files > MAX_BUNDLE_FILES:
            raise _Refused(
                _finding(
                    TOO_MANY_FILES,
                    f"the bundle holds more than {MAX_BUNDLE_FILES} files: split it into several bundles",
                    archive,
                )
            )
        self.size += size
        if self.size > MAX_BUNDLE_BYTES:
            raise _Refused(
                _finding(
                    TOO_LARGE,
                    f"the archive expands to more than {MAX_BUNDLE_BYTES // MIB} MiB (at {member}): it was not "
                    "unpacked; split the bundle into smaller ones",
                    archive,
                )
            )

    def admit_bytes(self, archive: str, what: str, size: int) -> None:
        """Header data (pax records, long names, zip names and extra fields) weighs on the budget too."""
        self.size += size
        if self.size > MAX_BUNDLE_BYTES:
            raise _Refused(
                _finding(
                    TOO_LARGE,
                    f"the archive expands to more than {MAX_BUNDLE_BYTES // MIB} MiB (at {what}): it was not "
                    "unpacked; split the bundle into smaller ones",
                    archive,
                )
            )

    def unique_name(self, archive: str, member: str) -> str:
        name = member if member not in self.names else f"{archive}/{member}"
        self.names.add(name)
        return name


def is_archive(name: str, content: bytes) -> bool:
    lowered = name.lower()
    if lowered.endswith(ARCHIVE_SUFFIXES):
        return True
    if lowered.endswith(MANIFEST_SUFFIXES):
        return False
    return content[:2] == b"\x1f\x8b" or content[:4] in (b"PK\x03\x04", b"PK\x05\x06") or content[257:262] == b"ustar"


def expand_bundle(files: list[tuple[str, bytes]]) -> tuple[list[tuple[str, bytes]], list[Finding]]:
    """Plain files as they are, and the manifests inside each archive; findings for refused archives."""
    budget = _Budget(names={name for name, content in files if not is_archive(name, content)})
    expanded: list[tuple[str, bytes]] = []
    findings: list[Finding] = []
    for name, content in files:
        if not is_archive(name, content):
            expanded.append((name, content))
            continue
        try:
            if content[:4] in (b"PK\x03\x04", b"PK\x05\x06") or name.lower().endswith(".zip"):
                expanded.extend(_read_zip(name, content, budget))
            else:
                expanded.extend(_read_tar(name, content, budget))
        except _Refused as refused:
            findings.append(refused.finding)
    return expanded, findings


def _member_name(archive: str, raw: str) -> str | None:
    """The member's relative path, None when it is not a manifest; refuses unsafe paths."""
    name = raw.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise _Refused(
            _finding(
                UNSAFE_MEMBER, f"the archive member {raw!r} has an absolute path: the archive was refused", archive
            )
        )
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise _Refused(
            _finding(
                UNSAFE_MEMBER,
                f"the archive member {raw!r} points outside the folder ('..'): the archive was refused",
                archive,
            )
        )
    if not parts or any(part.startswith(".") or part == "__MACOSX" for part in parts):
        return None  # hidden files and folders, macOS resource forks
    relative = posixpath.join(*parts)
    return relative if relative.lower().endswith(MANIFEST_SUFFIXES) else None


def _read_zip(archive: str, content: bytes, budget: _Budget) -> list[tuple[str, bytes]]:
    try:
        bundle = zipfile.ZipFile(io.BytesIO(content))
        members = bundle.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise _Refused(_finding(UNREADABLE_ARCHIVE, f"the zip archive cannot be read: {exc}", archive)) from exc
    # Every size, names and extra fields included, is checked against the budget before anything is
    # decompressed, and the whole archive is read under a deadline.
    deadline = time.monotonic() + ARCHIVE_DEADLINE_SECONDS
    wanted: list[tuple[str, zipfile.ZipInfo]] = []
    for info in members:
        _check_deadline(archive, deadline)
        budget.admit_entry(archive)
        budget.admit_bytes(archive, "the member names", len(info.filename) + len(info.extra) + len(info.comment))
        mode = info.external_attr >> 16
        name = _member_name(archive, info.filename)
        if info.is_dir():
            continue
        if stat.S_ISLNK(mode):
            raise _Refused(
                _finding(
                    UNSAFE_MEMBER,
                    f"the archive member {info.filename!r} is a symbolic link: the archive was refused",
                    archive,
                )
            )
        budget.admit_file(archive, info.filename, info.file_size)
        if name is not None:
            wanted.append((name, info))
    result = []
    for name, info in wanted:
        _check_deadline(archive, deadline)
        try:
            with bundle.open(info) as member:
                data = member.read(info.file_size + 1)
        except (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError, EOFError) as exc:
            raise _Refused(
                _finding(UNREADABLE_ARCHIVE, f"the archive member {info.filename!r} cannot be read: {exc}", archive)
            ) from exc
        if len(data) > info.file_size:  # the header lied about the size
            raise _Refused(
                _finding(
                    TOO_LARGE,
                    f"the archive member {info.filename!r} is larger than its header says: the archive was refused",
                    archive,
                )
            )
        result.append((budget.unique_name(archive, name), data))
    return result


def _read_tar(archive: str, content: bytes, budget: _Budget) -> list[tuple[str, bytes]]:
    """The manifests of a tar stream, read by a bounded, linear header parser (not `tarfile`).

    `tarfile` reads pax and GNU long-name header members whole before anything can weigh them, and
    the pax parser of CPython before 3.11.10 / 3.12.6 backtracks quadratically on crafted records
    (CVE-2024-6232). This reader walks the 512-byte header blocks itself: every header member is
    weighed against `MAX_TAR_HEADER_BYTES` and the bundle budget before it is decompressed, pax
    records are parsed left to right with bounded length fields, and the whole walk runs under
    `ARCHIVE_DEADLINE_SECONDS`.
    """
    deadline = time.monotonic() + ARCHIVE_DEADLINE_SECONDS
    stream = _TarStream(archive, content, deadline)
    result: list[tuple[str, bytes]] = []
    long_name: str | None = None
    pax: dict[str, str] = {}
    while True:
        _check_deadline(archive, deadline)
        block = stream.read(_BLOCK)
        if not block or block == _ZERO_BLOCK:
            if not block and not result and budget.entries == 0 and not stream.consumed_any:
                raise _Refused(_finding(UNREADABLE_ARCHIVE, "the tar archive cannot be read: it is empty", archive))
            break
        if len(block) < _BLOCK:
            raise _Refused(_finding(UNREADABLE_ARCHIVE, "the tar archive cannot be read: it is truncated", archive))
        _verify_checksum(archive, block)
        typeflag = block[156:157]
        size = _tar_number(archive, block[124:136])
        budget.admit_entry(archive)
        if typeflag in (b"x", b"g", b"L", b"K"):
            # Header members: weighed before their data is decompressed.
            if size > MAX_TAR_HEADER_BYTES:
                raise _Refused(
                    _finding(
                        UNSAFE_MEMBER,
                        f"the archive holds an extended header of {size} bytes (at most "
                        f"{MAX_TAR_HEADER_BYTES}): the archive was refused",
                        archive,
                    )
                )
            budget.admit_bytes(archive, "an extended header", size)
            data = stream.read_member(size)
            if typeflag == b"x":
                pax = _pax_records(archive, data)
            elif typeflag == b"L":
                long_name = data.split(b"\0", 1)[0].decode("utf-8", "replace")
            # `g` (global pax) and `K` (long link name) carry nothing a manifest needs.
            continue
        name = long_name if long_name is not None else _ustar_name(block)
        name = pax.get("path", name)
        if "size" in pax:
            size = _pax_size(archive, pax["size"])
        long_name, pax = None, {}
        if typeflag in (b"1", b"2"):
            raise _Refused(
                _finding(
                    UNSAFE_MEMBER,
                    f"the archive member {name!r} is a link: the archive was refused",
                    archive,
                )
            )
        member_name = _member_name(archive, name)
        if typeflag == b"5" or (typeflag in (b"0", b"\0") and name.endswith("/")):
            stream.skip(size)  # directories carry no data, but skip what a header says anyway
            continue
        if typeflag not in (b"0", b"\0", b"7"):
            raise _Refused(
                _finding(
                    UNSAFE_MEMBER,
                    f"the archive member {name!r} is not a regular file: the archive was refused",
                    archive,
                )
            )
        budget.admit_file(archive, name, size)
        if member_name is None:
            stream.skip(size)
            continue
        result.append((budget.unique_name(archive, member_name), stream.read_member(size)))
    return result


_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)
_PAX_LENGTH_DIGITS = len(str(MAX_TAR_HEADER_BYTES))


def _check_deadline(archive: str, deadline: float) -> None:
    if time.monotonic() > deadline:
        raise _Refused(
            _finding(
                TOO_LARGE,
                f"the archive took longer than {ARCHIVE_DEADLINE_SECONDS:g} s to read: it was refused; "
                "split the bundle into smaller ones",
                archive,
            )
        )


def _verify_checksum(archive: str, block: bytes) -> None:
    stored = _tar_number(archive, block[148:156])
    unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:])
    if stored == unsigned:
        return
    signed = unsigned - 256 * sum(1 for b in block[:148] + block[156:] if b > 127)
    if stored != signed:
        raise _Refused(
            _finding(UNREADABLE_ARCHIVE, "the tar archive cannot be read: a header's checksum is wrong", archive)
        )


def _tar_number(archive: str, field: bytes) -> int:
    """A numeric header field: octal digits, or GNU base-256 (first byte 0x80) for large values."""
    if field[:1] == b"\x80":
        return int.from_bytes(field[1:], "big")  # at most 11 bytes: bounded
    if field[:1] == b"\xff":
        raise _Refused(_finding(UNREADABLE_ARCHIVE, "the tar archive cannot be read: a negative size", archive))
    digits = field.split(b"\0", 1)[0].strip(b" \0")
    if not digits:
        return 0
    if not all(48 <= c <= 55 for c in digits):
        raise _Refused(
            _finding(UNREADABLE_ARCHIVE, "the tar archive cannot be read: a header field is not a number", archive)
        )
    return int(digits, 8)


def _ustar_name(block: bytes) -> str:
    name = block[0:100].split(b"\0", 1)[0]
    if block[257:262] == b"ustar":
        prefix = block[345:500].split(b"\0", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    return name.decode("utf-8", "replace")


def _pax_records(archive: str, data: bytes) -> dict[str, str]:
    """`"%d %s=%s\\n"` records, parsed left to right; a length field longer than any admitted header is refused."""
    records: dict[str, str] = {}
    position = 0
    while position < len(data):
        if data[position:].strip(b"\0") == b"":
            break
        space = data.find(b" ", position, position + _PAX_LENGTH_DIGITS + 1)
        digits = data[position:space] if space > position else b""
        if not digits or not digits.isdigit():
            raise _Refused(
                _finding(
                    UNREADABLE_ARCHIVE,
                    "the tar archive cannot be read: a pax header record has no valid length",
                    archive,
                )
            )
        length = int(digits)
        end = position + length
        if length <= len(digits) + 1 or end > len(data) or data[end - 1 : end] != b"\n":
            raise _Refused(
                _finding(
                    UNREADABLE_ARCHIVE,
                    "the tar archive cannot be read: a pax header record is malformed",
                    archive,
                )
            )
        keyword, equals, value = data[space + 1 : end - 1].partition(b"=")
        if not equals or not keyword:
            raise _Refused(
                _finding(
                    UNREADABLE_ARCHIVE,
                    "the tar archive cannot be read: a pax header record is malformed",
                    archive,
                )
            )
        key = keyword.decode("utf-8", "replace")
        if key.startswith("GNU.sparse"):
            raise _Refused(
                _finding(
                    UNSAFE_MEMBER,
                    "the archive holds a sparse file: the archive was refused",
                    archive,
                )
            )
        records[key] = value.decode("utf-8", "replace")
        position = end
    return records


def _pax_size(archive: str, value: str) -> int:
    if not value.isdigit() or len(value) > 20:
        raise _Refused(
            _finding(UNREADABLE_ARCHIVE, "the tar archive cannot be read: a pax size is not a number", archive)
        )
    return int(value)


class _TarStream:
    """The tar bytes of an upload, decompressed (gzip, bzip2, xz) on demand and never beyond what is read."""

    _CHUNK = 64 * KIB

    def __init__(self, archive: str, content: bytes, deadline: float):
        self.archive = archive
        self.deadline = deadline
        self.content = memoryview(content)
        self.position = 0  # in `content`
        self.buffer = bytearray()
        self.consumed_any = False
        self.decompressor: Any = None
        self.kind = "plain"
        if content[:2] == b"\x1f\x8b":
            self.kind, self.decompressor = "gzip", zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif content[:3] == b"BZh":
            self.kind, self.decompressor = "bzip2", bz2.BZ2Decompressor()
        elif content[:6] == b"\xfd7zXZ\x00":
            self.kind, self.decompressor = "xz", lzma.LZMADecompressor()

    def _fill(self, wanted: int) -> None:
        """Decompresses until `wanted` bytes are buffered or the input ends."""
        while len(self.buffer) < wanted:
            _check_deadline(self.archive, self.deadline)
            room = wanted - len(self.buffer)
            try:
                if self.kind == "plain":
                    piece = bytes(self.content[self.position : self.position + room])
                    self.position += len(piece)
                elif self.kind == "gzip":
                    if self.decompressor.eof:
                        rest = self.decompressor.unused_data
                        if not rest.strip(b"\0"):
                            return
                        self.decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)  # another gzip member
                        self.content, self.position = memoryview(rest), 0
                    pending = self.decompressor.unconsumed_tail or bytes(
                        self.content[self.position : self.position + self._CHUNK]
                    )
                    if not self.decompressor.unconsumed_tail:
                        self.position += len(pending)
                    piece = self.decompressor.decompress(pending, min(max(room, self._CHUNK), 4 * self._CHUNK))
                    if (
                        not piece
                        and not self.decompressor.unconsumed_tail
                        and self.position >= len(self.content)
                        and not self.decompressor.eof
                    ):
                        return  # truncated
                else:
                    if self.decompressor.eof:
                        return
                    data = b""
                    if self.decompressor.needs_input:
                        data = bytes(self.content[self.position : self.position + self._CHUNK])
                        self.position += len(data)
                        if not data:
                            return  # truncated
                    piece = self.decompressor.decompress(data, min(max(room, self._CHUNK), 4 * self._CHUNK))
            except (zlib.error, OSError, EOFError, lzma.LZMAError, ValueError) as exc:
                raise _Refused(
                    _finding(UNREADABLE_ARCHIVE, f"the tar archive cannot be read: {exc}", self.archive)
                ) from exc
            if not piece and self.kind == "plain":
                return
            self.buffer += piece

    def read(self, size: int) -> bytes:
        self._fill(size)
        data = bytes(self.buffer[:size])
        del self.buffer[:size]  # at most one decompressed chunk (64 KiB - 256 KiB) is read ahead
        if data:
            self.consumed_any = True
        return data

    def read_member(self, size: int) -> bytes:
        """A member's data (already admitted by the budget) and the padding to the next block."""
        data = self.read(size)
        if len(data) < size:
            raise _Refused(
                _finding(UNREADABLE_ARCHIVE, "the tar archive cannot be read: it is truncated", self.archive)
            )
        self.skip_padding(size)
        return data

    def skip(self, size: int) -> None:
        remaining = size
        while remaining:
            step = min(remaining, MIB)
            if len(self.read(step)) < step:
                raise _Refused(
                    _finding(UNREADABLE_ARCHIVE, "the tar archive cannot be read: it is truncated", self.archive)
                )
            remaining -= step
        self.skip_padding(size)

    def skip_padding(self, size: int) -> None:
        padding = -size % _BLOCK
        if padding:
            self.read(padding)
