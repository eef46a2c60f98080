"""Physical augmentations of 1D spectra for the stellar classifier.

Usage: ``augmented = augment(spectrum, numpy.random.default_rng(seed), AugmentConfig())``.

Every function takes a :class:`models.io.base.Spectrum` and returns a NEW one; the input is
never modified. All randomness comes from the ``numpy.random.Generator`` passed in.

Inverse variance follows the reader convention: a spectrum whose usable pixels all have
``ivar == 1`` carries no real errors (library templates); transformations keep it that way
(1 for good pixels, 0 for masked ones) until :func:`add_noise` gives it real errors.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import astropy.units as u
import numpy as np
from astropy.constants import c as speed_of_light
from dust_extinction.parameter_averages import G23

from models.io.base import Spectrum

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))
KERNEL_HALF_WIDTH_SIGMAS = 4.0


def _has_errors(spectrum: Spectrum) -> bool:
    """True unless every usable pixel has ivar exactly 1 (the 'no errors' convention)."""
    return not bool(np.all(spectrum.ivar[spectrum.good] == 1.0))


def _new(spectrum: Spectrum, **changes: Any) -> Spectrum:
    """A copy of ``spectrum`` with fresh arrays and meta, replacing the given fields."""
    fields = {
        "wavelength": spectrum.wavelength.copy(),
        "flux": spectrum.flux.copy(),
        "ivar": spectrum.ivar.copy(),
        "meta": dict(spectrum.meta),
    }
    fields.update(changes)
    return Spectrum(**fields)


def _scaled_ivar(spectrum: Spectrum, flux_factor: np.ndarray) -> np.ndarray:
    """Inverse variance after multiplying the flux by ``flux_factor`` (convention kept)."""
    if not _has_errors(spectrum):
        return spectrum.ivar.copy()
    return spectrum.ivar / np.square(flux_factor)


def _nyquist_resolving_power(wavelength: np.ndarray) -> np.ndarray:
    """Per-pixel R = lambda / (2 dlambda): the finest resolution the sampling can hold."""
    step = np.gradient(wavelength)
    return wavelength / (2.0 * step)


def degrade_resolution(
    spectrum: Spectrum,
    resolving_power_out: float,
    resolving_power_in: float | None = None,
) -> Spectrum:
    """Convolve with a Gaussian so the spectrum has constant resolving power R_out.

    The kernel is variable, applied on the native wavelength grid (no resampling): at each
    pixel its FWHM is ``lambda * sqrt(1/R_out**2 - 1/R_in**2)``, weights include the pixel
    widths, and masked pixels (ivar 0) are left out of the weighted mean (normalised
    convolution). Variance is propagated as ``sum(w**2 var) / sum(w)**2`` (correlations
    ignored). Pixels masked on input stay masked on output.

    Where the input is already as coarse as R_out or coarser (R_in <= R_out) the pixel is
    left unchanged; if that holds everywhere, an unchanged copy is returned. This is the
    expected outcome for library templates (Pickles R~500, JHC ~4.5 A) at LAMOST's R~1800:
    they can only be degraded further, while real LAMOST spectra can be degraded to mimic
    the templates or poorer observations.

    Args:
        spectrum: input spectrum.
        resolving_power_out: target lambda / FWHM.
        resolving_power_in: the input's lambda / FWHM. None takes
            ``spectrum.meta["resolving_power"]`` if a reader set it, else the Nyquist limit
            of the sampling, ``lambda / (2 dlambda)`` per pixel (an upper bound, so the
            result is never sharper than R_out).

    Returns:
        The degraded spectrum, with ``meta["resolving_power"] = resolving_power_out``.
    """
    if resolving_power_out <= 0:
        raise ValueError(f"resolving_power_out must be positive, got {resolving_power_out}")
    wavelength = spectrum.wavelength
    if resolving_power_in is None:
        resolving_power_in = spectrum.meta.get("resolving_power")
    r_in = (
        _nyquist_resolving_power(wavelength)
        if resolving_power_in is None
        else np.full_like(wavelength, float(resolving_power_in))
    )
    kernel_fwhm_fraction = np.sqrt(np.clip(1.0 / resolving_power_out**2 - 1.0 / r_in**2, 0, None))
    if not np.any(kernel_fwhm_fraction > 0):
        return _new(spectrum)
    sigma = wavelength * kernel_fwhm_fraction / FWHM_PER_SIGMA
    flux, ivar = _gaussian_smooth(spectrum, sigma)
    meta = dict(spectrum.meta, resolving_power=float(resolving_power_out))
    return _new(spectrum, flux=flux, ivar=ivar, meta=meta)


def _gaussian_smooth(spectrum: Spectrum, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised convolution with a per-pixel Gaussian of width ``sigma`` (Angstrom)."""
    wavelength = spectrum.wavelength
    pixel_width = np.abs(np.gradient(wavelength))
    half_width = int(np.ceil(KERNEL_HALF_WIDTH_SIGMAS * np.max(sigma / pixel_width))) + 1
    half_width = min(half_width, wavelength.size)
    good = spectrum.good
    flux_good = np.where(good, spectrum.flux, 0.0)
    variance = np.where(good, 1.0 / np.where(good, spectrum.ivar, 1.0), 0.0)

    def windows(values: np.ndarray, fill: float) -> np.ndarray:
        padded = np.pad(values, half_width, constant_values=fill)
        return np.lib.stride_tricks.sliding_window_view(padded, 2 * half_width + 1)

    offset = windows(wavelength, np.inf) - wavelength[:, None]
    safe_sigma = np.maximum(sigma, 1e-6 * pixel_width)[:, None]
    weight = np.exp(-0.5 * np.square(offset / safe_sigma)) * windows(pixel_width * good, 0.0)
    total = weight.sum(axis=1)
    covered = total > 0
    safe_total = np.where(covered, total, 1.0)
    flux = np.where(covered, (weight * windows(flux_good, 0.0)).sum(axis=1) / safe_total, 0.0)
    flux = np.where(covered, flux, spectrum.flux)
    smoothed_var = (np.square(weight) * windows(variance, 0.0)).sum(axis=1) / safe_total**2
    usable = good & covered & (smoothed_var > 0)
    if _has_errors(spectrum):
        ivar = np.where(usable, 1.0 / np.where(usable, smoothed_var, 1.0), 0.0)
    else:
        ivar = usable.astype(float)
    return flux, ivar


def shift_radial_velocity(spectrum: Spectrum, velocity_kms: float) -> Spectrum:
    """Doppler-shift the wavelength axis (relativistic); positive velocity is a redshift.

    ``lambda_obs = lambda * sqrt((1 + beta) / (1 - beta))``; flux and ivar are unchanged
    (the per-pixel flux density change of order beta is ignored, as in observed spectra
    after flux calibration).
    """
    beta = velocity_kms / speed_of_light.to_value(u.km / u.s)
    if abs(beta) >= 1:
        raise ValueError(f"velocity {velocity_kms} km/s is not below the speed of light")
    factor = np.sqrt((1.0 + beta) / (1.0 - beta))
    return _new(spectrum, wavelength=spectrum.wavelength * factor)


def extinction_factor(wavelength: np.ndarray, ebv: float, r_v: float = 3.1) -> np.ndarray:
    """Transmission ``10**(-0.4 A(lambda))`` of the Gordon et al. (2023) G23 law.

    G23 (``dust_extinction``) covers 912 A - 32 micron, so the whole optical range used
    here (3500-9500 A) needs no fallback law. Negative ``ebv`` gives the dereddening factor.
    """
    law = G23(Rv=r_v)
    a_lambda_over_a_v = np.asarray(law(np.asarray(wavelength) * u.AA))
    return np.power(10.0, -0.4 * ebv * r_v * a_lambda_over_a_v)


def redden(spectrum: Spectrum, ebv: float, r_v: float = 3.1) -> Spectrum:
    """Apply interstellar extinction E(B-V) = ``ebv`` with the G23 law; negative dereddens.

    Args:
        spectrum: input spectrum (vacuum wavelengths; the air/vacuum difference is
            irrelevant for a smooth extinction curve).
        ebv: colour excess in magnitudes.
        r_v: total-to-selective extinction A(V)/E(B-V); G23 accepts 2.3-5.6.
    """
    factor = extinction_factor(spectrum.wavelength, ebv, r_v)
    return _new(spectrum, flux=spectrum.flux * factor, ivar=_scaled_ivar(spectrum, factor))


def add_noise(
    spectrum: Spectrum,
    snr: float,
    rng: np.random.Generator,
    *,
    sky_fraction: float = 0.1,
    existing_errors: bool | None = None,
) -> Spectrum:
    """Add Gaussian noise so that the median S/N per usable pixel equals ``snr``.

    The target variance is photon-like with a sky/read floor,
    ``s**2 * (|flux| + sky_fraction * median|flux|)``, with ``s`` chosen so the median of
    ``|flux| / sigma`` is ``snr`` (for a flat spectrum sigma = flux / snr everywhere). Noise
    is drawn only for the variance still missing, ``max(target - existing, 0)``, and
    ``ivar = 1 / (existing + added)``. For a noise-free input the median S/N is exactly
    ``snr``; pixels of a real spectrum that are already noisier than the target keep their
    noise, so its median S/N may fall below ``snr`` (noise can never be removed).

    Args:
        spectrum: input spectrum.
        snr: requested median signal-to-noise ratio per pixel.
        rng: random generator.
        sky_fraction: floor of the variance as a fraction of the median flux.
        existing_errors: whether ``ivar`` holds real errors; None detects the reader
            convention (all usable ivar == 1 means no errors).
    """
    if snr <= 0:
        raise ValueError(f"snr must be positive, got {snr}")
    good = spectrum.good
    signal = np.abs(np.where(good, spectrum.flux, 0.0))
    median_signal = float(np.median(signal[good])) if good.any() else 0.0
    if median_signal <= 0:
        raise ValueError("cannot set a S/N: the spectrum has no usable non-zero flux")
    if existing_errors is None:
        existing_errors = _has_errors(spectrum)
    shape = signal + sky_fraction * median_signal
    scale_squared = (np.median(signal[good] / np.sqrt(shape[good])) / snr) ** 2
    target_var = scale_squared * shape
    existing_var = np.zeros_like(target_var)
    if existing_errors:
        existing_var = np.where(good, 1.0 / np.where(good, spectrum.ivar, 1.0), 0.0)
    added_var = np.where(good, np.clip(target_var - existing_var, 0.0, None), 0.0)
    flux = spectrum.flux + np.sqrt(added_var) * rng.standard_normal(signal.size)
    total_var = existing_var + added_var
    ivar = np.where(good & (total_var > 0), 1.0 / np.where(good, total_var, 1.0), 0.0)
    return _new(spectrum, flux=np.where(good, flux, spectrum.flux), ivar=ivar)


def tilt_flux_calibration(
    spectrum: Spectrum, amplitude: float, rng: np.random.Generator
) -> Spectrum:
    """Multiply by a smooth ``1 + a1 P1(x) + a2 P2(x)`` mimicking a flux-calibration error.

    ``x`` maps the wavelength range onto [-1, 1]; the Legendre coefficients get a random
    direction and are scaled so the largest deviation from 1 is ``amplitude`` (e.g. 0.15
    = +-15%). With ``0 <= amplitude < 1`` the factor stays positive.
    """
    if not 0 <= amplitude < 1:
        raise ValueError(f"amplitude must be in [0, 1), got {amplitude}")
    wavelength = spectrum.wavelength
    x = 2.0 * (wavelength - wavelength[0]) / (wavelength[-1] - wavelength[0]) - 1.0
    coefficients = np.concatenate([[0.0], rng.uniform(-1.0, 1.0, size=2)])
    shape = np.polynomial.legendre.legval(x, coefficients)
    peak = np.max(np.abs(shape))
    factor = 1.0 + (amplitude * shape / peak if peak > 0 else 0.0)
    return _new(spectrum, flux=spectrum.flux * factor, ivar=_scaled_ivar(spectrum, factor))


def mask_pixels(
    spectrum: Spectrum,
    rng: np.random.Generator,
    n_segments: int,
    max_width_angstrom: float,
    bad_pixel_fraction: float = 0.0,
) -> Spectrum:
    """Mask random segments (and optionally single bad pixels) by setting ivar to 0.

    Only ``ivar`` changes; flux keeps its values so that nothing downstream meets a NaN
    it did not expect. Segment centres are uniform over the wavelength range and widths
    uniform in (0, ``max_width_angstrom``]; each pixel is also masked independently with
    probability ``bad_pixel_fraction`` (cosmic rays, dead columns).
    """
    wavelength = spectrum.wavelength
    centres = rng.uniform(wavelength[0], wavelength[-1], size=n_segments)
    half_widths = 0.5 * max_width_angstrom * (1.0 - rng.uniform(size=n_segments))
    in_segment = np.abs(wavelength[:, None] - centres[None, :]) <= half_widths[None, :]
    masked = in_segment.any(axis=1) | (rng.uniform(size=wavelength.size) < bad_pixel_fraction)
    return _new(spectrum, ivar=np.where(masked, 0.0, spectrum.ivar))


def truncate_coverage(
    spectrum: Spectrum,
    rng: np.random.Generator,
    blue_start_range: tuple[float, float] = (3700.0, 4200.0),
    red_end_range: tuple[float, float] = (7000.0, 9100.0),
) -> Spectrum:
    """Cut the blue end, the red end or both (equally likely) to random limits.

    The new start is uniform in ``blue_start_range`` and the new end uniform in
    ``red_end_range`` (Angstrom); a limit outside the spectrum's own coverage cuts nothing,
    and a cut that would leave fewer than 2 pixels is not made.
    Pixels outside are removed, so the spectrum really is shorter (as the JHC atlas, which
    ends at 7427 A) and coverage stops being a shortcut to the class.
    """
    if blue_start_range[1] >= red_end_range[0]:
        raise ValueError("blue_start_range must lie below red_end_range")
    ends = ("blue", "red", "both")[int(rng.integers(3))]
    start = rng.uniform(*blue_start_range)
    end = rng.uniform(*red_end_range)
    return cut_coverage(
        spectrum,
        start if ends in ("blue", "both") else None,
        end if ends in ("red", "both") else None,
    )


def cut_coverage(spectrum: Spectrum, start: float | None, end: float | None) -> Spectrum:
    """The spectrum without its pixels below ``start`` and above ``end`` (Angstrom; None
    keeps that end). A cut that would leave fewer than 2 pixels is not made.

    Used with fixed limits to score a model on a survey's coverage, e.g. ``end=7427`` for
    the JHC atlas (``scripts/stellar_normalisation_study.py --red-limit``)."""
    keep = np.ones(spectrum.wavelength.size, dtype=bool)
    if start is not None:
        keep &= spectrum.wavelength >= start
    if end is not None:
        keep &= spectrum.wavelength <= end
    if np.count_nonzero(keep) < 2:
        return _new(spectrum)
    return _new(
        spectrum,
        wavelength=spectrum.wavelength[keep],
        flux=spectrum.flux[keep],
        ivar=spectrum.ivar[keep],
    )


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges and probabilities of every augmentation; stored in the model bundle.

    Each step runs with its ``*_probability``. Draws: radial velocity uniform in
    +-``rv_max_kms``; E(B-V) exponential with mean ``ebv_mean`` truncated at ``ebv_max``
    (modest: reddened templates came out redder than typical LAMOST spectra); resolving
    power and S/N log-uniform in their ranges; tilt amplitude uniform in
    [0, ``tilt_amplitude_max``]; mask segment count uniform in 1..``mask_segments_max``.
    """

    rv_probability: float = 1.0
    rv_max_kms: float = 150.0
    redden_probability: float = 0.5
    ebv_mean: float = 0.15
    ebv_max: float = 1.0
    r_v: float = 3.1
    resolution_probability: float = 0.3
    resolving_power_range: tuple[float, float] = (500.0, 1800.0)
    tilt_probability: float = 0.5
    tilt_amplitude_max: float = 0.15
    truncate_probability: float = 0.3
    blue_start_range: tuple[float, float] = (3700.0, 4200.0)
    red_end_range: tuple[float, float] = (7000.0, 9100.0)
    noise_probability: float = 0.8
    snr_range: tuple[float, float] = (3.0, 100.0)
    mask_probability: float = 0.3
    mask_segments_max: int = 3
    mask_width_max_angstrom: float = 50.0
    bad_pixel_fraction: float = 0.002

    def __post_init__(self) -> None:
        for name, value in dataclasses.asdict(self).items():
            if name.endswith("_probability") and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        for name in ("resolving_power_range", "snr_range"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"{name} must satisfy 0 < low <= high, got {(low, high)}")
        if not 0 <= self.tilt_amplitude_max < 1:
            raise ValueError("tilt_amplitude_max must be in [0, 1)")
        if self.ebv_mean <= 0 or self.ebv_max <= 0:
            raise ValueError("ebv_mean and ebv_max must be positive")


def config_to_dict(config: AugmentConfig) -> dict[str, Any]:
    """JSON-ready dict of the config (tuples become lists)."""
    return {
        name: list(value) if isinstance(value, tuple) else value
        for name, value in dataclasses.asdict(config).items()
    }


def config_from_dict(values: dict[str, Any]) -> AugmentConfig:
    """Inverse of :func:`config_to_dict` (lists become tuples)."""
    fields = {name: tuple(v) if isinstance(v, list) else v for name, v in values.items()}
    return AugmentConfig(**fields)


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]))))


def _draw_ebv(rng: np.random.Generator, mean: float, cap: float) -> float:
    """Exponential(mean) truncated at ``cap``, by inverse transform."""
    return float(-mean * np.log1p(-rng.uniform() * -np.expm1(-cap / mean)))


def augment(spectrum: Spectrum, rng: np.random.Generator, config: AugmentConfig) -> Spectrum:
    """Apply a random chain: RV -> reddening -> resolution -> tilt -> coverage -> noise -> masks.

    The order follows the light: the star's velocity, interstellar dust, the instrument's
    resolution and flux calibration, the detector's coverage and noise, then bad pixels.
    What was applied is listed in ``meta["augmentations"]`` (name and drawn parameters).
    """
    noise_free = not _has_errors(spectrum)
    applied: list[dict[str, Any]] = []
    if rng.uniform() < config.rv_probability:
        velocity = float(rng.uniform(-config.rv_max_kms, config.rv_max_kms))
        spectrum = shift_radial_velocity(spectrum, velocity)
        applied.append({"name": "radial_velocity", "velocity_kms": velocity})
    if rng.uniform() < config.redden_probability:
        ebv = _draw_ebv(rng, config.ebv_mean, config.ebv_max)
        spectrum = redden(spectrum, ebv, config.r_v)
        applied.append({"name": "redden", "ebv": ebv, "r_v": config.r_v})
    if rng.uniform() < config.resolution_probability:
        resolving_power = _log_uniform(rng, config.resolving_power_range)
        spectrum = degrade_resolution(spectrum, resolving_power)
        applied.append({"name": "degrade_resolution", "resolving_power": resolving_power})
    if rng.uniform() < config.tilt_probability:
        amplitude = float(rng.uniform(0.0, config.tilt_amplitude_max))
        spectrum = tilt_flux_calibration(spectrum, amplitude, rng)
        applied.append({"name": "tilt", "amplitude": amplitude})
    if rng.uniform() < config.truncate_probability:
        spectrum = truncate_coverage(spectrum, rng, config.blue_start_range, config.red_end_range)
        start, end = float(spectrum.wavelength[0]), float(spectrum.wavelength[-1])
        applied.append({"name": "truncate", "start": start, "end": end})
    if rng.uniform() < config.noise_probability:
        snr = _log_uniform(rng, config.snr_range)
        spectrum = add_noise(spectrum, snr, rng, existing_errors=not noise_free)
        applied.append({"name": "noise", "snr": snr})
    if rng.uniform() < config.mask_probability:
        n_segments = int(rng.integers(1, config.mask_segments_max + 1))
        spectrum = mask_pixels(
            spectrum, rng, n_segments, config.mask_width_max_angstrom, config.bad_pixel_fraction
        )
        applied.append({"name": "mask", "n_segments": n_segments})
    meta = dict(spectrum.meta)
    meta["augmentations"] = [*meta.get("augmentations", []), *applied]
    return _new(spectrum, meta=meta)


def spectral_batch_augment(
    key,
    features,
    noise_max: float = 0.05,
    max_shift: int = 1,
    cut_probability: float = 0.3,
    cut_max_pixels: int = 60,
):
    """On-device augmentation of a batch of stellar features (batch, n_pix, channels).

    Runs inside the jitted train step, so every step sees fresh draws on top of the
    physical augmentations made once per dataset: white noise of a random level on the
    flux channels, a shift by up to ``max_shift`` grid pixels (a radial velocity of up to
    ~260 km/s per pixel on the default grid), and, with ``cut_probability``, a random
    window of up to ``cut_max_pixels`` pixels marked uncovered (all channels 0).
    """
    import jax
    import jax.numpy as jnp

    batch, n_pix, channels = features.shape
    k_noise, k_level, k_shift, k_cut, k_start, k_width = jax.random.split(key, 6)
    level = jax.random.uniform(k_level, (batch, 1, 1), maxval=noise_max)
    noise = level * jax.random.normal(k_noise, features.shape)
    covered = features[..., -1:] > 0.5
    flux_mask = jnp.arange(channels) < channels - 1
    features = features + jnp.where(covered & flux_mask, noise, 0.0)
    shifts = jax.random.randint(k_shift, (batch,), -max_shift, max_shift + 1)
    features = jax.vmap(lambda f, s: jnp.roll(f, s, axis=0))(features, shifts)
    start = jax.random.randint(k_start, (batch, 1), 0, n_pix)
    width = jax.random.randint(k_width, (batch, 1), 0, cut_max_pixels + 1)
    do_cut = jax.random.uniform(k_cut, (batch, 1)) < cut_probability
    pixel = jnp.arange(n_pix)[None, :]
    cut = do_cut & (pixel >= start) & (pixel < start + width)
    return jnp.where(cut[..., None], 0.0, features)
