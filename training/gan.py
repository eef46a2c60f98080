"""Train the O-star spectral GAN and write the generator bundle.

Usage: ``train_gan(GanConfig(), workdir=Path("runs/gan"), out=Path("bundles/gan"))`` (or
``skysort train gan``). Running it again with the same workdir resumes from the newest
Orbax checkpoint (step count, weights, optimiser states, EMA and history).

The training set is the real O-type spectra of the stellar manifest (JHC atlas, Pickles,
JHC dwarfs; LAMOST O rows of the train split if any), each augmented physically many
times (:mod:`training.augment`) and preprocessed exactly like classifier input. The
generator writes the flux channel over the whole grid; the critic compares real features
with generated flux masked by the coverage of another real spectrum, so spectra that end
at 7427 Å (the JHC atlas) teach the blue and Pickles teaches the red.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx
from tqdm.auto import tqdm

from models.bundle import save_bundle
from models.nets import build_net
from models.preprocess import StellarPreprocess
from training.augment import AugmentConfig
from training.gan_steps import GanState, generate_features, init_state, make_train_step
from training.stellar import DEFAULT_MANIFEST, REPO_DATA
from training.stellar_data import StellarDataConfig, build_training_set, load_manifest

#: Gentler than the classifier's augmentation: the GAN should learn clean-ish O spectra
#: (S/N 30-300, no masked segments); velocity, resolution and coverage still vary.
GAN_AUGMENT = AugmentConfig(noise_probability=0.5, snr_range=(30.0, 300.0), mask_probability=0.0)


@dataclass(frozen=True)
class GanConfig:
    """Everything that defines a GAN run; stored in the generator bundle.

    Args:
        loss: ``"hinge"`` (chosen by measurement, see docs/gan.md), ``"wgan-gp"`` or
            ``"dcgan"``; hinge and DCGAN get a spectral-norm critic.
        steps: generator updates; each comes with ``n_critic`` critic updates.
        examples: augmented O-type training examples drawn from the real spectra.
        exclude_files: manifest files left out (leave-stars-out studies).
        ema_decay: decay of the exponential moving average of the generator weights,
            which is what the bundle stores (smoother, less noisy samples).
    """

    steps: int = 4000
    batch_size: int = 32
    latent_dim: int = 64
    loss: str = "hinge"
    n_critic: int = 1
    learning_rate: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.9
    gp_weight: float = 10.0
    drift_weight: float = 1e-3
    ema_decay: float = 0.995
    seed: int = 0
    examples: int = 3000
    exclude_files: tuple[str, ...] = ()
    checkpoint_every: int = 250
    keep_checkpoints: int = 2
    plot_every: int = 500
    progress: bool = True
    generator: dict = field(default_factory=dict)
    critic: dict = field(default_factory=dict)
    data_dir: Path = REPO_DATA
    manifest: Path = DEFAULT_MANIFEST
    augment: AugmentConfig = GAN_AUGMENT


def o_star_rows(manifest: Path, exclude: tuple[str, ...] = ()) -> list:
    """Training rows of class O in the manifest (never the test split), minus ``exclude``."""
    rows = load_manifest(Path(manifest))
    return [r for r in rows if r.mk_class == "O" and r.split == "train" and r.file not in exclude]


def build_gan_dataset(config: GanConfig, preprocess: StellarPreprocess) -> tuple[np.ndarray, dict]:
    """Augmented O-type features (N, n_pix, 2) via the stellar data builder, and a summary."""
    rows = o_star_rows(config.manifest, config.exclude_files)
    if not rows:
        raise ValueError(f"no O-type training spectra in {config.manifest}")
    data = StellarDataConfig(
        per_class=config.examples, keep_originals=True, seed=config.seed, augment=config.augment
    )
    train_set, summary = build_training_set(rows, Path(config.data_dir), preprocess, data)
    summary["files"] = [row.file for row in rows]
    return train_set.features, summary


def generator_kwargs(config: GanConfig, preprocess: StellarPreprocess) -> dict:
    return {"latent_dim": config.latent_dim, "n_pix": preprocess.n_pix, **config.generator}


def critic_kwargs(config: GanConfig, preprocess: StellarPreprocess) -> dict:
    return {
        "n_channels": preprocess.n_channels,
        "n_pix": preprocess.n_pix,
        "spectral_norm": config.loss != "wgan-gp",
        **config.critic,
    }


def _manager(workdir: Path, config: GanConfig) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=config.keep_checkpoints, create=True)
    return ocp.CheckpointManager((workdir / "checkpoints").absolute(), options=options)


def _save(manager: ocp.CheckpointManager, state: GanState, history: list) -> None:
    step = int(state.step)
    meta = {"step": step, "history": history}
    manager.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(dataclasses.asdict(state)), meta=ocp.args.JsonSave(meta)
        ),
    )
    manager.wait_until_finished()


def _restore(manager: ocp.CheckpointManager, state: GanState) -> tuple[GanState, list]:
    step = manager.latest_step()
    if step is None:
        return state, []
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, dataclasses.asdict(state))
    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
        ),
    )
    return GanState(**restored["state"]), list(restored["meta"]["history"])


def _batches(features: np.ndarray, config: GanConfig, step: int) -> tuple[np.ndarray, ...]:
    """Real batches and coverage masks for one step, drawn from a step-seeded Generator.

    Seeding by step makes a resumed run draw exactly what an uninterrupted one would.
    """
    rng = np.random.default_rng([config.seed, step])
    shape = (config.n_critic + 1, config.batch_size)
    real = features[rng.integers(len(features), size=shape)]
    masks = features[rng.integers(len(features), size=shape)][..., -1:]
    return real, masks


def train_gan(config: GanConfig, workdir: Path, out: Path | None = None) -> dict:
    """Build the O-star set, train (resumable in ``workdir``), write the bundle to ``out``.

    Returns the model card (or, without ``out``, the training summary).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    preprocess = StellarPreprocess()
    features, data_summary = build_gan_dataset(config, preprocess)
    generator = build_net("gan_generator", generator_kwargs(config, preprocess), config.seed)
    critic = build_net("gan_critic", critic_kwargs(config, preprocess), config.seed + 1)
    state, graphs = init_state(generator, critic, config)
    manager = _manager(workdir, config)
    state, history = _restore(manager, state)
    if int(state.step):
        print(f"resuming from {workdir / 'checkpoints'} at step {int(state.step)}")
    state, history = _train_loop(state, graphs, features, config, manager, history, workdir)
    manager.close()
    (workdir / "history.json").write_text(json.dumps(history, indent=1))
    nnx.update(generator, state.ema)
    summary = {**data_summary, "history": history, "config": config_to_dict(config)}
    if out is None:
        return summary
    card = {
        "task": "gan",
        "labels": ["O"],
        "network": {"name": "gan_generator", "kwargs": generator_kwargs(config, preprocess)},
        "preprocess": preprocess.to_dict(),
        "output": {
            "quantity": "continuum-normalised flux",
            "definition": "flux / pseudo-continuum (1 = continuum), on the stellar grid "
            "(vacuum Angstrom, log-uniform); the generator writes flux / continuum - 1",
            "latent": f"standard normal, {config.latent_dim} dimensions",
        },
        "synthetic": True,
        "training": summary,
        "metrics": {"steps": int(state.step)},
    }
    return save_bundle(out, generator, card)


def _train_loop(state, graphs, features, config, manager, history, workdir):
    train_step = make_train_step(graphs, config)
    key = jax.random.key(config.seed)
    start = int(state.step)
    bar = tqdm(
        range(start, config.steps),
        desc="GAN",
        initial=start,
        total=config.steps,
        disable=not config.progress,
    )
    started, timed_from = time.perf_counter(), start
    for step in bar:
        real, masks = _batches(features, config, step)
        state, losses = train_step(state, real, masks, jax.random.fold_in(key, step))
        done = step + 1
        if done % 25 == 0 or done == config.steps:
            losses = {name: round(float(value), 4) for name, value in losses.items()}
            bar.set_postfix(losses)
        if done % config.checkpoint_every == 0 or done == config.steps:
            seconds = time.perf_counter() - started
            history.append(
                {
                    "step": done,
                    **{k: float(v) for k, v in losses.items()},
                    "steps_per_second": (done - timed_from) / seconds,
                    "device": jax.devices()[0].device_kind,
                }
            )
            _save(manager, state, history)
            started, timed_from = time.perf_counter(), done
        if done % config.plot_every == 0 or done == config.steps:
            _plot_progress(state, graphs, features, config, workdir / f"samples-{done:06d}.png")
    return state, history


def _plot_progress(state, graphs, features, config, path: Path) -> None:
    from training.gan_plots import plot_real_vs_generated

    generated = generate_features(graphs, state.ema, 4, config.seed + 12345, config.latent_dim)
    rng = np.random.default_rng(config.seed)
    real = features[rng.choice(len(features), size=4, replace=False)]
    plot_real_vs_generated(StellarPreprocess().grid, real, generated, path, title=path.stem)


def config_to_dict(config: GanConfig) -> dict:
    """JSON-ready dict of a GanConfig (paths as names, augmentation as a dict)."""
    from training.augment import config_to_dict as augment_dict

    values = dataclasses.asdict(config)
    values["augment"] = augment_dict(config.augment)
    values["data_dir"] = Path(config.data_dir).name
    values["manifest"] = Path(config.manifest).name
    values["exclude_files"] = list(config.exclude_files)
    return values
