"""Uploaded files as (client name, path) pairs; tar and zip archives unpacked safely.

Usage: ``inputs = expand_uploads(paths, workdir, max_files=1000, max_bytes=64 * 2**20)``.

An archive is recognised by its content (never its name); its regular members are written
under ``workdir`` with flat names, so no member can escape it (no ``..``, no absolute
paths, no links). Limits on the member count and the unpacked size keep a small archive
from expanding into a large job (a "zip bomb").
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import tarfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

#: BentoML stores an upload as tempfile.NamedTemporaryFile(suffix=<client file name>), whose
#: name is "tmp" + 8 random characters + suffix.
_BENTOML_TEMP_PREFIX = len("tmp") + 8
_COPY_CHUNK = 1 << 20
_TAR_BLOCK = tarfile.BLOCKSIZE
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_COMPRESSED = (
    (b"\x1f\x8b", gzip.open),
    (b"BZh", bz2.open),
    (b"\xfd7zXZ\x00", lzma.open),
)


class BatchTooLarge(ValueError):
    """A batch request with more files or more unpacked bytes than allowed."""


def upload_name(path: Path) -> str:
    """The client's file name of an upload that BentoML stored as ``path``."""
    return Path(path).name[_BENTOML_TEMP_PREFIX:] or "upload"


def _is_archive(path: Path) -> str | None:
    """'zip', 'tar' (plain, gzip, bzip2 or xz) or None, from the first bytes.

    Every upload of a batch passes here, so only magic numbers and the first 512-byte tar
    header (decompressed when needed) are looked at; asking ``tarfile.open(path, "r:*")``
    instead tries each compression in turn and costs more than reading a spectrum.
    A v7 tar without the "ustar" magic is recognised by its header checksum, as tarfile
    itself does.
    """
    with open(path, "rb") as handle:
        head = handle.read(_TAR_BLOCK)
    if head.startswith(_ZIP_MAGICS):
        return "zip" if zipfile.is_zipfile(path) else None
    for magic, opener in _COMPRESSED:
        if head.startswith(magic):
            try:
                with opener(path) as stream:
                    head = stream.read(_TAR_BLOCK)
            except (OSError, EOFError, lzma.LZMAError, zlib.error, ValueError):
                return None
            break
    if len(head) < _TAR_BLOCK:
        return None
    try:
        tarfile.TarInfo.frombuf(head, tarfile.ENCODING, "surrogateescape")
    except tarfile.HeaderError:
        return None
    return "tar"


def _zip_members(path: Path) -> Iterator[tuple[str, int, Iterable[bytes]]]:
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            with archive.open(info) as handle:
                yield info.filename, info.file_size, iter(lambda h=handle: h.read(_COPY_CHUNK), b"")


def _tar_members(path: Path) -> Iterator[tuple[str, int, Iterable[bytes]]]:
    with tarfile.open(path, "r:*") as archive:
        for info in archive:
            if not info.isfile():
                continue  # directories, links and devices are never unpacked
            handle = archive.extractfile(info)
            yield info.name, info.size, iter(lambda h=handle: h.read(_COPY_CHUNK), b"")


class _Budget:
    def __init__(self, max_files: int, max_bytes: int):
        self.files_left = max_files
        self.bytes_left = max_bytes
        self.files_taken = 0

    def take_file(self) -> None:
        self.files_left -= 1
        self.files_taken += 1
        if self.files_left < 0:
            raise BatchTooLarge("too many files in one batch (SKYSORT_MAX_BATCH_FILES)")

    def take_bytes(self, count: int, name: str) -> None:
        self.bytes_left -= count
        if self.bytes_left < 0:
            raise BatchTooLarge(f"{name}: archive unpacks to more than the upload limit")


def _unpack(
    path: Path, kind: str, prefix: str, workdir: Path, budget: _Budget
) -> list[tuple[str, Path]]:
    members = _zip_members(path) if kind == "zip" else _tar_members(path)
    unpacked = []
    for member, size, chunks in members:
        budget.take_file()
        budget.take_bytes(size, prefix)
        target = workdir / f"{budget.files_taken:06d}-{PurePosixPath(member).name}"
        written = 0
        with open(target, "wb") as out:
            for chunk in chunks:
                written += len(chunk)
                if written > size:  # a header that lies about the size
                    raise BatchTooLarge(f"{prefix}: member {member} is larger than declared")
                out.write(chunk)
        unpacked.append((f"{prefix}/{member}", target))
    return unpacked


def expand_uploads(
    paths: Iterable[Path], workdir: Path, max_files: int, max_bytes: int
) -> list[tuple[str, Path]]:
    """(client name, path) of every uploaded file, archive members in place of archives.

    Raises:
        BatchTooLarge: more than ``max_files`` inputs, or archives that unpack to more than
            ``max_bytes`` in all.
    """
    budget = _Budget(max_files, max_bytes)
    inputs: list[tuple[str, Path]] = []
    for path in paths:
        name = upload_name(path)
        kind = _is_archive(path)
        if kind is None:
            budget.take_file()
            inputs.append((name, path))
            continue
        try:
            inputs.extend(_unpack(path, kind, name, workdir, budget))
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError) as error:
            if isinstance(error, BatchTooLarge):
                raise
            budget.take_file()
            inputs.append((name, path))  # unreadable archive: the reader names the problem
    return inputs
