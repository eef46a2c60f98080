"""Batch uploads: archives unpacked in memory by content, safely, within limits."""

import gzip
import io
import tarfile
import zipfile

import pytest

from serving.uploads import BatchTooLarge, expand_uploads, upload_name


def _tar(members: dict[str, bytes], mode: str = "w:gz", tar_format=tarfile.PAX_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode, format=tar_format) as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def test_upload_name_strips_bentoml_prefix(tmp_path):
    assert upload_name(tmp_path / "tmpab_cd123spec-1.fits") == "spec-1.fits"
    assert upload_name(tmp_path / "tmpab_cd123") == "upload"


def test_plain_files_and_archive_members_keep_order_and_names(data_dir):
    spectrum = sorted((data_dir / "lamost").rglob("*.fits"))[0]
    tar = _tar({"a/one.txt": b"1 2\n3 4\n", "../../evil.txt": b"x"})
    zipped = _zip({"dir/two.txt": b"5 6\n", "dir/": b""})
    uploads = [(spectrum.name, spectrum.read_bytes()), ("set.tar.gz", tar), ("set.zip", zipped)]
    inputs = expand_uploads(uploads, max_files=10, max_bytes=10**6)
    assert inputs == [
        (spectrum.name, spectrum.read_bytes()),
        ("set.tar.gz/a/one.txt", b"1 2\n3 4\n"),
        ("set.tar.gz/../../evil.txt", b"x"),  # a name only: members never touch the disk
        ("set.zip/dir/two.txt", b"5 6\n"),
    ]


def test_links_and_devices_in_a_tar_are_skipped():
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        link = tarfile.TarInfo("passwd")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
        info = tarfile.TarInfo("ok.txt")
        info.size = 4
        archive.addfile(info, io.BytesIO(b"1 2\n"))
    inputs = expand_uploads([("x.tar", buffer.getvalue())], max_files=10, max_bytes=10**6)
    assert inputs == [("x.tar/ok.txt", b"1 2\n")]


def test_too_many_files_is_refused():
    archive = _zip({f"{i}.txt": b"1" for i in range(5)})
    with pytest.raises(BatchTooLarge, match="too many files"):
        expand_uploads([("many.zip", archive)], max_files=4, max_bytes=10**6)
    with pytest.raises(BatchTooLarge, match="too many files"):
        expand_uploads([("a", b"1 2\n")] * 3, max_files=2, max_bytes=10**6)


def test_archive_that_unpacks_past_the_limit_is_refused():
    archive = _zip({"zeros.txt": b"0" * 200_000})
    assert len(archive) < 10_000
    with pytest.raises(BatchTooLarge, match="bomb.zip"):
        expand_uploads([("bomb.zip", archive)], max_files=10, max_bytes=100_000)
    tar_bomb = _tar({"zeros.txt": b"0" * 200_000})
    with pytest.raises(BatchTooLarge, match="bomb.tar.gz"):
        expand_uploads([("bomb.tar.gz", tar_bomb)], max_files=10, max_bytes=100_000)


def test_a_corrupt_archive_is_passed_on_as_a_file():
    broken = _zip({"a.txt": b"1 2\n"})[:-30]
    assert expand_uploads([("broken.zip", broken)], 10, 10**6) == [("broken.zip", broken)]
    cut_tar = _tar({"a.txt": b"1 2\n" * 400}, mode="w:xz")[:-60]
    assert expand_uploads([("cut.tar.xz", cut_tar)], 10, 10**6) == [("cut.tar.xz", cut_tar)]


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
@pytest.mark.parametrize("tar_format", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT])
def test_tar_is_recognised_in_every_compression(mode, tar_format):
    archive = _tar({"one.txt": b"1 2\n3 4\n"}, mode=mode, tar_format=tar_format)
    inputs = expand_uploads([("set.tar", archive)], max_files=10, max_bytes=10**6)
    assert inputs == [("set.tar/one.txt", b"1 2\n3 4\n")]


def test_spectra_plain_or_gzipped_are_not_archives(data_dir):
    spectrum = sorted((data_dir / "lamost").rglob("*.fits"))[0]
    for name, content in [
        ("a.fits", spectrum.read_bytes()),
        ("a.fits.gz", gzip.compress(spectrum.read_bytes())),
        ("a.txt", b"4000 1.0\n4001 1.1\n"),
        ("tiny", b"x"),
    ]:
        assert expand_uploads([(name, content)], max_files=10, max_bytes=10**6) == [(name, content)]
