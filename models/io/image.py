"""Galaxy image reader: JPEG/PNG (Pillow) and FITS images (astropy) -> float32 (H, W, 3) in [0, 1].

Usage::

    from models.io.image import read_image, image_warnings
    image = read_image("587722981742215240.jpeg")   # (423, 423, 3) float32, values in [0, 1]
    image_warnings(image)                            # e.g. ["grey image: ..."]

The format is chosen from the content (magic bytes), never from the file name; gzip is
undone first. What happens to unusual inputs (all documented conversions or typed errors):

* 8-bit RGB JPEG/PNG: values / 255. Palette, CMYK and YCbCr images are converted to RGB;
  an alpha channel is dropped.
* 8-bit grey JPEG/PNG: the grey plane is replicated into R, G and B (a documented
  conversion; :func:`image_warnings` flags it because colour is a strong cue for the model).
* 16-bit or 32-bit PNG, 1-bit images: :class:`ImageReadError`. Their intensity scale is
  unknown (often linear data), unlike the asinh-stretched 8-bit SDSS colour composites the
  model was trained on; send an 8-bit colour image or the FITS frames instead.
* FITS: a 2D image (one band) becomes grey replicated into R, G, B; three planes of a cube
  (NAXIS3 = 3, ordered red, green, blue as ds9 writes RGB cubes) or three 2D image HDUs of one
  shape (red, green, blue in HDU order, or by FILTER u/g/r/i/z when every HDU names one: the
  reddest band is red) become RGB. Linear fluxes are mapped to [0, 1] like the SDSS colour
  composites (Lupton et al. 2004): per-band sky median subtracted, then an asinh stretch of
  the mean intensity I, ``F(I) = asinh(I / b) / asinh(top / b)`` with softening ``b`` = 3x the
  robust sky noise and ``top`` the 99.9th percentile of I, applied as ``band * F(I) / I`` so
  that colours are kept. NaN/inf pixels are set to the sky level.
* Rejected with :class:`ImageReadError`: not an image, truncated/corrupt data, a side under
  :data:`MIN_SIDE` pixels, more than :data:`MAX_PIXELS` pixels, blank (constant) images.
"""

from __future__ import annotations

import io
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from models.io.base import ImageReadError, SpectrumReadError, reader_faults_as
from models.io.common import (
    header_kind,
    header_shape,
    image_format,
    is_fits,
    leading_headers,
    load_content,
    open_fits,
)

MIN_SIDE = 32
MAX_PIXELS = 25_000_000
FITS_SOFTENING_SIGMAS = 3.0
FITS_TOP_PERCENTILE = 99.9
#: effective wavelengths (nm) of the SDSS filters, to order FITS bands from blue to red.
SDSS_BAND_WAVELENGTH = {"u": 355, "g": 469, "r": 617, "i": 748, "z": 893}
_CONVERTIBLE_MODES = {"P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "RGBA", "RGBX", "RGBa"}


def identify(head: bytes, path: Path | None = None) -> bool:
    """True for JPEG/PNG magic bytes or a FITS file whose first data HDU is a 2D/3D image."""
    if image_format(head) is not None:
        return True
    if not is_fits(head):
        return False
    first = next((h for h in leading_headers(head) if header_shape(h)), None)
    return (
        first is not None and header_kind(first) == "image" and len(header_shape(first)) in (2, 3)
    )


def read_image(path: str | Path, data: bytes | None = None) -> np.ndarray:
    """Read a JPEG, PNG or FITS image file (plain or gzipped) as float32 (H, W, 3) in [0, 1].

    ``data``: the file's bytes when they are already in memory; ``path`` then only names it.

    Raises:
        ImageReadError: unreadable, not an image, truncated, too small or too large,
            16-bit, blank; the message names the file and the reason.
    """
    path = Path(path)
    try:
        content = load_content(path, data)
    except SpectrumReadError as error:  # same failure, reported with the image error type
        raise ImageReadError(path, error.reason) from error
    return decode_image(content, path)


def decode_image(content: bytes, path: str | Path | None = None) -> np.ndarray:
    """Decode image bytes (already gunzipped) as float32 (H, W, 3) in [0, 1]; see read_image."""
    with reader_faults_as(ImageReadError, path):
        return _decode_image(content, path)


def _decode_image(content: bytes, path: str | Path | None) -> np.ndarray:
    picture = image_format(content[:16])
    if picture is not None:
        image = _decode_picture(content, path, picture)
    elif is_fits(content):
        image = _decode_fits(content, path)
    else:
        raise ImageReadError(path, _unrecognised_reason(content))
    _check_content(image, path)
    return image


def image_warnings(image: np.ndarray) -> list[str]:
    """Caveats about an image that was read without error (grey input)."""
    if is_grey(image):
        return [
            "grey image: the model was trained on SDSS colour (gri) composites and colour is "
            "one of its cues, so the class is less certain"
        ]
    return []


def is_grey(image: np.ndarray) -> bool:
    """True when R, G and B are identical (a grey image replicated into three planes)."""
    return bool(
        np.array_equal(image[..., 0], image[..., 1])
        and np.array_equal(image[..., 1], image[..., 2])
    )


def _unrecognised_reason(content: bytes) -> str:
    if content.lstrip()[:1] in (b"<", b"{", b"["):
        return "not an image (looks like text, HTML or JSON); expected JPEG, PNG or FITS"
    return "not an image: no JPEG, PNG or FITS signature in the first bytes"


def _check_size(width: int, height: int, path: str | Path | None) -> None:
    if min(width, height) < MIN_SIDE:
        raise ImageReadError(
            path, f"image too small ({width} x {height} pixels; at least {MIN_SIDE} per side)"
        )
    if width * height > MAX_PIXELS:
        raise ImageReadError(
            path, f"image too large ({width} x {height} pixels; at most {MAX_PIXELS:,} in all)"
        )


def _check_content(image: np.ndarray, path: str | Path | None) -> None:
    if float(image.max()) == float(image.min()):
        raise ImageReadError(path, f"blank image (every pixel is {float(image.min()):.3g})")


def _png_bit_depth(content: bytes) -> int | None:
    """Bit depth from the PNG IHDR chunk (byte 24), or None when the header is cut off."""
    if len(content) < 26 or content[12:16] != b"IHDR":
        return None
    return struct.unpack(">B", content[24:25])[0]


def _decode_picture(content: bytes, path: str | Path | None, picture: str) -> np.ndarray:
    if picture == "PNG" and (_png_bit_depth(content) or 8) > 8:
        raise ImageReadError(
            path,
            f"{_png_bit_depth(content)}-bit PNG: only 8-bit colour images are supported "
            "(the intensity scale of deeper images is unknown); convert it or send FITS",
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(content)) as opened:
                _check_size(*opened.size, path)
                opened.load()
                return _to_rgb_array(opened, path, picture)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageReadError(path, f"image too large to decode safely ({error})") from error
    except (OSError, SyntaxError, ValueError, struct.error) as error:
        raise ImageReadError(path, f"corrupt or truncated {picture} data ({error})") from error


def _to_rgb_array(picture: Image.Image, path: str | Path | None, kind: str) -> np.ndarray:
    mode = picture.mode
    if mode in ("1", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        depth = {"1": "1-bit", "F": "32-bit float"}.get(mode, "16/32-bit integer")
        raise ImageReadError(
            path, f"{depth} {kind} image (mode {mode}): only 8-bit colour or grey is supported"
        )
    if mode in ("L", "LA"):
        grey = np.asarray(picture.getchannel("L"), dtype=np.float32) / 255.0
        return np.repeat(grey[..., None], 3, axis=-1)
    if mode in _CONVERTIBLE_MODES:
        picture = picture.convert("RGB")
    if picture.mode != "RGB":
        raise ImageReadError(path, f"unsupported {kind} colour mode {picture.mode}")
    return np.asarray(picture, dtype=np.float32) / 255.0


def _decode_fits(content: bytes, path: str | Path | None) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # astropy's header-fixing chatter
            with open_fits(Path(path or "<input>"), content) as hdul:
                bands = _fits_bands(hdul, path)
    except SpectrumReadError as error:  # truncated or damaged: same reason, image error type
        raise ImageReadError(path, error.reason) from error
    except (OSError, ValueError, TypeError) as error:
        raise ImageReadError(path, f"unreadable FITS image ({error})") from error
    _check_size(bands[0].shape[1], bands[0].shape[0], path)
    if not any(np.isfinite(band).any() for band in bands):
        raise ImageReadError(path, "FITS image has no finite pixel")
    return asinh_composite(bands)


def _fits_bands(hdul, path: str | Path | None) -> list[np.ndarray]:
    """The planes to combine: [grey] or [red, green, blue], each 2D float64."""
    images = [hdu for hdu in hdul if hdu.is_image and hdu.data is not None and hdu.data.ndim > 1]
    if not images:
        raise ImageReadError(path, "FITS file without a 2D image (a spectrum or a table?)")
    first = np.asarray(images[0].data, dtype=np.float64)
    if first.ndim == 3 and first.shape[0] in (1, 3):
        return [plane for plane in first]
    if first.ndim != 2:
        raise ImageReadError(
            path, f"FITS image of shape {first.shape}: expected 2D, or a cube of 3 planes"
        )
    same = [hdu for hdu in images if hdu.data.shape == first.shape and hdu.data.ndim == 2]
    if len(same) < 3:
        return [first]
    chosen = same[:3]
    filters = [str(hdu.header.get("FILTER", "")).strip().lower()[:1] for hdu in chosen]
    if all(f in SDSS_BAND_WAVELENGTH for f in filters) and len(set(filters)) == 3:
        chosen = [h for _, h in sorted(zip(filters, chosen, strict=True), key=_reddest_first)]
    return [np.asarray(hdu.data, dtype=np.float64) for hdu in chosen]


def _reddest_first(item: tuple) -> float:
    return -SDSS_BAND_WAVELENGTH[item[0]]


def asinh_composite(bands: list[np.ndarray]) -> np.ndarray:
    """Linear flux planes ([grey] or [r, g, b]) -> float32 (H, W, 3) in [0, 1] (see module doc)."""
    stack = np.stack(bands).astype(np.float64)
    finite = np.isfinite(stack)
    sky = np.array(
        [np.median(p[ok]) if ok.any() else 0.0 for p, ok in zip(stack, finite, strict=True)]
    )
    stack = np.where(finite, stack - sky[:, None, None], 0.0)
    intensity = stack.mean(axis=0)
    noise = 1.4826 * np.median(np.abs(intensity - np.median(intensity)))
    top = np.percentile(intensity, FITS_TOP_PERCENTILE)
    softening = FITS_SOFTENING_SIGMAS * noise if noise > 0 else max(top, 1e-12) / 10
    top = max(top, softening)
    stretched = np.arcsinh(intensity / softening) / np.arcsinh(top / softening)
    ratio = np.divide(stretched, intensity, out=np.zeros_like(intensity), where=intensity > 0)
    rgb = np.clip(stack * ratio, 0.0, 1.0)
    if len(bands) == 1:
        rgb = np.repeat(rgb, 3, axis=0)
    return np.ascontiguousarray(rgb.transpose(1, 2, 0), dtype=np.float32)
