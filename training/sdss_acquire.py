"""Select SDSS galaxies with Galaxy Zoo 1 labels by SQL and download their JPEG colour cutouts.

Usage::

    query = GalaxyQuery(n_galaxies=200, kind="both", z_min=0.02, z_max=0.07)
    client = SkyServer()                                  # public SkyServer, no login
    rows = client.select_galaxies(query)                  # list[dict], one per galaxy
    report = download_cutouts(rows, Path("data/sdss_new"), client, query)

Both services are the public SkyServer web services (no account, unlike CasJobs):
``{base}/dr{N}/SkyServerWS/SearchTools/SqlSearch?cmd=SQL&format=csv`` answers a CSV whose
first line is ``#Table1``, and ``{base}/dr{N}/SkyServerWS/ImgCutout/getjpeg?ra=&dec=&scale=
&width=&height=`` answers JPEG bytes. The labels come from the ``zooSpec`` table (Galaxy Zoo
1 for galaxies with SDSS spectra: debiased vote fractions and the clean ``spiral`` /
``elliptical`` flags, which need 80% of the debiased votes), joined to ``SpecObj`` for the
redshift and ``PhotoObj`` for petroR90_r and the g-band Petrosian flux (nanomaggies).
Each cutout's pixel scale is ``scale_factor * petroR90_r`` arcsec/pixel (GZ1 used 0.024 on
423 x 423 images, so petroR90 spans ~42 pixels whatever the galaxy's distance).

Downloads retry with exponential backoff (timeouts, connection errors, HTTP 429/5xx and
responses that are not a complete JPEG), are rate limited, resume (a complete file already
under its final name is skipped) and never leave a partial file under the final name (they
are written to ``NAME.part`` and renamed when complete).
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

DEFAULT_BASE_URL = "https://skyserver.sdss.org"
GZ1_CLASSES = ("elliptical", "spiral_cw", "spiral_acw", "edge_on", "dont_know", "merger")
_GZ1_FRACTIONS = ("p_el", "p_cw", "p_acw", "p_edge", "p_dk", "p_mg")
_RETRY_STATUS = {429, 500, 502, 503, 504}


class SkyServerError(RuntimeError):
    """A SkyServer request failed for good (bad SQL, HTTP error, retries used up)."""


@dataclass(frozen=True)
class GalaxyQuery:
    """Which galaxies to select and how to cut out their images.

    Attributes:
        n_galaxies: how many galaxies (for ``kind="both"`` half spirals, half ellipticals).
        kind: ``"spiral"``, ``"elliptical"`` or ``"both"`` (GZ1 clean flags).
        z_min, z_max: spectroscopic redshift limits (inclusive).
        g_flux_min, g_flux_max: g-band Petrosian flux limits in nanomaggies (None: no limit;
            22.5 - 2.5 log10(flux) is the magnitude).
        data_release: SDSS data release of the SkyServer to ask (8 or later has zooSpec).
        scale_factor: cutout pixel scale in arcsec per arcsec of petroR90_r.
        image_size: cutout width and height in pixels.
    """

    n_galaxies: int = 100
    kind: str = "both"
    z_min: float = 0.0
    z_max: float = 0.1
    g_flux_min: float | None = None
    g_flux_max: float | None = None
    data_release: int = 17
    scale_factor: float = 0.024
    image_size: int = 423

    def __post_init__(self):
        if self.kind not in ("spiral", "elliptical", "both"):
            raise ValueError(f"kind must be spiral, elliptical or both, not {self.kind!r}")
        if self.n_galaxies < 1:
            raise ValueError("n_galaxies must be at least 1")
        if self.z_min > self.z_max:
            raise ValueError(f"z_min {self.z_min} > z_max {self.z_max}")


def galaxy_sql(query: GalaxyQuery, kind: str, n: int) -> str:
    """The SQL selecting ``n`` galaxies of one ``kind`` ("spiral" or "elliptical")."""
    flag = {"spiral": "z.spiral = 1", "elliptical": "z.elliptical = 1"}[kind]
    conditions = [flag, f"s.z BETWEEN {query.z_min:g} AND {query.z_max:g}"]
    if query.g_flux_min is not None:
        conditions.append(f"p.petroFlux_g >= {query.g_flux_min:g}")
    if query.g_flux_max is not None:
        conditions.append(f"p.petroFlux_g <= {query.g_flux_max:g}")
    where = "\n  AND ".join(conditions)
    return (
        f"SELECT TOP {int(n)} z.objid, z.dr7objid, z.ra, z.dec, s.z AS redshift,\n"
        "  p.petroR90_r, p.petroFlux_g, z.nvote, z.p_el, z.p_cw, z.p_acw, z.p_edge, z.p_dk,\n"
        "  z.p_mg, z.p_el_debiased, z.p_cs_debiased, z.spiral, z.elliptical\n"
        "FROM zooSpec AS z\n"
        "  JOIN SpecObj AS s ON s.specobjid = z.specobjid\n"
        "  JOIN PhotoObj AS p ON p.objid = z.objid\n"
        f"WHERE {where}\n"
        "ORDER BY z.objid"
    )


def query_parts(query: GalaxyQuery) -> list[tuple[str, int]]:
    """(kind, count) per SQL query: "both" asks for half spirals and half ellipticals."""
    if query.kind != "both":
        return [(query.kind, query.n_galaxies)]
    n_spiral = query.n_galaxies // 2
    parts = [("spiral", n_spiral), ("elliptical", query.n_galaxies - n_spiral)]
    return [(kind, n) for kind, n in parts if n]


def parse_skyserver_csv(text: str) -> list[dict[str, str]]:
    """Rows of a SqlSearch CSV answer (first line ``#Table1``, then a header line).

    Raises:
        SkyServerError: the answer is an error message rather than a table.
    """
    lines = text.lstrip("\ufeff").splitlines()
    if lines and lines[0].startswith("#Table"):
        lines = lines[1:]
    if not lines or "error" in lines[0].lower():
        raise SkyServerError(f"SkyServer answered no table: {text[:300]!r}")
    return list(csv.DictReader(io.StringIO("\n".join(lines))))


@dataclass
class RateLimiter:
    """At most one request per ``min_interval`` seconds (clock and sleep are injectable)."""

    min_interval: float = 0.2
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    _last: float | None = field(default=None, repr=False)

    def wait(self) -> None:
        now = self.clock()
        if self._last is not None and now - self._last < self.min_interval:
            self.sleep(self.min_interval - (now - self._last))
            now = self.clock()
        self._last = now


@dataclass
class SkyServer:
    """The public SkyServer web services of one base URL, with retries and rate limiting."""

    base_url: str = DEFAULT_BASE_URL
    timeout: float = 60.0
    max_retries: int = 4
    backoff: float = 1.0
    limiter: RateLimiter = field(default_factory=RateLimiter)

    def service_url(self, data_release: int, service: str, params: dict) -> str:
        root = self.base_url.rstrip("/")
        return f"{root}/dr{data_release}/SkyServerWS/{service}?{urllib.parse.urlencode(params)}"

    def get(self, url: str, accept: Callable[[bytes], bool] = lambda body: True) -> bytes:
        """GET ``url``, retrying transient failures and bodies ``accept`` rejects.

        Raises:
            SkyServerError: a non-retryable HTTP status, or every attempt failed.
        """
        last = "no attempt"
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.limiter.sleep(self.backoff * 2 ** (attempt - 1))
            self.limiter.wait()
            try:
                with urllib.request.urlopen(url, timeout=self.timeout) as response:
                    body = response.read()
            except urllib.error.HTTPError as error:
                detail = error.read()[:300].decode("utf-8", "replace")
                last = f"HTTP {error.code}: {detail}"
                if error.code not in _RETRY_STATUS:
                    raise SkyServerError(f"{url}: {last}") from error
                continue
            except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
                last = f"{type(error).__name__}: {error}"
                continue
            if accept(body):
                return body
            last = f"unexpected answer ({len(body)} bytes: {body[:60]!r})"
        raise SkyServerError(f"{url}: gave up after {self.max_retries + 1} attempts ({last})")

    def sql(self, sql: str, data_release: int) -> list[dict[str, str]]:
        """Run ``sql`` through SqlSearch (public, row limit of the service) and parse the CSV."""
        url = self.service_url(data_release, "SearchTools/SqlSearch", {"cmd": sql, "format": "csv"})
        return parse_skyserver_csv(self.get(url).decode("utf-8", "replace"))

    def select_galaxies(self, query: GalaxyQuery) -> list[dict[str, str]]:
        """Galaxies matching ``query`` with GZ1 labels (``gz1_class_name``, ``label``) added."""
        rows = []
        for kind, n in query_parts(query):
            answer = self.sql(galaxy_sql(query, kind, n), query.data_release)
            rows += [label_row(row, kind) for row in answer]
        return rows

    def cutout_url(self, row: dict[str, str], query: GalaxyQuery) -> str:
        scale = query.scale_factor * float(row["petroR90_r"])
        params = {
            "ra": row["ra"], "dec": row["dec"], "scale": f"{scale:.6f}",
            "width": query.image_size, "height": query.image_size,
        }  # fmt: skip
        return self.service_url(query.data_release, "ImgCutout/getjpeg", params)


def label_row(row: dict[str, str], kind: str) -> dict[str, str]:
    """Add the GZ1 most likely class (as in the staged data) and the binary label."""
    fractions = [float(row.get(name) or 0.0) for name in _GZ1_FRACTIONS]
    gz1 = max(range(len(fractions)), key=fractions.__getitem__)
    return {**row, "gz1_class": str(gz1), "gz1_class_name": GZ1_CLASSES[gz1], "label": kind}


def is_complete_jpeg(body: bytes) -> bool:
    """JPEG start-of-image magic and end-of-image marker (a cut-off download lacks the end)."""
    return body.startswith(b"\xff\xd8\xff") and body.rstrip(b"\x00").endswith(b"\xff\xd9")


@dataclass
class DownloadReport:
    downloaded: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)


def download_cutouts(
    rows: list[dict[str, str]],
    out_dir: Path,
    client: SkyServer,
    query: GalaxyQuery,
    progress: bool = True,
) -> DownloadReport:
    """Download ``images/{dr7objid}.jpeg`` for each row and write ``labels.csv`` + ``query.json``.

    Existing complete JPEGs are kept (resume). A galaxy whose download fails is reported
    and left out of labels.csv; the others still download.
    """
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    report = DownloadReport()
    done = []
    for row in tqdm(rows, desc="cutouts", unit="img", disable=not progress):
        name = f"images/{row.get('dr7objid') or row['objid']}.jpeg"
        target = out_dir / name
        if target.is_file() and is_complete_jpeg(target.read_bytes()):
            report.skipped += 1
        else:
            try:
                body = client.get(client.cutout_url(row, query), accept=is_complete_jpeg)
            except SkyServerError as error:
                report.failed[name] = str(error)
                continue
            _write_atomically(target, body)
            report.downloaded += 1
        done.append({"file": name, **row})
    _write_labels(done, out_dir / "labels.csv")
    record = {"query": asdict(query), "base_url": client.base_url, "report": asdict(report)}
    record["sql"] = [galaxy_sql(query, kind, n) for kind, n in query_parts(query)]
    (out_dir / "query.json").write_text(json.dumps(record, indent=1))
    return report


def _write_atomically(target: Path, body: bytes) -> None:
    partial = target.with_name(target.name + ".part")
    partial.write_bytes(body)
    os.replace(partial, target)


def _write_labels(rows: list[dict[str, str]], path: Path) -> None:
    first = ["file", "objid", "gz1_class", "gz1_class_name", "label"]
    columns = first + sorted({k for row in rows for k in row} - set(first))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
