"""Download LAMOST spectra by obsid: concurrent, resumable, verified, never partial.

Usage::

    config = DownloadConfig(release="dr10/v2.0", workers=4)
    results = download_spectra([605006, 605015], Path("spectra/"), config)

The URL of a spectrum is ``url_template`` filled with ``base_url``, ``release`` and
``obsid`` (default ``https://www.lamost.org/dr10/v2.0/spectrum/fits/{obsid}``, the
archive's per-obsid FITS link; a ``token`` for proprietary data is appended as
``?token=``). Each spectrum is streamed to ``OUT/.{obsid}.part``, checked, and renamed to
``OUT/{obsid}.fits`` (or ``.fits.gz`` when the archive sends gzip, recognised from the
magic bytes). The check: every byte announced by Content-Length arrived, and
:func:`models.io.read_spectrum` reads the file as a LAMOST spectrum of the expected
resolution whose header OBSID, when it has one, is the one asked for.

Re-running resumes: an obsid whose final file exists is skipped. Timeouts, connection
errors, HTTP 429 and 5xx, short bodies and files that fail the check are retried with
exponential backoff (``backoff_s * 2**(attempt - 1)``, at most ``max_backoff_s``, or the
server's Retry-After); HTTP 4xx and an OBSID mismatch fail at once. A failed obsid leaves
no file behind.
"""

from __future__ import annotations

import http.client
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from models.io import SpectrumReadError, read_spectrum

DEFAULT_BASE_URL = "https://www.lamost.org"
DEFAULT_RELEASE = "dr10/v2.0"
DEFAULT_URL_TEMPLATE = "{base_url}/{release}/spectrum/fits/{obsid}"
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 16


class TransientError(RuntimeError):
    """A failure worth retrying (network, server overload, damaged transfer)."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


class PermanentError(RuntimeError):
    """A failure that retrying will not fix (not found, forbidden, wrong spectrum)."""


@dataclass(frozen=True)
class DownloadConfig:
    """Where to download from and how hard to try.

    Attributes:
        base_url: archive root, e.g. ``https://www.lamost.org``.
        release: data release path, e.g. ``dr10/v2.0`` or ``dr6/v2``.
        url_template: format string with ``{base_url}``, ``{release}``, ``{obsid}``.
        token: optional archive token, appended as ``?token=``.
        workers: concurrent downloads.
        retries: attempts after the first one for transient failures.
        backoff_s, max_backoff_s: exponential backoff between attempts.
        timeout_s: socket timeout of one request (connect and each read).
        resolution: the ``meta["resolution"]`` a downloaded spectrum must have
            (``"low"`` for ``spectrum/fits``), or None to accept any.
    """

    base_url: str = DEFAULT_BASE_URL
    release: str = DEFAULT_RELEASE
    url_template: str = DEFAULT_URL_TEMPLATE
    token: str | None = None
    workers: int = 4
    retries: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    timeout_s: float = 60.0
    resolution: str | None = "low"

    def url(self, obsid: int) -> str:
        url = self.url_template.format(
            base_url=self.base_url.rstrip("/"), release=self.release.strip("/"), obsid=obsid
        )
        if self.token:
            url += "?" + urllib.parse.urlencode({"token": self.token})
        return url


@dataclass
class DownloadResult:
    """The outcome for one obsid: ``downloaded``, ``present`` (skipped) or ``failed``."""

    obsid: int
    status: str
    path: str | None = None
    attempts: int = 0
    bytes: int = 0
    error: str | None = None


def existing_file(out_dir: Path, obsid: int) -> Path | None:
    """The completed file of ``obsid`` in ``out_dir``, if any."""
    for suffix in (".fits", ".fits.gz"):
        path = Path(out_dir) / f"{obsid}{suffix}"
        if path.is_file():
            return path
    return None


def read_obsids(path: Path) -> list[int]:
    """Obsids from a text file, one per line (``#`` comments and blank lines ignored)."""
    obsids = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        if not text.isdigit():
            raise ValueError(f"{path}:{number}: {text!r} is not an obsid (a positive integer)")
        obsids.append(int(text))
    return obsids


def _fetch(url: str, part: Path, timeout_s: float) -> int:
    """Stream ``url`` into ``part``; returns the byte count; raises Transient/PermanentError."""
    request = urllib.request.Request(url, headers={"User-Agent": "skysort-survey"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            expected = response.headers.get("Content-Length")
            size = 0
            with open(part, "wb") as handle:
                while chunk := response.read(_CHUNK):
                    handle.write(chunk)
                    size += len(chunk)
    except urllib.error.HTTPError as error:
        if error.code in RETRY_STATUS:
            raise TransientError(f"HTTP {error.code}", _retry_after(error)) from error
        raise PermanentError(f"HTTP {error.code} {error.reason} for {url}") from error
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        raise TransientError(f"{type(error).__name__}: {error}") from error
    if expected is not None and size != int(expected):
        raise TransientError(f"short body: {size} of {expected} bytes")
    return size


def _retry_after(error: urllib.error.HTTPError) -> float | None:
    value = error.headers.get("Retry-After") if error.headers else None
    return float(value) if value and value.strip().isdigit() else None


def verify_spectrum(path: Path, obsid: int, resolution: str | None) -> None:
    """Raise unless ``path`` reads as the LAMOST spectrum of ``obsid``.

    Raises:
        TransientError: the file does not read as a spectrum (damaged transfer, error page).
        PermanentError: it reads, but is not LAMOST, not ``resolution``, or another obsid.
    """
    try:
        spectrum = read_spectrum(path)
    except SpectrumReadError as error:
        raise TransientError(f"not a readable spectrum: {error.reason}") from error
    meta = spectrum.meta
    if meta.get("source") != "lamost":
        raise PermanentError(f"the file is a {meta.get('source')} spectrum, not LAMOST")
    if resolution is not None and meta.get("resolution") != resolution:
        raise PermanentError(
            f"the file is a {meta.get('resolution')}-resolution spectrum, expected {resolution}"
        )
    header_obsid = meta.get("obsid")
    if header_obsid is not None and header_obsid != obsid:
        raise PermanentError(f"the file is obsid {header_obsid}, asked for {obsid}")


def _final_path(out_dir: Path, obsid: int, part: Path) -> Path:
    with open(part, "rb") as handle:
        gzipped = handle.read(2) == _GZIP_MAGIC
    return out_dir / f"{obsid}{'.fits.gz' if gzipped else '.fits'}"


def download_one(
    obsid: int,
    out_dir: Path,
    config: DownloadConfig,
    sleep: Callable[[float], None] = time.sleep,
) -> DownloadResult:
    """Download, check and atomically install one spectrum (see the module docstring)."""
    out_dir = Path(out_dir)
    present = existing_file(out_dir, obsid)
    if present is not None:
        return DownloadResult(obsid, "present", str(present))
    part = out_dir / f".{obsid}.part"
    url = config.url(obsid)
    result = DownloadResult(obsid, "failed")
    try:
        for attempt in range(1, config.retries + 2):
            result.attempts = attempt
            try:
                size = _fetch(url, part, config.timeout_s)
                verify_spectrum(part, obsid, config.resolution)
            except TransientError as error:
                result.error = f"attempt {attempt}: {error}"
                if attempt > config.retries:
                    break
                sleep(_delay(config, attempt, error.retry_after))
                continue
            final = _final_path(out_dir, obsid, part)
            os.replace(part, final)
            return DownloadResult(obsid, "downloaded", str(final), attempt, size)
    except PermanentError as error:
        result.error = str(error)
    finally:
        part.unlink(missing_ok=True)
    return result


def _delay(config: DownloadConfig, attempt: int, retry_after: float | None) -> float:
    if retry_after is not None:
        return min(retry_after, config.max_backoff_s)
    return min(config.backoff_s * 2 ** (attempt - 1), config.max_backoff_s)


def _bounded(
    pool: ThreadPoolExecutor, jobs: Iterable[int], submit: Callable, window: int
) -> Iterator[Future]:
    """Futures of ``submit(job)`` in completion order, with at most ``window`` in flight."""
    pending: set[Future] = set()
    for job in jobs:
        pending.add(pool.submit(submit, job))
        if len(pending) >= window:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            yield from done
    while pending:
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        yield from done


def download_spectra(
    obsids: Iterable[int],
    out_dir: Path,
    config: DownloadConfig = DownloadConfig(),
    progress: bool = True,
) -> list[DownloadResult]:
    """Download every obsid into ``out_dir`` with ``config.workers`` threads.

    Returns one result per distinct obsid, sorted by obsid. Failures are results, not
    exceptions, so one bad obsid never stops the others.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    unique = sorted(set(obsids))
    results = []
    with (
        ThreadPoolExecutor(max_workers=config.workers) as pool,
        tqdm(total=len(unique), unit="spectrum", desc="downloading", disable=not progress) as bar,
    ):
        for future in _bounded(
            pool, unique, lambda o: download_one(o, out_dir, config), 4 * config.workers
        ):
            results.append(future.result())
            bar.update(1)
    return sorted(results, key=lambda r: r.obsid)
