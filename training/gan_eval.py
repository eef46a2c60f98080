"""Quality report of a generator bundle (``skysort evaluate gan``).

Usage: ``evaluate_gan(Path("bundles/gan"), Path("reports/gan"))`` prints nothing itself;
it returns the figures and writes ``metrics.json`` and PNG plots to the report folder.

Figures, all on ``n`` spectra generated with one seed:

* **O share**: the fraction that a stellar classifier trained WITHOUT synthetic spectra
  (the default stellar bundle; its card is checked) labels O, with full coverage and with
  the coverage cut at 7427 Å as in the JHC atlas;
* **memorisation**: RMS distance of each generated spectrum to its nearest real O-type
  training spectrum, against real-to-real nearest distances; none may be closer than the
  closest pair of distinct real O spectra;
* **physics**: equivalent widths of He II 4686, He I 4471 and the Balmer lines, real vs
  generated, and the He II / He I ratio;
* **diversity**: mean pairwise distance of generated spectra vs that of the real set.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from models.generate import load_generator
from models.preprocess import StellarPreprocess
from training.stellar import DEFAULT_MANIFEST, REPO_DATA
from training.stellar_data import load_manifest, read_rows

#: Line centres (vacuum Angstrom) and the half-width of the line window in Angstrom.
LINES = {
    "He II 4686": (4687.0, 8.0),
    "He I 4471": (4472.7, 8.0),
    "He II 4542": (4542.9, 8.0),
    "H beta": (4862.7, 12.0),
    "H gamma": (4341.7, 12.0),
    "H delta": (4102.9, 12.0),
}
PRESENT_EW = 0.1
JHC_RED_END = 7427.2


def real_o_features(files: list[str], data_dir: Path, preprocess: StellarPreprocess) -> np.ndarray:
    """Unaugmented features of the real O-type spectra the generator was trained on."""
    rows = [r for r in load_manifest(DEFAULT_MANIFEST) if r.file in set(files)]
    return np.stack([preprocess.apply(s) for s in read_rows(rows, data_dir)])


def nearest_distances(
    queries: np.ndarray, references: np.ndarray, exclude_self: bool = False
) -> np.ndarray:
    """RMS flux-channel distance of each query to its nearest reference.

    Computed over the pixels both cover (generated spectra cover everything), so a real
    spectrum that ends at 7427 Å is compared only where it has flux.
    """
    flux_q, cover_q = queries[..., 0], queries[..., -1] > 0.5
    flux_r, cover_r = references[..., 0], references[..., -1] > 0.5
    both = cover_q[:, None, :] & cover_r[None, :, :]
    squared = (flux_q[:, None, :] - flux_r[None, :, :]) ** 2
    distance = np.sqrt((squared * both).sum(-1) / np.maximum(both.sum(-1), 1))
    if exclude_self:
        np.fill_diagonal(distance, np.inf)
    return distance.min(axis=1)


def mean_pairwise_distance(features: np.ndarray, limit: int = 300) -> float:
    """Mean RMS distance between distinct spectra (first ``limit`` of them)."""
    sample = features[:limit]
    flux, cover = sample[..., 0], sample[..., -1] > 0.5
    both = cover[:, None, :] & cover[None, :, :]
    squared = (flux[:, None, :] - flux[None, :, :]) ** 2
    distance = np.sqrt((squared * both).sum(-1) / np.maximum(both.sum(-1), 1))
    upper = np.triu_indices(len(sample), k=1)
    return float(distance[upper].mean())


def equivalent_widths(grid: np.ndarray, features: np.ndarray) -> dict[str, np.ndarray]:
    """Absorption equivalent width (Angstrom, positive = absorption) of each line.

    The flux channel is flux / continuum - 1, so the EW is ``-sum(channel * dλ)`` over the
    line window, after subtracting the median of two side bands (the local continuum
    offset). NaN where the window is not covered.
    """
    step = np.gradient(grid)
    widths = {}
    for name, (centre, half) in LINES.items():
        window = np.abs(grid - centre) <= half
        sides = (np.abs(grid - centre) > half + 4) & (np.abs(grid - centre) <= half + 25)
        local = np.median(features[:, sides, 0], axis=1, keepdims=True)
        ew = -((features[:, window, 0] - local) * step[window]).sum(axis=1)
        covered = features[:, window, -1].min(axis=1) > 0.5
        widths[name] = np.where(covered, ew, np.nan)
    return widths


def physics_summary(grid: np.ndarray, real: np.ndarray, generated: np.ndarray) -> dict:
    """Line strengths of real vs generated spectra and the share with each line present."""
    summary = {}
    ew_real, ew_gen = equivalent_widths(grid, real), equivalent_widths(grid, generated)
    for name in LINES:
        summary[name] = {
            "real_median_ew": _nan_round(np.nanmedian(ew_real[name])),
            "real_range_ew": [
                _nan_round(np.nanmin(ew_real[name])),
                _nan_round(np.nanmax(ew_real[name])),
            ],
            "generated_median_ew": _nan_round(np.nanmedian(ew_gen[name])),
            "real_present_share": round(float(np.mean(ew_real[name] > PRESENT_EW)), 4),
            "generated_present_share": round(float(np.mean(ew_gen[name] > PRESENT_EW)), 4),
        }
    ratio_real = _line_ratio(ew_real["He II 4686"], ew_real["He I 4471"])
    ratio_gen = _line_ratio(ew_gen["He II 4686"], ew_gen["He I 4471"])
    low, high = np.nanpercentile(ratio_real, [10, 90])
    summary["He II 4686 / He I 4471"] = {
        "real_median": _nan_round(np.nanmedian(ratio_real)),
        "real_10_90_percentile": [_nan_round(low), _nan_round(high)],
        "generated_median": _nan_round(np.nanmedian(ratio_gen)),
        "generated_share_in_real_range": round(
            float(np.mean((ratio_gen >= low) & (ratio_gen <= high))), 4
        ),
    }
    balmer = np.stack([ew_gen[n] > PRESENT_EW for n in ("H beta", "H gamma", "H delta")])
    summary["balmer_present_share"] = round(float(balmer.all(axis=0).mean()), 4)
    summary["he_ii_4686_present_share"] = summary["He II 4686"]["generated_present_share"]
    return summary


def _line_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """EW ratio where the denominator line is present (NaN elsewhere: no blow-ups near 0)."""
    present = denominator > PRESENT_EW
    return np.where(present, numerator / np.where(present, denominator, 1.0), np.nan)


def _nan_round(value: float) -> float | None:
    return None if not np.isfinite(value) else round(float(value), 4)


def o_share(classifier, features: np.ndarray) -> dict:
    """Share labelled O, and the distribution of predicted labels."""
    predicted = classifier.predict(features).argmax(-1)
    labels = np.asarray(classifier.labels)[predicted]
    counts = {label: int((labels == label).sum()) for label in classifier.labels}
    return {"o_share": round(float(np.mean(labels == "O")), 4), "predicted": counts}


def check_classifier_never_saw_synthetic(card: dict, path: Path) -> None:
    """Refuse a classifier whose model card says it was trained with synthetic spectra."""
    training = card.get("training", {})
    if training.get("gan_bundle") or str(training.get("balancing", "")).startswith("gan"):
        raise ValueError(
            f"{path}: this classifier was trained with GAN spectra; the O share must come "
            "from one that never saw synthetic data (e.g. a bundle trained with balancing=none)"
        )


def evaluate_gan(
    bundle: Path,
    report_dir: Path,
    classifier_bundle: Path | None = None,
    data_dir: Path = REPO_DATA,
    n: int = 1000,
    seed: int = 0,
) -> dict:
    """Score a generator bundle; write ``metrics.json`` and plots to ``report_dir``."""
    from models.bundle import load_bundle
    from models.inference import default_bundle
    from training.gan_plots import (
        plot_distance_histograms,
        plot_mean_spectra,
        plot_real_vs_generated,
    )

    generator = load_generator(bundle)
    classifier_path = Path(classifier_bundle or default_bundle("stellar"))
    classifier = load_bundle(classifier_path)
    check_classifier_never_saw_synthetic(classifier.card, classifier_path)
    preprocess = classifier.preprocess
    flux = generator.generate(n, seed) - 1.0
    generated = np.stack([flux, np.ones_like(flux)], axis=-1).astype(np.float32)
    cut = generated.copy()
    cut[:, generator.wavelength > JHC_RED_END] = 0.0
    real = real_o_features(generator.card["training"]["files"], Path(data_dir), preprocess)
    gen_to_real = nearest_distances(generated, real)
    real_to_real = nearest_distances(real, real, exclude_self=True)
    metrics = {
        "bundle_id": generator.bundle_id,
        "classifier": classifier.bundle_id,
        "n": n,
        "seed": seed,
        "n_real": len(real),
        "classification": o_share(classifier, generated),
        "classification_coverage_cut_7427": o_share(classifier, cut),
        "memorisation": {
            "closest_real_pair": round(float(real_to_real.min()), 5),
            "real_to_real_nearest_median": round(float(np.median(real_to_real)), 5),
            "generated_to_real_nearest_min": round(float(gen_to_real.min()), 5),
            "generated_to_real_nearest_median": round(float(np.median(gen_to_real)), 5),
            "generated_closer_than_closest_real_pair": int(
                (gen_to_real < real_to_real.min()).sum()
            ),
        },
        "diversity": {
            "generated_mean_pairwise": round(mean_pairwise_distance(generated), 5),
            "real_mean_pairwise": round(mean_pairwise_distance(real), 5),
        },
        "physics": physics_summary(generator.wavelength, real, generated),
    }
    diversity = metrics["diversity"]
    diversity["ratio"] = round(
        diversity["generated_mean_pairwise"] / diversity["real_mean_pairwise"], 4
    )
    metrics["o_share"] = metrics["classification"]["o_share"]
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    grid = generator.wavelength
    plot_real_vs_generated(
        grid,
        real[:: max(1, len(real) // 6)][:6],
        generated[:6],
        report_dir / "samples.png",
        f"{generator.bundle_id}: real O stars vs generated (seed {seed})",
        real_label="real O-type training spectra",
    )
    plot_distance_histograms(gen_to_real, real_to_real, report_dir / "memorisation.png")
    plot_mean_spectra(grid, real, generated, report_dir / "mean_spectra.png")
    return metrics


def summary_lines(metrics: dict) -> list[str]:
    """The report's headline figures, one per line, for the command line."""
    mem, div, phys = metrics["memorisation"], metrics["diversity"], metrics["physics"]
    ratio = phys["He II 4686 / He I 4471"]
    return [
        f"generator {metrics['bundle_id']}, classifier {metrics['classifier']}, n={metrics['n']}",
        f"O share: {metrics['o_share']:.3f} (coverage cut at 7427 Å: "
        f"{metrics['classification_coverage_cut_7427']['o_share']:.3f})",
        f"memorisation: nearest generated-real {mem['generated_to_real_nearest_min']:.4f} vs "
        f"closest real pair {mem['closest_real_pair']:.4f} "
        f"({mem['generated_closer_than_closest_real_pair']} closer)",
        f"diversity: mean pairwise {div['generated_mean_pairwise']:.4f} vs real "
        f"{div['real_mean_pairwise']:.4f} (ratio {div['ratio']:.2f})",
        f"He II 4686 present: {phys['he_ii_4686_present_share']:.3f} (real "
        f"{phys['He II 4686']['real_present_share']:.3f}); Balmer present: "
        f"{phys['balmer_present_share']:.3f}; He II/He I median {ratio['generated_median']} "
        f"(real {ratio['real_median']}, 10-90% {ratio['real_10_90_percentile']}; "
        f"{ratio['generated_share_in_real_range']:.2f} of generated inside)",
    ]
