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

import io
import posixpath
import stat
import tarfile
import zipfile
from dataclasses import dataclass, field

from policies.validation import Finding
from policies.validation.codes import finding
from policies.validation.limits import MAX_BUNDLE_BYTES, MIB

MAX_BUNDLE_FILES = 500
"""Files (of any type) in the archives of one bundle."""
MAX_ARCHIVE_ENTRIES = 4 * MAX_BUNDLE_FILES
"""Entries of any kind, directories included, so that no archive is slow to list."""
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")

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
            raise _Refused(_finding(
                TOO_MANY_FILES,
                f"the archive holds more than {MAX_ARCHIVE_ENTRIES} entries: bundle only the folder of manifests",
                archive,
            ))

    def admit_file(self, archive: str, member: str, size: int) -> None:
        self.files += 1
        if self.files > MAX_BUNDLE_FILES:
            raise _Refused(_finding(
                TOO_MANY_FILES,
                f"the bundle holds more than {MAX_BUNDLE_FILES} files: split it into several bundles",
                archive,
            ))
        self.size += size
        if self.size > MAX_BUNDLE_BYTES:
            raise _Refused(_finding(
                TOO_LARGE,
                f"the archive expands to more than {MAX_BUNDLE_BYTES // MIB} MiB (at {member}): it was not "
                "unpacked; split the bundle into smaller ones",
                archive,
            ))

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
        raise _Refused(_finding(
            UNSAFE_MEMBER, f"the archive member {raw!r} has an absolute path: the archive was refused", archive
        ))
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise _Refused(_finding(
            UNSAFE_MEMBER, f"the archive member {raw!r} points outside the folder ('..'): the archive was refused",
            archive,
        ))
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
    # Every size is checked against the budget before anything is decompressed.
    wanted: list[tuple[str, zipfile.ZipInfo]] = []
    for info in members:
        budget.admit_entry(archive)
        mode = info.external_attr >> 16
        name = _member_name(archive, info.filename)
        if info.is_dir():
            continue
        if stat.S_ISLNK(mode):
            raise _Refused(_finding(
                UNSAFE_MEMBER, f"the archive member {info.filename!r} is a symbolic link: the archive was refused",
                archive,
            ))
        budget.admit_file(archive, info.filename, info.file_size)
        if name is not None:
            wanted.append((name, info))
    result = []
    for name, info in wanted:
        try:
            with bundle.open(info) as member:
                data = member.read(info.file_size + 1)
        except (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError, EOFError) as exc:
            raise _Refused(_finding(
                UNREADABLE_ARCHIVE, f"the archive member {info.filename!r} cannot be read: {exc}", archive
            )) from exc
        if len(data) > info.file_size:  # the header lied about the size
            raise _Refused(_finding(
                TOO_LARGE, f"the archive member {info.filename!r} is larger than its header says: the archive "
                "was refused", archive,
            ))
        result.append((budget.unique_name(archive, name), data))
    return result


def _read_tar(archive: str, content: bytes, budget: _Budget) -> list[tuple[str, bytes]]:
    result = []
    try:
        with tarfile.open(fileobj=io.BytesIO(content), mode="r:*") as bundle:
            # Iterating reads one header at a time; the data of a member is only decompressed when the
            # next header is read, so a member over the budget is refused before it is expanded.
            for member in bundle:
                budget.admit_entry(archive)
                name = _member_name(archive, member.name)
                if member.isdir():
                    continue
                if member.issym() or member.islnk():
                    raise _Refused(_finding(
                        UNSAFE_MEMBER, f"the archive member {member.name!r} is a link: the archive was refused",
                        archive,
                    ))
                if not member.isreg():
                    raise _Refused(_finding(
                        UNSAFE_MEMBER, f"the archive member {member.name!r} is not a regular file: the archive "
                        "was refused", archive,
                    ))
                budget.admit_file(archive, member.name, member.size)
                if name is None:
                    continue
                extracted = bundle.extractfile(member)
                result.append((budget.unique_name(archive, name), extracted.read() if extracted else b""))
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        raise _Refused(_finding(UNREADABLE_ARCHIVE, f"the tar archive cannot be read: {exc}", archive)) from exc
    return result
