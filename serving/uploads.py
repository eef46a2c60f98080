"""Uploaded files as (client name, bytes) pairs; tar and zip archives unpacked safely.

Usage: ``inputs = expand_uploads([(name, content), ...], max_files=1000, max_bytes=64 * 2**20)``.

Everything stays in memory: a batch request's body is held in memory by
:class:`~serving.middleware.RequireFileUploads` anyway (at most ``SKYSORT_MAX_UPLOAD_MB``),
and writing each file to a temporary file and reading it back cost more than reading the
spectrum itself (measured: creating, writing and deleting a temporary file per upload was a
quarter of the batch endpoint's CPU time). An archive is recognised by its content (never
its name); only its regular members are taken (no links, devices or directories), by
content, so no member name can reach the file system. Limits on the member count and the
unpacked size keep a small archive from expanding into a large job (a "zip bomb").
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

#: BentoML stores an upload as tempfile.NamedTemporaryFile(suffix=<client file name>), whose
#: name is "tmp" + 8 random characters + suffix.
_BENTOML_TEMP_PREFIX = len("tmp") + 8
_TAR_BLOCK = tarfile.BLOCKSIZE
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_COMPRESSED = (
    (b"\x1f\x8b", gzip.open),
    (b"BZh", bz2.open),
    (b"\xfd7zXZ\x00", lzma.open),
)

#: what a corrupt archive raises while it is unpacked (BatchTooLarge is a ValueError too)
_UNPACK_ERRORS = (
    zipfile.BadZipFile,
    tarfile.TarError,
    EOFError,
    OSError,
    ValueError,
    zlib.error,
    lzma.LZMAError,
)


class BatchTooLarge(ValueError):
    """A batch request with more files or more unpacked bytes than allowed."""


def upload_name(path: Path) -> str:
    """The client's file name of an upload that BentoML stored as ``path``."""
    return Path(path).name[_BENTOML_TEMP_PREFIX:] or "upload"


def _is_archive(content: bytes) -> str | None:
    """'zip', 'tar' (plain, gzip, bzip2 or xz) or None, from the first bytes.

    Every upload of a batch passes here, so only magic numbers and the first 512-byte tar
    header (decompressed when needed) are looked at; asking ``tarfile.open(..., "r:*")``
    instead tries each compression in turn and costs more than reading a spectrum.
    A v7 tar without the "ustar" magic is recognised by its header checksum, as tarfile
    itself does.
    """
    head = content[:_TAR_BLOCK]
    if head.startswith(_ZIP_MAGICS):
        return "zip" if zipfile.is_zipfile(io.BytesIO(content)) else None
    for magic, opener in _COMPRESSED:
        if head.startswith(magic):
            try:
                with opener(io.BytesIO(content)) as stream:
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


class _Budget:
    def __init__(self, max_files: int, max_bytes: int):
        self.files_left = max_files
        self.bytes_left = max_bytes

    def take_file(self) -> None:
        self.files_left -= 1
        if self.files_left < 0:
            raise BatchTooLarge("too many files in one batch (SKYSORT_MAX_BATCH_FILES)")

    def take_bytes(self, count: int, name: str) -> None:
        self.bytes_left -= count
        if self.bytes_left < 0:
            raise BatchTooLarge(f"{name}: archive unpacks to more than the upload limit")


def _read_member(handle, size: int, member: str, prefix: str) -> bytes:
    """A member's bytes, refusing one that holds more than its header declares."""
    content = handle.read(size + 1)
    if len(content) > size:
        raise BatchTooLarge(f"{prefix}: member {member} is larger than declared")
    return content


def _zip_members(content: bytes, prefix: str, budget: _Budget) -> Iterator[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            budget.take_file()
            budget.take_bytes(info.file_size, prefix)
            with archive.open(info) as handle:
                yield info.filename, _read_member(handle, info.file_size, info.filename, prefix)


def _tar_members(content: bytes, prefix: str, budget: _Budget) -> Iterator[tuple[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(content), mode="r:*") as archive:
        for info in archive:
            if not info.isfile():
                continue  # directories, links and devices are never unpacked
            budget.take_file()
            budget.take_bytes(info.size, prefix)
            handle = archive.extractfile(info)
            yield info.name, _read_member(handle, info.size, info.name, prefix)


def expand_uploads(
    uploads: Iterable[tuple[str, bytes]], max_files: int, max_bytes: int
) -> list[tuple[str, bytes]]:
    """(client name, bytes) of every uploaded file, archive members in place of archives.

    A member is named ``<archive>/<path in the archive>``. An archive that cannot be
    unpacked is passed on as one file, so that the reader names the problem.

    Raises:
        BatchTooLarge: more than ``max_files`` inputs, or archives that unpack to more than
            ``max_bytes`` in all.
    """
    budget = _Budget(max_files, max_bytes)
    inputs: list[tuple[str, bytes]] = []
    for name, content in uploads:
        kind = _is_archive(content)
        if kind is None:
            budget.take_file()
            inputs.append((name, content))
            continue
        members = _zip_members if kind == "zip" else _tar_members
        try:
            unpacked = [(f"{name}/{m}", data) for m, data in members(content, name, budget)]
        except _UNPACK_ERRORS as error:
            if isinstance(error, BatchTooLarge):
                raise
            budget.take_file()
            inputs.append((name, content))  # unreadable archive: the reader names the problem
            continue
        inputs.extend(unpacked)
    return inputs
