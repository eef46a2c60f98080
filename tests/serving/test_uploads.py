"""Batch uploads: archives unpacked by content, safely, within limits."""

import io
import tarfile
import zipfile

import pytest

from serving.uploads import BatchTooLarge, expand_uploads, upload_name


def _tar(members: dict[str, bytes], mode: str = "w:gz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
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


def test_plain_files_and_archive_members_keep_order_and_names(tmp_path, data_dir):
    spectrum = sorted((data_dir / "lamost").rglob("*.fits"))[0]
    plain = tmp_path / f"tmp12345678{spectrum.name}"
    plain.write_bytes(spectrum.read_bytes())
    tar = tmp_path / "tmp12345678set.tar.gz"
    tar.write_bytes(_tar({"a/one.txt": b"1 2\n3 4\n", "../../evil.txt": b"x"}))
    zipped = tmp_path / "tmp12345678set.zip"
    zipped.write_bytes(_zip({"dir/two.txt": b"5 6\n", "dir/": b""}))
    work = tmp_path / "work"
    work.mkdir()
    inputs = expand_uploads([plain, tar, zipped], work, max_files=10, max_bytes=10**6)
    names = [name for name, _ in inputs]
    assert names == [
        spectrum.name,
        "set.tar.gz/a/one.txt",
        "set.tar.gz/../../evil.txt",
        "set.zip/dir/two.txt",
    ]
    for _, path in inputs[1:]:
        assert path.parent == work  # nothing escapes the work folder
    assert inputs[1][1].read_bytes() == b"1 2\n3 4\n"


def test_too_many_files_is_refused(tmp_path):
    archive = tmp_path / "tmp12345678many.zip"
    archive.write_bytes(_zip({f"{i}.txt": b"1" for i in range(5)}))
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(BatchTooLarge, match="too many files"):
        expand_uploads([archive], work, max_files=4, max_bytes=10**6)


def test_archive_that_unpacks_past_the_limit_is_refused(tmp_path):
    archive = tmp_path / "tmp12345678bomb.zip"
    archive.write_bytes(_zip({"zeros.txt": b"0" * 200_000}))
    assert archive.stat().st_size < 10_000
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(BatchTooLarge, match="bomb.zip"):
        expand_uploads([archive], work, max_files=10, max_bytes=100_000)


def test_a_corrupt_archive_is_passed_on_as_a_file(tmp_path):
    broken = tmp_path / "tmp12345678broken.zip"
    broken.write_bytes(_zip({"a.txt": b"1 2\n"})[:-30])
    work = tmp_path / "work"
    work.mkdir()
    inputs = expand_uploads([broken], work, max_files=10, max_bytes=10**6)
    assert inputs == [("broken.zip", broken)]


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
@pytest.mark.parametrize("tar_format", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT])
def test_tar_is_recognised_in_every_compression(tmp_path, mode, tar_format):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode, format=tar_format) as archive:
        info = tarfile.TarInfo("one.txt")
        info.size = 8
        archive.addfile(info, io.BytesIO(b"1 2\n3 4\n"))
    archive_path = tmp_path / "tmp12345678set.tar"
    archive_path.write_bytes(buffer.getvalue())
    work = tmp_path / "work"
    work.mkdir()
    inputs = expand_uploads([archive_path], work, max_files=10, max_bytes=10**6)
    assert [name for name, _ in inputs] == ["set.tar/one.txt"]


def test_spectra_plain_or_gzipped_are_not_archives(tmp_path, data_dir):
    import gzip

    spectrum = sorted((data_dir / "lamost").rglob("*.fits"))[0]
    for name, content in [
        ("a.fits", spectrum.read_bytes()),
        ("a.fits.gz", gzip.compress(spectrum.read_bytes())),
        ("a.txt", b"4000 1.0\n4001 1.1\n"),
        ("tiny", b"x"),
    ]:
        path = tmp_path / f"tmp12345678{name}"
        path.write_bytes(content)
        assert expand_uploads([path], tmp_path, max_files=10, max_bytes=10**6) == [(name, path)]
