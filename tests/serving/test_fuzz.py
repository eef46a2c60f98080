"""Fuzzing the HTTP API: corrupt FITS, images, text spectra and bodies never give a 5xx.

Bounded (a few dozen examples per test, no deadline) so the suite stays fast; failures
print the shrunk input, which makes a regression test.
"""

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
REPO = Path(__file__).resolve().parents[2]
LAMOST = sorted((REPO / "data" / "lamost").rglob("*.fits"))[0].read_bytes()
JPEG = sorted((REPO / "data" / "galaxy" / "images").glob("*.jpeg"))[0].read_bytes()
HALPHA = sorted((REPO / "data" / "ondrejov" / "fits_normalized_halpha").glob("*.fits"))[0]


def _assert_handled(response, endpoint):
    if response.status_code < 300 and "json" not in response.headers.get("content-type", ""):
        return  # e.g. a FITS file from /generate_spectra
    body = response.json()
    if response.status_code == 503:  # a model that this server does not have
        assert "model loaded" in body["error"], body
        return
    assert response.status_code < 500, f"{endpoint}: {response.status_code} {response.text}"
    if response.status_code >= 400:
        errors = body if isinstance(body, list) else [body]
        assert all(isinstance(e, dict) and e.get("error") for e in errors), body


@st.composite
def corrupt(draw, original: bytes):
    """A copy of ``original`` truncated, overwritten in places, or with header cards changed."""
    data = bytearray(original)
    kind = draw(st.sampled_from(["truncate", "overwrite", "card"]))
    if kind == "truncate":
        return bytes(data[: draw(st.integers(0, len(data)))])
    if kind == "overwrite":
        for _ in range(draw(st.integers(1, 8))):
            at = draw(st.integers(0, len(data) - 1))
            chunk = draw(st.binary(min_size=1, max_size=64))
            data[at : at + len(chunk)] = chunk
        return bytes(data[: len(original)])
    keyword = draw(
        st.sampled_from(
            [
                b"NAXIS1  ",
                b"NAXIS2  ",
                b"BITPIX  ",
                b"COEFF0  ",
                b"COEFF1  ",
                b"NAXIS   ",
                b"CRVAL1  ",
                b"CDELT1  ",
            ]
        )
    )
    at = bytes(data).find(keyword)
    if at >= 0:
        value = draw(st.sampled_from([b"-1", b"0", b"99999999", b"1e308", b"nan", b"'x'", b""]))
        card = (keyword + b"= " + value.rjust(20)).ljust(80)
        data[at : at + 80] = card
    return bytes(data)


@FUZZ
@given(content=corrupt(LAMOST))
def test_corrupt_lamost_fits(client, content):
    response = client.post("/classify_spectrum", files={"file": ("fuzz.fits", content)})
    _assert_handled(response, "/classify_spectrum")


@FUZZ
@given(content=corrupt(HALPHA.read_bytes()))
def test_corrupt_halpha_fits(client, content):
    response = client.post("/classify_halpha", files={"file": ("fuzz.fits", content)})
    _assert_handled(response, "/classify_halpha")


@FUZZ
@given(content=corrupt(JPEG) | st.binary(max_size=2000).map(lambda b: b"\x89PNG\r\n\x1a\n" + b))
def test_corrupt_images(client, content):
    for route in ("/classify_galaxy", "/classify_batch"):
        field = "files" if route.endswith("batch") else "file"
        response = client.post(route, files={field: ("fuzz.jpeg", content)})
        _assert_handled(response, route)


_number = st.floats(allow_nan=True, allow_infinity=True).map(repr) | st.integers().map(str)


@FUZZ
@given(
    lines=st.lists(
        st.lists(_number | st.text(max_size=5), min_size=1, max_size=4).map(" ".join),
        max_size=60,
    )
)
def test_text_spectra(client, lines):
    content = "\n".join(lines).encode("utf-8", "surrogatepass")
    response = client.post("/classify_spectrum", files={"file": ("fuzz.txt", content)})
    _assert_handled(response, "/classify_spectrum")


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=10,
)


@FUZZ
@given(
    body=_json
    | st.fixed_dictionaries(
        {"n": st.integers(-5, 2000) | _json, "seed": st.integers(-10, 2**70) | _json},
        optional={"format": st.sampled_from(["json", "fits", "csv", ""]) | _json},
    )
)
def test_generate_bodies(client, body):
    response = client.post("/generate_spectra", json=body)
    _assert_handled(response, "/generate_spectra")


@FUZZ
@given(
    route=st.sampled_from(
        [
            "/classify_spectrum",
            "/classify_galaxy",
            "/classify_halpha",
            "/classify_batch",
            "/generate_spectra",
        ]
    ),
    content_type=st.sampled_from(
        [
            "multipart/form-data",
            "multipart/form-data; boundary=xyz",
            "application/json",
            "application/x-www-form-urlencoded",
            "text/plain",
            "application/octet-stream",
            "",
        ]
    ),
    body=st.binary(max_size=3000),
)
def test_arbitrary_bodies(client, route, content_type, body):
    headers = {"content-type": content_type} if content_type else {}
    response = client.post(route, content=body, headers=headers)
    _assert_handled(response, f"{route} {content_type}")


@pytest.mark.parametrize("route", ["/classify_spectrum", "/classify_batch"])
def test_multipart_with_a_lying_boundary(client, route):
    body = b'--abc\r\nContent-Disposition: form-data; name="file"; filename="x"\r\n\r\n123'
    response = client.post(
        route, content=body, headers={"content-type": "multipart/form-data; boundary=abc"}
    )
    assert 400 <= response.status_code < 500
