"""The BentoML service in-process over HTTP (to_asgi) and as a class."""

import asyncio
import io
import tarfile
from dataclasses import replace
from types import SimpleNamespace

import pytest
from astropy.io import fits


def _post(client, route, path, name=None):
    return client.post(route, files={"file": (name or path.name, path.read_bytes())})


def test_classify_spectrum_over_http(client, data_dir, stellar_test_rows, stellar_predictor):
    path = data_dir / stellar_test_rows[0].file
    response = _post(client, "/classify_spectrum", path)
    assert response.status_code == 200
    body = response.json()
    assert body["file"] == path.name
    assert body["model"] == stellar_predictor.bundle_id
    assert set(body["probabilities"]) == set("OBAFGKM")
    assert body["label"] == max(body["probabilities"], key=body["probabilities"].get)
    assert abs(sum(body["probabilities"].values()) - 1) < 1e-3
    assert len(response.headers["x-request-id"]) >= 8


def test_http_result_equals_the_cli_result(client, lamost_files, stellar_predictor):
    from models.inference import classify_files

    expected = classify_files(lamost_files[:3], {"stellar": stellar_predictor}, "stellar")
    for path, want in zip(lamost_files[:3], expected, strict=True):
        got = _post(client, "/classify_spectrum", path).json()
        assert got["label"] == want["label"]
        for label, p in want["probabilities"].items():
            assert got["probabilities"][label] == pytest.approx(p, abs=1e-5)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("galaxy.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "PNG image, not a spectrum"),
        ("empty.fits", b"", "empty"),
        ("notes.txt", b"hello world\n", "numeric"),
    ],
)
def test_bad_uploads_get_422_naming_file_and_reason(client, name, content, reason):
    response = client.post("/classify_spectrum", files={"file": (name, content)})
    assert response.status_code == 422
    body = response.json()
    assert body["file"] == name
    assert body["error"].startswith(f"{name}: ")
    assert reason.lower() in body["error"].lower()
    assert body["model"].startswith("stellar-")


def test_spectra_outside_the_grid_are_422_and_partial_ones_warned(client):
    import numpy as np

    flux = "\n".join(
        f"{w:.1f} {1 + 0.01 * (i % 7):.3f}" for i, w in enumerate(np.linspace(20000, 25000, 400))
    )
    response = client.post("/classify_spectrum", files={"file": ("ir.txt", flux.encode())})
    assert response.status_code == 422
    assert response.json()["error"].startswith("ir.txt: no flux inside the model's")
    flux = "\n".join(
        f"{w:.1f} {1 + 0.01 * (i % 7):.3f}" for i, w in enumerate(np.linspace(3000, 4400, 400))
    )
    response = client.post("/classify_spectrum", files={"file": ("blue.txt", flux.encode())})
    assert response.status_code == 200
    assert any("the class is uncertain" in w for w in response.json()["warnings"])


def test_missing_form_field_is_400_with_a_plain_error_object(client):
    response = client.post("/classify_spectrum", files={"other": ("x.fits", b"abc")})
    assert response.status_code == 400
    body = response.json()
    assert isinstance(body, dict) and "file" in str(body)


def test_text_instead_of_a_file_is_400_not_a_fetch(client):
    """BentoML would take the text as a URL to download; the middleware refuses first."""
    for value in ("SIMPLE  = T", "http://127.0.0.1:9/spec.fits"):
        urlencoded = client.post("/classify_spectrum", data={"file": value})
        multipart = client.post(
            "/classify_spectrum", data={"file": value}, files={"other": ("x", b"1")}
        )
        for response in (urlencoded, multipart):
            assert response.status_code == 400
            assert "must be a file upload" in response.json()["error"]


def test_classify_galaxy_over_http(client, galaxy_image):
    response = _post(client, "/classify_galaxy", galaxy_image)
    assert response.status_code == 200
    body = response.json()
    assert body["task"] == "galaxy" and body["file"] == galaxy_image.name
    assert set(body["probabilities"]) == {"elliptical", "spiral"}
    assert body["model"].startswith("galaxy-")


def test_spectrum_sent_to_galaxy_endpoint_is_422(client, lamost_files):
    response = _post(client, "/classify_galaxy", lamost_files[0])
    assert response.status_code == 422
    assert response.json()["error"].startswith(lamost_files[0].name)


def test_classify_halpha(client, service, halpha_file):
    response = _post(client, "/classify_halpha", halpha_file)
    if "halpha" not in service.predictors:
        assert response.status_code == 503
        assert "no halpha model loaded" in response.json()["error"]
        return
    assert response.status_code == 200
    body = response.json()
    assert body["task"] == "halpha"
    assert body["model"] == service.predictors["halpha"].bundle_id
    assert body["label"] in service.predictors["halpha"].labels


def _ctx():
    return SimpleNamespace(response=SimpleNamespace(status_code=200))


def test_missing_models_answer_503_not_500(service, halpha_file, tmp_path):
    upload = tmp_path / f"tmpabcd1234{halpha_file.name}"
    upload.write_bytes(halpha_file.read_bytes())
    predictors, generator = service.predictors, service.generator
    service.predictors = {k: v for k, v in predictors.items() if k != "halpha"}
    service.generator = None
    try:
        ctx = _ctx()
        body = asyncio.run(service.classify_halpha.local(file=upload, ctx=ctx))
        assert ctx.response.status_code == 503
        assert body["error"] == "no halpha model loaded on this server"
        ctx = _ctx()
        body = asyncio.run(service.generate_spectra.local(n=2, seed=1, format="json", ctx=ctx))
        assert ctx.response.status_code == 503 and "no gan model" in body["error"]
    finally:
        service.predictors, service.generator = predictors, generator


def test_service_class_directly(service, data_dir, stellar_test_rows, tmp_path):
    """Call the endpoint method as BentoML would, with an upload stored under a temp name."""
    assert service.__is_ready__()
    source = data_dir / stellar_test_rows[0].file
    upload = tmp_path / f"tmpabcd1234{source.name}"
    upload.write_bytes(source.read_bytes())
    ctx = _ctx()
    result = asyncio.run(service.classify_spectrum.local(file=upload, ctx=ctx))
    assert ctx.response.status_code == 200
    assert result["file"] == source.name and result["label"] in "OBAFGKM"
    broken = tmp_path / "tmpabcd1234broken.fits"
    broken.write_bytes(source.read_bytes()[:5000])
    result = asyncio.run(service.classify_spectrum.local(file=broken, ctx=ctx))
    assert ctx.response.status_code == 422
    assert result["error"].startswith("broken.fits: ")


def test_batch_of_files_gives_one_result_per_file_in_order(client, lamost_files, galaxy_image):
    files = [("files", (p.name, p.read_bytes())) for p in lamost_files[:4]]
    files.insert(2, ("files", ("bad.fits", b"SIMPLE  =                    T")))
    files.append(("files", (galaxy_image.name, galaxy_image.read_bytes())))
    response = client.post("/classify_batch", files=files)
    assert response.status_code == 200
    results = response.json()
    assert [r["file"] for r in results] == [name for _, (name, _) in files]
    assert results[2]["error"].startswith("bad.fits: ")
    assert [r["task"] for i, r in enumerate(results) if i != 2] == ["stellar"] * 4 + ["galaxy"]
    assert all(r["model"] for i, r in enumerate(results) if i != 2)


def test_batch_with_a_tar_archive_and_a_forced_task(client, lamost_files):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in lamost_files[:3]:
            archive.add(path, arcname=f"night1/{path.name}")
    response = client.post(
        "/classify_batch",
        files=[("files", ("night1.tar.gz", buffer.getvalue()))],
        data={"task": "galaxy"},
    )
    assert response.status_code == 200
    results = response.json()
    assert [r["file"] for r in results] == [
        f"night1.tar.gz/night1/{p.name}" for p in lamost_files[:3]
    ]
    assert all("error" in r for r in results)  # spectra are not galaxy images
    response = client.post(
        "/classify_batch", files=[("files", ("n.tar.gz", buffer.getvalue()))], data={"task": "x"}
    )
    assert response.status_code == 400


def test_batch_file_limit_and_missing_files(client, service, monkeypatch, lamost_files):
    monkeypatch.setattr(service, "settings", replace(service.settings, max_batch_files=2))
    for count in (3, 4):  # 4 parts trip the multipart parser's own limit, 3 the count
        files = [("files", (p.name, p.read_bytes())) for p in lamost_files[:count]]
        response = client.post("/classify_batch", files=files)
        assert response.status_code == 413
        assert "too many files" in response.json()["error"]
    files = [("files", (p.name, p.read_bytes())) for p in lamost_files[:2]]
    response = client.post("/classify_batch", files=files)
    assert response.status_code == 200 and len(response.json()) == 2
    response = client.post("/classify_batch", data={"task": "stellar"})
    assert response.status_code == 400
    assert "files" in response.json()["error"]


def test_large_batch_is_prepared_in_worker_processes(client, service, monkeypatch, lamost_files):
    pool = service.prepare_pool
    files = [("files", (p.name, p.read_bytes())) for p in lamost_files[:24]]
    files.insert(7, ("files", ("cut.fits", lamost_files[0].read_bytes()[:9000])))
    assert pool.processes > 1 and len(files) >= pool.min_files
    response = client.post("/classify_batch", files=files)
    assert response.status_code == 200
    parallel = response.json()
    assert [r["file"] for r in parallel] == [name for _, (name, _) in files]
    assert parallel[7]["error"].startswith("cut.fits: ")
    # the same answers as preparing the batch in the worker's thread
    monkeypatch.setattr(pool, "min_files", 10**6)
    threaded = client.post("/classify_batch", files=files).json()
    assert threaded[7] == parallel[7]
    for one, other in zip(parallel, threaded, strict=True):
        assert one.get("label") == other.get("label")
        for label, p in one.get("probabilities", {}).items():
            assert p == pytest.approx(other["probabilities"][label], abs=1e-6)


def test_models_lists_loaded_bundles_with_cards(client, service):
    response = client.get("/models")
    assert response.status_code == 200
    models = {m["task"]: m for m in response.json()["models"]}
    assert set(service.predictors) <= set(models)
    stellar = models["stellar"]
    assert stellar["model"] == service.predictors["stellar"].bundle_id
    assert stellar["labels"] == list("OBAFGKM")
    assert {"training", "metrics", "created"} <= set(stellar["card"])


@pytest.mark.parametrize(
    "body",
    [
        {"n": 0, "seed": 1},
        {"n": 1001, "seed": 1},
        {"n": 2, "seed": -1},
        {"n": 2, "seed": 1, "format": "csv"},
        {"n": "many", "seed": 1},
        {"n": 2, "seed": 1, "extra": True},
        {},
    ],
)
def test_generate_rejects_invalid_bodies_with_reasons(client, body):
    response = client.post("/generate_spectra", json=body)
    assert response.status_code == 400
    detail = response.json()
    assert "validation error" in detail["error"] and detail["detail"]


def test_generate_spectra(client, service):
    response = client.post("/generate_spectra", json={"n": 3, "seed": 7})
    if service.generator is None:
        assert response.status_code == 503
        assert "no gan model loaded" in response.json()["error"]
        return
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == service.generator.bundle_id
    assert len(body["flux"]) == 3 and len(body["flux"][0]) == len(body["wavelength"])
    again = client.post("/generate_spectra", json={"n": 3, "seed": 7}).json()
    assert again["flux"] == body["flux"]
    response = client.post("/generate_spectra", json={"n": 2, "seed": 7, "format": "fits"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/fits"
    assert response.headers["x-skysort-model"] == service.generator.bundle_id
    with fits.open(io.BytesIO(response.content)) as hdus:
        assert hdus[0].data.shape[0] == 2


def test_readyz_after_warm_up(client):
    assert client.get("/readyz").status_code == 200
    assert client.get("/livez").status_code == 200


def test_overloaded_batcher_answers_503_not_422(service, lamost_files, tmp_path):
    from serving.batching import Overloaded

    upload = tmp_path / f"tmpabcd1234{lamost_files[0].name}"
    upload.write_bytes(lamost_files[0].read_bytes())
    batcher = service.batchers["stellar"]

    async def refuse(features):
        raise Overloaded("queued 2.5 s, over the latency budget")

    service.batchers["stellar"] = SimpleNamespace(predict=refuse)
    try:
        ctx = _ctx()
        body = asyncio.run(service.classify_spectrum.local(file=upload, ctx=ctx))
    finally:
        service.batchers["stellar"] = batcher
    assert ctx.response.status_code == 503
    assert body["error"].startswith("server busy: queued 2.5 s")


def test_uploaded_part_buffer_reads_like_a_file():
    from serving.service import _PartBuffer

    one = _PartBuffer()
    data = b"SIMPLE  =" * 100
    one.write(data)
    assert one.seek(0) == 0 and one.read() is data  # one chunk: handed over, not copied
    several = _PartBuffer()
    for piece in (b"abc", b"def", b"gh"):
        several.write(piece)
    several.seek(0)
    assert several.read(4) == b"abcd" and several.tell() == 4
    assert several.read() == b"efgh" and several.read() == b""
    assert several.seek(-3, 2) == 5 and several.read(10) == b"fgh"
    several.close()
    several.seek(0)
    assert several.read() == b""
