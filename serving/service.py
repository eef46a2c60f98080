"""The skysort BentoML service: every task behind one HTTP API.

Usage: ``bentoml serve serving.service:Skysort --port 3000`` (or ``skysort serve``), then
``curl -F file=@spec.fits http://127.0.0.1:3000/classify_spectrum``. docs/service.md lists
the endpoints, limits and knobs.

The service is thin: ``__init__`` loads the bundles (the Predictors compile every batch
shape there) and warms each micro-batcher, uploads are read and preprocessed by
:mod:`models.prepare` in a thread, and predictions go through the per-task
:class:`~serving.batching.MicroBatcher`. User errors are 4xx answers
``{"file": ..., "error": "<file>: <reason>", "model": ...}``; overload is 503 + Retry-After.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import anyio
import bentoml
import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from python_multipart.multipart import parse_options_header
from starlette.applications import Starlette
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartParser
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from models.inference import load_default_predictors, result_object
from models.prepare import Prepared, keep_freed_memory
from models.preprocess import air_to_vacuum
from serving.batching import MicroBatcher, Overloaded
from serving.config import Settings, start_jax
from serving.generation import GenerationError, load_default_generator, render_spectra
from serving.labelling import create_label_app
from serving.middleware import RequireFileUploads, RotateConnections
from serving.observability import ObserveRequests, configure_logging, metrics
from serving.preparing import PreparePool, prepare_named
from serving.uploads import BatchTooLarge, expand_uploads, upload_name

__all__ = ["Skysort", "upload_name"]

UNPROCESSABLE = 422
UNAVAILABLE = 503
TOO_LARGE = 413
BATCH_TASKS = ("auto", "stellar", "halpha", "galaxy")
#: form fields besides the files of a batch (``task``), with room to spare
_MAX_FORM_FIELDS = 16
SETTINGS = Settings.from_env()
logger = logging.getLogger("skysort.service")


class GenerateRequest(BaseModel):
    """Body of POST /generate_spectra."""

    model_config = ConfigDict(extra="forbid")
    n: int = Field(ge=1, le=SETTINGS.max_generate, description="number of spectra")
    seed: int = Field(ge=0, lt=2**63, description="random seed; equal seeds, equal spectra")
    format: Literal["json", "fits"] = Field("json", description="json arrays or a FITS file")


@bentoml.service(
    name="skysort",
    workers=SETTINGS.workers,
    traffic={"timeout": SETTINGS.request_timeout_s},
    logging={"access": {"enabled": False}},  # ObserveRequests writes one JSON line instead
    tracing={} if SETTINGS.tracing else {"excluded_urls": [".*"]},
)
class Skysort:
    """Loads the default bundles once, warms them, and serves them."""

    def __init__(self) -> None:
        configure_logging()
        self.settings = SETTINGS
        start_jax(self.settings.xla_threads)
        self.predictors = load_default_predictors()
        if "stellar" not in self.predictors:
            raise RuntimeError("no stellar bundle found; run `make models` or set SKYSORT_BUNDLES")
        self.batchers = {
            task: MicroBatcher(
                predictor.predict,
                max_batch_size=self.settings.max_batch_size,
                max_latency_s=self.settings.max_latency_ms / 1000,
                on_batch=metrics().batch_rows.labels(task=task).observe,
            )
            for task, predictor in self.predictors.items()
        }
        self.preprocessors = {task: p.preprocess for task, p in self.predictors.items()}
        self.prepare_pool = PreparePool(self.settings.batch_processes)
        self.generator = load_default_generator()
        self._ready = False
        self._warm_up()

    def _warm_up(self) -> None:
        """Run every network and the generator once so the first request is as fast as any.

        The air -> vacuum conversion is run too: it imports PyAstronomy on first use,
        which took 2.3 s of the first Ondřejov upload in the container smoke test.
        """
        air_to_vacuum(np.array([6562.8]))
        keep_freed_memory()  # a batch's MB-sized bodies and copies reuse the heap
        self.prepare_pool.warm()
        for predictor in self.predictors.values():
            predictor.predict(np.zeros((1, *predictor.feature_shape), np.float32))
        if self.generator is not None:
            self.generator.generate(1, seed=0)
        self._ready = True
        logger.info(
            "ready",
            extra={
                "models": [p.bundle_id for p in self.predictors.values()],
                "generator": self.generator.bundle_id if self.generator else None,
            },
        )

    @bentoml.on_shutdown
    def _stop_preparation(self) -> None:
        self.prepare_pool.close()

    def __is_ready__(self) -> bool:
        return self._ready

    # ----------------------------------------------------------------- classification

    def _model_of(self, task: str) -> str | None:
        predictor = self.predictors.get(task)
        return predictor.bundle_id if predictor else None

    async def _classify_one(self, file: Path, task: str, ctx: bentoml.Context) -> dict:
        name = upload_name(file)
        if task not in self.predictors:
            ctx.response.status_code = UNAVAILABLE
            return {"file": name, "error": f"no {task} model loaded on this server"}
        prepared = await anyio.to_thread.run_sync(
            prepare_named, file, name, self.preprocessors, task
        )
        results, status = await self._predict([prepared])
        if "error" in results[0]:
            ctx.response.status_code = status or UNPROCESSABLE  # overload stays a 503
            results[0]["model"] = self._model_of(task)
        return results[0]

    async def _predict(self, prepared: list[Prepared]) -> tuple[list[dict], int | None]:
        """Results for prepared inputs (errors kept per input), through the micro-batchers.

        The status is None, or 503 when a batcher is overloaded (every input then gets the
        busy error)."""
        results: list[dict | None] = [None] * len(prepared)
        for task, predictor in self.predictors.items():
            index = [i for i, p in enumerate(prepared) if p.error is None and p.task == task]
            if not index:
                continue
            features = np.stack([prepared[i].features for i in index])
            try:
                probabilities = await self.batchers[task].predict(features)
            except Overloaded as error:
                busy = [{"file": p.file, "error": f"server busy: {error}"} for p in prepared]
                return busy, UNAVAILABLE
            for i, row in zip(index, probabilities, strict=True):
                results[i] = result_object(prepared[i], predictor, row)
        for i, p in enumerate(prepared):
            if results[i] is None:
                results[i] = {"file": p.file, "error": p.error or "not classified"}
            outcome = "error" if "error" in results[i] else "ok"
            metrics().files.labels(task=p.task or "unknown", outcome=outcome).inc()
        return results, None

    @bentoml.api(route="/classify_spectrum")
    async def classify_spectrum(self, file: Path, ctx: bentoml.Context) -> dict:
        """Classify one uploaded FITS or text spectrum (form field ``file``) into O..M."""
        return await self._classify_one(file, "stellar", ctx)

    @bentoml.api(route="/classify_halpha")
    async def classify_halpha(self, file: Path, ctx: bentoml.Context) -> dict:
        """Classify the H-alpha profile of one uploaded spectrum (form field ``file``)."""
        return await self._classify_one(file, "halpha", ctx)

    @bentoml.api(route="/classify_galaxy")
    async def classify_galaxy(self, file: Path, ctx: bentoml.Context) -> dict:
        """Classify one uploaded JPEG, PNG or FITS image (form field ``file``) as
        spiral or elliptical."""
        return await self._classify_one(file, "galaxy", ctx)

    async def classify_batch(self, request: Request) -> Response:
        """POST /classify_batch: many files (repeated form field ``files``; tar or zip
        archives are unpacked), one result or error per file, in order. The optional form
        field ``task`` is ``auto`` (by content, the default), ``stellar``, ``halpha`` or
        ``galaxy``.

        A Starlette route of this service rather than a ``bentoml.api``: BentoML stores
        every uploaded part of a ``list[Path]`` field as a temporary file, which cost more
        server CPU than reading and classifying the spectrum in it. Here the parts stay in
        memory from the multipart parser to the readers (see docs/service.md).
        """
        try:
            form = await _read_form(request, self.settings.max_batch_files + 1)
        except Exception as error:  # noqa: BLE001 - the parser's reason is the answer
            reason = getattr(error, "detail", None) or str(error) or type(error).__name__
            if "too many files" in str(reason).lower():
                return _too_large("too many files in one batch (SKYSORT_MAX_BATCH_FILES)")
            return JSONResponse({"error": f"malformed multipart body: {reason}"}, 400)
        try:
            task = form.get("task", "auto")
            if task not in BATCH_TASKS:
                shown = task if isinstance(task, str) else "a file"
                reason = f"task must be one of {', '.join(BATCH_TASKS)}, not {shown!r}"
                return JSONResponse({"error": reason}, 400)
            parts = form.getlist("files")
            if not parts or not all(isinstance(part, UploadFile) for part in parts):
                reason = "form field 'files' must hold file uploads (curl: -F files=@spec.fits)"
                return JSONResponse({"error": reason}, 400)
            uploads = [(part.filename or "upload", await part.read()) for part in parts]
        finally:
            await form.close()
        try:
            inputs = await anyio.to_thread.run_sync(
                expand_uploads,
                uploads,
                self.settings.max_batch_files,
                self.settings.max_upload_bytes,
            )
        except BatchTooLarge as error:
            return _too_large(str(error))
        prepared = await self.prepare_pool.prepare(inputs, self.preprocessors, task)
        results, status = await self._predict(prepared)
        return JSONResponse(results, status or 200)  # a 503 gets Retry-After (ObserveRequests)

    # ------------------------------------------------------------------- generation

    @bentoml.api(route="/generate_spectra", input_spec=GenerateRequest)
    async def generate_spectra(self, n: int, seed: int, format: str, ctx: bentoml.Context) -> dict:
        """Synthetic O-type spectra from the GAN: JSON arrays, or a FITS file
        (``"format": "fits"``)."""
        if self.generator is None:
            ctx.response.status_code = UNAVAILABLE
            return {"error": "no gan model loaded on this server"}
        try:
            rendered = await anyio.to_thread.run_sync(
                render_spectra, self.generator, n, seed, format
            )
        except GenerationError as error:
            ctx.response.status_code = UNPROCESSABLE
            return {"error": str(error), "model": self.generator.bundle_id}
        if isinstance(rendered, bytes):
            return Response(
                rendered,
                media_type="application/fits",
                headers={
                    "content-disposition": f'attachment; filename="skysort-gan-{seed}-{n}.fits"',
                    "x-skysort-model": self.generator.bundle_id,
                },
            )
        return rendered

    # ------------------------------------------------------------------------ models

    def model_cards(self) -> dict:
        """Loaded bundles and their model cards (GET /models)."""
        models = [
            {"task": task, "model": p.bundle_id, "labels": p.labels, "card": p.card}
            for task, p in self.predictors.items()
        ]
        if self.generator is not None:
            models.append(
                {"task": "gan", "model": self.generator.bundle_id, "card": self.generator.card}
            )
        return {"models": models}


class _InMemoryMultiPartParser(MultiPartParser):
    """Starlette's multipart parser, keeping each file part in memory as the bytes it
    arrived in.

    Starlette spools a part over 1 MiB to a temporary file; the body is already in memory
    (RequireFileUploads read it, within SKYSORT_MAX_UPLOAD_MB, and replays it as one
    message), so a tar of a night's spectra would only be written to disk to be read
    back. Even in memory, its ``SpooledTemporaryFile`` copied every part in and out again,
    a tenth of a batch worker's CPU (py-spy, session 8). Each file part's spooled file is
    therefore replaced by a :class:`_PartBuffer` before any data is written to it.
    """

    def on_headers_finished(self) -> None:
        super().on_headers_finished()
        if self._current_part.file is not None:
            self._current_part.file.file = _PartBuffer()


class _PartBuffer:
    """The file of an uploaded part: the chunks written to it, read back without a copy
    when there is one chunk (the whole body arrives as one message)."""

    _rolled = False  # what UploadFile checks: read and write here, not in a thread

    def __init__(self):
        self._chunks: list[bytes] = []
        self._position = 0

    def _value(self) -> bytes:
        if len(self._chunks) > 1:
            self._chunks = [b"".join(self._chunks)]
        return self._chunks[0] if self._chunks else b""

    def write(self, data: bytes) -> int:
        self._chunks.append(bytes(data))
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._position, 2: len(self._value())}[whence]
        self._position = max(0, base + offset)
        return self._position

    def tell(self) -> int:
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        value = self._value()
        start = min(self._position, len(value))
        end = len(value) if size is None or size < 0 else min(len(value), start + size)
        self._position = end
        return value if start == 0 and end == len(value) else value[start:end]

    def close(self) -> None:
        self._chunks = []


async def _read_form(request: Request, max_files: int) -> FormData:
    """The request's form: multipart parsed in memory, anything else by Starlette."""
    content_type, _ = parse_options_header(request.headers.get("content-type", ""))
    if content_type == b"multipart/form-data":
        parser = _InMemoryMultiPartParser(
            request.headers, request.stream(), max_files=max_files, max_fields=_MAX_FORM_FIELDS
        )
        return await parser.parse()
    return await request.form(max_files=max_files, max_fields=_MAX_FORM_FIELDS)


def _too_large(reason: str) -> Response:
    return JSONResponse({"error": reason}, TOO_LARGE)


async def _batch_endpoint(request: Request) -> Response:
    return await bentoml.get_current_service().classify_batch(request)


async def _models_endpoint(request: Request) -> Response:
    return JSONResponse(bentoml.get_current_service().model_cards())


# The labelling page of the H-alpha active-learning loop (database: $SKYSORT_ACTIVE_DB).
Skysort.mount_asgi_app(create_label_app(), path="/label")
Skysort.mount_asgi_app(
    Starlette(
        routes=[
            Route("/models", _models_endpoint),
            Route("/classify_batch", _batch_endpoint, methods=["POST"]),
        ]
    ),
    path="/",
)
# The first middleware added is the outermost: every answer, 413 and 400 included, is
# logged and counted and carries the request id.
Skysort.add_asgi_middleware(ObserveRequests, settings=SETTINGS)
Skysort.add_asgi_middleware(RotateConnections, max_age_s=SETTINGS.connection_max_age_s)
Skysort.add_asgi_middleware(
    RequireFileUploads, fields=("file", "files"), max_body_bytes=SETTINGS.max_upload_bytes
)
