"""The skysort BentoML service: classify uploaded spectra and images with the bundled models.

Usage: ``bentoml serve serving.service:Skysort --port 3000`` (or ``skysort serve``), then
``curl -F file=@spec.fits http://127.0.0.1:3000/classify_spectrum``.

The service is thin: it loads the bundles (compiling every batch shape in ``__init__``),
hands uploads to :mod:`models.inference` and turns user errors into 4xx answers of the form
``{"error": "<file>: <reason>"}``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import bentoml

from models.inference import classify_files, load_default_predictors
from serving.middleware import RequireFileUploads

UNPROCESSABLE = 422
#: BentoML stores an upload as tempfile.NamedTemporaryFile(suffix=<client file name>), whose
#: name is "tmp" + 8 random characters + suffix.
_BENTOML_TEMP_PREFIX = len("tmp") + 8


def upload_name(path: Path) -> str:
    """The client's file name of an upload that BentoML stored as ``path``."""
    return Path(path).name[_BENTOML_TEMP_PREFIX:] or "upload"


@bentoml.service(name="skysort", traffic={"timeout": 60})
class Skysort:
    """Loads the default bundles once and serves them."""

    def __init__(self) -> None:
        self.predictors = load_default_predictors()
        if "stellar" not in self.predictors:
            raise RuntimeError("no stellar bundle found; run `make models` or set SKYSORT_BUNDLES")

    def _classify_upload(self, file: Path, task: str, ctx: bentoml.Context) -> dict:
        # A symlink under the client's file name makes reader errors name the user's file.
        name = upload_name(file)
        with tempfile.TemporaryDirectory(prefix="skysort-upload-") as folder:
            link = Path(folder) / name
            link.symlink_to(Path(file).resolve())
            result = classify_files([link], self.predictors, task)[0]
        result["file"] = name
        if "error" in result:
            ctx.response.status_code = UNPROCESSABLE
        return result

    @bentoml.api(route="/classify_spectrum")
    def classify_spectrum(self, file: Path, ctx: bentoml.Context) -> dict:
        """Classify one uploaded FITS or text spectrum (form field ``file``) into O..M."""
        return self._classify_upload(file, "stellar", ctx)

    @bentoml.api(route="/classify_galaxy")
    def classify_galaxy(self, file: Path, ctx: bentoml.Context) -> dict:
        """Classify one uploaded JPEG, PNG or FITS image (form field ``file``) as
        spiral or elliptical."""
        return self._classify_upload(file, "galaxy", ctx)


Skysort.add_asgi_middleware(RequireFileUploads, fields=("file",))
