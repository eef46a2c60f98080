"""The BentoML service, in-process: the class directly and over HTTP with to_asgi()."""

from types import SimpleNamespace

import pytest
from starlette.testclient import TestClient

from serving.service import Skysort, upload_name


@pytest.fixture(scope="module")
def client(stellar_bundle):
    with TestClient(Skysort.to_asgi()) as test_client:
        yield test_client


def test_upload_name_strips_bentoml_prefix(tmp_path):
    assert upload_name(tmp_path / "tmpab_cd123spec-1.fits") == "spec-1.fits"
    assert upload_name(tmp_path / "tmpab_cd123") == "upload"


def test_classify_spectrum_over_http(client, data_dir, stellar_test_rows, stellar_predictor):
    row = stellar_test_rows[0]
    path = data_dir / row.file
    response = client.post("/classify_spectrum", files={"file": (path.name, path.read_bytes())})
    assert response.status_code == 200
    body = response.json()
    assert body["file"] == path.name
    assert body["model"] == stellar_predictor.bundle_id
    assert set(body["probabilities"]) == set("OBAFGKM")
    assert body["label"] == max(body["probabilities"], key=body["probabilities"].get)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("galaxy.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "PNG"),
        ("empty.fits", b"", "empty"),
        ("notes.txt", b"hello world\n", "galaxy"),
    ],
)
def test_bad_uploads_get_4xx_with_reason(client, name, content, reason):
    response = client.post("/classify_spectrum", files={"file": (name, content)})
    assert 400 <= response.status_code < 500
    body = response.json()
    assert body["error"].startswith(name)
    assert reason.lower() in body["error"].lower() or body["file"] == name


def test_missing_form_field_is_400(client):
    response = client.post("/classify_spectrum", files={"other": ("x.fits", b"abc")})
    assert response.status_code == 400
    assert "file" in response.text


def test_service_class_directly(data_dir, stellar_test_rows, tmp_path):
    """Call the endpoint method as BentoML would, with an upload stored under a temp name."""
    service = Skysort()
    row = stellar_test_rows[0]
    source = data_dir / row.file
    upload = tmp_path / f"tmpabcd1234{source.name}"
    upload.write_bytes(source.read_bytes())
    ctx = SimpleNamespace(response=SimpleNamespace(status_code=200))
    result = service.classify_spectrum(file=upload, ctx=ctx)
    assert ctx.response.status_code == 200
    assert result["file"] == source.name and result["label"] in "OBAFGKM"
    broken = tmp_path / "tmpabcd1234broken.fits"
    broken.write_bytes(source.read_bytes()[:5000])
    result = service.classify_spectrum(file=broken, ctx=ctx)
    assert ctx.response.status_code == 422
    assert result["error"].startswith("broken.fits: ")


def test_classify_galaxy_over_http(client, data_dir):
    image = sorted((data_dir / "galaxy" / "images").glob("*.jpeg"))[0]
    response = client.post("/classify_galaxy", files={"file": (image.name, image.read_bytes())})
    assert response.status_code == 200
    body = response.json()
    assert body["task"] == "galaxy" and body["file"] == image.name
    assert set(body["probabilities"]) == {"elliptical", "spiral"}
    assert body["model"].startswith("galaxy-")


def test_spectrum_sent_to_galaxy_endpoint_is_4xx(client, data_dir, stellar_test_rows):
    path = data_dir / stellar_test_rows[0].file
    response = client.post("/classify_galaxy", files={"file": (path.name, path.read_bytes())})
    assert response.status_code == 422
    assert response.json()["error"].startswith(path.name)


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
