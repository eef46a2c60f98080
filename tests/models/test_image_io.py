"""Image reader: real SDSS cutouts, conversions and typed errors for bad images."""

import gzip
import io

import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from models.io.base import ImageReadError
from models.io.image import MIN_SIDE, decode_image, identify, image_warnings, is_grey, read_image

ELLIPTICAL = "galaxy/images/587722981742215240.jpeg"  # GZ1 class 0, a red early-type


@pytest.fixture
def cutout(data_dir):
    return data_dir / ELLIPTICAL


def _png_bytes(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def _fits_bytes(hdus: list) -> bytes:
    buffer = io.BytesIO()
    fits.HDUList(hdus).writeto(buffer)
    return buffer.getvalue()


def test_real_jpeg_is_float_rgb_with_bright_centre(cutout):
    image = read_image(cutout)
    assert image.shape == (231, 231, 3) and image.dtype == np.float32
    assert image.min() >= 0.0 and image.max() <= 1.0
    sky = np.median(image.reshape(-1, 3), axis=0)
    assert np.all(sky < 0.05)
    centre = image[110:121, 110:121].mean(axis=(0, 1))
    assert centre.mean() > 0.4  # the galaxy's core, far above the sky
    assert centre[0] > centre[2]  # an elliptical is red: R above B
    assert not is_grey(image) and image_warnings(image) == []


def test_png_and_gzip_give_the_same_pixels_and_name_is_ignored(cutout, write_file):
    reference = read_image(cutout)
    png = write_file("looks_like.fits", _png_bytes(np.round(reference * 255).astype(np.uint8)))
    assert np.array_equal(read_image(png), reference)
    gzipped = write_file("cutout.txt", gzip.compress(cutout.read_bytes()))
    assert np.array_equal(read_image(gzipped), reference)


def test_grey_images_are_replicated_and_flagged(cutout, write_file):
    grey = np.asarray(Image.open(cutout).convert("L"))
    image = read_image(write_file("grey.png", _png_bytes(grey)))
    assert image.shape == (*grey.shape, 3)
    assert np.allclose(image[..., 1], grey / 255.0)
    assert is_grey(image)
    assert "grey image" in image_warnings(image)[0]


def test_rgba_and_palette_are_converted(cutout, write_file):
    rgb = np.asarray(Image.open(cutout))
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])
    assert np.array_equal(read_image(write_file("a.png", _png_bytes(rgba))), read_image(cutout))
    palette = Image.open(cutout).convert("P")
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG")
    image = read_image(write_file("p.png", buffer.getvalue()))
    assert image.shape == rgb.shape and not is_grey(image)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"objid,ra,dec\n1,2,3\n", "not an image"),
        (b"<html><body>error</body></html>", "looks like text, HTML or JSON"),
        (b"\x00\x01\x02\x03binary junk", "no JPEG, PNG or FITS signature"),
    ],
)
def test_not_an_image(write_file, content, reason):
    with pytest.raises(ImageReadError, match=reason) as caught:
        read_image(write_file("galaxy.jpeg", content))
    assert caught.value.path.endswith("galaxy.jpeg")


def test_truncated_jpeg_and_empty_file(cutout, derive_file, write_file):
    truncated = derive_file(cutout, lambda raw: raw[: len(raw) // 2])
    with pytest.raises(ImageReadError, match="corrupt or truncated JPEG"):
        read_image(truncated)
    with pytest.raises(ImageReadError, match="empty file"):
        read_image(write_file("empty.png", b""))
    with pytest.raises(ImageReadError, match="file not found"):
        read_image(cutout.parent / "no_such_galaxy.jpeg")


def test_too_small_blank_and_16_bit_are_rejected(cutout, write_file):
    small = np.asarray(Image.open(cutout))[: MIN_SIDE - 1, :40]
    with pytest.raises(ImageReadError, match=r"too small \(40 x 31"):
        read_image(write_file("small.png", _png_bytes(small)))
    with pytest.raises(ImageReadError, match="blank image"):
        read_image(write_file("blank.png", _png_bytes(np.zeros((64, 64, 3), np.uint8))))
    deep = np.asarray(Image.open(cutout).convert("L")).astype(np.uint16) * 257
    with pytest.raises(ImageReadError, match="16-bit PNG"):
        read_image(write_file("deep.png", _png_bytes(deep)))


def test_fits_three_bands_ordered_by_filter(cutout, write_file):
    """Linear planes named i, r, g in scrambled HDU order come out as red, green, blue."""
    rgb = read_image(cutout).astype(np.float64)
    linear = np.sinh(3.0 * rgb)  # undo an asinh-like stretch: a plausible linear flux
    hdus = [fits.PrimaryHDU()]
    for band, plane in (("g", 2), ("i", 0), ("r", 1)):
        hdus.append(fits.ImageHDU(linear[..., plane], header=fits.Header({"FILTER": band})))
    image = read_image(write_file("frames.fits", _fits_bytes(hdus)))
    assert image.shape == rgb.shape and image.dtype == np.float32
    assert image.min() >= 0.0 and image.max() <= 1.0
    centre = image[105:126, 105:126].mean(axis=(0, 1))
    assert centre[0] > centre[1] > centre[2]  # red elliptical: i > r > g
    assert np.corrcoef(image[..., 0].ravel(), rgb[..., 0].ravel())[0, 1] > 0.9


def test_fits_single_band_and_cube(cutout, write_file):
    rgb = read_image(cutout).astype(np.float64)
    grey = read_image(write_file("r.fits", _fits_bytes([fits.PrimaryHDU(rgb[..., 0])])))
    assert is_grey(grey) and grey.shape == rgb.shape
    cube = np.stack([rgb[..., 0], rgb[..., 1], rgb[..., 2]]).astype(np.float32)
    colour = read_image(write_file("cube.jpeg", _fits_bytes([fits.PrimaryHDU(cube)])))
    assert not is_grey(colour)
    assert colour[..., 0].mean() > colour[..., 2].mean()


def test_bad_fits(cutout, write_file):
    raw = _fits_bytes([fits.PrimaryHDU(read_image(cutout)[..., 0])])
    with pytest.raises(ImageReadError, match="truncated FITS"):
        read_image(write_file("cut.fits", raw[:5000]))
    table = fits.BinTableHDU.from_columns([fits.Column("flux", "E", array=np.ones(10))])
    with pytest.raises(ImageReadError, match="without a 2D image"):
        read_image(write_file("spec.fits", _fits_bytes([fits.PrimaryHDU(), table])))
    nan = np.full((64, 64), np.nan, np.float32)
    with pytest.raises(ImageReadError, match="no finite pixel"):
        read_image(write_file("nan.fits", _fits_bytes([fits.PrimaryHDU(nan)])))


def test_identify_by_content(cutout):
    raw = cutout.read_bytes()
    assert identify(raw[:64])
    assert identify(_fits_bytes([fits.PrimaryHDU(np.zeros((40, 40), np.float32))]))
    assert not identify(b"3800.0 1.0\n3801.0 1.1\n")
    assert not identify(_fits_bytes([fits.PrimaryHDU()]))


def test_decode_bytes_without_a_path(cutout):
    assert decode_image(cutout.read_bytes()).shape == (231, 231, 3)
    with pytest.raises(ImageReadError, match="<input>: not an image"):
        decode_image(b"nothing")
